// Worker entry for `npm start` (wrangler env "local"): the demo policy, trusting only the
// development identity provider on loopback.

// The policy as text, not the object a JSON import gives (local-policy.ts's own import, its
// default for the tests, is bundled as well): only the text still shows a name written twice
// in one object, which the object already settled "last one wins". esbuild
// (wrangler) reads the attribute; tsc knows import attributes only under module esnext.
// @ts-expect-error -- TS2823, see above; the type tsc gives it (the object) is checked below
import policyText from "../policy/policy.json" with { type: "text" };
import { appFor } from "../src/app";
import { compilePolicy, parsePolicyText } from "../src/core/policy";
import type { PolicyDocument } from "../src/core/policy-types";
import { localPolicy } from "./local-policy";

function localApp() {
  // A bundler that ignored the attribute would hand over the object: refuse rather than skip the check.
  const text: unknown = policyText;
  if (typeof text !== "string") throw new Error("policy/policy.json was not bundled as text");
  // A name written twice is refused as createApp refuses any invalid policy: its problems logged
  // (npm start lists them under its banner) and every request answered 500 misconfigured.
  return appFor(() => compilePolicy(localPolicy(parsePolicyText(text) as PolicyDocument)));
}

export default localApp();
export { RouteLimiter } from "../durable-objects/route-limiter";
export { TenantLimiter } from "../durable-objects/tenant-limiter";
