// The pipeline over a policy document, compiled once per isolate: what tests, the local stack
// and the benchmark run. The deployable Worker (src/index.ts) ships its policy compiled at
// build time instead, and never runs the compiler.

import type { HonoBase } from "hono/hono-base";
import { compilePolicy } from "./core/policy";
import type { PipelineEnv } from "./pipeline/context";
import { type AppOptions, createPipelineApp } from "./pipeline-app";

export type { AppOptions } from "./pipeline-app";

export function createApp(policyDocument: unknown, options: AppOptions = {}): HonoBase<PipelineEnv> {
  let policy: ReturnType<typeof compilePolicy> | undefined;
  try {
    policy = compilePolicy(policyDocument);
  } catch (error) {
    // An invalid policy never half-runs: every request gets 500 misconfigured.
    console.error(String(error));
  }
  return createPipelineApp(policy, options);
}
