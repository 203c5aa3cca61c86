// CORS on an authenticated route, as a browser meets it: the preflight needs no token, and the
// edge's refusals (401, 403, 429) carry the route's CORS headers and `Vary: Origin`, so the
// page can read why it was refused and no cache hands one page's answer to another.
import { describe, expect, it } from "vitest";
import type { CorsConfig, HttpMethod, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer } from "../support/issuers";

const APP = "https://app.example.com";

async function edge() {
  const issuer = await makeIssuer("ES256");
  const h = harness(
    basePolicy({
      issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
      routes: [
        {
          name: "v1",
          methods: ["GET", "DELETE"],
          path: "/v1/**",
          auth: { issuers: ["main"], scopes: { all_of: ["api:write"] } },
          upstream: "echo",
          inherit_default_limits: false,
          limits: [{ name: "one-per-hour", key: "user", limit: 1, window_s: 3600 }],
          cors: { allow_origins: [APP], allow_methods: ["GET"], allow_credentials: true },
        },
      ],
    }),
  );
  return { issuer, edge: h };
}

/** A public route to the echo origin, with these CORS settings. */
function publicCorsRoute(name: string, methods: HttpMethod[], path: string, cors: CorsConfig): RouteConfig {
  return { name, methods, path, auth: "public", upstream: "echo", cors };
}

/**
 * An edge where a route of its own (`earlier`, without CORS) takes some methods at `/x/admin`
 * before `/x/**` (route `x`, with CORS), both for callers of a fresh issuer.
 */
async function edgeWithEarlierRoute(
  earlier: { name: string; methods: HttpMethod[] },
  x: { methods: HttpMethod[]; cors: CorsConfig },
) {
  const issuer = await makeIssuer("ES256");
  const auth = { issuers: ["main"] };
  return harness(
    basePolicy({
      issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
      routes: [
        { ...earlier, path: "/x/admin", auth, upstream: "echo" },
        { name: "x", ...x, path: "/x/**", auth, upstream: "echo" },
      ],
    }),
  );
}

const preflight = (method: string, origin = APP) => ({
  method: "OPTIONS",
  headers: { origin, "access-control-request-method": method, "access-control-request-headers": "authorization" },
});

describe("CORS on an authenticated route", () => {
  it("answers the preflight without a token, before authentication", async () => {
    const { edge: e } = await edge();
    const response = await e.fetch("/v1/things", preflight("GET"));
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(response.headers.get("access-control-allow-credentials")).toBe("true");
    expect(response.headers.get("vary")).toContain("Origin");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 204 });
  });

  it("refuses a preflight for a method the route serves but its CORS does not allow", async () => {
    const { edge: e } = await edge();
    const response = await e.fetch("/v1/things", preflight("DELETE"));
    expect(response.status).toBe(403);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(e.audit.at(-1)).toMatchObject({ reason: "cors_rejected", detail: "method_not_allowed" });
  });

  it("answers a preflight for a method no route serves at that path as the request itself: 405", async () => {
    const { edge: e } = await edge();
    const response = await e.fetch("/v1/things", preflight("PUT"));
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET, HEAD, DELETE");
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(e.audit.at(-1)).toMatchObject({ reason: "method_not_allowed" });
  });

  it("fills in what the route's cors leaves out: its methods, authorization and content-type, 600 s", async () => {
    const h = harness(
      basePolicy({ routes: [publicCorsRoute("spa", ["GET", "POST"], "/spa/**", { allow_origins: [APP] })] }),
    );
    const response = await h.fetch("/spa/x", preflight("POST"));
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-methods")).toBe("GET, POST");
    expect(response.headers.get("access-control-allow-headers")).toBe("authorization, content-type");
    expect(response.headers.get("access-control-max-age")).toBe("600");
  });

  it('refuses a preflight from the opaque "null" origin', async () => {
    const { edge: e } = await edge();
    const response = await e.fetch("/v1/things", preflight("GET", "null"));
    expect(response.status).toBe(403);
    expect(e.audit.at(-1)).toMatchObject({ reason: "cors_rejected", detail: "origin_not_allowed" });
  });

  it("puts the CORS headers and Vary: Origin on 401, 403 and 429 refusals", async () => {
    const { issuer, edge: e } = await edge();
    const readable = (response: Response) => {
      expect(response.headers.get("access-control-allow-origin")).toBe(APP);
      expect(response.headers.get("vary")).toContain("Origin");
      expect(response.headers.get("cache-control")).toBe("no-store");
    };
    const missing = await e.fetch("/v1/things", { headers: { origin: APP } });
    expect(missing.status).toBe(401);
    readable(missing);
    // Refused before the limits decided: nothing was counted, and no rate-limit fields say otherwise.
    expect(missing.headers.get("ratelimit-policy")).toBeNull();
    expect(missing.headers.get("x-ratelimit-limit")).toBeNull();

    const reader = await issuer.sign({ sub: "reader", scope: "api:read" });
    const scope = await e.fetch("/v1/things", { headers: { origin: APP, authorization: `Bearer ${reader}` } });
    expect(scope.status).toBe(403);
    readable(scope);

    const writer = await issuer.sign({ sub: "writer", scope: "api:write" });
    const first = await e.fetch("/v1/things", { headers: { origin: APP, authorization: `Bearer ${writer}` } });
    expect(first.status).toBe(200);
    expect(first.headers.get("ratelimit-policy")).toBe('"one-per-hour";q=1;w=3600');
    const limited = await e.fetch("/v1/things", { headers: { origin: APP, authorization: `Bearer ${writer}` } });
    expect(limited.status).toBe(429);
    readable(limited);
    expect(limited.headers.get("x-ratelimit-limit")).toBe("1");
    // A page the route does not allow gets no CORS headers on a refusal, but the same Vary.
    const other = await e.fetch("/v1/things", { headers: { origin: "https://evil.example" } });
    expect(other.status).toBe(401);
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    expect(other.headers.get("vary")).toContain("Origin");
  });
});

