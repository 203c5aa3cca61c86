import { describe, expect, it } from "vitest";
import policyDocument from "../../policy/policy.json";
import { CounterTable } from "../../src/core/limits/counter-table";
import { type AcquireResult, type CounterRequest, HOLD_MS } from "../../src/core/limits/limiter-rpc";
import { gcra, type Rate, refund, type Tat } from "../../src/core/limits/gcra";
import {
  clientAddressKey,
  type LimiterKind,
  type LimitPlan,
  type PlanInput,
  planLimits,
} from "../../src/core/limits/plan";
import { combineAnswers, type ObjectAnswer } from "../../src/core/limits/verdict";
import { compilePolicy } from "../../src/core/policy";
import type { LimitSpec } from "../../src/core/policy-types";
import { rateLimitHeaders, sfString } from "../../src/core/rate-limit-headers";

const T0 = 1_800_000_000_000;

/** A GCRA counter driven by an injected clock, answering like redis-cell's CL.THROTTLE. */
function throttle(rate: Rate) {
  let tat: Tat | undefined;
  return (now: number, cost = 1): [number, number, number, number] => {
    const r = gcra(tat, now, rate, cost);
    tat = r.tat;
    const retry = r.allowed || !Number.isFinite(r.retryAfterMs) ? -1 : r.retryAfterMs / 1000;
    return [r.allowed ? 0 : 1, r.remaining, r.resetMs / 1000, retry];
  };
}

/** A GCRA counter driven by an injected clock: `(now, n)` makes n requests at `now` and counts those admitted. */
function admissions(rate: Rate) {
  let tat: Tat | undefined;
  return (now: number, n: number) => {
    let count = 0;
    for (let i = 0; i < n; i++) {
      const r = gcra(tat, now, rate);
      tat = r.tat;
      if (r.allowed) count++;
    }
    return count;
  };
}

