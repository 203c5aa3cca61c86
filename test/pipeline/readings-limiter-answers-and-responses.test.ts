// The shorter reading of a path, which counts only where the route taking it does not take the
// path as written, beside real REST routes; `no-cache, no-store` on an authenticated origin
// request; a limiter answer that must give one status per counter and agree with them; an
// origin answer that must be a Response. Each part drives what real deployments send or what
// the real parts answer (the runtime's limiter objects, a Worker behind a service binding, the
// global fetch, the Cache API) through the real pipeline, against the loopback echo origin.
import { SELF } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import demoPolicy from "../../policy/policy.json";
import type { AuditRecord } from "../../src/core/audit";
import { CounterTable } from "../../src/core/limits/counter-table";
import type { AcquireResult, CounterRequest, LimiterRpc } from "../../src/core/limits/limiter-rpc";
import type { AppliedLimit, LimitPlan } from "../../src/core/limits/plan";
import { combineAnswers } from "../../src/core/limits/verdict";
import type { PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { type LimiterBinding, realLimiter } from "../support/limiter-objects";
import { sendMarked } from "../support/sent";

let idp: TestIssuer;
beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

const idpOnly = () => ({ idp: { kind: "oidc" as const, issuer: idp.url, audiences: [AUDIENCE] } });
const bearer = async (claims: Record<string, unknown> = {}) => ({
  authorization: `Bearer ${await idp.sign({ sub: "alice", ...claims })}`,
});
const guarded = (name: string, path: string, extra: Partial<RouteConfig> = {}): RouteConfig => ({
  name,
  methods: ["GET"],
  path,
  auth: { issuers: ["idp"] },
  upstream: "echo",
  ...extra,
});

/** One request through an edge for `doc`: the answer, the audit record, what the origin saw. */
async function send(doc: PolicyDocument, url: string, headers: Record<string, string> = {}) {
  const sent = await sendMarked(harness(doc), url, { headers });
  return { ...sent, record: sent.record as AuditRecord };
}

// ---------------------------------------------------------------------------------------------
// (a) Shorter readings: realistic APIs whose dotted values are no script.
// ---------------------------------------------------------------------------------------------

describe("a dotted value under a wildcard segment, beside the route for the value itself", () => {
  // REST APIs name a resource by `*` and its sub-resources below it: GET /v1/domains/:d and
  // GET /v1/domains/:d/records. A Polish domain or address ends in `.pl`: were that read as
  // Perl's script suffix, the PATH_INFO reading of its sub-resource would be the resource
  // itself, which the sibling takes by `*` and not the path as written. The origin (Express,
  // Rails, Django, Spring) routes the request to the sub-resource, as the edge does.
  const dns = () =>
    basePolicy({
      issuers: idpOnly(),
      routes: [
        guarded("domain", "/v1/domains/*"),
        guarded("records", "/v1/domains/*/records/**"),
        guarded("member", "/v1/members/*"),
        guarded("member-roles", "/v1/members/*/roles"),
        guarded("site", "/Sites/*", { host: "admin.example.com" }),
        guarded("site-pages", "/Sites/*/Pages/**", { host: "admin.example.com" }),
        guarded("api", "/v1/**"),
      ],
    });

  it.each([
    ["https://edge.test/v1/domains/example.com/records", "records"],
    ["https://edge.test/v1/members/anna@firma.de/roles", "member-roles"],
    ["https://admin.example.com/Sites/shop.de/Pages/home", "site-pages"],
    ["https://edge.test/v1/domains/example.pl", "domain"],
  ])("control: %s reaches %s as sent", async (url, route) => {
    const { response, record, seen } = await send(dns(), url, await bearer());
    expect({ status: response.status, route: record.route, detail: record.detail }).toEqual({
      status: 200,
      route,
      detail: null,
    });
    expect(seen.map((s) => s.raw_target)).toEqual([new URL(url).pathname]);
  });

  it.each([
    ["https://edge.test/v1/domains/example.pl/records", "records"],
    ["https://edge.test/v1/domains/example.com.pl/records/mx", "records"],
    ["https://edge.test/v1/members/jan.kowalski@firma.pl/roles", "member-roles"],
    ["https://admin.example.com/Sites/sklep.pl/Pages/home", "site-pages"],
  ])("%s reaches %s as sent: `.pl` is a Polish domain, not a script with a PATH_INFO", async (url, route) => {
    const { response, record, seen } = await send(dns(), url, await bearer());
    expect({ status: response.status, route: record.route, reason: record.reason, detail: record.detail }).toEqual({
      status: 200,
      route,
      reason: null,
      detail: null,
    });
    expect(seen.map((s) => s.raw_target)).toEqual([new URL(url).pathname]);
  });
});

describe("readings the new rule decides as it should", () => {
  // Laravel's and Symfony's front controller routes `/index.php/public/x` by its PATH_INFO,
  // `/public/x`: the route written for it is the one the origin runs. The broader
  // `/index.php/**` names the script, but takes the path as written too.
  it("`/index.php/public/x` under `/index.php/public/**` written before `/index.php/**` goes on", async () => {
    const doc = basePolicy({
      issuers: idpOnly(),
      routes: [
        { name: "front-public", methods: ["GET"], path: "/index.php/public/**", auth: "public", upstream: "echo" },
        guarded("front", "/index.php/**", { auth: { issuers: ["idp"], groups: { any_of: ["admins"] } } }),
      ],
    });
    const open = await send(doc, "/index.php/public/x");
    expect({ status: open.response.status, route: open.record.route, detail: open.record.detail }).toEqual({
      status: 200,
      route: "front-public",
      detail: null,
    });
    expect(open.seen.map((s) => s.raw_target)).toEqual(["/index.php/public/x"]);
    const admin = await send(doc, "/index.php/admin");
    expect(admin.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "front" });
    expect(admin.seen).toEqual([]);
  });

  // A script guarded by a wildcard route, here capturing the tenant rather than `*`.
  it("`/app/admin.php/assets/x` where `/app/:tenant` guards and `/app/:tenant/assets/**` is public is refused", async () => {
    const doc = basePolicy({
      issuers: idpOnly(),
      routes: [
        guarded("scripts", "/app/:tenant"),
        { name: "assets", methods: ["GET"], path: "/app/*/assets/**", auth: "public", upstream: "echo" },
      ],
    });
    const { response, record, seen } = await send(doc, "/app/admin.php/assets/x");
    expect({ status: response.status, reason: record.reason, detail: record.detail }).toEqual({
      status: 400,
      reason: "bad_request",
      detail: "ambiguous_path_info",
    });
    expect(seen).toEqual([]);
  });

  it.each([
    ["/.well-known/openid-configuration", "well-known"],
    ["/.well-known/jwks.json", "well-known"],
    ["/v1.2/users", "v1.2"],
    ["/v1.2/users/me.json", "v1.2"],
    ["/v1.2/files/run.pl/raw", "v1.2"],
    ["/v1/users/john.doe", "api"],
    ["/v1/users/john.doe@example.com/avatar.png", "api"],
  ])("a version, a well-known file or a file name: %s reaches %s as sent", async (path, route) => {
    const doc = basePolicy({
      issuers: idpOnly(),
      routes: [
        { name: "well-known", methods: ["GET"], path: "/.well-known/**", auth: "public", upstream: "echo" },
        guarded("v1.2", "/v1.2/**"),
        guarded("api", "/v1/**"),
        guarded("root", "/*"),
      ],
    });
    const { response, record, seen } = await send(doc, path, await bearer());
    expect({ status: response.status, route: record.route, detail: record.detail }).toEqual({
      status: 200,
      route,
      detail: null,
    });
    expect(seen.map((s) => s.raw_target)).toEqual([path]);
  });

  it.each([
    ["/v1/tenants/acme.pl/domains/example.pl/records", "tenant-api", { tenant_id: "acme.pl" }],
    ["/v1/domains/example.pl/records", "api-read", {}],
    ["/v1/files/report.final.pdf", "api-read", {}],
    ["/v1/payments.json/x", "api-read", {}],
  ])("the bundled policy: %s reaches %s as sent", async (path, route, claims) => {
    const doc = {
      ...demoPolicy,
      issuers: { demo: { ...demoPolicy.issuers.demo, issuer: idp.url } },
      upstreams: { api: { url: echoOrigin } },
      settings: { ...demoPolicy.settings, limiter_timeout_ms: 2000 },
      routes: demoPolicy.routes.filter((r) => r.name !== "access-app"),
    } as unknown as PolicyDocument;
    const headers = await bearer({
      aud: demoPolicy.issuers.demo.audiences[0],
      scope: "api:read",
      sub: crypto.randomUUID(),
      ...claims,
    });
    const { response, record, seen } = await send(doc, path, headers);
    expect({ status: response.status, route: record.route, detail: record.detail }).toEqual({
      status: 200,
      route,
      detail: null,
    });
    expect(seen.map((s) => s.raw_target)).toEqual([path]);
  });
});

