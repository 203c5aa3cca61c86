// What one hostile request or origin answer can make the edge do, beyond routing: the `Link`
// targets of an origin's answer, the names a `Connection` header nominates, and `Cookie`
// headers of many cookies. Each is read in work that grows with the input at most linearly,
// and decided exactly as a short input of the same kind. The work is counted (URL reads that
// fail, names spelt), never timed.
import { describe, expect, it } from "vitest";
import { cookiePairs, hidesCredentialCookie, withoutCredentialCookies } from "../../src/core/cookies";
import { connectionNominatedPresent, normaliseHeaderName } from "../../src/core/headers";
import { upstreamUrlsOnEdge } from "../../src/core/origin-response";
import { extractCredential } from "../../src/core/tokens/credentials";

const EDGE = "https://api.example.com";
const UPSTREAM = "https://origin.internal:8443/base";

/**
 * Runs `work` with the URL parser counting the reads that fail: a `new URL` that throws, a
 * `URL.parse` that gives null. In the Workers runtime each makes an error, stack and all (even
 * where `URL.parse` hides it), many times the work of a URL that parses; `URL.canParse` makes none.
 */
function failedUrlReads<T>(work: () => T): { result: T; failed: number } {
  const scope = globalThis as unknown as { URL: typeof URL };
  const Real = scope.URL;
  let failed = 0;
  const parse = (...args: Parameters<typeof URL.parse>) => {
    const url = Real.parse(...args);
    if (url === null) failed++;
    return url;
  };
  scope.URL = new Proxy(Real, {
    construct(target, args) {
      try {
        return Reflect.construct(target, args);
      } catch (error) {
        failed++;
        throw error;
      }
    },
    get(target, key) {
      return key === "parse" ? parse : Reflect.get(target, key);
    },
  });
  try {
    return { result: work(), failed };
  } finally {
    scope.URL = Real;
  }
}

function rewrittenLink(link: string): string | null {
  const headers = new Headers({ link });
  upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
  return headers.get("link");
}

describe("a Link field of thousands of targets", () => {
  // Relative targets, empty ones and fragments: what a paginated API or a compromised origin may
  // write, 4 bytes each. None can name the upstream, as none has a scheme.
  const relative = '<a>, <>, </items?page=2>; rel="next", <#top>, '.repeat(1000);

  it("goes on as written when no target has a scheme, no target read as a URL that fails to parse", () => {
    const { result, failed } = failedUrlReads(() => rewrittenLink(relative));
    expect(result).toBe(relative.trimEnd());
    expect(failed).toBe(0);
  });

  it("has each upstream target made the edge's among thousands of relative ones, the rest as written", () => {
    const upstreamTargets = [
      `<${UPSTREAM}/items?page=3>; rel="next"`,
      // Scheme-relative, with a tab the URL parser drops, and after leading whitespace.
      "<//origin.internal:8443/base/a>",
      "<ht\ttps://origin.internal:8443/base/b>",
      "< \thttps://origin.internal:8443/base/c>",
    ];
    const link = `${relative}${upstreamTargets.join(", ")}, <http://[::1/x>, <https://cdn.example/x.css>`;
    const { result, failed } = failedUrlReads(() => rewrittenLink(link));
    expect(result).toBe(
      `${relative}<${EDGE}/items?page=3>; rel="next", <${EDGE}/a>, <${EDGE}/b>, <${EDGE}/c>, <http://[::1/x>, <https://cdn.example/x.css>`,
    );
    expect(result).not.toContain("origin.internal");
    // The one target with a scheme that no parser reads (`[::1` is no address) may cost one read.
    expect(failed).toBeLessThanOrEqual(1);
  });

  it("reads thousands of targets that are a scheme alone (`http:`, which names no host) without a failed read", () => {
    const link = "<http:>, <https:>, <HTTP:>, ".repeat(2000);
    const { result, failed } = failedUrlReads(() => rewrittenLink(link));
    expect(result).toBe(link.trimEnd());
    expect(failed).toBe(0);
  });
});

