// README claims from "Rate limits" on that no other test pins, each through the real pipeline
// and the real limiter objects (or the policy compiler, for what it refuses).
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../../src/app";
import type { AuditRecord } from "../../src/core/audit";
import type { AcquireResult, LimiterRpc } from "../../src/core/limits/limiter-rpc";
import type { LimitSpec } from "../../src/core/policy-types";
import policy from "../../policy/policy.json";
import { basePolicy, echoOrigin, harness, marker, originSaw, recordingDataset } from "../support/harness";
import { AUDIENCE, makeIssuer } from "../support/issuers";
import { type LimiterBinding, limiterNamespace, realLimiter } from "../support/limiter-objects";
import { problemsOf } from "../support/policy-problems";
import { held, settleDeferred } from "../support/waiting";

const unique = () => crypto.randomUUID().slice(0, 8);

interface Problem {
  reason: string;
  limit?: { name: string; key: string; limit: number; window_s: number };
}

/** The real limiter objects of `binding`, with every `acquire` counted as the edge makes it. */
function countedLimiter(binding: LimiterBinding) {
  const counted = { acquires: 0 };
  const namespace = realLimiter(binding, (stub) => ({
    acquire: (items, hold) => {
      counted.acquires++;
      return stub.acquire(items, hold);
    },
  }));
  return { namespace, counted };
}

/** A cost-0 look at one counter of a real limiter object: charges nothing. */
async function remaining(binding: LimiterBinding, objectName: unknown[], limit: LimitSpec, ...who: string[]) {
  const ns = limiterNamespace(binding);
  const stub = ns.get(ns.idFromName(JSON.stringify(objectName))) as unknown as LimiterRpc;
  const id = JSON.stringify([limit.key, limit.name, limit.limit, limit.window_s, ...who]);
  const answer = await stub.acquire([{ id, limit: limit.limit, windowS: limit.window_s, cost: 0 }]);
  return answer.counters[0]?.remaining;
}

// README "Where counters live": "Counter names include each limit's key, limit and window, so a
// deploy that changes a limit's size starts that limit's counters afresh."
describe("a deploy that changes a limit's size starts its counters afresh", () => {
  function deployed(route: string, limit: LimitSpec) {
    return harness(
      basePolicy({
        routes: [
          { name: route, methods: ["GET"], path: `/${route}/**`, auth: "public", upstream: "echo", limits: [limit] },
        ],
      }),
    );
  }

  it("the same limit in the next deploy keeps counting; a new limit or window under the same name counts anew", async () => {
    const route = `resized-${unique()}`;
    const from = { "cf-connecting-ip": "198.51.100.77" };
    const declared: LimitSpec = { name: "per-ip", key: "ip", limit: 1, window_s: 3600 };
    const first = deployed(route, declared);
    expect((await first.fetch(`/${route}/x`, { headers: from })).status).toBe(200);
    expect((await first.fetch(`/${route}/x`, { headers: from })).status).toBe(429);

    // Redeployed unchanged: the same counter, still spent.
    const same = deployed(route, { ...declared });
    const refused = await same.fetch(`/${route}/x`, { headers: from });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as Problem).limit).toMatchObject({ name: "per-ip", limit: 1, window_s: 3600 });

    // A new size under the same name: a counter of its own, full.
    const larger = deployed(route, { ...declared, limit: 2 });
    const admitted = await larger.fetch(`/${route}/x`, { headers: from });
    expect(admitted.status).toBe(200);
    expect(admitted.headers.get("ratelimit")).toMatch(/^"per-ip";r=1;t=\d+$/);

    const longer = deployed(route, { ...declared, window_s: 7200 });
    expect((await longer.fetch(`/${route}/x`, { headers: from })).status).toBe(200);
    expect(longer.audit.map((record) => [record.decision, record.reason])).toEqual([["allow", null]]);
  });
});

