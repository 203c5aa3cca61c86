// Rate limits at their edges: each test pins one check of
// the counters, the limiter objects or the stage by what it does (a refused client kept at
// the table's bound, which holds a release may give back, expired rows a flush deletes, a
// malformed call refused with nothing given back, an object answer the edge cannot read,
// which object a 503 names, the seconds a 429 reports), with the real
// limiter objects and the real pipeline wherever they can run.
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { CounterTable } from "../../src/core/limits/counter-table";
import { type AcquireResult, type CounterRequest, HOLD_MS, holdMsFor } from "../../src/core/limits/limiter-rpc";
import type { LimitSpec, PolicyDocument } from "../../src/core/policy-types";
import { type RateLimitProblem as Problem, rateLimitItems as items } from "../support/rate-limit-fields";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { fakeClockStart, realLimiter, rows, tenantObject } from "../support/limiter-objects";

const T0 = 1_800_000_000_000;
const unique = () => crypto.randomUUID().slice(0, 8);
const peek = (r: CounterRequest): CounterRequest => ({ ...r, cost: 0 });

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

afterEach(() => {
  vi.useRealTimers();
});

/** One authenticated GET route, `/<name>/**`, to the echo origin, counted by `limits`. */
function authPolicy(name: string, limits: LimitSpec[], extra: Partial<PolicyDocument> = {}): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    routes: [{ name, methods: ["GET"], path: `/${name}/**`, auth: { issuers: ["idp"] }, upstream: "echo", limits }],
    ...extra,
  });
}

describe("the table at its bound keeps a client its counter refuses by less than a millisecond", () => {
  it("a spent counter whose next slot is a fraction of a millisecond away outranks admitting ones", () => {
    // 7 a minute: T = 60 000 / 7 = 8 571 3/7 ms, no whole number. Spent at T0, the client's
    // next request is admitted at T0 + 8 571 3/7: at T0 + 8 571 it is still refused, by 3/7 ms.
    const spent: CounterRequest = { id: "spent", limit: 7, windowS: 60 };
    const now = T0 + 8_571;
    const table = new CounterTable(100); // evicts in batches of 1
    for (let i = 0; i < 7; i++) expect(table.acquire([spent], T0).allowed).toBe(true);
    const refused = table.acquire([spent], now);
    expect(refused.allowed).toBe(false);
    expect(refused.counters[0]?.retryAfterMs).toBeCloseTo(3 / 7, 9);
    // 99 clients at 19 of 20 a minute (0.95 of it ahead, more than the spent one's 0.857),
    // each admitting one more; then a newcomer of 100 a minute takes the table over its bound.
    for (let i = 0; i < 99; i++) table.acquire([{ id: `busy${i}`, limit: 20, windowS: 60, cost: 19 }], now);
    table.acquire([{ id: "newcomer", limit: 100, windowS: 60 }], now);
    expect(table.size).toBe(99);
    // Two went, both admitting ones: forgetting the spent counter would hand its client a
    // fresh burst of 7 while it is refused.
    expect(table.get("newcomer")).toBeUndefined();
    expect(table.get("spent")).toBeDefined();
    expect(table.acquire([spent], now).allowed).toBe(false);
  });
});

