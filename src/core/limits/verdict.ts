// How the limiter objects' answers combine into one decision: the most restrictive refusal,
// an object that failed or ran out of time (each limit's on_error), and the limits as they
// stand for the response's fields.

import type { LimitKey } from "../policy-types";
import type { AcquireResult, CounterStatus } from "./limiter-rpc";
import type { AppliedLimit, LimiterKind, LimitPlan } from "./plan";

/** A limit as it stands after the decision, for response fields and the 429 body. */
export interface LimitStatus extends CounterStatus {
  name: string;
  key: LimitKey;
  limit: number;
  windowS: number;
}

/** What one object answered: its result, or that it failed or ran out of time. */
export type ObjectAnswer = { ok: true; result: AcquireResult } | { ok: false; error: "timeout" | "error" };

export type LimitVerdict =
  | { decision: "allow"; statuses: LimitStatus[]; failedOpen: string[] }
  | { decision: "rate_limited"; statuses: LimitStatus[]; failedOpen: string[]; hit: LimitStatus }
  | {
      decision: "unavailable";
      statuses: LimitStatus[];
      failedOpen: string[];
      /** The first limit that could not be checked and must fail closed. */
      limit: AppliedLimit;
      error: "timeout" | "error";
    };

/**
 * Combine the answers of the limiter objects. A definite refusal wins (429); otherwise an
 * object that could not answer decides by its limits' `on_error`: if any of them says `deny`
 * the request is refused (503), if all say `allow` they are recorded as failed open.
 * Statuses come back most restrictive first, as the counters stand once the decision is
 * carried out: when the request is refused, an object that admitted (and so charged) it is
 * given the request back, and its counters are reported as they will be after that.
 */
export function combineAnswers(plan: LimitPlan, answers: ReadonlyMap<LimiterKind, ObjectAnswer>): LimitVerdict {
  const statuses: LimitStatus[] = [];
  const charged = new Set<LimitStatus>();
  const failedOpen: string[] = [];
  let failedClosed: { limit: AppliedLimit; error: "timeout" | "error" } | undefined;
  for (const kind of ["tenant", "route"] as const) {
    const limits = plan.limits.filter((l) => l.object === kind);
    if (limits.length === 0) continue;
    const answer = answers.get(kind);
    const result = answer?.ok ? answer.result : undefined;
    // One status per counter, and a verdict that agrees with them, or no answer at all (an
    // object of another version, mid-deploy): its limits fail as on an error, never let through.
    if (
      result?.counters?.length === limits.length &&
      result.counters.every((c) => typeof c?.allowed === "boolean") &&
      result.allowed === result.counters.every((c) => c.allowed)
    ) {
      limits.forEach((limit, i) => {
        const status = {
          name: limit.name,
          key: limit.key,
          limit: limit.limit,
          windowS: limit.windowS,
          ...result.counters[i]!,
        };
        statuses.push(status);
        if (result.allowed) charged.add(status);
      });
      continue;
    }
    const error = answer && !answer.ok ? answer.error : "error";
    const closed = limits.find((l) => l.onError === "deny");
    if (closed) failedClosed ??= { limit: closed, error };
    else failedOpen.push(...limits.map((l) => l.name));
  }
  const refused = failedClosed !== undefined || statuses.some((s) => !s.allowed);
  const reported = refused ? statuses.map((s) => (charged.has(s) ? released(s) : s)) : statuses;
  reported.sort(byRestrictiveness);
  const hit = reported[0];
  if (hit && !hit.allowed) return { decision: "rate_limited", statuses: reported, failedOpen, hit };
  if (failedClosed) return { decision: "unavailable", statuses: reported, failedOpen, ...failedClosed };
  return { decision: "allow", statuses: reported, failedOpen };
}

/**
 * An admitted counter's status once its reservation (one request, the only cost the stage
 * charges) is given back. Admitting moved the TAT one emission interval T = window / limit
 * ahead of max(TAT, now), so the counter had exactly one more request remaining and T less
 * to reset, both before the charge and after the refund. Remaining is exact; reset is
 * exact to within the float rounding of T (see below).
 */
function released(status: LimitStatus): LimitStatus {
  const intervalMs = (status.windowS * 1000) / status.limit;
  const remaining = Math.min(status.limit, status.remaining + 1);
  // Full again is reset now; otherwise T taken off, rounded where float subtraction left a
  // residue around a whole millisecond (8.9e-16 ms would read as one more second of reset).
  const resetMs = status.resetMs - intervalMs;
  const snapped = Math.abs(resetMs - Math.round(resetMs)) < 1e-6 ? Math.round(resetMs) : resetMs;
  return { ...status, remaining, resetMs: remaining === status.limit ? 0 : Math.max(0, snapped) };
}

/**
 * Most restrictive first: refusing limits before admitting ones; among refusals the one that
 * frees up last (it is the one that decides when a retry can succeed); then least remaining;
 * then the longest until reset.
 */
function byRestrictiveness(a: LimitStatus, b: LimitStatus): number {
  if (a.allowed !== b.allowed) return a.allowed ? 1 : -1;
  if (!a.allowed && a.retryAfterMs !== b.retryAfterMs) return b.retryAfterMs - a.retryAfterMs;
  if (a.remaining !== b.remaining) return a.remaining - b.remaining;
  return b.resetMs - a.resetMs;
}

/** Whole seconds for a duration in ms, rounded up (a client waiting that long is never early). */
export function ceilSeconds(ms: number): number {
  return Number.isFinite(ms) ? Math.max(0, Math.ceil(ms / 1000)) : 0;
}
