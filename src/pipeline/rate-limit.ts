// Stage: rate limits, after authorisation. Every limit that applies to the request is checked;
// the most restrictive decides; a refused request is charged to no counter.
//
// One round trip per object kind, both in parallel: the tenant object (tenant and user
// limits) and the route object (route and ip limits). Each object checks all of its counters
// and charges them only if all admit the request, atomically. Asked together, each object
// holds the request rather than charging it (see CounterTable): an object that admitted a
// request the other refused (or that a limiter failure refused, or whose client left) gets a
// `release` call off the response path (waitUntil), with the number, time and epoch its
// `acquire` answered, and gives the hold back exactly; a hold not given back within the budget
// plus HOLD_MS (`holdMsFor`) is charged for good. A single object's charge is given back by time (`refund`): what that
// reservation may still hold, never other requests' charges.
//
// Residual race, stated plainly: between an object's reservation and its release (one round
// trip plus the release call), the reserved request occupies a slot, so a concurrent request
// on the same counter can be refused that would otherwise have been admitted. The error is
// always towards refusing, never towards admitting more than the limit. If the release is
// lost (isolate gone, object unreachable), the slot stays charged until it drains at the
// limit's rate. A call that timed out may still land later; if the request was refused, its
// reservation is released when it does.

import { type AcquireResult, type CounterRequest, holdMsFor, type LimiterRpc } from "../core/limits/limiter-rpc";
import { type AppliedLimit, type LimiterKind, type LimitPlan, planLimits } from "../core/limits/plan";
import { ceilSeconds, combineAnswers, type ObjectAnswer } from "../core/limits/verdict";
import { boundedMemo } from "../core/bounded-memo";
import { rateLimitHeaders } from "../core/rate-limit-headers";
import { TIMED_OUT, withDeadline } from "../core/deadline";
import { afterResponse } from "./after-response";
import { type Bindings, type PipelineContext, responseHeaders } from "./context";
import { deny } from "./respond";
import type { Stage } from "./stage";

const BINDINGS: Record<LimiterKind, "TENANT_LIMITER" | "ROUTE_LIMITER"> = {
  tenant: "TENANT_LIMITER",
  route: "ROUTE_LIMITER",
};

/** How long a refused request keeps waiting, off the response path, for a late reservation. */
const LATE_RESERVATION_WAIT_MS = 30_000;

interface ObjectCall {
  kind: LimiterKind;
  /** Absent when the binding threw before an object could be reached. */
  stub: LimiterRpc | undefined;
  items: CounterRequest[];
  pending: Promise<AcquireResult>;
}

/** Object ids by name, per namespace and isolate: the same few tenants ask on every request. */
const MAX_REMEMBERED_IDS = 10_000;
const objectIds = new WeakMap<DurableObjectNamespace, (name: string) => DurableObjectId>();

function objectId(namespace: DurableObjectNamespace, name: string): DurableObjectId {
  let idOf = objectIds.get(namespace);
  if (!idOf) {
    idOf = boundedMemo(MAX_REMEMBERED_IDS, (objectName: string) => namespace.idFromName(objectName));
    objectIds.set(namespace, idOf);
  }
  return idOf(name);
}

function counterRequest(limit: AppliedLimit): CounterRequest {
  return { id: limit.counterId, limit: limit.limit, windowS: limit.windowS };
}

interface ObjectTarget {
  kind: LimiterKind;
  namespace: DurableObjectNamespace;
  objectName: string;
}

/**
 * The objects the plan needs, each with its binding; or the first binding that is missing.
 * Resolved in full before any object is asked, so a missing binding refuses the request
 * with nothing charged anywhere (a reservation sent first would be left unreleased).
 */
function objectTargets(
  plan: LimitPlan,
  env: Bindings | undefined,
): { ok: true; targets: ObjectTarget[] } | { ok: false; missing: string } {
  const targets: ObjectTarget[] = [];
  for (const kind of ["tenant", "route"] as const) {
    const objectName = kind === "tenant" ? plan.tenantObject : plan.routeObject;
    if (objectName === undefined) continue;
    const namespace = env?.[BINDINGS[kind]];
    if (!namespace) return { ok: false, missing: BINDINGS[kind] };
    targets.push({ kind, namespace, objectName });
  }
  return { ok: true, targets };
}

/** Each object's answer, the calls running in parallel, each within the limiter budget. */
async function answersOf(calls: readonly ObjectCall[], timeoutMs: number): Promise<Map<LimiterKind, ObjectAnswer>> {
  const settled = new Map<LimiterKind, ObjectAnswer>();
  const answered = calls.map((call) =>
    call.pending.then(
      (result) => void settled.set(call.kind, { ok: true, result }),
      () => void settled.set(call.kind, { ok: false, error: "error" }),
    ),
  );
  // One timer bounds both calls: they run in parallel against the same budget. The common
  // case is one object (the tenant's): no Promise.all around a single call.
  await withDeadline<unknown>(
    answered.length === 1 ? (answered[0] as Promise<void>) : Promise.all(answered),
    timeoutMs,
  );
  // As they stood when the budget ran out: an answer arriving later is the give-back's affair.
  const answers = new Map(settled);
  for (const call of calls) if (!answers.has(call.kind)) answers.set(call.kind, { ok: false, error: "timeout" });
  return answers;
}

