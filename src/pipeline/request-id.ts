// Stage 1: an edge-generated request id on the forwarded request, the response and the
// audit record. A client-sent `x-request-id` is never trusted as the id.

import type { MiddlewareHandler } from "hono";
import type { PipelineEnv } from "./context";

export function requestId(): MiddlewareHandler<PipelineEnv> {
  return async (c, next) => {
    const id = crypto.randomUUID();
    c.set("requestId", id);
    c.set("startedAt", Date.now());
    c.set("outcome", { decision: "allow" });
    c.set("timings", {});
    c.set("responseHeaders", new Headers());
    await next();
    c.res.headers.set("x-request-id", id);
  };
}
