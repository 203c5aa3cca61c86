// Verifies an access token or Access assertion against the issuers a route accepts.
// Everything the decision needs comes from configuration — algorithms, issuer, keys —
// never from the token (a token never chooses its own algorithm or key source). One instance
// per isolate.
//
// The request path: size cap → verified-token cache (keyed by the exact token) → one strict
// parse → issuer and alg allow-list → keys → WebCrypto signature check → registered claims →
// the route's audience → claim mapping (`identityFromClaims`). jose is not on this path; test/core/token-differential.test.ts holds our
// decisions against jose's `jwtVerify` with the same strict options.

import type { DenyReason } from "../deny";
import type { Identity } from "../identity";
import { type Defer, IssuerKeyStore, type KeySource, type KeyStoreDeps, type LookupSource } from "../jwks/key-store";
import type { CompiledPolicy, ResolvedIssuer } from "../policy";
import { identityFromClaims } from "./claims";
import { parseToken } from "./compact";
import { type SignatureCheck, verifySignature } from "./jws-verify";
import { checkRegisteredClaims } from "./registered-claims";
import { lazyTokenHash } from "./token-hash";
import { VerifiedTokenCache } from "./verified-cache";

/** What the key stores need (fetch, KV, the clock), and the verified-token cache's bounds. */
export interface VerifierDeps extends KeyStoreDeps {
  /** Entries in the verified-token cache (0 disables it). Default 10,000. */
  tokenCacheEntries?: number;
  /** Total characters of the tokens in the verified-token cache. Default 4 Mi. */
  tokenCacheChars?: number;
}

/**
 * Where a check's key came from. `token_cache_stale`: a verified-token cache answer (no key
 * looked up) while the issuer's set is served past its TTL, which the stale-set alert counts.
 */
export type CheckSource = LookupSource | "token_cache" | "token_cache_stale";

export type VerifyResult =
  | { ok: true; identity: Identity; keySource: CheckSource }
  | {
      ok: false;
      reason: DenyReason;
      detail: string;
      /** Set once an issuer was chosen: which one, and where its keys came from (for metrics). */
      issuerId?: string;
      keySource?: CheckSource;
      /** For jwks_unavailable: when asking again may help. */
      retryAfterS?: number;
    };

const TOKEN_CACHE_MAX_AGE_MS = 5 * 60 * 1000;

function audienceMatches(aud: unknown, accepted: readonly string[]): boolean {
  if (typeof aud === "string") return accepted.includes(aud);
  if (Array.isArray(aud)) return aud.some((a) => typeof a === "string" && accepted.includes(a));
  return false;
}

export class TokenVerifier {
  readonly #stores = new Map<string, IssuerKeyStore>();
  readonly #byIssuerUrl = new Map<string, ResolvedIssuer>();
  readonly tokenCache: VerifiedTokenCache;

  readonly #policy: CompiledPolicy;
  readonly #deps: VerifierDeps;

  constructor(policy: CompiledPolicy, deps: VerifierDeps) {
    this.#policy = policy;
    this.#deps = deps;
    for (const issuer of policy.issuers.values()) this.#byIssuerUrl.set(issuer.issuer, issuer);
    this.tokenCache = new VerifiedTokenCache({
      maxEntries: deps.tokenCacheEntries ?? 10_000,
      maxKeyChars: deps.tokenCacheChars ?? 4 * 1024 * 1024,
      maxAgeMs: TOKEN_CACHE_MAX_AGE_MS,
    });
  }

