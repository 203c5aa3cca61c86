// What CORS grants, decided once for the stages that need it: which requests are preflights,
// which methods a page is granted on a route, and which route takes each method at a URL (a
// browser keeps what a preflight allowed per origin and URL, whatever route answered it).

import { type CorsConfig, HTTP_METHODS } from "./policy-types";
import { type MatchableRoute, routeAt } from "./routes";

/**
 * The method a CORS preflight asks about (upper-cased, as the route stage routes it), or
 * undefined when the request is no preflight: an OPTIONS with both Origin and
 * Access-Control-Request-Method.
 */
export function preflightMethod(method: string, headers: Headers): string | undefined {
  if (method !== "OPTIONS") return undefined;
  const requested = headers.get("access-control-request-method");
  return requested !== null && headers.has("origin") ? requested.toUpperCase() : undefined;
}

/** The methods a CORS page is granted on a route: `allow_methods`, else all the route's. */
export function grantedMethods(cors: CorsConfig, routeMethods: ReadonlySet<string>): readonly string[] {
  return cors.allow_methods ?? [...routeMethods];
}

/** The route each method is routed to at this host and path (as the route stage routes it), in method order. */
export function routesAt<R extends MatchableRoute>(routes: readonly R[], host: string, path: string): Map<string, R> {
  const here = new Map<string, R>();
  for (const method of HTTP_METHODS) {
    const route = routeAt(routes, method, host, path);
    if (route) here.set(method, route);
  }
  return here;
}
