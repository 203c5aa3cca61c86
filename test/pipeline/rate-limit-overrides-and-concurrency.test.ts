// Rate limits as policy, through the whole pipeline and the real
// limiter objects: which counters a tenant override reaches, and what concurrent requests on
// routes counted by one object and by two leave behind in the counters they share.
//
// README ("Rate limits"): `tenant_overrides` resize a tenant's `tenant` and `user` limits by
// name; a caller whose token names no tenant is counted in an object of its own; "A request
// refused by one limit is given back to every limit that admitted it"; a request on a route
// with a ceiling is held by both objects, and one counted by one object only is charged at
// once (behind a counter's pending holds, queued with them).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { LimiterRpc } from "../../src/core/limits/limiter-rpc";
import type { LimitSpec, PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { realLimiter } from "../support/limiter-objects";
import { type RateLimitProblem as Problem, verdictOf } from "../support/rate-limit-fields";

const unique = () => crypto.randomUUID().slice(0, 8);

/** What is left of one counter of a real limiter object: a cost-0 look, which charges nothing. */
async function remainingOf(
  binding: "TENANT_LIMITER" | "ROUTE_LIMITER",
  objectName: unknown[],
  counterId: unknown[],
  limit: number,
  windowS: number,
): Promise<number> {
  const ns = (env as unknown as Record<string, DurableObjectNamespace>)[binding]!;
  const stub = ns.get(ns.idFromName(JSON.stringify(objectName))) as unknown as LimiterRpc;
  const answer = await stub.acquire([{ id: JSON.stringify(counterId), limit, windowS, cost: 0 }]);
  return answer.counters[0]!.remaining;
}

function authRoute(name: string, limits: LimitSpec[] = []): RouteConfig {
  return { name, methods: ["GET"], path: `/${name}/**`, auth: { issuers: ["a"] }, upstream: "echo", limits };
}

function edgeFor(idp: TestIssuer, routes: RouteConfig[], limits: PolicyDocument["limits"]) {
  return harness(
    basePolicy({
      settings: { limiter_timeout_ms: 2000 },
      issuers: { a: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
      limits,
      routes,
    }),
  );
}

describe("a tenant override reaches that tenant's tenant and user limits, and nothing else of its name", () => {
  // `calls` is a user limit by default; route `shared` replaces it with a route ceiling of the
  // same name. The gold plan's override of `calls` must resize the user limit the gold tenant's
  // users have, but neither the ceiling every tenant shares on `shared` (a plan would otherwise
  // buy a tenant a larger share of everyone's ceiling, here counted per tenant size) nor the
  // user limit of the same subject when its token names no tenant (no plan to go by).
  it("the gold plan's user limit is its own; a same-named route ceiling and a tenant-less token keep the declared size", async () => {
    const idp = await makeIssuer();
    const plain = `plain-${unique()}`;
    const shared = `shared-${unique()}`;
    const gold = `gold-${unique()}`;
    const calls: LimitSpec = { name: "calls", key: "user", limit: 1, window_s: 3600 };
    const ceiling: LimitSpec = { name: "calls", key: "route", limit: 1, window_s: 3600 };
    const edge = edgeFor(idp, [authRoute(plain), authRoute(shared, [ceiling])], {
      defaults: [calls],
      tenant_overrides: { [gold]: { calls: { limit: 3 } } },
    });
    const sub = `u-${unique()}`;
    const goldToken = `Bearer ${await idp.sign({ tenant_id: gold, sub })}`;
    const tenantless = `Bearer ${await idp.sign({ tenant_id: undefined, sub })}`;
    const send = (route: string, token: string) => edge.fetch(`/${route}/x`, { headers: { authorization: token } });

    // Gold's user limit is 3 on `plain`, and says so.
    const first = await send(plain, goldToken);
    expect(first.headers.get("ratelimit-policy")).toBe('"calls";q=3;w=3600');
    expect(await verdictOf(edge, first)).toEqual([200]);
    expect(await verdictOf(edge, await send(plain, goldToken))).toEqual([200]);
    expect(await verdictOf(edge, await send(plain, goldToken))).toEqual([200]);
    expect(await verdictOf(edge, await send(plain, goldToken))).toEqual([
      429,
      "rate_limited",
      "user_limit_exceeded",
      "calls",
    ]);

    // On `shared`, `calls` is a ceiling of 1 whoever asks: the gold plan does not resize it.
    const onShared = await send(shared, goldToken);
    expect(onShared.headers.get("ratelimit-policy")).toBe('"calls";q=1;w=3600');
    expect(await verdictOf(edge, onShared)).toEqual([200]);
    const otherGold = `Bearer ${await idp.sign({ tenant_id: gold, sub: `v-${unique()}` })}`;
    const refused = await send(shared, otherGold);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as Problem).limit).toMatchObject({ name: "calls", key: "route", limit: 1 });

    // The same subject without a tenant has no plan: the declared 1, in its own counter.
    const bare = await send(plain, tenantless);
    expect(bare.headers.get("ratelimit-policy")).toBe('"calls";q=1;w=3600');
    expect(await verdictOf(edge, bare)).toEqual([200]);
    expect(await verdictOf(edge, await send(plain, tenantless))).toEqual([
      429,
      "rate_limited",
      "user_limit_exceeded",
      "calls",
    ]);

    // The gold counter holds exactly its three admitted requests (the 429 charged nothing).
    const userCounter = ["user", "calls", 1, 3600, "a", sub];
    expect(await remainingOf("TENANT_LIMITER", ["tenant", gold], userCounter, 3, 3600)).toBe(0);
    expect(await remainingOf("TENANT_LIMITER", ["caller", "a", sub], userCounter, 1, 3600)).toBe(0);
  });
});

