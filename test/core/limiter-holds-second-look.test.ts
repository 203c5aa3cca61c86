// Second regression review of limiter holds (b28eb1b, cdc83fc): seeded fuzzes of CounterTable
// against a GCRA replay over the requests kept (several counters, duplicates in one call,
// tenant overrides, costs 0…3, flush sweeps and saves, clock steps, refunds, evictions), and
// targeted tests for what the fuzzes and the code reading turned up.
import { describe, expect, it } from "vitest";
import { type AcquireResult, type CounterRequest, CounterTable, HOLD_MS, type Tat } from "../../src/core/limits";

const T0 = 1_800_000_000_000;

function rng(seed: number) {
  return () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed / 2_147_483_648;
  };
}

/** Where a counter stands (ms since epoch, pending charges included), read without side effects. */
function standing(table: CounterTable, id: string, now: number): number {
  // A 31-day window never triggers decide's clamp; den 1e9 rescales within a picosecond.
  const r = table.decide([{ id, limit: 1_000_000_000, windowS: 86400 * 31, cost: 0 }], now).result.counters[0]!;
  return now + r.resetMs;
}

interface Kept {
  at: number;
  items: CounterRequest[];
  kept: boolean;
  result: AcquireResult;
  hold: boolean;
  until: number;
}
type Event = { kind: "charge"; req: Kept } | { kind: "clamp"; id: string; bound: number };

/** GCRA replayed over the requests kept, in the order they were admitted (clamps: lower bounds). */
function replay(events: Event[], id: string): number {
  let tat = Number.NEGATIVE_INFINITY;
  for (const e of events) {
    if (e.kind === "clamp") {
      if (e.id === id) tat = Math.min(tat, e.bound);
      continue;
    }
    if (!e.req.kept) continue;
    for (const item of e.req.items) {
      const cost = item.cost ?? 1;
      if (item.id !== id || cost === 0) continue;
      tat = Math.max(tat, e.req.at) + (cost * item.windowS * 1000) / item.limit;
    }
  }
  return tat;
}

const SHARED = '["tenant","t"]';

