// Rate-limit response fields against README "Rate limits" (response headers) and "Errors",
// through the whole pipeline with the real limiter objects: answers refused by limits on two
// objects at once, a counter another counter of its object refused, a tenant override's own
// window, limits that failed open, answers after admission, the largest sizes a policy takes,
// and what becomes of an origin's own rate-limit fields on a limited route.
// No elapsed time is asserted: bounds are the limits' own windows.
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { AcquireResult, CounterRequest } from "../../src/core/limits/limiter-rpc";
import type { LimitSpec, PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { type RateLimitProblem as Problem, rateLimitItems as items } from "../support/rate-limit-fields";
import { basePolicy, harness, marker, originSaw, unreachableOrigin } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { realLimiter } from "../support/limiter-objects";

const unique = () => crypto.randomUUID().slice(0, 8);

const FIELDS = ["ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"];

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

function authRoute(name: string, limits: LimitSpec[]): RouteConfig {
  return { name, methods: ["GET"], path: `/${name}/**`, auth: { issuers: ["idp"] }, upstream: "echo", limits };
}

function authPolicy(route: RouteConfig, extra: Partial<PolicyDocument> = {}): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    routes: [route],
    ...extra,
  });
}

/** One public GET route named `route`, to `upstream`, counted by `limit`. */
function publicLimitedPolicy(
  route: string,
  upstream: string,
  limit: LimitSpec,
  extra: Partial<PolicyDocument> = {},
): PolicyDocument {
  return basePolicy({
    ...extra,
    routes: [{ name: route, methods: ["GET"], path: `/${route}/**`, auth: "public", upstream, limits: [limit] }],
  });
}

type LimiterStub = { acquire(items: CounterRequest[], hold?: number): Promise<AcquireResult> };

/** The real tenant object of `tenant`, as the edge names it. */
function tenantObject(tenant: string): LimiterStub {
  const ns = (env as unknown as { TENANT_LIMITER: DurableObjectNamespace }).TENANT_LIMITER;
  return ns.get(ns.idFromName(JSON.stringify(["tenant", tenant]))) as unknown as LimiterStub;
}

/** What is left of a counter of the tenant object, after charging it `cost` (by default a look). */
async function tenantCounter(tenant: string, spec: LimitSpec, who: string[], cost = 0): Promise<number> {
  const id = JSON.stringify([spec.key, spec.name, spec.limit, spec.window_s, ...who]);
  const answer = await tenantObject(tenant).acquire([{ id, limit: spec.limit, windowS: spec.window_s, cost }]);
  return answer.counters[0]!.remaining;
}

describe("a counter given back in full", () => {
  // 1769 a minute: T = 60000/1769 ms is no exact float, and taking it off again left a residue
  // of about 1e-15 ms that read as one more second of reset.
  it("reads as full and reset now: r equal to q, and t 0", async () => {
    const name = `given-back-${unique()}`;
    const perUser: LimitSpec = { name: "user-hourly", key: "user", limit: 1, window_s: 3600 };
    const ceiling: LimitSpec = { name: "ceiling", key: "route", limit: 1769, window_s: 60 };
    // The user's one request an hour is spent on the first route; on the second, whose ceiling
    // is new, the ceiling admits and is given back when the user limit refuses.
    const policy = authPolicy(authRoute(`${name}-a`, [perUser]));
    policy.routes.push(authRoute(`${name}-b`, [perUser, ceiling]));
    const edge = harness(policy);
    const token = `Bearer ${await issuer.sign({ tenant_id: `t-${unique()}`, sub: "bob" })}`;
    const spent = await edge.fetch(`/${name}-a/x`, { headers: { authorization: token } });
    expect(spent.status).toBe(200);
    await spent.arrayBuffer();
    const refused = await edge.fetch(`/${name}-b/x`, { headers: { authorization: token } });
    expect(refused.status).toBe(429);
    await refused.arrayBuffer();
    expect(items(refused.headers.get("ratelimit"))).toContainEqual({ name: "ceiling", r: 1769, t: 0 });
  });
});