// ---------------------------------------------------------------------------------------------
// (b) What the real limiter objects answer, in every situation the stage puts them in, is
// read as an answer: never a 503 limiter_unavailable of the edge's own making.
// ---------------------------------------------------------------------------------------------

/** The real objects of `binding`, each answer they give recorded as it arrived. */
function recordedLimiter(binding: LimiterBinding, answers: { items: CounterRequest[]; result: AcquireResult }[]) {
  return realLimiter(binding, (stub: LimiterRpc) => ({
    acquire: async (items, hold) => {
      const result = await stub.acquire(items, hold);
      answers.push({ items, result });
      return result;
    },
  }));
}

/** Every recorded answer has one status per counter asked, and a verdict its statuses agree with. */
function expectWellFormed(answers: { items: CounterRequest[]; result: AcquireResult }[]) {
  for (const { items, result } of answers) {
    expect(result.counters).toHaveLength(items.length);
    expect(result.allowed).toBe(result.counters.every((c) => c.allowed));
  }
}

describe("the real limiter objects' answers through the pipeline", () => {
  function limited(tenant: string, limits: NonNullable<RouteConfig["limits"]>, overrides = {}) {
    const tenantAnswers: { items: CounterRequest[]; result: AcquireResult }[] = [];
    const routeAnswers: { items: CounterRequest[]; result: AcquireResult }[] = [];
    const edge = harness(
      basePolicy({
        issuers: idpOnly(),
        // A route of its own per test: the route object is per route name.
        limits: { tenant_overrides: overrides },
        routes: [guarded(`limited-${crypto.randomUUID()}`, "/limited/**", { limits })],
      }),
      {},
      {
        TENANT_LIMITER: recordedLimiter("TENANT_LIMITER", tenantAnswers),
        ROUTE_LIMITER: recordedLimiter("ROUTE_LIMITER", routeAnswers),
      },
    );
    const call = async (headers: Record<string, string>) => {
      const m = marker();
      const response = await edge.fetch(`/limited/${tenant}`, { headers: { ...headers, "x-test-marker": m } });
      await response.arrayBuffer();
      return { status: response.status, record: edge.audit.at(-1) as AuditRecord, seen: await originSaw(m) };
    };
    return { call, tenantAnswers, routeAnswers };
  }

  it("two objects holding: admitted while both admit, then 429 from the full user counter (a tenant override in force)", async () => {
    const tenant = `t-${crypto.randomUUID()}`;
    const { call, tenantAnswers, routeAnswers } = limited(
      tenant,
      [
        { name: "per-tenant", key: "tenant", limit: 1, window_s: 60 },
        { name: "per-user", key: "user", limit: 2, window_s: 60 },
        { name: "ceiling", key: "route", limit: 100, window_s: 60 },
      ],
      { [tenant]: { "per-tenant": { limit: 50 } } },
    );
    const headers = await bearer({ tenant_id: tenant, sub: crypto.randomUUID() });
    const outcomes = [];
    for (let i = 0; i < 3; i++) outcomes.push(await call(headers));
    expect(outcomes.map((o) => [o.status, o.record.reason, o.record.detail, o.seen.length])).toEqual([
      [200, null, null, 1],
      [200, null, null, 1],
      [429, "rate_limited", "user_limit_exceeded", 0],
    ]);
    expect(outcomes[2]?.record.limit).toBe("per-user");
    // Both objects were asked each time, and each answer was one status per counter.
    expect([tenantAnswers.length, routeAnswers.length]).toEqual([3, 3]);
    expectWellFormed([...tenantAnswers, ...routeAnswers]);
    expect(tenantAnswers.map((a) => a.result.allowed)).toEqual([true, true, false]);
  });

  it("the route object full while the tenant object holds: 429 route_limit_exceeded, the hold given back", async () => {
    const tenant = `t-${crypto.randomUUID()}`;
    const { call, tenantAnswers, routeAnswers } = limited(tenant, [
      { name: "per-user", key: "user", limit: 10, window_s: 60 },
      { name: "ceiling", key: "route", limit: 1, window_s: 3600 },
    ]);
    const headers = await bearer({ tenant_id: tenant, sub: crypto.randomUUID() });
    const first = await call(headers);
    const second = await call(headers);
    expect([first.status, second.status]).toEqual([200, 429]);
    expect(second.record).toMatchObject({ reason: "rate_limited", detail: "route_limit_exceeded", limit: "ceiling" });
    expect(second.seen).toEqual([]);
    expectWellFormed([...tenantAnswers, ...routeAnswers]);
    expect(routeAnswers.map((a) => a.result.allowed)).toEqual([true, false]);
    // The hold the tenant object gave on the refused request was given back: a third call
    // finds the user counter as the first one left it (9 remaining), not charged twice.
    const tenants = (env as unknown as Record<LimiterBinding, DurableObjectNamespace>).TENANT_LIMITER;
    const direct = tenants.get(tenants.idFromName(JSON.stringify(["tenant", tenant]))) as unknown as LimiterRpc;
    const items = tenantAnswers[0]!.items.map((item) => ({ ...item, cost: 0 }));
    const standing = await direct.acquire(items);
    expect(standing.counters.map((c) => c.remaining)).toEqual([9]);
  });

  it("a tenant-less caller's user limit alone (one object, no hold): admitted, then refused by its count", async () => {
    const { call, tenantAnswers } = limited("none", [{ name: "per-user", key: "user", limit: 1, window_s: 60 }]);
    const headers = await bearer({ sub: crypto.randomUUID() });
    const [first, second] = [await call(headers), await call(headers)];
    expect([first.status, second.status]).toEqual([200, 429]);
    expect(second.record).toMatchObject({ reason: "rate_limited", detail: "user_limit_exceeded" });
    expectWellFormed(tenantAnswers);
  });
});

