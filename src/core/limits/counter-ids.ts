// The names of limiter objects and of the counters in them: unambiguous whatever a tenant or
// subject holds, and telling of the limit a counter counts (its size as declared, whether every
// caller shares it).

import type { LimitSpec } from "../policy-types";
import type { Rate } from "./gcra";

/** Limit names and issuer ids go into counter names, which the limiter objects bound (MAX_COUNTER_ID_CHARS). */
export const MAX_NAME_CHARS = 64;

/** Unambiguous names for objects and counters, whatever characters tenants or subjects contain. */
export function nameOf(...parts: (string | number)[]): string {
  return JSON.stringify(parts);
}

/**
 * The counter a limit is counted in, within its object: the limit's key kind, name and
 * size as declared, then whose counter it is (`who`: the user, the client address, or for
 * a route ceiling the method).
 * Routes that declare the same limit identically share one counter, which is how an
 * inherited default is one budget across all routes. A route limit that reuses a default's
 * name with another key or size replaces the default on that route only, so it counts
 * apart: 5 a minute on one route must not spend the 600 a minute the user has everywhere
 * else. The size is the declared one, never a tenant override's: an override resizes the
 * same counter (for that tenant, on every route sharing it), rather than moving the tenant's
 * users to a counter of its own.
 */
export function counterIdOf(spec: LimitSpec, ...who: string[]): string {
  return nameOf(spec.key, spec.name, spec.limit, spec.window_s, ...who);
}

/** The size a counter's id declares (see `counterIdOf`), or undefined for an id it did not make. */
export function declaredRateOf(id: string): Rate | undefined {
  let parts: unknown;
  try {
    parts = JSON.parse(id);
  } catch {
    return undefined;
  }
  const [, , limit, windowS] = Array.isArray(parts) ? parts : [];
  return Number.isSafeInteger(limit) && limit > 0 && Number.isSafeInteger(windowS) && windowS > 0
    ? { limit, windowMs: windowS * 1000 }
    : undefined;
}

/** A route ceiling or a tenant's total, shared by every caller of its object. */
export function isSharedCounter(id: string): boolean {
  return id.startsWith('["route"') || id.startsWith('["tenant"');
}
