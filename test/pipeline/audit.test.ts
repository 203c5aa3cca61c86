// The audit record (one JSON line per request, off the response path) and invariant 5:
// no credential reaches any log line, on the success path or on any error path.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it, type MockInstance, vi } from "vitest";
import { type AppOptions, createApp } from "../../src/app";
import { type AuditRecord, consoleSink } from "../../src/core/audit";
import type { DenyReason } from "../../src/core/deny";
import type { PolicyDocument } from "../../src/core/policy-types";
import { RECORD_FIELDS } from "../support/record-fields";
import { uploadFromClient } from "../support/forward-scenarios";
import { basePolicy, echoOrigin, harness, marker, originSaw, unreachableOrigin } from "../support/harness";
import { AUDIENCE, makeIssuer, makeKey, type TestIssuer } from "../support/issuers";
import { held, heldLimiter, heldOrigin } from "../support/waiting";

/** The base policy with its public route's origin behind the binding `HELD_ORIGIN` (see `heldOrigin`). */
function heldPolicy(): PolicyDocument {
  return basePolicy({
    upstreams: { held: { service: "HELD_ORIGIN", timeout_ms: 5000 } },
    routes: [{ name: "public", methods: ["GET", "POST"], path: "/public/**", auth: "public", upstream: "held" }],
  });
}