/**
 * For a request that goes no further: every reservation given back, after the response,
 * including one that arrives after its call ran out of time; inside a promise, so a binding
 * that throws synchronously cannot turn a 429 into a 500.
 */
function giveBack(c: PipelineContext, calls: readonly ObjectCall[], answers: Map<LimiterKind, ObjectAnswer>): void {
  for (const call of calls) {
    const answer = answers.get(call.kind);
    const reserved = answer?.ok
      ? answer.result
      : answer?.error === "timeout" && withDeadline(call.pending, LATE_RESERVATION_WAIT_MS);
    if (!reserved) continue;
    afterResponse(
      c,
      Promise.resolve(reserved).then<unknown>(
        (result) =>
          result !== TIMED_OUT && result.allowed && call.stub?.release(call.items, result.at, result.epoch, result.seq),
      ),
    );
  }
}

export function rateLimit(): Stage {
  const run: Stage["run"] = async (c) => {
    const route = c.get("route");
    if (route.limits.length === 0) return undefined;
    const policy = c.get("policy");
    const started = Date.now();
    const identity = c.get("identity");
    const planned = planLimits({
      routeName: route.name,
      method: c.req.method,
      limits: route.limits,
      ...(identity ? { identity } : {}),
      clientAddress: c.req.header("cf-connecting-ip"),
      workerZone: c.req.header("cf-worker"),
      tenantOverrides: policy.tenantOverrides,
    });
    if (!planned.ok) return deny(c, "misconfigured", { detail: planned.detail });
    const plan = planned.plan;

    const resolved = objectTargets(plan, c.env);
    if (!resolved.ok) return deny(c, "misconfigured", { detail: `binding_missing:${resolved.missing}` });
    const calls: ObjectCall[] = [];
    // Two objects must both admit the request: each holds it rather than charging it, so that
    // the one that admitted gives it back exactly when the other refuses.
    const hold = resolved.targets.length > 1 ? holdMsFor(policy.limiterTimeoutMs) : undefined;
    for (const { kind, namespace, objectName } of resolved.targets) {
      const items = plan.limits.filter((l) => l.object === kind).map(counterRequest);
      let stub: LimiterRpc | undefined;
      let pending: Promise<AcquireResult>;
      // A binding may throw rather than reject, naming or reaching the object: the same
      // unreachable limiter either way, decided by the limit's `on_error`.
      try {
        stub = namespace.get(objectId(namespace, objectName)) as unknown as LimiterRpc;
        pending = Promise.resolve(stub.acquire(items, hold));
      } catch (error) {
        pending = Promise.reject(error);
      }
      calls.push({ kind, stub, items, pending });
    }
    if (calls.length === 0) return undefined;

    const answers = await answersOf(calls, policy.limiterTimeoutMs);
    c.get("timings").limitMs = Date.now() - started;

    const verdict = combineAnswers(plan, answers);
    // A client gone while the limiter decided: its request is never forwarded (its record says
    // refused already), so it is given back like a refused one.
    const gone = c.req.raw.signal.aborted;
    // A fail-open is a request let through unchecked: a request refused anyway is none.
    if (verdict.decision === "allow" && !gone && verdict.failedOpen.length > 0) {
      const outcome = c.get("outcome");
      c.set("outcome", { ...outcome, failedOpen: [...(outcome.failedOpen ?? []), ...verdict.failedOpen] });
    }
    const headers = responseHeaders(c);
    const fields = rateLimitHeaders(verdict.statuses);
    for (const name in fields) headers.set(name, fields[name] as string);

    if (verdict.decision === "allow" && !gone) return undefined;

    // Refused: nothing may stay charged.
    giveBack(c, calls, answers);

    if (verdict.decision === "allow") return deny(c, "client_closed", { detail: "client_disconnected" });

    if (verdict.decision === "rate_limited") {
      const hit = verdict.hit;
      const resetS = ceilSeconds(hit.resetMs);
      return deny(c, "rate_limited", {
        retryAfterSeconds: Number.isFinite(hit.retryAfterMs) ? Math.max(1, ceilSeconds(hit.retryAfterMs)) : resetS,
        limit: hit.name,
        detail: `${hit.key}_limit_exceeded`,
        extensions: {
          limit: { name: hit.name, key: hit.key, limit: hit.limit, window_s: hit.windowS, reset_s: resetS },
        },
      });
    }
    return deny(c, "limiter_unavailable", {
      retryAfterSeconds: 1,
      limit: verdict.limit.name,
      detail: `limiter_${verdict.limit.object}_${verdict.error}`,
    });
  };
  return { run };
}
