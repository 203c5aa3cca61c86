// Checks a JWS signature with WebCrypto directly (RFC 7518 §3, RFC 8037). The algorithm is
// one the issuer's configuration allows, checked before we get here; this file only maps it
// to WebCrypto parameters, imports a published key for it, and refuses a key that was not
// made for it.

type KeyAlgorithmShape = { name: string; hash?: { name: string }; namedCurve?: string };

interface JwsAlgorithm {
  /** What the CryptoKey must have been imported as. */
  key: { name: string; hash?: string; namedCurve?: string };
  /** The parameters of `crypto.subtle.verify`. */
  verify: { name: string; hash?: string; saltLength?: number };
  /** Exact signature length, where the algorithm fixes one. */
  signatureBytes?: number;
}

function pkcs1(bits: number): JwsAlgorithm {
  const hash = `SHA-${bits}`;
  return { key: { name: "RSASSA-PKCS1-v1_5", hash }, verify: { name: "RSASSA-PKCS1-v1_5" } };
}

function pss(bits: number): JwsAlgorithm {
  const hash = `SHA-${bits}`;
  // RFC 7518 §3.5: the salt is as long as the hash output.
  return { key: { name: "RSA-PSS", hash }, verify: { name: "RSA-PSS", saltLength: bits / 8 } };
}

/** JWS ECDSA signatures are raw r‖s (RFC 7518 §3.4), exactly what WebCrypto expects. */
function ecdsa(namedCurve: string, bits: number, coordinateBytes: number): JwsAlgorithm {
  return {
    key: { name: "ECDSA", namedCurve },
    verify: { name: "ECDSA", hash: `SHA-${bits}` },
    signatureBytes: 2 * coordinateBytes,
  };
}

const ED25519: JwsAlgorithm = { key: { name: "Ed25519" }, verify: { name: "Ed25519" }, signatureBytes: 64 };

/**
 * Every algorithm the edge verifies, and so every one a policy may allow (HS* and none never
 * are). A Map, so a token's `alg` can never reach a prototype member.
 */
export const JWS_ALGORITHMS: ReadonlyMap<string, JwsAlgorithm> = new Map([
  ["RS256", pkcs1(256)],
  ["RS384", pkcs1(384)],
  ["RS512", pkcs1(512)],
  ["PS256", pss(256)],
  ["PS384", pss(384)],
  ["PS512", pss(512)],
  ["ES256", ecdsa("P-256", 256, 32)],
  ["ES384", ecdsa("P-384", 384, 48)],
  ["ES512", ecdsa("P-521", 512, 66)],
  ["EdDSA", ED25519],
  ["Ed25519", ED25519],
]);

/**
 * Which key types and curves can verify which algorithm: the ones it is imported as. `jwk`
 * holds its members as published (`alg`, `kty`, `crv` may be anything).
 */
export function keyFitsAlg(jwk: { kty?: unknown; crv?: unknown; alg?: unknown }, alg: string): boolean {
  if (jwk.alg !== undefined && jwk.alg !== alg && !(alg === "Ed25519" && jwk.alg === "EdDSA")) return false;
  const key = JWS_ALGORITHMS.get(alg)?.key;
  if (key?.name === "ECDSA") return jwk.kty === "EC" && jwk.crv === key.namedCurve;
  if (key?.name === "Ed25519") return jwk.kty === "OKP" && jwk.crv === "Ed25519";
  return key !== undefined && jwk.kty === "RSA";
}

/**
 * The first algorithm the edge verifies that a key's type and curve fit, if any (an X25519 or
 * secp256k1 key fits none). Its `alg` aside: a key whose `alg` conflicts is kept, so a token
 * naming it is refused as such rather than sending the edge to look for its kid again.
 */
export function firstAlgOf(jwk: { kty?: unknown; crv?: unknown }): string | undefined {
  const shape = { kty: jwk.kty, crv: jwk.crv };
  for (const alg of JWS_ALGORITHMS.keys()) if (keyFitsAlg(shape, alg)) return alg;
  return undefined;
}

/**
 * A published key imported to verify `alg`, from its public members alone (`alg`/`use` were
 * checked before); undefined when the runtime refuses it: an EC point off its curve, an RSA
 * exponent it does not take, an algorithm not verified here.
 */
export async function importVerifyKey(
  jwk: { kty?: string; crv?: string; x?: string; y?: string; n?: string; e?: string },
  alg: string,
): Promise<CryptoKey | undefined> {
  const params = JWS_ALGORITHMS.get(alg)?.key;
  if (!params) return undefined;
  const { kty, crv, x, y, n, e } = jwk;
  try {
    return await crypto.subtle.importKey("jwk", { kty, crv, x, y, n, e } as JsonWebKey, params, false, ["verify"]);
  } catch {
    return undefined;
  }
}

/**
 * `valid`; `mismatch` when the signature does not verify with this key (another candidate key
 * may still); otherwise why this key cannot be used for `alg` at all.
 */
export type SignatureCheck = "valid" | "mismatch" | "alg_not_supported" | "key_alg_mismatch";

function keyFits(key: CryptoKey, expected: JwsAlgorithm["key"]): boolean {
  const algorithm = key.algorithm as KeyAlgorithmShape;
  if (algorithm.name !== expected.name) return false;
  if (expected.hash !== undefined && algorithm.hash?.name !== expected.hash) return false;
  if (expected.namedCurve !== undefined && algorithm.namedCurve !== expected.namedCurve) return false;
  return key.usages.includes("verify");
}

/**
 * Checks `signature` over `signingInput` with one candidate key. RSA keys under 2048 bits
 * (RFC 7518 §3.3) never get here: no key set keeps them (see `weakRsa` in
 * jwks/fetch-key-set.ts).
 */
export async function verifySignature(
  alg: string,
  key: CryptoKey,
  signingInput: Uint8Array,
  signature: Uint8Array,
): Promise<SignatureCheck> {
  const algorithm = JWS_ALGORITHMS.get(alg);
  if (!algorithm) return "alg_not_supported";
  if (!keyFits(key, algorithm.key)) return "key_alg_mismatch";
  if (algorithm.signatureBytes !== undefined && signature.length !== algorithm.signatureBytes) return "mismatch";
  try {
    return (await crypto.subtle.verify(algorithm.verify, key, signature, signingInput)) ? "valid" : "mismatch";
  } catch {
    // WebCrypto may throw on a malformed signature instead of answering false.
    return "mismatch";
  }
}
