// GCRA (generic cell rate algorithm, as in redis-cell) over exact time: a limit of `limit`
// requests per `window_s` is a burst of `limit` and an emission interval T = window / limit.
// Each counter stores one number, its theoretical arrival time (TAT). A request of cost q is
// admitted when max(TAT, now) + q·T − window ≤ now; admitting it moves TAT to
// max(TAT, now) + q·T. Capacity comes back smoothly, one request every T, so there is no fixed
// window edge to double up on. A TAT in the past is the same as no counter at all, which is
// what lets idle keys be dropped.
//
// Time is kept exactly: a TAT is `ms + frac / den` with integer parts, den = the limit, so
// T = window_ms / limit never rounds (60 000 ms / 7 is not a float-safe step) and the Nth
// request of a burst of N is never refused by a rounding error. Pure: callers pass `now`.

/** A theoretical arrival time: `ms + frac / den` milliseconds since the epoch, 0 ≤ frac < den. */
export interface Tat {
  ms: number;
  frac: number;
  den: number;
}

/** A limit's size: `limit` requests per `windowMs`. */
export interface Rate {
  limit: number;
  windowMs: number;
}

/** floor(a·b / d) and (a·b) mod d, exactly, for non-negative integers. */
function mulDivMod(a: number, b: number, d: number): [number, number] {
  const product = a * b;
  if (Number.isSafeInteger(product)) return [Math.floor(product / d), product % d];
  const big = BigInt(a) * BigInt(b);
  return [Number(big / BigInt(d)), Number(big % BigInt(d))];
}

/** Re-express a TAT over another denominator, rounding up (a limit's size changed: never lose time). */
export function rescale(tat: Tat, den: number): Tat {
  if (tat.den === den) return tat;
  const [q, r] = mulDivMod(tat.frac, den, tat.den);
  const frac = q + (r > 0 ? 1 : 0);
  return frac >= den ? { ms: tat.ms + 1, frac: frac - den, den } : { ms: tat.ms, frac, den };
}

/** TAT + cost·T, where T = windowMs / limit and tat.den === limit. */
export function addCost(tat: Tat, rate: Rate, cost: number): Tat {
  const [whole, rest] = mulDivMod(cost, rate.windowMs, rate.limit);
  const frac = tat.frac + rest;
  return frac >= tat.den
    ? { ms: tat.ms + whole + 1, frac: frac - tat.den, den: tat.den }
    : { ms: tat.ms + whole, frac, den: tat.den };
}

/** TAT − cost·T. */
function subtractCost(tat: Tat, rate: Rate, cost: number): Tat {
  const [whole, rest] = mulDivMod(cost, rate.windowMs, rate.limit);
  const frac = tat.frac - rest;
  return frac < 0
    ? { ms: tat.ms - whole - 1, frac: frac + tat.den, den: tat.den }
    : { ms: tat.ms - whole, frac, den: tat.den };
}

/** Whether the TAT lies strictly after `now` (an integer ms), i.e. the counter holds anything. */
export function isLive(tat: Tat, now: number): boolean {
  return tat.ms > now || (tat.ms === now && tat.frac > 0);
}

/**
 * What a charge at `now` starts from: the stored TAT over the limit's denominator while it is
 * live, else `now` (a counter that has drained holds nothing). Rescaling never changes whether
 * a TAT is live: it rounds up within one millisecond, never past `now` to after it.
 */
export function startingTat(stored: Tat | undefined, now: number, limit: number): Tat {
  return stored && isLive(stored, now) ? rescale(stored, limit) : { ms: now, frac: 0, den: limit };
}

/**
 * Whether the counter refuses a request of cost 1 at `now`, exactly as `gcra` decides (the TAT
 * plus one request's share, less the window, lies after `now`), without building a decision.
 */
