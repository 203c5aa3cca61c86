// A real OpenID provider for the whole-stack tests: oidc-provider (the certified Node.js
// implementation) on loopback, issuing RFC 9068 JWT access tokens (`typ: at+jwt`) through
// the client credentials grant with a resource indicator, so `aud` is the API asked for.
// The tenant comes from the client's registration (`org_id` metadata) through
// `extraTokenClaims`, as a real deployment would put it into tokens.
//
// The provider answers behind a small front server that counts what was fetched (discovery,
// JWKS, token) — the edge's JWKS fetches are counted here — and that makes key rotation
// possible: `rotate()` replaces the oidc-provider instance with a new one of the same issuer
// and clients but a new key set, exactly what restarting the provider with new keys does,
// while the listening socket stays up (as behind a load balancer), so no client sees a
// refused connection during the swap.
import { randomBytes } from "node:crypto";
import http from "node:http";
import { exportJWK, generateKeyPair, type JWK } from "jose";
import Provider, { errors } from "oidc-provider";

export interface ProviderClient {
  id: string;
  /** Space-separated scopes the client may ask for. */
  scope: string;
  /** Goes into every token of this client as `org_id`. */
  tenant?: string;
  /** Access token lifetime for this client, seconds. Default 600. */
  tokenTtlS?: number;
}

export interface ProviderStats {
  discovery: number;
  jwks: number;
  token: number;
}

export interface RunningProvider {
  issuer: string;
  /** Where the provider itself listens (the issuer may be a proxy in front of it). */
  url: string;
  stats: ProviderStats;
  /** The key set in use now (private JWKs), signing key first. */
  currentKeys(): JWK[];
  /** Replace the running instance: publish `keys` (private JWKs) and sign with `signingKid`. */
  rotate(keys: JWK[], signingKid: string): void;
  /** A client credentials token, as the client would get it (HTTP Basic, resource indicator). */
  token(clientId: string, options?: { resource?: string; scope?: string }): Promise<IssuedToken>;
  close(): Promise<void>;
}

export interface IssuedToken {
  token: string;
  /** Epoch ms when it expires, from `expires_in`. */
  expiresAt: number;
  scope: string;
}

export const API_RESOURCE = "https://api.e2e.test";
/** Another resource server of the same provider: its tokens are not for our API. */
export const OTHER_RESOURCE = "https://reports.e2e.test";
const SCOPES = ["api:read", "api:write", "reports:read"];

/** A fresh ES256 signing key (private JWK) with a random kid, as providers generate them. */
export async function newSigningKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomBytes(6).toString("base64url"), alg: "ES256", use: "sig" };
}

const secretOf = (clientId: string) => `${clientId}-secret-${clientId.length}`;

/**
 * Where oidc-provider keeps state: a bounded in-process map (client credentials with JWT
 * access tokens keep next to nothing). Given explicitly so the provider does not warn
 * about falling back to its development-only default.
 */
const providerState = new Map<string, unknown>();
class ProviderStateAdapter {
  constructor(private readonly model: string) {}
  private key(id: string) {
    return `${this.model}:${id}`;
  }
  async upsert(id: string, payload: unknown) {
    providerState.set(this.key(id), payload);
    if (providerState.size > 1000) providerState.delete(providerState.keys().next().value as string);
  }
  async find(id: string) {
    return providerState.get(this.key(id));
  }
  async findByUid() {
    return undefined;
  }
  async findByUserCode() {
    return undefined;
  }
  async consume() {}
  async destroy(id: string) {
    providerState.delete(this.key(id));
  }
  async revokeByGrantId() {}
}

