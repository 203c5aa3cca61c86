// Rate limits under contention, through the whole pipeline and the real limiter objects:
// requests that the limits (or the client) refuse must not spend anybody's budget, one
// caller's refusals must not use up what other tenants share, and crafted identities must
// not collide with other callers' counters.
//
// README ("Rate limits"): "Every applicable limit is checked and the most restrictive one
// decides. A refused request is not counted against any limit."
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AcquireResult, CounterRequest } from "../../src/core/limits/limiter-rpc";
import type { LimitSpec, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";

const unique = () => crypto.randomUUID().slice(0, 8);

type LimiterStub = {
  acquire(items: CounterRequest[], hold?: boolean): Promise<AcquireResult>;
  release(items: CounterRequest[], at?: number, epoch?: number, seq?: number): Promise<void>;
};

function limiterNamespace(binding: "ROUTE_LIMITER" | "TENANT_LIMITER"): DurableObjectNamespace {
  return (env as unknown as Record<string, DurableObjectNamespace>)[binding]!;
}

/** What is left of a counter right now (a cost-0 look, which charges nothing). */
async function remainingOf(
  binding: "ROUTE_LIMITER" | "TENANT_LIMITER",
  objectName: unknown[],
  counterId: unknown[],
  limit: number,
  windowS: number,
): Promise<number> {
  const ns = limiterNamespace(binding);
  const stub = ns.get(ns.idFromName(JSON.stringify(objectName))) as unknown as LimiterStub;
  const answer = await stub.acquire([{ id: JSON.stringify(counterId), limit, windowS, cost: 0 }]);
  return answer.counters[0]!.remaining;
}

/** The `r=` of one item of a RateLimit field. */
function remainingIn(field: string | null, name: string): number {
  const match = new RegExp(`"${name}";r=(\\d+)`).exec(field ?? "");
  return match ? Number(match[1]) : Number.NaN;
}

function authRoute(name: string, limits: LimitSpec[]): RouteConfig {
  return { name, methods: ["GET"], path: `/${name}/**`, auth: { issuers: ["a"] }, upstream: "echo", limits };
}

function edgeFor(idp: TestIssuer, routes: RouteConfig[], defaults: LimitSpec[] = []) {
  return harness(
    basePolicy({
      settings: { limiter_timeout_ms: 2000 },
      issuers: { a: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
      limits: { defaults },
      routes,
    }),
  );
}

/** `waves` rounds of `size` concurrent requests; the statuses answered. */
async function flood(send: () => Promise<Response>, waves: number, size: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let wave = 0; wave < waves; wave++) {
    const responses = await Promise.all(Array.from({ length: size }, send));
    for (const response of responses) {
      statuses.push(response.status);
      await response.body?.cancel();
    }
  }
  return statuses;
}

describe("refused requests spend no shared budget (tenant and route objects asked in parallel)", () => {
  // The tenant object (user limit) and the route object (ceiling) are asked in parallel, so
  // each holds the request rather than charging it: when one refuses, the other's hold is
  // given back exactly, however late. (A charge given back by time alone is lost under load:
  // at ~40 ms per release locally, a ceiling of 100 per 10 s lost half a slot per refusal, and
  // the shipped `limited` route's 5,000 a minute a whole one.) A single user already over its
  // own limit sends 300 requests, 50 at a time: every one refused, none forwarded, and the
  // ceiling every tenant shares still has what it had. The shared limits here are 100 an hour:
  // a slot comes back every 36 s, so none drains back while the test runs and the counts are exact.
  it("a user already over its own limit cannot use up the route ceiling every tenant shares", async () => {
    const idp = await makeIssuer();
    const route = `ceiling-${unique()}`;
    const ceiling: LimitSpec = { name: "route-ceiling", key: "route", limit: 100, window_s: 3600 };
    const edge = edgeFor(idp, [
      authRoute(route, [{ name: "per-user", key: "user", limit: 1, window_s: 3600 }, ceiling]),
    ]);
    const mallory = `Bearer ${await idp.sign({ tenant_id: `evil-${unique()}`, sub: "mallory" })}`;
    const m = marker();
    const send = () => edge.fetch(`/${route}/x`, { headers: { authorization: mallory, "x-test-marker": m } });
    expect((await send()).status).toBe(200); // the user's one request an hour

    const statuses = await flood(send, 6, 50);
    // Every one of them refused by the user's own limit, and none forwarded.
    expect(new Set(statuses)).toEqual(new Set([429]));
    // One record per request: the one admitted, then 300 refusals by the user's own limit.
    expect(edge.audit.map((r) => [r.decision, r.reason, r.limit])).toEqual([
      ["allow", null, null],
      ...Array.from({ length: 300 }, () => ["deny", "rate_limited", "per-user"]),
    ]);
    expect(await originSaw(m)).toHaveLength(1);

    // Only one request was let through, so the ceiling has 99 of 100 left.
    const left = await remainingOf(
      "ROUTE_LIMITER",
      ["route", route],
      ["route", "route-ceiling", 100, 3600, "GET"],
      100,
      3600,
    );
    // Another tenant's user sees the same state in its RateLimit field.
    const alice = `Bearer ${await idp.sign({ tenant_id: `acme-${unique()}`, sub: "alice" })}`;
    const victim = await edge.fetch(`/${route}/x`, { headers: { authorization: alice } });
    expect(left).toBe(99);
    expect(victim.status).toBe(200);
    expect(remainingIn(victim.headers.get("ratelimit"), "route-ceiling")).toBe(98);
  });

  // The other way round: requests a saturated route ceiling refuses do not spend their
  // tenant's total, so a tenant whose clients retry against it is not refused on every other route.
  it("requests a route ceiling refuses do not spend the tenant's total on its other routes", async () => {
    const idp = await makeIssuer();
    const hot = `hot-${unique()}`;
    const other = `other-${unique()}`;
    const tenant = `t-${unique()}`;
    const total: LimitSpec = { name: "tenant-total", key: "tenant", limit: 100, window_s: 3600 };
    const edge = edgeFor(
      idp,
      [authRoute(hot, [{ name: "hot-ceiling", key: "route", limit: 1, window_s: 3600 }]), authRoute(other, [])],
      [total],
    );
    const bob = `Bearer ${await idp.sign({ tenant_id: tenant, sub: "bob" })}`;
    const send = () => edge.fetch(`/${hot}/x`, { headers: { authorization: bob } });
    expect((await send()).status).toBe(200); // takes the hot route's only slot

    const statuses = await flood(send, 6, 50);
    expect(new Set(statuses)).toEqual(new Set([429]));
    // One record per request: the one admitted, then 300 refusals by the hot route's ceiling.
    expect(edge.audit.map((r) => [r.decision, r.reason, r.limit])).toEqual([
      ["allow", null, null],
      ...Array.from({ length: 300 }, () => ["deny", "rate_limited", "hot-ceiling"]),
    ]);

    const left = await remainingOf(
      "TENANT_LIMITER",
      ["tenant", tenant],
      ["tenant", "tenant-total", 100, 3600],
      100,
      3600,
    );
    const elsewhere = await edge.fetch(`/${other}/x`, { headers: { authorization: bob } });
    expect(elsewhere.status).toBe(200);
    // One request was admitted: 99 left; and 98 once the request elsewhere is counted.
    expect(left).toBe(99);
    expect(remainingIn(elsewhere.headers.get("ratelimit"), "tenant-total")).toBe(98);
  });
});

describe("a request never forwarded is not counted", () => {
  // A request whose client went away while the limiter was asked is never forwarded, and its
  // audit record says `deny` (`client_closed`): its reservation is given back like a refused one's.
  it("a client that disconnects while the limiter decides is not charged for the request it never sent", async () => {
    const name = `gone-${unique()}`;
    const address = "192.0.2.77";
    const controller = new AbortController();
    const real = limiterNamespace("ROUTE_LIMITER");
    let abortOnAnswer = true;
    // The real route objects; the client hangs up just as the first answer comes back.
    const routeLimiter = {
      idFromName: (objectName: string) => real.idFromName(objectName),
      get: (id: DurableObjectId) => {
        const stub = real.get(id) as unknown as LimiterStub;
        return {
          acquire: async (items: CounterRequest[], hold?: boolean) => {
            const answer = await stub.acquire(items, hold);
            if (abortOnAnswer) controller.abort();
            abortOnAnswer = false;
            return answer;
          },
          release: (items: CounterRequest[], at?: number, epoch?: number, seq?: number) =>
            stub.release(items, at, epoch, seq),
        };
      },
    };
    const edge = harness(
      basePolicy({
        settings: { limiter_timeout_ms: 2000 },
        routes: [
          {
            name,
            methods: ["GET"],
            path: `/${name}/**`,
            auth: "public",
            upstream: "echo",
            limits: [{ name: "per-ip", key: "ip", limit: 2, window_s: 3600 }],
          },
        ],
      }),
      {},
      { ROUTE_LIMITER: routeLimiter },
    );
    const m = marker();
    const headers = { "cf-connecting-ip": address, "x-test-marker": m };
    const gone = await edge.fetch(new Request(`https://edge.test/${name}/x`, { headers, signal: controller.signal }));
    expect(gone.status).toBe(499);
    expect(edge.audit.map((r) => [r.decision, r.reason])).toEqual([["deny", "client_closed"]]);
    expect(await originSaw(m)).toHaveLength(0);

    // The address still has its two requests an hour.
    const left = await remainingOf(
      "ROUTE_LIMITER",
      ["route", name, address],
      ["ip", "per-ip", 2, 3600, address],
      2,
      3600,
    );
    expect(left).toBe(2);
  });
});

describe("counters under contention and crafted identities", () => {
  // Counter and object names are JSON arrays, so subjects and tenants that contain
  // the separators of a naive join cannot reach another caller's counter.
  it("subjects and tenants containing separators and quotes do not share counters", async () => {
    const idp = await makeIssuer();
    const route = `sep-${unique()}`;
    const edge = edgeFor(idp, [authRoute(route, [{ name: "per-user", key: "user", limit: 1, window_s: 3600 }])]);
    const t = unique();
    const callers = [
      { tenant_id: `${t}`, sub: 'a","a' },
      { tenant_id: `${t}`, sub: "a" },
      // (A tenant with a comma, a quote or a backslash is refused outright: x-tenant is one value.)
      { tenant_id: `${t}:a`, sub: "a" },
      { tenant_id: `${t}:a:`, sub: "a" },
      { tenant_id: `${t}`, sub: "a:a" },
      { sub: `a","${t}` },
    ];
    for (const claims of callers) {
      const token = `Bearer ${await idp.sign(claims)}`;
      const response = await edge.fetch(`/${route}/x`, { headers: { authorization: token } });
      expect([JSON.stringify(claims), response.status]).toEqual([JSON.stringify(claims), 200]);
    }
  });

  // One object decides tenant and user limits atomically, so of many concurrent
  // requests exactly the limit is admitted, and every refusal is a 429 with its audit record.
  it("admits exactly the user limit of 60 concurrent requests through the whole pipeline", async () => {
    const idp = await makeIssuer();
    const route = `exact-${unique()}`;
    const edge = edgeFor(
      idp,
      [authRoute(route, [{ name: "per-user", key: "user", limit: 7, window_s: 3600 }])],
      [{ name: "tenant-total", key: "tenant", limit: 1000, window_s: 3600 }],
    );
    const token = `Bearer ${await idp.sign({ tenant_id: `t-${unique()}`, sub: "carol" })}`;
    const statuses = await flood(() => edge.fetch(`/${route}/x`, { headers: { authorization: token } }), 1, 60);
    expect(statuses.filter((s) => s === 200)).toHaveLength(7);
    expect(statuses.filter((s) => s === 429)).toHaveLength(53);
    expect(edge.audit.filter((r) => r.reason === "rate_limited" && r.limit === "per-user")).toHaveLength(53);
  });
});
