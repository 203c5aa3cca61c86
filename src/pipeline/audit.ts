// Wraps the whole pipeline: after the response is decided, writes one audit record off
// the response path (ctx.waitUntil).

import type { MiddlewareHandler } from "hono";
import type { AuditRecord, AuditSink } from "../core/audit";
import type { PipelineEnv } from "./context";

function waitUntil(c: { executionCtx: { waitUntil(promise: Promise<unknown>): void } }, work: Promise<unknown>): void {
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    // No execution context (e.g. called outside a Worker): the work still runs.
  }
}

export function audit(sinks: () => readonly AuditSink[]): MiddlewareHandler<PipelineEnv> {
  return async (c, next) => {
    await next();
    const outcome = c.get("outcome") ?? { decision: "deny", reason: "misconfigured" };
    const route = c.get("route");
    const identity = c.get("identity");
    const timings = c.get("timings") ?? {};
    const cf = (c.req.raw as { cf?: { colo?: string } }).cf;
    const record: AuditRecord = {
      ts: new Date().toISOString(),
      request_id: c.get("requestId"),
      edge_pop: cf?.colo ?? null,
      tenant_id: identity?.tenant ?? null,
      user_sub: identity?.subject ?? null,
      issuer: identity?.issuer ?? null,
      token_hash: identity?.tokenHash ?? null,
      method: c.req.method,
      path: c.get("canonicalPath") ?? null,
      route: route?.name ?? null,
      decision: outcome.decision,
      reason: outcome.reason ?? null,
      detail: outcome.detail ?? null,
      matched_rule: route?.matchedRule ?? null,
      upstream: route?.upstreamName ?? null,
      status: c.res.status,
      limit: outcome.limit ?? null,
      failed_open: outcome.failedOpen?.length ? outcome.failedOpen : null,
      latency_ms: Date.now() - c.get("startedAt"),
      authz_ms: timings.authMs ?? null,
      limit_ms: timings.limitMs ?? null,
      upstream_ms: timings.upstreamMs ?? null,
    };
    const write = Promise.resolve().then(async () => {
      for (const sink of sinks()) await sink(record);
    });
    waitUntil(
      c,
      write.catch(() => undefined),
    );
  };
}