describe("holds, second look: GCRA replay fuzz", () => {
  it("clean runs (monotone clock): the table is exactly GCRA over the requests kept, and storage mirrors it", () => {
    // Several counters, duplicates in a call, costs 0…3, per-call limit overrides (same window),
    // holds and direct charges (queued behind holds), exact give-backs (before settling: after,
    // nothing comes back and the model keeps the charge), flushes (settle, sweep, save) at times
    // of their own. Lower AND upper bound: over-admission and lasting under-admission both fail.
    const random = rng(20261129);
    const failures: string[] = [];
    for (let run = 0; run < 250 && failures.length < 5; run++) {
      const overrides = random() < 0.5;
      const windowS = 1 + Math.floor(random() * 6);
      const windowMs = windowS * 1000;
      const divisors = Array.from({ length: 40 }, (_, i) => i + 1).filter((d) => windowMs % d === 0);
      const ids = ["a", "b", SHARED];
      const base = new Map(ids.map((id) => [id, 1 + Math.floor(random() * 12)]));
      const limitOf = (id: string) =>
        overrides ? divisors[Math.floor(random() * divisors.length)]! : base.get(id)!;
      const table = new CounterTable();
      const events: Event[] = [];
      const reqs: Kept[] = [];
      const storage = new Map<string, Tat>();
      let lastSettle = Number.NEGATIVE_INFINITY;
      let now = T0;
      for (let step = 0; step < 120 && failures.length < 5; step++) {
        now += Math.floor(random() * random() * 2500);
        const roll = random();
        if (roll < 0.2) {
          table.settleHolds(now);
          lastSettle = now;
          table.sweep(now);
          const changes = table.pendingChanges(now);
          for (const [id, tat] of changes.upserts) storage.set(id, tat);
          for (const id of changes.deletes) storage.delete(id);
          for (const [id, tat] of storage) if (tat.ms < now) storage.delete(id);
          table.markSaved(changes);
          for (const id of ids) {
            const t = table.get(id);
            const live = t && (t.ms > now || (t.ms === now && t.frac > 0)) ? t : undefined;
            const row = storage.get(id);
            if (live && JSON.stringify(row) !== JSON.stringify(live))
              failures.push(`run ${run} step ${step}: storage ${JSON.stringify(row)} ≠ table ${JSON.stringify(live)}`);
          }
        } else if (roll < 0.45) {
          const open = reqs.filter((r) => r.kept && r.hold);
          if (open.length > 0) {
            const r = open[Math.floor(random() * open.length)]!;
            table.release(r.items, r.result.at, r.result.epoch, now, r.result.seq);
            // Given back exactly, unless a settle at or after its due time charged it for good.
            if (lastSettle < r.until) r.kept = false;
          }
        } else {
          const n = 1 + Math.floor(random() * 3);
          const items: CounterRequest[] = [];
          for (let i = 0; i < n; i++) {
            const id = random() < 0.3 && items.length > 0 ? items[0]!.id : ids[Math.floor(random() * ids.length)]!;
            const c = random();
            items.push({ id, limit: limitOf(id), windowS, cost: c < 0.1 ? 0 : c < 0.8 ? 1 : c < 0.9 ? 2 : 3 });
          }
          const hold = random() < 0.6;
          const result = table.acquire(items, now, hold);
          lastSettle = now;
          if (result.allowed) {
            const r: Kept = { at: now, items, kept: true, result, hold, until: now + HOLD_MS };
            reqs.push(r);
            events.push({ kind: "charge", req: r });
          }
        }
        for (const id of ids) {
          const want = replay(events, id);
          if (want <= now) continue;
          const got = standing(table, id, now);
          if (got < want - 0.01 || got > want + 0.01)
            failures.push(`run ${run} step ${step} ${id}: table at +${got - T0}, GCRA at +${want - T0}`);
        }
      }
      // Nothing left behind: once everything is due and settled, a charge is made at once.
      const later = now + 100 * 86_400_000;
      table.settleHolds(later);
      for (const id of ids) {
        table.acquire([{ id, limit: 1, windowS: 1 }], later);
        if (table.get(id)?.ms !== later + 1000) failures.push(`run ${run} ${id}: a charge still queues after all settled`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("dirty runs (clock steps, window overrides, refunds, late and repeated releases): never below GCRA", () => {
    // Lower bound only: GCRA over the requests kept, with each decision's clamp (a counter more
    // than a window ahead is merely full) applied as a lower bound. Every release is assumed to
    // give back in full (the weakest model), so the table must stay at or above it.
    const random = rng(4242);
    const failures: string[] = [];
    for (let run = 0; run < 250 && failures.length < 5; run++) {
      const ids = ["a", "b", SHARED];
      const table = new CounterTable();
      const events: Event[] = [];
      const reqs: Kept[] = [];
      let now = T0;
      for (let step = 0; step < 120 && failures.length < 5; step++) {
        const r0 = random();
        now += r0 < 0.08 ? -Math.floor(random() * 6000) : Math.floor(random() * random() * 2500);
        const roll = random();
        if (roll < 0.15) {
          table.settleHolds(now);
          table.sweep(now);
          table.markSaved(table.pendingChanges(now));
        } else if (roll < 0.4) {
          const open = reqs.filter((r) => random() < 0.3 || r.kept);
          if (open.length > 0) {
            const r = open[Math.floor(random() * open.length)]!;
            table.release(r.items, r.result.at, r.result.epoch, now, r.result.seq);
            r.kept = false;
          }
        } else {
          const n = 1 + Math.floor(random() * 3);
          const items: CounterRequest[] = [];
          for (let i = 0; i < n; i++) {
            const id = random() < 0.3 && items.length > 0 ? items[0]!.id : ids[Math.floor(random() * ids.length)]!;
            const c = random();
            items.push({
              id,
              limit: 1 + Math.floor(random() * 10),
              windowS: 1 + Math.floor(random() * 5),
              cost: c < 0.1 ? 0 : c < 0.8 ? 1 : c < 0.9 ? 2 : 3,
            });
          }
          for (const id of new Set(items.map((i) => i.id))) {
            const w = Math.min(...items.filter((i) => i.id === id).map((i) => i.windowS));
            events.push({ kind: "clamp", id, bound: now + w * 1000 });
          }
          const hold = random() < 0.6;
          const result = table.acquire(items, now, hold);
          if (result.allowed) {
            const r: Kept = { at: now, items, kept: true, result, hold, until: now + HOLD_MS };
            reqs.push(r);
            events.push({ kind: "charge", req: r });
          }
        }
        for (const id of ids) {
          const want = replay(events, id);
          if (want <= now) continue;
          const got = standing(table, id, now);
          if (got < want - 0.01) failures.push(`run ${run} step ${step} ${id}: table at +${got - T0}, GCRA at +${want - T0}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it("with a small maxEntries, evictions while holds are pending neither throw nor leave a charge queued for good", () => {
    const random = rng(777);
    const failures: string[] = [];
    for (let run = 0; run < 150 && failures.length < 5; run++) {
      const table = new CounterTable(4 + Math.floor(random() * 8));
      const ids = [SHARED, ...Array.from({ length: 14 }, (_, i) => `["user","u${i}"]`)];
      const reqs: { items: CounterRequest[]; result: AcquireResult }[] = [];
      let now = T0;
      try {
        for (let step = 0; step < 200; step++) {
          now += Math.floor(random() * random() * 1500);
          const roll = random();
          if (roll < 0.15) {
            table.settleHolds(now);
            table.sweep(now);
            table.markSaved(table.pendingChanges(now));
          } else if (roll < 0.35 && reqs.length > 0) {
            const r = reqs[Math.floor(random() * reqs.length)]!;
            table.release(r.items, r.result.at, r.result.epoch, now, r.result.seq);
          } else {
            const user = ids[1 + Math.floor(random() * 14)]!;
            const items: CounterRequest[] = [
              { id: SHARED, limit: 50, windowS: 60 },
              { id: user, limit: 3, windowS: 30 + Math.floor(random() * 600) },
            ];
            const result = table.acquire(random() < 0.3 ? [items[1]!] : items, now, random() < 0.6);
            if (result.allowed) reqs.push({ items, result });
          }
        }
        const later = now + 100 * 86_400_000;
        table.settleHolds(later);
        for (const id of ids) {
          table.acquire([{ id, limit: 1, windowS: 1 }], later);
          if (table.get(id)?.ms !== later + 1000) failures.push(`run ${run} ${id}: a charge still queues after all settled`);
        }
      } catch (error) {
        failures.push(`run ${run}: threw ${String(error)}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe("holds, second look: eviction", () => {
  it("a shared counter (tenant total) is forgotten after per-user counters with pending holds, not before them", () => {
    // README: "Counters every caller shares (a route ceiling, a tenant's total) are forgotten
    // last of all". #earliestToExpire ranks shared counters AND counters with pending charges
    // both +Infinity, so when nearly every counter has pending holds the tie is broken by Map
    // order, and the tenant total (usually the oldest entry) is evicted first.
    const table = new CounterTable(4); // eviction batch 1
    const tenant: CounterRequest = { id: SHARED, limit: 2, windowS: 60 };
    expect(table.acquire([tenant], T0).allowed).toBe(true);
    expect(table.acquire([tenant], T0).allowed).toBe(true); // tenant total now full for 60 s
    for (let i = 0; i < 4; i++) {
      const user: CounterRequest = { id: `["user","u${i}"]`, limit: 10, windowS: 600 };
      table.acquire([user], T0, true);
      table.acquire([user], T0 + 1000, true); // a second hold keeps the counter pending after the first settles
    }
    table.settleHolds(T0 + HOLD_MS); // the first holds settle: 5 counters > 4, eviction
    expect(table.acquire([tenant], T0 + HOLD_MS).allowed).toBe(false);
  });
});

describe("holds, second look: one-object charges queued behind holds", () => {
  it("a one-object charge queued behind a hold is still given back when its call timed out and the request was refused", () => {
    // README: a request counted by one object only "is charged at once, and given back, when
    // its call timed out and its answer arrives late, by its cost less the time since it was
    // made". On a counter that has a hold pending (a two-object route's request on the same
    // user or tenant counter) the charge is queued instead, acquire returns no seq, and the
    // release (refund path) skips every counter with pending charges: nothing comes back, the
    // refused request keeps a whole slot (T = 30 s here) — and it stays lost after settling.
    const c: CounterRequest = { id: "c", limit: 2, windowS: 60 };
    const table = new CounterTable();
    table.acquire([c], T0, true); // a two-object route's request, forwarded (hold kept)
    const late = table.acquire([c], T0 + 10); // one-object route: queued behind the hold
    expect(late.allowed).toBe(true);
    table.release([c], late.at, late.epoch, T0 + 60, late.seq); // its call had timed out: refused
    // GCRA over the one request kept: one slot is free again.
    expect(table.acquire([c], T0 + 70).allowed).toBe(true);
  });
});

describe("holds, second look: CPU", () => {
  it("giving back holds on a busy counter costs time linear in the holds, not quadratic", () => {
    // A tenant total at 1,000 req/s (the object's soft limit) has ~2,000 holds within HOLD_MS.
    // Each release recomputes `after` for every later entry (and filters the whole queue), so
    // giving them back oldest first is ~n²/2 `charged` calls: 4,000 holds → 8 M.
    const c: CounterRequest = { id: "c", limit: 1_000_000, windowS: 60 };
    const table = new CounterTable();
    const n = 4000;
    const held: AcquireResult[] = [];
    for (let i = 0; i < n; i++) held.push(table.acquire([c], T0 + Math.floor(i / 4), true));
    const started = performance.now();
    for (const r of held) table.release([c], r.at, r.epoch, T0 + 1000, r.seq);
    const elapsed = performance.now() - started;
    // Linear work for 4,000 releases is well under 50 ms even on a shared 2-core machine.
    expect(elapsed).toBeLessThan(50);
  });
});
