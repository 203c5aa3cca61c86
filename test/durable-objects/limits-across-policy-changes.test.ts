// Rate limits while the policy changes under traffic (day-2 operations). Cloudflare's gradual
// deployments run the old and the new Worker version side by side, each taking a share of the
// requests for minutes or hours, so the two policies' limits meet in the same limiter objects.
// Each harness below is one version's policy over the same real TenantLimiter and RouteLimiter
// objects, and requests alternate between them as a split deployment sends them.
//
// README ("Rate limits", Where counters live): a deploy that changes a limit's size starts that
// limit's counters afresh, and while a gradual deployment runs both versions each size counts
// apart; adding or removing a route ceiling moves the route's ip counters; a tenant override
// resizes the counters it applies to in place; user counters do not depend on the route.
import { describe, expect, it } from "vitest";
import type { LimitSpec, PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { type RateLimitProblem as Problem, verdictOf } from "../support/rate-limit-fields";

const unique = () => crypto.randomUUID().slice(0, 8);

function publicEdge(version: number, route: string, limits: LimitSpec[]): Harness {
  return harness(
    basePolicy({
      version,
      routes: [{ name: route, methods: ["GET"], path: `/${route}/**`, auth: "public", upstream: "echo", limits }],
    }),
  );
}

function signedInEdge(
  version: number,
  idp: TestIssuer,
  routes: RouteConfig[],
  limits: PolicyDocument["limits"] = undefined,
): Harness {
  return harness(
    basePolicy({
      version,
      issuers: { a: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
      ...(limits ? { limits } : {}),
      routes,
    }),
  );
}

function signedInRoute(name: string, path: string, limits: LimitSpec[] = []): RouteConfig {
  return { name, methods: ["GET"], path, auth: { issuers: ["a"] }, upstream: "echo", limits };
}

describe("adding a route ceiling moves the route's ip counters, as README says", () => {
  // The ip limit is declared alike in both versions; only a `route` ceiling is added. Counted in
  // one object per route and address while the route has no ceiling, and in the route's one
  // object once it has one (one Durable Object call per request either way), each address starts
  // its ip limit afresh on the new version, and while a gradual deployment runs both, counts
  // once per version: README tells operators so, and to add ceilings ahead of a flood.
  const perIp: LimitSpec = { name: "per-ip", key: "ip", limit: 2, window_s: 3600 };
  const ceiling: LimitSpec = { name: "route-ceiling", key: "route", limit: 10_000, window_s: 3600 };
  const refused = [429, "rate_limited", "ip_limit_exceeded", "per-ip"];

  it("an address that spent its ip limit gets it afresh once the route gains a ceiling, and no more", async () => {
    const route = `flooded-${unique()}`;
    const m = marker();
    const from = { "cf-connecting-ip": "198.51.100.91", "x-test-marker": m };
    const before = publicEdge(1, route, [perIp]);
    const after = publicEdge(2, route, [perIp, ceiling]);
    const verdicts: unknown[][] = [];
    for (const edge of [before, before, before, after, after, after])
      verdicts.push(await verdictOf(edge, await edge.fetch(`/${route}/x`, { headers: from })));
    expect(verdicts).toEqual([[200], [200], refused, [200], [200], refused]);
    expect(await originSaw(m)).toHaveLength(4);
  });

  it("requests alternating between the versions get the ip limit once per version", async () => {
    const route = `rollout-${unique()}`;
    const m = marker();
    const from = { "cf-connecting-ip": "198.51.100.92", "x-test-marker": m };
    const versions = [publicEdge(1, route, [perIp]), publicEdge(2, route, [perIp, ceiling])];
    const verdicts: unknown[][] = [];
    for (let i = 0; i < 6; i++) {
      const edge = versions[i % 2]!;
      verdicts.push(await verdictOf(edge, await edge.fetch(`/${route}/x`, { headers: from })));
    }
    expect(verdicts).toEqual([[200], [200], [200], [200], refused, refused]);
    expect(await originSaw(m)).toHaveLength(4);
  });
});

describe("a limit resized during a gradual deployment counts apart in each version, as README says", () => {
  // The counter's name holds the declared size, so the old and the new version count each user
  // in a counter of their own until the rollout ends: a client whose requests are split between
  // them is admitted up to both sizes together (4 + 3 here), never more.
  it("alternating requests are admitted up to both sizes together, then refused by the smaller", async () => {
    const idp = await makeIssuer();
    const route = `tuned-${unique()}`;
    const m = marker();
    const token = `Bearer ${await idp.sign({ tenant_id: `t-${unique()}`, sub: "alice" })}`;
    const sized = (limit: number) => [{ name: "user-per-hour", key: "user", limit, window_s: 3600 }] as LimitSpec[];
    const versions = [
      signedInEdge(1, idp, [signedInRoute(route, `/${route}/**`, sized(4))]),
      signedInEdge(2, idp, [signedInRoute(route, `/${route}/**`, sized(3))]),
    ];
    const verdicts: unknown[][] = [];
    for (let i = 0; i < 8; i++) {
      const edge = versions[i % 2]!;
      const response = await edge.fetch(`/${route}/x`, { headers: { authorization: token, "x-test-marker": m } });
      verdicts.push(await verdictOf(edge, response));
    }
    const ok = [200];
    expect(verdicts).toEqual([
      ok,
      ok,
      ok,
      ok,
      ok,
      ok,
      ok,
      [429, "rate_limited", "user_limit_exceeded", "user-per-hour"],
    ]);
    expect(await originSaw(m)).toHaveLength(7);
  });
});

describe("a tenant override added during a gradual deployment", () => {
  // The override resizes the one counter in place, so alternating versions share it: never more
  // admitted than the larger size allows, and each version's refusal speaks of its own size.
  it("keeps one counter: no more admitted than the override allows, each refusal within its own window", async () => {
    const idp = await makeIssuer();
    const route = `plan-${unique()}`;
    const tenant = `t-${unique()}`;
    const m = marker();
    const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub: "alice" })}`;
    const declared: LimitSpec = { name: "user-per-hour", key: "user", limit: 2, window_s: 3600 };
    const routes = [signedInRoute(route, `/${route}/**`)];
    const versions = [
      signedInEdge(1, idp, routes, { defaults: [declared] }),
      signedInEdge(2, idp, routes, {
        defaults: [declared],
        tenant_overrides: { [tenant]: { "user-per-hour": { limit: 4 } } },
      }),
    ];
    const seen: { status: number; limit?: number; retryAfter: number | null }[] = [];
    for (let i = 0; i < 6; i++) {
      const response = await versions[i % 2]!.fetch(`/${route}/x`, {
        headers: { authorization: token, "x-test-marker": m },
      });
      if (response.status === 200) {
        await response.body?.cancel();
        seen.push({ status: 200, retryAfter: null });
        continue;
      }
      const body = (await response.json()) as Problem;
      expect(body).toMatchObject({ reason: "rate_limited", limit: { name: "user-per-hour", window_s: 3600 } });
      seen.push({
        status: response.status,
        limit: body.limit?.limit,
        retryAfter: Number(response.headers.get("retry-after")),
      });
    }
    // Old 2 an hour (30 min a request) and new 4 an hour (15 min) on one counter: admitted by
    // old, new, new-after-old-refused; each refusal a wait within its own policy's hour.
    expect(seen).toEqual([
      { status: 200, retryAfter: null },
      { status: 200, retryAfter: null },
      { status: 429, limit: 2, retryAfter: 900 },
      { status: 200, retryAfter: null },
      { status: 429, limit: 2, retryAfter: 1800 },
      { status: 429, limit: 4, retryAfter: 900 },
    ]);
    expect(await originSaw(m)).toHaveLength(3);
  });
});

describe("a route renamed or split by a deploy", () => {
  // User counters are named by the limit and the caller, not the route: a redeploy that renames
  // a route, or splits it in two, must not hand its callers a fresh user limit.
  it("keeps its callers' user limits spent", async () => {
    const idp = await makeIssuer();
    const base = `api-${unique()}`;
    const m = marker();
    const token = `Bearer ${await idp.sign({ tenant_id: `t-${unique()}`, sub: "bob" })}`;
    const limits = { defaults: [{ name: "user-per-hour", key: "user", limit: 2, window_s: 3600 }] as LimitSpec[] };
    const before = signedInEdge(1, idp, [signedInRoute("api", `/${base}/**`)], limits);
    const after = signedInEdge(
      2,
      idp,
      [signedInRoute("api-orders", `/${base}/orders/**`), signedInRoute("api-rest", `/${base}/**`)],
      limits,
    );
    const headers = { authorization: token, "x-test-marker": m };
    expect(await verdictOf(before, await before.fetch(`/${base}/orders/1`, { headers }))).toEqual([200]);
    expect(await verdictOf(before, await before.fetch(`/${base}/users/1`, { headers }))).toEqual([200]);
    const refused = [429, "rate_limited", "user_limit_exceeded", "user-per-hour"];
    expect(await verdictOf(after, await after.fetch(`/${base}/orders/1`, { headers }))).toEqual(refused);
    expect(await verdictOf(after, await after.fetch(`/${base}/users/1`, { headers }))).toEqual(refused);
    expect((await originSaw(m)).map((r) => r.path)).toEqual([`/${base}/orders/1`, `/${base}/users/1`]);
  });
});
