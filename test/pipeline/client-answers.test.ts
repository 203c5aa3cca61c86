// What clients receive when refused, and on CORS routes: the problem+json shape, challenges,
// Retry-After, no-store, the edge's request id, CORS headers and Vary on refusals, preflights,
// HEAD.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";

const APP = "https://app.example.com";
const EVIL = "https://evil.example";
const unique = () => crypto.randomUUID().slice(0, 8);

let issuer: TestIssuer;
beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

interface Problem {
  type: string;
  title: string;
  status: number;
  reason: string;
  request_id: string;
  [k: string]: unknown;
}

/** An origin (service binding) that answers 304 to a conditional request, 200 otherwise. */
const conditionalOrigin = {
  async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const request = new Request(input, init);
    if (request.headers.get("if-none-match") === '"v1"') {
      return new Response(null, { status: 304, headers: { etag: '"v1"', "x-request-id": "origin-id" } });
    }
    return new Response(request.method === "HEAD" ? null : "body", {
      headers: { etag: '"v1"', "x-request-id": "origin-id", "content-type": "text/plain" },
    });
  },
};

function policy(extra: Partial<PolicyDocument> = {}): PolicyDocument {
  return basePolicy({
    settings: { limiter_timeout_ms: 2000, realm: "api" },
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    upstreams: {
      echo: basePolicy().upstreams!.echo!,
      cond: { service: "COND" },
    },
    routes: [
      {
        name: "spa",
        methods: ["GET", "POST"],
        path: "/spa/**",
        auth: { issuers: ["idp"], scopes: { all_of: ["api:read", "api:write"] } },
        upstream: "echo",
        inherit_default_limits: false,
        limits: [{ name: `one-${unique()}`, key: "user", limit: 1, window_s: 3600 }],
        cors: {
          allow_origins: [APP],
          allow_credentials: true,
          expose_headers: ["www-authenticate", "retry-after", "x-request-id"],
          max_age_s: 120,
        },
      },
      {
        name: "cond",
        methods: ["GET"],
        path: "/cond/**",
        auth: "public",
        upstream: "cond",
        cors: { allow_origins: [APP] },
      },
      {
        name: "plain",
        methods: ["GET"],
        path: "/plain/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
      },
      {
        name: "public-cors",
        methods: ["GET", "HEAD"],
        path: "/pub/**",
        auth: "public",
        upstream: "echo",
        cors: { allow_origins: [APP] },
      },
    ],
    ...extra,
  });
}

const edge = (bindings: Record<string, unknown> = {}) =>
  harness(policy(), {}, { COND: conditionalOrigin, ...bindings });

async function expectProblem(response: Response, status: number, reason: string): Promise<Problem> {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  expect(response.headers.get("cache-control")).toBe("no-store");
  const body = (await response.json()) as Problem;
  expect(body).toMatchObject({
    type: `https://portcullis.dev/problems/${reason.replace(/_/g, "-")}`,
    status,
    reason,
  });
  expect(typeof body.title).toBe("string");
  // The edge's own id, the same in the header and the body; never the client's.
  expect(body.request_id).toMatch(/^[0-9a-f-]{36}$/);
  expect(response.headers.get("x-request-id")).toBe(body.request_id);
  return body;
}

