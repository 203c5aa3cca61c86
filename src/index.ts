// Worker entry: the pipeline with the bundled policy, and the Durable Object classes.

import { createApp } from "./app";
import policy from "../policy/policy.json";

export default createApp(policy);
export { RouteLimiter } from "../durable-objects/route-limiter";
export { TenantLimiter } from "../durable-objects/tenant-limiter";
