// Worker entry: the pipeline with the bundled policy, compiled at build time
// (scripts/compile-policy.mjs, which wrangler runs before every deploy), and the Durable
// Object classes.

import artifact from "../policy/policy.compiled.json";
import { type PolicyArtifact, policyFromArtifact } from "./core/policy-artifact";
import { createPipelineApp } from "./pipeline-app";

export default createPipelineApp(policyFromArtifact(artifact as unknown as PolicyArtifact));
export { RouteLimiter } from "../durable-objects/route-limiter";
export { TenantLimiter } from "../durable-objects/tenant-limiter";