describe("audit record", () => {
  it("has every documented field, null when absent, and nothing from the client's headers", async () => {
    const edge = harness(basePolicy());
    const request = new Request("https://edge.test/public/a/../b?secret=1", {
      method: "POST",
      body: "x",
      headers: { "cf-connecting-ip": "203.0.113.9", "user-agent": "probe/1.0" },
      cf: { colo: "LHR", asn: 64500, country: "GB" },
    });
    const response = await edge.fetch(request);
    expect(response.status).toBe(200);
    expect(edge.audit).toHaveLength(1);
    const record = edge.audit[0] as AuditRecord;
    expect(Object.keys(record)).toEqual(RECORD_FIELDS);
    expect(record).toEqual({
      ts: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      request_id: response.headers.get("x-request-id"),
      edge_pop: "LHR",
      tenant_id: null,
      user_sub: null,
      issuer: null,
      token_hash: null,
      method: "POST",
      path: "/public/b",
      route: "public",
      decision: "allow",
      reason: null,
      detail: null,
      matched_rule: "policy:public@v7",
      status: 200,
      upstream: "echo",
      latency_ms: expect.any(Number),
      authz_ms: null,
      limit_ms: null,
      upstream_ms: expect.any(Number),
      limit: null,
      failed_open: null,
      client_asn: 64500,
      client_country: "GB",
      key_source: null,
    });
    expect(record.latency_ms).toBeGreaterThanOrEqual(record.upstream_ms as number);
    // The client's IP and user agent are not audit data; the query string never is.
    const line = edge.logs.join("\n");
    for (const absent of ["203.0.113.9", "probe/1.0", "secret=1"]) expect(line).not.toContain(absent);
  });

  it("records null for Cloudflare metadata a request does not carry", async () => {
    const edge = harness(basePolicy());
    await edge.fetch("/nowhere");
    expect(edge.audit[0]).toMatchObject({
      edge_pop: null,
      client_asn: null,
      client_country: null,
      route: null,
      matched_rule: null,
      upstream: null,
      decision: "deny",
      reason: "route_not_found",
      status: 404,
    });
  });

  it("is written off the response path: the response does not wait for the sinks", async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const written: AuditRecord[] = [];
    const app = createApp(basePolicy(), {
      auditSinks: [
        async (record) => {
          await held;
          written.push(record);
        },
      ],
    });
    const ctx = createExecutionContext();
    const response = await app.fetch(new Request("https://edge.test/public/x"), env, ctx);
    expect(response.status).toBe(200);
    expect(written).toHaveLength(0);
    release();
    await waitOnExecutionContext(ctx);
    expect(written).toHaveLength(1);
    expect(written[0]?.request_id).toBe(response.headers.get("x-request-id"));
  });

  it("hands the response back before even a synchronous sink runs", async () => {
    const order: string[] = [];
    const app = createApp(basePolicy(), { auditSinks: [() => void order.push("sink")] });
    const ctx = createExecutionContext();
    const response = await app.fetch(new Request("https://edge.test/public/x"), env, ctx);
    order.push("response");
    expect(response.status).toBe(200);
    await waitOnExecutionContext(ctx);
    expect(order).toEqual(["response", "sink"]);
  });

  it("keeps serving and keeps writing to the other sinks when one sink fails", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      const edge = harness(basePolicy(), {
        auditSinks: [
          () => {
            throw new Error("sink down: Bearer should-not-be-logged");
          },
          async () => {
            throw new TypeError("sink rejected: Bearer should-not-be-logged");
          },
        ],
      });
      const response = await edge.fetch("/public/x");
      expect(response.status).toBe(200);
      expect(edge.audit).toHaveLength(1);
      const lines = errors.mock.calls.map((call) => call.join(" "));
      // A sink that throws and one whose promise rejects are both reported, by class only.
      expect(lines).toContain("portcullis: audit sink failed (Error)");
      expect(lines).toContain("portcullis: audit sink failed (TypeError)");
      expect(lines.join("\n")).not.toContain("should-not-be-logged");
    } finally {
      errors.mockRestore();
    }
  });

  it("writes to every sink even while another sink hangs", async () => {
    // A collector that never answers (no timeout on its fetch) must not hold the other sinks'
    // records back until the runtime ends the request's waitUntil work and drops them.
    // Were the other sinks held back, `written` would never settle: the test's own timeout.
    const written = held<AuditRecord>();
    const app = createApp(basePolicy(), {
      auditSinks: [() => new Promise<void>(() => undefined), (record) => written.resolve(record)],
    });
    const response = await app.fetch(new Request("https://edge.test/public/x"), env, createExecutionContext());
    expect(response.status).toBe(200);
    expect((await written.promise).request_id).toBe(response.headers.get("x-request-id"));
  });

  it("records a client that goes away before its answer once, as client_closed, with what was known: forwarded, so allowed", async () => {
    // The echo origin behind a binding that holds its answer: the client leaves once the origin
    // has answered, before the edge has the answer.
    const origin = heldOrigin(echoOrigin);
    const edge = harness(heldPolicy(), {}, { HELD_ORIGIN: origin.binding });
    const m = marker();
    const client = new AbortController();
    // The runtime aborts the request's signal when its client disconnects (enable_request_signal).
    const request = new Request("https://edge.test/public/slow", {
      signal: client.signal,
      headers: { "x-test-marker": m },
    });
    const answered = edge.fetch(request);
    expect(await origin.settled.promise).toBe("answered");
    client.abort();
    origin.release.resolve();
    // Here the pipeline still finishes (Cloudflare would cancel it): that must not add a record.
    expect((await answered).status).toBe(200);
    expect(await originSaw(m)).toHaveLength(1);
    expect(edge.audit).toHaveLength(1);
    // The origin had the request: hanging up does not move it among the refused ones.
    expect(edge.audit[0]).toMatchObject({
      decision: "allow",
      reason: "client_closed",
      detail: "client_disconnected",
      status: 499,
      route: "public",
      path: "/public/slow",
      upstream: "held",
    });
    expect(edge.dataPoints).toHaveLength(1);
  });

  /** A POST of "part of it" and then what the test feeds, from a client it can make hang up (`uploadFromClient`). */
  const upload = (edge: ReturnType<typeof harness>, headers: Record<string, string>) =>
    uploadFromClient(edge, "/public/upload", "part of it", headers);

  it("records a client that hangs up mid-upload as refused: the origin never had the whole request", async () => {
    const origin = heldOrigin(echoOrigin);
    const edge = harness(heldPolicy(), {}, { HELD_ORIGIN: origin.binding });
    const m = marker();
    const { client, feed, firstPartTaken, answered } = upload(edge, { "x-test-marker": m });
    await firstPartTaken;
    client.abort();
    feed.error(new Error("client went away"));
    // The harness waits for the request's waitUntil work, the record's included.
    await answered;
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "deny", reason: "client_closed", status: 499 });
    // Torn down, not ended: the origin request failed, and the origin recorded no request.
    expect(await origin.settled.promise).toBe("failed");
    expect(await originSaw(m)).toHaveLength(0);
  });

  it("records a client that hangs up after its whole upload, while the origin works on it, as allowed", async () => {
    const origin = heldOrigin(echoOrigin);
    const edge = harness(heldPolicy(), {}, { HELD_ORIGIN: origin.binding });
    const m = marker();
    const { client, feed, answered } = upload(edge, { "x-test-marker": m });
    feed.close();
    // The origin has answered, so it had the whole body; its answer is held back, as an
    // origin's that works on the request a while.
    expect(await origin.settled.promise).toBe("answered");
    client.abort();
    origin.release.resolve();
    await answered;
    expect((await originSaw(m)).map((seen) => seen.body_bytes)).toEqual([10]);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: "client_closed", status: 499 });
  });

  it("keeps client_closed when the origin's answer or a limiter's refusal lands in the same moment", async () => {
    // What a stage still running decides after the disconnect does not change the record.
    const originCalled = held<void>();
    const originAnswer = held<Response>();
    // The real route object, asked only when the test says: its one slot for this address is
    // taken first, so the held request's answer is the object's own refusal.
    const {
      namespace: limiter,
      called: limiterCalled,
      go: limiterAnswers,
      answered: limiterAnswered,
    } = heldLimiter((env as unknown as { ROUTE_LIMITER: DurableObjectNamespace }).ROUTE_LIMITER);
    const limitedRoute = `limited-${crypto.randomUUID().slice(0, 8)}`;
    const address = { "cf-connecting-ip": "192.0.2.58" };
    const policy = basePolicy({
      settings: { limiter_timeout_ms: 2000 },
      upstreams: { held: { service: "HELD_ORIGIN" }, echo: { url: echoOrigin } },
      routes: [
        { name: "held", methods: ["GET"], path: "/held/**", auth: "public", upstream: "held" },
        {
          name: limitedRoute,
          methods: ["GET"],
          path: "/limited/**",
          auth: "public",
          upstream: "echo",
          limits: [{ name: "per-ip", key: "ip", limit: 1, window_s: 3600 }],
        },
      ],
    });
    expect((await harness(policy).fetch("/limited/x", { headers: address })).status).toBe(200);
    const edge = harness(
      policy,
      {},
      {
        HELD_ORIGIN: {
          fetch: () => {
            originCalled.resolve();
            return originAnswer.promise;
          },
        },
        ROUTE_LIMITER: limiter,
      },
    );
    const cases = [
      {
        path: "/held/x",
        route: "held",
        // The origin has the request: allowed, whatever it answers now.
        decision: "allow",
        called: originCalled.promise,
        land: () => originAnswer.resolve(new Response("late")),
      },
      {
        path: "/limited/x",
        route: limitedRoute,
        // Still waiting on the limiter: never forwarded.
        decision: "deny",
        called: limiterCalled.promise,
        land: () => limiterAnswers.resolve(),
      },
    ];
    const m = marker();
    for (const [i, { path, route, decision, called, land }] of cases.entries()) {
      const client = new AbortController();
      const answered = edge.fetch(
        new Request(`https://edge.test${path}`, { signal: client.signal, headers: { ...address, "x-test-marker": m } }),
      );
      await called;
      client.abort();
      land();
      // The harness waits for the request's waitUntil work, the record's included.
      await answered;
      expect(edge.audit).toHaveLength(i + 1);
      expect(edge.audit[i]).toMatchObject({
        decision,
        reason: "client_closed",
        detail: "client_disconnected",
        status: 499,
        route,
      });
    }
    expect(edge.audit).toHaveLength(2);
    // What landed was a refusal indeed: the address had used its one request.
    expect(await limiterAnswered.promise).toMatchObject({ allowed: false });
    // Neither reached the echo origin: the held one has its own, the limited one was refused.
    expect(await originSaw(m)).toHaveLength(0);
  });

  it("goes to stdout as one JSON line by default", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    try {
      const edge = harness(basePolicy(), { auditSinks: [consoleSink] });
      await edge.fetch("/public/x");
      const lines = log.mock.calls.map((call) => String(call[0]));
      const records = lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
      expect(records).toHaveLength(1);
      expect(records[0]).toEqual(edge.audit[0]);
      expect(lines.every((line) => !line.includes("\n"))).toBe(true);
    } finally {
      log.mockRestore();
    }
  });

  it("names the path of a request refused for its size, when the path itself is sound", async () => {
    const edge = harness(basePolicy({ settings: { max_header_bytes: 1024, max_url_bytes: 512 } }));
    const big = await edge.fetch("/public/orders/42", { headers: { "x-padding": "p".repeat(1200) } });
    const long = await edge.fetch(`/public/orders/./43?q=${"q".repeat(600)}`);
    const both = await edge.fetch(`/public/a%2fb?q=${"q".repeat(600)}`);
    expect([big.status, long.status, both.status]).toEqual([400, 400, 400]);
    expect(edge.audit.map((r) => [r.detail, r.path])).toEqual([
      ["headers_too_large", "/public/orders/42"],
      ["url_too_long", "/public/orders/43"],
      // A path refused for itself is still not recorded; the size is what is refused first.
      ["url_too_long", null],
    ]);
  });

  it("names the route of a request refused because its service binding is missing", async () => {
    const edge = harness(
      basePolicy({
        version: 3,
        upstreams: { ghost: { service: "NO_SUCH_BINDING" } },
        routes: [{ name: "ghost", methods: ["GET"], path: "/ghost/**", auth: "public", upstream: "ghost" }],
      }),
    );
    expect((await edge.fetch("/ghost/x")).status).toBe(500);
    expect(edge.audit).toEqual([
      expect.objectContaining({
        reason: "misconfigured",
        detail: "service_binding_missing:NO_SUCH_BINDING",
        route: "ghost",
        matched_rule: "policy:ghost@v3",
        upstream: "ghost",
      }),
    ]);
    expect(edge.dataPoints[0]?.blobs?.[2]).toBe("ghost");
  });

  it("records a JWT put in the path as [jwt]", async () => {
    const jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
    const jwe = "eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVy.dGFn";
    const edge = harness(basePolicy());
    await edge.fetch(`/public/magic/${jws}/x`);
    await edge.fetch(`/public/${jwe}`);
    await edge.fetch(`/public/t/${jws}.json`);
    // Kept escaped in the canonical path: `token%3D…` is encodeURIComponent("token=" + jwt).
    await edge.fetch(`/public/cb/token%3D${jws}`);
    await edge.fetch(`/public/auth/Bearer ${jws}`);
    // Glued to a word by `-` or `_` (sent escaped too: `%5F` is `_` in the canonical path).
    await edge.fetch(`/public/magic-link-${jws}`);
    await edge.fetch(`/public/cb/id_token_${jwe}`);
    await edge.fetch(`/public/cb/id_token%5F${jws}`);
    // Two in one run (recorded as one `[jwt]`: the first one's payload reads as a JWE's
    // header); an unsecured one (an empty signature).
    await edge.fetch(`/public/${jws}.${jws}`);
    await edge.fetch("/public/eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0..json");
    for (const word of [
      "eyJ-not-a-token.json",
      "heyJude.live.mp3",
      "eyJude.live.mp3",
      "MoneyJar.v1.2.zip",
      "key-eyJ.tar.gz",
    ])
      await edge.fetch(`/public/${word}`);
    expect(edge.audit.map((r) => r.path)).toEqual([
      "/public/magic/[jwt]/x",
      "/public/[jwt]",
      "/public/t/[jwt].json",
      "/public/cb/token%3D[jwt]",
      "/public/auth/Bearer%20[jwt]",
      "/public/magic-link-[jwt]",
      "/public/cb/id_token_[jwt]",
      "/public/cb/id_token_[jwt]",
      "/public/[jwt]",
      "/public/[jwt].json",
      "/public/eyJ-not-a-token.json",
      "/public/heyJude.live.mp3",
      "/public/eyJude.live.mp3",
      "/public/MoneyJar.v1.2.zip",
      "/public/key-eyJ.tar.gz",
    ]);
  });
});

