// Stage 3: find the route. Default deny: no match is a 404 at the edge, never forwarded.

import type { MiddlewareHandler } from "hono";
import { findRoute } from "../core/routes";
import type { PipelineEnv } from "./context";
import { deny } from "./respond";

export function route(): MiddlewareHandler<PipelineEnv> {
  return async (c, next) => {
    const policy = c.get("policy");
    // A CORS preflight is routed by the method it asks about, not by OPTIONS itself.
    const preflightMethod = c.req.method === "OPTIONS" ? c.req.header("access-control-request-method") : undefined;
    const method = preflightMethod && c.req.header("origin") ? preflightMethod.toUpperCase() : c.req.method;
    const match = findRoute(policy.routes, method, c.get("url").host, c.get("canonicalPath"));
    if (!match) return deny(c, "route_not_found");
    c.set("route", match.route);
    c.set("routeParams", match.params);
    await next();
  };
}