export function refusesNext(tat: Tat, now: number, rate: Rate): boolean {
  const current = rescale(tat, rate.limit);
  let ms = current.ms + Math.floor(rate.windowMs / rate.limit) - rate.windowMs;
  let frac = current.frac + (rate.windowMs % rate.limit);
  if (frac >= current.den) {
    ms += 1;
    frac -= current.den;
  }
  return ms > now || (ms === now && frac > 0);
}

/** Milliseconds from `now` to the TAT (negative when it has passed). */
export function msFrom(now: number, tat: Tat): number {
  return tat.ms - now + tat.frac / tat.den;
}

export interface GcraResult {
  allowed: boolean;
  /** Requests of cost 1 that would still be admitted right now, after this decision (0…limit). */
  remaining: number;
  /** Milliseconds until the counter is back to a full burst (≥ 0). */
  resetMs: number;
  /** Milliseconds until this request could be admitted: 0 when allowed, Infinity when cost > limit. */
  retryAfterMs: number;
  /** The TAT to store: advanced when allowed, unchanged otherwise (undefined: nothing stored). */
  tat: Tat | undefined;
}

/**
 * One GCRA decision. `now` is an integer number of milliseconds; a clock that steps
 * backwards is tolerated (the stored TAT simply lies further ahead): remaining is clamped to
 * 0…limit and reset and retry are never negative. A cost of 0 inspects without consuming.
 */
export function gcra(stored: Tat | undefined, now: number, rate: Rate, cost = 1): GcraResult {
  const { limit, windowMs } = rate;
  const current = stored ? rescale(stored, limit) : undefined;
  const base = startingTat(stored, now, limit);
  let allowed: boolean;
  let retryAfterMs = 0;
  let after = base;
  if (cost > limit) {
    allowed = false;
    retryAfterMs = Infinity;
  } else {
    const next = addCost(base, rate, cost);
    const allowAt: Tat = { ms: next.ms - windowMs, frac: next.frac, den: next.den };
    allowed = !isLive(allowAt, now);
    if (allowed) after = next;
    else retryAfterMs = msFrom(now, allowAt);
  }
  return {
    allowed,
    remaining: remainingAt(after, now, rate),
    resetMs: Math.max(0, msFrom(now, after)),
    retryAfterMs,
    tat: allowed && cost > 0 ? after : current,
  };
}

/**
 * floor((window − (TAT − now)) / T) = floor(((window − (ms − now))·limit − frac) / window),
 * in integers, clamped to 0…limit.
 */
function remainingAt(tat: Tat, now: number, rate: Rate): number {
  const spareMs = rate.windowMs - (tat.ms - now);
  if (spareMs <= 0) return 0;
  const scaled = spareMs * rate.limit;
  const raw = Number.isSafeInteger(scaled)
    ? Math.floor((scaled - tat.frac) / rate.windowMs)
    : Number((BigInt(spareMs) * BigInt(rate.limit) - BigInt(tat.frac)) / BigInt(rate.windowMs));
  return Math.min(rate.limit, Math.max(0, raw));
}

/**
 * Give back a reservation of `cost` requests that `acquire` made at `at` (ms): cost·T less
 * the time since. Its slot began no earlier than `at`, so however it has moved or drained
 * since, removing it lowers the counter by at least that much: giving back no more never
 * erases other requests' charges. All of it when released at once; nothing once cost·T has passed.
 */
export function refund(stored: Tat | undefined, now: number, rate: Rate, at?: number, cost = 1): Tat | undefined {
  // `at` comes over RPC: anything but a whole number gives nothing back, and so does a
  // reservation whose slot has drained in full, (now − at)·limit ≥ cost·window (a float
  // rounding here can only err by a fraction of a nanosecond, towards keeping the charge).
  // (`Number.isInteger`, not `% 1`: that would take the string "17…" or [17…] as the number.)
  if (!(stored && Number.isInteger(at) && (now - at!) * rate.limit < cost * rate.windowMs)) return stored;
  const back = subtractCost(rescale(stored, rate.limit), rate, cost);
  back.ms += Math.max(0, now - at!);
  return isLive(back, now) ? back : undefined;
}