describe("giving back a hold: only the hold acquire answered, and only before it is due", () => {
  // 10 per 100 s: each request stands 10 s on the counter, so none drains during a test.
  const c: CounterRequest = { id: "ceiling", limit: 10, windowS: 100 };
  const remaining = (table: CounterTable, now: number) => table.acquire([peek(c)], now).counters[0]!.remaining;

  it("a hold released at the very millisecond it is due is charged, even behind a longer pending hold", () => {
    const table = new CounterTable();
    // A longer hold first (the largest budget), so the shorter one is not settled by the
    // release's own settling: holds settle in order.
    const longer = table.acquire([c], T0, holdMsFor(5_000));
    const shorter = table.acquire([c], T0, HOLD_MS);
    expect(longer.allowed && shorter.allowed).toBe(true);
    // Due at T0 + HOLD_MS, as the alarm counts it: charged for good from then on.
    table.release([c], shorter.at, shorter.epoch, T0 + HOLD_MS, shorter.seq);
    expect(remaining(table, T0 + HOLD_MS)).toBe(8);
    // A millisecond earlier it is still the caller's to give back (the same calls otherwise).
    const early = new CounterTable();
    early.acquire([c], T0, holdMsFor(5_000));
    const given = early.acquire([c], T0, HOLD_MS);
    early.release([c], given.at, given.epoch, T0 + HOLD_MS - 1, given.seq);
    expect(remaining(early, T0 + HOLD_MS - 1)).toBe(9);
  });

  it("a release carrying the hold's number and time but another epoch gives nothing back", () => {
    const table = new CounterTable();
    const held = table.acquire([c], T0, HOLD_MS);
    expect(held).toMatchObject({ allowed: true, seq: expect.any(Number) });
    for (const epoch of [held.epoch! + 1, Math.random(), undefined, String(held.epoch)])
      table.release([c], held.at, epoch, T0 + 1, held.seq);
    expect(remaining(table, T0 + 1)).toBe(9);
    table.release([c], held.at, held.epoch, T0 + 1, held.seq);
    expect(remaining(table, T0 + 1)).toBe(10);
  });

  it("a charge queued behind a hold is no hold: a release naming its number gives nothing back", () => {
    const table = new CounterTable();
    const held = table.acquire([c], T0, HOLD_MS);
    // A single-object request on the same counter: charged, queued behind the hold, and
    // answered without a number (it is not the caller's to give back exactly).
    const queued = table.acquire([c], T0);
    expect(queued.allowed).toBe(true);
    expect(queued.seq).toBeUndefined();
    // Numbers run on from the hold's: the queued charge took the next one.
    table.release([c], queued.at, queued.epoch, T0, held.seq! + 1);
    expect(remaining(table, T0)).toBe(8);
    // Its own hold is the caller's to give back, and that leaves the queued charge counted.
    table.release([c], held.at, held.epoch, T0, held.seq);
    expect(remaining(table, T0)).toBe(9);
  });

  it("a hold given back after a new size cut its counter back to full leaves the counter as before the hold", () => {
    // 5 an hour, nothing counted before the hold. A request under a tenant override that
    // shortens the window to a minute finds the counter (a fifth of an hour ahead) more than
    // a window ahead: decided on as full, but the hold's charge is still the caller's.
    const hourly: CounterRequest = { id: "overridden", limit: 5, windowS: 3600 };
    const table = new CounterTable();
    const held = table.acquire([hourly], T0, HOLD_MS);
    expect(held.allowed).toBe(true);
    expect(table.acquire([{ ...hourly, windowS: 60 }], T0).allowed).toBe(false);
    table.release([hourly], held.at, held.epoch, T0, held.seq);
    // Given back: nothing was ever charged here, so nothing stands, at either size.
    expect(table.get(hourly.id)).toBeUndefined();
    expect(table.acquire([peek(hourly)], T0).counters[0]?.remaining).toBe(5);
    expect(table.acquire([{ ...hourly, windowS: 60, cost: 0 }], T0).counters[0]?.remaining).toBe(5);
  });
});

describe("a limiter object's storage after a restart", () => {
  it("a row that expired while the object was down is deleted by the next flush, beside live counters", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const perSecond: CounterRequest = { id: "per-second", limit: 1, windowS: 1 };
    const perHour: CounterRequest = { id: "per-hour", limit: 5, windowS: 3600 };
    expect((await stub.acquire([perSecond, perHour])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await rows(stub)).map((row) => row.id).sort()).toEqual(["per-hour", "per-second"]);
    // Restarted after the per-second counter expired: it is not loaded, so nothing in memory
    // says to delete its row; the flush must drop every expired row, not only those it knows.
    vi.setSystemTime(t0 + 5_000);
    await evictDurableObject(stub);
    const later: CounterRequest = { id: "later", limit: 5, windowS: 3600 };
    expect((await stub.acquire([later])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await rows(stub)).map((row) => row.id).sort()).toEqual(["later", "per-hour"]);
  });
});

