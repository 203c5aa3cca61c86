// Fetches an issuer's key set (via OpenID discovery or an explicit jwks_uri) with a time
// budget and a size cap, and keeps only keys that are safe to verify with. A response
// that fails any check is an error: it is never cached.

import type { JWK } from "jose";
import { binaryOf, MAX_KID_LENGTH } from "../tokens/compact";
import { firstAlgOf, importVerifyKey, JWS_ALGORITHMS } from "../tokens/jws-verify";
import { secureUrl } from "../urls";

/** Members of a private key (RFC 7518 §6.2.2, §6.3.2). */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth"] as const;

/** Why a key set could not be had: the message is the failure's code. */
export class KeySetFetchError extends Error {
  declare message: KeySetFailure;
}

export type KeySetFailure =
  | "fetch_failed"
  | "timeout"
  | "http_status"
  | "too_large"
  | "not_json"
  | "malformed"
  | "no_usable_keys"
  | "discovery_issuer_mismatch"
  | "discovery_bad_jwks_uri";

export interface FetchLimits {
  timeoutMs: number;
  maxBytes: number;
  /** A deadline shared with other fetches (discovery, then JWKS); replaces `timeoutMs` when given. */
  signal?: AbortSignal;
}

export type Fetcher = (input: string, init?: RequestInit) => Promise<Response>;

/** Required public members per key type. Everything else (x5u, jku…) is dropped. */
const PUBLIC_MEMBERS: ReadonlyMap<string, readonly string[]> = new Map([
  ["RSA", ["n", "e"]],
  ["EC", ["crv", "x", "y"]],
  ["OKP", ["crv", "x"]],
]);
/**
 * No public member of a real key is longer: an RSA-16384 modulus is 2,731 base64url
 * characters. A longer one is skipped unread, leaked or not, so nothing an issuer publishes
 * makes a remembered key (see `leaked`) large.
 */
export const MAX_MEMBER_CHARS = 2800;
/** Usable keys kept from one set, in the order it lists them. */
export const MAX_KEYS = 100;

/**
 * Whether an Ed25519 public key is unsafe to verify with: not written exactly as RFC 8037
 * writes 32 bytes (43 base64url characters; the runtime's import is more lenient, so a key it
 * would read otherwise is never checked below), or a point of small order. Under such a key,
 * R = the identity and S = 0 verifies every message, or one in eight: RFC 8032 does not check
 * the key, so anyone could sign for it. Its y tells: 0 or ±1 (orders 4, 1, 2), or a root of
 * d·y⁴ + 2y² − 1 with d = −121665/121666 (order 8: the double of such a point has y = 0),
 * all modulo 2^255 − 19.
 */
function unsafeEd25519(x: string): boolean {
  if (!/^[\w-]{43}$/.test(x)) return true;
  const bytes = binaryOf(x);
  let y = 0n;
  // Little-endian; the top bit is the sign of x.
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(bytes.charCodeAt(i) & (i === 31 ? 127 : 255));
  return (y * (y * y - 1n) * (121665n * y ** 4n - 243332n * y * y + 121666n)) % (2n ** 255n - 19n) === 0n;
}

async function readCapped(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    throw new KeySetFetchError("too_large");
  }
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw new KeySetFetchError("too_large");
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return new TextDecoder().decode(bytes);
}

/** GET a JSON document within the time and size budget. */
export async function fetchJson(fetcher: Fetcher, url: string, limits: FetchLimits): Promise<unknown> {
  let response: Response;
  const signal = limits.signal ?? AbortSignal.timeout(limits.timeoutMs);
  try {
    // Never from Cloudflare's cache in front of the issuer: a refresh must see a key published since.
    response = await fetcher(url, {
      headers: { accept: "application/json" },
      redirect: "manual",
      signal,
      cache: "no-store",
    });
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
    throw new KeySetFetchError(timedOut ? "timeout" : "fetch_failed");
  }
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new KeySetFetchError("http_status");
  }
  let text: string;
  try {
    text = await readCapped(response, limits.maxBytes);
  } catch (error) {
    if (error instanceof KeySetFetchError) throw error;
    throw new KeySetFetchError(signal.aborted ? "timeout" : "fetch_failed");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new KeySetFetchError("not_json");
  }
}

/** Bytes of an EC or OKP coordinate on each curve. */
const COORDINATE_BYTES: ReadonlyMap<unknown, number> = new Map([
  ["P-256", 32],
  ["P-384", 48],
  ["P-521", 66],
  ["Ed25519", 32],
]);

