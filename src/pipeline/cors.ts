// Stage: CORS. A preflight for a CORS-enabled route is answered here, before any
// authentication (browsers never send credentials on a preflight). A preflight for a route
// without CORS is refused, never forwarded. Actual responses get the CORS headers.

import { grantedMethods, preflightMethod } from "../core/cors";
import type { CorsConfig } from "../core/policy-types";
import { routesAt } from "../core/route-request";
import { takesMethod } from "../core/routes";
import { responseHeaders } from "./context";
import { deny } from "./respond";
import type { Stage } from "./stage";

function allowedOrigin(cors: CorsConfig, origin: string): string | undefined {
  if (cors.allow_origins.includes(origin)) return origin;
  if (cors.allow_origins.includes("*")) return "*";
  return undefined;
}

export function cors(): Stage {
  const run: Stage["run"] = (c) => {
    const route = c.get("route");
    const config = route.cors;
    const origin = c.req.header("origin");
    const requested = preflightMethod(c.req.method, c.req.raw.headers);

    if (origin !== undefined && requested !== undefined) {
      // Allowed or refused, the answer depends on the Origin.
      const headers = responseHeaders(c);
      headers.append("vary", "Origin");
      if (!config) return deny(c, "cors_rejected", { detail: "route_has_no_cors" });
      const allowOrigin = allowedOrigin(config, origin);
      if (!allowOrigin) return deny(c, "cors_rejected", { detail: "origin_not_allowed" });
      // Only the methods this route takes at this URL: a browser keeps the list per origin and
      // URL, and would send a method an earlier route takes here (one without CORS, or with
      // other origins) without asking that route's preflight.
      const url = c.get("url");
      const here = routesAt(c.get("policy").routes, url.host, c.get("canonicalPath"), url.search);
      const methods = [...grantedMethods(config, route.methods)].filter((method) => here.get(method) === route);
      if (!takesMethod(methods, requested)) return deny(c, "cors_rejected", { detail: "method_not_allowed" });
      const requestedHeaders = (c.req.header("access-control-request-headers") ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean);
      const allowHeaders = (config.allow_headers ?? ["authorization", "content-type"]).map((h) => h.toLowerCase());
      if (requestedHeaders.some((h) => !allowHeaders.includes(h))) {
        return deny(c, "cors_rejected", { detail: "header_not_allowed" });
      }
      headers.set("access-control-allow-origin", allowOrigin);
      headers.set("access-control-allow-methods", methods.join(", "));
      headers.set("access-control-allow-headers", allowHeaders.join(", "));
      // A browser keeps the allowed headers per URL whatever the method (and needs no kept
      // method for GET, HEAD or POST): where another route takes any method here, headers this
      // route allows would serve that route's requests unasked, so none of this answer is kept.
      const shared = [...here.values()].some((other) => other !== route);
      headers.set("access-control-max-age", shared ? "0" : String(config.max_age_s ?? 600));
      if (config.allow_credentials) headers.set("access-control-allow-credentials", "true");
      return new Response(null, { status: 204, headers });
    }

    if (config) {
      // Every response of a CORS route varies by Origin, even one to a request without it:
      // a shared cache must not hand a response made for one page to another.
      const extra = responseHeaders(c);
      extra.append("vary", "Origin");
      const allowOrigin = origin === undefined ? undefined : allowedOrigin(config, origin);
      // A page may read only answers to methods the policy grants it: a simple POST is sent
      // without asking first, so allow_methods is kept here too, not only in preflights.
      if (allowOrigin && takesMethod(grantedMethods(config, route.methods), c.req.method)) {
        extra.set("access-control-allow-origin", allowOrigin);
        if (config.allow_credentials) extra.set("access-control-allow-credentials", "true");
        if (config.expose_headers?.length) extra.set("access-control-expose-headers", config.expose_headers.join(", "));
      }
    }
    return undefined;
  };
  return { run };
}
