// Routes that can never match, for some method: an earlier route takes every such request
// first (routes match in policy order). `/v1/**` made public before `/v1/admin/**` made
// authenticated sends every admin request through the public route, and nothing at run time
// says so. Checked with the policy lint (src/core/policy-lint.ts) when the deployable policy is
// compiled, not by the Worker: the analysis has no place on the request path or in the deployable bundle.

import { foldCase } from "./case-fold";
import type { CompiledPolicy, CompiledRoute } from "./policy";
import { HTTP_METHODS } from "./policy-types";
import { readAsAnotherRoute } from "./route-readings";
import { admitsNoMoreThan } from "./route-demands";
import {
  bindsHostTenant,
  bindsTenant,
  coversHost,
  findRoute,
  type HostPattern,
  type PathPart,
  takesMethod,
} from "./routes";

/** The methods a route answers, as routing takes them: its own as declared, then HEAD where it allows GET. */
function answeredMethods(route: CompiledRoute): Set<string> {
  return new Set([...route.methods, ...HTTP_METHODS.filter((method) => takesMethod(route.methods, method))]);
}

/**
 * Whether `earlier` matches every list of segments `later` matches (see matchPath); with
 * `anyCase`, as the route stage matches to find a path another route would take but for
 * letter case.
 */
function coversPath(earlier: readonly PathPart[], later: readonly PathPart[], anyCase = false): boolean {
  for (let i = 0; ; i++) {
    const mine = earlier[i];
    const theirs = later[i];
    if (mine?.kind === "rest") return true;
    if (!mine || !theirs) return !mine && !theirs;
    // Zero or more segments of any kind: only `**` takes them all.
    if (theirs.kind === "rest") return false;
    if (mine.kind === "literal") {
      if (theirs.kind !== "literal") return false;
      if (anyCase ? foldCase(theirs.value) !== foldCase(mine.value) : theirs.value !== mine.value) return false;
    } else if (theirs.kind === "literal" && theirs.value === "") {
      // A capture or `*` needs a non-empty segment.
      return false;
    }
  }
}

/**
 * One problem per route and method that an earlier route shadows, as
 * `routes[3] (admin): GET never reaches it: routes[1] (public) takes every such request first`;
 * or takes but for letter case (`/Admin/**` before `/admin/**`): every such request is then
 * refused as ambiguous_case, and the earlier route serves the other spelling.
 */
export function shadowedRoutes(policy: CompiledPolicy): string[] {
  const problems: string[] = [];
  policy.routes.forEach((later, j) => {
    const open = answeredMethods(later);
    for (const earlier of policy.routes.slice(0, j)) {
      if (!coversHost(earlier.host, later.host)) continue;
      const exactly = coversPath(earlier.pattern.parts, later.pattern.parts);
      if (!exactly && !coversPath(earlier.pattern.parts, later.pattern.parts, true)) continue;
      const taken = [...answeredMethods(earlier)].filter((method) => open.delete(method));
      // HEAD alone follows from GET: say it with GET, not on its own.
      const named = taken.filter((method) => method !== "HEAD" || !taken.includes("GET"));
      if (named.length > 0) {
        const how = exactly
          ? "takes every such request first"
          : "takes every such request but for letter case, so each is refused as ambiguous_case";
        problems.push(
          `routes[${j}] (${later.name}): ${named.join(", ")} never reaches it: routes[${earlier.index}] (${earlier.name}) ${how}`,
        );
      }
    }
  });
  return problems;
}

/** A host `pattern` takes (for a `:tenant` host, one tenant's), port included. */
function hostTaken(pattern: HostPattern): string {
  const name = pattern.exact ?? `tenant${pattern.suffix}`;
  return pattern.port === undefined ? name : `${name}:${pattern.port}`;
}

/**
 * Why `route` is refused where a reading takes its path to `other` (see `runsAsStrictly`), and
 * what to write, for the lint's message.
 */
function whyReadAs(route: CompiledRoute, other: CompiledRoute): string {
  const named = `read as routes[${other.index}] (${other.name})'s path, which`;
  if (route.cors?.allow_credentials)
    return `read as routes[${other.index}] (${other.name})'s path, and this route lets another site's page read its answers with credentials: drop allow_credentials here`;
  if (!admitsNoMoreThan(route, other)) return `${named} asks more of a caller: give this route its rules`;
  if (bindsTenant(other) && !(bindsHostTenant(other) && bindsHostTenant(route)))
    return `${named} binds a tenant from its path: let that route take this path too`;
  // Another route's request never counts in a route's own `route` and `ip` counters.
  if (other.limits.some((limit) => limit.key === "route" || limit.key === "ip"))
    return `${named} counts a route or ip limit of its own, which no other route's request counts: take it off that route (or set inherit_default_limits: false there), or drop this route`;
  return `${named} counts limits this route does not: count them here too`;
}

/**
 * One problem per route written for one path (all literals) and method that the route stage
 * refuses on every host it serves, reading the path as another route's that the route does not
 * guard as well: `/orders.json` public beside a guarded `/orders/**` (Rails runs it as
 * `/orders`), every request refused as ambiguous_format. A route for any host is asked about
 * on a host no route names and on each host one does.
 */
export function routesReadAsOthers(policy: CompiledPolicy): string[] {
  const problems: string[] = [];
  const anyHost = [
    "portcullis.invalid",
    ...policy.routes.flatMap((route) => (route.host ? [hostTaken(route.host)] : [])),
  ];
  policy.routes.forEach((route, i) => {
    if (!route.pattern.parts.every((part) => part.kind === "literal")) return;
    const path = `/${route.pattern.parts.map((part) => (part as { value: string }).value).join("/")}`;
    // A literal beyond printable ASCII is escaped in the path a request carries.
    if (!/^[\x21-\x7e]*$/.test(path) || path.includes("%")) return;
    const hosts = route.host ? [hostTaken(route.host)] : anyHost;
    /** The readings that refuse every request of `method` on the hosts the route serves, or none where one goes on. */
    const refusals = (routes: readonly CompiledRoute[], method: string, as = route): string[] | undefined => {
      // Where another route takes the path first, shadowedRoutes says so.
      const readings = hosts
        .filter((host) => findRoute(routes, method, host, path)?.route === as)
        .map((host) => readAsAnotherRoute(routes, method, host, path, as));
      return readings.length === 0 || readings.includes(undefined) ? undefined : (readings as string[]);
    };
    const refused = new Set<string>();
    const named = [...answeredMethods(route)].filter((method) => {
      const readings = refusals(policy.routes, method);
      for (const reading of readings ?? []) refused.add(reading);
      return readings !== undefined && (method !== "HEAD" || !takesMethod(route.methods, "GET"));
    });
    if (named.length === 0) return;
    // The route read as: the one that, given this route's rules and no limits, lets it be
    // reached by this route without credentialed CORS.
    const open = { ...route, cors: undefined };
    const readAs = policy.routes.find((other) => {
      if (other === route) return false;
      const eased = policy.routes.map((r) =>
        r === route ? open : r === other ? { ...other, auth: route.auth, limits: [] } : r,
      );
      return named.every((method) => refusals(eased, method, open) === undefined);
    });
    problems.push(
      `routes[${i}] (${route.name}): ${named.join(", ")} never reaches it: every such request is refused as ${[...refused].join(" or ")}, ${readAs ? whyReadAs(route, readAs) : "read as another route's or tenant's"}`,
    );
  });
  return problems;
}
