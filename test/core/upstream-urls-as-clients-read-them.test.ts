// An origin's URLs that still name its upstream as clients read them, the names a `Connection`
// field nominates, and the tenants a rate-limit override may name. Each URL is checked against
// how a browser resolves it (the WHATWG URL parser, against the page the client asked the edge
// for) and how the common HTTP clients resolve a redirect: curl, Python requests, Java's
// HttpURLConnection, Go's net/http.
import { describe, expect, it } from "vitest";
import policy from "../../policy/policy.json";
import { connectionNominatedPresent, normaliseHeaderName } from "../../src/core/headers";
import { upstreamUrlsOnEdge } from "../../src/core/origin-response";
import { problemsOf } from "../support/policy-problems";

const EDGE = "https://api.example.com";
/** The page the client asked the edge for: what a relative URL in the answer resolves against. */
const PAGE = `${EDGE}/some/page`;

/** Location, Content-Location, Refresh and Link as the client receives them, each holding `url`. */
function fieldsOnEdge(url: string, upstream: string): Record<string, string | null> {
  const headers = new Headers({
    location: url,
    "content-location": url,
    refresh: `0; url=${url}`,
    link: `<${url}>; rel="next"`,
  });
  upstreamUrlsOnEdge(headers, upstream, EDGE);
  return {
    location: headers.get("location"),
    "content-location": headers.get("content-location"),
    refresh: headers.get("refresh"),
    link: headers.get("link"),
  };
}

/** The same four fields, each naming `expected`: the edge's URL the client is sent to instead. */
function fieldsNaming(expected: string): Record<string, string> {
  return {
    location: expected,
    "content-location": expected,
    refresh: `0; url=${expected}`,
    link: `<${expected}>; rel="next"`,
  };
}

describe("an https upstream on the default port, named with `:443` written out", () => {
  // Upstreams are https (or http on loopback only), and most are on 443 with no port in the
  // policy. A scheme-relative URL takes the client's own scheme, https, so `:443` is the default
  // port and the client connects to exactly the upstream: browsers, curl (`//h:443/x` resolves
  // to `https://h:443/x` against an https page), requests (which prefixes the response's scheme)
  // and Java (`new URL(context, spec)`) alike.
  const UPSTREAM = "https://origin.internal/base";

  it.each([
    ["two slashes", "//origin.internal:443/base/x?y=1#z"],
    ["a slash and a backslash", "/\\origin.internal:443/base/x?y=1#z"],
    ["two backslashes", "\\\\origin.internal:443/base/x?y=1#z"],
    ["with userinfo", "//edge@origin.internal:443/base/x?y=1#z"],
  ])("a scheme-relative URL (%s) with `:443` is the edge's URL in every field", (_label, url) => {
    const resolved = new URL(url, PAGE);
    expect(resolved.host).toBe("origin.internal");
    expect(resolved.pathname).toBe("/base/x");
    const got = fieldsOnEdge(url, UPSTREAM);
    expect(got).toEqual(fieldsNaming(`${EDGE}/x?y=1#z`));
    expect(Object.values(got).join(" ")).not.toContain("origin.internal");
  });

  it("an http URL naming the upstream's port 443 (an app that takes the port from X-Forwarded-Port but not the scheme writes it) is the edge's URL", () => {
    // The client is sent to the upstream's own address and port: the address the edge keeps
    // private is disclosed, and the request reaches the upstream's server without the edge.
    const url = "http://origin.internal:443/base/x";
    expect(new URL(url, PAGE).hostname).toBe("origin.internal");
    const got = fieldsOnEdge(url, UPSTREAM);
    expect(got).toEqual(fieldsNaming(`${EDGE}/x`));
  });

  it("the same URL with `https:` written out, or no port, is the edge's URL (as it is already)", () => {
    for (const url of [
      "https://origin.internal:443/base/x?y=1#z",
      "https://origin.internal/base/x?y=1#z",
      "//origin.internal/base/x?y=1#z",
    ]) {
      expect(fieldsOnEdge(url, UPSTREAM)).toEqual(fieldsNaming(`${EDGE}/x?y=1#z`));
    }
  });
});

describe("the upstream's host as a fully qualified name, with its trailing dot", () => {
  // `origin.internal.` is the same name to DNS: browsers and curl connect to the upstream (and
  // match its certificate without the dot); the WHATWG parser keeps the dot in `host`.
  const UPSTREAM = "https://origin.internal:8443/base";

  it.each([
    ["absolute", "https://origin.internal.:8443/base/x"],
    ["scheme-relative", "//origin.internal.:8443/base/x"],
    ["in upper case", "HTTPS://ORIGIN.INTERNAL.:8443/base/x"],
  ])("%s, it is the edge's URL in every field", (_label, url) => {
    expect(new URL(url, PAGE).hostname).toBe("origin.internal.");
    const got = fieldsOnEdge(url, UPSTREAM);
    expect(got).toEqual(fieldsNaming(`${EDGE}/x`));
    expect(Object.values(got).join(" ")).not.toContain("origin.internal");
  });
});

