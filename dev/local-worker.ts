// Worker entry for `npm start` (wrangler env "local"): the demo policy, trusting only the
// development identity provider on loopback.

// The policy's text as well as the object local-policy.ts imports: only the text still shows a
// name written twice in one object, which the object already settled "last one wins". esbuild
// (wrangler) reads the attribute; tsc knows import attributes only under module esnext.
// @ts-expect-error -- TS2823, see above; the type tsc gives it (the object) is checked below
import policyText from "../policy/policy.json" with { type: "text" };
import { createApp } from "../src/app";
import { duplicateNames } from "../src/core/duplicate-names";
import { PolicyError } from "../src/core/policy";
import { createPipelineApp } from "../src/pipeline-app";
import { localPolicy } from "./local-policy";

function localApp() {
  // A bundler that ignored the attribute would hand over the object: refuse rather than skip the check.
  if (typeof policyText !== "string") throw new Error("policy/policy.json was not bundled as text");
  const duplicates = duplicateNames(policyText, "policy");
  if (duplicates.length === 0) return createApp(localPolicy());
  // As createApp answers any invalid policy: its problems logged (npm start lists them under its
  // banner) and every request refused with 500 misconfigured.
  console.error(String(new PolicyError(duplicates)));
  return createPipelineApp(undefined);
}

export default localApp();
export { RouteLimiter } from "../durable-objects/route-limiter";
export { TenantLimiter } from "../durable-objects/tenant-limiter";
