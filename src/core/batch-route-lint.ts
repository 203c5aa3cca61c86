// A route written for an OData `$batch` (`/odata/$batch`) runs, under its own rules, the
// sub-requests its body names anywhere under its root: the edge lets such a batch through only
// on a route written for it (route-readings.ts, `readAsAnotherRoute`), so that route must admit no
// caller a route under its root refuses. Checked with the policy lint, never by the Worker.

import type { CompiledPolicy, CompiledRoute } from "./policy";
import { admitsNoMoreThan } from "./route-demands";
import { coversHost, foldedLiteral, hostsOverlap, matchesBelow, takesMethod } from "./routes";

/**
 * Whether `earlier` takes every request under the root (`root`, as written) that `later` would,
 * so that `later`'s rules never apply there: a `**` at or before the root, after segments that
 * take the root's (a literal exactly, as routing matches), for `later`'s host and every method
 * it takes.
 */
function shadowsUnderRoot(earlier: CompiledRoute, later: CompiledRoute, root: readonly string[]): boolean {
  const parts = earlier.pattern.parts;
  const rest = parts.findIndex((part) => part.kind === "rest");
  return (
    rest !== -1 &&
    rest <= root.length &&
    parts.slice(0, rest).every((part, i) => part.kind !== "literal" || part.value === root[i]) &&
    coversHost(earlier.host, later.host) &&
    [...later.methods].every((method) => takesMethod(earlier.methods, method))
  );
}

/**
 * The route with the audiences it takes written out: without a list of its own, its issuers'
 * (which a route's own list replaces rather than narrows), so that routes are compared by what
 * they accept.
 */
function withAudiences(policy: CompiledPolicy, route: CompiledRoute): CompiledRoute {
  if (route.auth === "public" || route.auth.audiences !== undefined) return route;
  const audiences = route.auth.issuers.flatMap((id) => policy.issuers.get(id)?.audiences ?? []);
  return { ...route, auth: { ...route.auth, audiences } };
}

/**
 * One problem per route under a `$batch` route's root that demands more than the batch route,
 * unless an earlier route takes everything it would there.
 */
export function laxBatchRoutes(policy: CompiledPolicy): string[] {
  const problems: string[] = [];
  for (const batch of policy.routes) {
    const parts = batch.pattern.parts;
    const at = parts.findIndex((part) => part.kind === "literal" && foldedLiteral(part.value) === "$batch");
    const root = parts.slice(0, at);
    // A root with a wildcard is any of several: judged by no one route here.
    if (at === -1 || !root.every((part) => part.kind === "literal")) continue;
    const written = root.map((part) => (part as { value: string }).value);
    const segments = written.map(foldedLiteral);
    for (const other of policy.routes) {
      if (other === batch || !matchesBelow(other.pattern, segments)) continue;
      if (policy.routes.some((earlier) => earlier.index < other.index && shadowsUnderRoot(earlier, other, written)))
        continue;
      // Only a route for a host no request to the batch's could name is out of its reach.
      if (!hostsOverlap(batch.host, other.host)) continue;
      // Limits are not compared: a batch is counted once on each counter, whatever its body holds.
      if (admitsNoMoreThan(withAudiences(policy, batch), withAudiences(policy, other))) continue;
      problems.push(
        `routes[${batch.index}] (${batch.name}): its $batch runs requests under routes[${other.index}] (${other.name}), which demands more of a caller`,
      );
    }
  }
  return problems;
}
