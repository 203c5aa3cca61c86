// Holds (a request two limiter objects must both admit, counted but not yet charged for good):
// never more admitted than GCRA over the requests kept, whatever runs in between (flushes,
// sweeps, releases twice or from another instance, clock steps); holds drain as the charges
// they stand for; bounds and alarms hold.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FLUSH_INTERVAL_MS, type LimiterObject } from "../../durable-objects/limiter-object";
import type { TenantLimiter } from "../../durable-objects/tenant-limiter";
import { CounterTable } from "../../src/core/limits/counter-table";
import {
  type AcquireResult,
  type CounterRequest,
  checkHold,
  HOLD_MS,
  holdMsFor,
} from "../../src/core/limits/limiter-rpc";

const T0 = 1_800_000_000_000;

afterEach(() => {
  vi.useRealTimers();
});

/** How many of `n` requests (cost 1, not held) the table admits at `now`. */
function admitted(table: CounterTable, counter: CounterRequest, now: number, n: number): number {
  let count = 0;
  for (let i = 0; i < n; i++) if (table.acquire([counter], now).allowed) count++;
  return count;
}

describe("holds: never more admitted than the limit", () => {
  it("a flush's sweep between a hold and its settling does not let the hold be charged below the requests after it", () => {
    // 4 per 6 s (T = 1.5 s). Hold A and charge B at T0: GCRA puts the counter at T0 + 3 s. A
    // flush an earlier change set for T0 + 1.6 s (A not yet due) must not sweep away what A
    // and B are charged on top of: at T0 + 2 s GCRA admits 3, no more.
    const c: CounterRequest = { id: "c", limit: 4, windowS: 6 };
    const table = new CounterTable();
    expect(table.acquire([c], T0, HOLD_MS).allowed).toBe(true); // A, held (forwarded)
    expect(table.acquire([c], T0).allowed).toBe(true); // B, charged
    table.settleHolds(T0 + 1600); // the flush at T0 + 1.6 s: settle (nothing due) …
    table.sweep(T0 + 1600); // … then sweep, as LimiterObject.#flush does
    expect(admitted(table, c, T0 + HOLD_MS, 6)).toBe(3);
  });

  it("a release from before a restart does not give back a hold of this instance", () => {
    // A late release (up to 30 s after) of a request decided before the restart: its number
    // may even be one this instance gave, but its time and epoch are not the hold's.
    const c: CounterRequest = { id: "c", limit: 1, windowS: 60 };
    const before = new CounterTable();
    const stale = before.acquire([c], T0, HOLD_MS);
    const after = new CounterTable(); // restarted object: new epoch, holds and numbers
    const forwarded = after.acquire([c], T0 + 100, HOLD_MS);
    expect(forwarded.allowed).toBe(true);
    expect(forwarded.seq).not.toBe(stale.seq);
    after.release([c], stale.at, stale.epoch, T0 + 200, stale.seq);
    after.release([c], stale.at, stale.epoch, T0 + 200, forwarded.seq);
    expect(after.acquire([c], T0 + 300).allowed).toBe(false);
  });

  it("a release naming other counters and another `at` than the hold's does not give that hold back", () => {
    // Within one instance: the number alone does not select a hold.
    const a: CounterRequest = { id: "a", limit: 1, windowS: 60 };
    const b: CounterRequest = { id: "b", limit: 1, windowS: 60 };
    const table = new CounterTable();
    const held = table.acquire([a], T0, HOLD_MS);
    table.release([b], T0 + 5, table.epoch, T0 + 10, held.seq);
    expect(table.acquire([a], T0 + 20).allowed).toBe(false);
  });

  it("a hold given back twice is given back once (the second release must not refund a charge never made)", () => {
    // 2 per 10 s (T = 5 s). A held, B charged: full. A given back: D takes its slot. The same
    // release again gives nothing (no refund of a charge never made): E is refused.
    const c: CounterRequest = { id: "c", limit: 2, windowS: 10 };
    const table = new CounterTable();
    const a = table.acquire([c], T0, HOLD_MS);
    expect(table.acquire([c], T0).allowed).toBe(true); // B
    expect(table.acquire([c], T0).allowed).toBe(false);
    table.release([c], a.at, a.epoch, T0 + 1, a.seq);
    expect(table.acquire([c], T0 + 1).allowed).toBe(true); // D
    table.release([c], a.at, a.epoch, T0 + 2, a.seq); // duplicate release
    expect(table.acquire([c], T0 + 2).allowed).toBe(false); // E
  });

  it("with flush sweeps in between, never counts less than GCRA over the requests that stayed admitted", () => {
    // The model of test/core/limits.test.ts, plus what the object's alarm really does between
    // calls: settleHolds(now) then sweep(now), at times of its own.
    let seed = 11;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed / 2_147_483_648;
    };
    const failures: string[] = [];
    for (let run = 0; run < 300 && failures.length === 0; run++) {
      const limit = 1 + Math.floor(random() * 20);
      const windowS = 1 + Math.floor(random() * 6);
      const counter: CounterRequest = { id: "c", limit, windowS };
      const table = new CounterTable();
      const charges: { at: number; kept: boolean; reserved: AcquireResult }[] = [];
      let now = T0;
      for (let step = 0; step < 80; step++) {
        now += Math.floor(random() * random() * 3000);
        if (random() < 0.3) {
          table.settleHolds(now);
          table.sweep(now);
        }
        const open = charges.filter((c) => c.kept);
        if (open.length > 0 && random() < 0.25) {
          const charge = open[Math.floor(random() * open.length)]!;
          charge.kept = false;
          table.release([counter], charge.reserved.at, charge.reserved.epoch, now, charge.reserved.seq);
        } else {
          const reserved = table.acquire([counter], now, random() < 0.6 ? HOLD_MS : 0);
          if (reserved.allowed) charges.push({ at: now, kept: true, reserved });
        }
        let replayed = Number.NEGATIVE_INFINITY;
        for (const c of charges) if (c.kept) replayed = Math.max(replayed, c.at) + (windowS * 1000) / limit;
        const standing = now + table.acquire([{ ...counter, cost: 0 }], now).counters[0]!.resetMs;
        if (replayed > now && standing < replayed - 0.01)
          failures.push(`run ${run} step ${step}: table at ${standing - T0}, GCRA at ${replayed - T0}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe("holds: truthful answers and the declared rate", () => {
  it("Retry-After on a counter with outstanding holds is when the next request is admitted", () => {
    // 2 per 2 s (T = 1 s). Two held requests at T0, both forwarded (never given back). A third
    // is refused with retryAfterMs = 1000: the holds drain as the charges they stand for, so
    // at T0 + 1 s it is admitted.
    const c: CounterRequest = { id: "c", limit: 2, windowS: 2 };
    const table = new CounterTable();
    expect(table.acquire([c], T0, HOLD_MS).allowed).toBe(true);
    expect(table.acquire([c], T0, HOLD_MS).allowed).toBe(true);
    const refused = table.acquire([c], T0);
    expect(refused.allowed).toBe(false);
    const retryAfterMs = refused.counters[0]!.retryAfterMs;
    expect(retryAfterMs).toBe(1000);
    expect(table.acquire([c], T0 + retryAfterMs).allowed).toBe(true);
  });

  it("a steady stream at the declared rate on a two-object route (every request held, forwarded) is all admitted", () => {
    // 10 per 1 s, one request every 100 ms for 10 s: GCRA admits all 100, and so does a
    // counter whose requests are all held (each counted as of its own time, not pinned).
    const c: CounterRequest = { id: "c", limit: 10, windowS: 1 };
    const table = new CounterTable();
    let count = 0;
    for (let i = 0; i < 100; i++) if (table.acquire([c], T0 + i * 100, HOLD_MS).allowed) count++;
    expect(count).toBe(100);
  });
});

describe("holds: bounds and scheduling", () => {
  it("settled holds keep the table within maxEntries", () => {
    // An object whose traffic is all held (the tenant object of a tenant whose routes all have
    // ceilings: its user counters) stays within its bound as holds settle.
    const table = new CounterTable(100);
    for (let i = 0; i < 300; i++) table.acquire([{ id: `["user","u${i}"]`, limit: 5, windowS: 3600 }], T0, HOLD_MS);
    table.acquire([{ id: `["user","late"]`, limit: 5, windowS: 3600 }], T0 + HOLD_MS, HOLD_MS); // settles the 300
    table.settleHolds(T0 + HOLD_MS);
    table.sweep(T0 + HOLD_MS); // and a flush
    expect(table.size).toBeLessThanOrEqual(100);
  });

  it("a hold past its own time gives nothing back, even while a longer one before it is pending", () => {
    // 10 per 100 s: each request stands 10 s on the counter, so none drains during the test.
    const c: CounterRequest = { id: "ceiling", limit: 10, windowS: 100 };
    const inspect = (table: CounterTable, now: number) =>
      table.acquire([{ ...c, cost: 0 }], now).counters[0]!.remaining;
    // Holds of different lengths: a budget of 50 ms, then one asked for as `true` (2 s), as a
    // Worker of an earlier release asks during a rolling deploy.
    const mixed = new CounterTable();
    const longer = mixed.acquire([c], T0, holdMsFor(50));
    const shorter = mixed.acquire([c], T0 + 10, checkHold(true));
    expect(longer.allowed && shorter.allowed).toBe(true);
    const late = T0 + 10 + checkHold(true) + 10;
    expect(inspect(mixed, late)).toBe(8);
    mixed.release([c], shorter.at, shorter.epoch, late, shorter.seq);
    expect(inspect(mixed, late)).toBe(8);
    // The clock stepped back 1 s: the hold decided then ends before the one decided earlier.
    const stepped = new CounterTable();
    const first = stepped.acquire([c], T0, holdMsFor(50));
    const second = stepped.acquire([c], T0 - 1_000, holdMsFor(50));
    expect(first.allowed && second.allowed).toBe(true);
    const after = T0 - 1_000 + holdMsFor(50) + 50;
    stepped.release([c], second.at, second.epoch, after, second.seq);
    expect(inspect(stepped, after)).toBe(8);
  });

  it("a small clock step back leaves a hold its time to be given back", () => {
    const a: CounterRequest = { id: "a", limit: 1, windowS: 60 };
    const b: CounterRequest = { id: "b", limit: 1, windowS: 60 };
    const table = new CounterTable();
    const held = table.acquire([a], T0 + 1000, HOLD_MS);
    expect(held.allowed).toBe(true);
    // Another caller's request, the object's clock 1 ms behind the hold: nothing is due.
    expect(table.acquire([b], T0 + 999).allowed).toBe(true);
    // The other object refused: the hold is given back, and a's slot is free again.
    table.release([a], held.at, held.epoch, T0 + 1001, held.seq);
    expect(table.acquire([a], T0 + 1002).allowed).toBe(true);
  });

  it("a clock step back does not stall the settling of later holds", () => {
    // Holds settle in order; one decided while the clock ran ahead must not hold back the
    // later ones until the clock catches up.
    const x: CounterRequest = { id: "x", limit: 1, windowS: 1 };
    const y: CounterRequest = { id: "y", limit: 1, windowS: 1 };
    const table = new CounterTable();
    expect(table.acquire([x], T0 + 10_000, HOLD_MS).allowed).toBe(true); // clock 10 s ahead
    expect(table.acquire([y], T0, HOLD_MS).allowed).toBe(true); // stepped back; forwarded
    // y's hold is due at T0 + 2 s, charged as of T0, drained by T0 + 1 s.
    expect(table.acquire([y], T0 + 3000).allowed).toBe(true);
  });

  it("the flush alarm does not come back for each hold (no sooner than FLUSH_INTERVAL_MS)", async () => {
    // Under a steady stream of held requests the next hold is due a few ms after each flush:
    // an alarm (and a SQLite transaction) for each would be a write per request. Calls settle
    // what is due before them; the alarm comes back no sooner than a flush interval.
    const stub = (env as unknown as { TENANT_LIMITER: DurableObjectNamespace<TenantLimiter> }).TENANT_LIMITER;
    const object = stub.get(stub.idFromName(crypto.randomUUID()));
    // The object runs in the test's isolate: its clock is the test's to move, so which hold is
    // due at the flush, and when the alarm comes back, are exact.
    const t0 = Date.now();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    expect((await object.acquire([{ id: "a", limit: 100, windowS: 3600 }], true)).allowed).toBe(true);
    vi.setSystemTime(t0 + 100);
    expect((await object.acquire([{ id: "b", limit: 100, windowS: 3600 }], true)).allowed).toBe(true);
    // The flush comes when a is due and b is due 50 ms later.
    const flushedAt = t0 + HOLD_MS + 50;
    vi.setSystemTime(flushedAt);
    expect(await runDurableObjectAlarm(object)).toBe(true);
    const [stored, alarm] = await runInDurableObject(object, async (_i: LimiterObject, state) => [
      state.storage.sql
        .exec<{ id: string }>("SELECT id FROM counters")
        .toArray()
        .map((row) => row.id),
      await state.storage.getAlarm(),
    ]);
    expect(stored).toEqual(["a"]); // a charged for good; b still held
    expect(alarm).toBe(flushedAt + FLUSH_INTERVAL_MS);
  });
});

describe("holds: odd calls and exact answers", () => {
  it("malformed seq values neither throw nor corrupt a counter", () => {
    const c: CounterRequest = { id: "c", limit: 3, windowS: 60 };
    const table = new CounterTable();
    const held = table.acquire([c], T0, HOLD_MS);
    expect(held.seq).toBeTypeOf("number");
    for (const seq of ["1", Number.NaN, {}, null, undefined, -0, 1.5, Number.POSITIVE_INFINITY]) {
      expect(() => table.release([c], Number.NaN, "x", T0 + 1, seq)).not.toThrow();
      expect(() => table.release([c], undefined, undefined, T0 + 1, seq)).not.toThrow();
    }
    const inspected = table.acquire([{ ...c, cost: 0 }], T0 + 2).counters[0]!;
    expect(Number.isFinite(inspected.resetMs)).toBe(true);
    expect(inspected.remaining).toBe(2); // the hold still counts
  });

  it("duplicate items in one held call count twice and are given back exactly", () => {
    const c: CounterRequest = { id: "c", limit: 3, windowS: 60 };
    const table = new CounterTable();
    const r = table.acquire([c, c], T0, HOLD_MS);
    expect(r.allowed).toBe(true);
    expect(table.acquire([c, c], T0).allowed).toBe(false); // 2 held + 2 > 3
    table.release([c, c], r.at, r.epoch, T0 + 1000, r.seq);
    expect(table.acquire([c, c, c], T0 + 1000).allowed).toBe(true);
    const s = new CounterTable();
    s.acquire([c, c], T0, HOLD_MS);
    s.settleHolds(T0 + HOLD_MS);
    expect(admitted(s, c, T0 + HOLD_MS, 3)).toBe(1); // both charged as of T0
  });

  it("a cost-0 item in a held call holds nothing", () => {
    const c: CounterRequest = { id: "c", limit: 1, windowS: 60 };
    const table = new CounterTable();
    table.acquire([{ ...c, cost: 0 }], T0, HOLD_MS);
    expect(table.acquire([c], T0).allowed).toBe(true);
    table.settleHolds(T0 + HOLD_MS);
    expect(table.acquire([c], T0 + HOLD_MS).allowed).toBe(false);
  });

  it("a refused request's status plus one is the counter after its hold is given back (headers stay exact)", () => {
    const c: CounterRequest = { id: "c", limit: 5, windowS: 60 };
    const table = new CounterTable();
    table.acquire([c], T0);
    const r = table.acquire([c], T0, HOLD_MS);
    table.release([c], r.at, r.epoch, T0, r.seq);
    const after = table.acquire([{ ...c, cost: 0 }], T0).counters[0]!;
    expect(after.remaining).toBe(r.counters[0]!.remaining + 1);
    expect(after.resetMs).toBeCloseTo(r.counters[0]!.resetMs - 12_000, 6);
  });

  it("holds made at one size never let a request at another size past the new size (override rescale)", () => {
    // Each hold stands for a charge of its own size: ten of 1 s fill a window of 10 s at
    // either size, as ten stored charges would.
    const table = new CounterTable();
    const small: CounterRequest = { id: "c", limit: 10, windowS: 10 };
    const big: CounterRequest = { id: "c", limit: 20, windowS: 10 };
    for (let i = 0; i < 10; i++) expect(table.acquire([small], T0, HOLD_MS).allowed).toBe(true);
    expect(admitted(table, big, T0, 30)).toBe(0);
    table.settleHolds(T0 + HOLD_MS);
    expect(admitted(table, big, T0 + HOLD_MS, 30)).toBe(4);
  });
});