// ── Secrets never reach logs ─────────────────────────────────────────────────────────────
//
// Every case sends the same credentials (a real-looking JWT as `Authorization: Bearer`, an
// Access assertion in the `CF_Authorization` cookie, an API key), then asserts that no
// captured line contains any of them: audit records, metrics data points, every console.*
// call, and the response headers. Cases with `live` send a token signed by a real test
// issuer instead of the fake bearer, and that token joins the list of secrets.
//
// To add a case (a new deny reason, a new failure path), append one entry to CASES:
//   { name, reasons: ["<the reason the edge must answer>"], path: "/…", … }
// - `policy: (base) => …` rewrites SECRETS_POLICY (swap an upstream, add a limit with
//   `withLimit`, change a setting);
// - `init` adds request headers or a method ("" deletes one of the default credentials);
// - `bindings` overrides Worker bindings (`failingLimiter` is a limiter namespace whose
//   objects throw, with a credential in the error message);
// - `live: async () => ({ token, issuer? })` signs a real token; return your own issuer to
//   control it (e.g. `await issuer.setMode("down")` for `jwks_unavailable`);
// - `repeat: n` sends the request n times and checks the last (e.g. to reach a limit);
// - `app` adds createApp options (e.g. an `authentication` clock or fetch).
// A reason with no case here is a reason whose error path is not proven clean: EVERY_REASON
// lists them all (a compile error when src/core/deny.ts gains one), and a test checks that
// each has a case.

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function jsonSegment(value: unknown): string {
  return base64url(new TextEncoder().encode(JSON.stringify(value)));
}

