// Stage: forward to the origin. The body streams through untouched; the origin receives
// exactly the canonical path that was authorised, the original query, and the headers the
// earlier stages prepared. Failures become 502/504 problem+json that echo nothing of the
// client's request.

import { TIMED_OUT, withDeadline } from "../core/deadline";
import {
  connectionNominated,
  cookieSeparators,
  HOP_BY_HOP_HEADERS,
  hidesCredentialCookie,
  MAX_COOKIE_SEPARATORS,
  withoutCredentialCookies,
} from "../core/headers";
import { withoutQueryCredentials } from "../core/tokens/credentials";
import { type PipelineContext, serviceBinding, withResponseHeaders } from "./context";
import { maxForwardsAnswer } from "./max-forwards";
import { deny } from "./respond";
import type { Stage } from "./stage";

const DEFAULT_ORIGIN_TIMEOUT_MS = 30_000;
const HOP_BY_HOP: ReadonlySet<string> = new Set(HOP_BY_HOP_HEADERS);

/**
 * The origin's response, re-wrapped so its headers can be changed (the runtime copies them
 * natively), minus hop-by-hop headers, any its `Connection` names, and its CORS headers: the
 * edge alone answers for CORS (the cors stage adds its own), so an origin that reflects any
 * `Origin` cannot open a route to pages the policy does not allow. Nor can it set, replace
 * or clear the Access cookie (see `withoutCredentialSetCookies`).
 */
function clientResponse(upstream: Response): Response {
  // Without the reason phrase: one the runtime received (a tab in it) it may refuse to send.
  const response = new Response(upstream.body, {
    status: upstream.status,
    headers: upstream.headers,
    webSocket: upstream.webSocket,
  });
  const headers = response.headers;
  const dropped: string[] = [];
  let setsCookies = false;
  // Names come lower-cased; collected first, as a Headers object must not change mid-iteration.
  for (const name of headers.keys()) {
    if (HOP_BY_HOP.has(name) || name.startsWith("access-control-")) dropped.push(name);
    else if (name === "set-cookie") setsCookies = true;
  }
  if (dropped.includes("connection")) dropped.push(...connectionNominated(headers));
  for (const name of dropped) headers.delete(name);
  if (setsCookies) withoutCredentialSetCookies(headers);
  return response;
}

/**
 * Drops every `Set-Cookie` that would give the browser a credential cookie, however spelt.
 * Only Cloudflare Access sets `CF_Authorization` (on its own `/cdn-cgi/access/` answers, which
 * never reach this Worker): one from an origin, a user-content one included, could sign a
 * browser in as someone else, sign it out, or add a second cookie on a narrower path that
 * makes every Access request ambiguous.
 */
export function withoutCredentialSetCookies(headers: Headers): void {
  const lines = headers.getSetCookie();
  // Counted before anything is decoded: past the budget, lines go unread and dropped (a
  // browser sending them back would be refused as too_many_cookies anyway).
  let separators = 0;
  // The cookie-pair before any attribute is read as the request side reads the cookie the
  // browser sends back: a line is dropped if it would cut anything out of it
  // (`CF_Authorization,x=1` is two cookies there; `=CF_Authorization=x` goes back as its value
  // alone) or refuse it (`pref=CF_Authorization=1`: every request would be, the browser locked
  // out).
  const kept = lines.filter((line) => {
    const pair = line.split(";", 1)[0] as string;
    // As the request side counts its Cookie header: each line a cookie (joined by one more `;`).
    separators += cookieSeparators(pair) + 1;
    if (separators > MAX_COOKIE_SEPARATORS) return false;
    return withoutCredentialCookies(pair) === pair && !hidesCredentialCookie(pair);
  });
  if (kept.length === lines.length) return;
  headers.delete("set-cookie");
  for (const line of kept) headers.append("set-cookie", line);
}

/**
 * Cache-Control directives under which a shared cache may keep an answer to a request that
 * carried `Authorization` (RFC 9111 §3.5), or that already keep it from shared caches
 * (`private` with field names keeps only those fields from them).
 */
const SHARED_CACHE_RULED = /(?:^|,)\s*(?:public|s-maxage|must-revalidate|no-store|private(?!\s*=))(?![^\s,=])/i;

/**
 * An Access assertion comes in a cookie or a header that, unlike `Authorization`, does not
 * keep a shared cache from storing the answer, and the origin never saw it: its answer is
 * marked `private` unless it says itself how shared caches may keep it.
 */
