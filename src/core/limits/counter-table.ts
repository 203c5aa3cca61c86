// The counters one limiter object keeps, in memory: decided and charged atomically, held for a
// two-object request, given back, bounded, and tracked for the object to persist. Pure: the
// object passes `now`.

import { declaredRateOf, isSharedCounter } from "./counter-ids";
import {
  addCost,
  gcra,
  type GcraResult,
  isLive,
  msFrom,
  type Rate,
  refund,
  refusesNext,
  startingTat,
  type Tat,
} from "./gcra";
import type { AcquireResult, CounterRequest, CounterStatus } from "./limiter-rpc";
import { HOLD_MS } from "./limiter-rpc";

/** Counters held per limiter object; past this live ones are forgotten, those that give back least first. */
export const MAX_COUNTERS = 50_000;

/** A decision not yet applied: what `acquire` would answer and which TATs it would write. */
export interface PendingDecision {
  result: AcquireResult;
  writes: [id: string, tat: Tat, rate: Rate][];
}

/** A request counted but not yet charged for good, and what it may be given back by. */
interface Hold {
  at: number;
  epoch: number;
  until: number;
  /** Only a hold `acquire` was asked for: a charge queued behind holds cannot be given back. */
  cancellable: boolean;
  ids: string[];
}

/** One pending charge on a counter, and the counter as it stands after it. */
interface Pending {
  seq: number;
  at: number;
  cost: number;
  rate: Rate;
  after: Tat;
}

/**
 * A counter stored more than a window ahead (the clock stepped back, or a tenant override
 * shortened the window) as a full one, no more: else it would refuse for longer than the
 * window in force.
 */
function atMostFull(tat: Tat | undefined, now: number, rate: Rate): Tat | undefined {
  return tat && msFrom(now, tat) > rate.windowMs ? { ms: now + rate.windowMs, frac: 0, den: rate.limit } : tat;
}

/** One GCRA charge of `cost` made at `at`: what admitting a request does to a counter. */
function charged(tat: Tat | undefined, at: number, rate: Rate, cost: number): Tat {
  return addCost(startingTat(tat, at, rate.limit), rate, cost);
}

function rateOf(item: CounterRequest): Rate {
  return { limit: item.limit, windowMs: item.windowS * 1000 };
}

/** Counter changes not yet in storage: live counters to store, the rest to delete. */
export interface PendingChanges {
  upserts: [string, Tat][];
  deletes: string[];
}

/**
 * The counters of one limiter object, in memory. `decide` changes nothing a request is
 * charged by (it may cut a counter stored more than a window ahead back to full, and notes
 * sizes for eviction); `commit` applies its charges; `acquire` does both with nothing in
 * between, which is what makes a decision atomic inside a Durable Object (no `await` between
 * reading a TAT and writing it). Memory
 * is bounded: expired counters are dropped by `sweep`, and past `maxEntries` live counters
 * are evicted, those whose forgetting gives their client back the least first (see `#shrink`;
 * forgetting a live counter under-counts it: that is the price of the bound). Changes are tracked so the owner can persist them in batches.
 */
