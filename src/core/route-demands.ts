// Whether one route asks of a caller at least what another does: read where a request one
// route takes runs what another route guards (a batch's sub-requests, a page's data).

import type { AuthRequirement, LimitSpec } from "./policy-types";
import { bindsTenant, type MatchableRoute } from "./routes";

/** Whether every caller `route` admits is admitted by `other` too (as far as a policy can say). */
function demandsAtLeast(route: "public" | AuthRequirement, other: "public" | AuthRequirement): boolean {
  if (other === "public") return true;
  if (route === "public") return false;
  const within = (list: readonly string[] | undefined, of: readonly string[]) =>
    list !== undefined && list.length > 0 && list.every((item) => of.includes(item));
  const allOf = route.scopes?.all_of ?? [];
  const anyOf = other.scopes?.any_of;
  const claims = (route.claims ?? []).map((condition) => JSON.stringify(condition));
  return (
    route.issuers.every((id) => other.issuers.includes(id)) &&
    // No list is the issuer's audiences, which a route's own list replaces rather than narrows.
    (other.audiences === undefined ? route.audiences === undefined : within(route.audiences, other.audiences)) &&
    (other.scopes?.all_of ?? []).every((scope) => allOf.includes(scope)) &&
    (!anyOf?.length || allOf.some((scope) => anyOf.includes(scope)) || within(route.scopes?.any_of, anyOf)) &&
    (!other.groups?.any_of.length || within(route.groups?.any_of, other.groups.any_of)) &&
    (other.claims ?? []).every((condition) => claims.includes(JSON.stringify(condition)))
  );
}

/** A limit as the counter it names and how it fails, whatever order its spec was written in. */
const counterOf = (limit: LimitSpec) =>
  JSON.stringify([limit.name, limit.key, limit.limit, limit.window_s, limit.on_error ?? "deny"]);

/**
 * Whether `route` admits no caller `other` refuses: it demands at least as much (audiences as
 * written: a route without a list and one naming its issuer's own count as different), and
 * binds the tenant where `other` does. A route without rules (a bare pattern, in tests) is
 * taken as safe.
 */
export function admitsNoMoreThan(route: MatchableRoute, other: MatchableRoute): boolean {
  if (route.auth === undefined || other.auth === undefined) return true;
  return demandsAtLeast(route.auth, other.auth) && (!bindsTenant(other) || bindsTenant(route));
}

/**
 * Whether another route, `other`, may run what a request `route` took under `route`'s rules:
 * `route` admits no caller `other` refuses (`admitsNoMoreThan`), lets no other site's page read
 * its answers with credentials, and counts every limit `other` counts in the same counters (a
 * `route` or `ip` limit is counted per route, so `other`'s is never one of them).
 */
export function guardsAtLeast(route: MatchableRoute, other: MatchableRoute): boolean {
  const counted = new Set((route.limits ?? []).map(counterOf));
  return (
    admitsNoMoreThan(route, other) &&
    // A page another site may send credentialed requests from (an Access cookie goes with them)
    // may read what `route` answers: never another route's answers.
    !route.cors?.allow_credentials &&
    (other.limits ?? []).every((limit) => limit.key !== "route" && limit.key !== "ip" && counted.has(counterOf(limit)))
  );
}
