// The rate-limit Durable Objects as a failing platform and a hostile load exercise them:
// what storage gives back after a restart (huge and fractional TATs, ids a token can carry),
// holds charged by the alarm alone and across a failed save, a restart after any mix of holds,
// releases, failed flushes and clock steps, the bound while many requests are held, and what
// the rate-limit stage does with a hold that answers after its call ran out of time.
//
// README ("Rate limits", "Where counters live" and "Failure modes").
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FLUSH_INTERVAL_MS, type LimiterObject } from "../../durable-objects/limiter-object";
import { MAX_COUNTERS } from "../../src/core/limits/counter-table";
import type { TenantLimiter } from "../../durable-objects/tenant-limiter";
import { counterIdOf } from "../../src/core/limits/counter-ids";
import { isLive, type Tat } from "../../src/core/limits/gcra";
import {
  type AcquireResult,
  type CounterRequest,
  HOLD_MS,
  holdMsFor,
  type LimiterRpc,
  MAX_LIMIT,
  MAX_WINDOW_S,
} from "../../src/core/limits/limiter-rpc";
import type { LimitSpec } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer } from "../support/issuers";
import {
  alarmFailure,
  fakeClockStart,
  type LimiterBinding,
  limiterNamespace,
  realLimiter,
  rows,
  tenantObject,
} from "../support/limiter-objects";
import { held } from "../support/waiting";

function alarmOf(stub: DurableObjectStub<TenantLimiter>) {
  return runInDurableObject(stub, (_i: LimiterObject, state) => state.storage.getAlarm());
}

const peek = (r: CounterRequest): CounterRequest => ({ ...r, cost: 0 });
const unique = () => crypto.randomUUID().slice(0, 8);

afterEach(() => {
  vi.useRealTimers();
});

