// Isolate-memory cache of verification results, so a client that reuses its access token
// skips parsing and the signature check (as Envoy's JWT cache does). It is keyed by the whole
// token string: the Map hashes it natively and compares the full string on every hit, so two
// different tokens can never share an entry — stronger than keying by a (truncated) digest,
// and with no hashing on the request path. Bounded in entries and in total key characters
// (large tokens cannot fill isolate memory), oldest insertion evicted first; an entry never
// outlives its token's `exp` nor the maximum age.

import type { Identity } from "../identity";

export interface VerifiedEntry {
  /**
   * The identity the token maps to, built once: it depends only on the issuer and the verified
   * claims (`identity.claims`), and its memoised audit hash means a warm token is hashed at
   * most once per isolate. Shared by every request that presents the token: read-only.
   */
  identity: Identity;
  /** The key whose signature check the token passed: a hit is good only while it is trusted. */
  key: CryptoKey;
  /** Milliseconds since the epoch after which the entry is unusable. */
  expiresAt: number;
}

export interface VerifiedCacheLimits {
  /** Entries (0 disables the cache). */
  maxEntries: number;
  /** Sum of the cached tokens' lengths. */
  maxKeyChars: number;
  maxAgeMs: number;
}

/** An entry as stored: with when it was, and the position of its token in the eviction queue. */
type StoredEntry = VerifiedEntry & { storedAt: number; slot: number };

export class VerifiedTokenCache {
  readonly #entries = new Map<string, StoredEntry>();
  #chars = 0;
  /**
   * Tokens in insertion order, the oldest at `head`: eviction takes from here in O(1). (Taking
   * the Map's first key instead walks over every slot its earlier deletions left behind, a
   * cost that grows with the cache under steady churn.) A slot whose token has since been
   * deleted or stored again is stale: its entry's `slot` no longer points at it.
   */
  #order: (string | undefined)[] = [];
  #head = 0;

  readonly #limits: VerifiedCacheLimits;

  constructor(limits: VerifiedCacheLimits) {
    this.#limits = limits;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Total characters of the cached tokens. */
  get keyChars(): number {
    return this.#chars;
  }

  get(token: string, now: number): VerifiedEntry | undefined {
    const entry = this.#entries.get(token);
    if (!entry) return undefined;
    // A clock that stepped back behind the check: its `nbf` and `iat` are checked afresh.
    if (now >= entry.expiresAt || now < entry.storedAt) {
      this.delete(token);
      return undefined;
    }
    return entry;
  }

  /** `expSeconds` is the token's `exp`; the entry expires then, or after maxAge if sooner. */
  set(token: string, entry: Omit<VerifiedEntry, "expiresAt">, expSeconds: number, now: number): void {
    const { maxEntries, maxKeyChars, maxAgeMs } = this.#limits;
    const expiresAt = Math.min(expSeconds * 1000, now + maxAgeMs);
    if (expiresAt <= now || token.length > maxKeyChars || maxEntries <= 0) return;
    this.delete(token);
    // The oldest insertions go until the new one fits (the cache is not empty while it does not).
    while (this.#entries.size >= maxEntries || this.#chars + token.length > maxKeyChars) this.#evictOldest();
    this.#entries.set(token, { ...entry, expiresAt, storedAt: now, slot: this.#order.length });
    this.#order.push(token);
    this.#chars += token.length;
    // Once stale and spent slots outnumber live entries, rebuild the queue: amortised O(1).
    if (this.#order.length > 2 * this.#entries.size + 1024) this.#compact();
  }

  #evictOldest(): void {
    for (;;) {
      const slot = this.#head++;
      const token = this.#order[slot];
      this.#order[slot] = undefined;
      if (token !== undefined && this.#entries.get(token)?.slot === slot) {
        this.delete(token);
        return;
      }
    }
  }

  /** The live entries' tokens, still in insertion order (the Map's own order). */
  #compact(): void {
    this.#order = [...this.#entries.keys()];
    this.#head = 0;
    let slot = 0;
    for (const entry of this.#entries.values()) entry.slot = slot++;
  }

  delete(token: string): void {
    if (this.#entries.delete(token)) this.#chars -= token.length;
  }
}