describe("a limiter object refuses a cost no caller could ask for", () => {
  const failure = (call: () => Promise<unknown>) =>
    call().then(
      () => "ok",
      (error: Error) => error.message,
    );

  it("a cost above limit + 1 is malformed, to acquire and to release alike, and gives nothing back", async () => {
    const stub = tenantObject();
    // Held still: a release of the right time gives its charge back in full, whatever the load.
    vi.useFakeTimers({ toFake: ["Date"], now: fakeClockStart() });
    const item: CounterRequest = { id: "costly", limit: 5, windowS: 3600 };
    let last: AcquireResult | undefined;
    for (let i = 0; i < 3; i++) last = await stub.acquire([item]);
    expect(last?.allowed).toBe(true);
    // limit + 1 is the largest cost taken: refused by the counter, never satisfiable.
    const tooBig = await stub.acquire([{ ...item, cost: 6 }]);
    expect(tooBig).toMatchObject({ allowed: false, counters: [{ allowed: false, retryAfterMs: Infinity }] });
    expect(await failure(() => stub.acquire([{ ...item, cost: 7 }]))).toBe("malformed counter request");
    // Given back at a cost of 1 000 000, the release would erase every charge on the counter.
    expect(await failure(() => stub.release([{ ...item, cost: 1_000_000 }], last?.at, last?.epoch))).toBe(
      "malformed counter request",
    );
    expect((await stub.acquire([peek(item)])).counters[0]?.remaining).toBe(2);
    // The object still serves the well-formed release: the last charge comes back, no more.
    await stub.release([item], last?.at, last?.epoch);
    expect((await stub.acquire([peek(item)])).counters[0]?.remaining).toBe(3);
  });
});

