// CORS against a hostile or careless origin and odd browser input: the edge alone
// says which pages may read an answer (never `*` with credentials, whatever the origin
// claims), its refusals stay readable to the pages the route allows, a preflight never reaches
// the origin, and a header a page may send is still stripped where the edge strips it. Each
// test asserts the reason and what (if anything) reached the origin.
import { describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness, unreachableOrigin } from "../support/harness";
import { sendMarked } from "../support/sent";

const APP = "https://app.example.com";
const EVIL = "https://evil.example";

function policy(): PolicyDocument {
  const base = basePolicy();
  return basePolicy({
    upstreams: {
      ...base.upstreams,
      // Answers with what it received; `x-respond-with` sets its response headers.
      svc: { service: "ECHO_SERVICE" },
      dead: { url: unreachableOrigin, timeout_ms: 1000 },
    },
    routes: [
      {
        name: "spa",
        methods: ["GET", "POST"],
        path: "/spa/**",
        auth: "public",
        upstream: "echo",
        inherit_default_limits: false,
        limits: [{ name: "per-ip", key: "ip", limit: 1000, window_s: 60 }],
        cors: { allow_origins: [APP], allow_credentials: true, allow_headers: ["content-type", "x-csrf-token"] },
      },
      {
        name: "star",
        methods: ["GET"],
        path: "/star/**",
        auth: "public",
        upstream: "svc",
        cors: { allow_origins: ["*"] },
      },
      {
        name: "dead",
        methods: ["GET"],
        path: "/dead/**",
        auth: "public",
        upstream: "dead",
        cors: { allow_origins: [APP], allow_credentials: true, expose_headers: ["x-request-id"] },
      },
      {
        name: "stripped",
        methods: ["POST"],
        path: "/stripped/**",
        auth: "public",
        upstream: "echo",
        // Headers the edge strips or writes itself: granting them lets a page send them, no more.
        cors: { allow_origins: [APP], allow_headers: ["x-user-sub", "x-request-id"] },
      },
      { name: "opts", methods: ["GET", "OPTIONS"], path: "/opts/**", auth: "public", upstream: "echo" },
      {
        name: "age0",
        methods: ["PUT"],
        path: "/age0/**",
        auth: "public",
        upstream: "echo",
        cors: { allow_origins: [APP], max_age_s: 0 },
      },
      {
        name: "agemax",
        methods: ["PUT"],
        path: "/agemax/**",
        auth: "public",
        upstream: "echo",
        cors: { allow_origins: [APP], max_age_s: 86400 },
      },
    ],
  });
}

/** `sendMarked`, and that the request wrote exactly one audit record, as every request here must. */
async function call(edge: Harness, url: string, init: RequestInit = {}) {
  const sent = await sendMarked(edge, url, init);
  expect(sent.records).toHaveLength(1);
  return sent;
}

const corsHeaders = (response: Response) =>
  [...response.headers.keys()].filter((name) => name.startsWith("access-control-")).sort();

const preflight = (origin: string, method: string, extra: HeadersInit = []) => {
  const headers = new Headers(extra);
  headers.set("origin", origin);
  headers.set("access-control-request-method", method);
  return { method: "OPTIONS", headers };
};

