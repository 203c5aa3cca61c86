// Validates a policy document and compiles it into the shape the pipeline uses: at build
// time for the deployable Worker (scripts/compile-policy.mjs), once per isolate for the local
// stack and tests. Every error names the field and why, so a bad policy fails loudly at
// `npm test` and at deploy instead of running half-configured.

import { DEFAULT_REALM } from "./deny";
import {
  CREDENTIAL_HEADERS,
  FORWARDING_HEADER_PREFIX,
  FORWARDING_HEADERS,
  normaliseHeaderName,
  REQUEST_OVERRIDE_HEADERS,
} from "./headers";
import {
  MAX_COUNTERS_PER_CALL,
  MAX_LIMIT,
  MAX_LIMITER_TIMEOUT_MS,
  MAX_NAME_CHARS,
  MAX_WINDOW_S,
} from "./limits/counter-table";
import { secureUrl } from "./urls";
import type {
  AuthRequirement,
  ClaimMapping,
  CorsConfig,
  IdentityHeaderNames,
  LimitKey,
  LimitSpec,
  UpstreamConfig,
} from "./policy-types";
import { HTTP_METHODS } from "./policy-types";
import {
  type CompiledPattern,
  capturesOf,
  compileHostPattern,
  compilePathPattern,
  type HostPattern,
  coversHost,
  takesMethod,
} from "./routes";
import { isGroupName, isTenant, MAX_IDENTIFIER_CHARS } from "./tokens/claims";
import { JWS_ALGORITHMS } from "./tokens/jws-verify";

export const DEFAULT_ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"] as const;
const METHODS: ReadonlySet<string> = new Set(HTTP_METHODS);
const LIMIT_KEYS: ReadonlySet<string> = new Set(["tenant", "user", "route", "ip"]);
/**
 * Valid tenants that an override may still not name: every plain object has these
 * properties, and `"__proto__"` in a JSON policy bundled as a JS object literal would set
 * the object's prototype instead of adding a tenant.
 */
const RESERVED_TENANTS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

export interface ResolvedIssuer {
  id: string;
  kind: "oidc" | "cloudflare_access";
  /** Exact `iss` expected in tokens. */
  issuer: string;
  /** Where keys come from: an explicit JWKS URL, or discovery on the issuer. */
  jwksUri?: string;
  discoveryUrl?: string;
  audiences: string[];
  algorithms: string[];
  clockSkewS: number;
  typ?: string;
  claims: Required<ClaimMapping> & { scopesFallback?: string };
  cacheTtlS: number;
  refreshCooldownS: number;
  maxStaleS: number;
  rotationGraceS: number;
  fetchTimeoutMs: number;
  maxJwksBytes: number;
}

export interface ResolvedIdentityHeaders {
  subject: string;
  tenant: string;
  scopes: string;
  groups: string;
  email: string;
  issuer: string;
}

export interface CompiledRoute {
  name: string;
  index: number;
  methods: ReadonlySet<string>;
  pattern: CompiledPattern;
  host?: HostPattern;
  auth: "public" | AuthRequirement;
  upstreamName: string;
  upstream: UpstreamConfig;
  cors?: CorsConfig;
  /** Every limit that applies: the inherited defaults, each replaced by the route's own limit of its name. */
  limits: LimitSpec[];
  /** The inherited defaults the route's own limits replace by name (for the lint), if any. */
  replacedDefaults?: LimitSpec[];
  /** `policy:<route>@v<version>`, as named in audit records. */
  matchedRule: string;
}

export interface CompiledPolicy {
  version: number;
  routes: CompiledRoute[];
  issuers: ReadonlyMap<string, ResolvedIssuer>;
  /** By tenant, then limit name; null-prototype objects, read by own keys only. */
  tenantOverrides: Record<string, Record<string, { limit: number; window_s?: number }>>;
  identityHeaders: ResolvedIdentityHeaders;
  maxUrlBytes: number;
  maxHeaderBytes: number;
  maxTokenBytes: number;
  serverTiming: boolean;
  limiterTimeoutMs: number;
  realm: string;
}

