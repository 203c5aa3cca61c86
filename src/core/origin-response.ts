// What the client gets of the origin's answer: the edge alone answers for CORS, hop-by-hop
// headers end at the edge, no origin may set the Access cookie, and an answer to an Access
// request is kept from shared caches.

import { cookieSeparators, hidesCredentialCookie, MAX_COOKIE_SEPARATORS, withoutCredentialCookies } from "./cookies";
import { connectionNominatedPresent, isHopByHop } from "./headers";

/**
 * The origin's response, re-wrapped so its headers can be changed (the runtime copies them
 * natively), minus hop-by-hop headers, any its `Connection` names, and its CORS headers: the
 * edge alone answers for CORS (the cors stage adds its own), so an origin that reflects any
 * `Origin` cannot open a route to pages the policy does not allow. Nor can it set, replace
 * or clear the Access cookie (see `withoutCredentialSetCookies`), nor name its own listeners
 * as the edge's in `Alt-Svc` (RFC 7838: a browser would take the edge's whole origin, cookies
 * and all, to that host). Given the upstream's URL, the URLs naming it become the edge's (see
 * `upstreamUrlsOnEdge`).
 */
export function clientResponse(upstream: Response, urls?: { upstreamUrl: string; edgeOrigin: string }): Response {
  // Without the reason phrase: one the runtime received (a tab in it) it may refuse to send.
  const response = new Response(upstream.body, {
    status: upstream.status,
    headers: upstream.headers,
    webSocket: upstream.webSocket,
  });
  const headers = response.headers;
  const dropped: string[] = [];
  const urlFields: string[] = [];
  let setsCookies = false;
  // Names come lower-cased; collected first, as a Headers object must not change mid-iteration.
  // One pass over the names serves every check: the fields that may hold URLs are found here
  // rather than asked for one by one.
  for (const name of headers.keys()) {
    if (isHopByHop(name) || name.startsWith("access-control-") || name === "alt-svc") dropped.push(name);
    else if (name === "set-cookie") setsCookies = true;
    else if (URL_FIELDS.has(name)) urlFields.push(name);
  }
  // Exactly as named: `x_hop` nominates that field, not `x-hop`, end to end.
  if (dropped.includes("connection")) dropped.push(...connectionNominatedPresent(headers));
  for (const name of dropped) headers.delete(name);
  if (setsCookies) withoutCredentialSetCookies(headers);
  if (urls && urlFields.length > 0) upstreamUrlsOnEdge(headers, urls.upstreamUrl, urls.edgeOrigin, urlFields);
  return response;
}

/**
 * `Refresh: 5; url=…`, `Refresh: 5; …` or `Refresh: 5 …` (the HTML standard reads a URL after
 * the delay with or without `url=`, after a `;`, a `,` or whitespace alone): what comes before
 * the URL, and the URL, quoted or not. Anchored, and certain to match once past the separator;
 * before it no two whitespace runs meet, so a long run of them is scanned in linear time.
 */
