// How the route stage routes a request, and what every method reaches at its URL: the first
// route that takes it, unless an origin may read it as another route's (route-readings.ts).
// One answer for the request itself, a 405's `Allow`, a CORS preflight and Max-Forwards.

import { HTTP_METHODS } from "./policy-types";
import { queryReadAsAnotherRoute, type RouteAmbiguity, readAsAnotherRoute } from "./route-readings";
import { findRoute, hasUncapturedLabels, type MatchableRoute, type RouteMatch, takesMethod } from "./routes";
import { originQuery } from "./tokens/credentials";

/** Why the route stage refuses a request a route took: an origin may read it as another's. */
export type RouteRefusal = RouteAmbiguity | "ambiguous_host";

/**
 * How the route stage routes a request: the first route that takes its method, host and path,
 * or why it is refused (its host, path or query read as another route's), or undefined where no
 * route takes it.
 */
export function routeRequest<R extends MatchableRoute>(
  routes: readonly R[],
  method: string,
  host: string,
  path: string,
  search: string,
): RouteMatch<R> | RouteRefusal | undefined {
  const match = findRoute(routes, method, host, path);
  if (!match) return undefined;
  // Served by a route for any host, read by the origin as a tenant host's.
  if (!match.route.host && hasUncapturedLabels(routes, host)) return "ambiguous_host";
  // `/API/Admin` is `/api/admin` to an origin that routes without regard to case, and
  // `/v1/admin.json` is `/v1/admin` to Rails: a request an origin may take for another
  // route's reaches neither.
  const reading = readAsAnotherRoute(routes, method, host, path, match.route);
  if (reading) return reading;
  // CodeIgniter's path in the query the origin gets.
  if (search.includes("/") && queryReadAsAnotherRoute(routes, method, host, path, originQuery(search), match.route))
    return "ambiguous_path_info";
  return match;
}

/** The methods routed at this URL, as an `Allow` header lists them (empty when none). */
export function methodsAt(routes: readonly MatchableRoute[], host: string, path: string, search: string): string {
  return [...routesAt(routes, host, path, search).keys()].join(", ");
}

/** Per route list: each method's first method that every route takes or leaves alike. */
const methodTwins = new WeakMap<readonly MatchableRoute[], Map<string, string>>();

/**
 * Each method's twin, the first method every route of the list takes or leaves alike (HEAD's is
 * GET wherever no route names HEAD alone): routing sees a method only in which routes take it,
 * so twins are routed alike. Worked out once per route list.
 */
function methodsRoutedAlike(routes: readonly MatchableRoute[]): Map<string, string> {
  let twins = methodTwins.get(routes);
  if (!twins) {
    twins = new Map();
    const firsts = new Map<string, string>();
    for (const method of HTTP_METHODS) {
      const taking = routes.map((route) => +takesMethod(route.methods, method)).join("");
      if (!firsts.has(taking)) firsts.set(taking, method);
      twins.set(method, firsts.get(taking) as string);
    }
    methodTwins.set(routes, twins);
  }
  return twins;
}

/**
 * The route each method is routed to at this URL, in method order, as the route stage routes
 * that method's request (`routeRequest`: none where it refuses it, by host, path or query); a
 * method and its twin are routed once.
 */
export function routesAt<R extends MatchableRoute>(
  routes: readonly R[],
  host: string,
  path: string,
  search: string,
): Map<string, R> {
  const twins = methodsRoutedAlike(routes);
  const here = new Map<string, R>();
  const asked = new Map<string, R | undefined>();
  for (const method of HTTP_METHODS) {
    const twin = twins.get(method) as string;
    let route: R | undefined;
    if (asked.has(twin)) route = asked.get(twin);
    else {
      const routed = routeRequest(routes, method, host, path, search);
      route = typeof routed === "object" ? routed.route : undefined;
      asked.set(twin, route);
    }
    if (route) here.set(method, route);
  }
  return here;
}