export class PolicyError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid policy:\n  - ${problems.join("\n  - ")}`);
    this.name = "PolicyError";
  }
}

/** Collects problems with the path of the field they concern. */
class Checker {
  readonly problems: string[] = [];
  fail(path: string, why: string): void {
    this.problems.push(`${path}: ${why}`);
  }
  object(value: unknown, path: string): value is Record<string, unknown> {
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return true;
    this.fail(path, "must be an object");
    return false;
  }
  string(value: unknown, path: string): value is string {
    if (typeof value === "string" && value.length > 0) return true;
    this.fail(path, "must be a non-empty string");
    return false;
  }
  stringArray(value: unknown, path: string, { nonEmpty = false } = {}): value is string[] {
    if (!Array.isArray(value) || value.some((item) => typeof item !== "string" || item.length === 0)) {
      this.fail(path, "must be an array of non-empty strings");
      return false;
    }
    if (nonEmpty && value.length === 0) {
      this.fail(path, "must not be empty");
      return false;
    }
    return true;
  }
  integer(value: unknown, path: string, min: number, max: number): value is number {
    if (typeof value === "number" && Number.isInteger(value) && value >= min && value <= max) return true;
    this.fail(path, `must be an integer from ${min} to ${max}`);
    return false;
  }
  /** `query`: whether the URL may carry a query or fragment (a key set URL may; an issuer or prefix may not). */
  url(value: unknown, path: string, query = false): value is string {
    if (!this.string(value, path)) return false;
    const url = secureUrl(value);
    if (!url) {
      this.fail(path, "must be an https URL (http only for loopback hosts)");
      return false;
    }
    if (url.username || url.password) {
      // A policy is reviewed and bundled in plain text: no place for a secret (and the edge
      // would not send it anyway).
      this.fail(path, "must not carry a user name or password");
      return false;
    }
    // The raw text: `https://o.example?` has an empty search, yet it turns what is appended
    // to it (a discovery path, a forwarded path) into a query.
    if (!query && /[?#]/.test(value)) this.fail(path, "must not carry a query or fragment");
    return true;
  }
  /** An optional boolean field of `source`. */
  boolean(source: Record<string, unknown>, field: string, path: string): void {
    const value = source[field];
    if (value !== undefined && typeof value !== "boolean") this.fail(`${path}.${field}`, "must be a boolean");
  }
  known(value: Record<string, unknown>, path: string, allowed: readonly string[]): void {
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.fail(`${path}.${key}`, "unknown field");
    }
  }
}

function optionalInteger(
  check: Checker,
  source: Record<string, unknown>,
  field: string,
  path: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const value = source[field];
  if (value === undefined) return fallback;
  return check.integer(value, `${path}.${field}`, min, max) ? value : fallback;
}

const CACHE_FIELDS = [
  "cache_ttl_s",
  "refresh_cooldown_s",
  "max_stale_s",
  "rotation_grace_s",
  "fetch_timeout_ms",
  "max_jwks_bytes",
] as const;

function resolveIssuer(check: Checker, id: string, raw: unknown): ResolvedIssuer | undefined {
  const path = `issuers.${id}`;
  if (!check.object(raw, path)) return undefined;
  const common = ["kind", "algorithms", "clock_skew_s", "claims", ...CACHE_FIELDS];
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
    if (/[^\x21-\x7e]/.test(raw.issuer))
      check.fail(`${path}.issuer`, "must be printable ASCII: percent-encode other characters, as its tokens' iss does");
    issuer = raw.issuer;
    if (raw.jwks_uri !== undefined) {
      if (check.url(raw.jwks_uri, `${path}.jwks_uri`, true)) jwksUri = raw.jwks_uri;
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
  };
  if (raw.claims !== undefined && check.object(raw.claims, `${path}.claims`)) {
    const fields = ["subject", "tenant", "scopes", "groups", "email"] as const;
    check.known(raw.claims, `${path}.claims`, fields);
    for (const field of fields) {
      const value = raw.claims[field];
      if (value !== undefined && check.string(value, `${path}.claims.${field}`)) claims[field] = value;
    }
    if (raw.claims.scopes !== undefined) delete claims.scopesFallback;
  }
  return {
    id,
    kind: raw.kind,
    issuer,
    ...(jwksUri !== undefined ? { jwksUri } : {}),
    ...(discoveryUrl !== undefined ? { discoveryUrl } : {}),
    audiences,
    algorithms,
    clockSkewS: optionalInteger(check, raw, "clock_skew_s", path, 60, 0, 300),
    ...(typ !== undefined ? { typ } : {}),
    claims,
    cacheTtlS: optionalInteger(check, raw, "cache_ttl_s", path, 600, 300, 3600),
    refreshCooldownS: optionalInteger(check, raw, "refresh_cooldown_s", path, 30, 1, 3600),
    maxStaleS: optionalInteger(check, raw, "max_stale_s", path, 86400, 0, 7 * 86400),
    rotationGraceS: optionalInteger(check, raw, "rotation_grace_s", path, 3600, 0, 7 * 86400),
    fetchTimeoutMs: optionalInteger(check, raw, "fetch_timeout_ms", path, 2000, 100, 30000),
    maxJwksBytes: optionalInteger(check, raw, "max_jwks_bytes", path, 65536, 1024, 1048576),
  };
}

