// Requests a browser sends by itself with the Access cookie: a cross-site page can make a
// signed-in user's browser POST a form or a no-cors fetch, and the cookie goes along (behind
// Cloudflare Access it also arrives as the Cf-Access-Jwt-Assertion header, so a header is no
// sign of intent either). The browser says where a request comes from (Sec-Fetch-Site and
// Origin, which pages cannot set; an old browser that sends neither, in Referer); a request
// that changes something and comes from another site, or another origin of this site, is
// refused unless the route's CORS lets that page send credentials. Bearer tokens are never
// sent by a browser on its own: only Access assertions need this.

import { ACCESS_COOKIE, cookiePairs } from "./cookies";
import { grantedMethods } from "./cors";
import type { CorsConfig } from "./policy-types";
import { takesMethod } from "./routes";

/** Methods that must not change anything (RFC 9110 §9.2.1): left to the origin to keep so. */
const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Why a request carrying an ambient credential is refused as sent by another site's page, or
 * undefined when it is not. `ownOrigin` is the request URL's origin; `routeMethods` the
 * route's, which a CORS page is granted unless `allow_methods` names fewer.
 */
export function crossSiteRefusal(
  method: string,
  headers: Headers,
  ownOrigin: string,
  cors: CorsConfig | undefined,
  routeMethods: ReadonlySet<string>,
): string | undefined {
  if (SAFE_METHODS.has(method)) return undefined;
  const site = headers.get("sec-fetch-site");
  // The page's own origin, or no page at all (the user typed or bookmarked it).
  if (site === "same-origin" || site === "none") return undefined;
  // Neither header: a browser too old to send them on a form post (Firefox before 70) still
  // names the page in Referer, unless its referrer policy withholds it. Only where the Access
  // cookie came along, as a browser sends it by itself: a service token's client may forward
  // any Referer, and sends no cookie.
  const origin = headers.get("origin") ?? (site === null && sentAccessCookie(headers) ? refererOrigin(headers) : null);
  if (origin === null) {
    // Neither header, nor a page named: not a browser (a service token, a script), which sends
    // no cookie by itself. A browser sends Origin on every such request: one said to come
    // from elsewhere without it is refused.
    return site === null ? undefined : "cross_site_without_origin";
  }
  if (origin === ownOrigin) return undefined;
  // A page allowed to send credentials, for a method it is granted: a simple POST from a page
  // granted only GET is sent without a preflight, and must not reach the origin either.
  if (cors?.allow_credentials && cors.allow_origins.includes(origin)) {
    return takesMethod(grantedMethods(cors, routeMethods), method) ? undefined : "cross_site_method";
  }
  return "cross_site_origin";
}

/** The origin of the page a `Referer` names, or null when there is none that parses. */
function refererOrigin(headers: Headers): string | null {
  const referer = headers.get("referer");
  // "null" for a scheme with no origin (`data:`): a page, and not this one.
  return referer === null ? null : (URL.parse(referer)?.origin ?? null);
}

function sentAccessCookie(headers: Headers): boolean {
  return cookiePairs(headers.get("cookie") ?? "").some(([name]) => name === ACCESS_COOKIE);
}
