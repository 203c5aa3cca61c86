// Wraps the whole pipeline: after the response is decided, writes one audit record to every
// sink and one metrics data point to the Analytics Engine dataset (when `METRICS` is bound),
// both off the response path (ctx.waitUntil).

import {
  type AuditIdentity,
  type AuditRecord,
  type AuditSink,
  auditIdentity,
  auditRecord,
  type Outcome,
} from "../core/audit";
import { type DataPoint, metricsDataPoint } from "../core/metrics";
import { afterResponse } from "./after-response";
import type { PipelineContext } from "./context";
import { errorName, type Stage } from "./stage";

/** The dataset, if one is bound: without it the edge runs and logs exactly the same. */
function metricsDataset(c: PipelineContext): AnalyticsEngineDataset | undefined {
  try {
    const dataset = c.env?.METRICS as Partial<AnalyticsEngineDataset> | undefined;
    return typeof dataset?.writeDataPoint === "function" ? (dataset as AnalyticsEngineDataset) : undefined;
  } catch (error) {
    // A binding that cannot be read is no dataset: the request is served and recorded as without one.
    console.error(`portcullis: metrics binding unreadable (${errorName(error)})`);
    return undefined;
  }
}

function recordFor(
  c: PipelineContext,
  now: number,
  status: number,
  outcome: Outcome | undefined,
  identity?: AuditIdentity,
): AuditRecord {
  const cf = (c.req.raw as { cf?: { colo?: unknown; asn?: unknown; country?: unknown } }).cf;
  return auditRecord({
    now,
    requestId: c.get("requestId"),
    startedAt: c.get("startedAt"),
    method: c.req.method,
    canonicalPath: c.get("canonicalPath"),
    route: c.get("route"),
    identity,
    outcome: outcome ?? { decision: "deny", reason: "misconfigured" },
    status,
    timings: c.get("timings") ?? {},
    cf,
    keySource: c.get("tokenCheck")?.keySource,
  });
}

/**
 * Writes the record and data point after the response: the moment and status are given, and
 * the outcome is taken as it is now (a stage still running after a disconnect may change it).
 */
function writeAfterResponse(
  c: PipelineContext,
  sinks: readonly AuditSink[],
  dataset: AnalyticsEngineDataset | undefined,
  now: number,
  status: number,
): void {
  const outcome = c.get("outcome");
  const decided = outcome && { ...outcome };
  const work = (async () => {
    // A macrotask first: awaiting promises alone would still run all of this before the
    // runtime takes the response (microtasks drain first), and the client would wait for it.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const record = recordFor(c, now, status, decided, await auditIdentity(c.get("identity")));
    if (dataset) {
      try {
        const point: DataPoint = metricsDataPoint({
          record,
          tokenCheck: c.get("tokenCheck"),
          clientIp: c.req.header("cf-connecting-ip") ?? null,
        });
        dataset.writeDataPoint(point);
      } catch (error) {
        console.error(`portcullis: metrics write failed (${errorName(error)})`);
      }
    }
    // Every sink is handed the record before any is waited for: one that hangs must not hold
    // the others' records back until the runtime ends this waitUntil work and drops them.
    // A synchronous sink (the console's) costs no promise.
    const sinkFailed = (error: unknown) => console.error(`portcullis: audit sink failed (${errorName(error)})`);
    const pending: Promise<void>[] = [];
    for (const sink of sinks) {
      try {
        const written = sink(record);
        if (written) pending.push(written.catch(sinkFailed));
      } catch (error) {
        sinkFailed(error);
      }
    }
    await Promise.all(pending);
  })();
  afterResponse(c, work);
}

export function audit(sinks: readonly AuditSink[]): Stage {
  // While a request is unanswered: what to do if its client disconnects, and the dataset as read
  // once for it (a binding that cannot be read is logged once). Removed as soon as the answer
  // is recorded, so no request's context outlives it through its signal.
  const unanswered = new WeakMap<
    PipelineContext,
    { recordDisconnect: () => void; dataset: AnalyticsEngineDataset | undefined }
  >();

  const run: Stage["run"] = (c) => {
    // With `enable_request_signal`, the runtime aborts this signal when the client goes away
    // before its answer; the runtime then cancels the request's own work, so no answer (and
    // no finisher) may follow. The record is written from here instead: what was decided so
    // far, as client_closed.
    const dataset = metricsDataset(c);
    // Nothing to write to, nothing to watch for (watching costs tens of µs per request).
    if (!dataset && sinks.length === 0) return undefined;
    const recordDisconnect = () => {
      unanswered.delete(c);
      const outcome = c.get("outcome");
      c.set("outcome", {
        ...outcome,
        // Once the origin has the request it was let through, and the record must say so:
        // hanging up must not hide a request the origin acted on among the refused ones.
        decision: outcome.forwarded ? "allow" : "deny",
        reason: "client_closed",
        detail: "client_disconnected",
      });
      writeAfterResponse(c, sinks, dataset, Date.now(), 499);
    };
    unanswered.set(c, { recordDisconnect, dataset });
    c.req.raw.signal.addEventListener("abort", recordDisconnect, { once: true });
    return undefined;
  };

  const finish: Stage["finish"] = (c, response) => {
    const pending = unanswered.get(c);
    // Recorded already, as a disconnect; or nothing to record to.
    if (!pending) return response;
    unanswered.delete(c);
    c.req.raw.signal.removeEventListener("abort", pending.recordDisconnect);
    // Capture the moment and the status now; build and write everything after the response.
    writeAfterResponse(c, sinks, pending.dataset, Date.now(), response.status);
    return response;
  };
  return { run, finish };
}