// README "Where counters live": "A request makes at most one call per object kind", and "The
// shipped defaults are tenant and user limits only, so the common path costs exactly one
// Durable Object round trip; a `route` ceiling adds a second, parallel call on the routes that
// declare one (the demo policy puts one on `limited`)".
describe("one call per limiter object kind", () => {
  it("a public route's route ceilings and ip limits are one call to one route object", async () => {
    const route = `many-${unique()}`;
    const tenant = countedLimiter("TENANT_LIMITER");
    const routeObjects = countedLimiter("ROUTE_LIMITER");
    const edge = harness(
      basePolicy({
        routes: [
          {
            name: route,
            methods: ["GET", "POST"],
            path: `/${route}/**`,
            auth: "public",
            upstream: "echo",
            limits: [
              { name: "ceiling-minute", key: "route", limit: 1000, window_s: 60 },
              { name: "ceiling-hour", key: "route", limit: 10_000, window_s: 3600 },
              { name: "ip-minute", key: "ip", limit: 100, window_s: 60 },
              { name: "ip-hour", key: "ip", limit: 1000, window_s: 3600 },
            ],
          },
        ],
      }),
      {},
      { TENANT_LIMITER: tenant.namespace, ROUTE_LIMITER: routeObjects.namespace },
    );
    const response = await edge.fetch(`/${route}/x`, { headers: { "cf-connecting-ip": "198.51.100.78" } });
    expect(response.status).toBe(200);
    // Every limit decided the request: all four are in the fields.
    expect(response.headers.get("ratelimit-policy")?.split(", ")).toHaveLength(4);
    expect([tenant.counted.acquires, routeObjects.counted.acquires]).toEqual([0, 1]);
  });

  it("an authenticated route's tenant, user and route limits are one call to each kind", async () => {
    const idp = await makeIssuer();
    const route = `mixed-${unique()}`;
    const tenant = countedLimiter("TENANT_LIMITER");
    const routeObjects = countedLimiter("ROUTE_LIMITER");
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
        limits: {
          defaults: [
            { name: "tenant-per-minute", key: "tenant", limit: 10_000, window_s: 60 },
            { name: "user-per-minute", key: "user", limit: 600, window_s: 60 },
          ],
        },
        routes: [
          {
            name: route,
            methods: ["GET"],
            path: `/${route}/**`,
            auth: { issuers: ["idp"] },
            upstream: "echo",
            limits: [
              { name: "user-per-hour", key: "user", limit: 1000, window_s: 3600 },
              { name: "ceiling-minute", key: "route", limit: 5000, window_s: 60 },
              { name: "ceiling-hour", key: "route", limit: 50_000, window_s: 3600 },
            ],
          },
        ],
      }),
      {},
      { TENANT_LIMITER: tenant.namespace, ROUTE_LIMITER: routeObjects.namespace },
    );
    const token = await idp.sign({ tenant_id: `t-${unique()}`, sub: `u-${unique()}` });
    const response = await edge.fetch(`/${route}/x`, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get("ratelimit-policy")?.split(", ")).toHaveLength(5);
    expect([tenant.counted.acquires, routeObjects.counted.acquires]).toEqual([1, 1]);
  });

  it("the shipped policy: one round trip on the common path, a second only on `limited`", async () => {
    const idp = await makeIssuer();
    const tenant = countedLimiter("TENANT_LIMITER");
    const routeObjects = countedLimiter("ROUTE_LIMITER");
    const edge = harness(
      {
        ...policy,
        issuers: { ...policy.issuers, demo: { ...policy.issuers.demo, issuer: idp.url } },
        upstreams: { api: { url: echoOrigin } },
        // Local Durable Objects can be cold on first call; the 50 ms production budget is for warm ones.
        settings: { ...policy.settings, limiter_timeout_ms: 2000 },
      },
      {},
      { TENANT_LIMITER: tenant.namespace, ROUTE_LIMITER: routeObjects.namespace },
    );
    const token = await idp.sign({
      aud: policy.issuers.demo.audiences[0],
      tenant_id: `t-${unique()}`,
      sub: `u-${unique()}`,
      scope: "api:read",
    });
    const headers = { authorization: `Bearer ${token}` };
    const common = await edge.fetch("/v1/things", { headers });
    expect(common.status).toBe(200);
    expect(common.headers.get("ratelimit-policy")).toBe(
      '"user-per-minute";q=600;w=60, "tenant-per-minute";q=10000;w=60',
    );
    expect([tenant.counted.acquires, routeObjects.counted.acquires]).toEqual([1, 0]);

    const limited = await edge.fetch("/v1/limited", { headers });
    expect(limited.status).toBe(200);
    expect([tenant.counted.acquires, routeObjects.counted.acquires]).toEqual([2, 1]);
    expect(edge.audit.map((record) => record.route)).toEqual(["api-read", "limited"]);
  });
});