describe("GCRA", () => {
  it("reproduces redis-cell CL.THROTTLE key 5 1 1 exactly", () => {
    // Burst 5, one per second: limit 5 per 5 s.
    const call = throttle({ limit: 5, windowMs: 5000 });
    expect(call(T0, 6)).toEqual([1, 5, 0, -1]);
    expect([1, 2, 3, 4, 5].map(() => call(T0))).toEqual([
      [0, 4, 1, -1],
      [0, 3, 2, -1],
      [0, 2, 3, -1],
      [0, 1, 4, -1],
      [0, 0, 5, -1],
    ]);
    expect(call(T0)).toEqual([1, 0, 5, 1]);
    expect(call(T0 + 3000)).toEqual([0, 2, 3, -1]);
    expect(call(T0 + 3100)).toEqual([0, 1, 3.9, -1]);
    expect(call(T0 + 4000)).toEqual([0, 1, 4, -1]);
    expect(call(T0 + 8000)).toEqual([0, 4, 1, -1]);
    expect(call(T0 + 9500)).toEqual([0, 4, 1, -1]);
    expect(call(T0 + 9500, 0)).toEqual([0, 4, 1, -1]);
    expect(call(T0 + 9500, 2)).toEqual([0, 2, 3, -1]);
    expect(call(T0 + 9500, 5)).toEqual([1, 2, 3, 3]);
  });

  it("admits exactly the burst when the emission interval is not a whole number of ms", () => {
    // 60 000 ms / 7 = 8571.428… ms per request.
    const admitted = admissions({ limit: 7, windowMs: 60_000 });
    expect(admitted(T0, 50)).toBe(7);
    expect(admitted(T0 + 8571, 1)).toBe(0);
    expect(admitted(T0 + 8572, 5)).toBe(1);
    // Over ten windows at full pressure: the burst plus exactly one per interval.
    let total = 0;
    for (let t = T0 + 8572; t <= T0 + 600_000; t += 1) total += admitted(t, 1);
    // The kth request after the burst is due at ceil(k · 60 000 / 7) ms: k = 2 … 70 fall in range.
    expect(total).toBe(69);
  });

  it("gives no second burst across a window boundary", () => {
    const burst = admissions({ limit: 10, windowMs: 60_000 }); // one request per 6 s
    // A fixed one-minute window would admit 10 at 59.9 s and 10 more at 60.1 s.
    expect(burst(T0 + 59_900, 20)).toBe(10);
    expect(burst(T0 + 60_100, 20)).toBe(0);
    expect(burst(T0 + 59_900 + 5_999, 5)).toBe(0);
    expect(burst(T0 + 59_900 + 6_000, 5)).toBe(1);
  });

  it("never admits more than burst + elapsed / T in any interval", () => {
    const rate = { limit: 4, windowMs: 10_000 }; // T = 2.5 s
    let tat: Tat | undefined;
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const admittedAt: number[] = [];
    let now = T0;
    for (let i = 0; i < 3000; i++) {
      now += Math.floor(random() * 400);
      const r = gcra(tat, now, rate);
      tat = r.tat;
      if (r.allowed) admittedAt.push(now);
    }
    let worst = Number.NEGATIVE_INFINITY; // admitted − (burst + elapsed / T), over every interval
    for (let i = 0; i < admittedAt.length; i++) {
      for (let j = i; j < admittedAt.length; j++) {
        const elapsed = admittedAt[j]! - admittedAt[i]!;
        worst = Math.max(worst, j - i + 1 - (rate.limit + elapsed / 2500));
      }
    }
    expect(worst).toBeLessThanOrEqual(0);
    expect(admittedAt.length).toBeGreaterThan(100);
  });

  it("never reports negative remaining, reset or retry when the clock goes backwards", () => {
    const rate = { limit: 3, windowMs: 3000 };
    let tat: Tat | undefined;
    const times = [T0, T0 + 10_000, T0 + 10_000, T0 - 50_000, T0 + 9_000, T0 - 1, T0 + 10_001, T0 - 999_999];
    for (const now of times) {
      for (const cost of [0, 1, 2, 4]) {
        const r = gcra(tat, now, rate, cost);
        if (cost <= rate.limit) tat = r.tat;
        expect(r.remaining).toBeGreaterThanOrEqual(0);
        expect(r.remaining).toBeLessThanOrEqual(rate.limit);
        expect(r.resetMs).toBeGreaterThanOrEqual(0);
        expect(r.retryAfterMs).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it("refunds exactly what was charged", () => {
    const rate = { limit: 7, windowMs: 60_000 };
    const first = gcra(undefined, T0, rate);
    const second = gcra(first.tat, T0 + 10, rate);
    // Released the moment it was reserved: all of it comes back.
    const back = refund(second.tat, T0 + 10, rate, T0 + 10);
    expect(back).toEqual(gcra(first.tat, T0 + 10, rate, 0).tat);
    expect(gcra(back, T0 + 20, rate, 0).remaining).toBe(gcra(first.tat, T0 + 20, rate, 0).remaining);
    // Refunding the only request leaves nothing.
    expect(refund(first.tat, T0 + 1, rate, T0)).toBeUndefined();
  });

  it("refunds the reservation's cost less the time since it was made: never more than it can still hold", () => {
    // 600 a minute: T = 100 ms. A reservation made at T0 occupies 100 ms that began at T0 at
    // the earliest, so 30 ms later at most 70 ms of it can be left.
    const rate = { limit: 600, windowMs: 60_000 };
    const at = (ms: number): Tat => ({ ms, frac: 0, den: 600 });
    expect(refund(at(T0 + 300), T0 + 30, rate, T0)).toEqual(at(T0 + 230));
    // The same with a cost of 3 (300 ms): 270 ms.
    expect(refund(at(T0 + 500), T0 + 30, rate, T0, 3)).toEqual(at(T0 + 230));
    // Once cost·T has passed, nothing, whatever the counter holds now.
    expect(refund(at(T0 + 60_000), T0 + 100, rate, T0)).toEqual(at(T0 + 60_000));
    // A clock that stepped back gives back exactly the cost, no more.
    expect(refund(at(T0 + 300), T0 - 50, rate, T0)).toEqual(at(T0 + 200));
    // Never below now: the counter is simply empty.
    expect(refund(at(T0 + 50), T0 + 10, rate, T0)).toBeUndefined();
    // A time acquire could not have answered gives nothing back.
    for (const odd of [undefined, Number.NaN, T0 + 0.5, "T0" as unknown as number]) {
      expect(refund(at(T0 + 300), T0, rate, odd)).toEqual(at(T0 + 300));
    }
  });

  it("keeps time when a limit is resized, rounding towards the caller", () => {
    let tat = gcra(undefined, T0, { limit: 3, windowMs: 1000 }).tat; // 333.33 ms charged
    const resized = gcra(tat, T0, { limit: 7, windowMs: 1000 }, 0);
    expect(resized.resetMs).toBeGreaterThanOrEqual(1000 / 3);
    expect(resized.resetMs).toBeLessThan(1000 / 3 + 1000 / 7);
    tat = resized.tat;
    expect(gcra(tat, T0, { limit: 7, windowMs: 1000 }, 0).remaining).toBe(4);
  });

  it("stays exact for very large limits", () => {
    const rate = { limit: 1_000_000_000, windowMs: 86400 * 31 * 1000 };
    let tat: Tat | undefined;
    for (let i = 0; i < 3; i++) tat = gcra(tat, T0, rate).tat;
    expect(gcra(tat, T0, rate, 0).remaining).toBe(rate.limit - 3);
  });
});

describe("CounterTable", () => {
  const tenant = { id: "tenant", limit: 10, windowS: 60 };
  const user = { id: "user", limit: 2, windowS: 60 };

  it("charges every counter or none", () => {
    const table = new CounterTable();
    expect(table.acquire([tenant, user], T0).allowed).toBe(true);
    expect(table.acquire([tenant, user], T0).allowed).toBe(true);
    const refused = table.acquire([tenant, user], T0);
    expect(refused.allowed).toBe(false);
    // The tenant counter admitted the request but was not charged, and says so.
    expect(refused.counters).toEqual([
      { allowed: true, remaining: 8, resetMs: 12_000, retryAfterMs: 0 },
      { allowed: false, remaining: 0, resetMs: 60_000, retryAfterMs: 30_000 },
    ]);
    expect(table.acquire([{ ...tenant, cost: 0 }], T0).counters[0]?.remaining).toBe(8);
  });

  it("loads stored counters, but not one whose time is not a number or a proper fraction (corrupt storage)", () => {
    const table = new CounterTable();
    table.load("good", { ms: T0 + 60_000, frac: 0, den: 1 });
    table.load("zero-den", { ms: T0 + 60_000, frac: 0, den: 0 });
    table.load("nan", { ms: Number.NaN, frac: 0, den: 1 });
    table.load("fraction", { ms: T0 + 0.5, frac: 0, den: 1 });
    // A fraction that is no proper one of a whole denominator: the exact arithmetic would throw
    // (a denominator that is not whole) or carry a whole millisecond in the fraction.
    table.load("whole-fraction", { ms: T0 + 60_000, frac: 4, den: 2 });
    table.load("negative-fraction", { ms: T0 + 60_000, frac: -1, den: 2 });
    table.load("fractional-den", { ms: T0 + 60_000, frac: 1, den: 2.5 });
    expect(table.size).toBe(1);
    // The good one counts: a 2-a-minute user whose TAT is a minute ahead is refused now.
    expect(table.acquire([{ ...user, id: "good" }], T0).allowed).toBe(false);
  });

  it("never refuses for longer than a window: a counter further ahead (clock stepped back, window shortened) is merely full", () => {
    // Two a day, one spent: the counter stands half a day ahead.
    const table = new CounterTable();
    const daily = { id: "user", limit: 2, windowS: 86_400 };
    expect(table.acquire([daily], T0).allowed).toBe(true);
    // A tenant override now makes the same counter 1,000 a minute: refused for at most the
    // minute it takes to fill up again, not the rest of the day.
    const perMinute = { id: "user", limit: 1000, windowS: 60 };
    const refused = table.acquire([perMinute], T0);
    expect(refused.allowed).toBe(false);
    expect(refused.counters[0]?.retryAfterMs).toBe(60);
    expect(refused.counters[0]?.resetMs).toBe(60_000);
    expect(table.acquire([perMinute], T0 + 60).allowed).toBe(true);
    // The clock stepping back an hour on a 2-a-minute counter: refused for at most its window.
    const clock = new CounterTable();
    const twoAMinute = { id: "user", limit: 2, windowS: 60 };
    expect(clock.acquire([twoAMinute], T0).allowed).toBe(true);
    const back = T0 - 3_600_000;
    expect(clock.acquire([twoAMinute], back).counters[0]?.retryAfterMs).toBeLessThanOrEqual(30_000);
    expect(clock.acquire([twoAMinute], back + 30_000).allowed).toBe(true);
  });

  it("a refused call that names one counter twice, under two sizes, leaves it as it was", () => {
    const table = new CounterTable();
    const refused = table.acquire(
      [
        { id: "user", limit: 2, windowS: 86_400 },
        { id: "user", limit: 1000, windowS: 60 },
      ],
      T0,
    );
    expect(refused.allowed).toBe(false);
    expect(table.get("user")).toBeUndefined();
  });

  it("releases a reservation", () => {
    const table = new CounterTable();
    table.acquire([tenant, user], T0);
    const reserved = table.acquire([tenant, user], T0 + 5);
    table.release([tenant, user], reserved.at, reserved.epoch, T0 + 10);
    const now = table.acquire(
      [
        { ...tenant, cost: 0 },
        { ...user, cost: 0 },
      ],
      T0 + 10,
    );
    expect(now.counters.map((c) => c.remaining)).toEqual([9, 1]);
  });

  it("a release that lands after its reservation has drained gives nothing back: never more than the limit", () => {
    // 600 a minute: one request every 100 ms comes back.
    const counter: CounterRequest = { id: "user", limit: 600, windowS: 60 };
    const table = new CounterTable();
    // Three reservations on an idle counter, to be released once the other object refuses them.
    const reserved = [0, 1, 2].map(() => table.acquire([counter], T0));
    expect(reserved.map((r) => r.allowed)).toEqual([true, true, true]);
    // 400 ms on, they have drained by themselves; a burst takes the whole limit.
    const now = T0 + 400;
    let admitted = 0;
    for (let i = 0; i < 1000; i++) if (table.acquire([counter], now).allowed) admitted++;
    expect(admitted).toBe(600);
    // The releases land now: their slots hold nothing, so the burst's charges stay.
    for (const r of reserved) table.release([counter], r.at, r.epoch, now);
    let more = 0;
    for (let i = 0; i < 10; i++) if (table.acquire([counter], now).allowed) more++;
    expect(admitted + more).toBe(600);
    expect(table.acquire([{ ...counter, cost: 0 }], now).counters[0]?.remaining).toBe(0);
  });

  it("gives back several reservations released at once in full, in whatever order", () => {
    // A user's burst refused by another object: every reservation comes back.
    for (const order of [
      [0, 1, 2, 3],
      [3, 2, 1, 0],
      [2, 0, 3, 1],
    ]) {
      const table = new CounterTable();
      const tenantOnly = { ...tenant, id: `tenant-${order.join("")}` };
      const kept = table.acquire([tenantOnly], T0);
      const reserved = [0, 1, 2, 3].map(() => table.acquire([tenantOnly], T0 + 1));
      expect(kept.allowed && reserved.every((r) => r.allowed)).toBe(true);
      for (const i of order) table.release([tenantOnly], reserved[i]!.at, reserved[i]!.epoch, T0 + 1);
      // Exactly the kept request is still counted.
      expect(table.acquire([{ ...tenantOnly, cost: 0 }], T0 + 2).counters[0]?.remaining).toBe(9);
    }
  });

  it("gives nothing back once it has evicted: the counter may hold other requests' charges", () => {
    const table = new CounterTable(100); // evicts in batches of 1
    const a: CounterRequest = { id: "a", limit: 5, windowS: 60 };
    table.acquire([a], T0);
    const reserved = table.acquire([a], T0); // its slot: [T0 + 12 s, T0 + 24 s]
    // 100 more counters, each a minute ahead: "a", the earliest to expire, is evicted.
    for (let i = 0; i < 100; i++) table.acquire([{ id: `k${i}`, limit: 1, windowS: 60 }], T0);
    expect(table.get("a")).toBeUndefined();
    // "a" is counted afresh, two requests served; then the old reservation's release lands.
    for (let i = 0; i < 2; i++) expect(table.acquire([a], T0).allowed).toBe(true);
    table.release([a], reserved.at, reserved.epoch, T0);
    expect(table.acquire([{ ...a, cost: 0 }], T0).counters[0]?.remaining).toBe(3);
  });

  it("ignores a release without what acquire answered", () => {
    const table = new CounterTable();
    const reserved = table.acquire([tenant], T0);
    table.release([tenant], undefined, reserved.epoch, T0);
    table.release([tenant], reserved.at, undefined, T0);
    table.release([tenant], reserved.at, (reserved.epoch ?? 0) + 1, T0);
    expect(table.acquire([{ ...tenant, cost: 0 }], T0).counters[0]?.remaining).toBe(9);
  });

  it("stays at or above GCRA over the requests served, and equal when releases are immediate (random runs)", () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const ahead = (tat: Tat | undefined, now: number) => (tat ? Math.max(0, tat.ms - now + tat.frac / tat.den) : 0);
    for (let run = 0; run < 500; run++) {
      const rate = { limit: 1 + Math.floor(random() * 9), windowMs: 1000 * (1 + Math.floor(random() * 5)) };
      const counter: CounterRequest = { id: "c", limit: rate.limit, windowS: rate.windowMs / 1000 };
      const immediate = random() < 0.5; // no time passes between a reservation and its release
      const table = new CounterTable();
      const served: { at: number; cost: number; pending?: AcquireResult }[] = [];
      let now = T0;
      for (let step = 0; step < 40; step++) {
        if (!immediate) now += Math.floor((random() * 1.5 * rate.windowMs) / rate.limit);
        const pending = served.filter((s) => s.pending);
        if (random() < 0.55 || pending.length === 0) {
          const cost = 1 + Math.floor(random() * Math.min(3, rate.limit));
          const result = table.acquire([{ ...counter, cost }], now);
          if (result.allowed) served.push({ at: now, cost, ...(random() < 0.6 ? { pending: result } : {}) });
          continue;
        }
        const released = pending[Math.floor(random() * pending.length)]!;
        table.release([{ ...counter, cost: released.cost }], released.pending!.at, released.pending!.epoch, now);
        released.pending = undefined;
        served.splice(served.indexOf(released), 1);
        let truth: Tat | undefined;
        for (const s of served) truth = gcra(truth, s.at, rate, s.cost).tat;
        if (immediate) expect(ahead(table.get("c"), now)).toBeCloseTo(ahead(truth, now), 9);
        else expect(ahead(table.get("c"), now)).toBeGreaterThanOrEqual(ahead(truth, now) - 1e-9);
      }
    }
  });

  it("never gives back more than what is still counted, however releases and requests interleave", () => {
    // 600 a minute (T = 100 ms) on a busy counter: five requests kept, then two reservations
    // whose other object refuses them. The first is released at once; a request comes
    // 550 ms on, when the second reservation, moved down by the first refund, has drained:
    // its release, landing then, has nothing left to give back.
    const table = new CounterTable();
    const counter: CounterRequest = { id: "c", limit: 600, windowS: 60 };
    for (let i = 0; i < 5; i++) table.acquire([counter], T0);
    const [r1, r2] = [table.acquire([counter], T0), table.acquire([counter], T0)];
    table.release([counter], r1.at, r1.epoch, T0);
    expect(table.acquire([counter], T0 + 550).allowed).toBe(true);
    table.release([counter], r2.at, r2.epoch, T0 + 550);
    // GCRA over the six requests served (five at T0, one at T0 + 550 ms) ends at T0 + 650 ms.
    // The counter may stay above that (the release cannot tell the 50 ms the reservation
    // still held from others' charges) but never below.
    expect(table.get("c")).toEqual({ ms: T0 + 700, frac: 0, den: 600 });
  });

  it("gives back a hold exactly, however late, and charges one nobody gives back when it is due", () => {
    // A shared ceiling under load: the request another object refused is given back 400 ms
    // later, when a charge's slot (100 ms) would have drained by time alone. Held, it comes
    // back whole, and nothing of the charges made since is lost.
    const table = new CounterTable();
    const ceiling: CounterRequest = { id: "ceiling", limit: 100, windowS: 10 };
    /** Where the counter stands (ms), holds and charges queued behind them included. */
    const standing = (now: number) => now + table.acquire([{ ...ceiling, cost: 0 }], now).counters[0]!.resetMs;
    table.acquire([ceiling], T0);
    const held = table.acquire([ceiling], T0, HOLD_MS);
    // A hold counts against the next request as the charge it stands for would.
    expect(standing(T0)).toBe(T0 + 200);
    expect(table.acquire([{ ...ceiling, cost: 0 }], T0).counters[0]!.remaining).toBe(98);
    for (let i = 1; i <= 20; i++) expect(table.acquire([ceiling], T0 + 10 * i).allowed).toBe(true);
    expect(standing(T0 + 400)).toBe(T0 + 2200);
    table.release([ceiling], held.at, held.epoch, T0 + 400, held.seq);
    expect(standing(T0 + 400)).toBe(T0 + 2100);
    // Given back twice, or by a number or a time it never gave, nothing more comes back.
    table.release([ceiling], held.at, held.epoch, T0 + 400, held.seq);
    table.release([ceiling], held.at, held.epoch, T0 + 400, (held.seq ?? 0) + 1);
    expect(standing(T0 + 400)).toBe(T0 + 2100);
    // Everything is charged for good when due, in order, each as of when it was decided.
    expect(table.settleHolds(T0 + HOLD_MS - 1)).toBe(T0 + 10 + HOLD_MS);
    expect(table.settleHolds(T0 + 200 + HOLD_MS)).toBeUndefined();
    expect(table.get("ceiling")).toEqual({ ms: T0 + 2100, frac: 0, den: 100 });
    // A hold nobody gives back: charged when due, as of when it was decided.
    const kept = table.acquire([ceiling], T0 + 2200, HOLD_MS);
    expect(table.settleHolds(T0 + 2200 + HOLD_MS)).toBeUndefined();
    expect(table.get("ceiling")).toEqual({ ms: T0 + 2300, frac: 0, den: 100 });
    // Given back after that: nothing (it was charged for good; erring towards refusing).
    table.release([ceiling], kept.at, kept.epoch, T0 + 2200 + HOLD_MS, kept.seq);
    expect(table.get("ceiling")).toEqual({ ms: T0 + 2300, frac: 0, den: 100 });
    // Nor one given back once due, before any call or alarm has charged it: the same.
    const late = table.acquire([ceiling], T0 + 2200 + HOLD_MS, HOLD_MS);
    table.release([ceiling], late.at, late.epoch, T0 + 2200 + 2 * HOLD_MS, late.seq);
    expect(table.get("ceiling")).toEqual({ ms: T0 + 4300, frac: 0, den: 100 });
  });

  it("drops expired counters and reports what to persist", () => {
    const table = new CounterTable();
    table.acquire([{ id: "short", limit: 1, windowS: 1 }], T0);
    table.acquire([{ id: "long", limit: 1, windowS: 60 }], T0);
    expect(table.pendingChanges(T0)).toEqual({
      upserts: [
        ["short", { ms: T0 + 1000, frac: 0, den: 1 }],
        ["long", { ms: T0 + 60_000, frac: 0, den: 1 }],
      ],
      deletes: [],
    });
    table.markSaved(table.pendingChanges(T0));
    expect(table.sweep(T0 + 1000)).toBe(T0 + 60_000);
    expect(table.size).toBe(1);
    expect(table.pendingChanges(T0 + 1000)).toEqual({ upserts: [], deletes: ["short"] });
    expect(table.sweep(T0 + 60_000)).toBeUndefined();
    expect(table.size).toBe(0);
  });

  it("keeps a change pending until it is saved, so a failed save is retried", () => {
    const table = new CounterTable();
    table.acquire([{ id: "a", limit: 1, windowS: 60 }], T0);
    const failed = table.pendingChanges(T0);
    expect(failed.upserts.map(([id]) => id)).toEqual(["a"]);
    // The write failed: nothing was marked saved, so the next flush sends the same change.
    expect(table.pendingChanges(T0)).toEqual(failed);
    table.markSaved(failed);
    expect(table.pendingChanges(T0)).toEqual({ upserts: [], deletes: [] });
  });
});

describe("CounterTable at its bound", () => {
  const counter = (id: string, windowS = 60): CounterRequest => ({ id, limit: 5, windowS });

  it("keeps a saturated counter while it refuses: the refused client gets no second burst", () => {
    const table = new CounterTable(200);
    const hot = counter("hot");
    for (let i = 0; i < 5; i++) expect(table.acquire([hot], T0).allowed).toBe(true);
    let hotAdmitted = 0;
    let largest = 0;
    // 1,000 other clients arrive over 10 s while the hot one keeps trying. A refusal writes
    // nothing, so "least recently written" would have evicted the hot counter long ago.
    for (let i = 0; i < 1000; i++) {
      const now = T0 + i * 10;
      table.acquire([counter(`k${i}`)], now);
      largest = Math.max(largest, table.size);
      if (table.acquire([hot], now).allowed) hotAdmitted++;
    }
    expect(largest).toBeLessThanOrEqual(200);
    expect(hotAdmitted).toBe(0);
    expect(table.get("hot")).toEqual({ ms: T0 + 60_000, frac: 0, den: 5 });
    // The most recent clients, with the latest TATs among the others, are the ones kept.
    expect(table.get("k999")).toBeDefined();
    expect(table.get("k0")).toBeUndefined();
  });

  it("keeps a refused client's counter next to counters of longer windows that expire later", () => {
    const table = new CounterTable(200);
    // 2 a minute, spent: refused for the rest of the minute.
    const abuser: CounterRequest = { id: "abuser", limit: 2, windowS: 60 };
    for (let i = 0; i < 2; i++) expect(table.acquire([abuser], T0).allowed).toBe(true);
    // 1,000 others make one request each of 1,000 a day: each 86.4 s ahead, later than the
    // abuser's TAT, yet a thousandth of their window.
    let admitted = 0;
    for (let i = 0; i < 1000; i++) {
      const now = T0 + i * 10;
      table.acquire([{ id: `day${i}`, limit: 1000, windowS: 86_400 }], now);
      if (table.acquire([abuser], now).allowed) admitted++;
    }
    expect(admitted).toBe(0);
    expect(table.get("abuser")).toBeDefined();
  });

  it("keeps a refused client whose limit refuses a third of the way ahead (1 a minute) over clients it does not refuse", () => {
    const otp: CounterRequest = { id: "otp-client", limit: 1, windowS: 60 };
    const table = new CounterTable(100);
    expect(table.acquire([otp], T0 - 40_000).allowed).toBe(true);
    // Refused for 20 s more: a third of its window ahead.
    expect(table.acquire([otp], T0).allowed).toBe(false);
    // 99 clients of 2 a minute, one request each: half their window ahead, and admitted.
    for (let i = 0; i < 99; i++) table.acquire([{ id: `other${i}`, limit: 2, windowS: 60 }], T0);
    table.acquire([{ id: "newcomer", limit: 2, windowS: 60 }], T0);
    expect(table.size).toBeLessThan(101);
    expect(table.acquire([otp], T0 + 1).allowed).toBe(false);
  });

  it("ranks a counter by the size in force, a tenant override's, also after a restart", () => {
    // Declared 1,000 a day (the id says so); the override makes it 2 a minute.
    const id = JSON.stringify(["user", "calls", 1000, 86_400, "idp", "abuser"]);
    const abuser: CounterRequest = { id, limit: 2, windowS: 60 };
    const table = new CounterTable(200);
    // Loaded at start-up, spent: a whole (overridden) minute ahead.
    table.load(id, { ms: T0 + 60_000, frac: 0, den: 2 });
    // Other users half way through 10 a minute, loaded too: ranked by the size their ids declare.
    for (let i = 0; i < 199; i++) {
      table.load(JSON.stringify(["user", "burst", 10, 60, "idp", `u${i}`]), { ms: T0 + 30_000, frac: 0, den: 10 });
    }
    // Its client comes back and is refused: the size in force is known from then on.
    expect(table.acquire([abuser], T0).allowed).toBe(false);
    for (let i = 0; i < 10; i++) table.acquire([{ id: `new${i}`, limit: 10, windowS: 60 }], T0);
    expect(table.get(id)).toBeDefined();
  });

  it("ranks by the limit in force, not the one a counter was written under, and exactly at the boundary", () => {
    const table = new CounterTable(100);
    // 7 of 10 a minute spent (0.7 of it ahead); then an override makes it 2 a minute: refused.
    const overridden: CounterRequest = { id: "overridden", limit: 10, windowS: 60 };
    for (let i = 0; i < 7; i++) table.acquire([overridden], T0);
    expect(table.acquire([{ ...overridden, limit: 2 }], T0).allowed).toBe(false);
    // 10 of 11 an hour (0.91 ahead): one request left, admitting, though a float reading of
    // its boundary (3,272,727.27… ms against 3,600,000 − 3,600,000 / 11) calls it refusing.
    const edge: CounterRequest = { id: "edge", limit: 11, windowS: 3600 };
    for (let i = 0; i < 10; i++) table.acquire([edge], T0);
    expect(table.acquire([{ ...edge, cost: 0 }], T0).counters[0]?.remaining).toBe(1);
    // 98 clients at 19 of 20 a minute (0.95 ahead), admitting; one more arrives so.
    for (let i = 0; i < 99; i++) table.acquire([{ id: `c${i}`, limit: 20, windowS: 60, cost: 19 }], T0);
    // Two go: the admitting ones that give back least, the edge counter first.
    expect(table.size).toBe(99);
    expect(table.get("overridden")).toBeDefined();
    expect(table.get("edge")).toBeUndefined();
  });

  it("ranks a counter cut back to full by what it still refuses: a full one that admits again goes before refusing ones", () => {
    const table = new CounterTable(100);
    // 100 a minute, found two minutes ahead after an override shortened its window: cut back
    // to full; 30 s later it admits half its burst again.
    const cut: CounterRequest = { id: "cut", limit: 100, windowS: 60 };
    table.load("cut", { ms: T0 + 120_000, frac: 0, den: 100 });
    expect(table.acquire([{ ...cut, cost: 0 }], T0).allowed).toBe(true);
    // 98 clients refused by 1 a minute with a third of it to go (share 0.33), and one at 9 of
    // 10 a minute (0.9 ahead, admitting).
    for (let i = 0; i < 98; i++) {
      table.acquire([{ id: `otp${i}`, limit: 1, windowS: 60 }], T0 - 10_000);
    }
    for (let i = 0; i < 9; i++) table.acquire([{ id: "busy", limit: 10, windowS: 60 }], T0 + 30_000);
    // One more: two go, the two that admit.
    table.acquire([{ id: "newcomer", limit: 1, windowS: 60 }], T0 + 30_000);
    for (let i = 0; i < 98; i++) expect(table.get(`otp${i}`)).toBeDefined();
    expect(table.get("cut")).toBeUndefined();
    expect(table.get("busy")).toBeUndefined();
  });

  it("ranks counters loaded at start-up by the window their id declares", () => {
    const table = new CounterTable(200);
    const id = (name: string, limit: number, windowS: number, who: string) =>
      JSON.stringify(["user", name, limit, windowS, "idp", who]);
    table.load(id("per-minute", 2, 60, "abuser"), { ms: T0 + 60_000, frac: 0, den: 1 });
    for (let i = 0; i < 199; i++)
      table.load(id("per-day", 1000, 86_400, `u${i}`), { ms: T0 + 86_400, frac: 0, den: 1 });
    for (let i = 0; i < 10; i++)
      table.acquire([{ id: id("per-day", 1000, 86_400, `new${i}`), limit: 1000, windowS: 86_400 }], T0);
    expect(table.size).toBeLessThanOrEqual(200);
    expect(table.get(id("per-minute", 2, 60, "abuser"))).toBeDefined();
  });

  it("sweeps expired counters before forgetting any live one", () => {
    const table = new CounterTable(100);
    for (let i = 0; i < 50; i++) table.acquire([counter(`brief${i}`, 1)], T0);
    for (let i = 0; i < 50; i++) table.acquire([counter(`long${i}`)], T0);
    expect(table.size).toBe(100);
    // A second later the brief ones have expired: dropping them is enough, no live counter goes.
    table.acquire([counter("new")], T0 + 1000);
    expect(table.size).toBe(51);
    for (let i = 0; i < 50; i++) expect(table.get(`long${i}`)).toBeDefined();
    expect(table.pendingChanges(T0 + 1000).deletes).toHaveLength(50);
  });

  it("forgets live counters that give back least first, in batches of 1 % that leave room for the next ones", () => {
    const table = new CounterTable(1000); // batches of 10
    // One request of 5 per 60 s: counter i stands 12 s − (now − T0 − i) ms ahead of its 60 s
    // window, the lower i the less.
    for (let i = 0; i < 1000; i++) table.acquire([counter(`c${i}`)], T0 + i);
    expect(table.size).toBe(1000);
    // Written last but giving back the least of all (one request of 100 a minute): the first to go.
    table.acquire([{ id: "light", limit: 100, windowS: 60 }], T0 + 1000);
    expect(table.size).toBe(990);
    expect(table.get("light")).toBeUndefined();
    for (let i = 0; i < 10; i++) expect(table.get(`c${i}`)).toBeUndefined();
    expect(table.get("c10")).toBeDefined();
    // The next ten new counters fit in the room left: nothing else is evicted until then.
    for (let i = 0; i < 10; i++) table.acquire([counter(`n${i}`)], T0 + 1000);
    expect(table.size).toBe(1000);
    expect(table.get("c10")).toBeDefined();
    table.acquire([counter("n10")], T0 + 1000);
    expect(table.size).toBe(990);
    expect(table.get("c10")).toBeUndefined();
  });

  it("evicts exactly the batch when many counters expire at the same moment", () => {
    const table = new CounterTable(300); // batches of 3
    for (let i = 0; i < 150; i++) table.acquire([counter(`same${i}`)], T0);
    for (let i = 0; i < 151; i++) table.acquire([counter(`later${i}`)], T0 + 1);
    // 301 counters: the 4 to go all come from the 150 that share the earliest TAT.
    expect(table.size).toBe(297);
    const kept = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => table.get(`${prefix}${i}`)).filter(Boolean).length;
    expect(kept("same", 150)).toBe(146);
    expect(kept("later", 151)).toBe(151);
  });

  it("keeps a shared counter (a route ceiling) while per-address counters outlast it: the ceiling still holds", () => {
    // A public route: 100 a minute in all, 5 a day per address, both counted in the route's
    // object. Each address's counter is a day long, the ceiling's at most a minute, so
    // "earliest TAT first" picked the ceiling at every eviction and forgot everyone's count.
    const limits: LimitSpec[] = [
      { name: "ceiling", key: "route", limit: 100, window_s: 60 },
      { name: "per-ip", key: "ip", limit: 5, window_s: 86400 },
    ];
    const items = (i: number) => {
      const clientAddress = `10.0.${i >> 8}.${i & 255}`;
      const planned = planLimits({ routeName: "signup", method: "POST", limits, clientAddress, tenantOverrides: {} });
      if (!planned.ok) throw new Error("plan failed");
      return planned.plan.limits.map((l) => ({ id: l.counterId, limit: l.limit, windowS: l.windowS }));
    };
    const table = new CounterTable(1000);
    // Fill the table at the ceiling's pace (one every 600 ms), then burst from new addresses.
    for (let i = 1; i <= 1000; i++) expect(table.acquire(items(i), T0 + i * 600).allowed).toBe(true);
    const now = T0 + 1000 * 600;
    let admitted = 0;
    for (let i = 1001; i <= 3000; i++) if (table.acquire(items(i), now).allowed) admitted++;
    expect(table.size).toBeLessThanOrEqual(1000);
    // The ceiling's burst of 100, less the one request still counted from the fill.
    expect(admitted).toBe(99);
  });
});

describe("planLimits", () => {
  const policy = compilePolicy(policyDocument);
  const routeNamed = (name: string) => policy.routes.find((r) => r.name === name)!;
  const alice = { issuerId: "demo", subject: "alice", tenant: "acme" };

  it("counts tenant and user limits in the tenant's object, route limits in the route's", () => {
    const planned = planLimits({
      routeName: "limited",
      method: "GET",
      limits: routeNamed("limited").limits,
      identity: alice,
      tenantOverrides: policy.tenantOverrides,
    });
    expect(planned).toEqual({
      ok: true,
      plan: {
        tenantObject: '["tenant","acme"]',
        routeObject: '["route","limited"]',
        limits: [
          {
            name: "tenant-per-minute",
            key: "tenant",
            limit: 10000,
            windowS: 60,
            onError: "deny",
            object: "tenant",
            counterId: '["tenant","tenant-per-minute",10000,60]',
          },
          {
            name: "user-per-minute",
            key: "user",
            limit: 600,
            windowS: 60,
            onError: "deny",
            object: "tenant",
            counterId: '["user","user-per-minute",600,60,"demo","alice"]',
          },
          {
            name: "limited-user-per-minute",
            key: "user",
            limit: 5,
            windowS: 60,
            onError: "deny",
            object: "tenant",
            counterId: '["user","limited-user-per-minute",5,60,"demo","alice"]',
          },
          {
            name: "limited-route-per-minute",
            key: "route",
            limit: 5000,
            windowS: 60,
            onError: "deny",
            object: "route",
            counterId: '["route","limited-route-per-minute",5000,60,"GET"]',
          },
        ],
      },
    });
  });

  it("applies tenant overrides to that tenant's tenant and user limits", () => {
    const planned = planLimits({
      routeName: "api-read",
      method: "HEAD",
      limits: routeNamed("api-read").limits,
      identity: { ...alice, tenant: "enterprise-demo" },
      tenantOverrides: {
        "enterprise-demo": { "tenant-per-minute": { limit: 50000 }, "user-per-minute": { limit: 9, window_s: 1 } },
      },
    });
    if (!planned.ok) throw new Error("plan failed");
    // The shipped defaults are all counted in the tenant's object: one round trip.
    expect(planned.plan.routeObject).toBeUndefined();
    expect(planned.plan.limits.map((l) => [l.name, l.limit, l.windowS])).toEqual([
      ["tenant-per-minute", 50000, 60],
      ["user-per-minute", 9, 1],
    ]);
  });

  it("skips tenant limits for a caller without a tenant and counts it in its own object", () => {
    const planned = planLimits({
      routeName: "limited",
      method: "GET",
      limits: routeNamed("limited").limits,
      identity: { issuerId: "access", subject: "bob" },
      tenantOverrides: policy.tenantOverrides,
    });
    if (!planned.ok) throw new Error("plan failed");
    expect(planned.plan.tenantObject).toBe('["caller","access","bob"]');
    expect(planned.plan.limits.map((l) => l.name)).toEqual([
      "user-per-minute",
      "limited-user-per-minute",
      "limited-route-per-minute",
    ]);
  });

  it("refuses to plan identity limits without an identity", () => {
    expect(
      planLimits({ routeName: "limited", method: "GET", limits: routeNamed("limited").limits, tenantOverrides: {} }),
    ).toEqual({ ok: false, detail: "limit_needs_identity" });
  });

  it("keeps ip counters with the route ceiling, or per route and address without one, whatever the method", () => {
    const ip = { name: "per-ip", key: "ip", limit: 5, window_s: 60 } as const;
    const ceiling = { name: "ceiling", key: "route", limit: 50, window_s: 60 } as const;
    const both = planLimits({
      routeName: "login",
      method: "POST",
      limits: [ip, ceiling],
      clientAddress: "2001:db8:0:1:aaaa::1",
      tenantOverrides: {},
    });
    if (!both.ok) throw new Error("plan failed");
    expect(both.plan.tenantObject).toBeUndefined();
    expect(both.plan.routeObject).toBe('["route","login"]');
    expect(both.plan.limits.map((l) => l.counterId)).toEqual([
      '["ip","per-ip",5,60,"2001:db8:0:1::/64"]',
      '["route","ceiling",50,60,"POST"]',
    ]);
    // Another method: the same object and ip counter (one budget per route), its own ceiling.
    const put = planLimits({
      routeName: "login",
      method: "PUT",
      limits: [ip, ceiling],
      clientAddress: "2001:db8:0:1:bbbb::2",
      tenantOverrides: {},
    });
    if (!put.ok) throw new Error("plan failed");
    expect(put.plan.routeObject).toBe(both.plan.routeObject);
    expect(put.plan.limits.map((l) => l.counterId)).toEqual([
      '["ip","per-ip",5,60,"2001:db8:0:1::/64"]',
      '["route","ceiling",50,60,"PUT"]',
    ]);
    const alone = planLimits({
      routeName: "login",
      method: "POST",
      limits: [ip],
      clientAddress: "203.0.113.9",
      tenantOverrides: {},
    });
    if (!alone.ok) throw new Error("plan failed");
    expect(alone.plan.routeObject).toBe('["route","login","203.0.113.9"]');
    const get = planLimits({
      routeName: "login",
      method: "GET",
      limits: [ip],
      clientAddress: "203.0.113.9",
      tenantOverrides: {},
    });
    expect(get.ok && get.plan).toMatchObject({ routeObject: alone.plan.routeObject, limits: alone.plan.limits });
  });
});

describe("planLimits: where each limit is counted", () => {
  const alice = { issuerId: "demo", subject: "alice", tenant: "acme" };
  const defaultUser = { name: "user-per-minute", key: "user", limit: 600, window_s: 60 } as const;
  const plan = (limits: LimitSpec[], tenantOverrides: PlanInput["tenantOverrides"] = {}, tenant = "acme") => {
    const planned = planLimits({
      routeName: "r",
      method: "GET",
      limits,
      identity: { ...alice, tenant },
      tenantOverrides,
    });
    if (!planned.ok) throw new Error("plan failed");
    return planned.plan.limits;
  };

  it("a route limit that replaces a default of the same name does not spend the default's budget", () => {
    // The README's scenario: default user-per-minute 600/60 s, one route declares its own 5/60 s.
    const table = new CounterTable();
    const counters = (limits: LimitSpec[]) =>
      plan(limits).map((l) => ({ id: l.counterId, limit: l.limit, windowS: l.windowS }));
    // The route's limits as compiled: its own in place of the default of that name.
    const limitedRoute = counters([{ ...defaultUser, limit: 5 }]);
    const otherRoute = counters([defaultUser]);
    for (let i = 0; i < 5; i++) expect(table.acquire(limitedRoute, T0).allowed).toBe(true);
    const refused = table.acquire(limitedRoute, T0);
    expect(refused).toMatchObject({ allowed: false, counters: [{ allowed: false, remaining: 0 }] });
    // Every other route still admits the user, against an untouched 600.
    const other = table.acquire(otherRoute, T0);
    expect(other).toMatchObject({ allowed: true, counters: [{ allowed: true, remaining: 599 }] });
  });

  it("routes declaring the same limit identically share one counter; a tenant override keeps it", () => {
    const [declared] = plan([defaultUser]);
    const [again] = plan([{ ...defaultUser, on_error: "allow" }]);
    expect(again?.counterId).toBe(declared?.counterId);
    expect(declared?.counterId).toBe('["user","user-per-minute",600,60,"demo","alice"]');
    // The override resizes the counter; it does not move the tenant's users to another one.
    const [resized] = plan([defaultUser], { acme: { "user-per-minute": { limit: 900, window_s: 30 } } });
    expect(resized).toMatchObject({ limit: 900, windowS: 30, counterId: declared?.counterId });
    for (const changed of [{ limit: 601 }, { window_s: 61 }, { key: "tenant" as const }]) {
      expect(plan([{ ...defaultUser, ...changed }])[0]?.counterId).not.toBe(declared?.counterId);
    }
  });

  it("finds overrides by own keys only, whatever the tenant or limit is called", () => {
    const named = { name: "toString", key: "user", limit: 5, window_s: 60 } as const;
    // Names of Object.prototype properties must not reach the prototype and come back as a size.
    for (const tenant of ["__proto__", "constructor", "hasOwnProperty"]) {
      expect(plan([named], {}, tenant)[0]).toMatchObject({ limit: 5, windowS: 60 });
      expect(plan([named], { acme: {} }, tenant)[0]).toMatchObject({ limit: 5, windowS: 60 });
    }
    expect(plan([named], { acme: { toString: { limit: 9 } } })[0]).toMatchObject({ limit: 9, windowS: 60 });
  });
});

describe("clientAddressKey", () => {
  it.each([
    ["203.0.113.7", "203.0.113.7"],
    [" 10.0.0.1 ", "10.0.0.1"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0DB8:0000:0000:ffff:1:2:3", "2001:db8:0:0::/64"],
    ["::ffff:198.51.100.4", "198.51.100.4"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "invalid"],
    ["1.2.3.256", "invalid"],
    ["1:2:3:4:5:6:7:8:9", "invalid"],
    ["1::2::3", "invalid"],
    ["not an address", "invalid"],
    ["2001:DB8:0:0:1::1", "2001:db8:0:0::/64"],
    ["2001:db8::", "2001:db8:0:0::/64"],
    ["::ffff:c633:6404", "198.51.100.4"],
    ["1.2.3.4/x", "invalid"],
    ["a@1.2.3.4", "invalid"],
    ["[::1]", "invalid"],
    ["bad.cafe", "invalid"],
    ["1.2.3.4:80", "invalid"],
    ["...", "invalid"],
    ["....", "invalid"],
    ["", "unknown"],
    [undefined, "unknown"],
  ])("%s → %s", (raw, key) => {
    expect(clientAddressKey(raw)).toBe(key);
  });
  it.each([
    ["2a06:98c0:3600::103", "Api.Example.com", "worker:api.example.com"],
    ["2a06:98c0:3600:0::103", "api.example.com", "worker:api.example.com"],
    ["2a06:98c0:3600::103", undefined, "2a06:98c0:3600:0::/64"],
    ["2a06:98c0:3600::104", "api.example.com", "2a06:98c0:3600:0::/64"],
    ["203.0.113.7", "api.example.com", "203.0.113.7"],
  ])("%s with CF-Worker %s → %s", (raw, zone, key) => {
    expect(clientAddressKey(raw, zone)).toBe(key);
  });
});

describe("combineAnswers", () => {
  const plan: LimitPlan = {
    tenantObject: "t",
    routeObject: "r",
    limits: [
      { name: "tenant", key: "tenant", limit: 100, windowS: 60, onError: "deny", object: "tenant", counterId: "a" },
      { name: "user", key: "user", limit: 10, windowS: 60, onError: "allow", object: "tenant", counterId: "b" },
      { name: "route", key: "route", limit: 50, windowS: 60, onError: "allow", object: "route", counterId: "c" },
    ],
  };
  const ok = (...counters: [boolean, number, number, number][]): ObjectAnswer => ({
    ok: true,
    result: {
      allowed: counters.every((c) => c[0]),
      counters: counters.map(([allowed, remaining, resetMs, retryAfterMs]) => ({
        allowed,
        remaining,
        resetMs,
        retryAfterMs,
      })),
    } satisfies AcquireResult,
  });
  const answers = (entries: [LimiterKind, ObjectAnswer][]) => new Map(entries);

  it("admits with statuses most restrictive first", () => {
    const verdict = combineAnswers(
      plan,
      answers([
        ["tenant", ok([true, 90, 6000, 0], [true, 9, 6000, 0])],
        ["route", ok([true, 9, 9000, 0])],
      ]),
    );
    expect(verdict.decision).toBe("allow");
    expect(verdict.statuses.map((s) => s.name)).toEqual(["route", "user", "tenant"]);
  });

  it("names the refusing limit that frees up last", () => {
    const verdict = combineAnswers(
      plan,
      answers([
        ["tenant", ok([false, 0, 60_000, 600], [false, 0, 60_000, 6000])],
        ["route", { ok: false, error: "timeout" }],
      ]),
    );
    expect(verdict).toMatchObject({ decision: "rate_limited", hit: { name: "user", retryAfterMs: 6000 } });
    expect(verdict.failedOpen).toEqual(["route"]);
  });

  it("reports an admitting object's counters as they stand once its reservation is given back", () => {
    // The route refuses, so the tenant object's charge is released: its counters report
    // one more remaining and one emission interval (60 s / limit) less to reset.
    const limited = combineAnswers(
      plan,
      answers([
        ["tenant", ok([true, 90, 6000, 0], [true, 9, 6000, 0])],
        ["route", ok([false, 0, 60_000, 1200])],
      ]),
    );
    expect(limited.decision).toBe("rate_limited");
    expect(limited.statuses.map((s) => [s.name, s.allowed, s.remaining, s.resetMs])).toEqual([
      ["route", false, 0, 60_000],
      ["user", true, 10, 0],
      ["tenant", true, 91, 5400],
    ]);
    // The same when a fail-closed object turns the request into a 503.
    const unavailable = combineAnswers(
      plan,
      answers([
        ["tenant", { ok: false, error: "timeout" }],
        ["route", ok([true, 40, 12_000, 0])],
      ]),
    );
    expect(unavailable.decision).toBe("unavailable");
    expect(unavailable.statuses).toMatchObject([{ name: "route", remaining: 41, resetMs: 10_800 }]);
    // An admitted request keeps its charge, and says so.
    const routeOnly: LimitPlan = { routeObject: "r", limits: plan.limits.filter((l) => l.object === "route") };
    const admitted = combineAnswers(routeOnly, answers([["route", ok([true, 40, 12_000, 0])]]));
    expect(admitted.decision).toBe("allow");
    expect(admitted.statuses).toMatchObject([{ name: "route", remaining: 40, resetMs: 12_000 }]);
  });

  it("fails closed when an unreachable object holds a deny limit, open when all say allow", () => {
    const closed = combineAnswers(
      plan,
      answers([
        ["tenant", { ok: false, error: "error" }],
        ["route", ok([true, 40, 1000, 0])],
      ]),
    );
    expect(closed).toMatchObject({ decision: "unavailable", error: "error", limit: { name: "tenant" } });
    const open = combineAnswers(
      plan,
      answers([
        ["tenant", ok([true, 1, 1000, 0], [true, 1, 1000, 0])],
        ["route", { ok: false, error: "timeout" }],
      ]),
    );
    expect(open).toMatchObject({ decision: "allow", failedOpen: ["route"] });
  });
});

describe("rate-limit response fields", () => {
  it("formats the IETF fields for every limit and the X- fields for the most restrictive", () => {
    const headers = rateLimitHeaders([
      {
        name: "user",
        key: "user",
        limit: 5,
        windowS: 60,
        allowed: true,
        remaining: 2,
        resetMs: 36_000.5,
        retryAfterMs: 0,
      },
      {
        name: "tenant",
        key: "tenant",
        limit: 1000,
        windowS: 3600,
        allowed: true,
        remaining: 990,
        resetMs: 36_000,
        retryAfterMs: 0,
      },
    ]);
    expect(headers).toEqual({
      "ratelimit-policy": '"user";q=5;w=60, "tenant";q=1000;w=3600',
      ratelimit: '"user";r=2;t=37, "tenant";r=990;t=36',
      "x-ratelimit-limit": "5",
      "x-ratelimit-remaining": "2",
      "x-ratelimit-reset": "37",
    });
    expect(rateLimitHeaders([])).toEqual({});
  });

  it("writes names as valid structured-field strings", () => {
    expect(sfString('a "b" \\ c\u00e9\n')).toBe('"a \\"b\\" \\\\ c"');
  });
});