describe("what storage gives back after a restart", () => {
  it("huge and fractional TATs read back exactly: every decision after the restart is the one before it", async () => {
    // The object runs in the test's isolate: its clock is the test's, held still here, so the
    // two looks are at the same instant and must agree to the last fraction of a millisecond.
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const counters: [CounterRequest, number][] = [
      // The largest limit over the longest window: TAT ≈ now + 31 days, frac over 10⁹.
      [{ id: "largest", limit: MAX_LIMIT, windowS: MAX_WINDOW_S }, MAX_LIMIT - 3],
      // A prime limit per second: T = 1000 / 999,999,937 ms, no float-safe step.
      [{ id: "prime-per-second", limit: 999_999_937, windowS: 1 }, 123_456_789],
      [{ id: "seven-a-minute", limit: 7, windowS: 60 }, 3],
      [{ id: "prime-per-month", limit: 999_983, windowS: MAX_WINDOW_S }, 777_777],
    ];
    for (const [item, cost] of counters) expect((await stub.acquire([{ ...item, cost }])).allowed).toBe(true);
    vi.setSystemTime(t0 + 17);
    const items = counters.map(([item]) => item);
    const before = await stub.acquire(items.map(peek));
    const inMemory = await runInDurableObject(stub, (o: LimiterObject) => items.map((i) => o.counters.get(i.id)));
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // Stored as integers, exactly as held in memory.
    const stored = new Map((await rows(stub)).map((r) => [r.id, { ms: r.ms, frac: r.frac, den: r.den }]));
    expect(items.map((i) => stored.get(i.id))).toEqual(inMemory);
    expect(inMemory.every((t) => t && Number.isSafeInteger(t.ms) && t.frac > 0 && t.frac < t.den)).toBe(true);
    await evictDurableObject(stub);
    const after = await stub.acquire(items.map(peek));
    expect(after.epoch).not.toBe(before.epoch);
    expect(after.counters).toEqual(before.counters);
    // Not trivially equal: each counter stands part of its window ahead, none full, none empty.
    expect(after.counters.map((c) => c.remaining)).toEqual([9, 893_543_146, 4, 222_206]);
  });

  it("a subject carrying a lone surrogate (a JWT may) is counted across a restart: the id the Worker makes is well-formed", async () => {
    // SQLite stores text as UTF-8: a lone surrogate in a raw id would not read back as written.
    // The Worker's ids are JSON, which escapes it, so the counter reloads under its own id.
    const spec: LimitSpec = { name: "per-user", key: "user", limit: 2, window_s: 3600 };
    const counter = (subject: string): CounterRequest => ({
      id: counterIdOf(spec, "idp", subject),
      limit: 2,
      windowS: 3600,
    });
    const high = counter("mallory\ud800");
    const low = counter("mallory\udc00");
    // Escaped in the id, so no lone surrogate is left in either.
    expect([high.id, low.id].map((id) => /\p{Cs}/u.test(id))).toEqual([false, false]);
    expect(high.id).toContain("\\ud800");
    const stub = tenantObject();
    expect((await stub.acquire([high])).allowed).toBe(true);
    expect((await stub.acquire([high])).allowed).toBe(true);
    expect((await stub.acquire([low])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await rows(stub)).map((r) => r.id).sort()).toEqual([high.id, low.id].sort());
    await evictDurableObject(stub);
    const after = await stub.acquire([peek(high), peek(low)]);
    // Two subjects apart, neither given a fresh burst by the restart.
    expect(after.counters.map((c) => c.remaining)).toEqual([0, 1]);
    expect((await stub.acquire([high])).allowed).toBe(false);
  });

  it("after a flush, a restart knows exactly what memory knew, whatever ran before (holds, releases, failed saves, clock steps)", async () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const sizes = [
      { limit: 7, windowS: 60 },
      { limit: 1, windowS: 3600 },
      { limit: 1000, windowS: 1 },
      { limit: 999_983, windowS: MAX_WINDOW_S },
      { limit: 3, windowS: 10 },
    ];
    let now = Date.now();
    vi.useFakeTimers({ toFake: ["Date"], now });
    const ids = Array.from({ length: 6 }, (_, i) => `c${i}`);
    let checkpoints = 0;
    let liveCompared = 0;
    for (let run = 0; run < 15; run++) {
      const stub = tenantObject();
      const admitted: { items: CounterRequest[]; answer: AcquireResult }[] = [];
      for (let step = 0; step < 80; step++) {
        const p = random();
        if (p < 0.5) {
          // One or two counters, now and then at another size (a tenant override changed).
          const items = Array.from({ length: 1 + Math.floor(random() * 2) }, () => {
            const i = Math.floor(random() * ids.length);
            const size = random() < 0.1 ? sizes[Math.floor(random() * sizes.length)]! : sizes[i % sizes.length]!;
            return { id: ids[i]!, ...size, cost: 1 + Math.floor(random() * Math.min(2, size.limit)) };
          });
          const hold = random() < 0.35 ? HOLD_MS + 50 + Math.floor(random() * 4950) : undefined;
          const answer = await runInDurableObject(stub, (o: LimiterObject) => o.acquire(items, hold));
          if (answer.allowed) admitted.push({ items, answer });
        } else if (p < 0.65 && admitted.length > 0) {
          const { items, answer } = admitted.splice(Math.floor(random() * admitted.length), 1)[0]!;
          await runInDurableObject(stub, (o: LimiterObject) => o.release(items, answer.at, answer.epoch, answer.seq));
        } else if (p < 0.85) {
          now += random() < 0.1 ? -Math.floor(random() * 3000) : Math.floor(random() * 3000);
          vi.setSystemTime(now);
        } else if (p < 0.95) {
          const fails = random() < 0.3;
          // A failed save is no error here: the runtime would retry the alarm; the next one here
          // does. An alarm with nothing made to fail must not fail.
          const failure = await alarmFailure(stub, fails ? "SQLITE_BUSY" : undefined);
          if (!fails) expect(failure).toBeUndefined();
        } else {
          // Every hold due, then one successful flush: memory and storage must now agree.
          now += holdMsFor(5000) + 1000;
          vi.setSystemTime(now);
          const before = await runInDurableObject(stub, async (o: LimiterObject) => {
            await o.alarm();
            return ids.map((id) => o.counters.get(id));
          });
          await evictDurableObject(stub);
          const after = await runInDurableObject(stub, (o: LimiterObject) => ids.map((id) => o.counters.get(id)));
          const live = (tat: Tat | undefined) => (tat && isLive(tat, now) ? tat : undefined);
          expect([run, step, after.map(live)]).toEqual([run, step, before.map(live)]);
          checkpoints++;
          liveCompared += before.filter(live).length;
          // A release from before the restart has nothing of this instance to give back.
          admitted.length = 0;
        }
      }
    }
    // Not vacuous: restarts happened, with live counters to compare.
    expect(checkpoints).toBeGreaterThan(20);
    expect(liveCompared).toBeGreaterThan(20);
  });

  it("a clock stepped back an hour behind persisted counters: after the restart a counter is full, no more", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "c", limit: 600, windowS: 60 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    vi.setSystemTime(t0 - 3_600_000);
    await evictDurableObject(stub);
    // Loaded (its TAT lies after the object's clock), found more than a window ahead: full as
    // of now, so the wait is one request's share of the minute, not the hour the clock stepped.
    const refused = await stub.acquire([item]);
    expect(refused.allowed).toBe(false);
    expect(refused.counters[0]).toEqual({ allowed: false, remaining: 0, resetMs: 60_000, retryAfterMs: 100 });
    vi.setSystemTime(t0 - 3_600_000 + 100);
    expect((await stub.acquire([item])).allowed).toBe(true);
  });
});

