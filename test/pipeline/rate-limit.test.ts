import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { describe, expect, it, vi } from "vitest";
import type { Identity } from "../../src/core/identity";
import { type AcquireResult, type CounterRequest, HOLD_MS } from "../../src/core/limits/limiter-rpc";
import { compilePolicy } from "../../src/core/policy";
import type { LimitSpec, OidcIssuerConfig, PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import type { Outcome, Timings } from "../../src/core/audit";
import type { PipelineEnv } from "../../src/pipeline/context";
import { rateLimit } from "../../src/pipeline/rate-limit";
import { runStages, type Stage } from "../../src/pipeline/stage";
import { basePolicy, type Harness, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer } from "../support/issuers";
import { type LimiterBinding, limiterNamespace, realLimiter } from "../support/limiter-objects";
import { held, sleep } from "../support/waiting";

const unique = () => crypto.randomUUID().slice(0, 8);

interface Problem {
  type: string;
  title: string;
  status: number;
  reason: string;
  request_id: string;
  limit?: { name: string; key: string; limit: number; window_s: number; reset_s: number };
}

/** The whole-second value of `t=` in a RateLimit field item. */
function secondsToReset(field: string | null): number {
  return Number(/;t=(\d+)/.exec(field ?? "")?.[1]);
}

// ─── Through the whole pipeline: public routes, ip and route keys ───────────────────────

function publicRoute(name: string, limits: LimitSpec[], methods: RouteConfig["methods"] = ["GET"]): RouteConfig {
  return { name, methods, path: `/${name}/**`, auth: "public", upstream: "echo", limits };
}

function edgeWith(...routes: RouteConfig[]) {
  return harness(basePolicy({ settings: { limiter_timeout_ms: 2000 }, routes }));
}

/** An edge whose public route `name` (`/name/**`) allows one request an hour per client address (`per-ip`). */
const onePerIpEdge = (name: string) =>
  edgeWith(publicRoute(name, [{ name: "per-ip", key: "ip", limit: 1, window_s: 3600 }]));

/** Each record's decision, reason, detail and limit, in order. */
const limitVerdicts = (edge: Harness) =>
  edge.audit.map((record) => [record.decision, record.reason, record.detail, record.limit]);
const ALLOWED = ["allow", null, null, null];
const REFUSED_PER_IP = ["deny", "rate_limited", "ip_limit_exceeded", "per-ip"];

/** A 429 from the one-an-hour `per-ip` limit, which its problem body names. */
async function expectRefusedByPerIp(response: Response): Promise<void> {
  expect(response.status).toBe(429);
  expect(((await response.json()) as Problem).limit).toMatchObject({
    name: "per-ip",
    key: "ip",
    limit: 1,
    window_s: 3600,
  });
}

describe("rate limits on public routes (whole pipeline)", () => {
  it("admits up to the limit with rate-limit fields, then answers 429 problem+json and forwards nothing", async () => {
    const name = `pub-${unique()}`;
    const edge = edgeWith(publicRoute(name, [{ name: "ip-per-hour", key: "ip", limit: 3, window_s: 3600 }]));
    const m = marker();
    const headers = { "cf-connecting-ip": "198.51.100.20", "x-test-marker": m };
    // Times run from the first request (before it, so a lower bound on the limiter's clock):
    // each count is less by as many seconds as have passed since, at most.
    const t0 = Date.now();
    const secondsSinceFirst = () => Math.ceil((Date.now() - t0) / 1000);
    for (const remaining of [2, 1, 0]) {
      const response = await edge.fetch(`/${name}/x`, { headers });
      const passed = secondsSinceFirst();
      expect(response.status).toBe(200);
      expect(response.headers.get("x-ratelimit-limit")).toBe("3");
      expect(response.headers.get("x-ratelimit-remaining")).toBe(String(remaining));
      // One request per 1200 s comes back; the counter is full again (3 - remaining) × 1200 s
      // after the first request.
      const reset = (3 - remaining) * 1200;
      expect(Number(response.headers.get("x-ratelimit-reset"))).toBeGreaterThanOrEqual(reset - passed);
      expect(Number(response.headers.get("x-ratelimit-reset"))).toBeLessThanOrEqual(reset);
      expect(response.headers.get("ratelimit-policy")).toBe('"ip-per-hour";q=3;w=3600');
      expect(response.headers.get("ratelimit")).toMatch(new RegExp(`^"ip-per-hour";r=${remaining};t=\\d+$`));
      expect(secondsToReset(response.headers.get("ratelimit"))).toBe(Number(response.headers.get("x-ratelimit-reset")));
    }
    const refused = await edge.fetch(`/${name}/x`, { headers });
    const passed = secondsSinceFirst();
    expect(refused.status).toBe(429);
    expect(refused.headers.get("content-type")).toBe("application/problem+json");
    // The first request's share comes back 1200 s after it.
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1200 - passed);
    expect(retryAfter).toBeLessThanOrEqual(1200);
    expect(refused.headers.get("x-ratelimit-remaining")).toBe("0");
    expect(refused.headers.get("ratelimit")).toMatch(/^"ip-per-hour";r=0;t=\d+$/);
    // `t` is the time until the limit is full again (as X-RateLimit-Reset), later than Retry-After.
    expect(secondsToReset(refused.headers.get("ratelimit"))).toBeGreaterThanOrEqual(3600 - passed);
    expect(secondsToReset(refused.headers.get("ratelimit"))).toBeLessThanOrEqual(3600);
    const body = (await refused.json()) as Problem;
    expect(body).toMatchObject({
      type: "https://portcullis.dev/problems/rate-limited",
      status: 429,
      reason: "rate_limited",
      request_id: refused.headers.get("x-request-id"),
      limit: { name: "ip-per-hour", key: "ip", limit: 3, window_s: 3600 },
    });
    expect(body.limit?.reset_s).toBeGreaterThanOrEqual(3600 - passed);
    expect(body.limit?.reset_s).toBeLessThanOrEqual(3600);
    expect(await originSaw(m)).toHaveLength(3);
    expect(edge.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "rate_limited",
      limit: "ip-per-hour",
      status: 429,
    });
    expect(edge.audit.at(-1)?.limit_ms).toEqual(expect.any(Number));
    expect(edge.audit[0]?.limit_ms).toEqual(expect.any(Number));

    // Another address has its own counter.
    const other = await edge.fetch(`/${name}/x`, { headers: { "cf-connecting-ip": "198.51.100.21" } });
    expect(other.status).toBe(200);
    expect(other.headers.get("x-ratelimit-remaining")).toBe("2");
  });

  it("counts IPv6 clients by /64 and clients without an address as one", async () => {
    const name = `v6-${unique()}`;
    const edge = onePerIpEdge(name);
    const m = marker();
    const from = (ip?: string) =>
      edge.fetch(`/${name}/a`, { headers: { "x-test-marker": m, ...(ip ? { "cf-connecting-ip": ip } : {}) } });
    const first = await from("2001:db8:1:2::1");
    expect(first.status).toBe(200);
    const sameNet = await from("2001:db8:1:2:ffff::9");
    expect(sameNet.status).toBe(429);
    expect(((await sameNet.json()) as Problem).limit).toMatchObject({ name: "per-ip", key: "ip" });
    const otherNet = await from("2001:db8:1:3::1");
    expect(otherNet.status).toBe(200);
    expect((await from()).status).toBe(200);
    const anonymousAgain = await from();
    expect(anonymousAgain.status).toBe(429);
    expect(((await anonymousAgain.json()) as Problem).limit).toMatchObject({ name: "per-ip", key: "ip" });
    expect(edge.audit.map((record) => [record.decision, record.reason, record.limit])).toEqual([
      ["allow", null, null],
      ["deny", "rate_limited", "per-ip"],
      ["allow", null, null],
      ["allow", null, null],
      ["deny", "rate_limited", "per-ip"],
    ]);
    // The refused requests never reached the origin.
    expect(await originSaw(m)).toHaveLength(3);
  });

  it("counts an IPv4-mapped IPv6 address as its IPv4 address, and every header that is no address as one client", async () => {
    const name = `mapped-${unique()}`;
    const edge = onePerIpEdge(name);
    const from = (ip: string) => edge.fetch(`/${name}/a`, { headers: { "cf-connecting-ip": ip } });
    expect((await from("::ffff:203.0.113.77")).status).toBe(200);
    await expectRefusedByPerIp(await from("203.0.113.77"));
    expect((await from("203.0.113.78")).status).toBe(200);
    expect((await from("not an address")).status).toBe(200);
    await expectRefusedByPerIp(await from("1.2.3.256"));
    expect(limitVerdicts(edge)).toEqual([ALLOWED, REFUSED_PER_IP, ALLOWED, ALLOWED, REFUSED_PER_IP]);
  });

  it("tells Workers of other zones apart by CF-Worker: Cloudflare gives them all one address", async () => {
    const name = `workers-${unique()}`;
    const edge = onePerIpEdge(name);
    const from = (ip: string, zone?: string) =>
      edge.fetch(`/${name}/a`, { headers: { "cf-connecting-ip": ip, ...(zone ? { "cf-worker": zone } : {}) } });
    const worker = "2a06:98c0:3600::103";
    expect((await from(worker, "busy.example")).status).toBe(200);
    await expectRefusedByPerIp(await from(worker, "BUSY.example"));
    // Another zone's Worker is not refused for the first one's requests.
    expect((await from("2a06:98c0:3600:0:0:0:0:103", "quiet.example")).status).toBe(200);
    // A client naming a zone from its own address is counted by its address.
    expect((await from("198.51.100.30", "fresh.example")).status).toBe(200);
    await expectRefusedByPerIp(await from("198.51.100.30", "another.example"));
    expect(limitVerdicts(edge)).toEqual([ALLOWED, REFUSED_PER_IP, ALLOWED, ALLOWED, REFUSED_PER_IP]);
  });

  it("decides route and ip limits together; a refused request charges neither", async () => {
    const name = `signup-${unique()}`;
    const edge = edgeWith(
      publicRoute(
        name,
        [
          { name: "signup-per-ip", key: "ip", limit: 2, window_s: 3600 },
          { name: "signup-total", key: "route", limit: 3, window_s: 3600 },
        ],
        ["POST"],
      ),
    );
    const post = (ip: string) => edge.fetch(`/${name}/new`, { method: "POST", headers: { "cf-connecting-ip": ip } });
    expect((await post("192.0.2.1")).status).toBe(200);
    const second = await post("192.0.2.1");
    expect(second.status).toBe(200);
    // Most restrictive first: the ip limit (0 left) before the route ceiling (1 left).
    expect(second.headers.get("ratelimit-policy")).toBe('"signup-per-ip";q=2;w=3600, "signup-total";q=3;w=3600');
    expect(second.headers.get("ratelimit")).toMatch(/^"signup-per-ip";r=0;t=\d+, "signup-total";r=1;t=\d+$/);
    expect(second.headers.get("x-ratelimit-limit")).toBe("2");
    const third = await post("192.0.2.1");
    expect(third.status).toBe(429);
    expect(((await third.json()) as Problem).limit).toMatchObject({ name: "signup-per-ip", key: "ip" });
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "rate_limited", limit: "signup-per-ip" });
    // The refused request did not use the route's last slot.
    expect((await post("192.0.2.2")).status).toBe(200);
    const full = await post("192.0.2.3");
    expect(full.status).toBe(429);
    expect(((await full.json()) as Problem).limit).toMatchObject({ name: "signup-total", key: "route", limit: 3 });
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "rate_limited", limit: "signup-total" });
  });

  it("counts HEAD as GET", async () => {
    const name = `head-${unique()}`;
    const edge = edgeWith(
      publicRoute(name, [{ name: "ceiling", key: "route", limit: 2, window_s: 3600 }], ["GET", "HEAD"]),
    );
    const m = marker();
    const send = (method: "GET" | "HEAD") => edge.fetch(`/${name}/x`, { method, headers: { "x-test-marker": m } });
    expect((await send("HEAD")).status).toBe(200);
    expect((await send("GET")).status).toBe(200);
    expect((await send("GET")).status).toBe(429);
    expect((await send("HEAD")).status).toBe(429);
    expect(edge.audit.map((record) => [record.method, record.decision, record.limit])).toEqual([
      ["HEAD", "allow", null],
      ["GET", "allow", null],
      ["GET", "deny", "ceiling"],
      ["HEAD", "deny", "ceiling"],
    ]);
    expect((await originSaw(m)).map((seen) => seen.method)).toEqual(["HEAD", "GET"]);
  });

  it("counts an ip limit once per route, whatever the method", async () => {
    const name = `login-${unique()}`;
    const edge = edgeWith(
      publicRoute(name, [{ name: "login-per-ip", key: "ip", limit: 1, window_s: 3600 }], ["GET", "POST", "PUT"]),
    );
    const send = (method: string, ip = "203.0.113.7") =>
      edge.fetch(`/${name}/x`, { method, headers: { "cf-connecting-ip": ip } });
    const first = await send("POST");
    expect(first.status).toBe(200);
    expect(first.headers.get("ratelimit")).toMatch(/^"login-per-ip";r=0;/);
    // One request an hour from this address on this route: the other methods share it.
    for (const method of ["PUT", "GET"]) {
      const refused = await send(method);
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as Problem).limit).toMatchObject({ name: "login-per-ip", key: "ip" });
    }
    expect(edge.audit.map((record) => [record.method, record.decision, record.limit])).toEqual([
      ["POST", "allow", null],
      ["PUT", "deny", "login-per-ip"],
      ["GET", "deny", "login-per-ip"],
    ]);
    // Another address has its own budget.
    expect((await send("PUT", "203.0.113.8")).status).toBe(200);
  });

  it("counts an ip limit once per route next to a route ceiling, which stays per method", async () => {
    const name = `signup-${unique()}`;
    const edge = edgeWith(
      publicRoute(
        name,
        [
          { name: "signup-per-ip", key: "ip", limit: 1, window_s: 3600 },
          { name: "signup-total", key: "route", limit: 2, window_s: 3600 },
        ],
        ["POST", "PUT"],
      ),
    );
    const send = (method: string, ip: string) =>
      edge.fetch(`/${name}/x`, { method, headers: { "cf-connecting-ip": ip } });
    expect((await send("POST", "192.0.2.10")).status).toBe(200);
    const refused = await send("PUT", "192.0.2.10");
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as Problem).limit).toMatchObject({ name: "signup-per-ip", key: "ip" });
    // The refused PUT spent nothing of the PUT ceiling; each method has a ceiling of its own.
    expect(refused.headers.get("ratelimit")).toMatch(/^"signup-per-ip";r=0;t=\d+, "signup-total";r=2;/);
    expect((await send("PUT", "192.0.2.11")).status).toBe(200);
    const put = await send("PUT", "192.0.2.12");
    expect(put.status).toBe(200);
    expect(put.headers.get("ratelimit")).toMatch(/"signup-total";r=0;/);
    expect((await send("PUT", "192.0.2.13")).status).toBe(429);
    const post = await send("POST", "192.0.2.14");
    expect(post.status).toBe(200);
    expect(post.headers.get("ratelimit")).toMatch(/"signup-total";r=0;/);
  });

  it("leaves routes without limits alone", async () => {
    const name = `free-${unique()}`;
    const free = edgeWith(publicRoute(name, []));
    const ok = await free.fetch(`/${name}/x`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("ratelimit")).toBeNull();
    expect(ok.headers.get("x-ratelimit-limit")).toBeNull();
    expect(free.audit[0]?.limit_ms).toBeNull();
  });
});