/** An RS256-shaped JWT from an issuer the policy does not know, with a random signature. */
function realLookingJwt(iss: string, sub: string): { token: string; signature: string } {
  const now = Math.floor(Date.now() / 1000);
  const header = jsonSegment({ alg: "RS256", typ: "JWT", kid: "2024-rotation-7" });
  const payload = jsonSegment({ iss, sub, aud: "api", iat: now, exp: now + 600, scope: "orders:read" });
  const signature = base64url(crypto.getRandomValues(new Uint8Array(256)));
  return { token: `${header}.${payload}.${signature}`, signature };
}

const bearer = realLookingJwt("https://login.attacker.example/", "victim-user");
const access = realLookingJwt("https://attacker.cloudflareaccess.com", "victim@example.com");
const queryToken = realLookingJwt("https://query.attacker.example/", "query-user");
const apiKey = `pk_live_${base64url(crypto.getRandomValues(new Uint8Array(24)))}`;

const SECRETS: Record<string, string> = {
  "bearer token": bearer.token,
  "bearer signature": bearer.signature,
  "Authorization value": `Bearer ${bearer.token}`,
  "Access cookie value": access.token,
  "Access signature": access.signature,
  "API key": apiKey,
  "query-string token": queryToken.token,
  "query-string signature": queryToken.signature,
};