/**
 * Whether an RSA key can verify nothing here: a modulus under 2048 bits (RFC 7518 §3.3 and
 * §3.5 forbid it; jose refuses it too; this is where the edge does), or a public exponent that
 * is even or 1 (the runtime refuses it). Told from the numbers, so that no run of such entries
 * takes a usable key's place.
 */
function weakRsa(n: string, e: string): boolean {
  try {
    const modulus = binaryOf(n).replace(/^\0+/, "");
    const exponent = binaryOf(e).replace(/^\0+/, "");
    return (
      modulus.length < 256 ||
      (modulus.length === 256 && modulus < "\x80") ||
      !(exponent.charCodeAt(exponent.length - 1) & 1) ||
      exponent === "\x01"
    );
  } catch {
    return true; // not base64url: no number at all
  }
}

/**
 * One spelling of a key's number: the runtime imports an RSA `n` or `e` with leading zero
 * bytes, and an EC coordinate one byte long or short, as the same key, so a listing spelt
 * otherwise is the same material. RSA numbers lose leading zeros (one byte left at least);
 * coordinates are brought to their curve's size. A member that is not base64url stays as it is.
 */
function canonicalNumber(value: unknown, bytes?: number): unknown {
  if (typeof value !== "string") return value;
  let binary: string;
  try {
    binary = binaryOf(value);
  } catch {
    return value;
  }
  const minimal = binary.replace(/^\0+(?=[\s\S])/, "");
  const sized = bytes === undefined ? minimal : minimal.replace(/^\0+/, "").padStart(bytes, "\0");
  return btoa(sized).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * The public material of a key, whatever `kid` or `alg` it is listed under, and however its
 * numbers are spelt (see `canonicalNumber`): a leak goes by it.
 */
export function keyMaterialOf(jwk: Record<string, unknown>): string {
  const bytes = COORDINATE_BYTES.get(jwk.crv);
  return JSON.stringify([
    jwk.kty,
    jwk.crv,
    canonicalNumber(jwk.n),
    canonicalNumber(jwk.e),
    canonicalNumber(jwk.x, bytes),
    canonicalNumber(jwk.y, bytes),
  ]);
}

/** A private member with something in it: `"d": null` (as some libraries write an absent one) holds nothing. */
function holdsPrivatePart(candidate: Record<string, unknown>): boolean {
  return PRIVATE_MEMBERS.some(
    (member) => candidate[member] !== undefined && candidate[member] !== null && candidate[member] !== "",
  );
}

export interface UsableKeySet {
  keys: JWK[];
  /** The material of keys this document published with their private part. */
  leaked: string[];
}

/** Members of `raw` of a known key type, each a string no longer than any real key's; or undefined. */
function publicMembersOf(raw: unknown): readonly string[] | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const candidate = raw as Record<string, unknown>;
  // A Map, so a `kty` such as "__proto__" or "toString" is an unknown type, not an inherited member.
  const members = typeof candidate.kty === "string" ? PUBLIC_MEMBERS.get(candidate.kty) : undefined;
  if (!members) return undefined; // symmetric (`oct`) and unknown key types are never verification keys here
  for (const member of members) {
    const value = candidate[member];
    if (typeof value !== "string" || value.length > MAX_MEMBER_CHARS) return undefined;
  }
  return members;
}

/**
 * The verification keys of a JWKS document. A key published with its private part anywhere in
 * it (under any kid, beside its public half) is dropped with every listing of its material, as
 * are keys in `knownLeaked` (leaked before: republishing the public half does not make the
 * private one secret again). Throws if no key is usable, unless one was dropped as leaked: the
 * set is then the issuer's answer, not a failed fetch: served on as the last good set, the one
 * before would keep trusting the very key that leaked. Only keys kept count towards the cap, so
 * no run of entries that could never verify (leaked, key-agreement curves) pushes one out.
 */