// ─── The stage alone: identity keys, cross-object release, failure modes ────────────────

const ISSUER: OidcIssuerConfig = { kind: "oidc", issuer: "https://idp.test", audiences: ["api"] };

function authRoute(name: string, limits: LimitSpec[]): RouteConfig {
  return { name, methods: ["GET"], path: "/api/**", auth: { issuers: ["idp"] }, upstream: "echo", limits };
}

interface StageRun {
  response: Response;
  outcome: Outcome;
  timings: Timings;
}

/**
 * The rate-limit stage in isolation: earlier stages are replaced by one that sets the policy,
 * route and (from the test) identity; the last stage answers 200 with the response fields the
 * stage prepared, as forward() does. `onAnswer` is called once the stage has answered, before
 * the work it left for after the response (releases) is waited for.
 */
function stage(
  doc: PolicyDocument,
  bindings: Record<string, unknown> = {},
  { routeIndex = 0, onAnswer }: { routeIndex?: number; onAnswer?: () => void } = {},
) {
  const policy = compilePolicy(doc);
  const route = policy.routes[routeIndex]!;
  const app = new Hono<PipelineEnv>();
  let last: { outcome: Outcome; timings: Timings } | undefined;
  const setup: Stage = {
    run(c) {
      c.set("policy", policy);
      c.set("requestId", crypto.randomUUID());
      c.set("outcome", { decision: "allow" });
      c.set("timings", {});
      c.set("route", route);
      const who = c.req.header("x-test-identity");
      if (who) {
        const { subject, tenant } = JSON.parse(who) as { subject: string; tenant?: string };
        const identity: Identity = {
          issuerId: "idp",
          issuer: ISSUER.issuer,
          kind: "oidc",
          subject,
          ...(tenant !== undefined ? { tenant } : {}),
          scopes: [],
          groups: [],
          claims: {},
          tokenHash: async () => "test",
        };
        c.set("identity", identity);
      }
      return undefined;
    },
    finish(c, response) {
      last = { outcome: c.get("outcome"), timings: c.get("timings") };
      onAnswer?.();
      return response;
    },
  };
  const answer: Stage = { run: (c) => new Response("ok", { headers: c.get("responseHeaders") }) };
  app.all("*", runStages([setup, rateLimit(), answer]));
  return async (identity?: { subject: string; tenant?: string }): Promise<StageRun> => {
    const ctx = createExecutionContext();
    const headers: Record<string, string> = identity ? { "x-test-identity": JSON.stringify(identity) } : {};
    const response = await app.fetch(new Request("https://edge.test/api/x", { headers }), { ...env, ...bindings }, ctx);
    await waitOnExecutionContext(ctx);
    return { response, outcome: last!.outcome, timings: last!.timings };
  };
}