function providerInstance(issuer: string, clients: ProviderClient[], keys: JWK[], signingKid: string): Provider {
  const ttlOf = (clientId: string | undefined) => clients.find((c) => c.id === clientId)?.tokenTtlS ?? 600;
  const provider = new Provider(issuer, {
    clients: clients.map((client) => ({
      client_id: client.id,
      client_secret: secretOf(client.id),
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: "client_secret_basic",
      scope: client.scope,
      ...(client.tenant ? { org_id: client.tenant } : {}),
    })),
    adapter: ProviderStateAdapter,
    extraClientMetadata: { properties: ["org_id"] },
    jwks: { keys },
    scopes: SCOPES,
    clientDefaults: { id_token_signed_response_alg: "ES256" },
    cookies: { keys: [randomBytes(16).toString("hex")] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Every API is its own resource server; tokens for it are JWTs with `aud` = the API.
        getResourceServerInfo: (_ctx: unknown, resource: string, client: { clientId: string }) => {
          if (resource !== API_RESOURCE && resource !== OTHER_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: SCOPES.join(" "),
            audience: resource,
            accessTokenFormat: "jwt",
            accessTokenTTL: ttlOf(client.clientId),
            jwt: { sign: { alg: "ES256", kid: signingKid } },
          };
        },
      },
    },
    // The tenant a client belongs to, from its registration, into each of its tokens.
    extraTokenClaims: (ctx: { oidc: { client?: { org_id?: string } } }) => {
      const tenant = ctx.oidc.client?.org_id;
      return tenant ? { org_id: tenant } : undefined;
    },
    ttl: {
      ClientCredentials: (_ctx: unknown, _token: unknown, client: { clientId: string }) => ttlOf(client.clientId),
    },
  });
  provider.on("server_error", (_ctx: unknown, error: Error) => console.error(`oidc-provider: ${error.stack}`));
  return provider;
}

/**
 * Starts a provider on a free loopback port. `issuer` defaults to its own URL; give another
 * (a fault proxy's) to have the edge reach it through that.
 */
export async function startProvider(options: {
  clients: ProviderClient[];
  keys: JWK[];
  signingKid?: string;
  issuer?: string;
}): Promise<RunningProvider> {
  const stats: ProviderStats = { discovery: 0, jwks: 0, token: 0 };
  let keys = options.keys;
  let handler: ReturnType<Provider["callback"]> | undefined;
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://provider.invalid").pathname;
    if (path === "/.well-known/openid-configuration") stats.discovery += 1;
    else if (path === "/jwks") stats.jwks += 1;
    else if (path === "/token") stats.token += 1;
    handler?.(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const url = `http://127.0.0.1:${port}`;
  const issuer = options.issuer ?? url;
  const install = (next: JWK[], signingKid: string) => {
    keys = next;
    handler = providerInstance(issuer, options.clients, next, signingKid).callback();
  };
  install(keys, options.signingKid ?? (keys[0]?.kid as string));

  return {
    issuer,
    url,
    stats,
    currentKeys: () => [...keys],
    rotate: install,
    async token(clientId, { resource = API_RESOURCE, scope = "api:read" } = {}) {
      const response = await fetch(`${url}/token`, {
        method: "POST",
        headers: {
          authorization: `Basic ${Buffer.from(`${clientId}:${secretOf(clientId)}`).toString("base64")}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        body: new URLSearchParams({ grant_type: "client_credentials", scope, resource }),
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await response.json()) as { access_token?: string; expires_in?: number; scope?: string };
      if (!response.ok || !body.access_token) {
        throw new Error(`token request for ${clientId} failed: ${response.status} ${JSON.stringify(body)}`);
      }
      return {
        token: body.access_token,
        expiresAt: Date.now() + (body.expires_in ?? 0) * 1000,
        scope: body.scope ?? "",
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The three parts of a compact JWS, the header and payload decoded (for assertions only). */
export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [header, payload] = token.split(".") as [string, string];
  return {
    header: JSON.parse(Buffer.from(header, "base64url").toString()),
    payload: JSON.parse(Buffer.from(payload, "base64url").toString()),
  };
}

/** The token with its payload changed and the original signature kept: what a forger sends. */
export function tamper(token: string, change: Record<string, unknown>): string {
  const [header, payload, signature] = token.split(".") as [string, string, string];
  const claims = { ...JSON.parse(Buffer.from(payload, "base64url").toString()), ...change };
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${signature}`;
}