describe("a URL behind Java's `url:` prefix", () => {
  // java.net.URL skips a leading `url:` (any case) before it reads the scheme, and
  // HttpURLConnection follows a Location that parses as an absolute URL of the same protocol:
  // `url:https://origin…` takes Spring's RestTemplate, and anything else on HttpURLConnection, to
  // the upstream. No browser follows it (`url:` is a scheme of its own to the WHATWG parser).
  it("`url:https://<upstream>/…` is the edge's URL in every field", () => {
    const url = "url:https://origin.internal:8443/base/x";
    expect(new URL(url, PAGE).protocol).toBe("url:");
    const got = fieldsOnEdge(url, "https://origin.internal:8443/base");
    expect(got).toEqual(fieldsNaming(`${EDGE}/x`));
  });
});

describe("URLs no client takes to the upstream, and those clients read apart", () => {
  const UPSTREAM = "https://origin.internal:8443/base";

  it("`https:/host/…`, which curl follows to the host (it takes one to three slashes), is the edge's URL, though a browser reads it as a path", () => {
    for (const url of ["https:/origin.internal:8443/base/x", "https:\\origin.internal:8443/base/x"]) {
      expect(fieldsOnEdge(url, UPSTREAM)).toEqual(fieldsNaming(`${EDGE}/x`));
    }
  });

  it("a URL after Unicode whitespace (U+00A0, U+2028, U+3000, U+FEFF) goes on as written: every client reads it as a path on the edge", () => {
    // The runtime sends these as UTF-8; the URL parsers of browsers, curl, requests, Java and Go
    // drop only C0 controls and ASCII spaces.
    for (const space of ["\u00a0", "\u2028", "\u3000", "\ufeff"]) {
      const url = `${space}https://origin.internal:8443/base/x`;
      expect(new URL(url, PAGE).host).toBe("api.example.com");
      const headers = new Headers({ location: url, link: `<${url}>` });
      upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
      expect(headers.get("location")).toBe(url);
      expect(headers.get("link")).toBe(`<${url}>`);
    }
  });

  it("a Refresh URL the HTML standard reads as a path (`u//host`, `url //host`, `;url=//host` twice separated) goes on as written", () => {
    for (const refresh of [
      "0; u//origin.internal:8443/base/x",
      "0; url //origin.internal:8443/base/x",
      "0;;url=//origin.internal:8443/base/x",
    ]) {
      const headers = new Headers({ refresh });
      upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
      expect(headers.get("refresh")).toBe(refresh);
    }
  });

  it("a Link target with spaces naming the upstream is the edge's URL, the spaces as a browser encodes them", () => {
    const headers = new Headers({ link: '< https://origin.internal:8443/base/a b >; rel="next"' });
    upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
    expect(headers.get("link")).toBe(`<${EDGE}/a%20b>; rel="next"`);
  });
});

describe("the fields a Connection header nominates", () => {
  /** The held names `connection` nominates, compared as the request stage compares them. */
  function nominated(connection: string, names: string[]): string[] {
    const headers = new Headers();
    for (const name of names) headers.set(name, "1");
    headers.set("connection", connection);
    return connectionNominatedPresent(headers, normaliseHeaderName).sort();
  }

  it.each([
    // Repeats, empty elements and whitespace: each name once, as nominated.
    ["X-A, x-a,,  x-a\t, ,X-A", ["x-a", "x-b"], ["x-a"]],
    // Upper case and the spellings an origin reads alike (`_`, `.` read as `-`).
    ["X_A", ["x-a", "x_a", "x.a", "x-b"], ["x-a", "x.a", "x_a"]],
    ["x.b, X-A", ["x-a", "x_b", "x-c"], ["x-a", "x_b"]],
    // Hop-by-hop names are the edge's to drop; they nominate nothing beside themselves.
    ["keep-alive, close, TE, upgrade", ["x-a", "keep-alive", "te", "upgrade"], []],
    // A hop-by-hop name in another spelling is compared as spelt: `keep_alive` nominates `keep-alive`.
    ["keep_alive", ["keep-alive", "x-a"], ["keep-alive"]],
    // Only commas and whitespace, or a token that is no field name: nothing.
    [" , ,\t,", ["x-a"], []],
    ["x-a b", ["x-a"], []],
    // `connection` itself and a name it does not hold.
    ["connection, x-z", ["x-a"], []],
  ])("Connection: %j over %j nominates %j", (connection, names, expected) => {
    expect(nominated(connection, names)).toEqual([...expected].sort());
  });
});

describe("a tenant override naming a tenant no token can carry", () => {
  const withOverride = (tenant: string) => {
    const doc = structuredClone(policy) as any;
    doc.limits.tenant_overrides[tenant] = { "tenant-per-minute": { limit: 5 } };
    return doc;
  };

  it("`acme|globex` is refused: a token naming it is refused (tenant_unsafe), so the override could never apply", () => {
    expect(problemsOf(withOverride("acme|globex"))).toEqual([
      expect.stringMatching(/^limits\.tenant_overrides\.acme\|globex: /),
    ]);
    expect(problemsOf(withOverride("acme-globex"))).toEqual([]);
  });

  it.each([
    ["acme|globex", "|"],
    ['acme"x', '"'],
    ["acme\\x", "\\"],
  ])("the refusal of %s names the character it may not hold (%s)", (tenant, character) => {
    const [problem] = problemsOf(withOverride(tenant));
    expect(problem).toContain(`limits.tenant_overrides.${tenant}:`);
    expect(problem?.slice(`limits.tenant_overrides.${tenant}:`.length)).toContain(character);
  });
});