function credentialHeaders(): Record<string, string> {
  return {
    authorization: `Bearer ${bearer.token}`,
    cookie: `theme=dark; CF_Authorization=${access.token}; other=1`,
    "x-api-key": apiKey,
    "cf-connecting-ip": "192.0.2.44",
  };
}

const SECRETS_POLICY: PolicyDocument = {
  version: 11,
  settings: { server_timing: true },
  issuers: {
    idp: {
      kind: "oidc",
      issuer: "https://idp.portcullis.test/",
      jwks_uri: "https://idp.portcullis.test/jwks",
      audiences: ["api"],
    },
    access: { kind: "cloudflare_access", team_domain: "portcullis-test.cloudflareaccess.com" },
  },
  upstreams: { echo: { url: echoOrigin, timeout_ms: 2000 } },
  routes: [
    { name: "public", methods: ["GET", "POST"], path: "/public/**", auth: "public", upstream: "echo" },
    { name: "orders", methods: ["GET"], path: "/orders/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    {
      name: "console",
      methods: ["GET"],
      path: "/console/**",
      auth: { issuers: ["access"], audiences: ["aud-tag"] },
      upstream: "echo",
    },
  ],
};

/** Every deny reason. Typed against DenyReason, so tsc refuses a missing or unknown one. */
const EVERY_REASON: { readonly [R in DenyReason]: true } = {
  bad_request: true,
  route_not_found: true,
  method_not_allowed: true,
  cors_rejected: true,
  token_missing: true,
  token_malformed: true,
  token_invalid: true,
  token_expired: true,
  token_not_yet_valid: true,
  issuer_unknown: true,
  audience_mismatch: true,
  insufficient_scope: true,
  forbidden: true,
  tenant_mismatch: true,
  cross_site_request: true,
  rate_limited: true,
  jwks_unavailable: true,
  limiter_unavailable: true,
  origin_unavailable: true,
  origin_timeout: true,
  misconfigured: true,
  internal_error: true,
  client_closed: true,
};

