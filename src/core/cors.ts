// What CORS grants, defined in one place for the stages that need it: which requests are
// preflights, and which methods a page is granted on a route.

import type { CorsConfig } from "./policy-types";

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
export function grantedMethods(
  cors: CorsConfig,
  routeMethods: ReadonlySet<string>,
): readonly string[] | ReadonlySet<string> {
  return cors.allow_methods ?? routeMethods;
}