function stageDoc(limits: LimitSpec[], extra: Partial<PolicyDocument> = {}): PolicyDocument {
  return basePolicy({
    settings: { limiter_timeout_ms: 2000 },
    issuers: { idp: ISSUER },
    routes: [authRoute(`api-${unique()}`, limits)],
    ...extra,
  });
}

type LimiterStub = {
  acquire(items: CounterRequest[], hold?: number | boolean): Promise<AcquireResult>;
  release(items: CounterRequest[], at?: number, epoch?: number, seq?: number): Promise<void>;
};

function limiterObject(binding: LimiterBinding, objectName: unknown[]): LimiterStub {
  const ns = limiterNamespace(binding);
  return ns.get(ns.idFromName(JSON.stringify(objectName))) as unknown as LimiterStub;
}

function tenantCounter(tenant: string, counterId: string, limit: number, windowS: number) {
  return limiterObject("TENANT_LIMITER", ["tenant", tenant])
    .acquire([{ id: counterId, limit, windowS, cost: 0 }])
    .then((r) => r.counters[0]!.remaining);
}

/**
 * What is left of a route limit's GET counter on the real route object, after charging it
 * `cost` requests at once (by default none: a look).
 */
function routeCounter(route: string, limit: LimitSpec, cost = 0) {
  return limiterObject("ROUTE_LIMITER", ["route", route])
    .acquire([
      {
        id: JSON.stringify(["route", limit.name, limit.limit, limit.window_s, "GET"]),
        limit: limit.limit,
        windowS: limit.window_s,
        cost,
      },
    ])
    .then((r) => r.counters[0]!.remaining);
}