describe("concurrent requests on routes counted by one object and by two, sharing a user limit", () => {
  // One user limit (a default, so one counter across routes) and, on `hot` only, a route
  // ceiling: `hot` requests are held by the tenant and the route objects, `cold` ones charged
  // by the tenant object alone, queued behind the holds on the same counter. Refusals on `hot`
  // (by either limit) give holds back while `cold` charges are queued behind them. Whatever
  // the interleaving (a request may be refused while another's hold is pending: the README's
  // error towards refusing), once every give-back has run each counter must stand exactly at
  // the requests that reached the origin: none leaked, none given back twice.
  it("every counter stands at exactly the admitted requests, each of which reached the origin once", async () => {
    const idp = await makeIssuer();
    const hot = `hot-${unique()}`;
    const cold = `cold-${unique()}`;
    const tenant = `t-${unique()}`;
    const perUser: LimitSpec = { name: "per-user", key: "user", limit: 6, window_s: 3600 };
    const ceiling: LimitSpec = { name: "hot-ceiling", key: "route", limit: 4, window_s: 3600 };
    const edge = edgeFor(idp, [authRoute(hot, [ceiling]), authRoute(cold)], { defaults: [perUser] });
    const users = ["ann", "ben", "cat"];
    const tokens = new Map(
      await Promise.all(
        users.map(async (sub) => [sub, `Bearer ${await idp.sign({ tenant_id: tenant, sub })}`] as const),
      ),
    );
    const m = marker();
    // Each user: 5 on hot, 4 on cold, all at once (27 requests; 18 user slots, 4 ceiling slots).
    const plan = users.flatMap((sub) => [
      ...Array.from({ length: 5 }, () => ({ sub, route: hot })),
      ...Array.from({ length: 4 }, () => ({ sub, route: cold })),
    ]);
    const results = await Promise.all(
      plan.map(async ({ sub, route }) => {
        const response = await edge.fetch(`/${route}/x?sub=${sub}`, {
          headers: { authorization: tokens.get(sub)!, "x-test-marker": m },
        });
        return { sub, route, verdict: await verdictOf(edge, response) };
      }),
    );
    await edge.settle();

    const admitted = results.filter((r) => r.verdict[0] === 200);
    // Each refusal names one of the two limits, as a 429 (never a 500 or a 503 here).
    for (const { route, verdict } of results.filter((r) => r.verdict[0] !== 200)) {
      const byUser = [429, "rate_limited", "user_limit_exceeded", "per-user"];
      const byCeiling = [429, "rate_limited", "route_limit_exceeded", "hot-ceiling"];
      const expected = route === hot ? [byUser, byCeiling] : [byUser];
      expect(expected, `a refusal on ${route}`).toContainEqual(verdict);
    }
    // What the origin saw is what was admitted, request for request.
    const seen = await originSaw(m);
    expect(seen).toHaveLength(admitted.length);
    const admittedHot = admitted.filter((r) => r.route === hot).length;
    expect(admittedHot).toBeLessThanOrEqual(ceiling.limit);
    expect(await remainingOf("ROUTE_LIMITER", ["route", hot], ["route", "hot-ceiling", 4, 3600, "GET"], 4, 3600)).toBe(
      ceiling.limit - admittedHot,
    );
    for (const sub of users) {
      const mine = admitted.filter((r) => r.sub === sub).length;
      expect(mine).toBeLessThanOrEqual(perUser.limit);
      const left = await remainingOf(
        "TENANT_LIMITER",
        ["tenant", tenant],
        ["user", "per-user", 6, 3600, "a", sub],
        6,
        3600,
      );
      expect([sub, left]).toEqual([sub, perUser.limit - mine]);
    }
  });
});

