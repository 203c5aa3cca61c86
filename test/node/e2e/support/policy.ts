// The policy the whole-stack tests run the edge with: one trusted OpenID provider found
// through discovery (no jwks_uri), its claims mapped to identity through `claims`, and
// routes for each behaviour under test. Ports are the ones the test's servers picked.
import type { OidcIssuerConfig, PolicyDocument } from "../../../../src/core/policy-types";
import { API_RESOURCE } from "./provider";

export interface E2ePolicyOptions {
  /** The trusted provider's issuer URL (discovery happens at `<issuer>/.well-known/…`). */
  issuer: string;
  originUrl: string;
  /** A loopback URL where nothing listens. */
  deadOriginUrl: string;
  /** JWKS cache and clock settings for the trusted issuer. */
  issuerSettings?: Partial<OidcIssuerConfig>;
  limiterTimeoutMs?: number;
}

export const ORIGIN_TIMEOUT_MS = 500;

export function e2ePolicy(options: E2ePolicyOptions): PolicyDocument {
  const read = { issuers: ["idp"], scopes: { all_of: ["api:read"] } };
  const tenantLimit = (name: string, onError: "allow" | "deny") => ({
    name,
    key: "tenant" as const,
    limit: 10_000,
    window_s: 60,
    on_error: onError,
  });
  return {
    version: 1,
    settings: { realm: "portcullis-e2e", limiter_timeout_ms: options.limiterTimeoutMs ?? 250 },
    issuers: {
      idp: {
        kind: "oidc",
        issuer: options.issuer,
        audiences: [API_RESOURCE],
        algorithms: ["ES256"],
        // oidc-provider's JWT access tokens follow RFC 9068: check the header says so.
        typ: "at+jwt",
        // The provider's names: the client is the subject, the tenant is `org_id`.
        claims: { subject: "client_id", tenant: "org_id", scopes: "scope" },
        ...options.issuerSettings,
      },
    },
    upstreams: {
      origin: { url: options.originUrl, timeout_ms: 5000 },
      "slow-origin": { url: options.originUrl, timeout_ms: ORIGIN_TIMEOUT_MS },
      "dead-origin": { url: options.deadOriginUrl, timeout_ms: 5000 },
    },
    routes: [
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "origin" },
      { name: "things-read", methods: ["GET", "HEAD"], path: "/v1/things", auth: read, upstream: "origin" },
      {
        name: "things-write",
        methods: ["POST", "PUT"],
        path: "/v1/things",
        auth: { issuers: ["idp"], scopes: { all_of: ["api:write"] } },
        upstream: "origin",
      },
      { name: "tenant-api", methods: ["GET"], path: "/v1/tenants/:tenant/**", auth: read, upstream: "origin" },
      { name: "slow-origin", methods: ["GET"], path: "/v1/slow", auth: read, upstream: "slow-origin" },
      { name: "dead-origin", methods: ["GET"], path: "/v1/dead", auth: read, upstream: "dead-origin" },
      {
        name: "limit-fails-open",
        methods: ["GET"],
        path: "/v1/limits/open",
        auth: read,
        upstream: "origin",
        limits: [tenantLimit("tenant-open", "allow")],
      },
      {
        name: "limit-fails-closed",
        methods: ["GET"],
        path: "/v1/limits/closed",
        auth: read,
        upstream: "origin",
        limits: [tenantLimit("tenant-closed", "deny")],
      },
      {
        name: "limit-small",
        methods: ["GET"],
        path: "/v1/limits/small",
        auth: read,
        upstream: "origin",
        limits: [{ name: "user-small", key: "user", limit: 2, window_s: 60 }],
      },
    ],
  };
}