describe("a route open to every page (`*`), behind an origin that claims more", () => {
  // The origin reflects the page and allows credentials: were its headers kept beside the
  // edge's `*`, a browser would be told both, and the pair is what CORS forbids.
  const claims = JSON.stringify([
    ["vary", "Accept-Encoding"],
    ["cache-control", "public, max-age=600"],
    ["access-control-allow-origin", APP],
    ["access-control-allow-credentials", "true"],
    ["access-control-expose-headers", "x-internal-token"],
  ]);

  it("answers `*` alone: never with credentials or the origin's exposed headers; the origin's Vary is kept beside Origin", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/star/x", { headers: { origin: APP, "x-respond-with": claims } });
    expect(r.response.status).toBe(200);
    expect(JSON.parse(r.text).via).toBe("service-binding");
    expect(r.record).toMatchObject({ decision: "allow", route: "star" });
    expect(corsHeaders(r.response)).toEqual(["access-control-allow-origin"]);
    expect(r.response.headers.get("access-control-allow-origin")).toBe("*");
    expect(r.response.headers.get("vary")).toBe("Accept-Encoding, Origin");
    expect(r.response.headers.get("cache-control")).toBe("public, max-age=600");
  });

  it("answers two Origin lines with `*`, never with either page reflected", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/star/x", {
      headers: [
        ["origin", APP],
        ["origin", EVIL],
        ["x-respond-with", claims],
      ],
    });
    expect(r.response.status).toBe(200);
    expect(corsHeaders(r.response)).toEqual(["access-control-allow-origin"]);
    expect(r.response.headers.get("access-control-allow-origin")).toBe("*");
  });
});

describe("refusals a page the route allows can read", () => {
  // The page needs the CORS headers to read the problem+json at all; a page the route does not
  // allow gets none, and a cache must not hand one page's answer to the other.
  it("an unreachable origin's 502 carries the route's CORS headers, its exposed headers and Vary: Origin", async () => {
    const edge = harness(policy());
    const allowed = await call(edge, "/dead/x", { headers: { origin: APP } });
    expect(allowed.response.status).toBe(502);
    expect(allowed.body?.reason).toBe("origin_unavailable");
    expect(allowed.record).toMatchObject({
      decision: "deny",
      reason: "origin_unavailable",
      detail: "origin_unreachable",
    });
    expect(allowed.response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(allowed.response.headers.get("access-control-allow-credentials")).toBe("true");
    expect(allowed.response.headers.get("access-control-expose-headers")).toBe("x-request-id");
    expect(allowed.response.headers.get("vary")).toContain("Origin");

    const other = await call(edge, "/dead/x", { headers: { origin: EVIL } });
    expect(other.response.status).toBe(502);
    expect(corsHeaders(other.response)).toEqual([]);
    expect(other.response.headers.get("vary")).toContain("Origin");
  });

  it("a 400 from header hygiene (a credential cookie hidden in another's value) carries them, and nothing is forwarded", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/spa/x", { headers: { origin: APP, cookie: "session=s =CF_Authorization=x" } });
    expect(r.response.status).toBe(400);
    expect(r.body?.reason).toBe("bad_request");
    expect(r.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "credential_cookie_in_value" });
    expect(r.response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(r.response.headers.get("access-control-allow-credentials")).toBe("true");
    expect(r.response.headers.get("vary")).toContain("Origin");
    expect(r.seen).toHaveLength(0);
  });
});

describe("what a page may read of an allowed answer", () => {
  it("the rate-limit fields are on the answer, but no header beyond the safelisted ones is exposed unless expose_headers lists it", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/spa/x", { headers: { origin: APP } });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", route: "spa" });
    expect(r.response.headers.get("ratelimit-policy")).toBe('"per-ip";q=1000;w=60');
    expect(r.response.headers.get("x-request-id")).not.toBeNull();
    expect(corsHeaders(r.response)).toEqual(["access-control-allow-credentials", "access-control-allow-origin"]);
    expect(r.seen).toHaveLength(1);
  });
});