export class CounterTable {
  readonly #tats = new Map<string, Tat>();
  readonly #dirty = new Set<string>();
  /**
   * Requests admitted on hold, by number, oldest first. A request that two objects must both
   * admit is held by each rather than charged: a hold counts against every later request as
   * the charge it stands for would (made when it was decided, and draining from then), but
   * giving it back is exact. A charge given back after the fact can only be refunded by time
   * (see `refund`), and under contention, where the release comes tens of milliseconds later,
   * a refused request would spend a shared counter's slot for good. A hold nobody gives back
   * within its length (`holdMs`: the limiter budget plus HOLD_MS, see `holdMsFor`) is charged
   * for good, as of when it was decided; a charge queued behind holds settles after HOLD_MS.
   */
  readonly #holds = new Map<number, Hold>();
  /**
   * Per counter with holds, its pending charges in order, each with the counter as it stands
   * after it: a charge on such a counter queues behind them, so that they all settle in order.
   */
  readonly #pending = new Map<string, Pending[]>();
  /** When each counter was last cut back to full (see `decide`). */
  readonly #clampedAt = new Map<string, number>();
  /**
   * The latest time any counter forgotten since was cut back to full: a counter made anew under
   * the same id must not take back a charge made before its predecessor's clamp.
   */
  #forgottenClampAt = -Infinity;
  /** The latest decision's time. */
  #latestAt = -Infinity;
  /**
   * Each counter's size in force (a tenant override's), as last decided on, for ranking
   * evictions (see `#shrink`); a counter loaded at start-up has none until it is asked about.
   */
  readonly #rates = new Map<string, Rate>();
  /** Hold numbers start anywhere, so a release meant for an earlier instance matches none here. */
  #seq = Math.floor(Math.random() * 2 ** 40);
  /**
   * How many counters an eviction frees beyond the bound: 1 % of it. Choosing whom to evict
   * costs a pass over the table, so it is paid once per that many new counters, not on each.
   */
  readonly #evictionBatch: number;
  /**
   * Changes when this table may have forgotten live charges (it is new after a restart, or it
   * evicted): a release carrying another epoch gives nothing back, since the charges it
   * would take from may be other requests'.
   */
  epoch = Math.random();

  constructor(readonly maxEntries = MAX_COUNTERS) {
    this.#evictionBatch = Math.max(1, Math.floor(maxEntries / 100));
  }

  get size(): number {
    return this.#tats.size;
  }

  get(id: string): Tat | undefined {
    return this.#tats.get(id);
  }

  /** Put back a persisted counter (at start-up). Not marked dirty. */
  load(id: string, tat: Tat): void {
    // A row storage could only hold if corrupted: a TAT that is not a number would also
    // defeat eviction, which ranks counters by it, and one whose fraction is not a proper one
    // of a whole denominator would make the exact arithmetic throw or lose time.
    if (
      !Number.isSafeInteger(tat.ms) ||
      !Number.isSafeInteger(tat.den) ||
      tat.den < 1 ||
      !Number.isSafeInteger(tat.frac) ||
      tat.frac < 0 ||
      tat.frac >= tat.den
    )
      return;
    this.#tats.set(id, tat);
  }