/** The id of a user counter, as planLimits names it: the limit's key, name and configured size, then the user. */
function userCounterId(name: string, limit: number, windowS: number, subject: string): string {
  return JSON.stringify(["user", name, limit, windowS, "idp", subject]);
}

/** Objects that cannot be reached: every acquire fails. */
function unreachable(binding: LimiterBinding) {
  return realLimiter(binding, () => ({ acquire: () => Promise.reject(new Error("object unreachable")) }));
}

/** Objects that decide at once, but whose answers reach the stage only once `gate` has settled. */
function answeringAfter(binding: LimiterBinding, gate: Promise<unknown>) {
  return realLimiter(binding, (stub) => ({
    acquire: async (items, hold) => {
      const answer = stub.acquire(items, hold);
      await gate;
      return answer;
    },
  }));
}

describe("rate-limit stage: tenant and user keys", () => {
  it("counts per user within the tenant, and gives back the route slot when the user limit refuses", async () => {
    const tenant = `t-${unique()}`;
    const run = stage(
      stageDoc([
        { name: "tenant-limit", key: "tenant", limit: 100, window_s: 3600 },
        { name: "user-limit", key: "user", limit: 2, window_s: 3600 },
        { name: "route-limit", key: "route", limit: 3, window_s: 3600 },
      ]),
    );
    const first = await run({ subject: "u1", tenant });
    expect(first.response.status).toBe(200);
    expect(first.response.headers.get("x-ratelimit-limit")).toBe("2");
    expect(first.response.headers.get("x-ratelimit-remaining")).toBe("1");
    expect(first.response.headers.get("ratelimit-policy")).toBe(
      '"user-limit";q=2;w=3600, "route-limit";q=3;w=3600, "tenant-limit";q=100;w=3600',
    );
    expect(first.timings.limitMs).toEqual(expect.any(Number));
    expect((await run({ subject: "u1", tenant })).response.status).toBe(200);

    const refused = await run({ subject: "u1", tenant });
    expect(refused.response.status).toBe(429);
    expect(((await refused.response.json()) as Problem).limit).toMatchObject({
      name: "user-limit",
      key: "user",
      limit: 2,
      window_s: 3600,
    });
    expect(refused.outcome).toMatchObject({ decision: "deny", reason: "rate_limited", limit: "user-limit" });
    // The route object admitted it and is given its slot back: the fields say what is left
    // after that (1 of 3), not what the reservation briefly held (0).
    expect(refused.response.headers.get("ratelimit")).toMatch(/"route-limit";r=1;/);

    // The route object had admitted the refused request; its slot was given back.
    const u2 = await run({ subject: "u2", tenant });
    expect(u2.response.status).toBe(200);
    expect(u2.response.headers.get("ratelimit")).toMatch(/"route-limit";r=0;/);
    // Now the route ceiling refuses; the tenant object's reservation is given back.
    const u3 = await run({ subject: "u3", tenant });
    expect(u3.response.status).toBe(429);
    expect(((await u3.response.json()) as Problem).limit).toMatchObject({ name: "route-limit", key: "route" });
    expect(u3.response.headers.get("ratelimit")).toMatch(/"user-limit";r=2;t=0, "tenant-limit";r=97;/);
    expect(await tenantCounter(tenant, JSON.stringify(["tenant", "tenant-limit", 100, 3600]), 100, 3600)).toBe(97);
    expect(await tenantCounter(tenant, userCounterId("user-limit", 2, 3600, "u3"), 2, 3600)).toBe(2);
  });

  it("a route limit that replaces a default of the same name leaves the default's budget to other routes", async () => {
    const tenant = `t-${unique()}`;
    const doc = basePolicy({
      settings: { limiter_timeout_ms: 2000 },
      issuers: { idp: ISSUER },
      limits: { defaults: [{ name: "user-per-minute", key: "user", limit: 600, window_s: 60 }] },
      routes: [
        { ...authRoute(`strict-${unique()}`, [{ name: "user-per-minute", key: "user", limit: 5, window_s: 60 }]) },
        { ...authRoute(`other-${unique()}`, []), path: "/other/**" },
      ],
    });
    const strict = stage(doc, {}, { routeIndex: 0 });
    const other = stage(doc, {}, { routeIndex: 1 });
    const who = { subject: "u1", tenant };
    for (let i = 0; i < 5; i++) expect((await strict(who)).response.status).toBe(200);
    const refused = await strict(who);
    expect(refused.response.status).toBe(429);
    expect(((await refused.response.json()) as Problem).limit).toMatchObject({ name: "user-per-minute", limit: 5 });
    // Five requests on the strict route did not spend the 600 the user has everywhere else.
    const elsewhere = await other(who);
    expect(elsewhere.response.status).toBe(200);
    expect(elsewhere.response.headers.get("ratelimit-policy")).toBe('"user-per-minute";q=600;w=60');
    expect(elsewhere.response.headers.get("x-ratelimit-remaining")).toBe("599");
  });

  it("applies the tenant's override", async () => {
    const doc = stageDoc([{ name: "user-limit", key: "user", limit: 2, window_s: 3600 }], {
      limits: { tenant_overrides: { gold: { "user-limit": { limit: 5 } } } },
    });
    const run = stage(doc);
    const gold = await run({ subject: `g-${unique()}`, tenant: "gold" });
    expect(gold.response.status).toBe(200);
    expect(gold.response.headers.get("x-ratelimit-limit")).toBe("5");
    expect(gold.response.headers.get("ratelimit-policy")).toBe('"user-limit";q=5;w=3600');
    expect(gold.response.headers.get("x-ratelimit-remaining")).toBe("4");
    const plain = await run({ subject: `p-${unique()}`, tenant: `t-${unique()}` });
    expect(plain.response.status).toBe(200);
    expect(plain.response.headers.get("x-ratelimit-limit")).toBe("2");
    expect(plain.response.headers.get("x-ratelimit-remaining")).toBe("1");
  });

  it("applies no tenant limit to a caller without a tenant, and still counts it as a user", async () => {
    const run = stage(
      stageDoc([
        { name: "tenant-limit", key: "tenant", limit: 1, window_s: 3600 },
        { name: "user-limit", key: "user", limit: 2, window_s: 3600 },
      ]),
    );
    const who = { subject: `solo-${unique()}` };
    const first = await run(who);
    expect(first.response.status).toBe(200);
    expect(first.response.headers.get("ratelimit-policy")).toBe('"user-limit";q=2;w=3600');
    // A tenant limit of 1 would already refuse this second request.
    expect((await run(who)).response.status).toBe(200);
    const refused = await run(who);
    expect(refused.response.status).toBe(429);
    expect(refused.outcome).toMatchObject({ decision: "deny", reason: "rate_limited", limit: "user-limit" });
  });

  it("refuses as misconfigured when an identity limit meets a request without identity", async () => {
    const run = stage(stageDoc([{ name: "user-limit", key: "user", limit: 2, window_s: 3600 }]));
    const { response, outcome } = await run();
    expect(response.status).toBe(500);
    expect(((await response.json()) as Problem).reason).toBe("misconfigured");
    expect(outcome).toMatchObject({ reason: "misconfigured", detail: "limit_needs_identity" });
  });
});

