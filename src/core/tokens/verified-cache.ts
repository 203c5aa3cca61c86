// Isolate-memory cache of verification results, keyed by a SHA-256 of the whole token, so a
// client that reuses its access token skips the signature check (as Envoy's JWT cache
// does). Bounded in entries; an entry never outlives its token's `exp`.

import type { JWTPayload } from "jose";

export interface VerifiedEntry {
  issuerId: string;
  payload: JWTPayload;
  /** Milliseconds since the epoch after which the entry is unusable. */
  expiresAt: number;
}

export class VerifiedTokenCache {
  private readonly entries = new Map<string, VerifiedEntry>();

  constructor(
    private readonly maxEntries: number,
    private readonly maxAgeMs: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(tokenDigest: string, now: number): VerifiedEntry | undefined {
    const entry = this.entries.get(tokenDigest);
    if (!entry) return undefined;
    if (now >= entry.expiresAt) {
      this.entries.delete(tokenDigest);
      return undefined;
    }
    return entry;
  }

  /** `expSeconds` is the token's `exp`; the entry expires then, or after maxAge if sooner. */
  set(tokenDigest: string, issuerId: string, payload: JWTPayload, expSeconds: number, now: number): void {
    const expiresAt = Math.min(expSeconds * 1000, now + this.maxAgeMs);
    if (expiresAt <= now) return;
    if (this.entries.size >= this.maxEntries && !this.entries.has(tokenDigest)) {
      // Evict the oldest insertion (Map iterates in insertion order).
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(tokenDigest, { issuerId, payload, expiresAt });
  }
}
