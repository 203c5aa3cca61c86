// The origin's URLs that name the upstream, made the edge's own (Location, Content-Location,
// Refresh, each Link target), as nginx's `proxy_redirect default` and Apache's `ProxyPassReverse` make them; the
// whole-request behaviour is in test/pipeline/origin-redirects-to-the-upstream.test.ts (the echo
// origin answers only a Location, so the other fields are read here).
import { describe, expect, it } from "vitest";
import { upstreamUrlsOnEdge } from "../../src/core/origin-response";

const EDGE = "https://api.example.com";

function rewritten(
  fields: Record<string, string>,
  upstream = "https://origin.internal:8443/base",
): Record<string, string> {
  const headers = new Headers(fields);
  upstreamUrlsOnEdge(headers, upstream, EDGE);
  return Object.fromEntries(headers);
}

describe("a URL naming the upstream is the edge's URL for the same path", () => {
  it.each([
    ["https://origin.internal:8443/base/docs/", `${EDGE}/docs/`],
    ["https://origin.internal:8443/base", `${EDGE}/`],
    ["https://origin.internal:8443/base/", `${EDGE}/`],
    ["https://origin.internal:8443/base/a?b=1#c", `${EDGE}/a?b=1#c`],
    // Host and scheme read as a URL parser reads them; an origin behind its own TLS terminator
    // may say http for an https upstream.
    ["HTTPS://Origin.Internal:8443/base/x", `${EDGE}/x`],
    ["http://origin.internal:8443/base/x", `${EDGE}/x`],
    [" https://origin.internal:8443/base/x ", `${EDGE}/x`],
    // Scheme-relative: the client would take its own scheme to the upstream's host.
    ["//origin.internal:8443/base/x", `${EDGE}/x`],
  ])("Location %s → %s", (location, expected) => {
    expect(rewritten({ location }).location).toBe(expected);
  });

  it("in Content-Location and Refresh too, the rest of Refresh as written", () => {
    const got = rewritten({
      "content-location": "https://origin.internal:8443/base/items/7",
      refresh: "5; url='https://origin.internal:8443/base/next'",
    });
    expect(got["content-location"]).toBe(`${EDGE}/items/7`);
    expect(got.refresh).toBe(`5; url='${EDGE}/next'`);
    expect(rewritten({ refresh: "0;URL=https://origin.internal:8443/base/x" }).refresh).toBe(`0;URL=${EDGE}/x`);
    // The HTML standard reads the URL after the delay without `url=` too.
    expect(rewritten({ refresh: "0; https://origin.internal:8443/base/x" }).refresh).toBe(`0; ${EDGE}/x`);
    expect(rewritten({ refresh: "1, '//origin.internal:8443/base/y'" }).refresh).toBe(`1, '${EDGE}/y'`);
    // Or after the delay and whitespace alone.
    expect(rewritten({ refresh: "0 https://origin.internal:8443/base/z" }).refresh).toBe(`0 ${EDGE}/z`);
  });

  it("each Link target, its parameters and the other targets as written", () => {
    // A paginated API's links, written from the Host the origin was sent (the whole-stack
    // test, test/node/e2e/origin-answers-on-the-wire.test.ts, has a real origin write them).
    const link =
      '<https://origin.internal:8443/base/items?page=2>; rel="next", ' +
      '<https://idp.example.com/docs>; rel="help"; title="see <https://origin.internal:8443/base/x>", ' +
      "</items?page=9>; rel=last, <//origin.internal:8443/base/style.css>; rel=preload; as=style";
    expect(rewritten({ link }).link).toBe(
      `<${EDGE}/items?page=2>; rel="next", ` +
        '<https://idp.example.com/docs>; rel="help"; title="see <https://origin.internal:8443/base/x>", ' +
        `</items?page=9>; rel=last, <${EDGE}/style.css>; rel=preload; as=style`,
    );
  });

  it("a Link field of a quote never closed, or of `<` without `>`, is left as written (in one pass: a reading quadratic in the field would run past the test's timeout)", () => {
    for (const link of [`<a>; title="${"<".repeat(100_000)}`, "<".repeat(100_000), `${'"'.repeat(50_001)}<x`]) {
      expect(rewritten({ link }).link).toBe(link);
    }
  });

  it("an upstream without a path maps every path on its host", () => {
    expect(rewritten({ location: "https://origin.internal/a/b" }, "https://origin.internal").location).toBe(
      `${EDGE}/a/b`,
    );
  });
});

describe("any other URL goes on as written", () => {
  it.each([
    // Another host, another port, a path that only begins with the base's characters.
    "https://idp.example.com/authorize?redirect_uri=https%3A%2F%2Forigin.internal%3A8443%2Fbase",
    "https://origin.internal/base/x",
    "https://origin.internal:8443/basement/x",
    "https://origin.internal:8443/",
    // Relative: resolved against the client's request, the edge's URL already.
    "/base/x",
    "x",
    "not a url",
  ])("Location %s", (location) => {
    expect(rewritten({ location }).location).toBe(location);
  });

  it("a Refresh without a URL, or naming another host", () => {
    expect(rewritten({ refresh: "30" }).refresh).toBe("30");
    expect(rewritten({ refresh: "1; url=https://elsewhere.example/x" }).refresh).toBe(
      "1; url=https://elsewhere.example/x",
    );
  });
});