// README "Rate limits": the policy refuses an override of "a tenant no token can carry (a tenant
// is 1 to 255 printable ASCII characters, without spaces, commas, `|`, `"` or `\`)".
describe("tenant overrides name only tenants a token can carry", () => {
  function withOverrideFor(tenantName: string) {
    return basePolicy({
      // A route that takes the tenant default: a default no route takes is refused for that.
      issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: [AUDIENCE] } },
      routes: [{ name: "api", methods: ["GET"], path: "/api/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      limits: {
        defaults: [{ name: "tenant-per-minute", key: "tenant", limit: 100, window_s: 60 }],
        tenant_overrides: { [tenantName]: { "tenant-per-minute": { limit: 1000 } } },
      },
    });
  }

  it.each(['acme"corp', "acme\\corp", "acme\u007fcorp", "ümlaut", "a".repeat(256)])("refuses %j", (tenantName) => {
    expect(problemsOf(withOverrideFor(tenantName))).toEqual([
      `limits.tenant_overrides.${tenantName}: a tenant is 1 to 255 printable ASCII characters, without spaces, commas, |, " or \\`,
    ]);
  });

  it("accepts 255 printable characters, punctuation included", () => {
    expect(problemsOf(withOverrideFor("a".repeat(255)))).toEqual([]);
    expect(problemsOf(withOverrideFor("acme.eu-1_(beta)!"))).toEqual([]);
  });
});

// README "Rate limits": "Tokens may still carry those three tenants [`__proto__`, `constructor`,
// `prototype`]: they are bound and counted like any other", the override map's reserved names
// included: a policy with overrides gives such a tenant the declared size.
describe("tenants named like object properties, beside tenant overrides", () => {
  it.each(["__proto__", "constructor", "prototype"])(
    "a token for tenant %s is bound to its path and counted at the declared size",
    async (tenantName) => {
      const idp = await makeIssuer();
      const limitName = `tenant-${unique()}`;
      const edge = harness(
        basePolicy({
          issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
          limits: {
            defaults: [{ name: limitName, key: "tenant", limit: 2, window_s: 3600 }],
            tenant_overrides: { gold: { [limitName]: { limit: 50 } } },
          },
          routes: [
            { name: "t", methods: ["GET"], path: "/t/:tenant/**", auth: { issuers: ["idp"] }, upstream: "echo" },
          ],
        }),
      );
      const authorization = `Bearer ${await idp.sign({ tenant_id: tenantName, sub: `u-${unique()}` })}`;
      const m = marker();
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const response = await edge.fetch(`/t/${tenantName}/x`, { headers: { authorization, "x-test-marker": m } });
        statuses.push(response.status);
        if (i === 0) expect(response.headers.get("ratelimit-policy")).toBe(`"${limitName}";q=2;w=3600`);
        if (i === 2) expect(((await response.json()) as Problem).limit).toMatchObject({ name: limitName, limit: 2 });
      }
      expect(statuses).toEqual([200, 200, 429]);
      const seen = await originSaw(m);
      expect(seen.map((request) => request.headers["x-tenant"])).toEqual([tenantName, tenantName]);
      const elsewhere = await edge.fetch("/t/gold/x", { headers: { authorization } });
      expect(((await elsewhere.json()) as Problem).reason).toBe("tenant_mismatch");
    },
  );
});