describe("a 429 decided by limits on two objects that both refuse", () => {
  it("Retry-After, X-RateLimit-*, the first RateLimit item and the limit member all name the limit that frees last", async () => {
    const route = `both-${unique()}`;
    const perUser: LimitSpec = { name: "user-hourly", key: "user", limit: 1, window_s: 3600 };
    const ceiling: LimitSpec = { name: "route-minutely", key: "route", limit: 1, window_s: 60 };
    const edge = harness(authPolicy(authRoute(route, [perUser, ceiling])));
    const token = `Bearer ${await issuer.sign({ tenant_id: `t-${unique()}`, sub: "alice" })}`;
    const call = () => edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    expect((await call()).status).toBe(200);

    const refused = await call();
    expect(refused.status).toBe(429);
    const body = (await refused.json()) as Problem;
    expect(body.reason).toBe("rate_limited");
    expect(edge.audit.at(-1)).toMatchObject({
      reason: "rate_limited",
      detail: "user_limit_exceeded",
      limit: "user-hourly",
    });
    // Both refuse, so neither object charged anything: every item stands at 0, the hourly one
    // first (a retry waits for it, not for the minutely ceiling).
    const fields = items(refused.headers.get("ratelimit"));
    expect(fields.map(({ name, r }) => [name, r])).toEqual([
      ["user-hourly", 0],
      ["route-minutely", 0],
    ]);
    expect(refused.headers.get("ratelimit-policy")).toBe('"user-hourly";q=1;w=3600, "route-minutely";q=1;w=60');
    expect(refused.headers.get("x-ratelimit-limit")).toBe("1");
    expect(refused.headers.get("x-ratelimit-remaining")).toBe("0");
    const reset = Number(refused.headers.get("x-ratelimit-reset"));
    expect(fields[0]!.t).toBe(reset);
    expect(fields[1]!.t).toBeLessThanOrEqual(60);
    expect(body.limit).toEqual({ name: "user-hourly", key: "user", limit: 1, window_s: 3600, reset_s: reset });
    // The hourly limit's wait, longer than the whole minutely window, and never past its reset.
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(refused.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
    expect(retryAfter).toBeGreaterThan(60);
    expect(retryAfter).toBeLessThanOrEqual(reset);
    expect(reset).toBeLessThanOrEqual(3600);
  });
});

describe("one object, one of its counters refusing", () => {
  it("reports the counter that admitted as it stands, uncharged: what the object itself holds", async () => {
    const route = `same-${unique()}`;
    const tenant = `t-${unique()}`;
    const total: LimitSpec = { name: "tenant-total", key: "tenant", limit: 10, window_s: 3600 };
    const perUser: LimitSpec = { name: "user-one", key: "user", limit: 1, window_s: 3600 };
    const edge = harness(authPolicy(authRoute(route, [total, perUser])));
    const token = `Bearer ${await issuer.sign({ tenant_id: tenant, sub: "bob" })}`;
    const call = () => edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    const first = await call();
    expect(first.status).toBe(200);
    expect(first.headers.get("ratelimit")).toMatch(/^"user-one";r=0;t=\d+, "tenant-total";r=9;t=\d+$/);

    const refused = await call();
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as Problem).limit).toMatchObject({ name: "user-one", key: "user" });
    // 9, not 8: the refused request charged the tenant's total nothing, and says so.
    expect(refused.headers.get("ratelimit")).toMatch(/^"user-one";r=0;t=\d+, "tenant-total";r=9;t=\d+$/);
    expect(await tenantCounter(tenant, total, [])).toBe(9);
  });
});