  /** The key store of an issuer, created on first use (one per issuer per isolate). */
  keyStore(issuer: ResolvedIssuer): IssuerKeyStore {
    let store = this.#stores.get(issuer.id);
    if (!store) {
      store = new IssuerKeyStore(issuer, this.#deps);
      this.#stores.set(issuer.id, store);
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
    if (token.length > this.#policy.maxTokenBytes)
      return { ok: false, reason: "token_invalid", detail: "token_too_large" };
    const now = this.#deps.now();
    const cached = this.tokenCache.get(token, now);
    if (cached) {
      const { identity } = cached;
      const issuer = this.#policy.issuers.get(identity.issuerId) as ResolvedIssuer;
      // A route that does not take this issuer refuses the token whatever its keys.
      if (!acceptedIssuerIds.includes(issuer.id)) return NOT_ACCEPTED_BY_ROUTE;
      // The key that verified it may since have been withdrawn (beyond its grace window) or its
      // set expired: then the token is checked afresh, and fails as a new one would. A set past
      // its TTL is refreshed first, as for a token checked afresh.
      const store = this.keyStore(issuer);
      const refreshing = store.keepCurrent(now, defer);
      if (refreshing) await refreshing;
      const checkedAt = this.#deps.now();
      // The wait for a refresh can outlast the token: then it is checked afresh, and expires.
      const stillCached = !refreshing || this.tokenCache.get(token, checkedAt) !== undefined;
      if (stillCached && store.trusts(cached.key, checkedAt)) {
        // Through an outage a set past its TTL serves on: the metrics must show it, whether a
        // token was checked against it now or earlier.
        const keySource = store.servesStale(checkedAt) ? "token_cache_stale" : "token_cache";
        // An audience refusal comes after the key check: it names its issuer and key source
        // for the metrics, as on a token checked afresh.
        const refusedBy = this.#audienceRefusedBy(issuer, identity.claims, audiences);
        if (refusedBy) return audienceMismatch(refusedBy, issuer, keySource);
        return { ok: true, identity, keySource };
      }
      this.tokenCache.delete(token);
    }

    const parsed = parseToken(token);
    if (!parsed.ok) return { ok: false, reason: "token_invalid", detail: parsed.detail };
    const { header, payload, alg, kid, iss, signingInput, signature } = parsed.token;
    const issuer = this.#byIssuerUrl.get(iss);
    if (!issuer) return { ok: false, reason: "issuer_unknown", detail: "issuer_not_configured" };
    if (!acceptedIssuerIds.includes(issuer.id)) return NOT_ACCEPTED_BY_ROUTE;
    // The allow-list is the issuer's configuration; `none` and HS* are never in it.
    if (!issuer.algorithms.includes(alg)) return { ok: false, reason: "token_invalid", detail: "alg_not_allowed" };

    const store = this.keyStore(issuer);
    const fetchesBefore = store.stats.fetches;
    const lookup = await store.lookup(kid, alg, defer);
    if (!lookup.ok) {
      // An unknown kid is a key-cache miss when it cost a fetch; a key set that cannot be had
      // is a miss whether or not this request made the failing fetch (within the cooldown it
      // makes none), so an issuer outage shows in the hit rate.
      const missed = store.stats.fetches > fetchesBefore || lookup.reason === "jwks_unavailable";
      const keySource: KeySource = missed ? "fetch" : "memory";
      return { ...lookup, issuerId: issuer.id, keySource };
    }
    const failed = (reason: DenyReason, detail: string): VerifyResult => ({
      ok: false,
      reason,
      detail,
      issuerId: issuer.id,
      keySource: lookup.source,
    });

    let check: SignatureCheck = "mismatch";
    let verifiedBy: CryptoKey | undefined;
    for (const key of lookup.keys) {
      const result = await verifySignature(alg, key, signingInput, signature);
      if (result === "valid") {
        verifiedBy = key;
        break;
      }
      // Any other candidate may still verify it (one weak key in a set must not block a token
      // without a kid); the first reason other than a mismatch is the one reported.
      if (check === "mismatch") check = result;
    }
    // No refresh for a bad signature: anyone can send one, and each would spend the refresh
    // cooldown that a rotation's new kid needs. A new key reusing a kid is picked up when the
    // set is next refreshed (cache_ttl_s).
    if (!verifiedBy) return failed("token_invalid", check === "mismatch" ? "signature" : check);

    // The time checks go by the clock after the key lookup, which may have waited for a fetch
    // (a token must not outlive its exp while its key set loads).
    const checkedAt = this.#deps.now();
    const claims = checkRegisteredClaims(header, payload, issuer, checkedAt);
    if (!claims.ok) return failed(claims.reason, claims.detail);
    // With the issuer and key source, as every refusal after the key lookup (for the metrics).
    const refusedBy = this.#audienceRefusedBy(issuer, payload, audiences);
    if (refusedBy) return audienceMismatch(refusedBy, issuer, lookup.source);
    // Kept (in the cache, and by the hash for the audit record) as a string of its own: the
    // token as read is a slice of the header it came in, and V8 keeps a slice's whole parent
    // alive, a Cookie header of tens of KB behind each cached cookie token. Copied only here,
    // once per verified token.
    const kept = ownCopy(token);
    const mapped = identityFromClaims(issuer, payload, lazyTokenHash(kept));
    if (!mapped.ok) return failed("token_invalid", mapped.detail);
    this.tokenCache.set(kept, { identity: mapped.identity, key: verifiedBy }, claims.exp, checkedAt);
    return { ok: true, identity: mapped.identity, keySource: lookup.source };
  }

  /**
   * The route-dependent audience check, run on every request, cached or not (the route's
   * issuers are checked before any key is looked up): the claim that refuses the token for
   * this route's audiences (the route's own list or else the issuer's), if any. The audience
   * is read from the claim the issuer names (`aud` unless its mapping says `client_id`, as
   * Cognito's access tokens carry it); an `aud` the token carries besides must name one too
   * (RFC 7519 §4.1.3), or a token bound to another resource would pass by its client alone.
   */
  #audienceRefusedBy(
    issuer: ResolvedIssuer,
    payload: Readonly<Record<string, unknown>>,
    audiences: readonly string[] | undefined,
  ): string | undefined {
    const accepted = audiences ?? issuer.audiences;
    const claim = issuer.claims.audience;
    if (!audienceMatches(payload[claim], accepted)) return claim;
    if (claim !== "aud" && payload.aud !== undefined && !audienceMatches(payload.aud, accepted)) return "aud";
    return undefined;
  }
}

/** A token whose issuer the route does not take, however good it is. */
const NOT_ACCEPTED_BY_ROUTE = {
  ok: false,
  reason: "issuer_unknown",
  detail: "issuer_not_accepted_by_route",
} as const satisfies VerifyResult;

/** The detail names the claim that refused it, so a refusal says where the audience was looked for. */
function audienceMismatch(claim: string, issuer: ResolvedIssuer, keySource: CheckSource): VerifyResult {
  return { ok: false, reason: "audience_mismatch", detail: claim, issuerId: issuer.id, keySource };
}

/**
 * A copy of `text` that shares no memory with the string it was cut from (JSON.parse builds a
 * new string; slicing and concatenating may keep a reference to the original).
 */
function ownCopy(text: string): string {
  return JSON.parse(JSON.stringify(text)) as string;
}
