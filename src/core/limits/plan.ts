// Which limits apply to a request, their sizes (tenant overrides), and which object counts
// each: the limiter calls one request makes.

import type { Identity } from "../identity";
import type { LimitKey, LimitSpec } from "../policy-types";
import { canonicalMethod } from "../routes";
import { counterIdOf, nameOf } from "./counter-ids";

/** The two kinds of limiter object. */
export type LimiterKind = "tenant" | "route";

export interface AppliedLimit {
  name: string;
  key: LimitKey;
  /** Size after any tenant override. */
  limit: number;
  windowS: number;
  onError: "deny" | "allow";
  object: LimiterKind;
  counterId: string;
}

export interface LimitPlan {
  limits: AppliedLimit[];
  /** Name of the tenant-kind object, when a tenant or user limit applies. */
  tenantObject?: string;
  /** Name of the route-kind object, when a route or ip limit applies. */
  routeObject?: string;
}

export interface PlanInput {
  routeName: string;
  /** The request method; HEAD is counted as GET. */
  method: string;
  /** The route's limits, defaults already merged (CompiledRoute.limits). */
  limits: readonly LimitSpec[];
  identity?: Pick<Identity, "issuerId" | "subject" | "tenant">;
  /** The client address as sent by Cloudflare (`CF-Connecting-IP`), for ip limits. */
  clientAddress?: string | null;
  /** The calling Worker's zone (`CF-Worker`), which tells Worker callers apart. */
  workerZone?: string | null;
  tenantOverrides: Readonly<Record<string, Readonly<Record<string, { limit: number; window_s?: number }>>>>;
}

export type PlanResult = { ok: true; plan: LimitPlan } | { ok: false; detail: "limit_needs_identity" };

/** A tenant's override of a limit. Own keys only: no tenant or limit name may reach Object.prototype. */
function overrideOf(
  overrides: PlanInput["tenantOverrides"],
  tenant: string,
  limitName: string,
): { limit: number; window_s?: number } | undefined {
  const byName = Object.hasOwn(overrides, tenant) ? overrides[tenant] : undefined;
  return byName && Object.hasOwn(byName, limitName) ? byName[limitName] : undefined;
}

/**
 * Decide which limits apply to a request, their sizes, and which object counts each:
 *
 * - `tenant` and `user` limits are counted in one object per tenant, so both are decided
 *   atomically in one round trip. The user key is the issuer and subject within the tenant.
 *   A caller whose token names no tenant has no tenant limit (there is no tenant to count);
 *   its user limits are counted in an object of its own, so tenant-less callers never share
 *   one hot object. Tenant overrides resize tenant and user limits only.
 * - `route` limits are counted in one object per route, in a counter per canonical method.
 * - `ip` limits (public routes) are counted per route, whatever the method: in the route's
 *   object when the route also has a route limit (so both are decided together), otherwise
 *   in an object per route and client address, which spreads public traffic over many objects.
 *
 * A route's own limit has replaced any inherited default of the same name by now (the policy
 * compiler merges them); it is counted apart from it unless declared identically (see
 * `counterIdOf`).
 */
export function planLimits(input: PlanInput): PlanResult {
  const specs = input.limits;
  const method = canonicalMethod(input.method);
  const identity = input.identity;
  const hasRouteLimit = specs.some((s) => s.key === "route");
  // Read only where an ip limit or a per-address object needs it (tenant and user limits do not).
  let address: string | undefined;
  const plan: LimitPlan = { limits: [] };
  for (const spec of specs) {
    let size = { limit: spec.limit, windowS: spec.window_s };
    let object: LimiterKind;
    let counterId: string;
    if (spec.key === "tenant" || spec.key === "user") {
      if (!identity) return { ok: false, detail: "limit_needs_identity" };
      const tenant = identity.tenant;
      if (spec.key === "tenant" && tenant === undefined) continue;
      const override = tenant === undefined ? undefined : overrideOf(input.tenantOverrides, tenant, spec.name);
      if (override) size = { limit: override.limit, windowS: override.window_s ?? spec.window_s };
      object = "tenant";
      plan.tenantObject ??=
        tenant === undefined ? nameOf("caller", identity.issuerId, identity.subject) : nameOf("tenant", tenant);
      counterId = spec.key === "tenant" ? counterIdOf(spec) : counterIdOf(spec, identity.issuerId, identity.subject);
    } else {
      object = "route";
      if (spec.key === "ip" || !hasRouteLimit) address ??= clientAddressKey(input.clientAddress, input.workerZone);
      // The object is per route, not per method: an ip limit is spent once on the route.
      counterId = counterIdOf(spec, spec.key === "route" ? method : (address as string));
      plan.routeObject ??= hasRouteLimit
        ? nameOf("route", input.routeName)
        : nameOf("route", input.routeName, address as string);
    }
    plan.limits.push({
      name: spec.name,
      key: spec.key,
      limit: size.limit,
      windowS: size.windowS,
      onError: spec.on_error ?? "deny",
      object,
      counterId,
    });
  }
  return { ok: true, plan };
}

/** The address Cloudflare gives every request a Worker of another zone sends. */
const WORKER_ADDRESS = "[2a06:98c0:3600::103]";

/**
 * The client key for ip limits. IPv4 as is; IPv6 by its /64 prefix (one subscriber usually
 * holds a whole /64, so per-address limits would be trivial to dodge); IPv4-mapped IPv6 as
 * IPv4. A missing header counts as `unknown` and an unparsable one as `invalid`: each is one
 * shared key, so neither can be used to escape a limit. Workers of other zones all come from
 * one address: those are told apart by the zone Cloudflare names in `CF-Worker` on every
 * request a Worker sends (a client sending its own comes from its own address: ignored).
 */
export function clientAddressKey(raw: string | null | undefined, workerZone?: string | null): string {
  const value = raw?.trim() ?? "";
  if (value === "") return "unknown";
  // The URL parser checks the address and writes it canonically: IPv4 dotted, IPv6 in
  // lower case with the longest run of zero groups as `::`, an IPv4-mapped one as ::ffff:x:y.
  let host: string;
  try {
    if (!/^[\da-fx:.]+$/i.test(value)) return "invalid";
    host = new URL(`http://${value.includes(":") ? `[${value}]` : value}`).hostname;
  } catch {
    return "invalid";
  }
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return host;
  if (host[0] !== "[") return "invalid";
  if (host === WORKER_ADDRESS && workerZone) return `worker:${workerZone.toLowerCase().slice(0, 255)}`;
  const [head, tail] = host
    .slice(1, -1)
    .split("::")
    .map((part) => (part ? part.split(":") : []));
  const groups = tail ? [...head!, ...Array(8 - head!.length - tail.length).fill("0"), ...tail] : head!;
  if (groups.slice(0, 6).join(":") === "0:0:0:0:0:ffff")
    return groups
      .slice(6)
      .map((group) => `${Number.parseInt(group, 16) >> 8}.${Number.parseInt(group, 16) & 255}`)
      .join(".");
  return `${groups.slice(0, 4).join(":")}::/64`;
}
