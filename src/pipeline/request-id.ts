// Stage: the request's start. An edge-generated request id on the forwarded request, the
// response and the audit record (a client-sent `x-request-id` is never trusted as the id);
// the moment it started, and the outcome and timings later stages fill in.

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
