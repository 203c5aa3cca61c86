// Worker entry for `npm start` (wrangler env "local"): the demo policy, trusting only the
// development identity provider on loopback.

import { createApp } from "../src/app";
import { localPolicy } from "./local-policy";

export default createApp(localPolicy());
export { RouteLimiter } from "../durable-objects/route-limiter";
export { TenantLimiter } from "../durable-objects/tenant-limiter";