/** SECRETS_POLICY plus a live issuer guarding /v1/** (api:read) and /v1/admin/** (admin:write). */
function withLiveIssuer(policy: PolicyDocument, issuer: TestIssuer): PolicyDocument {
  const live = { issuers: ["live"] };
  return {
    ...policy,
    issuers: { ...policy.issuers, live: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    routes: [
      ...policy.routes,
      {
        name: "admin",
        methods: ["GET"],
        path: "/v1/admin/**",
        auth: { ...live, scopes: { all_of: ["admin:write"] } },
        upstream: "echo",
      },
      {
        name: "v1",
        methods: ["GET"],
        path: "/v1/**",
        auth: { ...live, scopes: { all_of: ["api:read"] } },
        upstream: "echo",
      },
    ],
  };
}

let liveIssuer: TestIssuer;

interface SecretCase {
  name: string;
  /** The reason the edge must give, or "allowed". */
  reasons: (DenyReason | "allowed")[];
  path: string;
  policy?: (base: PolicyDocument) => unknown;
  init?: RequestInit & { headers?: Record<string, string> };
  bindings?: Record<string, unknown>;
  live?: () => Promise<{ token: string; issuer?: TestIssuer }>;
  /** Send the request this many times (default 1); the last one is checked. */
  repeat?: number;
  /** createApp options, in addition to the console audit sink. */
  app?: AppOptions;
}

/** Appends a route guarded by the live issuer (call on a policy that has it, i.e. in a `live` case). */
function withLiveRoute(policy: PolicyDocument, name: string, path: string, auth: Record<string, unknown>) {
  const route = { name, methods: ["GET"], path, auth: { issuers: ["live"], ...auth }, upstream: "echo" };
  return { ...policy, routes: [...policy.routes, route as PolicyDocument["routes"][number]] };
}

/** Rate limits on the public route (counted per client IP). */
function withLimit(policy: PolicyDocument, limit: Record<string, unknown>): PolicyDocument {
  const [first, ...rest] = policy.routes;
  const limits = [{ name: "per-ip", key: "ip", limit: 100, window_s: 60, ...limit }] as never;
  return { ...policy, routes: [{ ...(first as PolicyDocument["routes"][number]), limits }, ...rest] };
}

/** A limiter namespace whose objects fail, with a credential in the error message. */
const failingLimiter = {
  idFromName: (name: string) => name,
  get: () => ({
    acquire() {
      throw new Error(`limiter down while serving ${apiKey}`);
    },
    release() {},
  }),
};

const hourAgo = () => Math.floor(Date.now() / 1000) - 3600;
const hourAhead = () => Math.floor(Date.now() / 1000) + 3600;

/** An upload whose client goes away after the first chunk. */
function abortingBody(): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      if (sent) controller.error(new Error(`client went away holding ${apiKey}`));
      else controller.enqueue(new TextEncoder().encode("partial"));
      sent = true;
    },
  });
}

