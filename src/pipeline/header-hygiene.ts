// Stage 5: build the header set that will reach the origin. Every client header in the
// identity namespace (all spellings), every request-override header, every hop-by-hop
// header (including those `Connection` names) and every credential is left out. The
// original request keeps its headers so the authenticate stage can still read credentials.

import { boundedMemo } from "../core/bounded-memo";
import {
  connectionNominated,
  hidesCredentialCookie,
  cookieParts,
  isCredentialCookie,
  cookieNameAsRead,
  MAX_COOKIE_SEPARATORS,
  makeStripPredicate,
  normaliseHeaderName,
} from "../core/headers";
import { deny } from "./respond";
import type { Stage } from "./stage";

/**
 * Removes credential cookies by name, however spelt. The other cookies go on as sent, with
 * the separators between them: where cookies were removed, the two kept on either side are
 * parted by `;` if any separator between them was one (a comma joins two only where the
 * client's did), so no parser reads a kept cookie's value differently.
 */
export function withoutCredentialCookies(cookie: string): string {
  const parts = cookieParts(cookie);
  let kept = "";
  let between = "";
  let removed = false;
  for (let i = 0; i < parts.length; i += 2) {
    if (i > 0 && between !== ";") between = parts[i - 1] as string;
    const part = parts[i] as string;
    if (isCredentialCookie(cookieNameAsRead(part))) {
      removed = true;
      continue;
    }
    kept += kept ? between + part : part.trimStart();
    between = "";
  }
  // Nothing to remove: the header goes on exactly as the client sent it.
  return removed ? kept.trimEnd() : cookie;
}

/** Header names remembered per isolate with their verdict; names are client input. */
const MAX_REMEMBERED_NAMES = 512;

export function headerHygiene(): Stage {
  let isStripped: ((name: string) => boolean) | undefined;
  // The same few dozen names arrive on almost every request: decide each once per isolate.
  const stripped = boundedMemo(MAX_REMEMBERED_NAMES, (name: string) => (isStripped as (name: string) => boolean)(name));
  const run: Stage["run"] = (c) => {
    if (!isStripped) {
      isStripped = makeStripPredicate(Object.values(c.get("policy").identityHeaders));
    }
    const incoming = c.req.raw.headers;
    // Copied natively, then the few names that must not reach the origin are deleted
    // (`delete` removes every value of a name).
    const outgoing = new Headers(incoming);
    for (const name of incoming.keys()) if (stripped(name)) outgoing.delete(name);
    if (incoming.has("connection")) {
      // Compared as origins read names (`_` as `-`): a name nominated in either spelling goes.
      const nominated = new Set(connectionNominated(incoming).map(normaliseHeaderName));
      for (const name of incoming.keys()) if (nominated.has(normaliseHeaderName(name))) outgoing.delete(name);
    }
    const cookie = outgoing.get("cookie");
    if (cookie !== null) {
      if (cookie.split(/[;=]/).length > MAX_COOKIE_SEPARATORS + 1)
        return deny(c, "bad_request", { detail: "too_many_cookies" });
      const kept = withoutCredentialCookies(cookie);
      if (hidesCredentialCookie(kept)) return deny(c, "bad_request", { detail: "credential_cookie_in_value" });
      if (kept) outgoing.set("cookie", kept);
      else outgoing.delete("cookie");
    }
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
