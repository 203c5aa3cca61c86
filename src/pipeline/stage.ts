// The pipeline's unit: a stage is one concern, looking at the request and at what earlier
// stages decided. All stages run inside one Hono handler, in order, rather than as one Hono
// middleware each: composing a dozen middleware cost tens of microseconds per request
// (a promise, a dispatch frame and a router match per stage), more than most stages' own work.

import type { PipelineContext } from "./context";
import { deny } from "./respond";

/**
 * What a stage's `run` returns: a Response ends the request here; undefined passes it on. A
 * stage that answers builds its own Response (the origin's is re-wrapped), so the finishers
 * can set headers on it: a fetched one passed on as is has headers that cannot be changed.
 */
export type StageResult = Response | undefined;

export interface Stage {
  /** On the way in. Synchronous stages return directly, so they cost no promise. */
  run?: (c: PipelineContext) => StageResult | Promise<StageResult>;
  /**
   * On the way out, last stage first, once this stage was reached: for a forwarded response,
   * a refusal or an internal error alike. Returns the response to send (the same one, or a
   * copy).
   */
  finish?: (c: PipelineContext, response: Response) => Response;
}

/** The error's class name only: a message may quote what it failed on. */
export function errorName(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}

/**
 * Runs `stages` in order until one answers; then the finishers of every stage that was reached,
 * innermost first (as middleware unwinds: a stage after the one that answered never ran, so
 * it has nothing to finish).
 */
export function runStages(stages: readonly Stage[]): (c: PipelineContext) => Promise<Response> {
  return async (c) => {
    let response: Response | undefined;
    let reached = 0;
    try {
      for (; reached < stages.length; reached++) {
        const run = stages[reached]?.run;
        if (!run) continue;
        const result = run(c);
        response = result instanceof Promise ? await result : result;
        if (response) break;
      }
      response ??= deny(c, "internal_error", { detail: "no_stage_answered" });
    } catch (error) {
      console.error(`portcullis: unhandled ${errorName(error)}`);
      response = deny(c, "internal_error", { detail: errorName(error) });
    }
    for (let i = Math.min(reached, stages.length - 1); i >= 0; i--) {
      const finish = stages[i]?.finish;
      if (!finish) continue;
      try {
        response = finish(c, response);
      } catch (error) {
        console.error(`portcullis: finishing failed (${errorName(error)})`);
      }
    }
    return response;
  };
}
