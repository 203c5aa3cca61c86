// Maps verified claims to an Identity through the issuer's claim mapping. Values that will
// become origin headers must be unambiguous there, so anything a header cannot carry
// verbatim (control characters, non-ASCII, separators) rejects the token.

import type { Identity } from "../identity";
import type { ResolvedIssuer } from "../policy";
import type { JsonObject } from "./compact";

const HEADER_TOKEN = /^[\x21-\x7E]+$/;
/**
 * The longest subject or tenant accepted: OpenID Connect caps `sub` at 255 ASCII characters.
 * Both become header values and rate-limit counter names, which must stay bounded.
 */
export const MAX_IDENTIFIER_CHARS = 255;

/** A subject or tenant the edge accepts: 1 to 255 printable ASCII characters, no spaces. */
function isIdentifier(value: unknown): value is string {
  return typeof value === "string" && HEADER_TOKEN.test(value) && value.length <= MAX_IDENTIFIER_CHARS;
}
/**
 * A tenant the edge accepts: an identifier without `,`, `"`, `\` or `|` (x-tenant is one value,
 * and an origin that reads headers as lists, as Spring's List<String> binding does, would take
 * `acme,globex` for acme; one that unquotes list members, as Werkzeug's parse_list_header
 * does, `"acme"` for acme; Loki, Mimir, Cortex and Tempo with tenant federation on read
 * `X-Scope-OrgID: acme|globex` as both tenants).
 */
export function isTenant(value: unknown): value is string {
  return isIdentifier(value) && !/[,"\\|]/.test(value);
}

/**
 * A group name: printable ASCII, inner spaces allowed, but no `,` (the groups header joins
 * names with it), `"` or `\`: an origin that reads the header as an HTTP list (Werkzeug's
 * parse_list_header, Python's parse_http_list) would read `"admins"` as `admins`, or two
 * quoted names as one.
 */
const GROUP_NAME = /^(?! )[ !#-+\--[\]-~]*[!#-+\--[\]-~]$/;

/** A group name a token may carry (see GROUP_NAME). */
export function isGroupName(value: unknown): value is string {
  return typeof value === "string" && GROUP_NAME.test(value);
}

/**
 * A scope: an RFC 6749 §3.3 scope-token (printable ASCII, no space, `"` or `\`) without `,`.
 * The scopes header joins them with spaces, but an origin that reads headers as lists
 * (Spring's List<String> binding) would read `read,admin:write` as two scopes, one of them
 * a scope the route's rules never granted.
 */
const SCOPE_NAME = /^[\x21\x23-\x2B\x2D-\x5B\x5D-\x7E]+$/;

/** A scope a token may carry, and a policy may require (see SCOPE_NAME). */
export function isScopeName(value: unknown): value is string {
  return typeof value === "string" && SCOPE_NAME.test(value);
}

export type ClaimsResult = { ok: true; identity: Identity } | { ok: false; detail: string };

function stringList(value: unknown): string[] | undefined {
  if (typeof value === "string") return value.split(" ").filter(Boolean);
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value as string[];
  return undefined;
}

/**
 * Groups: an array, or one string that is one group. Never split: providers that send a
 * string (ADFS, Azure and SAML bridges, for a single group) mean the whole name, and splitting
 * `Domain Admins` would grant the group `Admins`.
 */
function groupList(value: unknown): string[] | undefined {
  if (typeof value === "string") return value === "" ? [] : [value];
  return Array.isArray(value) ? stringList(value) : undefined;
}

export function identityFromClaims(
  issuer: ResolvedIssuer,
  payload: JsonObject,
  tokenHash: () => Promise<string>,
): ClaimsResult {
  // Access signs application tokens (`type: "app"`, service tokens included) and the team's
  // global session token (`type: "org"`) with the same keys and `iss`: only the former speaks
  // for a request to an application.
  if (issuer.kind === "cloudflare_access" && payload.type !== "app")
    return { ok: false, detail: "access_type_not_app" };
  const map = issuer.claims;
  let subject = payload[map.subject];
  // Cloudflare Access service-token assertions carry an empty `sub` and the client id in `common_name`.
  if (issuer.kind === "cloudflare_access" && (subject === "" || subject === undefined)) subject = payload.common_name;
  if (!isIdentifier(subject)) return { ok: false, detail: "subject_missing_or_unsafe" };

  const tenant = payload[map.tenant];
  if (tenant !== undefined && !isTenant(tenant)) return { ok: false, detail: "tenant_unsafe" };
  // Only a claim that is absent falls back: a `null` one is of the wrong type, and refused.
  const own = payload[map.scopes];
  const rawScopes = own !== undefined ? own : map.scopesFallback && payload[map.scopesFallback];
  const scopes = rawScopes === undefined ? [] : stringList(rawScopes);
  if (!scopes?.every(isScopeName)) return { ok: false, detail: "scopes_unsafe" };
  const rawGroups = payload[map.groups];
  const groups = rawGroups === undefined ? [] : groupList(rawGroups);
  if (!groups?.every(isGroupName)) return { ok: false, detail: "groups_unsafe" };
  // An empty address is none: authentik sends `""` for a user without one (service accounts).
  const email = payload[map.email] === "" ? undefined : payload[map.email];
  if (email !== undefined && (typeof email !== "string" || !HEADER_TOKEN.test(email))) {
    return { ok: false, detail: "email_unsafe" };
  }
  // An address the issuer has not verified is anyone's to claim (sign up with the victim's
  // address): passed on only when the token does not say so, as many access tokens carry no
  // flag; a flag that is anything but true (some providers send "true" as a string) says so.
  // The flag speaks of the `email` claim (OIDC Core §5.1), not of another one mapped as email.
  const flag = payload.email_verified;
  const unverified = !(
    flag === undefined ||
    flag === true ||
    (typeof flag === "string" && flag.toLowerCase() === "true")
  );
  // Such an address as the subject would make whoever signed up with it that user.
  if (unverified && map.subject === "email") return { ok: false, detail: "subject_email_unverified" };
  const verified = !(unverified && map.email === "email");
  return {
    ok: true,
    identity: {
      issuerId: issuer.id,
      issuer: issuer.issuer,
      kind: issuer.kind,
      subject,
      ...(typeof tenant === "string" ? { tenant } : {}),
      scopes,
      groups,
      ...(typeof email === "string" && verified ? { email } : {}),
      claims: payload,
      tokenHash,
    },
  };
}
