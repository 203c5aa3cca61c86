// The policy as written by operators (JSON), and the shapes the validator accepts.
// Field names are snake_case because they are a file format, not TypeScript API.

/** Every method a route may take, in the order an `Allow` answer lists them. */
export const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export interface ClaimMapping {
  /** Claim holding the subject. Default `sub`. */
  subject?: string;
  /** Claim holding the tenant. Default `tenant_id`. */
  tenant?: string;
  /** Claim holding scopes: a space-separated string or an array. Default: `scope`, then `scp`. */
  scopes?: string;
  /** Claim holding groups (an array, or a string that is one group). Default `groups`. */
  groups?: string;
  /** Claim holding the e-mail address. Default `email`. */
  email?: string;
  /**
   * Claim holding the token's audience, matched against `audiences`. Default `aud`; Cognito's
   * access tokens name their app client in `client_id` instead. Not for Cloudflare Access.
   */
  audience?: string;
}

export interface JwksCacheSettings {
  /** How long a fetched key set is fresh, seconds (300–3600). Default 600. */
  cache_ttl_s?: number;
  /** Minimum seconds between two refreshes of this issuer's key set. Default 30. */
  refresh_cooldown_s?: number;
  /** How long the last good key set may serve when the endpoint fails, seconds. Default 86400. */
  max_stale_s?: number;
  /** Keys that vanished from the key set stay accepted this long, seconds. Default 3600. */
  rotation_grace_s?: number;
  /** Deadline for one refresh's issuer fetches together (discovery, then the key set), ms. Default 2000. */
  fetch_timeout_ms?: number;
  /** Largest accepted key set, bytes (a discovery document may be up to 64 KiB whatever this says). Default 65536. */
  max_jwks_bytes?: number;
}

export interface OidcIssuerConfig extends JwksCacheSettings {
  kind: "oidc";
  /** Exact `iss` value (compared byte for byte, trailing slash included). */
  issuer: string;
  /** Explicit key set URL. Without it, keys come from OpenID discovery on `issuer`. */
  jwks_uri?: string;
  /** Accepted `aud` values: a token must name at least one. */
  audiences: string[];
  /** Accepted `alg` values. Default RS256, PS256, ES256, EdDSA. Never taken from the token. */
  algorithms?: string[];
  /** Tolerated clock difference, seconds (0–300). Default 60. */
  clock_skew_s?: number;
  /** The longest a token may be good for, seconds from its `iat` (else `nbf`, else now). Default: unbounded. */
  max_lifetime_s?: number;
  /** Required `typ` header, e.g. `at+jwt` (RFC 9068). Default: not checked. */
  typ?: string;
  claims?: ClaimMapping;
}

export interface AccessIssuerConfig extends JwksCacheSettings {
  kind: "cloudflare_access";
  /**
   * The Access team domain, e.g. `acme.cloudflareaccess.com` (https assumed) or a full
   * origin URL. The issuer is that origin; keys are at `<origin>/cdn-cgi/access/certs`.
   */
  team_domain: string;
  algorithms?: string[];
  clock_skew_s?: number;
  max_lifetime_s?: number;
  claims?: ClaimMapping;
}

export type IssuerConfig = OidcIssuerConfig | AccessIssuerConfig;

export type UpstreamConfig = { url: string; timeout_ms?: number } | { service: string; timeout_ms?: number };

export interface CorsConfig {
  /** Allowed origins, exact (`https://app.example.com`) or `*` (never with credentials). */
  allow_origins: string[];
  allow_methods?: HttpMethod[];
  allow_headers?: string[];
  expose_headers?: string[];
  allow_credentials?: boolean;
  max_age_s?: number;
}

export type ClaimCondition =
  | { claim: string; equals: string | number | boolean }
  | { claim: string; one_of: (string | number | boolean)[] };

export interface AuthRequirement {
  /** Issuer ids (keys of `issuers`) this route accepts. */
  issuers: string[];
  /** Narrows accepted audiences for this route (required for Cloudflare Access issuers: the AUD tag). */
  audiences?: string[];
  scopes?: { all_of?: string[]; any_of?: string[] };
  groups?: { any_of: string[] };
  claims?: ClaimCondition[];
  /**
   * This resource's OAuth protected resource metadata URL (RFC 9728), named in the route's
   * `WWW-Authenticate` challenges so that clients (MCP's among them) find its authorisation server.
   */
  resource_metadata?: string;
}

export type LimitKey = "tenant" | "user" | "route" | "ip";

export interface LimitSpec {
  /** Stable name, used for overrides and in the 429 body. */
  name: string;
  key: LimitKey;
  /** Requests allowed per window. */
  limit: number;
  /** Window length in seconds. */
  window_s: number;
  /** What to do when the counter cannot be reached in time. Default `deny`. */
  on_error?: "deny" | "allow";
}

export interface RouteConfig {
  name: string;
  methods: HttpMethod[];
  /** `/literal/:tenant/*\/**`: `*` one segment, `**` the rest (last only), `:tenant` the tenant's segment. */
  path: string;
  /** Exact host, or `:tenant.example.com`: the first label is the tenant's. */
  host?: string;
  auth: "public" | AuthRequirement;
  /** Name of an entry in `upstreams`. */
  upstream: string;
  cors?: CorsConfig;
  /**
   * Limits for this route, in addition to `limits.defaults` (unless `inherit_default_limits` is
   * false); one named like a default replaces it on this route.
   */
  limits?: LimitSpec[];
  inherit_default_limits?: boolean;
}

export interface IdentityHeaderNames {
  subject?: string;
  tenant?: string;
  scopes?: string;
  groups?: string;
  email?: string;
  issuer?: string;
}

export interface Settings {
  max_url_bytes?: number;
  max_header_bytes?: number;
  max_token_bytes?: number;
  /** Send `Server-Timing` with stage durations. Default false. */
  server_timing?: boolean;
  /** Time budget for a rate-limit Durable Object call, ms. Default 50. */
  limiter_timeout_ms?: number;
  identity_headers?: IdentityHeaderNames;
  /** Realm in `WWW-Authenticate` challenges. */
  realm?: string;
}

export interface PolicyDocument {
  version: number;
  settings?: Settings;
  issuers?: Record<string, IssuerConfig>;
  upstreams: Record<string, UpstreamConfig>;
  limits?: {
    defaults?: LimitSpec[];
    /** Per-tenant overrides of a limit's size, by limit name (plan tiers). */
    tenant_overrides?: Record<string, Record<string, { limit: number; window_s?: number }>>;
  };
  routes: RouteConfig[];
}
