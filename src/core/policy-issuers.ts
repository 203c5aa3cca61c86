// A policy's issuers, validated and resolved: OIDC issuers (discovery or a jwks_uri) and
// Cloudflare Access teams, with their algorithms, key-set cache settings and claim mapping.

import type { ResolvedIssuer } from "./policy";
import { type Checker, optionalInteger } from "./policy-checker";
import { JWS_ALGORITHMS } from "./tokens/jws-verify";
import { isLoopbackHost, secureUrl } from "./urls";

export const DEFAULT_ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"] as const;

const CACHE_FIELDS = [
  "cache_ttl_s",
  "refresh_cooldown_s",
  "max_stale_s",
  "rotation_grace_s",
  "fetch_timeout_ms",
  "max_jwks_bytes",
] as const;

/**
 * A discovery document's path (OpenID's, or RFC 8414's), pasted where the issuer or its key
 * set's URL belongs; read without the query Azure AD B2C's carries (`?p=B2C_1_signin`).
 */
const DISCOVERY_DOCUMENT = /\/\.well-known\/(?:openid-configuration|oauth-authorization-server)\/?$/;

function isDiscoveryDocument(url: string): boolean {
  return DISCOVERY_DOCUMENT.test(new URL(url).pathname);
}

export function resolveIssuer(check: Checker, id: string, raw: unknown): ResolvedIssuer | undefined {
  const path = `issuers.${id}`;
  if (!check.object(raw, path)) return undefined;
  const common = ["kind", "algorithms", "clock_skew_s", "max_lifetime_s", "claims", ...CACHE_FIELDS];
  let issuer: string;
  let jwksUri: string | undefined;
  let discoveryUrl: string | undefined;
  let audiences: string[] = [];
  let typ: string | undefined;
  if (raw.kind === "oidc") {
    check.known(raw, path, [...common, "issuer", "jwks_uri", "audiences", "typ"]);
    if (!check.url(raw.issuer, `${path}.issuer`)) return undefined;
    // A template such as Entra's `{tenantid}` (the multi-tenant discovery document's): no token carries it.
    if (raw.issuer.includes("{")) check.fail(`${path}.issuer`, "is a {template}: name one tenant");
    // The issuer goes to the origin as x-user-iss, and a header carries ASCII: other characters
    // would arrive as raw UTF-8 bytes, which an origin reads as another issuer.
    else if (/[^\x21-\x7e]/.test(raw.issuer))
      check.fail(`${path}.issuer`, "must be printable ASCII: percent-encode other characters, as its tokens' iss does");
    else if (isDiscoveryDocument(raw.issuer))
      check.fail(`${path}.issuer`, "is a discovery document's URL: write the issuer, the part before /.well-known/");
    else {
      // Discovery fetches the issuer as the URL parser reads it (`\` as `/`, dot segments
      // resolved, the host in lower case), and finds a document naming it so: a token whose
      // `iss` says it as written would never be accepted.
      const parsed = new URL(raw.issuer).href;
      if (parsed !== raw.issuer && parsed !== `${raw.issuer}/`)
        check.fail(`${path}.issuer`, `is read as "${parsed}" by a URL parser: write it as its tokens' iss says it`);
    }
    issuer = raw.issuer;
    if (raw.jwks_uri !== undefined) {
      if (check.url(raw.jwks_uri, `${path}.jwks_uri`, true)) jwksUri = raw.jwks_uri;
      if (jwksUri && isDiscoveryDocument(jwksUri))
        check.fail(
          `${path}.jwks_uri`,
          "is a discovery document's URL, which holds no keys: leave jwks_uri out to discover it",
        );
    } else {
      discoveryUrl = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
    }
    if (check.stringArray(raw.audiences, `${path}.audiences`, { nonEmpty: true })) audiences = raw.audiences;
    if (raw.typ !== undefined && check.string(raw.typ, `${path}.typ`)) typ = raw.typ;
  } else if (raw.kind === "cloudflare_access") {
    check.known(raw, path, [...common, "team_domain"]);
    if (!check.string(raw.team_domain, `${path}.team_domain`)) return undefined;
    const origin = raw.team_domain.includes("://") ? raw.team_domain : `https://${raw.team_domain}`;
    if (!check.url(origin, `${path}.team_domain`)) return undefined;
    const parsed = secureUrl(origin) as URL;
    // The team's name alone (`acme`), or a host with a trailing dot: no assertion's `iss` says that.
    if (parsed.hostname.endsWith(".") || !/[.:]|^localhost$/.test(parsed.hostname)) {
      check.fail(`${path}.team_domain`, 'must be the team domain, such as "acme.cloudflareaccess.com"');
      return undefined;
    }
    // A path (the certs URL pasted whole, `…/cdn-cgi/access/certs`) would be in no assertion's
    // `iss` either: every Access request would be refused as issuer_unknown. Loopback hosts
    // keep theirs: a local stand-in for Access serves several teams under paths.
    if (parsed.pathname !== "/" && !isLoopbackHost(parsed.hostname)) {
      check.fail(
        `${path}.team_domain`,
        'must be the team domain alone, without a path, such as "acme.cloudflareaccess.com"',
      );
      return undefined;
    }
    // As parsed: Access writes `iss` in lower case, without a default port.
    issuer = parsed.href.replace(/\/$/, "");
    jwksUri = `${issuer}/cdn-cgi/access/certs`;
  } else {
    check.fail(`${path}.kind`, 'must be "oidc" or "cloudflare_access"');
    return undefined;
  }
  let algorithms: string[] = [...DEFAULT_ALGORITHMS];
  if (raw.algorithms !== undefined && check.stringArray(raw.algorithms, `${path}.algorithms`, { nonEmpty: true })) {
    for (const alg of raw.algorithms) {
      if (!JWS_ALGORITHMS.has(alg)) {
        check.fail(`${path}.algorithms`, `"${alg}" is not an accepted algorithm`);
      }
    }
    algorithms = raw.algorithms;
  }
  const claims: ResolvedIssuer["claims"] = {
    subject: "sub",
    tenant: "tenant_id",
    scopes: "scope",
    scopesFallback: "scp",
    groups: "groups",
    email: "email",
    audience: "aud",
  };
  if (raw.claims !== undefined && check.object(raw.claims, `${path}.claims`)) {
    const fields = ["subject", "tenant", "scopes", "groups", "email", "audience"] as const;
    check.known(raw.claims, `${path}.claims`, fields);
    for (const field of fields) {
      const value = raw.claims[field];
      if (value !== undefined && check.string(value, `${path}.claims.${field}`)) claims[field] = value;
    }
    if (raw.claims.scopes !== undefined) delete claims.scopesFallback;
    // An assertion's application is its AUD tag in `aud`, which routes must name: read from any
    // other claim, a route's tag would be compared with something Access never vouches for.
    if (raw.kind === "cloudflare_access" && raw.claims.audience !== undefined && raw.claims.audience !== "aud")
      check.fail(`${path}.claims.audience`, "Access assertions carry their application's AUD tag in aud: leave it out");
  }
  const before = check.problems.length;
  const cacheTtlS = optionalInteger(check, raw, "cache_ttl_s", path, 600, 300, 3600);
  const refreshCooldownS = optionalInteger(check, raw, "refresh_cooldown_s", path, 30, 1, 3599);
  // A set past its TTL is refreshed before it is used, but no sooner than a cooldown after the
  // last attempt (the one that fetched it): a cooldown as long would serve a withdrawn key on.
  // Compared only when both are as written: a default standing in for an invalid one is not.
  if (check.problems.length === before && refreshCooldownS >= cacheTtlS)
    check.fail(`${path}.refresh_cooldown_s`, `must be less than cache_ttl_s (${cacheTtlS})`);
  return {
    id,
    kind: raw.kind,
    issuer,
    ...(jwksUri !== undefined ? { jwksUri } : {}),
    ...(discoveryUrl !== undefined ? { discoveryUrl } : {}),
    audiences,
    algorithms,
    clockSkewS: optionalInteger(check, raw, "clock_skew_s", path, 60, 0, 300),
    // 0: unbounded (the default).
    maxLifetimeS: optionalInteger(check, raw, "max_lifetime_s", path, 0, 60, 366 * 86400),
    ...(typ !== undefined ? { typ } : {}),
    claims,
    cacheTtlS,
    refreshCooldownS,
    maxStaleS: optionalInteger(check, raw, "max_stale_s", path, 86400, 0, 7 * 86400),
    rotationGraceS: optionalInteger(check, raw, "rotation_grace_s", path, 3600, 0, 7 * 86400),
    fetchTimeoutMs: optionalInteger(check, raw, "fetch_timeout_ms", path, 2000, 100, 30000),
    maxJwksBytes: optionalInteger(check, raw, "max_jwks_bytes", path, 65536, 1024, 1048576),
  };
}
