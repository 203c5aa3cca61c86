// The contract between the rate-limit stage and the limiter objects: what one call carries
// and answers, the bounds the objects check it against, and how long a hold lasts.

import type { GcraResult } from "./gcra";

/** One counter to check, as sent to a limiter object. */
export interface CounterRequest {
  /** Stable counter id within the object (the limit as declared, and the key value). */
  id: string;
  limit: number;
  windowS: number;
  /** Requests this call counts for. Default 1; 0 inspects without consuming. */
  cost?: number;
}

/** A counter as a decision left it (see GcraResult), without what only the object keeps. */
export type CounterStatus = Omit<GcraResult, "tat">;

export interface AcquireResult {
  /** True only when every counter admitted the request; then (and only then) all were charged (or held). */
  allowed: boolean;
  /** One status per requested counter, in request order. */
  counters: CounterStatus[];
  /** For `release`: the object's time when it decided, and its table's epoch. */
  at?: number;
  epoch?: number;
  /** For `release`: which hold this is, when the request was held (see `CounterTable`). */
  seq?: number;
}

/** The RPC surface of a limiter Durable Object, as the pipeline sees it. */
export interface LimiterRpc {
  /** `hold`: hold the request for that many ms instead of charging it (see `holdMsFor`). */
  acquire(items: CounterRequest[], hold?: number): Promise<AcquireResult>;
  release(items: CounterRequest[], at?: number, epoch?: number, seq?: number): Promise<void>;
}

/** The most counters one limiter call carries (one object's share of a route's limits). */
export const MAX_COUNTERS_PER_CALL = 16;
/** The longest counter id an object takes (names and who, JSON-escaped: see counterIdOf). */
export const MAX_COUNTER_ID_CHARS = 2048;
/** The largest limit and window (a month) a counter takes. */
export const MAX_LIMIT = 1_000_000_000;
export const MAX_WINDOW_S = 86_400 * 31;

/** How long a hold waits for its give-back once both objects have answered (the release call's time). */
export const HOLD_MS = 2_000;
/** The longest budget a limiter call may be given (`settings.limiter_timeout_ms`). */
export const MAX_LIMITER_TIMEOUT_MS = 5_000;

/**
 * How long a hold waits to be given back before it is charged for good: the other object may
 * answer (refusing) as late as the budget allows, and the give-back follows that answer.
 */
export function holdMsFor(limiterTimeoutMs: number): number {
  return limiterTimeoutMs + HOLD_MS;
}

/** The hold an `acquire` call asks for, in ms (0: none), or an error for one no caller could ask. */
export function checkHold(hold: unknown): number {
  if (hold === undefined || hold === false) return 0;
  // `true`: HOLD_MS alone (`holdMsFor(0)`), as a Worker of an earlier release still running
  // during a rolling deploy asks for one.
  if (hold === true) return holdMsFor(0);
  if (Number.isInteger(hold) && (hold as number) >= HOLD_MS && (hold as number) <= holdMsFor(MAX_LIMITER_TIMEOUT_MS))
    return hold as number;
  throw new Error("malformed counter request");
}

/** Rejects malformed input at the object boundary (the Worker is the only caller, but cheaply). */
export function checkCounterRequests(items: unknown): asserts items is CounterRequest[] {
  const ok =
    Array.isArray(items) &&
    items.length > 0 &&
    items.length <= MAX_COUNTERS_PER_CALL &&
    // Spread, so that a hole reads as undefined (`every` would skip it).
    [...items].every(
      (item: CounterRequest) =>
        typeof item?.id === "string" &&
        item.id.length > 0 &&
        item.id.length <= MAX_COUNTER_ID_CHARS &&
        // A lone surrogate would be stored as U+FFFD: two such ids one row, and neither reloaded.
        (item.id as string & { isWellFormed(): boolean }).isWellFormed() &&
        Number.isInteger(item.limit) &&
        item.limit >= 1 &&
        item.limit <= MAX_LIMIT &&
        Number.isInteger(item.windowS) &&
        item.windowS >= 1 &&
        item.windowS <= MAX_WINDOW_S &&
        (item.cost === undefined || (Number.isInteger(item.cost) && item.cost >= 0 && item.cost <= item.limit + 1)),
    );
  if (!ok) throw new TypeError("malformed counter request");
}
