// Shared by the token verification tests: a verifier on an injected clock, extra key types,
// and tokens signed over exact header and payload text (duplicate keys, arrays, bad UTF-8),
// which no JWT library will produce.
import { exportJWK, generateKeyPair } from "jose";
import { compilePolicy } from "../../src/core/policy";
import type { IssuerConfig } from "../../src/core/policy-types";
import { TokenVerifier, type VerifierDeps } from "../../src/core/tokens/verify";
import { type Alg, AUDIENCE, b64url, makeKey, type TestIssuer, type TestKey } from "../support/issuers";
import { settleDeferred } from "../support/waiting";

/** An injected clock, on a half second so that rounding to whole seconds is exercised. */
export function fixedNow(): number {
  return Math.floor(Date.now() / 1000) * 1000 + 500;
}

/** A key of any JWS algorithm (the shared helper covers the four the default policy allows). */
export async function makeAnyKey(alg: string, kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg: alg as Alg, privateKey, publicJwk };
}

/** One key of every algorithm family the verifier handles, plus a too-small RSA key. */
export async function makeKeyRing(): Promise<Record<"es" | "rs" | "ps" | "ed" | "es384" | "weak", TestKey>> {
  return {
    es: await makeKey("ES256", "es"),
    rs: await makeKey("RS256", "rs"),
    ps: await makeKey("PS256", "ps"),
    ed: await makeKey("EdDSA", "ed"),
    es384: await makeAnyKey("ES384", "es384"),
    weak: await makeWeakRsaKey("weak"),
  };
}

/** A 1024-bit RS256 key, which jose will not even generate: sign with `signText`. */
export async function makeWeakRsaKey(kid: string): Promise<TestKey> {
  const params = { name: "RSASSA-PKCS1-v1_5", modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]) };
  const pair = (await crypto.subtle.generateKey({ ...params, hash: "SHA-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const { kty, n, e } = (await crypto.subtle.exportKey("jwk", pair.publicKey)) as JsonWebKey;
  return { kid, alg: "RS256", privateKey: pair.privateKey, publicJwk: { kty, n, e, kid, alg: "RS256", use: "sig" } };
}

export interface VerifierSetup {
  issuers: Record<string, { issuer: TestIssuer } & Partial<IssuerConfig>>;
  deps?: Partial<VerifierDeps>;
}

/** A verifier for the given issuers, each accepted by the one route. */
export function verifierFor({ issuers, deps = {} }: VerifierSetup) {
  const policy = compilePolicy({
    version: 1,
    issuers: Object.fromEntries(
      Object.entries(issuers).map(([id, { issuer, ...settings }]) => [
        id,
        { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], ...settings },
      ]),
    ),
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: Object.keys(issuers) }, upstream: "o" }],
  });
  const verifier = new TokenVerifier(policy, {
    fetch: (input, init) => fetch(input, init),
    now: Date.now,
    ...deps,
  });
  const ids = Object.keys(issuers);
  // Work the verifier defers past the response (KV writes, background refreshes), for `settle`.
  const pending: Promise<unknown>[] = [];
  return {
    verifier,
    policy,
    verify: (token: string) => verifier.verify(token, ids, undefined, (work) => pending.push(work)),
    settle: () => settleDeferred(pending),
  };
}

const SIGNING: Record<string, { name: string; hash?: string; saltLength?: number }> = {
  ES256: { name: "ECDSA", hash: "SHA-256" },
  RS256: { name: "RSASSA-PKCS1-v1_5" },
  PS256: { name: "RSA-PSS", saltLength: 32 },
  EdDSA: { name: "Ed25519" },
};

/** Signs exactly this header object and this payload text with the key's algorithm. */
export async function signText(key: TestKey, header: Record<string, unknown>, payload: string | Uint8Array) {
  const input = `${b64url(JSON.stringify({ alg: key.alg, kid: key.kid, ...header }))}.${b64url(payload)}`;
  const params = SIGNING[key.alg];
  if (!params) throw new Error(`signText: no parameters for ${key.alg}`);
  const signature = await crypto.subtle.sign(params, key.privateKey, new TextEncoder().encode(input));
  return `${input}.${b64url(new Uint8Array(signature))}`;
}

/** A different canonical last character, so the signature changes but stays well-formed. */
export function flipLastChar(token: string): string {
  const last = token.at(-1) as string;
  // An 86-character ES256 signature ends in one of A, Q, g, w (4 unused low bits).
  const canonical = "AQgw".includes(last) ? "AQgw" : "AEIMQUYcgkosw048";
  const replacement = canonical[(canonical.indexOf(last) + 1) % canonical.length] as string;
  return token.slice(0, -1) + replacement;
}