function keepFromSharedCaches(headers: Headers): void {
  const directives = headers.get("cache-control");
  // Quoted values left out (`ext="a, s-maxage=5"` holds no directive), by a pattern that
  // cannot fail, so never backtracks: one that could took seconds on a long header.
  if (directives && SHARED_CACHE_RULED.test(directives.replace(/"(?:[^"\\]|\\[\s\S])*(?:"|\\?$)/g, '""'))) return;
  // First: after the origin's directives an unterminated quote in them would swallow it.
  headers.set("cache-control", directives ? `private, ${directives}` : "private");
}

/**
 * How an upload ended: whole, the client's body broke off, the origin's end closed, or the
 * origin took no part of it within the budget.
 */
type UploadEnd = "whole" | "client" | "origin" | "stalled";

/**
 * Streams the client's body through without buffering it, and tells how that ended (a loop
 * of our own rather than `pipeTo`, which fails the same way whichever side failed). `ended`
 * hears of it at once, to tear the origin request down unless the body went whole; `end`
 * settles with it. Each write and the close must be taken within `budgetMs`: an origin that
 * reads nothing must not hold the request for ever.
 */
function watchedBody(
  source: ReadableStream,
  clientSignal: AbortSignal,
  length: number | undefined,
  budgetMs: number,
  answered: () => boolean,
  ended: (how: UploadEnd) => void,
): { body: ReadableStream; end: Promise<UploadEnd> } {
  // The runtime's own byte stream, not a JavaScript TransformStream: when the client breaks
  // off, the runtime's pump of a JavaScript stream into the subrequest left an uncaught
  // "Network connection lost" rejection behind it, twice per aborted upload. Of the declared
  // length, when there is one: the origin then gets Content-Length, not a chunked upload that
  // some origins refuse (411) or cannot size-check; a body cut short fails the stream.
  const { readable, writable } = length === undefined ? new IdentityTransformStream() : new FixedLengthStream(length);
  const reader = source.getReader();
  const writer = writable.getWriter();
  // Bytes of the declared length not yet handed on: at 0 the origin has the whole request.
  let left = length;
  let handedOn = false;
  const pump = async (): Promise<UploadEnd> => {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
        // A client gone before its upload was whole is recorded as refused at once (see the
        // audit stage): what it had sent before is never completed to the origin.
        if (clientSignal.aborted && !handedOn) throw 0;
      } catch {
        writer.abort().catch(() => undefined);
        return "client";
      }
      try {
        const step = chunk.done ? writer.close() : writer.write(chunk.value);
        // Until the origin answers; then taking its body is its own affair.
        if ((await withDeadline(step, budgetMs)) === TIMED_OUT) {
          if (!answered()) return "stalled";
          await step;
        }
        if (chunk.done) return "whole";
        // With its last declared byte the origin has the whole request, before the end is read;
        // unless the client left while that part was being handed on (its record says refused
        // already: the next read tears the origin request down).
        if (left !== undefined) {
          left -= chunk.value.byteLength;
          if (left === 0 && !clientSignal.aborted) {
            handedOn = true;
            ended("whole");
          }
        }
      } catch {
        reader.cancel().catch(() => undefined);
        return "origin";
      }
    }
  };
  const end = pump();
  end.then(ended);
  return { body: readable, end };
}

/**
 * An allowed answer as the client gets it: kept from shared caches when an Access assertion
 * authenticated the request, with the headers earlier stages asked for (rate-limit fields, CORS).
 */
function finalAnswer(c: PipelineContext, out: Response): Response {
  if (c.get("identity")?.kind === "cloudflare_access") keepFromSharedCaches(out.headers);
  return withResponseHeaders(c, out);
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
    // An authenticated request carries no query credential: it would have been refused.
    const query = c.get("identity") ? incoming.search : withoutQueryCredentials(incoming.search);
    let target: string;
    // The global fetch unless the upstream is a service binding.
    let binding: Pick<Fetcher, "fetch"> | undefined;
    if ("url" in upstream) {
      target = `${upstream.url}${path}${query}`;
    } else {
      // The route stage has checked that the binding exists.
      binding = serviceBinding(c, upstream.service);
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
    const declared = c.req.header("content-length");
    // Sent on once the origin has the whole request: a client that hangs up after that is
    // recorded as allowed (see the audit stage), one whose upload broke off is not.
    const forwarded = () => {
      c.get("outcome").forwarded = true;
    };
    const budget = upstream.timeout_ms ?? DEFAULT_ORIGIN_TIMEOUT_MS;
    let answered = false;
    const upload = clientGone
      ? watchedBody(
          c.req.raw.body as ReadableStream,
          c.req.raw.signal,
          declared && /^\d{1,15}$/.test(declared) ? +declared : undefined,
          budget,
          () => answered,
          // An origin that answered before taking the body: its answer goes on whole, unless
          // the client broke off.
          (how) => (how === "whole" ? forwarded() : (how === "client" || !answered) && clientGone.abort()),
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
    // proxied origin must not keep it for the next.
    if (c.get("identity")) init.cache = "no-store";
    if (clientGone) init.signal = clientGone.signal;
    let sent: Promise<Response>;
    if (!upload) forwarded();
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
    const answerAfter = (how: UploadEnd) =>
      how === "whole" || how === "origin" ? withDeadline(sent, budget) : undefined;
    let response: Response | typeof TIMED_OUT | undefined;
    try {
      response = await (upload ? Promise.race([sent, upload.end.then(answerAfter)]) : withDeadline(sent, budget));
    } catch {
      // No answer: the origin is unreachable, or the client's upload broke off (below).
    }
    c.get("timings").upstreamMs = Date.now() - started;
    // Whatever the origin answers after the edge stopped waiting is discarded unread.
    const discardLateAnswer = () =>
      sent.then(
        (late) => late.body?.cancel(),
        () => undefined,
      );
    if (!response) {
      discardLateAnswer();
      // A client that hung up mid-upload is not the origin's fault: audit it as such. The
      // upload settles as soon as either side fails; never wait on it for long.
      const tick = new Promise<undefined>((resolve) => setTimeout(resolve, 100));
      const how = upload && (await Promise.race([upload.end, tick]));
      if (how === "client") return deny(c, "client_closed", { detail: "client_body_aborted" });
      // Told apart from a late answer: the origin never took the whole request.
      if (how === "stalled") return deny(c, "origin_timeout", { detail: "origin_upload_stalled" });
      return deny(c, "origin_unavailable", { detail: "origin_unreachable" });
    }
    if (response === TIMED_OUT) {
      clientGone?.abort();
      discardLateAnswer();
      return deny(c, "origin_timeout", { detail: "origin_timeout" });
    }
    // A status no response can carry on (101 to a request that asked for no upgrade, as the
    // edge never forwards `Upgrade`; 600 to 999) is the origin's fault, not an edge error.
    if (!response.webSocket && (response.status < 200 || response.status > 599)) {
      return deny(c, "origin_unavailable", { detail: "origin_bad_status" });
    }
    return finalAnswer(c, clientResponse(response));
  };
  return { run };
}