describe("every answer a counter table gives, read by combineAnswers", () => {
  /** A plan whose limits are these counter requests, in order, each failing closed. */
  const planOf = (items: CounterRequest[]): LimitPlan => ({
    tenantObject: "t",
    limits: items.map(
      (item, i): AppliedLimit => ({
        name: `l${i}`,
        key: "user",
        limit: item.limit,
        windowS: item.windowS,
        onError: "deny",
        object: "tenant",
        counterId: item.id,
      }),
    ),
  });

  // The stage never lists a counter twice nor sends a cost, but the object takes both: whatever
  // it answers to them, to holds, overrides (another size for the same id), costs past the limit,
  // a clock stepping back and evictions (a table of 8), is an answer, never an error.
  it("duplicates, inspections, holds, overrides, costs past the limit, clock steps and evictions", () => {
    const table = new CounterTable(8);
    let seed = 7;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let now = 1_700_000_000_000;
    const decisions = new Set<string>();
    for (let step = 0; step < 3000; step++) {
      now += next(5) === 0 ? -next(3000) : next(400);
      const count = 1 + next(4);
      const items: CounterRequest[] = [];
      for (let i = 0; i < count; i++) {
        const id = `["user","l",3,1,"c${next(20)}"]`;
        const limit = [1, 2, 3, 5][next(4)]!;
        const cost = [undefined, undefined, 0, 1, 2, limit + 1][next(6)];
        items.push({ id, limit, windowS: 1 + next(2), ...(cost === undefined ? {} : { cost }) });
      }
      if (next(3) === 0) items.push({ ...items[0]! });
      const hold = next(3) === 0 ? 2_000 + next(3_000) : 0;
      const result = table.acquire(items, now, hold);
      const verdict = combineAnswers(planOf(items), new Map([["tenant", { ok: true, result }]]));
      decisions.add(verdict.decision);
      expect(verdict.decision, JSON.stringify({ step, items, result })).not.toBe("unavailable");
      expect(verdict.statuses).toHaveLength(items.length);
      if (result.allowed && hold > 0 && next(2) === 0) table.release(items, result.at, result.epoch, now, result.seq);
    }
    // Both kinds of answer were given, or the loop proved nothing.
    expect([...decisions].sort()).toEqual(["allow", "rate_limited"]);
  });
});