const REFRESH_URL = /^(\s*(?:[\d.]+\s*[;,]|[\d.]+\s+|[;,])\s*(?:url\s*=\s*)?['"]?)([^'"]*)/i;

/** The upstream as `onEdge` compares URLs with it: its host, and its path without a final `/`. */
interface Upstream {
  /** The host name without a fully qualified name's final dot (the same host to DNS). */
  name: string;
  /** The port as written (none for the scheme's default). */
  port: string;
  /** The port the scheme implies where none is written. */
  effectivePort: string;
  base: string;
}

const DEFAULT_PORTS: Readonly<Record<string, string>> = { "http:": "80", "https:": "443", "ws:": "80", "wss:": "443" };

function upstreamOf({ hostname, port, protocol }: URL): Omit<Upstream, "base"> {
  return { name: hostname.replace(/\.$/, ""), port, effectivePort: port || DEFAULT_PORTS[protocol] || "" };
}

/** What begins a URL that may name a host: a scheme, or two slashes either way round. */
const AUTHORITY_OR_SCHEME = /^(?:[a-z][a-z\d+.-]*:|[/\\]{2})/i;

/**
 * The edge's own URL for `value` if it names the upstream (its host, under its path), else
 * `value`. Read by host whatever the scheme: an origin behind its own TLS terminator may write
 * `http://` for an `https://` upstream, and names it all the same; so does one that writes the
 * upstream's port, the scheme's default included (`//origin.example.com:443/…`), or its name
 * fully qualified (`origin.example.com.`).
 */
function onEdge(value: string, upstream: Upstream, edgeOrigin: string): string {
  // As a browser reads it: tabs and newlines dropped anywhere (`/\t/origin…`), then the
  // leading C0 controls and spaces (the URL parser drops the trailing ones itself); and
  // without the `url:` that Java's URL class skips.
  const read = value
    .replace(/[\t\n\r]/g, "")
    .replace(/^[\0- ]+/, "")
    .replace(/^url:/i, "");
  // Only a URL with a scheme, or a scheme-relative one (`//`, and `/\`, `\\` or `\/`, which a
  // browser reads as `//`), can name a host: a path goes on unparsed, as a failed parse costs
  // the runtime an error object, and an answer may hold thousands of relative `Link` targets.
  if (!AUTHORITY_OR_SCHEME.test(read)) return value;
  // A scheme-relative URL takes the client's scheme, the edge's, to the same host.
  const absolute = /^[/\\]/.test(read) ? `${edgeOrigin.slice(0, edgeOrigin.indexOf(":") + 1)}${read}` : read;
  // Asked first, as `http:` alone parses as no URL at the cost of a failed parse.
  if (!URL.canParse(absolute)) return value;
  const url = new URL(absolute);
  const { name, port, effectivePort } = upstreamOf(url);
  const { pathname, search, hash } = url;
  const base = upstream.base;
  if (
    name === upstream.name &&
    (port === upstream.port || effectivePort === upstream.effectivePort) &&
    (pathname === base || pathname.startsWith(`${base}/`))
  )
    return `${edgeOrigin}${pathname.slice(base.length) || "/"}${search}${hash}`;
  return value;
}

/**
 * A `Link` field's target (RFC 8288 §3: `<URI-Reference>; params, …`), or a quoted parameter
 * (`title="<a>"`), matched whole so that no `<` in it is taken for a target. Linear: a target
 * holds no `<` (a run of them without a `>` is not scanned to its end from each one), and an
 * unterminated quote takes the rest of the field at once.
 */
const LINK_TARGET_OR_QUOTED = /"(?:[^"\\]|\\[\s\S])*"?|<([^<>]*)>/g;

/**
 * A URL inside a field's value (a CSP `report-uri`, a challenge's quoted `resource_metadata`):
 * a scheme or none, then two slashes either way round (`//`, `/\`, `\\`, as browsers read
 * them) or escaped (`\/\/`, which a URL parser reads as slashes too), and what a URL holds up
 * to a delimiter, its escaped slashes included. Linear: a scheme starts only where no scheme
 * character precedes it, and is at most 32 characters long, so a long run of letters is not
 * tried from each of them.
 */
