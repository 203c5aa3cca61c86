// Stage: build the header set that will reach the origin. Every client header in the
// identity namespace (all spellings), every request-override header, every hop-by-hop
// header (including those `Connection` names) and every credential is left out. The
// original request keeps its headers so the authenticate stage can still read credentials.
// Requests whose headers frame a body the origin would read otherwise (a transfer coding
// other than chunked, two framings, a body on a GET or HEAD) and cookie headers no browser
// sends are refused here.

import { boundedMemo } from "../core/bounded-memo";
import {
  cookieSeparators,
  hidesCredentialCookie,
  MAX_COOKIE_SEPARATORS,
  withoutCredentialCookies,
} from "../core/cookies";
import { connectionNominatedPresent, makeStripPredicate, normaliseHeaderName } from "../core/headers";
import type { CompiledPolicy } from "../core/policy";
import { refererWithoutCredentials } from "../core/tokens/credentials";
import { deny } from "./respond";
import type { Stage } from "./stage";

/** Header names remembered per isolate with their verdict; names are client input. */
const MAX_REMEMBERED_NAMES = 512;

export function headerHygiene(policy: CompiledPolicy): Stage {
  // The same few dozen names arrive on almost every request: decide each once per isolate.
  const stripped = boundedMemo(MAX_REMEMBERED_NAMES, makeStripPredicate(Object.values(policy.identityHeaders)));
  const run: Stage["run"] = (c) => {
    const incoming = c.req.raw.headers;
    // The runtime takes off `chunked` alone: a body sent in another transfer coding (`gzip,
    // chunked`) arrives still coded, while the header that says so is hop-by-hop and stops
    // here: the origin would take the coded bytes for the body (RFC 9112 §6.1: refuse a coding
    // not understood).
    const coding = incoming.get("transfer-encoding");
    if (coding !== null && coding.trim().toLowerCase() !== "chunked") {
      return deny(c, "bad_request", { detail: "unsupported_transfer_coding" });
    }
    // Framed twice (RFC 9112 §6.3: the coding wins, yet the length would cut the body short at
    // an origin that reads it): request smuggling's shape, refused.
    if (coding !== null && incoming.has("content-length"))
      return deny(c, "bad_request", { detail: "ambiguous_framing" });
    // A GET or HEAD with a body: the runtime's fetch can send it none, and the origin would run
    // the request without it (Elasticsearch answers a `GET _search` whose query was in its body
    // as a search for everything). Refused, so the client learns to send it as a POST.
    const method = c.req.method;
    if (method === "GET" || method === "HEAD") {
      const length = incoming.get("content-length");
      if (coding !== null || (length !== null && !/^0+$/.test(length.trim())))
        return deny(c, "bad_request", { detail: "body_on_get_or_head" });
    }
    // Copied natively, then the few names that must not reach the origin are deleted
    // (`delete` removes every value of a name).
    const outgoing = new Headers(incoming);
    for (const name of incoming.keys()) if (stripped(name)) outgoing.delete(name);
    if (incoming.has("connection")) {
      // Compared as origins read names (`_` as `-`): a name nominated in either spelling goes.
      for (const name of connectionNominatedPresent(incoming, normaliseHeaderName)) outgoing.delete(name);
    }
    const cookie = outgoing.get("cookie");
    if (cookie !== null) {
      if (cookieSeparators(cookie) > MAX_COOKIE_SEPARATORS)
        return deny(c, "bad_request", { detail: "too_many_cookies" });
      const kept = withoutCredentialCookies(cookie);
      if (hidesCredentialCookie(kept)) return deny(c, "bad_request", { detail: "credential_cookie_in_value" });
      if (kept) outgoing.set("cookie", kept);
      else outgoing.delete("cookie");
    }
    const referer = outgoing.get("referer");
    const page = referer && refererWithoutCredentials(referer);
    if (page !== referer) outgoing.set("referer", page as string);
    outgoing.set("x-request-id", c.get("requestId"));
    const url = c.get("url");
    outgoing.set("x-forwarded-host", url.host);
    outgoing.set("x-forwarded-proto", url.protocol.replace(":", ""));
    const clientIp = incoming.get("cf-connecting-ip");
    if (clientIp) {
      outgoing.set("x-forwarded-for", clientIp);
      // A same-zone origin's CF-Connecting-IP is taken from it.
      outgoing.set("x-real-ip", clientIp);
    }
    c.set("forwardHeaders", outgoing);
    return undefined;
  };
  return { run };
}
