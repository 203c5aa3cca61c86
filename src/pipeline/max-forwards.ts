// `Max-Forwards` on a forwarded OPTIONS: the edge is a hop, asked once the request has passed
// every check and limit.

import { methodsAt } from "../core/route-request";
import type { PipelineContext } from "./context";

/** The most further hops a forwarded OPTIONS is given (RFC 9110 §7.6.2 lets a hop lower it). */
const MAX_FORWARDS_CEILING = 255;

/**
 * `Max-Forwards` on an OPTIONS (RFC 9110 §7.6.2): 0 makes the edge the final recipient, which
 * answers with the methods routed at this URL (those whose requests would go on, as a 405's
 * `Allow` lists them); any other count goes on less one. A value that is no count is dropped:
 * no hop could honour it. Undefined when the request goes on.
 */
export function maxForwardsAnswer(c: PipelineContext): Response | undefined {
  const received = c.req.raw.headers.get("max-forwards");
  if (received === null) return undefined;
  const headers = c.get("forwardHeaders");
  if (!/^\d+$/.test(received)) {
    headers.delete("max-forwards");
    return undefined;
  }
  const count = received.replace(/^0+(?=\d)/, "");
  if (count === "0") {
    const url = c.get("url");
    const allow = methodsAt(c.get("policy").routes, url.host, c.get("canonicalPath"), url.search);
    // An earlier stage's note (key_set_stale) says more of this request: kept.
    const outcome = c.get("outcome");
    if (outcome.detail === undefined) c.set("outcome", { ...outcome, detail: "max_forwards_zero" });
    return new Response(null, { status: 200, headers: { allow } });
  }
  // Unless the client's Connection named it: a hop-by-hop header, already left out.
  if (headers.has("max-forwards")) {
    // Digits alone, however many: past the ceiling they go on as the ceiling.
    const hops = count.length > 3 ? MAX_FORWARDS_CEILING : Math.min(+count - 1, MAX_FORWARDS_CEILING);
    headers.set("max-forwards", String(hops));
  }
  return undefined;
}
