// Stage: forward to the origin. The body streams through untouched (upload.ts); the origin
// receives exactly the canonical path that was authorised, the query without credentials and
// overrides (`originQuery`), and the headers the earlier stages prepared. Failures become problem+json that echo nothing of the
// client's request: 502/504 for the origin's, 400/499 for the client's body.

import { TIMED_OUT, withDeadline } from "../core/deadline";
import { clientResponse, keepFromSharedCaches } from "../core/origin-response";
import { originQuery } from "../core/tokens/credentials";
import { addVary, type PipelineContext, serviceBinding, withResponseHeaders } from "./context";
import { maxForwardsAnswer } from "./max-forwards";
import { deny } from "./respond";
import type { Stage } from "./stage";
import { type UploadEnd, watchedBody } from "./upload";

const DEFAULT_ORIGIN_TIMEOUT_MS = 30_000;

/**
 * An allowed answer as the client gets it, with the headers earlier stages asked for
 * (rate-limit fields, CORS). An authenticated one varies by the credential, which the origin
 * never saw: whatever the origin's directives allow, no cache before the edge may hand it to
 * a request without that credential (RFC 9111 §4.1); an Access one is also kept from shared
 * caches, as no `Authorization` keeps them off it (§3.5).
 */
function finalAnswer(c: PipelineContext, out: Response): Response {
  const kind = c.get("identity")?.kind;
  if (kind) addVary(out.headers, kind === "cloudflare_access" ? "Cookie, Cf-Access-Jwt-Assertion" : "Authorization");
  if (kind === "cloudflare_access") keepFromSharedCaches(out.headers);
  return withResponseHeaders(c, out);
}

/**
 * The origin has the whole request: a client that hangs up after that is recorded as allowed
 * (see the audit stage), one whose upload broke off is not. Read from the context each time:
 * the audit stage replaces the outcome when a client disconnects.
 */
function markForwarded(c: PipelineContext): void {
  c.get("outcome").forwarded = true;
}

/** An answer's body dropped unread; a binding may resolve with something that has none. */
function cancelBody(answer: Response | undefined): void {
  try {
    answer?.body?.cancel().catch(() => undefined);
  } catch {}
}

/** Whatever the origin answers after the edge stopped waiting is discarded unread. */
function discardLateAnswer(sent: Promise<Response>): void {
  sent.then(cancelBody, () => undefined);
}

