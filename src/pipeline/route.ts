// Stage 3: find the route. Default deny: no match is a 404 at the edge, never forwarded.

import { findRoute } from "../core/routes";
import { deny } from "./respond";
import type { Stage } from "./stage";

export function route(): Stage {
  return {
    run(c) {
      const policy = c.get("policy");
      // A CORS preflight is routed by the method it asks about, not by OPTIONS itself.
      const preflightMethod = c.req.method === "OPTIONS" ? c.req.header("access-control-request-method") : undefined;
      const method = preflightMethod && c.req.header("origin") ? preflightMethod.toUpperCase() : c.req.method;
      const match = findRoute(policy.routes, method, c.get("url").host, c.get("canonicalPath"));
      if (!match) return deny(c, "route_not_found");
      c.set("route", match.route);
      c.set("routeParams", match.params);
      return undefined;
    },
  };
}
