// Stage: find the route. Default deny: no match is a 404 (405 where routes take other methods
// at the URL) at the edge, never forwarded.

import { preflightMethod } from "../core/cors";
import { methodsAt, routeRequest } from "../core/route-request";
import { isAmbiguousHost } from "../core/routes";
import { serviceBinding } from "./context";
import { deny } from "./respond";
import type { Stage } from "./stage";

export function route(): Stage {
  return {
    run(c) {
      const policy = c.get("policy");
      // A CORS preflight is routed by the method it asks about, not by OPTIONS itself.
      const method = preflightMethod(c.req.method, c.req.raw.headers) ?? c.req.method;
      const url = c.get("url");
      const host = url.host;
      // A host route would miss it, and a host-less one behind it serve what the host's guards.
      if (isAmbiguousHost(host)) return deny(c, "bad_request", { detail: "ambiguous_host" });
      const path = c.get("canonicalPath");
      const search = url.search;
      const match = routeRequest(policy.routes, method, host, path, search);
      if (!match) {
        // A URL routed for other methods is 405 with those methods (RFC 9110 §15.5.6), as the
        // origin itself would answer: an MCP client that opens its event stream with a GET
        // where the server offers none must be told 405, and reads 404 as a lost session.
        const allow = methodsAt(policy.routes, host, path, search);
        return allow ? deny(c, "method_not_allowed", { allow }) : deny(c, "route_not_found");
      }
      if (typeof match === "string") return deny(c, "bad_request", { detail: match });
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
