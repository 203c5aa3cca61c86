// Test identity providers: real key pairs generated in the test, their public keys
// published on the loopback issuer server, and tokens signed with them.
import { env } from "cloudflare:workers";
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";

export const issuerServer = (env as unknown as { ISSUER_SERVER: string }).ISSUER_SERVER;

export type Alg = "ES256" | "RS256" | "PS256" | "EdDSA";

export interface TestKey {
  kid: string;
  alg: Alg;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function makeKey(alg: Alg = "ES256", kid: string = crypto.randomUUID().slice(0, 8)): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicJwk };
}

export interface TestIssuer {
  name: string;
  url: string;
  keys: TestKey[];
  /** Publish exactly these public keys. */
  publish(keys: TestKey[]): Promise<void>;
  setMode(
    mode: "ok" | "down" | "slow" | "garbage" | "html" | "huge" | "no_keys" | "status500",
    delayMs?: number,
  ): Promise<void>;
  stats(): Promise<{ discovery_fetches: number; jwks_fetches: number }>;
  resetCounters(): Promise<void>;
  sign(claims?: JWTPayload, options?: { key?: TestKey; header?: Record<string, unknown> }): Promise<string>;
}

async function control(name: string, body: unknown): Promise<void> {
  const response = await fetch(`${issuerServer}/__control/issuers/${name}`, {
    method: "POST",
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`issuer control failed: ${response.status}`);
}

export const AUDIENCE = "https://api.test";

/** An Access application's audience tag, as Cloudflare Access writes one (64 hex digits). */
export const ACCESS_AUD_TAG = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

/** A fresh issuer with one published key of the given algorithm. */
export async function makeIssuer(alg: Alg = "ES256"): Promise<TestIssuer> {
  const name = `iss-${crypto.randomUUID().slice(0, 12)}`;
  const url = `${issuerServer}/${name}`;
  const first = await makeKey(alg);
  const issuer: TestIssuer = {
    name,
    url,
    keys: [first],
    async publish(keys) {
      this.keys = keys;
      await control(name, { jwks: { keys: keys.map((k) => k.publicJwk) } });
    },
    async setMode(mode, delayMs) {
      await control(name, { mode, ...(delayMs !== undefined ? { delayMs } : {}) });
    },
    async stats() {
      return (await (await fetch(`${issuerServer}/__control/issuers/${name}`)).json()) as {
        discovery_fetches: number;
        jwks_fetches: number;
      };
    },
    async resetCounters() {
      await control(name, { resetCounters: true });
    },
    async sign(claims = {}, options = {}) {
      const key = options.key ?? (this.keys[0] as TestKey);
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({
        iss: url,
        aud: AUDIENCE,
        sub: "user-1",
        tenant_id: "acme",
        scope: "api:read",
        iat: now,
        exp: now + 600,
        ...claims,
      })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...options.header })
        .sign(key.privateKey);
    },
  };
  await issuer.publish([first]);
  return issuer;
}

export async function attackerHits(): Promise<number> {
  return ((await (await fetch(`${issuerServer}/__control/attacker`)).json()) as { hits: number }).hits;
}

/** base64url of a string or bytes. */
export function b64url(input: string | Uint8Array): string {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * `Authorization` values of other schemes whose one credential holds commas: each is another
 * scheme, not two joined headers.
 */
export const COMMA_SCHEMES: readonly string[] = [
  'Digest username="ada", realm="api", nonce="n0", uri="/x", response="6629fae4"',
  'OAuth oauth_consumer_key="k", oauth_nonce="n", oauth_signature="s%3D"',
  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=5d672d79",
];

/**
 * A Cloudflare Access application assertion for `audTag`, signed by `team`, as Access writes
 * one for a signed-in user (no tenant or scope claims, which the test issuer adds by default).
 */
export function accessAssertion(team: TestIssuer, audTag: string, claims: JWTPayload = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return team.sign({
    aud: [audTag],
    email: "user@example.com",
    sub: "7335d417-61da-459d-899c-0a01c76a2f94",
    type: "app",
    identity_nonce: "6ei69kawdKzMIAPF",
    country: "GB",
    tenant_id: undefined,
    scope: undefined,
    iat: now,
    nbf: now,
    exp: now + 600,
    ...claims,
  });
}
