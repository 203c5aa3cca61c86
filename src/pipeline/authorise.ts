// Stage: authorise the verified identity against the route's requirement.

import type { MiddlewareHandler } from "hono";
import { authorise as decide } from "../core/authz";
import type { PipelineEnv } from "./context";
import { deny } from "./respond";

export function authorise(): MiddlewareHandler<PipelineEnv> {
  return async (c, next) => {
    const auth = c.get("route").auth;
    if (auth === "public") return next();
    const decision = decide(c.get("identity"), auth, c.get("routeParams"));
    if (!decision.ok) {
      return deny(c, decision.reason, {
        detail: decision.detail,
        ...(decision.requiredScope !== undefined ? { requiredScope: decision.requiredScope } : {}),
      });
    }
    await next();
  };
}