function checkUpstream(check: Checker, name: string, raw: unknown): UpstreamConfig | undefined {
  const path = `upstreams.${name}`;
  if (!check.object(raw, path)) return undefined;
  check.known(raw, path, ["url", "service", "timeout_ms"]);
  if (raw.timeout_ms !== undefined) check.integer(raw.timeout_ms, `${path}.timeout_ms`, 100, 300000);
  const timeout = typeof raw.timeout_ms === "number" ? { timeout_ms: raw.timeout_ms } : {};
  if (raw.url !== undefined && raw.service !== undefined) {
    check.fail(path, "give either url or service, not both");
    return undefined;
  }
  if (raw.url !== undefined) {
    if (!check.url(raw.url, `${path}.url`)) return undefined;
    // The prefix of every forwarded URL, as fetch reads it (`\` is `/`), without trailing
    // slashes: one left at the join starts the path with `//`, which an origin resolving it
    // against a base reads as a host (`//public/admin` as `/admin`).
    return { url: (secureUrl(raw.url) as URL).href.replace(/\/+$/, ""), ...timeout };
  }
  if (raw.service !== undefined) {
    if (!check.string(raw.service, `${path}.service`)) return undefined;
    return { service: raw.service, ...timeout };
  }
  check.fail(path, "needs url or service");
  return undefined;
}

function checkLimits(check: Checker, raw: unknown, path: string, isPublic: boolean | undefined): LimitSpec[] {
  if (!Array.isArray(raw)) {
    check.fail(path, "must be an array of limits");
    return [];
  }
  const limits: LimitSpec[] = [];
  // One list declares a name once: with two, only the last would apply, silently.
  const declaredAt = new Map<string, string>();
  raw.forEach((item, i) => {
    const at = `${path}[${i}]`;
    if (!check.object(item, at)) return;
    check.known(item, at, ["name", "key", "limit", "window_s", "on_error"]);
    if (typeof item.name === "string") {
      const first = declaredAt.get(item.name);
      if (first !== undefined) check.fail(`${at}.name`, `"${item.name}" is already declared at ${first}`);
      else declaredAt.set(item.name, at);
    }
    // Names go into counter names, which the limiter objects bound, and into the metrics'
    // comma-separated failed_open column, which a comma in one would make ambiguous.
    const nameFits =
      typeof item.name !== "string" || (item.name.length <= MAX_NAME_CHARS && /^[A-Za-z0-9._:-]+$/.test(item.name));
    if (!nameFits)
      check.fail(`${at}.name`, `at most ${MAX_NAME_CHARS} characters: letters, digits, '.', '_', ':' and '-'`);
    const ok =
      check.string(item.name, `${at}.name`) &&
      nameFits &&
      check.integer(item.limit, `${at}.limit`, 1, MAX_LIMIT) &&
      check.integer(item.window_s, `${at}.window_s`, 1, MAX_WINDOW_S);
    if (typeof item.key !== "string" || !LIMIT_KEYS.has(item.key)) {
      check.fail(`${at}.key`, "must be one of tenant, user, route, ip");
      return;
    }
    if (isPublic === true && (item.key === "tenant" || item.key === "user")) {
      check.fail(`${at}.key`, `"${item.key}" needs an identity (public routes: ip or route)`);
    }
    if (isPublic === false && item.key === "ip") {
      check.fail(`${at}.key`, '"ip" limits apply to public routes only');
    }
    if (item.on_error !== undefined && item.on_error !== "deny" && item.on_error !== "allow") {
      check.fail(`${at}.on_error`, 'must be "deny" or "allow"');
    }
    if (ok) limits.push(item as unknown as LimitSpec);
  });
  return limits;
}

/**
 * `limits.tenant_overrides`, checked against every declared limit (`declared`: the defaults
 * and each route's own). An override must be able to take effect: its tenant must be one a
 * token can carry, and its limit a tenant or user limit (overrides resize only those).
 */