const CASES: SecretCase[] = [
  { name: "allowed public request (success path)", reasons: ["allowed"], path: "/public/ok" },
  {
    name: "authenticated request (success path)",
    reasons: ["allowed"],
    path: "/v1/things",
    live: async () => ({ token: await liveIssuer.sign({ scope: "api:read" }) }),
  },
  {
    name: "bad path (encoded slash)",
    reasons: ["bad_request"],
    path: `/public/a%2Fb?access_token=${queryToken.token}`,
  },
  {
    name: "bad request (headers too large)",
    reasons: ["bad_request"],
    path: "/public/x",
    policy: (p) => ({ ...p, settings: { ...p.settings, max_header_bytes: 1024 } }),
    init: { headers: { "x-padding": "p".repeat(1200) } },
  },
  { name: "route not found", reasons: ["route_not_found"], path: `/admin/x?access_token=${queryToken.token}` },
  {
    name: "method not allowed",
    reasons: ["method_not_allowed"],
    path: `/orders/1?access_token=${queryToken.token}`,
    init: { method: "DELETE" },
  },
  {
    name: "CORS preflight rejected",
    reasons: ["cors_rejected"],
    path: "/public/x",
    init: {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "GET" },
    },
  },
  {
    name: "origin down",
    reasons: ["origin_unavailable"],
    path: "/public/x",
    policy: (p) => ({ ...p, upstreams: { echo: { url: unreachableOrigin } } }),
  },
  {
    name: "origin timeout",
    reasons: ["origin_timeout"],
    path: "/public/slow",
    policy: (p) => ({ ...p, upstreams: { echo: { url: echoOrigin, timeout_ms: 100 } } }),
    init: { headers: { "x-echo-delay-ms": "1000" } },
  },
  {
    name: "misconfigured policy",
    reasons: ["misconfigured"],
    path: "/public/x",
    policy: (p) => ({ ...p, routes: [{ name: "broken", path: "/x", upstream: "echo" }] }),
  },
  {
    name: "misconfigured service binding",
    reasons: ["misconfigured"],
    path: "/public/x",
    policy: (p) => ({ ...p, upstreams: { echo: { service: "MISSING_SERVICE" } } }),
  },
  {
    name: "no credential at all",
    reasons: ["token_missing"],
    path: "/orders/1",
    init: { headers: { authorization: "", cookie: "" } },
  },
  {
    name: "token in the query string as well as the header",
    reasons: ["token_malformed"],
    path: `/orders/1?access_token=${queryToken.token}`,
  },
  { name: "bearer token from an unknown issuer", reasons: ["issuer_unknown"], path: "/orders/1" },
  {
    name: "Access cookie only, from an unknown team",
    reasons: ["issuer_unknown"],
    path: "/console/home",
    init: { headers: { authorization: "" } },
  },
  {
    name: "token signed by a key the issuer never published",
    reasons: ["token_invalid"],
    path: "/v1/things",
    live: async () => ({ token: await liveIssuer.sign({}, { key: await makeKey("ES256") }) }),
  },
  {
    name: "expired token",
    reasons: ["token_expired"],
    path: "/v1/things",
    live: async () => ({ token: await liveIssuer.sign({ iat: hourAgo() - 600, exp: hourAgo() }) }),
  },
  {
    name: "token not valid before an hour from now",
    reasons: ["token_not_yet_valid"],
    path: "/v1/things",
    live: async () => ({ token: await liveIssuer.sign({ nbf: hourAhead(), exp: hourAhead() + 600 }) }),
  },
  {
    name: "token for another audience",
    reasons: ["audience_mismatch"],
    path: "/v1/things",
    live: async () => ({ token: await liveIssuer.sign({ aud: "https://other-api.test" }) }),
  },
  {
    name: "insufficient scope",
    reasons: ["insufficient_scope"],
    path: "/v1/admin/users",
    live: async () => ({ token: await liveIssuer.sign({ scope: "api:read" }) }),
  },
  {
    name: "caller not in the route's group",
    reasons: ["forbidden"],
    path: "/staff/reports",
    policy: (p) => withLiveRoute(p as PolicyDocument, "staff", "/staff/**", { groups: { any_of: ["staff"] } }),
    live: async () => ({ token: await liveIssuer.sign({ groups: ["customers"] }) }),
  },
  {
    name: "token for another tenant than the path's",
    reasons: ["tenant_mismatch"],
    path: "/tenants/globex/orders",
    policy: (p) => withLiveRoute(p as PolicyDocument, "tenant-orders", "/tenants/:tenant/**", {}),
    live: async () => ({ token: await liveIssuer.sign({ tenant_id: "acme" }) }),
  },
  {
    name: "another site's page posts with the Access cookie",
    reasons: ["cross_site_request"],
    path: "/console/settings",
    policy: (p) => ({
      ...p,
      routes: p.routes.map((route) => (route.name === "console" ? { ...route, methods: ["GET", "POST"] } : route)),
    }),
    init: {
      method: "POST",
      headers: { authorization: "", "sec-fetch-site": "cross-site", origin: "https://evil.example" },
    },
  },
  {
    // A stage that throws is answered by the pipeline's catch-all: here the token check's
    // clock fails mid-request, with a credential in its message.
    name: "a stage throws (internal error)",
    reasons: ["internal_error"],
    path: "/orders/1",
    app: {
      authentication: {
        now: () => {
          throw new RangeError(`clock unavailable while checking Bearer ${bearer.token} / ${apiKey}`);
        },
      },
    },
  },
  {
    name: "rate limited",
    reasons: ["rate_limited"],
    path: "/public/limited",
    policy: (p) => withLimit(p as PolicyDocument, { name: "one-per-minute", limit: 1 }),
    repeat: 2,
  },
  {
    name: "rate limiter down (fails closed)",
    reasons: ["limiter_unavailable"],
    path: "/public/x",
    policy: (p) => withLimit(p as PolicyDocument, {}),
    bindings: { ROUTE_LIMITER: failingLimiter, TENANT_LIMITER: failingLimiter },
  },
  {
    name: "rate limiter down, limit fails open as the policy says",
    reasons: ["allowed"],
    path: "/public/x",
    policy: (p) => withLimit(p as PolicyDocument, { on_error: "allow" }),
    bindings: { ROUTE_LIMITER: failingLimiter, TENANT_LIMITER: failingLimiter },
  },
  {
    name: "client aborts its upload",
    reasons: ["client_closed"],
    path: "/public/upload",
    init: { method: "POST", body: abortingBody(), duplex: "half" } as SecretCase["init"],
  },
  {
    name: "JWKS endpoint down",
    reasons: ["jwks_unavailable"],
    path: "/v1/things",
    live: async () => {
      const down = await makeIssuer("ES256");
      const token = await down.sign({ scope: "api:read" });
      await down.setMode("down");
      return { token, issuer: down };
    },
  },
];