describe("a preflight's answer grants only what this route takes at this URL", () => {
  // A browser keeps a preflight's methods per origin and URL, and then sends them without
  // asking again: a method an earlier route takes at the URL must not be granted here.
  it("leaves out a method an earlier route without CORS takes at the URL; grants it where this route takes it", async () => {
    const e = await edgeWithEarlierRoute(
      { name: "admin-delete", methods: ["DELETE"] },
      { methods: ["GET", "DELETE"], cors: { allow_origins: [APP], allow_credentials: true } },
    );
    // The DELETE preflight is the other route's to answer, and it has no CORS.
    const refused = await e.fetch("/x/admin", preflight("DELETE"));
    expect(refused.status).toBe(403);
    expect(e.audit.at(-1)).toMatchObject({ route: "admin-delete", detail: "route_has_no_cors" });

    const guarded = await e.fetch("/x/admin", preflight("GET"));
    expect(guarded.status).toBe(204);
    expect(guarded.headers.get("access-control-allow-methods")).toBe("GET");

    const elsewhere = await e.fetch("/x/things", preflight("GET"));
    expect(elsewhere.status).toBe(204);
    expect(elsewhere.headers.get("access-control-allow-methods")).toBe("GET, DELETE");
  });

  it("is kept by no browser where another route takes GET, HEAD or POST at the URL: those need no kept method, only kept headers", async () => {
    const e = await edgeWithEarlierRoute(
      { name: "admin-post", methods: ["POST"] },
      { methods: ["GET", "PUT"], cors: { allow_origins: [APP] } },
    );
    const shared = await e.fetch("/x/admin", preflight("PUT"));
    expect(shared.status).toBe(204);
    expect(shared.headers.get("access-control-allow-headers")).toBe("authorization, content-type");
    expect(shared.headers.get("access-control-max-age")).toBe("0");
    const own = await e.fetch("/x/things", preflight("PUT"));
    expect(own.headers.get("access-control-max-age")).toBe("600");
  });

  it("is kept by no browser where another route takes any method at the URL: a kept header would serve that route's requests", async () => {
    const route = (name: string, methods: HttpMethod[], path: string, headers: string[]) =>
      publicCorsRoute(name, methods, path, { allow_origins: [APP], allow_headers: headers });
    const e = harness(
      basePolicy({
        routes: [
          route("del", ["DELETE"], "/x/admin", ["authorization"]),
          route("wide", ["GET", "PUT"], "/x/**", ["authorization", "x-admin"]),
        ],
      }),
    );
    const asking = (method: string, headers: string) => ({
      method: "OPTIONS",
      headers: { origin: APP, "access-control-request-method": method, "access-control-request-headers": headers },
    });
    // DELETE's own route refuses x-admin; the other route grants it at the same URL for PUT,
    // and a browser keeping that would send DELETE with x-admin unasked.
    expect((await e.fetch("/x/admin", asking("DELETE", "x-admin"))).status).toBe(403);
    const put = await e.fetch("/x/admin", asking("PUT", "x-admin"));
    expect(put.status).toBe(204);
    expect(put.headers.get("access-control-max-age")).toBe("0");
    const del = await e.fetch("/x/admin", asking("DELETE", "authorization"));
    expect(del.headers.get("access-control-max-age")).toBe("0");
  });
});

describe("CORS preflight and letter case", () => {
  it("grants no method the route stage refuses at that URL as ambiguous_case", async () => {
    // A DELETE on /api/… is /Api/… to an origin that ignores case: refused as ambiguous_case.
    const e = harness(
      basePolicy({
        routes: [
          { name: "legacy", methods: ["DELETE", "OPTIONS"], path: "/Api/**", auth: "public", upstream: "echo" },
          publicCorsRoute("api", ["GET", "DELETE"], "/api/**", { allow_origins: [APP] }),
        ],
      }),
    );
    const refused = await e.fetch("/api/x", { method: "DELETE", headers: { origin: APP } });
    await refused.arrayBuffer();
    expect(e.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "ambiguous_case" });
    const response = await e.fetch("/api/x", {
      method: "OPTIONS",
      headers: { origin: APP, "access-control-request-method": "GET" },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-methods")).toBe("GET");
  });
});

describe("CORS on an actual response", () => {
  it("lets a page read only answers to the methods allow_methods grants: a simple POST gets no Access-Control-Allow-Origin", async () => {
    const e = harness(
      basePolicy({
        routes: [
          publicCorsRoute("narrow", ["GET", "POST"], "/narrow/**", {
            allow_origins: [APP],
            allow_methods: ["GET"],
            allow_credentials: true,
            expose_headers: ["x-a"],
          }),
        ],
      }),
    );
    const post = await e.fetch("/narrow/x", {
      method: "POST",
      body: "a=1",
      headers: { origin: APP, "content-type": "text/plain" },
    });
    expect(post.status).toBe(200);
    expect(post.headers.get("vary")).toContain("Origin");
    expect([...post.headers.keys()].filter((name) => name.startsWith("access-control-"))).toEqual([]);
    for (const method of ["GET", "HEAD"]) {
      const granted = await e.fetch("/narrow/x", { method, headers: { origin: APP } });
      expect(granted.headers.get("access-control-allow-origin")).toBe(APP);
      expect(granted.headers.get("access-control-allow-credentials")).toBe("true");
    }
  });
});
