// README claims through the whole pipeline (workerd, real KV and Durable Objects, loopback
// echo origin and issuer): the jwks_unavailable answer, the size defaults at their boundary,
// the default wait for an origin, and which responses carry rate-limit fields.
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, b64url, makeIssuer, type TestIssuer } from "../support/issuers";
import { held } from "../support/waiting";

const unique = () => crypto.randomUUID().slice(0, 8);

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

function authPolicy(idpUrl: string, extra: Partial<PolicyDocument> = {}): PolicyDocument {
  return basePolicy({
    settings: { limiter_timeout_ms: 2000 },
    issuers: { idp: { kind: "oidc", issuer: idpUrl, audiences: [AUDIENCE] } },
    routes: [
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
      {
        name: "scoped",
        methods: ["GET"],
        path: "/scoped/**",
        auth: { issuers: ["idp"], scopes: { all_of: ["api:write"] } },
        upstream: "echo",
        limits: [{ name: `u-${unique()}`, key: "user", limit: 100, window_s: 60 }],
      },
      {
        name: "read",
        methods: ["GET"],
        path: "/v1/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
        limits: [{ name: `u-${unique()}`, key: "user", limit: 100, window_s: 60 }],
      },
    ],
    ...extra,
  });
}

describe("jwks_unavailable", () => {
  it("a key set that cannot be had is 503 problem+json with Retry-After, nothing forwarded", async () => {
    const down = await makeIssuer("ES256");
    await down.setMode("down");
    try {
      const edge = harness(authPolicy(down.url));
      const m = marker();
      const response = await edge.fetch("/v1/x", {
        headers: { authorization: `Bearer ${await down.sign()}`, "x-test-marker": m },
      });
      expect(response.status).toBe(503);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      const body = (await response.json()) as { reason: string; status: number; request_id: string };
      expect(body).toMatchObject({ reason: "jwks_unavailable", status: 503 });
      expect(body.request_id).toBe(response.headers.get("x-request-id"));
      // The issuer's refresh cooldown (default 30 s): when it may be asked again.
      expect(response.headers.get("retry-after")).toBe("30");
      expect(await originSaw(m)).toHaveLength(0);
      expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "jwks_unavailable", status: 503 });
    } finally {
      await down.setMode("ok");
    }
  });

  it("says to retry after the issuer's own refresh cooldown", async () => {
    const down = await makeIssuer("ES256");
    await down.setMode("down");
    try {
      const policy = authPolicy(down.url);
      policy.issuers!.idp = { ...policy.issuers!.idp!, refresh_cooldown_s: 7 } as never;
      const edge = harness(policy);
      const m = marker();
      const response = await edge.fetch("/v1/x", {
        headers: { authorization: `Bearer ${await down.sign()}`, "x-test-marker": m },
      });
      expect(response.status).toBe(503);
      expect(((await response.json()) as { reason: string }).reason).toBe("jwks_unavailable");
      expect(response.headers.get("retry-after")).toBe("7");
      expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "jwks_unavailable", status: 503 });
      expect(await originSaw(m)).toHaveLength(0);
    } finally {
      await down.setMode("ok");
    }
  });
});

describe("size defaults at their boundary", () => {
  it("max_url_bytes defaults to 8192: a URL of 8192 is served, 8193 is 400", async () => {
    const edge = harness(basePolicy());
    const prefix = "https://edge.test/public/";
    const at = prefix + "a".repeat(8192 - prefix.length);
    expect(at.length).toBe(8192);
    expect((await edge.fetch(at)).status).toBe(200);
    const over = await edge.fetch(`${at}b`);
    expect(over.status).toBe(400);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "url_too_long" });
  });

  it("max_token_bytes defaults to 8192: an 8193-character token is refused unparsed, 8192 is parsed", async () => {
    const edge = harness(authPolicy(issuer.url));
    const header = b64url(JSON.stringify({ alg: "ES256", kid: "nope" }));
    const shape = (length: number) => {
      const payload = b64url(JSON.stringify({ iss: issuer.url, pad: "" }));
      const fill = length - header.length - payload.length - 2;
      return `${header}.${payload}.${"A".repeat(fill)}`;
    };
    const at = shape(8192);
    expect(at.length).toBe(8192);
    await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${at}` } });
    // Parsed: its issuer was found and its kid looked up in the issuer's key set.
    expect(edge.audit.at(-1)).toMatchObject({ reason: "token_invalid", detail: "kid_unknown" });
    await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${shape(8193)}` } });
    expect(edge.audit.at(-1)).toMatchObject({ reason: "token_invalid", detail: "token_too_large" });
  });
});

