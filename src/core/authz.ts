// Route authorisation on a verified identity: scopes (all-of, any-of), groups (any-of),
// claim conditions, and tenant binding for routes that capture a tenant.

import type { DenyReason } from "./deny";
import type { Identity } from "./identity";
import type { AuthRequirement, ClaimCondition } from "./policy-types";
import { TENANT_CAPTURE } from "./routes";

export type AuthzResult = { ok: true } | { ok: false; reason: DenyReason; detail: string; requiredScope?: string };

/** A claim condition holds when the claim equals a listed value (or, for an array claim, any element does). */
function conditionHolds(condition: ClaimCondition, claims: Readonly<Record<string, unknown>>): boolean {
  const value = claims[condition.claim];
  const allowed = "equals" in condition ? [condition.equals] : condition.one_of;
  const values = Array.isArray(value) ? value : [value];
  return values.some((v) => allowed.some((a) => a === v));
}

/** Whether `identity` meets `requirement` on a route that bound `routeParams`: scopes, groups, claims, tenant. */
export function authorisationFor(
  identity: Identity,
  requirement: AuthRequirement,
  routeParams: Readonly<Record<string, string>>,
): AuthzResult {
  const scopes = new Set(identity.scopes);
  const allOf = requirement.scopes?.all_of ?? [];
  const anyOf = requirement.scopes?.any_of ?? [];
  const missingAll = allOf.filter((s) => !scopes.has(s));
  const anyOk = anyOf.length === 0 || anyOf.some((s) => scopes.has(s));
  if (missingAll.length > 0 || !anyOk) {
    // RFC 6750 §3: `scope` names what the route needs. With any-of, the first option suffices.
    const needed = [...allOf, ...(anyOk ? [] : anyOf.slice(0, 1))];
    return { ok: false, reason: "insufficient_scope", detail: "scope", requiredScope: needed.join(" ") };
  }
  const groups = requirement.groups?.any_of;
  if (groups && !groups.some((g) => identity.groups.includes(g))) {
    return { ok: false, reason: "forbidden", detail: "group" };
  }
  for (const condition of requirement.claims ?? []) {
    if (!conditionHolds(condition, identity.claims)) {
      return { ok: false, reason: "forbidden", detail: `claim:${condition.claim}` };
    }
  }
  const boundTenant = routeParams[TENANT_CAPTURE];
  if (boundTenant !== undefined && boundTenant !== identity.tenant) {
    return { ok: false, reason: "tenant_mismatch", detail: identity.tenant ? "tenant" : "token_has_no_tenant" };
  }
  return { ok: true };
}
