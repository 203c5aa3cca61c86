// Stage 5: build the header set that will reach the origin. Every client header in the
// identity namespace (all spellings), every request-override header, every hop-by-hop
// header (including those `Connection` names) and every credential is left out. The
// original request keeps its headers so the authenticate stage can still read credentials.

import {
  CREDENTIAL_COOKIES,
  CREDENTIAL_HEADERS,
  connectionNominated,
  cookiePairs,
  makeStripPredicate,
  normaliseHeaderName,
} from "../core/headers";
import type { Stage } from "./stage";

/** Forwarding headers the client may not set: the edge writes its own. */
const FORWARDING_HEADERS = ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"];

const CREDENTIAL_COOKIE_NAMES = new Set(CREDENTIAL_COOKIES.map((name) => name.toLowerCase()));

/** Removes credential cookies by name (any case), keeping the rest of the `Cookie` header intact. */
export function withoutCredentialCookies(cookie: string): string {
  return cookiePairs(cookie)
    .filter(([name]) => !CREDENTIAL_COOKIE_NAMES.has(name.toLowerCase()))
    .map(([, , raw]) => raw)
    .join("; ");
}

export function headerHygiene(): Stage {
  let isStripped: ((name: string) => boolean) | undefined;
  const run: Stage["run"] = (c) => {
    if (!isStripped) {
      const names = Object.values(c.get("policy").identityHeaders);
      isStripped = makeStripPredicate([...names, ...CREDENTIAL_HEADERS, ...FORWARDING_HEADERS]);
    }
    const incoming = c.req.raw.headers;
    const nominated = new Set(connectionNominated(incoming));
    const outgoing = new Headers();
    for (const [name, value] of incoming) {
      if (isStripped(name) || nominated.has(normaliseHeaderName(name))) continue;
      if (name === "cookie") {
        const kept = withoutCredentialCookies(value);
        if (kept) outgoing.append(name, kept);
        continue;
      }
      outgoing.append(name, value);
    }
    outgoing.set("x-request-id", c.get("requestId"));
    const url = c.get("url");
    outgoing.set("x-forwarded-host", url.host);
    outgoing.set("x-forwarded-proto", url.protocol.replace(":", ""));
    const clientIp = incoming.get("cf-connecting-ip");
    if (clientIp) outgoing.set("x-forwarded-for", clientIp);
    c.set("forwardHeaders", outgoing);
    return undefined;
  };
  return { run };
}