describe("an upstream's timeout_ms", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  // On a fake clock: the origin (a service binding) never answers, and the edge's wait for it
  // runs out at 30 s exactly when the policy sets no timeout_ms.
  it("defaults to 30 s: an origin that has not answered by then is 504 origin_timeout", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const called = held<void>();
    const silent = {
      fetch: () => {
        called.resolve();
        return new Promise<Response>(() => {});
      },
    };
    const edge = harness(
      basePolicy({
        upstreams: { silent: { service: "SILENT" } },
        routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "silent" }],
      }),
      {},
      { SILENT: silent },
    );
    let answered = false;
    const response = edge.fetch("/public/x").then((r) => {
      answered = true;
      return r;
    });
    await called.promise;
    await vi.advanceTimersByTimeAsync(29_999);
    expect(answered).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    // Refused now; the harness hands the answer over once the record is written, which the
    // edge defers to a timer of its own (the fake clock runs such a timer a millisecond on).
    await vi.advanceTimersByTimeAsync(1);
    expect(answered).toBe(true);
    expect((await response).status).toBe(504);
    expect(edge.audit.at(-1)).toMatchObject({
      reason: "origin_timeout",
      detail: "origin_timeout",
      upstream_ms: 30_000,
    });
  });
});

const RATE_LIMIT_FIELDS = [
  "ratelimit",
  "ratelimit-policy",
  "x-ratelimit-limit",
  "x-ratelimit-remaining",
  "x-ratelimit-reset",
];

describe("rate-limit response fields", () => {
  it("a 401 or 403 on a limited route carries no rate-limit fields; an admitted request does", async () => {
    const edge = harness(authPolicy(issuer.url));
    const sub = `u-${unique()}`;
    const fields = RATE_LIMIT_FIELDS;
    const missing = await edge.fetch("/scoped/x");
    expect(missing.status).toBe(401);
    for (const name of fields) expect(missing.headers.get(name)).toBeNull();
    const scope = await edge.fetch("/scoped/x", {
      headers: { authorization: `Bearer ${await issuer.sign({ sub, scope: "api:read" })}` },
    });
    expect(scope.status).toBe(403);
    for (const name of fields) expect(scope.headers.get(name)).toBeNull();
    const ok = await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${await issuer.sign({ sub })}` } });
    expect(ok.status).toBe(200);
    for (const name of fields) expect(ok.headers.get(name)).not.toBeNull();
    expect(ok.headers.get("x-ratelimit-limit")).toBe("100");
    expect(ok.headers.get("x-ratelimit-remaining")).toBe("99");
  });

  // Refused before the limits were asked, nothing was counted: there is nothing to report.
  it("a 400 or a preflight, refused or answered, on a limited route carries no rate-limit fields", async () => {
    const app = "https://app.example.com";
    const base = authPolicy(issuer.url);
    const open = {
      name: "open",
      methods: ["GET"],
      path: "/open/**",
      auth: "public",
      upstream: "echo",
      limits: [{ name: `ip-${unique()}`, key: "ip", limit: 100, window_s: 60 }],
      cors: { allow_origins: [app] },
    } as PolicyDocument["routes"][number];
    const edge = harness({ ...base, routes: [...base.routes, open] });
    const client = { "cf-connecting-ip": "198.51.100.7" };
    const expectNoFields = (response: Response) => {
      for (const name of RATE_LIMIT_FIELDS) expect(response.headers.get(name), name).toBeNull();
    };

    const cookies = await edge.fetch("/open/x", {
      headers: { ...client, cookie: Array.from({ length: 1001 }, (_, i) => `c${i}=1`).join("; ") },
    });
    expect(cookies.status).toBe(400);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "too_many_cookies" });
    expectNoFields(cookies);

    const token = await issuer.sign({ sub: `u-${unique()}` });
    const twice = await edge.fetch(`/v1/x?access_token=${token}`, { headers: { authorization: `Bearer ${token}` } });
    expect(twice.status).toBe(400);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "token_malformed" });
    expectNoFields(twice);

    for (const [path, origin] of [
      ["/open/x", "https://evil.example"],
      ["/v1/x", app],
    ] as const) {
      const refused = await edge.fetch(path, {
        method: "OPTIONS",
        headers: { ...client, origin, "access-control-request-method": "GET" },
      });
      expect(refused.status).toBe(403);
      expect(edge.audit.at(-1)).toMatchObject({ reason: "cors_rejected" });
      expectNoFields(refused);
    }
    const preflight = await edge.fetch("/open/x", {
      method: "OPTIONS",
      headers: { ...client, origin: app, "access-control-request-method": "GET" },
    });
    expect(preflight.status).toBe(204);
    expectNoFields(preflight);

    // The route is limited: a request the limits admit says so.
    const admitted = await edge.fetch("/open/x", { headers: client });
    expect(admitted.status).toBe(200);
    expect(admitted.headers.get("x-ratelimit-limit")).toBe("100");
  });
});