function checkTenantOverrides(
  check: Checker,
  raw: unknown,
  declared: readonly LimitSpec[],
): CompiledPolicy["tenantOverrides"] {
  const compiled: CompiledPolicy["tenantOverrides"] = Object.create(null);
  if (raw === undefined || !check.object(raw, "limits.tenant_overrides")) return compiled;
  const keysByName = new Map<string, Set<LimitKey>>();
  for (const spec of declared) {
    const keys = keysByName.get(spec.name) ?? new Set<LimitKey>();
    keys.add(spec.key);
    keysByName.set(spec.name, keys);
  }
  for (const [tenant, byName] of Object.entries(raw)) {
    const at = `limits.tenant_overrides.${tenant}`;
    if (RESERVED_TENANTS.has(tenant)) {
      check.fail(at, `"${tenant}" is reserved (an object property name)`);
    } else if (!isTenant(tenant)) {
      check.fail(at, `a tenant is 1 to ${MAX_IDENTIFIER_CHARS} printable ASCII characters, no spaces or commas`);
    }
    if (!check.object(byName, at)) continue;
    const overrides: Record<string, { limit: number; window_s?: number }> = Object.create(null);
    for (const [name, override] of Object.entries(byName)) {
      const path = `${at}.${name}`;
      const keys = keysByName.get(name);
      if (!keys) {
        check.fail(path, `no tenant or user limit is named "${name}"`);
      } else if (!keys.has("tenant") && !keys.has("user")) {
        check.fail(path, `"${name}" is a ${[...keys].join(" or ")} limit, not a tenant or user one`);
      }
      if (!check.object(override, path)) continue;
      check.known(override, path, ["limit", "window_s"]);
      const limitOk = check.integer(override.limit, `${path}.limit`, 1, MAX_LIMIT);
      const windowOk =
        override.window_s === undefined || check.integer(override.window_s, `${path}.window_s`, 1, MAX_WINDOW_S);
      if (limitOk && windowOk) {
        overrides[name] = {
          limit: override.limit as number,
          ...(override.window_s !== undefined ? { window_s: override.window_s as number } : {}),
        };
      }
    }
    compiled[tenant] = overrides;
  }
  return compiled;
}

/** A non-empty list of methods, as given (an empty list when it is none). */
function checkMethods(check: Checker, raw: unknown, path: string): string[] {
  if (!check.stringArray(raw, path, { nonEmpty: true })) return [];
  for (const method of raw) {
    if (METHODS.has(method)) continue;
    const hint = METHODS.has(method.toUpperCase()) ? "use upper case" : `one of ${[...METHODS].join(", ")}`;
    check.fail(path, `unknown method "${method}" (${hint})`);
  }
  return raw;
}