describe("a URL a browser reads as scheme-relative", () => {
  // Browsers read `\` as `/` in an http(s) URL, and drop tabs and leading controls and spaces:
  // each of these takes the client to the upstream's host, so each is made the edge's URL.
  it.each([
    ["a slash and a backslash", "/\\origin.internal:8443/base/x?y=1#z"],
    ["two backslashes", "\\\\origin.internal:8443/base/x?y=1#z"],
    ["a backslash and a slash", "\\/origin.internal:8443/base/x?y=1#z"],
    ["three slashes", "///origin.internal:8443/base/x?y=1#z"],
    ["a tab between the slashes", "/\t/origin.internal:8443/base/x?y=1#z"],
    ["a leading control character", "\u0001//origin.internal:8443/base/x?y=1#z"],
    ["another scheme without slashes", "http:origin.internal:8443/base/x?y=1#z"],
  ])("%s naming the upstream is the edge's URL, in Location and in Link", (_label, value) => {
    expect(new URL(value, "https://api.example.com/a").host).toBe("origin.internal:8443");
    const headers = new Headers({ location: value, link: `<${value}>; rel="next"` });
    upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
    expect(headers.get("location")).toBe(`${EDGE}/x?y=1#z`);
    expect(headers.get("link")).toBe(`<${EDGE}/x?y=1#z>; rel="next"`);
  });

  it("a path, however it begins, goes on as written", () => {
    for (const value of ["/base/x", "base/x", "\\base", "./origin.internal:8443/base", "?q=//origin.internal:8443"]) {
      const headers = new Headers({ location: value });
      upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
      expect(headers.get("location")).toBe(value);
    }
  });
});

describe("a Connection header naming one field thousands of times", () => {
  /** `connectionNominatedPresent` as the request stage calls it, counting the names spelt. */
  function nominated(headers: Headers): { names: string[]; spelt: number } {
    let spelt = 0;
    const names = connectionNominatedPresent(headers, (name) => {
      spelt++;
      return normaliseHeaderName(name);
    });
    return { names: names.sort(), spelt };
  }

  it("spells each name it nominates once, however often it repeats it, and finds the fields so named", () => {
    const headers = new Headers({ "x-a": "1", x_b: "2", accept: "*/*", "user-agent": "ua" });
    headers.set("connection", "x-a, X-A, x-b, keep-alive,".repeat(3000));
    const { names, spelt } = nominated(headers);
    expect(names).toEqual(["x-a", "x_b"]);
    // Two distinct names nominated, four fields held: a few spellings, not one per repetition.
    expect(spelt).toBeLessThanOrEqual(2 + 4 + 1);
  });

  it("nominates nothing when it holds only commas and whitespace, thousands of them", () => {
    const headers = new Headers({ "x-a": "1", connection: `${",".repeat(15000)}${" ,\t".repeat(3000)}` });
    expect(nominated(headers).names).toEqual([]);
  });

  it("nominating 1,900 fields finds each of them, and no other", () => {
    const headers = new Headers({ accept: "*/*", "x-kept": "1" });
    const names = Array.from({ length: 1900 }, (_, i) => `c${i.toString(36)}`);
    for (const name of names) headers.set(name, "1");
    headers.set("connection", names.join(","));
    expect(nominated(headers).names).toEqual([...names].sort());
  });
});

describe("a Cookie header of many cookies", () => {
  const ACCESS = "CF_Authorization=eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln";
  const others = Array.from({ length: 999 }, (_, i) => `c${i}=${"v".repeat(20)}`).join("; ");
  const url = new URL("https://api.example.com/app");

  it("takes the Access cookie last of a thousand as the one credential, and passes every other as sent", () => {
    const cookie = `${others}; ${ACCESS}`;
    const credential = extractCredential(new Headers({ cookie }), url, { bearer: false, access: true });
    expect(credential).toEqual({ ok: true, token: ACCESS.slice("CF_Authorization=".length), kind: "access" });
    expect(withoutCredentialCookies(cookie)).toBe(others);
    expect(hidesCredentialCookie(others)).toBe(false);
  });

  it("refuses two Access cookies however many others lie between them", () => {
    const cookie = `${ACCESS}; ${others}; ${ACCESS}`;
    expect(extractCredential(new Headers({ cookie }), url, { bearer: false, access: true })).toEqual({
      ok: false,
      reason: "token_malformed",
      detail: "multiple_credentials",
    });
  });

  it("reads a value padded by thousands of spaces and tabs as the value without them", () => {
    const padding = " \t".repeat(15000);
    expect(cookiePairs(`x=${padding}a${padding}`)).toEqual([["x", "a", `x=${padding}a`]]);
    // The Access cookie cut out: the cookie after it goes on without the whitespace around it.
    expect(withoutCredentialCookies(`${ACCESS}; y=${padding}a${padding}`)).toBe(`y=${padding}a`);
  });
});

describe("URLs inside a long field value", () => {
  it("a Content-Security-Policy of thousands of words and letters has its report-uri naming the upstream made the edge's, the rest as written", () => {
    const words = `default-src 'self' ${"a".repeat(20000)} ${"b.".repeat(3000)} ${"x".repeat(40)}://cdn.example/`;
    const headers = new Headers({
      "content-security-policy": `${words}; report-uri ${UPSTREAM}/csp?x=1 //origin.internal:8443/base/two`,
    });
    upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
    expect(headers.get("content-security-policy")).toBe(`${words}; report-uri ${EDGE}/csp?x=1 ${EDGE}/two`);
  });
});
