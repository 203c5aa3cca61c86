// Stage: find the route. Default deny: no match is a 404 at the edge, never forwarded.

import { preflightMethod } from "../core/cors";
import { queryReadAsAnotherRoute, readAsAnotherRoute } from "../core/route-readings";
import { findRoute, hasEmptyLabel, hasUncapturedLabels } from "../core/routes";
import { originQuery } from "../core/tokens/credentials";
import { serviceBinding } from "./context";
import { deny } from "./respond";
import type { Stage } from "./stage";

export function route(): Stage {
  return {
    run(c) {
      const policy = c.get("policy");
      // A CORS preflight is routed by the method it asks about, not by OPTIONS itself.
      const method = preflightMethod(c.req.method, c.req.raw.headers) ?? c.req.method;
      const host = c.get("url").host;
      // A host route would miss it, and a host-less one behind it serve what the host's guards.
      if (hasEmptyLabel(host)) return deny(c, "bad_request", { detail: "ambiguous_host" });
      const path = c.get("canonicalPath");
      const match = findRoute(policy.routes, method, host, path);
      if (!match) return deny(c, "route_not_found");
      // Served by a route for any host, read by the origin as a tenant host's.
      if (!match.route.host && hasUncapturedLabels(policy.routes, host))
        return deny(c, "bad_request", { detail: "ambiguous_host" });
      // `/API/Admin` is `/api/admin` to an origin that routes without regard to case, and
      // `/v1/admin.json` is `/v1/admin` to Rails: a request an origin may take for another
      // route's reaches neither.
      const ambiguity = readAsAnotherRoute(policy.routes, method, host, path, match.route);
      if (ambiguity) return deny(c, "bad_request", { detail: ambiguity });
      // CodeIgniter's path in the query the origin gets.
      const search = c.get("url").search;
      if (
        search.includes("/") &&
        queryReadAsAnotherRoute(policy.routes, method, host, path, originQuery(search), match.route)
      )
        return deny(c, "bad_request", { detail: "ambiguous_path_info" });
      c.set("route", match.route);
      c.set("routeParams", match.params);
      // A missing service binding is found here, before any token is checked or any limit
      // charged for a request that could never be forwarded (its record names the route).
      const upstream = match.route.upstream;
      if ("service" in upstream && !serviceBinding(c, upstream.service)) {
        return deny(c, "misconfigured", { detail: `service_binding_missing:${upstream.service}` });
      }
      return undefined;
    },
  };
}
