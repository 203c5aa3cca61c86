// The request pipeline, wired in order, over a compiled policy. Each stage is one module under
// src/pipeline/; they run in one Hono handler (see src/pipeline/stage.ts for why not one
// middleware each).

import { HonoBase } from "hono/hono-base";
import { type AuditSink, consoleSink } from "./core/audit";
import type { CompiledPolicy } from "./core/policy";
import { audit } from "./pipeline/audit";
import { type AuthenticateOptions, authenticate } from "./pipeline/authenticate";
import { authorise } from "./pipeline/authorise";
import { canonicalPath } from "./pipeline/canonical-path";
import type { PipelineEnv } from "./pipeline/context";
import { cors } from "./pipeline/cors";
import { forward } from "./pipeline/forward";
import { headerHygiene } from "./pipeline/header-hygiene";
import { injectIdentity } from "./pipeline/inject-identity";
import { rateLimit } from "./pipeline/rate-limit";
import { requestId } from "./pipeline/request-id";
import { deny } from "./pipeline/respond";
import { route } from "./pipeline/route";
import { serverTiming } from "./pipeline/server-timing";
import { SingleHandlerRouter } from "./pipeline/single-handler-router";
import { runStages, type Stage } from "./pipeline/stage";

/** Hands the policy to the stages that read it from the context. */
function withPolicy(policy: CompiledPolicy): Stage {
  return {
    run(c) {
      c.set("policy", policy);
      return undefined;
    },
  };
}

/** An invalid policy: every request gets 500, recorded; none half-runs. */
const policyInvalid: Stage = { run: (c) => deny(c, "misconfigured", { detail: "policy_invalid" }) };

export interface AppOptions {
  /** Where audit records go. Default: one JSON line per request on stdout. */
  auditSinks?: AuditSink[];
  /** Clock and outbound fetch for token verification (tests inject these). */
  authentication?: AuthenticateOptions;
}

/** `policy` undefined: the policy is invalid, and every request gets 500 (it never half-runs). */
export function createPipelineApp(policy: CompiledPolicy | undefined, options: AppOptions = {}): HonoBase<PipelineEnv> {
  const sinks = options.auditSinks ?? [consoleSink];
  const recorded = [requestId(), audit(sinks)];

  // In this order: each stage relies on what the ones before it decided.
  const pipeline = runStages(
    policy
      ? [
          ...recorded,
          ...(policy.serverTiming ? [serverTiming()] : []),
          withPolicy(policy),
          canonicalPath(),
          route(),
          cors(),
          headerHygiene(policy),
          authenticate(policy, options.authentication),
          authorise(),
          injectIdentity(),
          rateLimit(),
          forward(),
        ]
      : [...recorded, policyInvalid],
  );

  // One handler for every request: the route stage matches the policy's routes, so Hono
  // neither routes nor extracts the path (the canonical-path stage parses the URL once).
  const app = new HonoBase<PipelineEnv>({ router: new SingleHandlerRouter(), getPath: () => "/" });
  app.all("*", pipeline);
  return app;
}
