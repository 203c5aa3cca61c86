// Review of what operators are promised about each request's traces (README: Audit log,
// Metrics, Server-Timing, Errors; ops/README.md): for one request on every path — allowed,
// each kind of refusal, limiter failing open and closed, origin down and slow, a stage that
// throws, an invalid policy, a client gone before its answer — the audit record, the data
// point and the Server-Timing header are checked against the documented layout and against
// each other, field by field, so that an ops query reading one column sees what the record says.
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../src/core/audit";
import type { DenyReason } from "../../src/core/deny";
import type { PolicyDocument } from "../../src/core/policy-types";
import { RECORD_FIELDS } from "../support/record-fields";
import {
  basePolicy,
  echoOrigin,
  type Harness,
  harness,
  marker,
  originSaw,
  unreachableOrigin,
} from "../support/harness";
import { AUDIENCE, makeIssuer, makeKey, type TestIssuer } from "../support/issuers";
import { held, heldLimiter } from "../support/waiting";

/** ops/README "Personal data": the refusals whose data point keeps the client IP (`blob12`). */
const INVALID_TOKEN_REASONS: readonly DenyReason[] = [
  "token_malformed",
  "token_invalid",
  "token_expired",
  "token_not_yet_valid",
  "issuer_unknown",
  "audience_mismatch",
];

/** ops/README `blob7`: every key source a row may name. */
const KEY_SOURCES = ["token_cache", "token_cache_stale", "memory", "kv", "stale", "fetch"];

const CLIENT_IP = "198.51.100.73";
const CF = { colo: "LHR", asn: 64500, country: "GB" };

/** A limiter namespace whose objects fail: the limit's `on_error` decides. */
const failingLimiter = {
  idFromName: (name: string) => name,
  get: () => ({
    acquire() {
      throw new Error("limiter down");
    },
    release() {},
  }),
};

/**
 * The row ops/README lays out for this record: index1 the tenant (empty when none),
 * blob1–blob17 in the documented order, double1–double7 with -1 for what was not measured.
 * `blob6`/`blob7`/`double3` (issuer id, key source, verification time) come from the token
 * check, which the record does not carry: checked against the documented rules instead.
 */
function expectDocumentedRow(record: AuditRecord, point: AnalyticsEngineDataPoint | undefined): void {
  expect(point).toBeDefined();
  const blobs = point?.blobs ?? [];
  const doubles = point?.doubles ?? [];
  const measured = (ms: number | null) => (ms === null ? -1 : ms);
  const keepsIp = record.decision === "deny" && INVALID_TOKEN_REASONS.includes(record.reason as DenyReason);
  expect(point?.indexes).toEqual([record.tenant_id ?? ""]);
  expect(blobs).toEqual([
    record.decision,
    record.reason ?? "",
    record.route ?? "",
    record.method,
    record.user_sub ?? "",
    blobs[5],
    blobs[6],
    record.upstream ?? "",
    record.edge_pop ?? "",
    record.client_country ?? "",
    record.client_asn === null ? "" : String(record.client_asn),
    keepsIp ? CLIENT_IP : "",
    record.limit ?? "",
    record.failed_open?.join(",") ?? "",
    record.detail ?? "",
    record.matched_rule ?? "",
    record.request_id,
  ]);
  expect(doubles).toEqual([
    record.status,
    record.latency_ms,
    doubles[2],
    measured(record.upstream_ms),
    measured(record.authz_ms),
    measured(record.limit_ms),
    1,
  ]);
  // double3 is the token check's time: -1 without one (and then no issuer id or key source);
  // with one, the same measurement as authz_ms (double5).
  if (blobs[6] === "") {
    expect([blobs[5], doubles[2]]).toEqual(["", -1]);
  } else {
    expect(KEY_SOURCES).toContain(blobs[6]);
    expect(blobs[5]).not.toBe("");
    expect(doubles[2]).toBe(doubles[4]);
  }
}

