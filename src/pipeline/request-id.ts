// Stage 1: an edge-generated request id on the forwarded request, the response and the
// audit record. A client-sent `x-request-id` is never trusted as the id.

import type { Stage } from "./stage";

export function requestId(): Stage {
  return {
    run(c) {
      c.set("requestId", crypto.randomUUID());
      c.set("startedAt", Date.now());
      c.set("outcome", { decision: "allow" });
      c.set("timings", {});
      return undefined;
    },
    finish(c, response) {
      response.headers.set("x-request-id", c.get("requestId"));
      return response;
    },
  };
}