describe("holds and the alarm", () => {
  it("a hold nobody gives back is charged by the alarm alone, as of when it was decided, and survives a restart", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "h", limit: 10, windowS: 3600 };
    const hold = holdMsFor(50);
    const held1 = await stub.acquire([item], hold);
    expect(held1).toMatchObject({ allowed: true, at: t0, seq: expect.any(Number) });
    // The flush finds it not yet due: nothing to store, and it comes back when it is.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await rows(stub)).toEqual([]);
    expect(await alarmOf(stub)).toBe(Math.max(t0 + hold, t0 + FLUSH_INTERVAL_MS));
    vi.setSystemTime(t0 + hold);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // Charged as of t0, one emission interval (360 s) on from then, and saved.
    expect(await rows(stub)).toEqual([{ id: "h", ms: t0 + 360_000, frac: 0, den: 10 }]);
    expect(await alarmOf(stub)).toBe(t0 + 360_000 + 1);
    // Its give-back arriving now gives nothing; nor does the restart forget it.
    await stub.release([item], held1.at, held1.epoch, held1.seq);
    await evictDurableObject(stub);
    expect((await stub.acquire([peek(item)])).counters[0]).toMatchObject({ remaining: 9, resetMs: 360_000 - hold });
  });

  it("a save that fails after the flush charged due holds keeps them for the retry, and a restart after it keeps them", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "h", limit: 10, windowS: 3600 };
    const hold = holdMsFor(50);
    await stub.acquire([item], hold);
    await stub.acquire([item], hold);
    vi.setSystemTime(t0 + hold);
    const failure = await alarmFailure(stub, "SQLITE_FULL");
    expect(failure).toBe("SQLITE_FULL");
    expect(await rows(stub)).toEqual([]);
    // The holds are gone from the hold list (charged); the retry must still write what they charged.
    await runInDurableObject(stub, (instance: LimiterObject) => instance.alarm());
    expect(await rows(stub)).toEqual([{ id: "h", ms: t0 + 720_000, frac: 0, den: 10 }]);
    await evictDurableObject(stub);
    expect((await stub.acquire([peek(item)])).counters[0]?.remaining).toBe(8);
  });

  it("held requests on new counters: once the alarm charges them, the table is back under its bound, storage mirrors it, and a refused client keeps its counter", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const victim: CounterRequest = { id: `["user","per-user",1,3600,"i","victim"]`, limit: 1, windowS: 3600 };
    expect((await stub.acquire([victim])).allowed).toBe(true);
    expect((await stub.acquire([victim])).allowed).toBe(false);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const hold = holdMsFor(50);
    const flood = MAX_COUNTERS + 10_000;
    const whileHeld = await runInDurableObject(stub, (instance: LimiterObject) => {
      let admitted = 0;
      for (let i = 0; i < flood; i++) {
        const id = `["user","per-user",5,60,"i","s${i}"]`;
        if (instance.acquire([{ id, limit: 5, windowS: 60 }], hold).allowed) admitted++;
      }
      return { admitted, epoch: instance.counters.epoch };
    });
    expect(whileHeld.admitted).toBe(flood);
    vi.setSystemTime(t0 + hold);
    const settled = await runInDurableObject(stub, async (instance: LimiterObject) => {
      await instance.alarm();
      return { size: instance.counters.size, epoch: instance.counters.epoch };
    });
    expect(settled.size).toBeLessThanOrEqual(MAX_COUNTERS);
    expect(settled.epoch).not.toBe(whileHeld.epoch);
    expect((await rows(stub)).length).toBe(settled.size);
    // The refused client is still refused, in memory and after a restart.
    expect((await stub.acquire([victim])).allowed).toBe(false);
    await evictDurableObject(stub);
    expect((await stub.acquire([victim])).allowed).toBe(false);
  });
});