/** The record as its JSON line carries it: every documented field present, of its documented type. */
function expectDocumentedRecord(record: AuditRecord): void {
  const line = JSON.parse(JSON.stringify(record)) as Record<string, unknown>;
  expect(Object.keys(line)).toEqual(RECORD_FIELDS);
  expect(line.ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  expect(line.request_id).toMatch(/^[0-9a-f-]{36}$/);
  expect(Number.isInteger(line.latency_ms) && (line.latency_ms as number) >= 0).toBe(true);
  expect(Number.isInteger(line.status)).toBe(true);
  for (const stage of ["authz_ms", "limit_ms", "upstream_ms"]) {
    const ms = line[stage];
    expect(ms === null || (typeof ms === "number" && ms >= 0), `${stage}: ${ms}`).toBe(true);
  }
  if (line.token_hash !== null) expect(line.token_hash).toMatch(/^[0-9a-f]{16}$/);
  // An identity is whole or absent: the three come from the one verified token.
  expect([line.user_sub === null, line.issuer === null, line.token_hash === null]).toEqual(
    Array(3).fill(line.user_sub === null),
  );
  if (line.decision === "allow") expect([null, "client_closed"]).toContain(line.reason);
  else expect(line.reason).toEqual(expect.any(String));
  if (line.failed_open !== null) expect((line.failed_open as string[]).length).toBeGreaterThan(0);
}

/** README Server-Timing: the stages that ran, as the record times them, in order; absent when none did. */
function expectedServerTiming(record: AuditRecord): string | null {
  const stages: [string, number | null][] = [
    ["auth", record.authz_ms],
    ["limit", record.limit_ms],
    ["upstream", record.upstream_ms],
  ];
  const entries = stages
    .filter(([, ms]) => ms !== null)
    .map(([name, ms]) => `${name};dur=${Math.round((ms as number) * 10) / 10}`);
  return entries.length > 0 ? entries.join(", ") : null;
}

let live: TestIssuer;
let stranger: TestIssuer;

beforeAll(async () => {
  live = await makeIssuer("ES256");
  stranger = await makeIssuer("ES256");
});

/** Every path of the matrix below on one policy, Server-Timing on; names unique per run (limiter state persists). */
function matrixPolicy(run: string): PolicyDocument {
  const auth = { issuers: ["live"] };
  return basePolicy({
    version: 42,
    settings: { server_timing: true, limiter_timeout_ms: 2000 },
    issuers: { live: { kind: "oidc", issuer: live.url, audiences: [AUDIENCE] } },
    upstreams: {
      echo: { url: echoOrigin, timeout_ms: 2000 },
      down: { url: unreachableOrigin, timeout_ms: 2000 },
      slow: { url: echoOrigin, timeout_ms: 100 },
    },
    routes: [
      { name: "public", methods: ["GET", "OPTIONS"], path: "/public/**", auth: "public", upstream: "echo" },
      {
        name: `limited-${run}`,
        methods: ["GET"],
        path: "/limited/**",
        auth: "public",
        upstream: "echo",
        limits: [{ name: "per-ip", key: "ip", limit: 1, window_s: 3600 }],
      },
      {
        name: "closed",
        methods: ["GET"],
        path: "/closed/**",
        auth,
        upstream: "echo",
        limits: [{ name: "tenant-closed", key: "tenant", limit: 100, window_s: 60 }],
      },
      {
        name: "open",
        methods: ["GET"],
        path: "/open/**",
        auth,
        upstream: "echo",
        limits: [{ name: "tenant-open", key: "tenant", limit: 100, window_s: 60, on_error: "allow" }],
      },
      { name: "down", methods: ["GET"], path: "/down/**", auth: "public", upstream: "down" },
      { name: "slow", methods: ["GET"], path: "/slow/**", auth: "public", upstream: "slow" },
      {
        name: "admin",
        methods: ["GET"],
        path: "/v1/admin/**",
        auth: { ...auth, scopes: { all_of: ["admin:write"] } },
        upstream: "echo",
      },
      {
        name: "v1",
        methods: ["GET"],
        path: "/v1/**",
        auth: { ...auth, scopes: { all_of: ["api:read"] } },
        upstream: "echo",
      },
    ],
  });
}

interface MatrixCase {
  name: string;
  path: string;
  method?: string;
  headers?: () => Promise<Record<string, string>>;
  /** Sent this many times (default 1); the last is checked. */
  repeat?: number;
  expected: Partial<AuditRecord>;
  /** The Server-Timing stages the answer must name (the record's own timings, in order). */
  stages: string[];
  /** The token check's issuer id, when the row must name one (blob6). */
  issuerId?: string;
}

const bearerOf = (token: string) => ({ authorization: `Bearer ${token}` });
/** The verified caller a record names (its `issuer` is the live issuer's URL, checked with it). */
const identityOf = (sub: string) => ({ user_sub: sub, tenant_id: "acme" });

const MATRIX: MatrixCase[] = [
  {
    name: "an allowed public request",
    path: "/public/a",
    expected: { decision: "allow", reason: null, detail: null, status: 200, route: "public", upstream: "echo" },
    stages: ["upstream"],
  },
  {
    name: "an allowed authenticated request",
    path: "/v1/things",
    headers: async () => bearerOf(await live.sign({ sub: "alice" })),
    expected: { decision: "allow", reason: null, status: 200, route: "v1", ...identityOf("alice") },
    stages: ["auth", "upstream"],
    issuerId: "live",
  },
  {
    name: "route_not_found",
    path: "/nowhere",
    expected: { reason: "route_not_found", detail: null, status: 404, route: null, upstream: null, path: "/nowhere" },
    stages: [],
  },
  {
    name: "bad_request for the path",
    path: "/public/a%2Fb",
    expected: { reason: "bad_request", detail: "encoded_slash", status: 400, path: null, route: null },
    stages: [],
  },
  {
    name: "cors_rejected preflight",
    path: "/public/x",
    method: "OPTIONS",
    headers: async () => ({ origin: "https://evil.example", "access-control-request-method": "GET" }),
    expected: { reason: "cors_rejected", detail: "route_has_no_cors", status: 403, route: "public" },
    stages: [],
  },
  {
    name: "an OPTIONS the edge answers itself (Max-Forwards: 0)",
    path: "/public/x",
    method: "OPTIONS",
    headers: async () => ({ "max-forwards": "0" }),
    expected: { decision: "allow", reason: null, detail: "max_forwards_zero", status: 200, upstream_ms: null },
    stages: [],
  },
  {
    name: "token_missing",
    path: "/v1/things",
    expected: { reason: "token_missing", detail: "no_credentials", status: 401, route: "v1", authz_ms: null },
    stages: [],
  },
  {
    name: "token_malformed (an empty Bearer)",
    path: "/v1/things",
    headers: async () => ({ authorization: "Bearer" }),
    expected: { reason: "token_malformed", detail: "empty_token", status: 400, authz_ms: null },
    stages: [],
  },
  {
    name: "token_invalid (a key the issuer never published)",
    path: "/v1/things",
    headers: async () => bearerOf(await live.sign({}, { key: await makeKey("ES256") })),
    expected: { reason: "token_invalid", detail: "kid_unknown", status: 401, user_sub: null },
    stages: ["auth"],
    issuerId: "live",
  },
  {
    name: "token_expired",
    path: "/v1/things",
    headers: async () => {
      const past = Math.floor(Date.now() / 1000) - 3600;
      return bearerOf(await live.sign({ iat: past - 600, exp: past }));
    },
    expected: { reason: "token_expired", detail: "exp", status: 401, user_sub: null },
    stages: ["auth"],
    issuerId: "live",
  },
  {
    name: "issuer_unknown",
    path: "/v1/things",
    headers: async () => bearerOf(await stranger.sign({})),
    expected: { reason: "issuer_unknown", detail: "issuer_not_configured", status: 401, user_sub: null },
    stages: ["auth"],
  },
  {
    name: "insufficient_scope (identity known, no IP kept)",
    path: "/v1/admin/users",
    headers: async () => bearerOf(await live.sign({ sub: "bob", scope: "api:read" })),
    expected: { reason: "insufficient_scope", detail: "scope", status: 403, route: "admin", ...identityOf("bob") },
    stages: ["auth"],
    issuerId: "live",
  },
  {
    name: "rate_limited",
    path: "/limited/x",
    repeat: 2,
    expected: { reason: "rate_limited", detail: "ip_limit_exceeded", status: 429, limit: "per-ip", upstream_ms: null },
    stages: ["limit"],
  },
  {
    name: "limiter_unavailable (fails closed)",
    path: "/closed/x",
    headers: async () => bearerOf(await live.sign({ sub: "carol" })),
    expected: {
      reason: "limiter_unavailable",
      detail: "limiter_tenant_error",
      status: 503,
      limit: "tenant-closed",
      failed_open: null,
      upstream_ms: null,
      ...identityOf("carol"),
    },
    stages: ["auth", "limit"],
    issuerId: "live",
  },
  {
    name: "a limit failing open",
    path: "/open/x",
    headers: async () => bearerOf(await live.sign({ sub: "dave" })),
    expected: { decision: "allow", reason: null, status: 200, limit: null, failed_open: ["tenant-open"] },
    stages: ["auth", "limit", "upstream"],
    issuerId: "live",
  },
  {
    name: "origin_unavailable",
    path: "/down/x",
    expected: { reason: "origin_unavailable", detail: "origin_unreachable", status: 502, upstream: "down" },
    stages: ["upstream"],
  },
  {
    name: "origin_timeout",
    path: "/slow/x",
    headers: async () => ({ "x-echo-delay-ms": "1500" }),
    expected: { reason: "origin_timeout", detail: "origin_timeout", status: 504, upstream: "slow" },
    stages: ["upstream"],
  },
];

describe("one request, one record, one data point, one Server-Timing: all telling the same story", () => {
  let edge: Harness;
  beforeAll(() => {
    edge = harness(matrixPolicy(crypto.randomUUID().slice(0, 8)), {}, { TENANT_LIMITER: failingLimiter });
  });

  it.each(MATRIX)("$name", async ({ path, method, headers, repeat = 1, expected, stages, issuerId }) => {
    const sent = { ...(await headers?.()), "cf-connecting-ip": `${CLIENT_IP}` };
    // Rate-limited requests count per address: each case its own, but the one the row may keep.
    let response = new Response();
    const before = edge.audit.length;
    for (let i = 0; i < repeat; i++) {
      if (i > 0) await response.arrayBuffer();
      const request = new Request(`https://edge.test${path}`, { method: method ?? "GET", headers: sent, cf: CF });
      response = await edge.fetch(request);
    }
    const body = await response.text();
    // One record and one data point per request, in the same order.
    expect(edge.audit.length - before).toBe(repeat);
    expect(edge.dataPoints.length).toBe(edge.audit.length);
    const record = edge.audit.at(-1) as AuditRecord;
    const point = edge.dataPoints.at(-1);

    expect(record).toMatchObject({
      decision: "deny",
      method: method ?? "GET",
      status: response.status,
      edge_pop: "LHR",
      client_asn: 64500,
      client_country: "GB",
      request_id: response.headers.get("x-request-id"),
      ...expected,
    });
    if (expected.user_sub) expect(record.issuer).toBe(live.url);
    if (record.route !== null) expect(record.matched_rule).toBe(`policy:${record.route}@v42`);
    else expect(record.matched_rule).toBeNull();
    if (record.decision === "deny") {
      const problem = JSON.parse(body) as { reason: string; request_id: string };
      expect([problem.reason, problem.request_id]).toEqual([record.reason, record.request_id]);
    }
    expectDocumentedRecord(record);
    expectDocumentedRow(record, point);
    expect(point?.blobs?.[5]).toBe(issuerId ?? "");
    // The client's address is personal data: never in the record, on any path.
    expect(JSON.stringify(record)).not.toContain(CLIENT_IP);

    const timing = response.headers.get("server-timing");
    expect(timing).toBe(expectedServerTiming(record));
    expect(
      (timing ?? "")
        .split(", ")
        .filter(Boolean)
        .map((entry) => entry.split(";")[0]),
    ).toEqual(stages);
    expect(response.headers.has("timing-allow-origin")).toBe(false);
  });
});

describe("paths outside the policy's routes", () => {
  it("a stage that throws: 500 internal_error, recorded with the error's class alone, and a row to match", async () => {
    const edge = harness(
      matrixPolicy(crypto.randomUUID().slice(0, 8)),
      {
        authentication: {
          now: () => {
            throw new RangeError("clock gone");
          },
        },
      },
      { TENANT_LIMITER: failingLimiter },
    );
    const token = await live.sign({ sub: "erin" });
    const response = await edge.fetch(
      new Request("https://edge.test/v1/things", {
        headers: { ...bearerOf(token), "cf-connecting-ip": CLIENT_IP },
        cf: CF,
      }),
    );
    expect(response.status).toBe(500);
    expect(((await response.json()) as { reason: string }).reason).toBe("internal_error");
    expect(edge.audit).toHaveLength(1);
    const record = edge.audit[0] as AuditRecord;
    expect(record).toMatchObject({
      decision: "deny",
      reason: "internal_error",
      detail: "RangeError",
      status: 500,
      route: "v1",
      user_sub: null,
      authz_ms: null,
    });
    expectDocumentedRecord(record);
    expectDocumentedRow(record, edge.dataPoints[0]);
    expect(edge.logs.join("\n")).not.toContain("clock gone");
    // No stage was timed: nothing to show.
    expect(response.headers.has("server-timing")).toBe(false);
  });

  it("an invalid policy: 500 misconfigured with a null path and route, a matching row, and no Server-Timing", async () => {
    // server_timing asked for, but the policy is refused as a whole (its route has no methods).
    const edge = harness({
      version: 3,
      settings: { server_timing: true },
      upstreams: { echo: { url: echoOrigin } },
      routes: [{ name: "broken", path: "/x/**", auth: "public", upstream: "echo" }],
    });
    const response = await edge.fetch(
      new Request("https://edge.test/x/y?q=1", { headers: { "cf-connecting-ip": CLIENT_IP }, cf: CF }),
    );
    expect(response.status).toBe(500);
    const record = edge.audit[0] as AuditRecord;
    expect(edge.audit).toHaveLength(1);
    expect(record).toMatchObject({
      decision: "deny",
      reason: "misconfigured",
      detail: "policy_invalid",
      path: null,
      route: null,
      matched_rule: null,
      status: 500,
      edge_pop: "LHR",
    });
    expectDocumentedRecord(record);
    expectDocumentedRow(record, edge.dataPoints[0]);
    expect(response.headers.has("server-timing")).toBe(false);
  });
});

describe("a client gone before its answer, on an authenticated route", () => {
  it("is recorded once, refused, with the identity known by then and no limiter time; its row keeps no IP", async () => {
    // The tenant limiter is asked and held: the client hangs up while it decides. The record is
    // waited for before the limiter answers, so what the limiter says cannot be in it.
    const limiter = heldLimiter((env as unknown as { TENANT_LIMITER: DurableObjectNamespace }).TENANT_LIMITER);
    const recorded = held<AuditRecord>();
    const edge = harness(
      matrixPolicy(crypto.randomUUID().slice(0, 8)),
      { auditSinks: [(record) => recorded.resolve(record)] },
      { TENANT_LIMITER: limiter.namespace },
    );
    const m = marker();
    const client = new AbortController();
    const token = await live.sign({ sub: "frank", tenant_id: `t-${m.slice(0, 8)}` });
    const answered = edge.fetch(
      new Request("https://edge.test/closed/x", {
        signal: client.signal,
        headers: { ...bearerOf(token), "cf-connecting-ip": CLIENT_IP, "x-test-marker": m },
        cf: CF,
      }),
    );
    await limiter.called.promise;
    client.abort();
    const record = await recorded.promise;
    limiter.go.resolve();
    await answered.catch(() => undefined);
    await edge.settle();

    expect(edge.audit).toEqual([record]);
    expect(record).toMatchObject({
      decision: "deny",
      reason: "client_closed",
      detail: "client_disconnected",
      status: 499,
      route: "closed",
      user_sub: "frank",
      tenant_id: `t-${m.slice(0, 8)}`,
      issuer: live.url,
      limit_ms: null,
      upstream_ms: null,
      limit: null,
      failed_open: null,
    });
    expect(record.authz_ms).toEqual(expect.any(Number));
    expectDocumentedRecord(record);
    expect(edge.dataPoints).toHaveLength(1);
    expectDocumentedRow(record, edge.dataPoints[0]);
    expect(edge.dataPoints[0]?.blobs?.[5]).toBe("live");
    // Never forwarded after its refusal was recorded.
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("Server-Timing off (the default)", () => {
  it("adds no entry of the edge's and leaves the origin's own Server-Timing and Timing-Allow-Origin as sent", async () => {
    const edge = harness(
      basePolicy({
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
    );
    const originFields = [
      ["server-timing", "db;dur=53"],
      ["timing-allow-origin", "https://app.example"],
    ];
    const response = await edge.fetch("/svc/x", { headers: { "x-respond-with": JSON.stringify(originFields) } });
    expect(response.status).toBe(200);
    // The record timed the origin: the edge had something it could have sent, and did not.
    expect(edge.audit[0]?.upstream_ms).toEqual(expect.any(Number));
    expect(response.headers.get("server-timing")).toBe("db;dur=53");
    expect(response.headers.get("timing-allow-origin")).toBe("https://app.example");
  });
});