// README "Where counters live": "A call that ran out of its `limiter_timeout_ms` may still have
// charged or held: on a refused request its answer is waited for, off the response path, for up
// to 30 s, and given back if it comes." The give-back within the wait is tested in
// rate-limit.test.ts; this pins the bound: the request's deferred work ends 30 s after the
// refusal, and an answer later than that gives nothing back.
describe("a late limiter answer is waited for 30 s at most", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("the refused request's deferred work ends at 30 s; the charge that answers after it stays", async () => {
    const route = `late-${unique()}`;
    const ceiling: LimitSpec = { name: "ceiling", key: "route", limit: 10, window_s: 3600, on_error: "deny" };
    const called = held<void>();
    const gate = held<void>();
    let charged: Promise<AcquireResult> | undefined;
    let released = 0;
    const gated = realLimiter("ROUTE_LIMITER", (stub) => ({
      acquire: async (items, hold) => {
        // The object decides (and charges) at once; its answer reaches the edge only at the gate.
        charged = Promise.resolve(stub.acquire(items, hold));
        called.resolve();
        await gate.promise;
        return charged;
      },
      release: (items, at, epoch, seq) => {
        released++;
        return stub.release(items, at, epoch, seq);
      },
    }));
    const audit: AuditRecord[] = [];
    const app = createApp(
      basePolicy({
        settings: { limiter_timeout_ms: 5 },
        routes: [
          { name: route, methods: ["GET"], path: `/${route}/**`, auth: "public", upstream: "echo", limits: [ceiling] },
        ],
      }),
      { auditSinks: [(record) => void audit.push(record)] },
    );
    // The request's own execution context, watched directly: the test runner's
    // waitOnExecutionContext gives up on deferred work after 30 s of its own (on the same fake
    // clock), which would hide the edge's bound behind the runner's.
    const deferred: Promise<unknown>[] = [];
    const ctx = {
      waitUntil: (work: Promise<unknown>) => void deferred.push(work),
      passThroughOnException: () => undefined,
      props: {},
    } as unknown as ExecutionContext;
    const m = marker();

    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const answering = app.fetch(
      new Request(`https://edge.test/${route}/x`, { headers: { "x-test-marker": m } }),
      { ...env, METRICS: recordingDataset(), ROUTE_LIMITER: gated },
      ctx,
    );
    await called.promise;
    // The object has charged the request (its own answer says so), but the edge has not heard.
    expect((await (charged as Promise<AcquireResult>)).allowed).toBe(true);
    await vi.advanceTimersByTimeAsync(5);
    // The refusal is answered; its give-back, with the wait, was set up before it.
    const response = await answering;
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("1");
    let finished = false;
    const allDeferred = settleDeferred(deferred).then(() => {
      finished = true;
    });

    await vi.advanceTimersByTimeAsync(29_999);
    // A round trip to the real object: time for deferred work whose wait had ended to settle.
    expect(await remaining("ROUTE_LIMITER", ["route", route], ceiling, "GET")).toBe(9);
    expect(audit.map((record) => [record.status, record.reason, record.detail])).toEqual([
      [503, "limiter_unavailable", "limiter_route_timeout"],
    ]);
    expect(finished).toBe(false);

    await vi.advanceTimersByTimeAsync(1);
    await allDeferred;

    // The answer comes after the wait: nobody is left to give it back.
    gate.resolve();
    await charged;
    expect(released).toBe(0);
    expect(await remaining("ROUTE_LIMITER", ["route", route], ceiling, "GET")).toBe(9);
    expect(await originSaw(m)).toEqual([]);
  });
});