// ---------------------------------------------------------------------------------------------
// (c) Real Responses from every kind of origin the runtime offers pass `instanceof Response`;
// and `no-cache, no-store` reaches a real service binding.
// ---------------------------------------------------------------------------------------------

describe("real origin answers through a binding", () => {
  function viaBinding(origin: unknown, auth: RouteConfig["auth"] = "public") {
    return harness(
      basePolicy({
        issuers: idpOnly(),
        upstreams: { held: { service: "HELD", timeout_ms: 5_000 }, svc: { service: "ECHO_SERVICE" } },
        routes: [
          { name: "held", methods: ["GET"], path: "/held/**", auth, upstream: "held" },
          guarded("svc", "/svc/**", { upstream: "svc" }),
          { name: "svc-public", methods: ["GET"], path: "/svcp/**", auth: "public", upstream: "svc" },
        ],
      }),
      {},
      { HELD: origin },
    );
  }

  it("another Worker behind a service binding (SELF, the bundled policy): its 404 is passed on as the origin's", async () => {
    const edge = viaBinding(SELF);
    const response = await edge.fetch("/held/nowhere");
    expect(response.status).toBe(404);
    const body = (await response.json()) as { reason?: string };
    // The inner Worker's own problem: it has no route for `/held/**`.
    expect(body.reason).toBe("route_not_found");
    expect(edge.audit.map((r) => [r.decision, r.route, r.detail])).toEqual([["allow", "held", null]]);
  });

  it("the global fetch's Response, returned by a binding: passed on", async () => {
    const m = marker();
    const edge = viaBinding({
      fetch: (input: RequestInfo, init?: RequestInit) => {
        const url = new URL(new Request(input, init).url);
        return fetch(`${echoOrigin}${url.pathname}`, { headers: { "x-test-marker": m } });
      },
    });
    const response = await edge.fetch("/held/from-fetch");
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    expect(edge.audit.map((r) => [r.decision, r.detail])).toEqual([["allow", null]]);
    expect((await originSaw(m)).map((s) => s.path)).toEqual(["/held/from-fetch"]);
  });

  it("a Response from the Cache API, returned by a binding: passed on with its body", async () => {
    const key = `https://cache.test/${crypto.randomUUID()}`;
    await caches.default.put(
      key,
      new Response("cached body", { headers: { "cache-control": "max-age=600", "content-type": "text/plain" } }),
    );
    const cached = await caches.default.match(key);
    // The local runtime's cache must hold it, or this test would say nothing of the edge.
    expect(cached).toBeInstanceOf(Response);
    await cached!.arrayBuffer();
    const edge = viaBinding({ fetch: async () => (await caches.default.match(key)) as Response });
    const response = await edge.fetch("/held/cached");
    expect([response.status, await response.text()]).toEqual([200, "cached body"]);
    expect(edge.audit.map((r) => [r.decision, r.detail])).toEqual([["allow", null]]);
  });

  it.each([
    ["a Response subclass", () => new (class Answer extends Response {})("sub", { status: 201 }), 201],
    ["Response.json", () => Response.json({ ok: true }, { status: 202 }), 202],
    ["Response.redirect", () => Response.redirect("https://elsewhere.test/x", 307), 307],
  ])("%s from a binding: passed on", async (_label, make, status) => {
    const edge = viaBinding({ fetch: async () => make() });
    const response = await edge.fetch("/held/x");
    await response.arrayBuffer();
    expect(response.status).toBe(status);
    expect(edge.audit.map((r) => [r.decision, r.detail])).toEqual([["allow", null]]);
  });

  it("an authenticated request through a real service binding says no-cache, no-store; a public one keeps the client's", async () => {
    const edge = viaBinding(SELF);
    const authed = await edge.fetch("/svc/me", {
      headers: { ...(await bearer()), "cache-control": "max-stale=600, only-if-cached" },
    });
    expect(authed.status).toBe(200);
    const seen = (await authed.json()) as { via: string; headers: Record<string, string> };
    expect(seen.via).toBe("service-binding");
    expect(seen.headers["cache-control"]).toBe("no-cache, no-store");
    expect(seen.headers.authorization).toBeUndefined();
    const open = await edge.fetch("/svcp/doc", { headers: { "cache-control": "max-age=0" } });
    expect(open.status).toBe(200);
    expect(((await open.json()) as { headers: Record<string, string> }).headers["cache-control"]).toBe("max-age=0");
  });
});