describe("refusals: problem+json, challenges, Retry-After", () => {
  it("401/400/403/404 are problem+json with no-store, the edge's x-request-id, and RFC 6750 challenges", async () => {
    const e = edge();
    const spoof = { "x-request-id": "client-chosen" };

    const missing = await e.fetch("/plain/x", { headers: spoof });
    await expectProblem(missing, 401, "token_missing");
    expect(missing.headers.get("www-authenticate")).toBe('Bearer realm="api"');

    const invalid = await e.fetch("/plain/x", { headers: { ...spoof, authorization: "Bearer a.b.c" } });
    await expectProblem(invalid, 401, "token_invalid");
    expect(invalid.headers.get("www-authenticate")).toBe('Bearer realm="api", error="invalid_token"');

    const malformed = await e.fetch("/plain/x", { headers: { ...spoof, authorization: "Bearer a b" } });
    await expectProblem(malformed, 400, "token_malformed");
    expect(malformed.headers.get("www-authenticate")).toBe('Bearer realm="api", error="invalid_request"');

    const reader = await issuer.sign({ sub: "r", scope: "api:read" });
    const scope = await e.fetch("/spa/x", { headers: { ...spoof, authorization: `Bearer ${reader}` } });
    await expectProblem(scope, 403, "insufficient_scope");
    expect(scope.headers.get("www-authenticate")).toBe(
      'Bearer realm="api", error="insufficient_scope", scope="api:read api:write"',
    );

    const none = await e.fetch("/nowhere", { headers: spoof });
    await expectProblem(none, 404, "route_not_found");
    expect(none.headers.get("www-authenticate")).toBeNull();
  });

  it("429 and both 503s carry Retry-After as delta-seconds", async () => {
    const e = edge();
    const token = await issuer.sign({ sub: `u-${unique()}`, scope: "api:read api:write" });
    expect((await e.fetch("/spa/x", { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    const limited = await e.fetch("/spa/x", { headers: { authorization: `Bearer ${token}` } });
    await expectProblem(limited, 429, "rate_limited");
    expect(limited.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);

    const broken = {
      idFromName() {
        throw new Error("down");
      },
      get() {
        throw new Error("down");
      },
    };
    const e2 = edge({ TENANT_LIMITER: broken, ROUTE_LIMITER: broken });
    const t2 = await issuer.sign({ sub: `u-${unique()}`, scope: "api:read api:write" });
    const unavailable = await e2.fetch("/spa/x", { headers: { authorization: `Bearer ${t2}` } });
    await expectProblem(unavailable, 503, "limiter_unavailable");
    expect(unavailable.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
  });

  it("a HEAD request that is refused gets the refusal's status and headers, and no body", async () => {
    const response = await edge().fetch("/plain/x", { method: "HEAD" });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="api"');
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(await response.text()).toBe("");
  });

  it("a HEAD request forwarded to the origin keeps no body, and its x-request-id is the edge's", async () => {
    const response = await edge().fetch("/cond/x", { method: "HEAD", headers: { origin: APP } });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
    expect(response.headers.get("x-request-id")).not.toBe("origin-id");
    expect(response.headers.get("vary")).toContain("Origin");
  });
});

describe("CORS on refusals and answers", () => {
  it("a refusal on a CORS route carries ACAO, credentials and the configured expose list for an allowed page", async () => {
    const response = await edge().fetch("/spa/x", { headers: { origin: APP } });
    expect(response.status).toBe(401);
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(response.headers.get("access-control-allow-credentials")).toBe("true");
    expect(response.headers.get("access-control-expose-headers")).toBe("www-authenticate, retry-after, x-request-id");
    expect(response.headers.get("vary")).toContain("Origin");
  });

  it("no CORS headers on refusals of a non-CORS route, nor for a page a CORS route does not allow", async () => {
    const e = edge();
    for (const [path, origin] of [
      ["/plain/x", APP],
      ["/spa/x", EVIL],
      ["/spa/x", "null"],
    ] as const) {
      const response = await e.fetch(path, { headers: { origin } });
      expect(response.status).toBe(401);
      const cors = [...response.headers.keys()].filter((n) => n.startsWith("access-control-"));
      expect(cors).toEqual([]);
    }
  });

  it("a 304 from the origin on a CORS route keeps Vary: Origin and the CORS headers", async () => {
    const response = await edge().fetch("/cond/x", { headers: { origin: APP, "if-none-match": '"v1"' } });
    expect(response.status).toBe(304);
    expect(response.headers.get("vary")).toContain("Origin");
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(response.headers.get("x-request-id")).not.toBe("origin-id");
  });

  it("a preflight is answered at the edge with Max-Age and Vary, never forwarded, and never with credentials + *", async () => {
    const e = edge();
    const m = marker();
    const response = await e.fetch("/spa/x", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
        "x-test-marker": m,
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(response.headers.get("access-control-allow-credentials")).toBe("true");
    expect(response.headers.get("access-control-max-age")).toBe("120");
    expect(response.headers.get("vary")).toContain("Origin");
    expect(await originSaw(m)).toHaveLength(0);
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 204, route: "spa" });

    // allow_credentials with "*" is a policy error: every request is 500 misconfigured.
    const bad = harness(
      basePolicy({
        routes: [
          {
            name: "x",
            methods: ["GET"],
            path: "/x/**",
            auth: "public",
            upstream: "echo",
            cors: { allow_origins: ["*"], allow_credentials: true },
          },
        ],
      }),
    );
    const refused = await bad.fetch("/x/a", {
      method: "OPTIONS",
      headers: { origin: APP, "access-control-request-method": "GET" },
    });
    await expectProblem(refused, 500, "misconfigured");
    expect(refused.headers.get("access-control-allow-origin")).toBeNull();
  });

  // Refused for one page, a 204 for another: the answer depends on the Origin, so it says so.
  it("a preflight refused because of its Origin says Vary: Origin", async () => {
    const e = edge();
    const m = marker();
    const response = await e.fetch("/spa/x", {
      method: "OPTIONS",
      headers: { origin: EVIL, "access-control-request-method": "GET", "x-test-marker": m },
    });
    expect(response.status).toBe(403);
    expect(((await response.json()) as Problem).reason).toBe("cors_rejected");
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(await originSaw(m)).toHaveLength(0);
    expect(response.headers.get("vary") ?? "").toContain("Origin");
  });

  // A cache keyed without Origin must not hand one page's refusal to a page the route allows.
  it.each([
    ["for a route without CORS", "/plain/x", { "access-control-request-method": "GET" }, "route_has_no_cors"],
    [
      "for a method the route's CORS does not allow",
      "/narrow/x",
      { "access-control-request-method": "POST" },
      "method_not_allowed",
    ],
    [
      "for a header the route's CORS does not allow",
      "/spa/x",
      { "access-control-request-method": "GET", "access-control-request-headers": "authorization,x-custom" },
      "header_not_allowed",
    ],
  ])("a preflight refused %s says Vary: Origin", async (_label, path, request, detail) => {
    const base = policy();
    // Serves POST, but lets pages send only GET across origins.
    const narrow = {
      name: "narrow",
      methods: ["GET", "POST"],
      path: "/narrow/**",
      auth: "public",
      upstream: "echo",
      cors: { allow_origins: [APP], allow_methods: ["GET"] },
    } as PolicyDocument["routes"][number];
    const e = harness({ ...base, routes: [...base.routes, narrow] }, {}, { COND: conditionalOrigin });
    const m = marker();
    const response = await e.fetch(path, {
      method: "OPTIONS",
      headers: { origin: APP, "x-test-marker": m, ...request },
    });
    await expectProblem(response, 403, "cors_rejected");
    expect(e.audit.at(-1)).toMatchObject({ reason: "cors_rejected", detail });
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(await originSaw(m)).toHaveLength(0);
    expect(response.headers.get("vary") ?? "").toContain("Origin");
  });

  it("OPTIONS without Access-Control-Request-Method on a CORS route is neither answered as a preflight nor forwarded", async () => {
    const e = edge();
    const m = marker();
    const response = await e.fetch("/spa/x", { method: "OPTIONS", headers: { origin: APP, "x-test-marker": m } });
    // An actual OPTIONS request, which no route serves at this path: the methods routes take there.
    await expectProblem(response, 405, "method_not_allowed");
    expect(response.headers.get("allow")).toBe("GET, HEAD, POST");
    expect(e.audit.at(-1)).toMatchObject({ decision: "deny", reason: "method_not_allowed", method: "OPTIONS" });
    expect(response.headers.get("access-control-allow-methods")).toBeNull();
    expect(await originSaw(m)).toHaveLength(0);
  });
});