// ─── The rate-limit stage: a hold that answers after its call ran out of time ─────────────

async function remainingOf(
  binding: LimiterBinding,
  objectName: unknown[],
  counterId: unknown[],
  limit: number,
  windowS: number,
) {
  const ns = limiterNamespace(binding);
  const stub = ns.get(ns.idFromName(JSON.stringify(objectName))) as unknown as LimiterRpc;
  const answer = await stub.acquire([{ id: JSON.stringify(counterId), limit, windowS, cost: 0 }]);
  return answer.counters[0]!.remaining;
}

describe("a route object's hold that answers after the budget (two objects, real objects)", () => {
  const BUDGET_MS = 5000;

  async function lateRouteAnswer(onError: "deny" | "allow") {
    const idp = await makeIssuer();
    const route = `late-${unique()}`;
    const tenant = `t-${unique()}`;
    const ceiling: LimitSpec = { name: "ceiling", key: "route", limit: 1, window_s: 3600, on_error: onError };
    const perUser: LimitSpec = { name: "per-user", key: "user", limit: 5, window_s: 3600 };
    const tenantAnswered = held<void>();
    // The route object decides (and holds) at once; its answer is let through only once the
    // stage has given the tenant's hold back (fail closed) or has answered (fail open): late.
    const routeAnswers = held<void>();
    const edge = harness(
      basePolicy({
        settings: { limiter_timeout_ms: BUDGET_MS },
        issuers: { a: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
        routes: [
          {
            name: route,
            methods: ["GET"],
            path: `/${route}/**`,
            auth: { issuers: ["a"] },
            upstream: "echo",
            limits: [perUser, ceiling],
          },
        ],
      }),
      {},
      {
        TENANT_LIMITER: realLimiter("TENANT_LIMITER", (stub) => ({
          acquire: async (items, hold) => {
            // The budget's timer is the stage's next one: faked from here, so the budget runs
            // out when the test says (the token check before it ran on real timers).
            vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
            const answer = await stub.acquire(items, hold);
            tenantAnswered.resolve();
            return answer;
          },
          release: (items, at, epoch, seq) => {
            routeAnswers.resolve();
            return stub.release(items, at, epoch, seq);
          },
        })),
        ROUTE_LIMITER: realLimiter("ROUTE_LIMITER", (stub) => ({
          acquire: async (items, hold) => {
            const answer = stub.acquire(items, hold);
            await routeAnswers.promise;
            return answer;
          },
        })),
      },
    );
    const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub: "carol" })}`;
    const m = marker();
    const responding = edge.fetch(`/${route}/x`, { headers: { authorization: token, "x-test-marker": m } });
    await tenantAnswered.promise;
    vi.advanceTimersByTime(BUDGET_MS);
    vi.useRealTimers();
    const response = await responding;
    const status = response.status;
    await response.body?.cancel();
    // Failing open, nothing was given back, so the route's answer is let through only now, to a
    // stage long done with it (failing closed, the tenant's give-back let it through already).
    routeAnswers.resolve();
    return {
      status,
      audit: edge.audit.map((r) => [r.decision, r.reason, r.detail, r.failed_open]),
      forwarded: (await originSaw(m)).length,
      ceilingLeft: await remainingOf("ROUTE_LIMITER", ["route", route], ["route", "ceiling", 1, 3600, "GET"], 1, 3600),
      userLeft: await remainingOf(
        "TENANT_LIMITER",
        ["tenant", tenant],
        ["user", "per-user", 5, 3600, "a", "carol"],
        5,
        3600,
      ),
    };
  }

  it("fails closed: the late hold is given back exactly, as is the tenant's, and nothing is forwarded", async () => {
    const result = await lateRouteAnswer("deny");
    expect(result).toEqual({
      status: 503,
      audit: [["deny", "limiter_unavailable", "limiter_route_timeout", null]],
      forwarded: 0,
      // A give-back by time alone would leave a 1-an-hour ceiling at 0: only the exact one leaves it whole.
      ceilingLeft: 1,
      userLeft: 5,
    });
  });

  it("fails open: the request went through, so the late hold is kept and counts", async () => {
    const result = await lateRouteAnswer("allow");
    expect(result).toEqual({
      status: 200,
      audit: [["allow", null, null, ["ceiling"]]],
      forwarded: 1,
      ceilingLeft: 0,
      userLeft: 4,
    });
  });
});
