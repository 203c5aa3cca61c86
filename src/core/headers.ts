// Header name lists shared by every stage that strips or writes headers: one constant,
// one normalisation, so the stripper and the injector can never disagree.

/**
 * Client headers that claim identity, or carry a token or client certificate an
 * identity-aware proxy passes on: ours, and those of the proxies and platforms an origin may
 * have been written for (oauth2-proxy, Azure App Service, Google IAP, Cloud Endpoints and API
 * Gateway, AWS ALB, Kong, Keycloak Gatekeeper, Apache mod_auth_openidc, TLS-terminating
 * proxies and RFC 9440's Client-Cert, Cloudflare's mTLS transform, and the `Remote-*` family
 * Authelia and authentik hand over behind Caddy or nginx: -User, -Groups, -Email, -Name).
 * Matched after normaliseHeaderName. A prefix takes a whole family: `x-org` is X-Org,
 * X-Org-Id, X-Organization.
 */
export const IDENTITY_HEADER_PREFIXES: readonly string[] = [
  "x-user-",
  "x-org",
  "x-tenant",
  "x-client-",
  "cf-access-",
  "cf-cert-",
  "x-auth-",
  "x-authenticated-",
  "x-consumer-",
  "x-credential-",
  "x-anonymous-",
  "oidc-",
  "x-ms-client-principal",
  "x-ms-token-",
  "x-goog-authenticated-user-",
  "x-goog-iap-jwt-assertion",
  "x-endpoint-api-userinfo",
  "x-apigateway-api-userinfo",
  "x-amzn-oidc-",
  "x-amzn-mtls-",
  "cloudfront-viewer-cert-",
  "x-arr-clientcert",
  "x-ssl-",
  "ssl-client-",
  "client-cert",
  "remote-",
  "x-remote-",
  "x-webauth-",
  "x-pomerium-",
  "x-authentik-",
  "x-vouch-",
  "tailscale-user-",
];

/**
 * Exact identity and token header names. Those under `x-forwarded-` (oauth2-proxy's
 * X-Forwarded-User, -Email, -Groups, -Access-Token; Envoy's X-Forwarded-Client-Cert) go with
 * every forwarding header, by FORWARDING_HEADER_PREFIX.
 */
export const IDENTITY_HEADER_NAMES: readonly string[] = [
  "x-user",
  "x-userid",
  "x-username",
  "x-userinfo",
  "x-email",
  "x-id-token",
  "x-access-token",
  "x-request-id",
];

/**
 * Headers that re-route or re-interpret a request at origins that honour them; `Proxy` becomes
 * HTTP_PROXY under CGI, which some HTTP clients take as their outbound proxy ("httpoxy").
 * `SCRIPT_NAME` and `X-Script-Name` set the mount prefix gunicorn and the common WSGI
 * "reverse proxied" middleware cut off the path before routing (gunicorn honours the former
 * from loopback peers, such as a tunnel or nginx on the same host): `/v1/tenants/acme/x/v1/tenants/globex/…`
 * with a prefix of `/v1/tenants/acme/x` would be routed as globex's. `X-Middleware-Subrequest`
 * makes Next.js skip its middleware (CVE-2025-29927), an origin's own auth check included.
 */
export const REQUEST_OVERRIDE_HEADERS: readonly string[] = [
  "proxy",
  "x-host",
  "x-http-host-override",
  "x-original-host",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-original-url",
  "x-original-uri",
  "x-rewrite-url",
  "x-original-method",
  "script-name",
  "x-script-name",
  "x-middleware-subrequest",
];

/**
 * Forwarding headers the client may not set: every `x-forwarded-*` (the edge writes its own
 * `-for`, `-host` and `-proto`; proxies and frameworks read a client address, scheme, port,
 * prefix or path from the others, Rack the scheme from `-ssl` and `-scheme`), and these.
 */
export const FORWARDING_HEADER_PREFIX = "x-forwarded-";
export const FORWARDING_HEADERS: readonly string[] = [
  "forwarded",
  // The scheme, as ingress-nginx passes it and WSGI "reverse proxied" middleware and
  // Microsoft's proxies read it (wsgi.url_scheme, is_secure, absolute links).
  "x-scheme",
  "x-url-scheme",
  "front-end-https",
  "forwarded-for",
  "x-forwarded",
  "x-original-forwarded-for",
  "x-real-ip",
  "client-ip",
  "true-client-ip",
  "fastly-client-ip",
  "x-cluster-client-ip",
];

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy ones proxies still see. */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

/** Credentials that stop at the edge: the origin never sees them. Cookies are filtered by name. */
export const CREDENTIAL_HEADERS: readonly string[] = [
  "authorization",
  "cf-access-jwt-assertion",
  // API keys, as gateways name them: X-Api-Key, Kong key-auth's apikey, Azure's api-key, x-apikey.
  "x-api-key",
  "apikey",
  "api-key",
  "x-apikey",
];

/** The cookie Cloudflare Access sets for browsers; it carries the Access assertion. */
export const ACCESS_COOKIE = "CF_Authorization";