describe("rate-limit stage: when a limiter cannot answer", () => {
  const routeLimit = (onError: "deny" | "allow"): LimitSpec => ({
    name: "route-limit",
    key: "route",
    limit: 10,
    window_s: 3600,
    on_error: onError,
  });
  const limits = (onError: "deny" | "allow"): LimitSpec[] => [routeLimit(onError)];
  const fast = { settings: { limiter_timeout_ms: 5 } };
  const who = () => ({ subject: "a", tenant: `t-${unique()}` });

  it("fails closed by default: 503 limiter_unavailable on timeout", async () => {
    const doc = stageDoc(limits("deny"), fast);
    const route = doc.routes[0]!.name;
    // Full already, so the answer that comes too late is a refusal: nothing to give back.
    expect(await routeCounter(route, routeLimit("deny"), 10)).toBe(0);
    // The answer is let through only once the stage has answered: it can only have timed out.
    const answered = held<void>();
    const run = stage(
      doc,
      { ROUTE_LIMITER: answeringAfter("ROUTE_LIMITER", answered.promise) },
      { onAnswer: answered.resolve },
    );
    const { response, outcome, timings } = await run(who());
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("1");
    expect(((await response.json()) as Problem).reason).toBe("limiter_unavailable");
    expect(outcome).toMatchObject({
      reason: "limiter_unavailable",
      limit: "route-limit",
      detail: "limiter_route_timeout",
    });
    // The time spent waiting for the limiter is recorded, on a timeout too.
    expect(timings.limitMs).toEqual(expect.any(Number));
    // The late refusal gave nothing back: a release would have taken back another request's slot.
    expect(await routeCounter(route, routeLimit("deny"))).toBe(0);
  });

  it("fails closed on an error too", async () => {
    const run = stage(stageDoc(limits("deny")), { ROUTE_LIMITER: unreachable("ROUTE_LIMITER") });
    const { response, outcome } = await run(who());
    expect(response.status).toBe(503);
    expect(((await response.json()) as Problem).reason).toBe("limiter_unavailable");
    expect(outcome).toMatchObject({
      decision: "deny",
      reason: "limiter_unavailable",
      limit: "route-limit",
      detail: "limiter_route_error",
    });
  });

  it("treats a binding that throws while naming or reaching its object like an object that fails", async () => {
    const throwing = {
      idFromName: () => {
        throw new Error("namespace unavailable");
      },
    };
    const closed = await stage(stageDoc(limits("deny")), { ROUTE_LIMITER: throwing })(who());
    expect(closed.response.status).toBe(503);
    expect(closed.outcome).toMatchObject({ reason: "limiter_unavailable", detail: "limiter_route_error" });
    const open = await stage(stageDoc(limits("allow")), { ROUTE_LIMITER: throwing })(who());
    expect(open.response.status).toBe(200);
    expect(open.outcome.decision).toBe("allow");
    expect(open.outcome.failedOpen).toEqual(["route-limit"]);
  });

  it("still answers 429 when giving back a reservation throws", async () => {
    const identity = who();
    const doc = stageDoc([{ name: "user-limit", key: "user", limit: 5, window_s: 3600 }, ...limits("deny")]);
    // The route object refuses: its counter is full.
    expect(await routeCounter(doc.routes[0]!.name, routeLimit("deny"), 10)).toBe(0);
    const run = stage(doc, {
      TENANT_LIMITER: realLimiter("TENANT_LIMITER", () => ({
        release: () => {
          throw new Error("object gone");
        },
      })),
    });
    const { response, outcome } = await run(identity);
    expect(response.status).toBe(429);
    expect(((await response.json()) as Problem).limit).toMatchObject({ name: "route-limit", key: "route" });
    expect(outcome).toMatchObject({ reason: "rate_limited", limit: "route-limit" });
    // The user's hold could not be given back, so it counts (until it is charged for good).
    expect(await tenantCounter(identity.tenant, userCounterId("user-limit", 5, 3600, "a"), 5, 3600)).toBe(4);
  });

  it("gives a hold back when the other object refuses after HOLD_MS but within a larger budget", async () => {
    // A far or cold route object, given the budget for it, refuses after the tenant object's
    // hold would have been charged for good had it lasted HOLD_MS only.
    const identity = who();
    const doc = stageDoc([{ name: "user-limit", key: "user", limit: 5, window_s: 3600 }, ...limits("deny")], {
      settings: { limiter_timeout_ms: 5000 },
    });
    expect(await routeCounter(doc.routes[0]!.name, routeLimit("deny"), 10)).toBe(0);
    const run = stage(doc, {
      ROUTE_LIMITER: realLimiter("ROUTE_LIMITER", (stub) => ({
        acquire: async (items, hold) => {
          await sleep(HOLD_MS + 200);
          return stub.acquire(items, hold);
        },
      })),
    });
    const { response, outcome } = await run(identity);
    expect(response.status).toBe(429);
    expect(outcome).toMatchObject({ reason: "rate_limited", limit: "route-limit" });
    // Refused by the ceiling: the user keeps all 5.
    expect(await tenantCounter(identity.tenant, userCounterId("user-limit", 5, 3600, "a"), 5, 3600)).toBe(5);
  });

  it("records no fail-open for a request another limit refused: nothing was let through", async () => {
    const run = stage(stageDoc([{ name: "user-limit", key: "user", limit: 1, window_s: 3600 }, ...limits("allow")]), {
      ROUTE_LIMITER: unreachable("ROUTE_LIMITER"),
    });
    const identity = who();
    // The user's one request: let through with the route limit unchecked.
    const first = await run(identity);
    expect(first.response.status).toBe(200);
    expect(first.outcome.failedOpen).toEqual(["route-limit"]);
    // The next one the user limit refuses: nothing was let through unchecked.
    const { response, outcome } = await run(identity);
    expect(response.status).toBe(429);
    expect(outcome).toMatchObject({ reason: "rate_limited", limit: "user-limit" });
    expect(outcome.failedOpen).toBeUndefined();
  });

  it("fails open when the limit says so, and records it for the audit", async () => {
    const tenantAnswered = held<void>();
    const answered = held<void>();
    const run = stage(
      stageDoc([{ name: "user-limit", key: "user", limit: 5, window_s: 3600 }, ...limits("allow")], fast),
      {
        TENANT_LIMITER: realLimiter("TENANT_LIMITER", (stub) => ({
          acquire: async (items, hold) => {
            const answer = await stub.acquire(items, hold);
            tenantAnswered.resolve();
            return answer;
          },
        })),
        ROUTE_LIMITER: answeringAfter("ROUTE_LIMITER", answered.promise),
      },
      { onAnswer: answered.resolve },
    );
    // The budget runs out once the tenant object has answered, and the route object has not.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    let result: StageRun;
    try {
      const running = run(who());
      await tenantAnswered.promise;
      vi.advanceTimersByTime(5);
      result = await running;
    } finally {
      vi.useRealTimers();
    }
    const { response, outcome } = result;
    expect(response.status).toBe(200);
    expect(outcome.decision).toBe("allow");
    expect(outcome.failedOpen).toEqual(["route-limit"]);
    // Fields describe the limits that did answer.
    expect(response.headers.get("ratelimit-policy")).toBe('"user-limit";q=5;w=3600');
  });

  it("fails closed on one object: the other object's hold is given back, and its limits' fields are sent", async () => {
    const identity = who();
    const run = stage(stageDoc([{ name: "user-limit", key: "user", limit: 5, window_s: 3600 }, ...limits("deny")]), {
      ROUTE_LIMITER: unreachable("ROUTE_LIMITER"),
    });
    const { response, outcome } = await run(identity);
    expect(response.status).toBe(503);
    expect(outcome).toMatchObject({ reason: "limiter_unavailable", detail: "limiter_route_error" });
    expect(response.headers.get("ratelimit-policy")).toBe('"user-limit";q=5;w=3600');
    // The user's hold was given back: the user has all five again.
    expect(await tenantCounter(identity.tenant, userCounterId("user-limit", 5, 3600, "a"), 5, 3600)).toBe(5);
  });

  it("gives back a reservation that lands after its call timed out, when the request was refused", async () => {
    const doc = stageDoc(limits("deny"), fast);
    const answered = held<void>();
    const run = stage(
      doc,
      { ROUTE_LIMITER: answeringAfter("ROUTE_LIMITER", answered.promise) },
      { onAnswer: answered.resolve },
    );
    const { response, outcome } = await run(who());
    expect(response.status).toBe(503);
    expect(outcome).toMatchObject({ reason: "limiter_unavailable", detail: "limiter_route_timeout" });
    // The object had charged the request; the late answer came back to it, and the charge went with it.
    expect(await routeCounter(doc.routes[0]!.name, routeLimit("deny"))).toBe(10);
  });

  it("checks every binding before asking any object: a missing one charges the caller nothing", async () => {
    const identity = { subject: "u1", tenant: `t-${unique()}` };
    const run = stage(stageDoc([{ name: "user-limit", key: "user", limit: 2, window_s: 3600 }, ...limits("deny")]), {
      ROUTE_LIMITER: undefined,
    });
    for (let i = 0; i < 3; i++) {
      const { response, outcome } = await run(identity);
      expect(response.status).toBe(500);
      expect(outcome).toMatchObject({ reason: "misconfigured", detail: "binding_missing:ROUTE_LIMITER" });
    }
    // Refused before any object was asked: no user quota was spent (or held) on the three 500s.
    expect(await tenantCounter(identity.tenant, userCounterId("user-limit", 2, 3600, "u1"), 2, 3600)).toBe(2);
  });

  it("refuses as misconfigured when the binding is missing", async () => {
    const run = stage(stageDoc(limits("allow")), { ROUTE_LIMITER: undefined });
    const { response, outcome } = await run(who());
    // Even a fail-open limit does not make a missing binding an allow.
    expect(response.status).toBe(500);
    expect(((await response.json()) as Problem).reason).toBe("misconfigured");
    expect(outcome).toMatchObject({
      decision: "deny",
      reason: "misconfigured",
      detail: "binding_missing:ROUTE_LIMITER",
    });
    expect(outcome.failedOpen).toBeUndefined();
  });
});

