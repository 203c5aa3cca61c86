// Policies the validator accepts but that do not do what they say, found when the deployable
// policy is compiled (scripts/compile-policy.mjs: `npm test`, `wrangler deploy`) and tested in
// test/core/policy-lint.test.ts, rather than by the Worker: none of
// these checks belongs on the request path or in the deployable bundle. Each problem names
// the field it concerns, as the validator's do.

import type { CompiledPolicy } from "./policy";
import { laxBatchRoutes } from "./batch-route-lint";
import { routesReadAsOthers, shadowedRoutes } from "./route-overlap";
import { capturesOf } from "./routes";

/** A URL's host name, without the trailing dot of a fully qualified one. */
function hostOf(url: string): string {
  return new URL(url).hostname.replace(/\.$/, "");
}

/**
 * Loopback: `localhost` and its subdomains, 127.0.0.0/8, ::1. Broader than `isLoopbackHost`
 * (urls.ts: the hosts the runtime may reach over plain http): any name that reaches the
 * machine itself is one a deployed policy must not name.
 */
function isLoopback(url: string): boolean {
  const host = hostOf(url);
  // The URL parser writes an IPv4 host as four decimals: `127.app.example.com` is a name.
  return host === "localhost" || host.endsWith(".localhost") || /^127(\.\d+){3}$/.test(host) || host === "[::1]";
}

/** Hosts a deployed policy may not send requests to: loopback, and addresses rather than names. */
function isLocalOrAddress(url: string): boolean {
  return isLoopback(url) || /^[\d.]+$|^\[/.test(hostOf(url));
}

/**
 * Every problem found: routes an earlier route shadows (see route-overlap.ts), and
 * - a credentialed CORS origin over plain http (anyone on its network path can script that
 *   page, and read what the credentials let it read);
 * - a CORS `allow_headers` list without `authorization` on a route that takes bearer tokens
 *   (every preflight for a request carrying one is refused);
 * - a route limit named like a default of another key: it replaces the default on that route
 *   (limits are merged by name), so the route silently loses, say, its per-user limit;
 * - `:tenant` in a public route's path: with no token there is nothing to bind it to;
 * - a route for one path every request of which a reading refuses (route-overlap.ts);
 * - a route written for an OData `$batch` that admits callers a route under its root refuses
 *   (its sub-requests run under the batch route's rules: see batch-route-lint.ts);
 * - with `deployed`, an upstream, key set or resource metadata URL on loopback or at a bare address (fine in the
 *   local stack's policy, never in the one deployed).
 */
export function policyProblems(policy: CompiledPolicy, { deployed = false } = {}): string[] {
  const problems = [...shadowedRoutes(policy), ...routesReadAsOthers(policy), ...laxBatchRoutes(policy)];
  for (const route of policy.routes) {
    const at = `routes[${route.index}]`;
    for (const origin of route.cors?.allow_credentials ? route.cors.allow_origins : []) {
      if (origin.startsWith("http:") && !isLoopback(origin))
        problems.push(`${at}.cors.allow_origins: "${origin}" gets credentialed answers over plain http`);
    }
    for (const limit of route.limits) {
      const replaced = route.replacedDefaults?.find((inherited) => inherited.name === limit.name);
      if (replaced && limit.key !== replaced.key)
        problems.push(
          `${at}.limits: "${limit.name}", a ${limit.key} limit, replaces the default ${replaced.key} limit of that name on this route`,
        );
    }
    // A page sends a bearer token in Authorization, which a list given instead of the default
    // must name: else every cross-origin request with one is refused at its preflight.
    const headers = route.cors?.allow_headers;
    const bearer = route.auth !== "public" && route.auth.issuers.some((id) => policy.issuers.get(id)?.kind === "oidc");
    if (bearer && headers && !headers.some((name) => name.toLowerCase() === "authorization"))
      problems.push(`${at}.cors.allow_headers: has no "authorization", which the route's bearer tokens come in`);
    // A `:tenant` host still chooses the hosts (a shop platform's public storefront on its
    // shops' hosts): no other pattern names them. In a path, `*` says the same.
    if (route.auth === "public" && capturesOf(route.pattern).length > 0)
      problems.push(`${at}: :tenant on a public route binds nothing: write * for the segment`);
    if (deployed && "url" in route.upstream && isLocalOrAddress(route.upstream.url))
      problems.push(`${at}.upstream: ${route.upstream.url} is local or an address`);
    // Sent to clients in every challenge: one copied from the local stack sends them all to
    // their own machine to find the authorisation server.
    const metadata = route.auth !== "public" ? route.auth.resource_metadata : undefined;
    if (deployed && metadata && isLocalOrAddress(metadata))
      problems.push(`${at}.auth.resource_metadata: ${metadata} is local or an address`);
  }
  if (deployed) {
    for (const issuer of policy.issuers.values()) {
      for (const url of [issuer.issuer, issuer.jwksUri, issuer.discoveryUrl]) {
        if (url && isLocalOrAddress(url)) problems.push(`issuers.${issuer.id}: ${url} is local or an address`);
      }
    }
  }
  return problems;
}
