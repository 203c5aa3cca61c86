// Work that must not delay the response (audit lines, metrics, cache write-backs, limiter
// refunds) goes through here: ctx.waitUntil, with failures swallowed so they can never
// surface as an unhandled rejection.

import type { PipelineContext } from "./context";

export function afterResponse(c: PipelineContext, work: Promise<unknown>): void {
  const quiet = work.catch(() => undefined);
  try {
    c.executionCtx.waitUntil(quiet);
  } catch {
    // No execution context (the app called outside a Worker): the work still runs.
  }
}
