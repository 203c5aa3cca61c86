// Limiter holds in every interleaving: seeded runs of CounterTable against a GCRA replay over
// the requests kept (several counters, duplicates in one call, tenant overrides, costs 0…3,
// flush sweeps and saves, clock steps, evictions), and the cases around the clamp and eviction.
import { describe, expect, it } from "vitest";
import { CounterTable } from "../../src/core/limits/counter-table";
import { type AcquireResult, type CounterRequest, HOLD_MS } from "../../src/core/limits/limiter-rpc";
import type { Tat } from "../../src/core/limits/gcra";

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
type Event =
  | { kind: "charge"; req: Kept }
  | { kind: "clamp"; id: string; bound: number }
  | { kind: "sweep"; now: number };

/** GCRA replayed over the requests kept, in the order they were admitted (clamps: lower bounds). */
function replay(events: Event[], id: string): number {
  let tat = Number.NEGATIVE_INFINITY;
  for (const e of events) {
    if (e.kind === "clamp") {
      if (e.id === id) tat = Math.min(tat, e.bound);
      continue;
    }
    // A sweep at a time the clock later steps back from forgets what had expired by then.
    if (e.kind === "sweep") {
      if (tat <= e.now) tat = Number.NEGATIVE_INFINITY;
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

/**
 * One call's items: 1…3 of them, each for a counter of `ids` (3 in 10 after the first: the first's
 * again, a duplicate in one call) at a cost of 0…3, sized by `item`. The draws from `random` come
 * in a fixed order (count; then per item: duplicate?, the id unless a duplicate, cost, then what
 * `item` draws).
 */
function callItems(
  random: () => number,
  ids: string[],
  item: (id: string, cost: number) => CounterRequest,
): CounterRequest[] {
  const n = 1 + Math.floor(random() * 3);
  const items: CounterRequest[] = [];
  for (let i = 0; i < n; i++) {
    const id = random() < 0.3 && items.length > 0 ? items[0]!.id : ids[Math.floor(random() * ids.length)]!;
    const c = random();
    items.push(item(id, c < 0.1 ? 0 : c < 0.8 ? 1 : c < 0.9 ? 2 : 3));
  }
  return items;
}

/**
 * Acquires `items` at `now`, as a hold (HOLD_MS) or a direct charge; a request admitted is noted
 * in `reqs` as kept and in `events` as charged.
 */
function acquireNoted(
  table: CounterTable,
  items: CounterRequest[],
  now: number,
  hold: boolean,
  reqs: Kept[],
  events: Event[],
) {
  const result = table.acquire(items, now, hold ? HOLD_MS : 0);
  if (result.allowed) {
    const r: Kept = { at: now, items, kept: true, result, hold, until: now + HOLD_MS };
    reqs.push(r);
    events.push({ kind: "charge", req: r });
  }
}

/** Each counter where GCRA's replay has it standing ahead of `now`: the table's standing (`got`) and the replay's (`want`). */
function beside(table: CounterTable, events: Event[], ids: string[], now: number) {
  return ids
    .map((id) => ({ id, want: replay(events, id) }))
    .filter(({ want }) => want > now)
    .map(({ id, want }) => ({ id, want, got: standing(table, id, now) }));
}

/**
 * The counters that, once everything is due and settled (100 days after `now`), still queue a
 * charge rather than making it at once: something was left behind.
 */
function stillQueuingWhenAllSettled(table: CounterTable, ids: string[], now: number): string[] {
  const later = now + 100 * 86_400_000;
  table.settleHolds(later);
  return ids.filter((id) => {
    table.acquire([{ id, limit: 1, windowS: 1 }], later);
    return table.get(id)?.ms !== later + 1000;
  });
}

const SHARED = '["tenant","t"]';

describe("holds: GCRA replay fuzz", () => {
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
      const limitOf = (id: string) => (overrides ? divisors[Math.floor(random() * divisors.length)]! : base.get(id)!);
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
            // Given back exactly, unless a settle at or after its due time charged it for good
            // (release settles what is due first, since 8b0b405).
            lastSettle = now;
            if (lastSettle < r.until) r.kept = false;
          }
        } else {
          const items = callItems(random, ids, (id, cost) => ({ id, limit: limitOf(id), windowS, cost }));
          acquireNoted(table, items, now, random() < 0.6, reqs, events);
          lastSettle = now;
        }
        for (const { id, got, want } of beside(table, events, ids, now))
          if (got < want - 0.01 || got > want + 0.01)
            failures.push(`run ${run} step ${step} ${id}: table at +${got - T0}, GCRA at +${want - T0}`);
      }
      // Nothing left behind: once everything is due and settled, a charge is made at once.
      for (const id of stillQueuingWhenAllSettled(table, ids, now))
        failures.push(`run ${run} ${id}: a charge still queues after all settled`);
    }
    expect(failures).toEqual([]);
  });

  it("dirty runs (clock steps, window overrides, late and repeated releases of holds): never below GCRA", () => {
    // Lower bound only: GCRA over the requests kept, with each decision's clamp (a counter more
    // than a window ahead is merely full) and each sweep (forgetting what has expired by a time
    // the clock later steps back from) applied as lower bounds. Every release is assumed to
    // give back in full (the weakest model), so the table must stay at or above it. Direct
    // charges are not given back here: a refund after a clamp is a defect of its own (below).
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
          events.push({ kind: "sweep", now });
          table.markSaved(table.pendingChanges(now));
        } else if (roll < 0.4) {
          // Holds, given back once or twice, late or from before a clock step.
          const open = reqs.filter((r) => r.hold && (r.kept || random() < 0.3));
          if (open.length > 0) {
            const r = open[Math.floor(random() * open.length)]!;
            table.release(r.items, r.result.at, r.result.epoch, now, r.result.seq);
            // (A release of an all-cost-0 call has no seq, and its refund path forgets a counter
            // expired at `now`: a sweep, for the model.)
            events.push({ kind: "sweep", now });
            r.kept = false;
          }
        } else {
          const items = callItems(random, ids, (id, cost) => ({
            id,
            limit: 1 + Math.floor(random() * 10),
            windowS: 1 + Math.floor(random() * 5),
            cost,
          }));
          for (const id of new Set(items.map((i) => i.id))) {
            const w = Math.min(...items.filter((i) => i.id === id).map((i) => i.windowS));
            events.push({ kind: "clamp", id, bound: now + w * 1000 });
          }
          acquireNoted(table, items, now, random() < 0.6, reqs, events);
        }
        for (const { id, got, want } of beside(table, events, ids, now))
          if (got < want - 0.01)
            failures.push(`run ${run} step ${step} ${id}: table at +${got - T0}, GCRA at +${want - T0}`);
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
            const result = table.acquire(random() < 0.3 ? [items[1]!] : items, now, random() < 0.6 ? HOLD_MS : 0);
            if (result.allowed) reqs.push({ items, result });
          }
        }
        for (const id of stillQueuingWhenAllSettled(table, ids, now))
          failures.push(`run ${run} ${id}: a charge still queues after all settled`);
      } catch (error) {
        failures.push(`run ${run}: threw ${String(error)}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe("holds: eviction", () => {
  it("a shared counter (tenant total) is forgotten after per-user counters with pending holds, not before them", () => {
    // Counters every caller shares (a route ceiling, a tenant's total) are forgotten last of
    // all, after those with pending charges too, even when nearly every counter has some.
    const table = new CounterTable(4); // eviction batch 1
    const tenant: CounterRequest = { id: SHARED, limit: 2, windowS: 60 };
    expect(table.acquire([tenant], T0).allowed).toBe(true);
    expect(table.acquire([tenant], T0).allowed).toBe(true); // tenant total now full for 60 s
    const users = [0, 1, 2, 3].map((i): CounterRequest => ({ id: `["user","u${i}"]`, limit: 10, windowS: 600 }));
    for (const user of users) table.acquire([user], T0, HOLD_MS);
    // A second hold on each keeps the counter pending after the first settles.
    for (const user of users) table.acquire([user], T0 + 1000, HOLD_MS);
    table.settleHolds(T0 + HOLD_MS); // the first holds settle: 5 counters > 4, eviction
    expect(table.acquire([tenant], T0 + HOLD_MS).allowed).toBe(false);
  });
});

describe("holds: the clamp (clock stepped back, window shortened)", () => {
  it("Retry-After with a hold pending after an override shortened the window is at most the window in force", () => {
    // A counter further ahead than its (new) window counts as full, no more, so no one is
    // refused for longer than the window in force: with a hold made just before an upgrade from
    // 2 a day to 1,000 a minute too (the hold stands for half a day of the old size).
    const before: CounterRequest = { id: "c", limit: 2, windowS: 86_400 };
    const after: CounterRequest = { id: "c", limit: 1000, windowS: 60 };
    const table = new CounterTable();
    expect(table.acquire([before], T0, HOLD_MS).allowed).toBe(true); // two-object route, forwarded
    const next = table.acquire([after], T0 + 100);
    const retryAfterMs = next.allowed ? 0 : next.counters[0]!.retryAfterMs;
    expect(retryAfterMs).toBeLessThanOrEqual(60_000);
  });

  it("a late give-back of a direct charge after the clamp does not take a slot from a counter that is still full", () => {
    // 2 per 10 s (T = 5 s). The clock ran 20 s ahead: A and B charged at +20 s stand at +30 s.
    // Stepped back to T0, the next decision clamps the counter to T0 + 10 s (full, no more).
    // Clamped, it no longer tells which charges it held: B's late give-back (its request
    // refused) must not take a slot from it, since A alone still stands more than a window
    // ahead. (Also without a clock step: an override that shortens the window clamps, and a
    // release sent under the old size lands after it.)
    const c: CounterRequest = { id: "c", limit: 2, windowS: 10 };
    const table = new CounterTable();
    expect(table.acquire([c], T0 + 20_000).allowed).toBe(true); // A
    const b = table.acquire([c], T0 + 20_000); // B
    expect(b.allowed).toBe(true);
    expect(table.acquire([c], T0).allowed).toBe(false); // clock stepped back: clamped, full
    table.release([c], b.at, b.epoch, T0 + 10);
    expect(table.acquire([c], T0 + 4_000).allowed).toBe(false);
  });
});