/** Cookie names that carry credentials and are removed from the forwarded `Cookie`. */
export const CREDENTIAL_COOKIES: readonly string[] = [ACCESS_COOKIE];

/**
 * Where one cookie ends: at `;`, or at a `,` followed by another `name=`, the name empty too
 * (a cookie whose name is empty is sent as its value alone). Two `Cookie` headers reach the
 * Worker joined by ", ", and a cookie value may not contain a comma (RFC 6265 §4.1.1), so a
 * cookie after such a comma is a cookie of its own — also to an origin's parser.
 */
const COOKIE_BOUNDARY = /(;|,(?=\s*[!#$%&'*+.^_`|~0-9A-Za-z-]*=))/;

/**
 * A `Cookie` header cut where each cookie ends, separators kept: cookie, separator, cookie, …
 * (the cookies as sent, whitespace included).
 */
export function cookieParts(cookieHeader: string): string[] {
  return cookieHeader.split(COOKIE_BOUNDARY);
}

/**
 * A cookie's name: what comes before its `=`, trimmed; a cookie without `=` is all name, as
 * servers read the `Cookie` header (a browser sends a nameless cookie's value that way).
 */
export function cookieName(cookie: string): string {
  const eq = cookie.indexOf("=");
  return (eq < 0 ? cookie : cookie.slice(0, eq)).trim();
}

/**
 * A cookie's name as the most lenient server reads it: empty names skipped. A browser sends a
 * cookie whose name is empty as its value alone, so `=CF_Authorization=x` arrives, from a
 * `Set-Cookie` or a client, as a cookie some server may read as `CF_Authorization`.
 */
function cookieNameAsRead(cookie: string): string {
  return cookieName(cookie.replace(/^[\s=]+/, ""));
}

/** The cookies of a `Cookie` header in order: name and value trimmed, and the pair as sent. */
export function cookiePairs(cookieHeader: string): [name: string, value: string, raw: string][] {
  const pairs: [string, string, string][] = [];
  const parts = cookieParts(cookieHeader);
  for (let i = 0; i < parts.length; i += 2) {
    const raw = (parts[i] as string).trim();
    if (!raw) continue;
    const eq = raw.indexOf("=");
    pairs.push([cookieName(raw), eq < 0 ? "" : raw.slice(eq + 1).trim(), raw]);
  }
  return pairs;
}

const LENIENT_UTF8 = new TextDecoder();

/** Characters as escapes of their UTF-8 bytes (a run with a lone surrogate, which no header carries, as U+FFFD's). */
function escapeUtf8(run: string): string {
  try {
    return encodeURIComponent(run);
  } catch {
    return "%EF%BF%BD";
  }
}

/**
 * Every valid escape decoded on its own, and a bad escape kept as sent, as PHP's and .NET's
 * decoders read a name (the latter also takes IIS's `%uXXXX`); the bytes then read as UTF-8,
 * so case folding sees the characters an origin sees. Decoding all or nothing would read
 * `access_token%00%` undecoded, as a name that is not `access_token`, where PHP reads exactly that.
 * `unescape` does exactly this per escape, natively: a callback per escape cost ~1 µs each, and
 * a Cookie header of thousands of escapes tens of milliseconds. `%u` waits for the second pass,
 * after the bytes are read as UTF-8 (in either case, as .NET takes it).
 */
function decodeEachEscape(text: string): string {
  // Nothing escaped: the runtime hands header values over decoded already.
  if (!text.includes("%")) return text;
  // A character sent as it is stands for its UTF-8 bytes, as the origin receives them: escaped
  // first (a run at a time), so that only bytes are left once the escapes are decoded.
  const sent = /[^\0-\x7f]/.test(text) ? text.replace(/[^\0-\x7f]+/g, escapeUtf8) : text;
  let chars = unescape(sent.replace(/%(?=u)/gi, "%25"));
  if (/[\x80-\xff]/.test(chars)) {
    // One byte per character, in a loop: Uint8Array.from with a callback per character took
    // half the time of all of this.
    const bytes = new Uint8Array(chars.length);
    for (let i = 0; i < chars.length; i++) bytes[i] = chars.charCodeAt(i);
    chars = LENIENT_UTF8.decode(bytes);
  }
  return unescape(chars.replace(/%(?!u[\dA-F]{4})/gi, "%25").replace(/%U/g, "%u"));
}

/**
 * A query-parameter or cookie name as the most lenient parser an origin may use reads it:
 * escapes decoded (and `+` as a space, in a query), surrounding whitespace dropped, any case
 * (folded both ways, as Java's equalsIgnoreCase does: the Kelvin sign is a `k`, `ſ` an `s`),
 * and `.`, space or `[` read as `_`, as PHP does (`access.token`, `CF%5FAuthorization`).
 * What is stripped as a credential is matched on this, so no spelling slips past.
 */
export function lenientName(raw: string, { plusIsSpace = false } = {}): string {
  const name = plusIsSpace ? raw.replace(/\+/g, " ") : raw;
  // The whole name upper- then lower-cased, more generously than a per-character comparison
  // folds (`ß` reads as `ss` too, as Python's casefold reads it): a credential's name errs
  // towards being stripped. İ lower-cases to i and a combining dot in JavaScript: read as i.
  return decodeEachEscape(name)
    .trim()
    .replace(/\u0130/g, "i")
    .toUpperCase()
    .toLowerCase()
    .replace(/[. []/g, "_");
}

/**
 * Whether a name, as `lenientName` reads it, is `wanted` (lower case) to PHP: exactly, cut at
 * a NUL (`access_token%00x`), or in array form whatever follows its `]` (`access_token[0]x`;
 * the first `[` already reads as `_`).
 */
export function readsAsName(lenient: string, wanted: string): boolean {
  if (!lenient.startsWith(wanted)) return false;
  const rest = lenient.slice(wanted.length);
  return rest === "" || rest.startsWith("\0") || /^_[^\0]*\]/.test(rest);
}

const CREDENTIAL_COOKIE_NAMES = CREDENTIAL_COOKIES.map((name) => name.toLowerCase());

/**
 * A cookie name as lenient origin parsers read it (PHP decodes a `+` in it as a space); a
 * plain ASCII name, the common case, costs no decoding.
 */
function lenientCookieName(name: string): string {
  return /[%. [+]|[^\0-\x7f]/.test(name) ? lenientName(name, { plusIsSpace: true }) : name.toLowerCase();
}

/**
 * Every cookie name, and every name hidden in a value, is read as lenient parsers read it,
 * which costs microseconds when it holds escapes. A browser sends at most a few hundred
 * cookies; a `Cookie` header holding more than this many `;` and `=` together is refused rather
 * than read (thousands of escaped names in a 32 KB header cost tens of milliseconds; a cookie
 * without `=` is a name too), and an origin's `Set-Cookie` lines past as many (each line a
 * cookie, each `=` in it one more) are dropped unread.
 */
export const MAX_COOKIE_SEPARATORS = 2000;

/** The `;` and `=` in a cookie list or cookie-pair, counted before anything in it is decoded. */
export function cookieSeparators(text: string): number {
  return text.split(/[;=]/).length - 1;
}

/** Whether a cookie of this name carries a credential, however spelt. */
export function isCredentialCookie(name: string): boolean {
  const lenient = lenientCookieName(name);
  return CREDENTIAL_COOKIE_NAMES.some((credential) => readsAsName(lenient, credential));
}

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

/**
 * Whether a credential cookie hides in another cookie's value, after whitespace, a quote, a
 * comma or an `=` (`session=s CF_Authorization=…`, whitespace before its `=` too;
 * `session=s =CF_Authorization=…`): Python's SimpleCookie ends a cookie there and would read
 * it, and a lenient server skips an empty name. No browser sends that; cutting it out would
 * change the other cookie's value, so the request is refused instead.
 */
export function hidesCredentialCookie(cookie: string): boolean {
  // Looked around, not consumed: in `session=s =CF_Authorization=…` the `=` that ends one
  // match is what the next one follows.
  for (const [name] of cookie.matchAll(/(?<=[\s",=])[^\s",;=]+(?=\s*=)/g))
    if (isCredentialCookie(name as string)) return true;
  return false;
}

/**
 * A header name as an origin may read it: CGI-style servers (PHP under FastCGI, Django on
 * ASGI) read `_` as `-`, PHP reads `.` as `_` too (`X.User.Sub` is HTTP_X_USER_SUB), and
 * lighttpd's CGI and FastCGI read every character but a letter or digit as `_`
 * (`X~User~Sub` too).
 */
export function normaliseHeaderName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, "-");
}

/**
 * Builds the predicate "is this a client header the edge must remove before forwarding":
 * identity, override, hop-by-hop, credential and forwarding headers. `extraNames` are the
 * configured identity header names, which are stripped too.
 */
export function makeStripPredicate(extraNames: readonly string[]): (name: string) => boolean {
  const exact = new Set<string>([
    ...IDENTITY_HEADER_NAMES,
    ...REQUEST_OVERRIDE_HEADERS,
    ...HOP_BY_HOP_HEADERS,
    ...CREDENTIAL_HEADERS,
    ...FORWARDING_HEADERS,
    ...extraNames.map(normaliseHeaderName),
  ]);
  const prefixes = [...IDENTITY_HEADER_PREFIXES, FORWARDING_HEADER_PREFIX];
  return (name: string) => {
    const normal = normaliseHeaderName(name);
    if (exact.has(normal)) return true;
    // Cloudflare writes its `cf-` headers with `-` only: any other spelling (`cf_connecting_ip`)
    // is the client's, and origins that read it as `-` would take it for Cloudflare's.
    if (normal.startsWith("cf-") && /[^a-z\d-]/i.test(name)) return true;
    for (const prefix of prefixes) if (normal.startsWith(prefix)) return true;
    return false;
  };
}

/** Names listed in `Connection` (RFC 9110 §7.6.1) are hop-by-hop too. */
export function connectionNominated(headers: Headers): string[] {
  const value = headers.get("connection");
  if (!value) return [];
  return value
    .split(",")
    .map((token) => token.trim().toLowerCase())
    .filter((token) => token.length > 0);
}