export function forward(): Stage {
  const run: Stage["run"] = async (c) => {
    // A client gone while an earlier stage waited (its record already says refused, and the
    // runtime may not have cancelled this work): nothing goes to the origin.
    if (c.req.raw.signal.aborted) return deny(c, "client_closed", { detail: "client_disconnected" });
    const route = c.get("route");
    const upstream = route.upstream;
    const incoming = c.get("url");
    const path = c.get("canonicalPath");
    const query = originQuery(incoming.search);
    let target: string;
    // The global fetch unless the upstream is a service binding.
    let binding: Pick<Fetcher, "fetch"> | undefined;
    if ("url" in upstream) {
      target = `${upstream.url}${path}${query}`;
    } else {
      // The route stage has checked that the binding exists; one that cannot be read now is
      // an origin out of reach, never a reason to fetch the request's own URL instead.
      try {
        binding = serviceBinding(c, upstream.service);
      } catch {}
      if (!binding) return deny(c, "origin_unavailable", { detail: "origin_unreachable" });
      target = `${incoming.origin}${path}${query}`;
    }
    const method = c.req.method;
    const atEdge = method === "OPTIONS" ? maxForwardsAnswer(c) : undefined;
    if (atEdge) return finalAnswer(c, atEdge);
    const hasBody = method !== "GET" && method !== "HEAD" && c.req.raw.body !== null;
    const started = Date.now();
    // If the client's upload breaks off, the origin request is torn down rather than ended,
    // so the origin never mistakes a truncated body for a complete one.
    const clientGone = hasBody ? new AbortController() : undefined;
    const budget = upstream.timeout_ms ?? DEFAULT_ORIGIN_TIMEOUT_MS;
    let answered = false;
    // How the upload ended, once it has.
    let uploadEnded: UploadEnd | undefined;
    const declared = clientGone && c.req.header("content-length");
    const length = declared && /^\d{1,15}$/.test(declared) ? +declared : undefined;
    // A length that frames no body (`4, 8`, `eight`) is not passed on: the body goes as it
    // comes, and a service binding would be handed the field as sent beside it.
    if (clientGone && length === undefined) c.get("forwardHeaders").delete("content-length");
    const upload = clientGone
      ? watchedBody(
          c.req.raw.body as ReadableStream,
          c.req.raw.signal,
          length,
          budget,
          () => answered,
          (how) => {
            uploadEnded = how;
            if (how === "whole") markForwarded(c);
            // A body broken off or short is never completed to the origin; one the origin
            // stopped taking is torn down unless it has answered. An origin that stopped
            // reading is left to answer (a 413), within the budget.
            else if (how === "client" || how === "mismatch" || (how === "stalled" && !answered)) clientGone.abort();
          },
        )
      : undefined;
    const init: RequestInit = {
      method,
      headers: c.get("forwardHeaders"),
      body: upload?.body ?? null,
      redirect: "manual",
    };
    // The origin never sees the credential, nor so the `Authorization` that keeps shared
    // caches from storing an answer meant for one caller: Cloudflare's cache in front of a
    // proxied origin must not keep it for the next, nor any other cache before the origin
    // (RFC 9111 §5.2.1.5), which must ask the origin again (§5.2.1.4) whatever the client's
    // own directives (`max-stale`, `only-if-cached`) would let it answer with.
    if (c.get("identity")) {
      init.cache = "no-store";
      c.get("forwardHeaders").set("cache-control", "no-cache, no-store");
    }
    if (clientGone) init.signal = clientGone.signal;
    let sent: Promise<Response>;
    if (!upload) markForwarded(c);
    try {
      sent = binding ? binding.fetch(target, init) : fetch(target, init);
    } catch (error) {
      // A binding may throw rather than reject: the same unreachable origin either way.
      sent = Promise.reject(error);
    }
    if (upload)
      sent.then(
        () => {
          answered = true;
        },
        () => undefined,
      );
    // The budget covers the wait for the origin's response headers only: once they arrive
    // the race is over, so a long download or stream is never cut off mid-body. It starts
    // once the origin has the whole request (an upload takes as long as the client takes to
    // send it, while the origin takes each part within the budget), unless the origin
    // answers first. A race, not an abort signal on the fetch: a signal makes every
    // subrequest markedly dearer in workerd, and an origin request that lost the race ends
    // with the client's request.
    // An upload that broke off or stalled ends the wait at once (no answer, below), even where
    // the origin ignores the abort that tears its request down.
    let response: Response | typeof TIMED_OUT | undefined;
    try {
      response = await (upload
        ? Promise.race([
            sent,
            upload.handedOn.then((how) =>
              how === "whole" || how === "origin" ? withDeadline(sent, budget) : undefined,
            ),
          ])
        : withDeadline(sent, budget));
    } catch {
      // No answer: the origin is unreachable, or the client's upload broke off (below).
    }
    c.get("timings").upstreamMs = Date.now() - started;
    if (!response) {
      discardLateAnswer(sent);
      // A client that hung up mid-upload is not the origin's fault: audit it as such. The
      // upload settles as soon as either side fails; never wait on it for long.
      const how = upload && (await withDeadline(upload.end, 100));
      if (how === "client") return deny(c, "client_closed", { detail: "client_body_aborted" });
      if (how === "mismatch") return deny(c, "bad_request", { detail: "body_length_mismatch" });
      // Told apart from a late answer: the origin never took the whole request.
      if (how === "stalled") return deny(c, "origin_timeout", { detail: "origin_upload_stalled" });
      return deny(c, "origin_unavailable", { detail: "origin_unreachable" });
    }
    if (response === TIMED_OUT) {
      clientGone?.abort();
      discardLateAnswer(sent);
      // An origin that stopped taking the upload and then never answered had no whole request.
      const detail = uploadEnded === "origin" ? "origin_upload_stalled" : "origin_timeout";
      return deny(c, "origin_timeout", { detail });
    }
    // A status no response can carry on (101 to a request that asked for no upgrade, as the
    // edge never forwards `Upgrade`; 600 to 999) is the origin's fault, not an edge error.
    // Nor is an answer that is no Response at all, which a service binding may resolve with.
    if (
      !(response instanceof Response) ||
      (!response.webSocket && !(response.status >= 200 && response.status <= 599))
    ) {
      clientGone?.abort();
      cancelBody(response);
      return deny(c, "origin_unavailable", { detail: "origin_bad_status" });
    }
    // A service binding was sent the edge's own URL: what it writes names no other host.
    const out = clientResponse(
      response,
      "url" in upstream ? { upstreamUrl: upstream.url, edgeOrigin: incoming.origin } : undefined,
    );
    return finalAnswer(c, out);
  };
  return { run };
}
