// The origin's URLs that name the upstream, made the edge's own (Location, Content-Location,
// Refresh), as nginx's `proxy_redirect default` and Apache's `ProxyPassReverse` make them; the
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