/** RFC 9110 §5.1 field-name (token), without `*`, which CORS would read as a wildcard. */
const HEADER_NAME = /^[!#$%&'+.^_`|~0-9A-Za-z-]+$/;

/**
 * Why `origin` can never equal a browser's `Origin` header, or undefined. Origins are
 * compared as exact strings, and browsers send the serialised form: scheme and host in
 * lower case, no default port, no path. So `https://App.example.com`, `…:443`, `…/` or a
 * `*.example.com` pattern would silently match nothing.
 */
function originProblem(origin: string): string | undefined {
  // Never quoted: a password in it would go to the deploy's log.
  if (origin.includes("@")) return "an origin must not carry a user name or password";
  let serialised: string | undefined;
  try {
    const url = new URL(origin);
    if (url.protocol === "https:" || url.protocol === "http:") serialised = url.origin;
  } catch {
    // not a URL
  }
  if (serialised === undefined || origin.includes("*"))
    return `"${origin}" must be "*" or an origin such as https://app.example.com`;
  if (serialised !== origin) return `"${origin}" never matches: browsers send it as "${serialised}"`;
  return undefined;
}

function checkCors(check: Checker, raw: unknown, path: string): CorsConfig | undefined {
  if (!check.object(raw, path)) return undefined;
  check.known(raw, path, [
    "allow_origins",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age_s",
  ]);
  if (!check.stringArray(raw.allow_origins, `${path}.allow_origins`, { nonEmpty: true })) return undefined;
  for (const origin of raw.allow_origins) {
    const problem = origin === "*" ? undefined : originProblem(origin);
    if (problem) check.fail(`${path}.allow_origins`, problem);
  }
  if (raw.allow_credentials === true && raw.allow_origins.includes("*")) {
    check.fail(`${path}.allow_credentials`, 'cannot be true when allow_origins contains "*"');
  }
  if (raw.allow_methods !== undefined) checkMethods(check, raw.allow_methods, `${path}.allow_methods`);
  for (const field of ["allow_headers", "expose_headers"] as const) {
    const names = raw[field];
    if (names === undefined || !check.stringArray(names, `${path}.${field}`)) continue;
    for (const name of names) {
      // Listed literally: `*` means "any" only without credentials, so it is not offered.
      if (!HEADER_NAME.test(name))
        check.fail(`${path}.${field}`, `"${name}" is not a header name (and * is not supported)`);
    }
  }
  check.boolean(raw, "allow_credentials", path);
  if (raw.max_age_s !== undefined) check.integer(raw.max_age_s, `${path}.max_age_s`, 0, 86400);
  return raw as unknown as CorsConfig;
}

/** RFC 6749 §3.3 scope-token: what a token's scope can hold, and what a challenge can quote. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

function checkScopeTokens(check: Checker, scopes: readonly string[], path: string): void {
  for (const scope of scopes) {
    if (!SCOPE_TOKEN.test(scope)) check.fail(path, `"${scope}" is not a scope (printable ASCII, no spaces, " or \\)`);
  }
}

function checkAuth(
  check: Checker,
  raw: unknown,
  path: string,
  issuers: ReadonlyMap<string, ResolvedIssuer>,
): "public" | AuthRequirement | undefined {
  if (raw === "public") return "public";
  if (raw === undefined) {
    check.fail(path, 'is required: the issuers this route accepts, or "public"');
    return undefined;
  }
  if (!check.object(raw, path)) return undefined;
  check.known(raw, path, ["issuers", "audiences", "scopes", "groups", "claims"]);
  if (!check.stringArray(raw.issuers, `${path}.issuers`, { nonEmpty: true })) return undefined;
  for (const id of raw.issuers) {
    const issuer = issuers.get(id);
    if (!issuer) {
      check.fail(`${path}.issuers`, `"${id}" is not defined in issuers`);
    } else if (issuer.kind === "cloudflare_access" && raw.audiences === undefined) {
      check.fail(`${path}.audiences`, `is required with Access issuer "${id}" (its AUD tag)`);
    }
  }
  if (raw.audiences !== undefined) check.stringArray(raw.audiences, `${path}.audiences`, { nonEmpty: true });
  if (raw.scopes !== undefined && check.object(raw.scopes, `${path}.scopes`)) {
    check.known(raw.scopes, `${path}.scopes`, ["all_of", "any_of"]);
    // An empty all_of, or none at all, would require nothing: a list emptied or deleted by
    // mistake must not open the route.
    if (raw.scopes.all_of === undefined && raw.scopes.any_of === undefined)
      check.fail(`${path}.scopes`, "needs all_of or any_of (or leave scopes out)");
    for (const list of ["all_of", "any_of"]) {
      const scopes = raw.scopes[list];
      const at = `${path}.scopes.${list}`;
      if (scopes !== undefined && check.stringArray(scopes, at, { nonEmpty: true }))
        checkScopeTokens(check, scopes, at);
    }
  }
  if (raw.groups !== undefined && check.object(raw.groups, `${path}.groups`)) {
    check.known(raw.groups, `${path}.groups`, ["any_of"]);
    const at = `${path}.groups.any_of`;
    if (check.stringArray(raw.groups.any_of, at, { nonEmpty: true })) {
      // A name no token may carry (every token with it is refused) would make the route unusable.
      for (const group of raw.groups.any_of) {
        if (!isGroupName(group))
          check.fail(
            at,
            `"${group}" is not a group name a token may carry (printable ASCII, no "," " or \\, no leading or trailing space)`,
          );
      }
    }
  }
  if (raw.claims !== undefined) {
    if (!Array.isArray(raw.claims) || raw.claims.length === 0) {
      check.fail(`${path}.claims`, "must be a non-empty array of conditions");
    } else {
      raw.claims.forEach((condition: unknown, i: number) => {
        const at = `${path}.claims[${i}]`;
        if (!check.object(condition, at)) return;
        check.known(condition, at, ["claim", "equals", "one_of"]);
        check.string(condition.claim, `${at}.claim`);
        // A number JSON reads as Infinity (`1e400`) could not be written back: not a value. An
        // integer past 2^53 is not exact either: JSON reads it as the nearest double, which
        // the claims of other ids round to as well (1234567890123456788 equals …789).
        const unsafe = (v: unknown) => Number.isInteger(v) && !Number.isSafeInteger(v);
        const scalar = (v: unknown) =>
          typeof v === "string" || typeof v === "boolean" || (Number.isFinite(v) && !unsafe(v));
        if ((condition.equals === undefined) === (condition.one_of === undefined)) {
          check.fail(at, "needs exactly one of equals, one_of");
        } else if (condition.equals !== undefined && !scalar(condition.equals)) {
          check.fail(`${at}.equals`, unsafe(condition.equals) ? UNSAFE_INTEGER : "must be a string, number or boolean");
        } else if (
          condition.one_of !== undefined &&
          (!Array.isArray(condition.one_of) || condition.one_of.length === 0 || !condition.one_of.every(scalar))
        ) {
          const inexact = Array.isArray(condition.one_of) && condition.one_of.some(unsafe);
          check.fail(
            `${at}.one_of`,
            inexact ? UNSAFE_INTEGER : "must be a non-empty array of strings, numbers or booleans",
          );
        }
      });
    }
  }
  return raw as unknown as AuthRequirement;
}

const UNSAFE_INTEGER =
  "holds an integer beyond ±9007199254740991, which JSON cannot carry exactly (other ids would match it): compare ids that large as strings, sent as strings by the issuer";

function resolveIdentityHeaders(check: Checker, raw: unknown): ResolvedIdentityHeaders {
  const resolved: ResolvedIdentityHeaders = {
    subject: "x-user-sub",
    tenant: "x-tenant",
    scopes: "x-user-scope",
    groups: "x-user-groups",
    email: "x-user-email",
    issuer: "x-user-iss",
  };
  if (raw === undefined) return resolved;
  const path = "settings.identity_headers";
  if (!check.object(raw, path)) return resolved;
  const fields = Object.keys(resolved) as (keyof IdentityHeaderNames)[];
  check.known(raw, path, fields);
  for (const field of fields) {
    const value = raw[field];
    if (value === undefined) continue;
    if (check.string(value, `${path}.${field}`)) {
      const name = normaliseHeaderName(value);
      const problem = /^[A-Za-z0-9-]+$/.test(value)
        ? identityHeaderProblem(name)
        : "must be a header name of letters, digits and -";
      if (problem) check.fail(`${path}.${field}`, problem);
      else resolved[field] = name;
    }
  }
  const firstField = new Map<string, string>();
  for (const field of fields) {
    const other = firstField.get(resolved[field]);
    if (other !== undefined) {
      // Two fields in one header: the origin would read one claim as the other.
      check.fail(`${path}.${field}`, `"${resolved[field]}" is already the ${other} header`);
    }
    firstField.set(resolved[field], field);
  }
  return resolved;
}

/**
 * Names the edge gives another meaning: credentials and forwarding headers it strips or
 * writes itself, method and URL overrides, its request id. An identity header under such a
 * name would be overwritten, or would overwrite what the origin relies on.
 */
const RESERVED_IDENTITY_NAMES: ReadonlySet<string> = new Set([
  ...CREDENTIAL_HEADERS,
  ...FORWARDING_HEADERS,
  ...REQUEST_OVERRIDE_HEADERS,
  "x-request-id",
]);

/** Why `name` (normalised) cannot be an identity header, or undefined if it can. */
function identityHeaderProblem(name: string): string | undefined {
  // Outside x-, a name may mean something to HTTP or to a proxy (Host, Cookie,
  // Transfer-Encoding…): the edge writes identities only into application headers.
  if (!name.startsWith("x-")) return "must start with x- (an application header)";
  if (RESERVED_IDENTITY_NAMES.has(name) || name.startsWith(FORWARDING_HEADER_PREFIX))
    return `"${name}" is a header the edge strips or writes itself`;
  return undefined;
}

/** Validate and compile a policy document. Throws PolicyError listing every problem found. */
export function compilePolicy(doc: unknown): CompiledPolicy {
  const check = new Checker();
  if (!check.object(doc, "policy")) throw new PolicyError(check.problems);
  check.known(doc, "policy", ["$schema", "version", "settings", "issuers", "upstreams", "limits", "routes"]);
  const version = check.integer(doc.version, "version", 1, Number.MAX_SAFE_INTEGER) ? doc.version : 0;

  const settings: Record<string, unknown> =
    doc.settings === undefined ? {} : check.object(doc.settings, "settings") ? doc.settings : {};
  check.known(settings, "settings", [
    "max_url_bytes",
    "max_header_bytes",
    "max_token_bytes",
    "server_timing",
    "limiter_timeout_ms",
    "identity_headers",
    "realm",
  ]);
  check.boolean(settings, "server_timing", "settings");
  if (settings.realm !== undefined && check.string(settings.realm, "settings.realm")) {
    // It is quoted into WWW-Authenticate: a character a header cannot carry would turn
    // every challenge into a 500.
    if (!/^[\x20\x21\x23-\x5B\x5D-\x7E]{1,128}$/.test(settings.realm))
      check.fail("settings.realm", 'must be 1 to 128 printable ASCII characters, without " or \\');
  }

  const issuers = new Map<string, ResolvedIssuer>();
  if (doc.issuers !== undefined && check.object(doc.issuers, "issuers")) {
    const seenIss = new Map<string, string>();
    for (const [id, raw] of Object.entries(doc.issuers)) {
      // An issuer's id is part of every user counter's name.
      if (id.length > MAX_NAME_CHARS)
        check.fail(`issuers.${id}`, `an issuer id is at most ${MAX_NAME_CHARS} characters`);
      const issuer = resolveIssuer(check, id, raw);
      if (!issuer) continue;
      const other = seenIss.get(issuer.issuer);
      if (other) check.fail(`issuers.${id}.issuer`, `"${issuer.issuer}" is already used by issuer "${other}"`);
      seenIss.set(issuer.issuer, id);
      issuers.set(id, issuer);
    }
  }

  const upstreams = new Map<string, UpstreamConfig>();
  if (check.object(doc.upstreams, "upstreams")) {
    for (const [name, raw] of Object.entries(doc.upstreams)) {
      const upstream = checkUpstream(check, name, raw);
      if (upstream) upstreams.set(name, upstream);
    }
  }

  let defaultLimits: LimitSpec[] = [];
  const limitsDoc: Record<string, unknown> =
    doc.limits !== undefined && check.object(doc.limits, "limits") ? doc.limits : {};
  check.known(limitsDoc, "limits", ["defaults", "tenant_overrides"]);
  if (limitsDoc.defaults !== undefined) {
    defaultLimits = checkLimits(check, limitsDoc.defaults, "limits.defaults", undefined);
  }

  const routes: CompiledRoute[] = [];
  const names = new Set<string>();
  const declaredLimits: LimitSpec[] = [...defaultLimits];
  if (Array.isArray(doc.routes) && doc.routes.length > 0) {
    doc.routes.forEach((raw: unknown, index: number) => {
      const path = `routes[${index}]`;
      if (!check.object(raw, path)) return;
      check.known(raw, path, [
        "name",
        "methods",
        "path",
        "host",
        "auth",
        "upstream",
        "cors",
        "limits",
        "inherit_default_limits",
      ]);
      const route = compileRoute(check, raw, path, index, {
        version,
        issuers,
        upstreams,
        defaultLimits,
        declaredLimits,
      });
      if (!route) return;
      if (names.has(route.name)) check.fail(`${path}.name`, `"${route.name}" is used by another route`);
      names.add(route.name);
      // A host without a port matches every port, so an earlier route for it would take the
      // requests a later route was written to guard on one port.
      const host = route.host;
      const anyPort = host?.port === undefined ? undefined : routes.find((earlier) => sameHostAnyPort(earlier, host));
      if (anyPort) {
        check.fail(`${path}.host`, `routes[${anyPort.index}] (${anyPort.name}) takes this host on every port first`);
      }
      routes.push(route);
    });
  } else {
    check.fail("routes", "must be a non-empty array");
  }
  const tenantOverrides = checkTenantOverrides(check, limitsDoc.tenant_overrides, declaredLimits);

  const identityHeaders = resolveIdentityHeaders(check, settings.identity_headers);
  const compiled: CompiledPolicy = {
    version,
    routes,
    issuers,
    tenantOverrides,
    identityHeaders,
    maxUrlBytes: optionalInteger(check, settings, "max_url_bytes", "settings", 8192, 256, 65536),
    maxHeaderBytes: optionalInteger(check, settings, "max_header_bytes", "settings", 32768, 1024, 131072),
    maxTokenBytes: optionalInteger(check, settings, "max_token_bytes", "settings", 8192, 512, 65536),
    serverTiming: settings.server_timing === true,
    limiterTimeoutMs: optionalInteger(check, settings, "limiter_timeout_ms", "settings", 50, 5, MAX_LIMITER_TIMEOUT_MS),
    realm: typeof settings.realm === "string" ? settings.realm : DEFAULT_REALM,
  };
  if (check.problems.length > 0) throw new PolicyError(check.problems);
  return compiled;
}

interface RouteContext {
  version: number;
  issuers: ReadonlyMap<string, ResolvedIssuer>;
  upstreams: ReadonlyMap<string, UpstreamConfig>;
  defaultLimits: LimitSpec[];
  /** Collects every limit a route declares, even on a route that fails to compile, for `checkTenantOverrides`. */
  declaredLimits: LimitSpec[];
}

/**
 * Whether `earlier` matches every host `host` does, on every port: it has no port, and it
 * names the same host, captures it (`:tenant.example.com` takes `acme.example.com`), or
 * captures with the same suffix.
 */
function sameHostAnyPort(earlier: CompiledRoute, host: HostPattern): boolean {
  return earlier.host !== undefined && earlier.host.port === undefined && coversHost(earlier.host, host);
}

function compileRoute(
  check: Checker,
  raw: Record<string, unknown>,
  path: string,
  index: number,
  context: RouteContext,
): CompiledRoute | undefined {
  const nameOk = check.string(raw.name, `${path}.name`);
  if (nameOk && !/^[A-Za-z0-9._-]+$/.test(raw.name as string)) {
    check.fail(`${path}.name`, "may use letters, digits, '.', '_' and '-' only");
  }
  const methods = new Set(checkMethods(check, raw.methods, `${path}.methods`));
  let pattern: CompiledPattern | undefined;
  if (check.string(raw.path, `${path}.path`)) {
    const compiled = compilePathPattern(raw.path);
    if (typeof compiled === "string") check.fail(`${path}.path`, compiled);
    else pattern = compiled;
  }
  let host: HostPattern | undefined;
  if (raw.host !== undefined && check.string(raw.host, `${path}.host`)) {
    const compiled = compileHostPattern(raw.host);
    if (typeof compiled === "string") check.fail(`${path}.host`, compiled);
    else host = compiled;
  }
  // A name captured by both the host and the path would have two values, and a tenant
  // binding would check only one of them.
  if (host?.captureName !== undefined && pattern && capturesOf(pattern).includes(host.captureName)) {
    check.fail(`${path}.host`, `capture ":${host.captureName}" is also in the path`);
  }
  const auth = checkAuth(check, raw.auth, `${path}.auth`, context.issuers);
  let upstream: UpstreamConfig | undefined;
  if (check.string(raw.upstream, `${path}.upstream`)) {
    upstream = context.upstreams.get(raw.upstream);
    if (!upstream) check.fail(`${path}.upstream`, `"${raw.upstream}" is not defined in upstreams`);
  }
  const cors = raw.cors === undefined ? undefined : checkCors(check, raw.cors, `${path}.cors`);
  if (cors && methods.has("OPTIONS")) {
    check.fail(`${path}.methods`, "OPTIONS is answered by the edge when cors is set");
  }
  // A method the route does not take here is never its to grant (another route, or none, takes it).
  const granted: unknown = cors?.allow_methods;
  for (const method of Array.isArray(granted) ? granted : []) {
    if (METHODS.has(method) && !takesMethod(methods, method)) {
      check.fail(`${path}.cors.allow_methods`, `"${method}" is not one of the route's methods`);
    }
  }
  const isPublic = auth === undefined ? undefined : auth === "public";
  const own = raw.limits === undefined ? [] : checkLimits(check, raw.limits, `${path}.limits`, isPublic);
  context.declaredLimits.push(...own);
  check.boolean(raw, "inherit_default_limits", path);
  const inherited =
    raw.inherit_default_limits === false
      ? []
      : context.defaultLimits.filter((limit) =>
          isPublic ? limit.key === "ip" || limit.key === "route" : limit.key !== "ip",
        );
  // A default the route replaces by name does not apply to it; one limiter call carries every
  // counter of its object kind (tenant and user; route and ip) that does.
  const replaced = inherited.filter((limit) => own.some((mine) => mine.name === limit.name));
  const applied = [...inherited.filter((limit) => !replaced.includes(limit)), ...own];
  for (const [kind, keys] of [
    ["tenant and user", ["tenant", "user"]],
    ["route and ip", ["route", "ip"]],
  ] as const) {
    const count = applied.filter((limit) => (keys as readonly string[]).includes(limit.key)).length;
    if (count > MAX_COUNTERS_PER_CALL) {
      check.fail(`${path}.limits`, `at most ${MAX_COUNTERS_PER_CALL} ${kind} limits apply to one route (${count} do)`);
    }
  }
  if (!nameOk || !pattern || !auth || !upstream) return undefined;
  return {
    name: raw.name as string,
    index,
    methods,
    pattern,
    ...(host ? { host } : {}),
    auth,
    upstreamName: raw.upstream as string,
    upstream,
    ...(cors ? { cors } : {}),
    limits: applied,
    ...(replaced.length > 0 ? { replacedDefaults: replaced } : {}),
    matchedRule: `policy:${raw.name as string}@v${context.version}`,
  };
}