describe("a preflight never reaches the origin", () => {
  // The route takes OPTIONS, but its origin's CORS headers would be dropped anyway: only the
  // edge answers preflights, and this route has no CORS to answer with.
  it.each([
    ["a preflight", {}],
    ["a Private Network Access preflight", { "access-control-request-private-network": "true" }],
  ])(
    "%s to a route without CORS that itself takes OPTIONS is refused route_has_no_cors, not forwarded",
    async (_label, extra) => {
      const edge = harness(policy());
      const r = await call(edge, "/opts/x", preflight(APP, "GET", extra));
      expect(r.response.status).toBe(403);
      expect(r.body?.reason).toBe("cors_rejected");
      expect(r.record).toMatchObject({
        decision: "deny",
        reason: "cors_rejected",
        detail: "route_has_no_cors",
        route: "opts",
      });
      expect(corsHeaders(r.response)).toEqual([]);
      expect(r.response.headers.get("vary")).toContain("Origin");
      expect(r.seen).toHaveLength(0);
    },
  );

  it("an OPTIONS that is no preflight (Origin without Access-Control-Request-Method) reaches that route's origin", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/opts/x", { method: "OPTIONS", headers: { origin: APP } });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", route: "opts" });
    expect(r.seen).toHaveLength(1);
    expect(r.seen[0]).toMatchObject({ method: "OPTIONS", path: "/opts/x" });
  });

  it("a Local Network Access preflight to a CORS route is answered without granting local network access", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/spa/x", preflight(APP, "POST", { "access-control-request-local-network": "true" }));
    expect(r.response.status).toBe(204);
    expect(r.record).toMatchObject({ decision: "allow", route: "spa", status: 204 });
    expect(corsHeaders(r.response)).toEqual([
      "access-control-allow-credentials",
      "access-control-allow-headers",
      "access-control-allow-methods",
      "access-control-allow-origin",
      "access-control-max-age",
    ]);
    expect(r.seen).toHaveLength(0);
  });
});

describe("Access-Control-Request-Headers", () => {
  it("sent on two lines is read as one list, and every name in it must be allowed", async () => {
    const edge = harness(policy());
    const granted = await call(
      edge,
      "/spa/x",
      preflight(APP, "POST", [
        ["access-control-request-headers", "Content-Type"],
        ["access-control-request-headers", "X-CSRF-Token"],
      ]),
    );
    expect(granted.response.status).toBe(204);
    expect(granted.response.headers.get("access-control-allow-headers")).toBe("content-type, x-csrf-token");

    const refused = await call(
      edge,
      "/spa/x",
      preflight(APP, "POST", [
        ["access-control-request-headers", "content-type"],
        ["access-control-request-headers", "AUTHORIZATION"],
      ]),
    );
    expect(refused.response.status).toBe(403);
    expect(refused.body?.reason).toBe("cors_rejected");
    expect(refused.record).toMatchObject({ reason: "cors_rejected", detail: "header_not_allowed", route: "spa" });
    expect(corsHeaders(refused.response)).toEqual([]);
    expect(refused.seen).toHaveLength(0);
  });

  // A policy may list a header the edge strips (an identity header) or writes itself
  // (x-request-id): the page may then send it, and the origin still never gets the page's value.
  it("a header the route lets pages send but the edge strips or writes never reaches the origin as the page sent it", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/stripped/x", {
      method: "POST",
      body: "{}",
      headers: { origin: APP, "content-type": "application/json", "x-user-sub": "admin", "x-request-id": "mine" },
    });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", route: "stripped" });
    expect(r.response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(r.seen).toHaveLength(1);
    expect(r.seen[0]!.headers["x-user-sub"]).toBeUndefined();
    expect(r.seen[0]!.headers["x-request-id"]).toBe(r.response.headers.get("x-request-id"));
    expect(r.seen[0]!.headers["x-request-id"]).not.toBe("mine");
  });
});

describe("Access-Control-Max-Age", () => {
  it.each([
    ["/age0/x", "0"],
    ["/agemax/x", "86400"],
  ])("a preflight for %s is kept exactly as long as the route's max_age_s says (%s s)", async (path, age) => {
    const edge = harness(policy());
    const r = await call(edge, path, preflight(APP, "PUT"));
    expect(r.response.status).toBe(204);
    expect(r.response.headers.get("access-control-max-age")).toBe(age);
    expect(r.response.headers.get("access-control-allow-methods")).toBe("PUT");
    expect(r.seen).toHaveLength(0);
  });
});
