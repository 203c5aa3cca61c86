// Verifies an access token or Access assertion against the issuers a route accepts.
// Everything the decision needs comes from configuration — algorithms, issuer, keys —
// never from the token (DESIGN invariant 6). One instance per isolate.

import { type JWTPayload, jwtVerify } from "jose";
import type { DenyReason } from "../deny";
import type { Identity } from "../identity";
import type { Fetcher } from "../jwks/fetch-key-set";
import { type Defer, IssuerKeyStore, type KeySource, type KeyValueStore } from "../jwks/key-store";
import type { CompiledPolicy, ResolvedIssuer } from "../policy";
import { identityFromClaims } from "./claims";
import { peekToken } from "./compact";
import { lazyTokenHash } from "./token-hash";
import { VerifiedTokenCache } from "./verified-cache";

export interface VerifierDeps {
  fetch: Fetcher;
  kv?: KeyValueStore;
  /** Milliseconds since the epoch. */
  now: () => number;
  /** Entries in the verified-token cache (0 disables it). Default 10,000. */
  tokenCacheEntries?: number;
  /** Total characters of the tokens in the verified-token cache. Default 4 Mi. */
  tokenCacheChars?: number;
}

export type VerifyResult =
  | { ok: true; identity: Identity; keySource: KeySource | "token_cache" }
  | {
      ok: false;
      reason: DenyReason;
      detail: string;
      /** Set once an issuer was chosen: which one, and where its keys came from (for metrics). */
      issuerId?: string;
      keySource?: KeySource;
    };

const TOKEN_CACHE_MAX_AGE_MS = 5 * 60 * 1000;

function audienceMatches(aud: unknown, accepted: readonly string[]): boolean {
  if (typeof aud === "string") return accepted.includes(aud);
  if (Array.isArray(aud)) return aud.some((a) => typeof a === "string" && accepted.includes(a));
  return false;
}

/** jose's errors carry a stable `code` (and `claim` for claim failures). */
interface JoseFailure {
  code?: unknown;
  claim?: unknown;
  reason?: unknown;
}

const SIGNATURE_FAILED = "ERR_JWS_SIGNATURE_VERIFICATION_FAILED";

/** jose's error codes → our reasons. The code goes to the audit record as detail. */
function reasonForJoseError(error: unknown): { reason: DenyReason; detail: string } {
  const { code, claim, reason } = (error ?? {}) as JoseFailure;
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return { reason: "token_expired", detail: "exp" };
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      if (claim === "nbf") return { reason: "token_not_yet_valid", detail: "nbf" };
      if (claim === "iss") return { reason: "issuer_unknown", detail: "iss" };
      return { reason: "token_invalid", detail: `claim_${String(claim)}_${String(reason)}` };
    case SIGNATURE_FAILED:
      return { reason: "token_invalid", detail: "signature" };
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return { reason: "token_invalid", detail: "alg_not_allowed" };
    default:
      return { reason: "token_invalid", detail: typeof code === "string" ? code : "verification_error" };
  }
}

export class TokenVerifier {
  private readonly stores = new Map<string, IssuerKeyStore>();
  private readonly byIssuerUrl = new Map<string, ResolvedIssuer>();
  readonly tokenCache: VerifiedTokenCache;

  constructor(
    private readonly policy: CompiledPolicy,
    private readonly deps: VerifierDeps,
  ) {
    for (const issuer of policy.issuers.values()) this.byIssuerUrl.set(issuer.issuer, issuer);
    this.tokenCache = new VerifiedTokenCache({
      maxEntries: deps.tokenCacheEntries ?? 10_000,
      maxKeyChars: deps.tokenCacheChars ?? 4 * 1024 * 1024,
      maxAgeMs: TOKEN_CACHE_MAX_AGE_MS,
    });
  }

  /** The key store of an issuer, created on first use (one per issuer per isolate). */
  keyStore(issuer: ResolvedIssuer): IssuerKeyStore {
    let store = this.stores.get(issuer.id);
    if (!store) {
      store = new IssuerKeyStore(issuer, this.deps);
      this.stores.set(issuer.id, store);
    }
    return store;
  }

