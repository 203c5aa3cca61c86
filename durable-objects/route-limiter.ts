// One object per route and method: route ceilings, and the per-address counters of public
// routes (per route, method and address when the route has no ceiling).

import { LimiterObject } from "./limiter-object";

export class RouteLimiter extends LimiterObject {}
