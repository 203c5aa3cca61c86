// One object per route: route ceilings (a counter per method), and the per-address counters
// of public routes (an object per route and address when the route has no ceiling).

import { LimiterObject } from "./limiter-object";

export class RouteLimiter extends LimiterObject {}