  /**
   * Check every counter; charge none (one stored more than a window ahead is brought back to
   * full). All-or-nothing: the request is admitted only if all admit it.
   */
  decide(items: readonly CounterRequest[], now: number): PendingDecision {
    const tentative = new Map<string, Tat | undefined>();
    const results: GcraResult[] = [];
    for (const item of items) {
      const rate = rateOf(item);
      // The size in force (a tenant override may change it), refused or not: a client refused
      // since a restart is known by it before any eviction; for counters kept only, so one
      // never charged leaves nothing behind.
      if (this.#tats.has(item.id)) this.#rates.set(item.id, rate);
      let stored = tentative.has(item.id) ? tentative.get(item.id) : this.#standing(item.id);
      if (!tentative.has(item.id)) {
        const full = atMostFull(stored, now, rate);
        // Kept as a full counter. Cut back, it no longer tells which charges it held: a release
        // of one decided before then gives nothing back on it. With pending charges, decided on
        // as full (they are charged as the clamp finds them, later).
        if (full !== stored && !this.#pending.has(item.id)) {
          this.#write(item.id, full!, rate);
          // As of the latest decision made, not `now`: the clock may have stepped back.
          this.#clampedAt.set(item.id, Math.max(now, this.#latestAt));
        }
        stored = full;
      }
      const cost = item.cost ?? 1;
      const result = gcra(stored, now, rate, cost);
      results.push(result);
      // An inspection writes nothing (the counter may stand above what is stored: pending charges).
      if (result.allowed && cost > 0) tentative.set(item.id, result.tat);
    }
    const allowed = results.every((r) => r.allowed);
    const counters = results.map((r, i) => {
      if (allowed || !r.allowed) return statusOf(r);
      // Admitted by this counter but refused by another: nothing is charged, so report the
      // counter as it stands.
      const item = items[i]!;
      return statusOf(gcra(this.#standing(item.id), now, rateOf(item), 0));
    });
    const writes: PendingDecision["writes"] = [];
    if (allowed) {
      for (const item of items) {
        const tat = tentative.get(item.id);
        // Once per counter: an id listed twice was charged for both in its one tentative TAT.
        if (tat && !writes.some(([id]) => id === item.id)) writes.push([item.id, tat, rateOf(item)]);
      }
    }
    this.#latestAt = Math.max(this.#latestAt, now);
    return { result: { allowed, counters, at: now, epoch: this.epoch }, writes };
  }

  /** Apply a decision taken by `decide` (only meaningful with no other change in between). */
  commit(decision: PendingDecision, now: number): void {
    for (const [id, tat, rate] of decision.writes) this.#write(id, tat, rate);
    if (this.#tats.size > this.maxEntries) this.#shrink(now);
  }

  /** Decide and charge; `holdMs` > 0: hold that long instead of charging, for `release` to give back exactly. */
  acquire(items: readonly CounterRequest[], now: number, holdMs = 0): AcquireResult {
    const hold = holdMs > 0;
    this.settleHolds(now);
    const decision = this.decide(items, now);
    if (!decision.result.allowed) return decision.result;
    // A charge on a counter with pending charges queues behind them; an inspection charges nothing.
    const queued = items.some((item) => item.cost !== 0 && this.#pending.has(item.id));
    if (!hold && !queued) {
      this.commit(decision, now);
      return decision.result;
    }
    const seq = ++this.#seq;
    const ids: string[] = [];
    for (const item of items) {
      const cost = item.cost ?? 1;
      if (cost === 0) continue;
      const queue = this.#pending.get(item.id) ?? [];
      const rate = rateOf(item);
      const after = charged(atMostFull(queue.at(-1)?.after ?? this.#tats.get(item.id), now, rate), now, rate, cost);
      queue.push({ seq, at: now, cost, rate, after });
      this.#pending.set(item.id, queue);
      ids.push(item.id);
    }
    if (ids.length === 0) return decision.result;
    this.#holds.set(seq, {
      at: now,
      epoch: this.epoch,
      until: now + (hold ? holdMs : HOLD_MS),
      cancellable: hold,
      ids,
    });
    return hold ? { ...decision.result, seq } : decision.result;
  }

  /**
   * Charge for good the holds nobody gave back in time, oldest first; with `ahead`, also one
   * decided more than HOLD_MS after `now` (the clock stepped back that far behind it, which
   * would stall the rest; a smaller step leaves it its time to be given back).
   * Returns when the next one is due.
   */
  settleHolds(now: number, ahead = true): number | undefined {
    let due: number | undefined;
    for (const [seq, hold] of this.#holds) {
      if (hold.until > now && (hold.at - now <= HOLD_MS || !ahead)) {
        due = hold.until;
        break;
      }
      this.#holds.delete(seq);
      // Its charges are the first pending on each of its counters: each stands as after them.
      for (const id of hold.ids) {
        const queue = this.#pending.get(id)!;
        const charge = queue.shift()!;
        this.#write(id, charge.after, charge.rate);
        if (queue.length === 0) this.#pending.delete(id);
      }
    }
    if (this.#tats.size > this.maxEntries) this.#shrink(now);
    return due;
  }

  /** A counter as it stands, its pending charges included. */
  #standing(id: string): Tat | undefined {
    return this.#pending.get(id)?.at(-1)?.after ?? this.#tats.get(id);
  }

  /**
   * Undo an admitted request whose other half (another object) refused it, with `at`, `epoch`
   * and `seq` as `acquire` answered: a hold exactly; a charge as far as `refund` can. A hold
   * already charged for good, or given back already, gives nothing.
   */
  release(items: readonly CounterRequest[], at: number | undefined, epoch: unknown, now: number, seq?: unknown): void {
    // A hold due is charged for good first: given back after that, it gives nothing (one the
    // clock stepped back behind is not due, and may still be given back).
    this.settleHolds(now, false);
    if (seq !== undefined) {
      const hold = this.#holds.get(seq as number);
      // Past its time it gives nothing, even while still pending behind a longer hold (holds
      // settle in order, and lengths differ with the caller's budget or a clock step).
      if (!hold?.cancellable || hold.at !== at || hold.epoch !== epoch || hold.until <= now) return;
      this.#holds.delete(seq as number);
      for (const id of new Set(hold.ids)) {
        const queue = this.#pending.get(id)!;
        // Its charges on this counter are together (one call's); given back, the counter after
        // each later charge is worked out again, until it comes out as before (an idle gap).
        let i = queue.findIndex((entry) => entry.seq === seq);
        let count = 0;
        while (queue[i + count]?.seq === seq) count++;
        queue.splice(i, count);
        for (; i < queue.length; i++) {
          const entry = queue[i]!;
          const after = charged(i === 0 ? this.#tats.get(id) : queue[i - 1]!.after, entry.at, entry.rate, entry.cost);
          if (after.ms === entry.after.ms && after.frac === entry.after.frac && after.den === entry.after.den) break;
          entry.after = after;
        }
        if (queue.length === 0) this.#pending.delete(id);
      }
      return;
    }
    if (epoch !== this.epoch) return;
    for (const item of items) {
      // Behind pending charges, the counter's past matters to them: left as it is; and one cut
      // back since the charge no longer holds it apart from the others.
      const clampedAt = Math.max(this.#clampedAt.get(item.id) ?? -Infinity, this.#forgottenClampAt);
      if (this.#pending.has(item.id) || !(clampedAt < at!)) continue;
      // Only at the size the counter is charged at: a release naming a smaller limit (a longer
      // emission interval) would give back more than the charge, other requests' charges too.
      const rate = rateOf(item);
      const inForce = this.#rates.get(item.id);
      if (inForce?.limit !== rate.limit || inForce.windowMs !== rate.windowMs) continue;
      const back = refund(this.#tats.get(item.id), now, rate, at, item.cost ?? 1);
      if (back) this.#write(item.id, back, rate);
      else this.#forget(item.id);
    }
  }

  /** Drop counters whose TAT has passed. Returns the latest TAT still live (ms), or undefined. */
  sweep(now: number): number | undefined {
    let latest: number | undefined;
    for (const [id, tat] of this.#tats) {
      // A counter with pending charges is kept: they are charged on top of it, as of their time.
      if (isLive(tat, now)) {
        if (latest === undefined || tat.ms > latest) latest = tat.ms;
      } else if (!this.#pending.has(id)) {
        this.#forget(id);
      }
    }
    return latest;
  }

  /**
   * Counters changed and not yet saved. They stay pending until `markSaved`, so a write
   * that fails leaves them for the next attempt instead of losing them.
   */
  pendingChanges(now: number): PendingChanges {
    const upserts: [string, Tat][] = [];
    const deletes: string[] = [];
    for (const id of this.#dirty) {
      const tat = this.#tats.get(id);
      if (tat && isLive(tat, now)) upserts.push([id, tat]);
      else deletes.push(id);
    }
    return { upserts, deletes };
  }

  /** Call once `changes` (from `pendingChanges`, with no change in between) are committed. */
  markSaved(changes: PendingChanges): void {
    for (const [id] of changes.upserts) this.#dirty.delete(id);
    for (const id of changes.deletes) this.#dirty.delete(id);
  }

  /** `rate`: the counter's size as decided on, for ranking evictions (see `#shrink`). */
  #write(id: string, tat: Tat, rate: Rate): void {
    this.#tats.set(id, tat);
    this.#rates.set(id, rate);
    this.#dirty.add(id);
  }

  #forget(id: string): void {
    this.#tats.delete(id);
    this.#rates.delete(id);
    this.#dirty.add(id);
    const clampedAt = this.#clampedAt.get(id);
    if (clampedAt !== undefined) this.#forgottenClampAt = Math.max(this.#forgottenClampAt, clampedAt);
    this.#clampedAt.delete(id);
  }

  /**
   * Back under the bound, with `evictionBatch` slots to spare. Expired counters go first:
   * forgetting them loses nothing. Then live counters, those that give back the least first:
   * forgetting a counter hands its client a full burst again, the share of its window it
   * stands ahead (TAT − now, over the window), so a saturated counter (a whole window ahead,
   * and unchanged by the refusals it keeps answering) is the last to go, whatever its window:
   * by TAT alone, a client refused by a per-minute limit would go before any per-day counter.
   * Evicting the least recently written instead would pick exactly the counters of refused
   * clients, and hand them a new burst.
   * Counters every caller shares (a route ceiling, a tenant's total) go last whatever their
   * TAT: one of them holds everyone's count, and per-client counters with longer windows
   * would otherwise outlast it at every eviction, so that new clients reset it forever.
   */
  #shrink(now: number): void {
    this.sweep(now);
    const excess = this.#tats.size - (this.maxEntries - this.#evictionBatch);
    if (excess <= 0) return;
    this.epoch++;
    for (const id of this.#leastGivenBack(excess, now)) this.#forget(id);
  }

  /**
   * What forgetting a live counter gives back, for ranking: the share of its window it stands
   * ahead; a counter that refuses its client (as `gcra` decides, exactly) ranks above every
   * counter that does not, whatever its share: with a limit of 1, a client refused with a
   * third of the minute to go stands only a third ahead.
   */
  #givenBack(id: string, tat: Tat, now: number): number {
    const rate = this.#rateOf(id);
    const share = msFrom(now, tat) / rate.windowMs;
    return refusesNext(tat, now, rate) ? 1 + share : share;
  }

  /**
   * A counter's size in force: as last decided on, else (loaded at start-up, not asked about
   * since) as its id declares it (see `counterIdOf`; a tenant override may differ until the
   * counter's client comes back).
   */
  #rateOf(id: string): Rate {
    let rate = this.#rates.get(id);
    if (rate === undefined) {
      rate = declaredRateOf(id) ?? { limit: 1, windowMs: 1000 };
      this.#rates.set(id, rate);
    }
    return rate;
  }

  /** Ids of the `count` counters forgetting gives back least, shared ones last (0 < count ≤ size). */
  #leastGivenBack(count: number, now: number): string[] {
    // A float of each share ranks them well enough; selecting rather than sorting keeps the
    // pause linear (sorting 50,000 took ≈ 6 ms in Node 22, and the object answers nobody meanwhile).
    // Shared counters last of all, then those with pending charges, then the rest by share.
    const at = (id: string, tat: Tat) =>
      isSharedCounter(id) ? Infinity : this.#pending.has(id) ? Number.MAX_VALUE : this.#givenBack(id, tat, now);
    const ranks = new Float64Array(this.#tats.size);
    let i = 0;
    for (const [id, tat] of this.#tats) ranks[i++] = at(id, tat);
    // Selection reorders what it selects from: the ranks stay in the table's order.
    const cutoff = kthSmallest(ranks.slice(), count - 1);
    // Everything before the cutoff goes, and as many counters at the cutoff as fill `count`.
    let before = 0;
    for (const t of ranks) if (t < cutoff) before++;
    let atCutoff = count - before;
    const ids: string[] = [];
    i = 0;
    for (const id of this.#tats.keys()) {
      const t = ranks[i++] as number;
      if (t < cutoff) ids.push(id);
      else if (t === cutoff && atCutoff > 0) {
        ids.push(id);
        atCutoff--;
      }
    }
    return ids;
  }
}

/**
 * The k-th smallest (from 0) of `values`, which it reorders: quickselect, linear on average.
 * The pivot is random so that no arrangement of TATs can make it quadratic in practice.
 */
function kthSmallest(values: Float64Array, k: number): number {
  let lo = 0;
  let hi = values.length - 1;
  while (lo < hi) {
    const pivot = values[lo + Math.floor(Math.random() * (hi - lo + 1))]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i]! < pivot) i++;
      while (values[j]! > pivot) j--;
      if (i <= j) {
        const swap = values[i]!;
        values[i] = values[j]!;
        values[j] = swap;
        i++;
        j--;
      }
    }
    // Now values[lo..j] ≤ pivot ≤ values[i..hi], and anything between equals the pivot.
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return values[k]!;
  }
  return values[k]!;
}

function statusOf(r: GcraResult): CounterStatus {
  return { allowed: r.allowed, remaining: r.remaining, resetMs: r.resetMs, retryAfterMs: r.retryAfterMs };
}
