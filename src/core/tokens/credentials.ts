// Finds the one credential a route accepts (RFC 6750 §2.1 bearer header, or a Cloudflare
// Access assertion) and refuses every ambiguous presentation instead of picking one.

import { ACCESS_COOKIE, cookiePairs } from "../cookies";
import { lenientName, readsAsName } from "../lenient-name";

export type CredentialKind = "bearer" | "access";

export type CredentialResult =
  | { ok: true; token: string; kind: CredentialKind }
  | { ok: false; reason: "token_missing" | "token_malformed"; detail: string };

// b64token per RFC 6750 §2.1: one space after the scheme, no other whitespace.
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * The scheme name an `Authorization` value starts with: it ends at the first character no
 * scheme name holds (RFC 9110 token), whatever follows (parsers that split at any whitespace
 * read `Bearer` then a vertical tab as Bearer).
 */
const SCHEME = /^[\w!#$%&'*+.^`|~-]*/;
/**
 * A Bearer credential starts one of the comma-joined parts of an `Authorization` value, ended
 * by whitespace of any kind, a comma or the end: not a word inside another scheme's
 * parameters (Digest's `uri="/tags=a,bearer"`).
 */
const BEARER_AMONG = /(?:^|,)[ \t]*bearer(?=[\s,]|$)/i;

function bearerFrom(value: string): CredentialResult {
  // Two Authorization headers arrive joined by ", "; a comma never occurs in a token. Other
  // schemes' credentials may hold commas (Digest, OAuth 1.0, AWS SigV4): without a Bearer
  // among the parts, the value is another scheme, not two credentials.
  if (value.includes(",") && BEARER_AMONG.test(value)) {
    return { ok: false, reason: "token_malformed", detail: "multiple_credentials" };
  }
  const scheme = SCHEME.exec(value)?.[0] ?? "";
  if (scheme.toLowerCase() !== "bearer") return { ok: false, reason: "token_missing", detail: "unsupported_scheme" };
  const match = BEARER.exec(value);
  if (!match) {
    if (/^bearer\s*$/i.test(value)) return { ok: false, reason: "token_malformed", detail: "empty_token" };
    return { ok: false, reason: "token_malformed", detail: "bad_bearer_syntax" };
  }
  return { ok: true, token: match[1] as string, kind: "bearer" };
}

function accessFrom(headers: Headers): CredentialResult | undefined {
  // The header if sent (two arrive joined by ", "; a comma never occurs in a token), else
  // the cookie: either way one non-empty token, or a refusal that says why.
  const header = headers.get("cf-access-jwt-assertion");
  const tokens =
    header !== null
      ? header.split(",")
      : cookiePairs(headers.get("cookie") ?? "")
          .filter(([name]) => name === ACCESS_COOKIE)
          .map(([, value]) => value);
  if (tokens.length > 1) return { ok: false, reason: "token_malformed", detail: "multiple_credentials" };
  const token = tokens[0];
  if (token === undefined) return undefined;
  if (!token) return { ok: false, reason: "token_malformed", detail: "empty_token" };
  return { ok: true, token, kind: "access" };
}

/**
 * The credential for a route that accepts bearer tokens and/or Access assertions. Tokens
 * in the query string are never accepted (RFC 6750 §2.3 is a MUST NOT for us): a request
 * carrying one is refused whatever else it carries, so an unverified token never rides
 * along to the origin next to a verified one. A route that accepts both kinds reads a
 * Bearer `Authorization` first; any other scheme there leaves the Access assertion to decide.
 */
export function extractCredential(
  headers: Headers,
  url: URL,
  accepts: { bearer: boolean; access: boolean },
): CredentialResult {
  const authorization = headers.get("authorization");
  if (hasQueryCredential(url.search)) {
    const other = (accepts.bearer && authorization !== null) || (accepts.access && accessFrom(headers) !== undefined);
    return other
      ? { ok: false, reason: "token_malformed", detail: "multiple_methods" }
      : { ok: false, reason: "token_missing", detail: "query_token_not_accepted" };
  }
  const bearer = accepts.bearer && authorization !== null ? bearerFrom(authorization) : undefined;
  // Another scheme leaves an Access assertion to decide, on a route that takes both.
  if (bearer && (bearer.ok || !accepts.access || bearer.detail !== "unsupported_scheme")) return bearer;
  if (accepts.access) {
    const access = accessFrom(headers);
    if (access) return access;
  }
  return bearer ?? { ok: false, reason: "token_missing", detail: "no_credentials" };
}

/** A parameter's name (`name=value`, or a name alone) as `lenientName` reads it. */
function parameterName(part: string): string {
  const eq = part.indexOf("=");
  return lenientName(eq < 0 ? part : part.slice(0, eq), { plusIsSpace: true });
}

/**
 * `access_token` as `lenientName` and `readsAsName` read it: in any case, as ASP.NET looks
 * names up (SignalR's `access_token` goes through it); PHP's `access.token`, ` access_token`;
 * the array forms PHP and `qs` read as the name (`access_token[]`, `access_token[0]x`); and
 * cut at a NUL, as PHP cuts it (`access_token%00x`).
 */
function isQueryCredential(part: string): boolean {
  return readsAsName(parameterName(part), "access_token");
}

/**
 * A credential, or a method override, read the same way: Laravel and Symfony (parameter
 * override on), Spring's HiddenHttpMethodFilter and Gorilla's override handler run a POST
 * carrying `?_method=DELETE` as a DELETE, which the edge authorised as the POST it is, and
 * ASP.NET MVC one carrying `?X-HTTP-Method-Override=DELETE`; ABP's `__tenant`, which it
 * reads before the route, so `?__tenant=globex` would run a request bound to acme as globex's;
 * and any name Apache Camel takes for its own message headers (`?CamelHttpMethod=DELETE`,
 * CVE-2025-29891), in any case.
 */
function isTakenOut(part: string): boolean {
  const name = parameterName(part);
  return (
    // Only a `name=value`: a word in a `;`-separated value (`tags=horse;camel`) is no parameter.
    (name.startsWith("camel") && part.includes("=")) ||
    ["access_token", "_method", "x-http-method-override", "__tenant"].some((wanted) => readsAsName(name, wanted))
  );
}

/**
 * Parameters are split on `;` as well as `&`: several parsers still in use (Rack 2, Python
 * before 3.9.2, Go before 1.17) take `;` as a separator, so `a=1;access_token=…` holds one.
 */
const SEPARATOR = /[&;]/;

/** A cheap test first: a name that reads as access_token holds "access" in some case, or an escape. */
const MAY_HOLD_CREDENTIAL = /access|%/i;

/** The same for the overrides too (the runtime hands the query over in ASCII, escapes for the rest). */
const MAY_HOLD_TAKEN_OUT = /access|method|tenant|camel|%/i;

/** Whether the query string (`?…` or empty) carries an `access_token`, however its name is spelt. */
export function hasQueryCredential(search: string): boolean {
  return (
    search.length > 1 && MAY_HOLD_CREDENTIAL.test(search) && search.slice(1).split(SEPARATOR).some(isQueryCredential)
  );
}

/**
 * The query string (`?…` or empty) minus the parameters `takenOut` names, however their names
 * are spelt (none unless `mayHold` matches). Anything else goes on exactly as sent, separators
 * included.
 */
function withoutParameters(search: string, mayHold: RegExp, takenOut: (part: string) => boolean): string {
  if (search.length < 2 || !mayHold.test(search)) return search;
  let kept = "";
  let start = 1;
  let changed = false;
  for (let i = 1; i <= search.length; i++) {
    if (i < search.length && !SEPARATOR.test(search.charAt(i))) continue;
    const part = search.slice(start, i);
    // A kept parameter keeps the separator that came before it (none for the first one kept).
    if (takenOut(part)) changed = true;
    else kept += kept === "" ? part : `${search.charAt(start - 1)}${part}`;
    start = i + 1;
  }
  if (!changed) return search;
  return kept === "" ? "" : `?${kept}`;
}

/**
 * The query string the origin is sent: minus every `access_token` (a credential in the URL
 * never goes on, on public routes either; authenticated routes refuse such a request
 * outright), every method override and ABP's tenant, however their names are spelt.
 */
export function originQuery(search: string): string {
  return withoutParameters(search, MAY_HOLD_TAKEN_OUT, isTakenOut);
}

/**
 * A URL's user name and password (`https://alice:secret@host/…`), read as the URL parser reads
 * a web URL's: up to the last `@` before the host ends, however many slashes or backslashes
 * follow the scheme.
 */
const USERINFO = /^((?:https?|wss?):[\\/]*)[^\\/?#]*@/i;

/**
 * A page's URL as a `Referer` names it, minus any user name and password, every
 * `access_token` in its query and any fragment (RFC 9110 §10.1.3: a Referer has neither; an
 * implicit grant's token is kept in the fragment): a credential a page was opened with never
 * reaches the origin in the next request's Referer. Browsers send neither; a client that
 * writes its own Referer may (curl's `--referer ";auto"` sent the userinfo, CVE-2021-22876).
 */
export function refererWithoutCredentials(referer: string): string {
  const hash = referer.indexOf("#");
  const page = (hash < 0 ? referer : referer.slice(0, hash)).replace(USERINFO, "$1");
  const query = page.indexOf("?");
  if (query < 0) return page;
  return page.slice(0, query) + withoutParameters(page.slice(query), MAY_HOLD_CREDENTIAL, isQueryCredential);
}