describe("a tenant override with a window of its own", () => {
  it("speaks of the override's size and window in every field; another tenant sees the declared size", async () => {
    const route = `plan-${unique()}`;
    const gold = `gold-${unique()}`;
    const perUser: LimitSpec = { name: "user-limit", key: "user", limit: 2, window_s: 3600 };
    const edge = harness(
      authPolicy(authRoute(route, [perUser]), {
        limits: { tenant_overrides: { [gold]: { "user-limit": { limit: 3, window_s: 10 } } } },
      }),
    );
    const call = async (tenant: string) =>
      edge.fetch(`/${route}/x`, {
        headers: { authorization: `Bearer ${await issuer.sign({ tenant_id: tenant, sub: "carol" })}` },
      });
    for (const left of [2, 1, 0]) {
      const admitted = await call(gold);
      expect(admitted.status).toBe(200);
      expect(admitted.headers.get("ratelimit-policy")).toBe('"user-limit";q=3;w=10');
      expect(admitted.headers.get("x-ratelimit-limit")).toBe("3");
      expect(admitted.headers.get("x-ratelimit-remaining")).toBe(String(left));
      // Within the override's ten seconds, not the declared hour.
      const [item] = items(admitted.headers.get("ratelimit"));
      expect(item).toMatchObject({ name: "user-limit", r: left });
      expect(item!.t).toBe(Number(admitted.headers.get("x-ratelimit-reset")));
      expect(item!.t).toBeLessThanOrEqual(10);
    }
    const refused = await call(gold);
    expect(refused.status).toBe(429);
    const reset = Number(refused.headers.get("x-ratelimit-reset"));
    expect(reset).toBeLessThanOrEqual(10);
    expect(Number(refused.headers.get("retry-after"))).toBeLessThanOrEqual(reset);
    expect(((await refused.json()) as Problem).limit).toEqual({
      name: "user-limit",
      key: "user",
      limit: 3,
      window_s: 10,
      reset_s: reset,
    });

    const plain = await call(`t-${unique()}`);
    expect(plain.headers.get("ratelimit-policy")).toBe('"user-limit";q=2;w=3600');
    expect(plain.headers.get("x-ratelimit-remaining")).toBe("1");
  });
});

describe("limits that failed open", () => {
  it("every limit unanswered and failing open: admitted with no rate-limit field, recorded as failed open", async () => {
    const route = `open-${unique()}`;
    const edge = harness(
      publicLimitedPolicy(route, "echo", { name: "ceiling", key: "route", limit: 5, window_s: 60, on_error: "allow" }),
      {},
      { ROUTE_LIMITER: realLimiter("ROUTE_LIMITER", () => ({ acquire: () => Promise.reject(new Error("gone")) })) },
    );
    const m = marker();
    const response = await edge.fetch(`/${route}/x`, { headers: { "x-test-marker": m } });
    expect(response.status).toBe(200);
    expect(await originSaw(m)).toHaveLength(1);
    // Nothing answered, so no limit stands to be reported: not an empty field, none.
    for (const name of FIELDS) expect(response.headers.get(name), name).toBeNull();
    expect(response.headers.get("retry-after")).toBeNull();
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", failed_open: ["ceiling"] });
  });
});

describe("answers after the limits admitted", () => {
  it("a 502 from an unreachable origin carries the fields of the limits that admitted (and charged) it", async () => {
    const route = `down-${unique()}`;
    const edge = harness(
      publicLimitedPolicy(
        route,
        "down",
        { name: "ceiling", key: "route", limit: 2, window_s: 3600 },
        { upstreams: { down: { url: unreachableOrigin, timeout_ms: 2000 } } },
      ),
    );
    const first = await edge.fetch(`/${route}/x`);
    expect(first.status).toBe(502);
    expect(((await first.json()) as Problem).reason).toBe("origin_unavailable");
    expect(first.headers.get("ratelimit")).toMatch(/^"ceiling";r=1;t=\d+$/);
    expect(first.headers.get("x-ratelimit-remaining")).toBe("1");
    expect(first.headers.get("retry-after")).toBeNull();
    // The limits decided and the request was charged: the next one sees it.
    const second = await edge.fetch(`/${route}/x`);
    expect(second.headers.get("x-ratelimit-remaining")).toBe("0");
  });
});