describe("an object answer whose counters are not one per limit asked", () => {
  /** A public route with a ceiling and a per-address limit, both counted in the route's object. */
  function twoCounterEdge(change: (real: AcquireResult) => AcquireResult) {
    const route = `miscount-${unique()}`;
    const limits: LimitSpec[] = [
      { name: "ceiling", key: "route", limit: 1000, window_s: 60 },
      { name: "per-ip", key: "ip", limit: 1000, window_s: 60 },
    ];
    const policy = basePolicy({
      routes: [{ name: route, methods: ["GET"], path: `/${route}/**`, auth: "public", upstream: "echo", limits }],
    });
    // The real route object decides; its answer is then miscounted, as an object of another
    // version might answer mid-deploy.
    const limiter = realLimiter("ROUTE_LIMITER", (stub) => ({
      acquire: async (asked, hold) => change(await stub.acquire(asked, hold)),
    }));
    return { route, edge: harness(policy, {}, { ROUTE_LIMITER: limiter }) };
  }

  it.each([
    // A status short: the limit it leaves out was never decided on.
    ["one status short", (real: AcquireResult) => ({ ...real, counters: real.counters.slice(0, 1) })],
    // A refusal the edge would read as admission if it looked at the statuses it asked for only.
    [
      "a refusal carried by a status beyond those asked",
      (real: AcquireResult) => ({
        ...real,
        allowed: false,
        counters: [...real.counters, { allowed: false, remaining: 0, resetMs: 60_000, retryAfterMs: 1_000 }],
      }),
    ],
  ])("%s: 503 limiter_unavailable naming the route object, never forwarded", async (_label, change) => {
    const { route, edge } = twoCounterEdge(change);
    const m = marker();
    const response = await edge.fetch(`/${route}/x`, {
      headers: { "x-test-marker": m, "cf-connecting-ip": "10.1.2.3" },
    });
    expect(response.status).toBe(503);
    expect(((await response.json()) as Problem).reason).toBe("limiter_unavailable");
    expect(edge.audit.map((r) => [r.decision, r.reason, r.detail, r.limit])).toEqual([
      ["deny", "limiter_unavailable", "limiter_route_error", "ceiling"],
    ]);
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("an object's refusal that says a retry may come at once", () => {
  it.each([0, -5_000])("retryAfterMs %d: Retry-After is still 1, never 0", async (retryAfterMs) => {
    // Real objects never answer so (a refusal lies strictly ahead); one of another version
    // might, and a 429 with Retry-After 0 asks every client to hammer the edge at once.
    const route = `retry-now-${unique()}`;
    const policy = basePolicy({
      routes: [
        {
          name: route,
          methods: ["GET"],
          path: `/${route}/**`,
          auth: "public",
          upstream: "echo",
          limits: [{ name: "ceiling", key: "route", limit: 1000, window_s: 60 }],
        },
      ],
    });
    const refusing = realLimiter("ROUTE_LIMITER", () => ({
      acquire: async () => ({
        allowed: false,
        counters: [{ allowed: false, remaining: 0, resetMs: 0, retryAfterMs }],
        at: Date.now(),
        epoch: 0,
      }),
    }));
    const edge = harness(policy, {}, { ROUTE_LIMITER: refusing });
    const m = marker();
    const response = await edge.fetch(`/${route}/x`, { headers: { "x-test-marker": m } });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("1");
    expect(((await response.json()) as Problem).reason).toBe("rate_limited");
    expect(edge.audit.map((r) => [r.reason, r.detail, r.limit])).toEqual([
      ["rate_limited", "route_limit_exceeded", "ceiling"],
    ]);
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("both limiter objects unreachable, both failing closed", () => {
  it("the 503 names the first limit that could not be checked: the tenant object's", async () => {
    const route = `both-down-${unique()}`;
    const policy = authPolicy(route, [
      { name: "tenant-total", key: "tenant", limit: 1000, window_s: 60 },
      { name: "ceiling", key: "route", limit: 1000, window_s: 60 },
    ]);
    const down = (binding: "TENANT_LIMITER" | "ROUTE_LIMITER") =>
      realLimiter(binding, () => ({ acquire: () => Promise.reject(new Error(`${binding} down`)) }));
    const edge = harness(policy, {}, { TENANT_LIMITER: down("TENANT_LIMITER"), ROUTE_LIMITER: down("ROUTE_LIMITER") });
    const token = await issuer.sign({ tenant_id: `t-${unique()}`, sub: "alice" });
    const m = marker();
    const response = await edge.fetch(`/${route}/x`, {
      headers: { authorization: `Bearer ${token}`, "x-test-marker": m },
    });
    expect(response.status).toBe(503);
    expect(((await response.json()) as Problem).reason).toBe("limiter_unavailable");
    expect(edge.audit.map((r) => [r.reason, r.detail, r.limit])).toEqual([
      ["limiter_unavailable", "limiter_tenant_error", "tenant-total"],
    ]);
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("the reset a 429 reports for a limit that admitted and was given back", () => {
  it("reads whole seconds as such: a float residue of the emission interval adds no second", async () => {
    // 9 every 3 s: T = 333 1/3 ms. Six requests leave the user's counter 2 s ahead; the
    // seventh, which the spent ceiling refuses, is given back, so the user's limit stands 2 s
    // from full again. Taking the float T off 2 333 1/3 leaves 2 000.000 000 000 000 2.
    const route = `residue-${unique()}`;
    const perUser: LimitSpec = { name: "user-burst", key: "user", limit: 9, window_s: 3 };
    const ceiling: LimitSpec = { name: "ceiling", key: "route", limit: 6, window_s: 60 };
    const edge = harness(authPolicy(route, [perUser, ceiling]));
    const token = `Bearer ${await issuer.sign({ tenant_id: `t-${unique()}`, sub: "carol" })}`;
    // Held still, so the counters stand exactly where the requests put them (the objects run
    // in this isolate and read this clock).
    vi.useFakeTimers({ toFake: ["Date"], now: fakeClockStart() });
    for (let i = 0; i < 6; i++) {
      const admitted = await edge.fetch(`/${route}/x`, { headers: { authorization: token } });
      expect(admitted.status).toBe(200);
      await admitted.arrayBuffer();
    }
    const refused = await edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as Problem).reason).toBe("rate_limited");
    expect(edge.audit.at(-1)).toMatchObject({
      reason: "rate_limited",
      detail: "route_limit_exceeded",
      limit: "ceiling",
    });
    expect(items(refused.headers.get("ratelimit"))).toEqual([
      { name: "ceiling", r: 0, t: 60 },
      { name: "user-burst", r: 3, t: 2 },
    ]);
  });
});
