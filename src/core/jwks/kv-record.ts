// What an issuer's key store keeps in KV, shared by every isolate (see README "JWKS cache"):
//   jwks:v1:<issuer>          {"v":1,"fetched_at","jwks_uri","discovered","keys":[…],"retired":[{"jwk","retired_at"}],"leaked":[…]}
//                             expires after cache_ttl + max_stale
//   jwks-refresh:v1:<issuer>[ <configured jwks_uri>]
//                             time (ms) of the last refresh attempt by any isolate; expires ≥ 60 s
// Both are bound to the key source (configured jwks_uri, or discovery): a record from another
// source is a miss, and another source's attempts do not cool this one's down. KV is a cache,
// not a source of trust: a record is checked as strictly as a fetched set.

import type { JWK } from "jose";
import type { ResolvedIssuer } from "../policy";
import { secureUrl } from "../urls";
import { MAX_KEYS, MAX_MEMBER_CHARS, usableKeys } from "./fetch-key-set";

/** The shortest expiry KV takes. */
export const KV_MIN_TTL_S = 60;

export interface StoredKeySet {
  v: 1;
  fetched_at: number;
  jwks_uri?: string;
  /** Whether jwks_uri was discovered: a discovered URI looks like a configured one. */
  discovered?: boolean;
  keys: JWK[];
  retired: { jwk: JWK; retired_at: number }[];
  /** The material of keys the issuer published with their private part (see usableKeys). */
  leaked?: string[];
}

/** Leaked keys remembered, the latest seen: as many as a key set has at most. */
export const MAX_LEAKED_KEYS = MAX_KEYS;
/** A key's material as written: three members at most, each JSON-escaped (see usableKeys). */
const MAX_MATERIAL_CHARS = 3 * 6 * MAX_MEMBER_CHARS + 64;

/** The key of an issuer's key-set record. */
export function recordKey(issuer: ResolvedIssuer): string {
  return `jwks:v1:${issuer.issuer}`;
}

/** The key of an issuer's refresh stamp, per key source (a configured jwks_uri, or discovery). */
export function refreshStampKey(issuer: ResolvedIssuer): string {
  return `jwks-refresh:v1:${issuer.issuer}${issuer.jwksUri ? ` ${issuer.jwksUri}` : ""}`;
}

/** A time read from KV that we may act on: one in the future would keep a set fresh, or a key
 * in grace, indefinitely. */
export function isPastTime(value: unknown, now: number): value is number {
  return typeof value === "number" && Number.isFinite(value) && value <= now;
}

/** `jwk` filtered exactly as a fetched key is, or undefined if it is not a usable key. */
function usableKey(jwk: unknown): JWK | undefined {
  try {
    return usableKeys({ keys: [jwk] }).keys[0];
  } catch {
    return undefined;
  }
}

/**
 * A KV record, checked as strictly as a fetched set (KV is a cache, not a source of trust):
 * usable keys only, times finite and not in the future, a jwks_uri we may fetch. A bad
 * retired entry is dropped; anything else wrong makes the record a miss.
 */
export function parseStored(text: string, now: number, jwksUri: string | undefined): StoredKeySet | undefined {
  const parsed = JSON.parse(text) as Record<string, unknown> | null;
  if (parsed?.v !== 1 || !isPastTime(parsed.fetched_at, now) || !Array.isArray(parsed.keys)) return undefined;
  // Keys fetched from another source (an old config, another deployment on the namespace) are
  // not this one's to trust.
  if (jwksUri ? parsed.jwks_uri !== jwksUri : parsed.discovered !== true) return undefined;
  const retired: StoredKeySet["retired"] = [];
  for (const entry of Array.isArray(parsed.retired) ? (parsed.retired as unknown[]) : []) {
    if (typeof entry !== "object" || entry === null) continue;
    const { jwk: raw, retired_at: retiredAt } = entry as Record<string, unknown>;
    const jwk = usableKey(raw);
    if (jwk && isPastTime(retiredAt, now)) retired.push({ jwk, retired_at: retiredAt });
  }
  const leaked = (Array.isArray(parsed.leaked) ? (parsed.leaked as unknown[]) : [])
    .filter((m): m is string => typeof m === "string" && m.length <= MAX_MATERIAL_CHARS)
    .slice(-MAX_LEAKED_KEYS);
  return {
    v: 1,
    fetched_at: parsed.fetched_at,
    ...(secureUrl(parsed.jwks_uri) ? { jwks_uri: parsed.jwks_uri as string } : {}),
    // Empty only when the issuer's set held no key but leaked ones: otherwise a miss, as a
    // fetched set without usable keys is a failure.
    keys: parsed.keys.length === 0 && leaked.length > 0 ? [] : usableKeys({ keys: parsed.keys }, new Set(leaked)).keys,
    retired,
    ...(leaked.length > 0 ? { leaked } : {}),
  };
}
