// One object per tenant (or per tenant-less caller): the tenant's counters and its users'
// counters, so a request's tenant and user limits are decided together in one round trip.

import { LimiterObject } from "./limiter-object";

export class TenantLimiter extends LimiterObject {}