describe("tenants named like object members (whole pipeline)", () => {
  it.each(["__proto__", "constructor", "toString", "hasOwnProperty"])(
    "a token with tenant %s is bound to its path and counted like any other tenant",
    async (tenant) => {
      const idp = await makeIssuer();
      const edge = harness(
        basePolicy({
          settings: { limiter_timeout_ms: 1000 },
          issuers: { a: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
          limits: {
            defaults: [{ name: `tenant-${unique()}`, key: "tenant", limit: 2, window_s: 60 }],
          },
          routes: [{ name: "t", methods: ["GET"], path: "/t/:tenant/**", auth: { issuers: ["a"] }, upstream: "echo" }],
        }),
      );
      const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub: `u-${unique()}` })}`;
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const m = marker();
        const response = await edge.fetch(`/t/${tenant}/x`, { headers: { authorization: token, "x-test-marker": m } });
        statuses.push(response.status);
        if (response.status === 200) expect((await originSaw(m))[0]?.headers["x-tenant"]).toBe(tenant);
        else expect(((await response.json()) as { reason: string }).reason).toBe("rate_limited");
      }
      expect(statuses).toEqual([200, 200, 429]);
      const elsewhere = await edge.fetch("/t/acme/x", { headers: { authorization: token } });
      expect(((await elsewhere.json()) as { reason: string }).reason).toBe("tenant_mismatch");
    },
  );
});

describe("a tenant is a name, whichever issuer wrote it (whole pipeline)", () => {
  it("two issuers on one route each bind the same tenant, and their tokens share its tenant limit", async () => {
    const [one, two] = await Promise.all([makeIssuer(), makeIssuer()]);
    const tenant = `t-${unique()}`;
    const edge = harness(
      basePolicy({
        settings: { limiter_timeout_ms: 1000 },
        issuers: {
          one: { kind: "oidc", issuer: one.url, audiences: [AUDIENCE] },
          two: { kind: "oidc", issuer: two.url, audiences: [AUDIENCE] },
        },
        limits: { defaults: [{ name: "tenant-total", key: "tenant", limit: 1, window_s: 3600 }] },
        routes: [
          { name: "t", methods: ["GET"], path: "/t/:tenant/**", auth: { issuers: ["one", "two"] }, upstream: "echo" },
        ],
      }),
    );
    const fromOne = `Bearer ${await one.sign({ tenant_id: tenant, sub: "alice" })}`;
    const fromTwo = `Bearer ${await two.sign({ tenant_id: tenant, sub: "mallory" })}`;
    expect((await edge.fetch(`/t/${tenant}/x`, { headers: { authorization: fromOne } })).status).toBe(200);
    const second = await edge.fetch(`/t/${tenant}/x`, { headers: { authorization: fromTwo } });
    // Bound to the same tenant (not 403 tenant_mismatch), and counted in the same tenant total.
    expect(second.status).toBe(429);
    expect(await second.json()).toMatchObject({ reason: "rate_limited", limit: { name: "tenant-total" } });
  });
});

describe("tenant overrides (whole pipeline, real limiter objects)", () => {
  function planPolicy(idpUrl: string, route: string, limits: NonNullable<PolicyDocument["limits"]>): PolicyDocument {
    return basePolicy({
      settings: { limiter_timeout_ms: 2000 },
      issuers: { a: { kind: "oidc", issuer: idpUrl, audiences: [AUDIENCE] } },
      limits,
      routes: [{ name: route, methods: ["GET"], path: `/${route}/**`, auth: { issuers: ["a"] }, upstream: "echo" }],
    });
  }

  it("after an upgrade that shortens the window, a tenant waits one request's share of the new window, not the old one", async () => {
    const idp = await makeIssuer();
    const route = `plan-${unique()}`;
    const tenant = `trial-${unique()}`;
    const declared: LimitSpec = { name: "user-limit", key: "user", limit: 600, window_s: 60 };
    const trial = harness(
      planPolicy(idp.url, route, {
        defaults: [declared],
        tenant_overrides: { [tenant]: { "user-limit": { limit: 2, window_s: 86_400 } } },
      }),
    );
    const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub: "alice" })}`;
    const call = (edge: ReturnType<typeof harness>) => edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    expect([(await call(trial)).status, (await call(trial)).status]).toEqual([200, 200]);
    const spent = await call(trial);
    expect(spent.status).toBe(429);
    // Two a day, both spent: the counter stands a day ahead.
    expect(Number(spent.headers.get("retry-after"))).toBeGreaterThan(40_000);
    // The same counter under 1,000 a minute: full at most, so its next request is one
    // request's share of the minute (60 ms) away, and every field speaks of the minute.
    const upgraded = harness(
      planPolicy(idp.url, route, {
        defaults: [declared],
        tenant_overrides: { [tenant]: { "user-limit": { limit: 1000, window_s: 60 } } },
      }),
    );
    const refused = await call(upgraded);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBe(1);
    expect(((await refused.json()) as Problem).limit).toMatchObject({ limit: 1000, window_s: 60, reset_s: 60 });
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect((await call(upgraded)).status).toBe(200);
  });

  it("resizes every limit of its name, a route's own replacement of a default included", async () => {
    const idp = await makeIssuer();
    const route = `strict-${unique()}`;
    const policy = planPolicy(idp.url, route, {
      defaults: [{ name: "user-per-minute", key: "user", limit: 600, window_s: 60 }],
      tenant_overrides: { gold: { "user-per-minute": { limit: 50_000 } } },
    });
    (policy.routes[0] as RouteConfig).limits = [{ name: "user-per-minute", key: "user", limit: 2, window_s: 60 }];
    const edge = harness(policy);
    const gold = await edge.fetch(`/${route}/x`, {
      headers: { authorization: `Bearer ${await idp.sign({ tenant_id: "gold", sub: `u-${unique()}` })}` },
    });
    expect(gold.headers.get("ratelimit-policy")).toBe('"user-per-minute";q=50000;w=60');
    const other = await edge.fetch(`/${route}/x`, {
      headers: { authorization: `Bearer ${await idp.sign({ tenant_id: "acme", sub: `u-${unique()}` })}` },
    });
    expect(other.headers.get("ratelimit-policy")).toBe('"user-per-minute";q=2;w=60');
  });
});