describe("a hold pending on a user counter, as the README's residual race describes it", () => {
  // README: "Until a hold is given back a concurrent request on the same counter may be refused
  // — the error is always towards refusing". Pinned exactly: while the user's request on the
  // ceiling route is held (its route object not yet answered), the user's request elsewhere is
  // refused by its user limit, charged nothing; once the ceiling refuses the held request and
  // its hold is given back, the user has its whole budget again, and is admitted.
  it("a request refused behind another's hold is charged nothing, and the give-back restores the budget", async () => {
    const idp = await makeIssuer();
    const hot = `hot-${unique()}`;
    const cold = `cold-${unique()}`;
    const tenant = `t-${unique()}`;
    const perUser: LimitSpec = { name: "per-user", key: "user", limit: 1, window_s: 3600 };
    const ceiling: LimitSpec = { name: "hot-ceiling", key: "route", limit: 1, window_s: 3600 };
    const realRoute = (env as unknown as Record<string, DurableObjectNamespace>).ROUTE_LIMITER!;
    // The route object's answers wait for `go` once `holding` is set; the tenant object's are real.
    let holding = false;
    let go!: () => void;
    const released = new Promise<void>((resolve) => {
      go = resolve;
    });
    let asked!: () => void;
    const routeAsked = new Promise<void>((resolve) => {
      asked = resolve;
    });
    const routeLimiter = {
      idFromName: (name: string) => realRoute.idFromName(name),
      get: (id: DurableObjectId) => {
        const stub = realRoute.get(id) as unknown as LimiterRpc;
        return {
          acquire: async (...args: Parameters<LimiterRpc["acquire"]>) => {
            if (holding) {
              asked();
              await released;
            }
            return stub.acquire(...args);
          },
          release: (...args: Parameters<LimiterRpc["release"]>) => stub.release(...args),
        };
      },
    };
    let answered!: () => void;
    const tenantAnswered = new Promise<void>((resolve) => {
      answered = resolve;
    });
    const tenantLimiter = realLimiter("TENANT_LIMITER", (stub) => ({
      acquire: async (items, hold) => {
        const answer = await stub.acquire(items, hold);
        if (holding) answered();
        return answer;
      },
    }));
    const edge = harness(
      basePolicy({
        settings: { limiter_timeout_ms: 5000 },
        issuers: { a: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
        limits: { defaults: [perUser] },
        routes: [authRoute(hot, [ceiling]), authRoute(cold)],
      }),
      {},
      { ROUTE_LIMITER: routeLimiter, TENANT_LIMITER: tenantLimiter },
    );
    const token = async (sub: string) => `Bearer ${await idp.sign({ tenant_id: tenant, sub })}`;
    // Another user takes the ceiling's one slot.
    expect((await edge.fetch(`/${hot}/x`, { headers: { authorization: await token("alice") } })).status).toBe(200);

    const ben = await token("ben");
    const userCounter = ["user", "per-user", 1, 3600, "a", "ben"];
    holding = true;
    const onHot = edge.fetch(`/${hot}/x`, { headers: { authorization: ben } });
    await routeAsked;
    // The tenant object has answered: it holds ben's request, which the route object has not decided.
    await tenantAnswered;
    expect(await remainingOf("TENANT_LIMITER", ["tenant", tenant], userCounter, 1, 3600)).toBe(0);

    const behind = await edge.fetch(`/${cold}/x`, { headers: { authorization: ben } });
    expect(behind.status).toBe(429);
    expect(((await behind.json()) as Problem).limit).toMatchObject({ name: "per-user", key: "user" });
    // Told to wait as if the hold were charged for good: one request's share of the hour.
    expect(behind.headers.get("retry-after")).toBe("3600");

    go();
    const hotAnswer = await onHot;
    expect(await verdictOf(edge, hotAnswer)).toEqual([429, "rate_limited", "route_limit_exceeded", "hot-ceiling"]);
    await edge.settle();
    // Both refusals charged nothing: ben's one request an hour is still his.
    expect(await remainingOf("TENANT_LIMITER", ["tenant", tenant], userCounter, 1, 3600)).toBe(1);
    expect(await verdictOf(edge, await edge.fetch(`/${cold}/x`, { headers: { authorization: ben } }))).toEqual([200]);
  });
});