  /**
   * @param acceptedIssuerIds issuers the route accepts
   * @param audiences the route's audiences, or undefined to use each issuer's own
   */
  async verify(
    token: string,
    acceptedIssuerIds: readonly string[],
    audiences: readonly string[] | undefined,
    defer: Defer,
  ): Promise<VerifyResult> {
    if (token.length > this.policy.maxTokenBytes)
      return { ok: false, reason: "token_invalid", detail: "token_too_large" };
    const now = this.deps.now();
    const cached = this.tokenCache.get(token, now);
    if (cached) {
      const issuer = this.policy.issuers.get(cached.issuerId) as ResolvedIssuer;
      return this.finish(issuer, cached.payload, cached.tokenHash, acceptedIssuerIds, audiences, "token_cache");
    }

    const peeked = peekToken(token, this.policy.maxTokenBytes);
    if (!peeked.ok) return { ok: false, reason: "token_invalid", detail: peeked.detail };
    const { alg, kid, iss } = peeked.token;
    const issuer = this.byIssuerUrl.get(iss);
    if (!issuer) return { ok: false, reason: "issuer_unknown", detail: "issuer_not_configured" };
    if (!acceptedIssuerIds.includes(issuer.id))
      return { ok: false, reason: "issuer_unknown", detail: "issuer_not_accepted_by_route" };
    if (!issuer.algorithms.includes(alg)) return { ok: false, reason: "token_invalid", detail: "alg_not_allowed" };

    const store = this.keyStore(issuer);
    const fetchesBefore = store.stats.fetches;
    const lookup = await store.lookup(kid, alg, defer);
    if (!lookup.ok) {
      // An unknown kid or a dead endpoint is a key-cache miss when it cost a fetch.
      const keySource: KeySource = store.stats.fetches > fetchesBefore ? "fetch" : "memory";
      return { ok: false, reason: lookup.reason, detail: lookup.detail, issuerId: issuer.id, keySource };
    }

    let payload: JWTPayload | undefined;
    let failure: { reason: DenyReason; detail: string } = { reason: "token_invalid", detail: "signature" };
    for (const key of lookup.keys) {
      try {
        const verified = await jwtVerify(token, key, {
          issuer: issuer.issuer,
          algorithms: issuer.algorithms,
          requiredClaims: ["exp"],
          clockTolerance: issuer.clockSkewS,
          currentDate: new Date(now),
          ...(issuer.typ ? { typ: issuer.typ } : {}),
        });
        payload = verified.payload;
        break;
      } catch (error) {
        failure = reasonForJoseError(error);
        // Only a signature mismatch makes the next candidate key worth trying.
        if ((error as JoseFailure)?.code !== SIGNATURE_FAILED) break;
      }
    }
    if (!payload) return { ok: false, ...failure, issuerId: issuer.id, keySource: lookup.source };
    if (typeof payload.iat === "number" && payload.iat > now / 1000 + issuer.clockSkewS) {
      return { ok: false, reason: "token_invalid", detail: "iat_in_future" };
    }
    const hash = lazyTokenHash(token);
    const result = this.finish(issuer, payload, hash, acceptedIssuerIds, audiences, lookup.source);
    if (result.ok)
      this.tokenCache.set(token, { issuerId: issuer.id, payload, tokenHash: hash }, payload.exp as number, now);
    return result;
  }

  /** The route-dependent checks, run on every request, cached or not. */
  private finish(
    issuer: ResolvedIssuer,
    payload: JWTPayload,
    tokenHash: () => Promise<string>,
    acceptedIssuerIds: readonly string[],
    audiences: readonly string[] | undefined,
    keySource: KeySource | "token_cache",
  ): VerifyResult {
    if (!acceptedIssuerIds.includes(issuer.id))
      return { ok: false, reason: "issuer_unknown", detail: "issuer_not_accepted_by_route" };
    if (!audienceMatches(payload.aud, audiences ?? issuer.audiences)) {
      return { ok: false, reason: "audience_mismatch", detail: "aud" };
    }
    const mapped = identityFromClaims(issuer, payload, tokenHash);
    if (!mapped.ok) return { ok: false, reason: "token_invalid", detail: mapped.detail };
    return { ok: true, identity: mapped.identity, keySource };
  }
}