export function usableKeys(document: unknown, knownLeaked: ReadonlySet<string> = new Set()): UsableKeySet {
  if (typeof document !== "object" || document === null || !Array.isArray((document as { keys?: unknown }).keys)) {
    throw new KeySetFetchError("malformed");
  }
  const entries = (document as { keys: unknown[] }).keys;
  // First every leak, wherever the set lists it: a public listing before it must not take a place.
  // A key published with any private member (RFC 7517 §9.2) is every reader's to sign with:
  // an RSA key's q gives p as n / q, and one CRT exponent (dp or dq) gives it by a gcd.
  // Whatever its `use`: the material is what leaked. Read whole, which the size cap on the set bounds.
  const leaked = new Set<string>();
  for (const raw of entries) {
    if (publicMembersOf(raw) && holdsPrivatePart(raw as Record<string, unknown>)) {
      leaked.add(keyMaterialOf(raw as Record<string, unknown>));
    }
  }
  const keys: JWK[] = [];
  let listsLeaked = leaked.size > 0;
  for (const raw of entries) {
    if (keys.length === MAX_KEYS) break;
    const members = publicMembersOf(raw);
    if (!members) continue;
    const candidate = raw as Record<string, unknown>;
    if (candidate.use !== undefined && candidate.use !== "sig") continue;
    // key_ops, when present, lists what the key may do (RFC 7517 §4.3): without "verify" it is
    // not ours to verify with, whatever `use` says. A malformed list permits nothing.
    if (candidate.key_ops !== undefined && !(Array.isArray(candidate.key_ops) && candidate.key_ops.includes("verify")))
      continue;
    if (candidate.kid !== undefined && (typeof candidate.kid !== "string" || candidate.kid.length > MAX_KID_LENGTH))
      continue;
    if (candidate.crv === "Ed25519" && unsafeEd25519(candidate.x as string)) continue;
    if (candidate.kty === "RSA" && weakRsa(candidate.n as string, candidate.e as string)) continue;
    // An `alg` that is no signature algorithm here (ECDH-ES, RSA-OAEP: an encryption key
    // published without `use`) can verify nothing; one that conflicts with the key is kept
    // (a token naming it is refused as such).
    if (candidate.alg !== undefined && !(typeof candidate.alg === "string" && JWS_ALGORITHMS.has(candidate.alg)))
      continue;
    if (!firstAlgOf(candidate)) continue;
    const material = keyMaterialOf(candidate);
    if (leaked.has(material) || knownLeaked.has(material)) {
      listsLeaked = true;
      continue;
    }
    const key: Record<string, unknown> = { kty: candidate.kty };
    for (const member of ["kid", "alg", ...members])
      if (candidate[member] !== undefined) key[member] = candidate[member];
    keys.push(key as JWK);
  }
  if (keys.length === 0 && !listsLeaked) throw new KeySetFetchError("no_usable_keys");
  return { keys, leaked: [...leaked] };
}

/**
 * The keys of `set` the runtime verifies with, in order: each is imported as the first
 * algorithm it fits, and one it refuses (an EC point off its curve) is dropped. A set none of
 * whose keys can verify is one without usable keys, as an empty one: the last good set serves
 * on. Unless a leak emptied it (see usableKeys). Once per set fetched; a lookup imports a key
 * again for its token's algorithm.
 */
export async function verifiableKeys(set: UsableKeySet): Promise<UsableKeySet> {
  const verifies = await Promise.all(
    set.keys.map(async (jwk) => {
      const alg = firstAlgOf(jwk);
      return alg !== undefined && (await importVerifyKey(jwk, alg)) !== undefined;
    }),
  );
  const keys = set.keys.filter((_, i) => verifies[i]);
  if (keys.length === 0 && set.keys.length > 0 && set.leaked.length === 0) throw new KeySetFetchError("no_usable_keys");
  return { keys, leaked: set.leaked };
}

/** The bound on a discovery document, or max_jwks_bytes if that is larger. */
const MAX_DISCOVERY_BYTES = 65_536;

/** OpenID discovery (OIDC Discovery §4.3): the document must name the same issuer. */
export async function discoverJwksUri(
  fetcher: Fetcher,
  discoveryUrl: string,
  issuer: string,
  limits: FetchLimits,
): Promise<string> {
  // Its own bound: a discovery document (Keycloak's runs past 6 KB) may well be larger than
  // the key set max_jwks_bytes was sized for.
  const document = await fetchJson(fetcher, discoveryUrl, {
    ...limits,
    maxBytes: Math.max(limits.maxBytes, MAX_DISCOVERY_BYTES),
  });
  if (typeof document !== "object" || document === null) throw new KeySetFetchError("malformed");
  const { issuer: named, jwks_uri: jwksUri } = document as { issuer?: unknown; jwks_uri?: unknown };
  if (named !== issuer) throw new KeySetFetchError("discovery_issuer_mismatch");
  if (!secureUrl(jwksUri)) throw new KeySetFetchError("discovery_bad_jwks_uri");
  return jwksUri as string;
}