const URL_IN_VALUE = /(?<![a-z\d+.-])(?:[a-z][a-z\d+.-]{0,31}:)?(?:\\?\/|\\){2}(?:\\\/|[^\s"',;<>\\])+/gi;

/**
 * A structured field's string (RFC 8941 §3.3.3: `"…"`, `\"` and `\\` escaped inside), whole,
 * and whether it is closed. Linear: an unclosed string takes the rest of the field at once.
 */
const SF_STRING = /"((?:[^"\\]|\\[\s\S])*)("?)/g;

/**
 * A structured field's strings (`Reporting-Endpoints`' endpoints, `Speculation-Rules`' rule
 * sets) as the browser reads them: each unescaped and read whole, so a `,`, `;` or `'` inside
 * one is part of its URL; one naming the upstream becomes the edge's.
 */
function stringsOnEdge(value: string, upstream: Upstream, edgeOrigin: string): string {
  return value.replace(SF_STRING, (whole, escaped: string, closed: string) => {
    if (!closed) return whole;
    const read = escaped.replace(/\\([\s\S])/g, "$1");
    const onEdgeUrl = onEdge(read, upstream, edgeOrigin);
    // Written back as a string: JSON's escapes are the structured field's for a URL's characters.
    return onEdgeUrl === read ? whole : JSON.stringify(onEdgeUrl);
  });
}

/**
 * `Report-To`'s groups as the browser reads them: the field is the members of a JSON list, and
 * every string in them is read once parsed (`https:\/\/origin…` as PHP's json_encode writes
 * it, `\u002f` too). Written again only where a URL names the upstream; a field that is no JSON
 * goes on as written, as the browser ignores it.
 */
function jsonOnEdge(value: string, upstream: Upstream, edgeOrigin: string): string {
  let changed = false;
  let groups: unknown;
  try {
    groups = JSON.parse(`[${value}]`, (_key, member: unknown) => {
      if (typeof member !== "string") return member;
      const onEdgeUrl = onEdge(member, upstream, edgeOrigin);
      if (onEdgeUrl !== member) changed = true;
      return onEdgeUrl;
    });
  } catch {
    return value;
  }
  return changed ? JSON.stringify(groups).slice(1, -1) : value;
}

/** The origin's fields that may name it, and how each holds its URLs. */
const URL_FIELDS = new Map<string, "whole" | "refresh" | "link" | "inside" | "strings" | "json">([
  ["location", "whole"],
  ["content-location", "whole"],
  // Where a long-running operation's status is polled, with the caller's token (Azure's APIs).
  ["operation-location", "whole"],
  ["azure-asyncoperation", "whole"],
  ["refresh", "refresh"],
  ["link", "link"],
  // Where browsers post their reports by themselves (CSP, the Reporting API, NEL).
  ["content-security-policy", "inside"],
  ["content-security-policy-report-only", "inside"],
  ["reporting-endpoints", "strings"],
  ["report-to", "json"],
  // Fetched by the browser itself: rule sets for prefetching pages, and a script's source map.
  ["speculation-rules", "strings"],
  ["sourcemap", "whole"],
  ["x-sourcemap", "whole"],
  // An origin's own challenge: clients fetch its `resource_metadata` (RFC 9728 §5.1).
  ["www-authenticate", "inside"],
]);

/**
 * An origin that writes an absolute URL from the `Host` it was sent (nginx's and Apache's own
 * trailing-slash redirects, a framework that trusts no proxy) names the upstream: passed on,
 * it tells every client the private origin's address, and takes the next request past the
 * edge. A URL naming the upstream in a `Location`, `Content-Location` or `Refresh`, each `Link`
 * target (a paginated API's `rel="next"`, which clients follow with the caller's own token),
 * an operation's status URL, a report endpoint or a challenge's metadata URL is made the edge's
 * own for the same path, as nginx's `proxy_redirect default` and Apache's `ProxyPassReverse` do
 * for redirects; any other URL (an identity provider's sign-in) goes on as written.
 */
export function upstreamUrlsOnEdge(
  headers: Headers,
  upstreamUrl: string,
  edgeOrigin: string,
  names: readonly string[] = [...headers.keys()],
): void {
  let upstream: Upstream | undefined;
  for (const name of names) {
    const holds = URL_FIELDS.get(name);
    const value = holds && headers.get(name);
    if (!value) continue;
    if (!upstream) {
      const url = new URL(upstreamUrl);
      upstream = { ...upstreamOf(url), base: url.pathname.replace(/\/$/, "") };
    }
    const at = upstream;
    let rewritten: string;
    if (holds === "refresh")
      rewritten = value.replace(REFRESH_URL, (_, before: string, url: string) => before + onEdge(url, at, edgeOrigin));
    else if (holds === "link")
      rewritten = value.replace(LINK_TARGET_OR_QUOTED, (whole, target: string | undefined) =>
        target === undefined ? whole : `<${onEdge(target, at, edgeOrigin)}>`,
      );
    else if (holds === "inside") rewritten = value.replace(URL_IN_VALUE, (url) => onEdge(url, at, edgeOrigin));
    else if (holds === "strings") rewritten = stringsOnEdge(value, at, edgeOrigin);
    else if (holds === "json") rewritten = jsonOnEdge(value, at, edgeOrigin);
    else rewritten = onEdge(value, at, edgeOrigin);
    if (rewritten !== value) headers.set(name, rewritten);
  }
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
 * marked `private` unless it says itself how shared caches may keep it. Fields that rule a
 * CDN's caching in place of Cache-Control (RFC 9213 §2.1: it would never read the `private`)
 * go with it.
 */
export function keepFromSharedCaches(headers: Headers): void {
  const directives = headers.get("cache-control");
  // Quoted values left out (`ext="a, s-maxage=5"` holds no directive), by a pattern that
  // cannot fail, so never backtracks: one that could took seconds on a long header.
  if (directives && SHARED_CACHE_RULED.test(directives.replace(/"(?:[^"\\]|\\[\s\S])*(?:"|\\?$)/g, '""'))) return;
  // First: after the origin's directives an unterminated quote in them would swallow it.
  headers.set("cache-control", directives ? `private, ${directives}` : "private");
  for (const name of ["cdn-cache-control", "cloudflare-cdn-cache-control", "surrogate-control"]) headers.delete(name);
}