/** The members of a refusal's problem+json body (RFC 9457 and the request id). */
const PROBLEM_MEMBERS = ["type", "title", "status", "reason", "request_id"];

describe("no credential reaches a log line or an answer, and no refusal says its precise cause", () => {
  it("has a case for every deny reason", () => {
    const covered = new Set(CASES.flatMap((testCase) => testCase.reasons));
    const missing = Object.keys(EVERY_REASON).filter((reason) => !covered.has(reason as DenyReason));
    expect(missing).toEqual([]);
  });

  const spies: MockInstance[] = [];
  beforeAll(async () => {
    liveIssuer = await makeIssuer("ES256");
  });
  beforeEach(() => {
    for (const level of ["log", "info", "warn", "error", "debug"] as const) {
      spies.push(vi.spyOn(console, level).mockImplementation(() => undefined));
    }
  });
  afterEach(() => {
    for (const spy of spies.splice(0)) spy.mockRestore();
  });

  it.each(CASES)("$name", async (testCase) => {
    const secrets = { ...SECRETS };
    let policy: PolicyDocument = structuredClone(SECRETS_POLICY);
    const headers = new Headers(credentialHeaders());
    if (testCase.live) {
      const { token, issuer } = await testCase.live();
      policy = withLiveIssuer(policy, issuer ?? liveIssuer);
      headers.set("authorization", `Bearer ${token}`);
      Object.assign(secrets, {
        "live token": token,
        "live signature": token.split(".")[2] as string,
        "live Authorization value": `Bearer ${token}`,
      });
    }
    for (const [name, value] of Object.entries(testCase.init?.headers ?? {})) {
      if (value === "") headers.delete(name);
      else headers.set(name, value);
    }
    const edge = harness(
      testCase.policy ? testCase.policy(policy) : policy,
      { ...testCase.app, auditSinks: [consoleSink] },
      testCase.bindings,
    );
    const repeat = testCase.repeat ?? 1;
    let response = new Response();
    for (let i = 0; i < repeat; i++) {
      if (i > 0) await response.arrayBuffer();
      response = await edge.fetch(testCase.path, { ...testCase.init, headers });
    }
    const body = await response.text();

    expect(edge.audit).toHaveLength(repeat);
    // One data point per request too, so the scan below really covers the metrics.
    expect(edge.dataPoints).toHaveLength(repeat);
    const record = edge.audit.at(-1) as AuditRecord;
    const outcome = record.decision === "allow" ? "allowed" : record.reason;
    expect(testCase.reasons).toContain(outcome);
    if (outcome !== null && outcome !== "allowed") {
      const problem = JSON.parse(body) as Record<string, unknown>;
      expect(problem.reason).toBe(outcome);
      // The answer names the reason and nothing finer: the problem members, and which limit
      // was hit on a 429. The precise cause is the record's alone.
      const members = outcome === "rate_limited" ? [...PROBLEM_MEMBERS, "limit"] : PROBLEM_MEMBERS;
      for (const key of Object.keys(problem)) expect(members).toContain(key);
      // A detail that is part of the reason's own name ("scope" for insufficient_scope,
      // "origin_timeout") cannot be told apart in the text; the member check covers those.
      if (record.detail !== null && !outcome.includes(record.detail)) {
        expect(body, `the answer names the detail ${record.detail}`).not.toContain(record.detail);
      }
    }

    const lines = [
      ...edge.logs,
      ...edge.dataPoints.map((point) => JSON.stringify(point)),
      ...spies.flatMap((spy) => spy.mock.calls.map((call) => call.map(String).join(" "))),
      ...[...response.headers].map(([name, value]) => `${name}: ${value}`),
      body,
    ];
    // The capture works: the record went through console.log and the dataset.
    expect(lines.filter((line) => line.includes(record.request_id)).length).toBeGreaterThanOrEqual(3);
    for (const [what, secret] of Object.entries(secrets)) {
      const leaking = lines.find((line) => line.includes(secret));
      expect(leaking, `${what} leaked into: ${leaking?.slice(0, 200)}`).toBeUndefined();
    }
  });
});
