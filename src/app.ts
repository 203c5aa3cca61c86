// The pipeline over a policy document, compiled once per isolate: what tests, the local stack
// and the benchmark run. The deployable Worker (src/index.ts) ships its policy compiled at
// build time instead, and never runs the compiler.

import type { HonoBase } from "hono/hono-base";
import { type CompiledPolicy, compilePolicy } from "./core/policy";
import type { PipelineEnv } from "./pipeline/context";
import { type AppOptions, createPipelineApp } from "./pipeline-app";

export type { AppOptions } from "./pipeline-app";

/**
 * The pipeline over the policy `compile` returns. If it throws (an invalid policy, or a policy
 * text that could not be read as one), the error is logged and the policy never half-runs:
 * every request gets 500 misconfigured.
 */
export function appFor(compile: () => CompiledPolicy, options: AppOptions = {}): HonoBase<PipelineEnv> {
  let policy: CompiledPolicy | undefined;
  try {
    policy = compile();
  } catch (error) {
    console.error(String(error));
  }
  return createPipelineApp(policy, options);
}

export function createApp(policyDocument: unknown, options: AppOptions = {}): HonoBase<PipelineEnv> {
  return appFor(() => compilePolicy(policyDocument), options);
}
