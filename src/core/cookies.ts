// The `Cookie` header as origins read it: where each cookie ends, its name however spelt, and
// the credential cookies (the Access cookie) cut out, or the request refused where cutting
// would change another cookie.

import { lenientName, readsAsName } from "./lenient-name";

/** The cookie Cloudflare Access sets for browsers; it carries the Access assertion. */
export const ACCESS_COOKIE = "CF_Authorization";

/** Cookie names that carry credentials and are removed from the forwarded `Cookie`. */
const CREDENTIAL_COOKIES: readonly string[] = [ACCESS_COOKIE];

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
function cookieParts(cookieHeader: string): string[] {
  return cookieHeader.split(COOKIE_BOUNDARY);
}

const OWS_START = /^[ \t]+/;
const OWS_END = /[ \t]+$/;

/**
 * Without the spaces and tabs around it, as browsers trim a cookie (RFC 6265 §5.2): a no-break
 * or ideographic space, which String#trim also takes, can be part of a cookie as sent.
 */
function trimOws(text: string): string {
  return text.replace(OWS_START, "").replace(OWS_END, "");
}

/**
 * A cookie's name as the most lenient server may read it: what comes before its `=`, without
 * any whitespace around it (String#trim's, Unicode spaces included); a cookie without `=` is
 * all name, as servers read the `Cookie` header (a browser sends a nameless cookie's value that way).
 */
function cookieName(cookie: string): string {
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

/**
 * The cookies of a `Cookie` header in order, as a browser writes them: name and value without
 * the spaces and tabs around them (so a name is read only as spelt: `\u00a0CF_Authorization`
 * is another cookie), and the pair as sent.
 */
export function cookiePairs(cookieHeader: string): [name: string, value: string, raw: string][] {
  const pairs: [string, string, string][] = [];
  const parts = cookieParts(cookieHeader);
  for (let i = 0; i < parts.length; i += 2) {
    const raw = trimOws(parts[i] as string);
    if (!raw) continue;
    const eq = raw.indexOf("=");
    pairs.push(eq < 0 ? [raw, "", raw] : [trimOws(raw.slice(0, eq)), trimOws(raw.slice(eq + 1)), raw]);
  }
  return pairs;
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
function isCredentialCookie(name: string): boolean {
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
    kept += kept ? between + part : part.replace(OWS_START, "");
    between = "";
  }
  // Nothing to remove: the header goes on exactly as the client sent it.
  return removed ? kept.replace(OWS_END, "") : cookie;
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