describe("the largest sizes a policy takes", () => {
  it("are written as plain integers, never in exponent notation", async () => {
    const route = `huge-${unique()}`;
    const edge = harness(
      publicLimitedPolicy(route, "echo", { name: "huge", key: "route", limit: 1_000_000_000, window_s: 86_400 * 31 }),
    );
    const response = await edge.fetch(`/${route}/x`);
    expect(response.status).toBe(200);
    expect(response.headers.get("ratelimit-policy")).toBe('"huge";q=1000000000;w=2678400');
    // One request of a billion a month: under 3 ms of the window, so one second to full.
    expect(response.headers.get("ratelimit")).toBe('"huge";r=999999999;t=1');
    expect(response.headers.get("x-ratelimit-limit")).toBe("1000000000");
    expect(response.headers.get("x-ratelimit-remaining")).toBe("999999999");
    expect(response.headers.get("x-ratelimit-reset")).toBe("1");
  });
});

describe("an origin's own rate-limit fields on a limited route", () => {
  // README lists the fields as one item per limit of the policy: the edge's fields replace
  // the origin's of the same names (not merged, not duplicated); the origin's Retry-After on
  // an answer the edge admitted is the origin's to give, and is passed on.
  it("are replaced by the edge's, one value each; its Retry-After is passed on", async () => {
    const route = `own-${unique()}`;
    const origin = {
      fetch: async () =>
        new Response("busy", {
          status: 503,
          headers: [
            ["ratelimit", '"origin-quota";r=7;t=30'],
            ["ratelimit", '"origin-burst";r=1;t=2'],
            ["ratelimit-policy", '"origin-quota";q=100;w=60'],
            ["x-ratelimit-limit", "100"],
            ["x-ratelimit-remaining", "7"],
            ["x-ratelimit-reset", "30"],
            ["retry-after", "30"],
          ],
        }),
    };
    const edge = harness(
      publicLimitedPolicy(
        route,
        "own",
        { name: "per-ip", key: "ip", limit: 4, window_s: 3600 },
        { upstreams: { own: { service: "OWN", timeout_ms: 2000 } } },
      ),
      {},
      { OWN: origin },
    );
    const response = await edge.fetch(`/${route}/x`, { headers: { "cf-connecting-ip": "198.51.100.61" } });
    expect(response.status).toBe(503);
    expect(await response.text()).toBe("busy");
    expect(response.headers.get("ratelimit")).toMatch(/^"per-ip";r=3;t=\d+$/);
    expect(response.headers.get("ratelimit-policy")).toBe('"per-ip";q=4;w=3600');
    expect(response.headers.get("x-ratelimit-limit")).toBe("4");
    expect(response.headers.get("x-ratelimit-remaining")).toBe("3");
    expect(response.headers.get("x-ratelimit-reset")).toMatch(/^\d+$/);
    expect(response.headers.get("retry-after")).toBe("30");
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 503 });
  });

  it("pass on as sent when no limit answered (every one failed open): the edge has none of its own to give", async () => {
    const route = `own-open-${unique()}`;
    const origin = {
      fetch: async () =>
        new Response("ok", {
          headers: [
            ["ratelimit", '"origin-quota";r=7;t=30'],
            ["x-ratelimit-remaining", "7"],
          ],
        }),
    };
    const unreachableLimiter = {
      idFromName: (name: string) => name,
      get: () => ({
        acquire() {
          throw new Error("limiter down");
        },
        release() {},
      }),
    };
    const edge = harness(
      publicLimitedPolicy(
        route,
        "own",
        { name: "per-ip", key: "ip", limit: 4, window_s: 3600, on_error: "allow" },
        { upstreams: { own: { service: "OWN", timeout_ms: 2000 } } },
      ),
      {},
      { OWN: origin, ROUTE_LIMITER: unreachableLimiter },
    );
    const response = await edge.fetch(`/${route}/x`, { headers: { "cf-connecting-ip": "198.51.100.62" } });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    expect(response.headers.get("ratelimit")).toBe('"origin-quota";r=7;t=30');
    expect(response.headers.get("x-ratelimit-remaining")).toBe("7");
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", failed_open: ["per-ip"] });
  });
});
