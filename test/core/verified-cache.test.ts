// The verified-token cache, keyed by the exact token: its entry and character bounds, its
// expiry, that no other token is ever served from it, and the lazy audit hash it memoises.
import { afterEach, describe, expect, it, vi } from "vitest";
import { compilePolicy } from "../../src/core/policy";
import { lazyTokenHash, tokenHash } from "../../src/core/tokens/token-hash";
import { VerifiedTokenCache } from "../../src/core/tokens/verified-cache";
import { TokenVerifier } from "../../src/core/tokens/verify";
import { b64url, makeIssuer, makeKey } from "../support/issuers";
import { flipLastChar, signText, verifierFor } from "./token-fixtures";
import { settleDeferred } from "../support/waiting";

const T0 = 1_800_000_000_000;
const entry = {
  identity: {
    issuerId: "idp",
    issuer: "https://idp.example",
    kind: "oidc" as const,
    subject: "u1",
    scopes: [],
    groups: [],
    claims: {},
    tokenHash: () => Promise.resolve("0"),
  },
  // The cache stores the verifying key for the verifier to check; it never looks at it.
  key: {} as CryptoKey,
};

function cache(limits: Partial<ConstructorParameters<typeof VerifiedTokenCache>[0]> = {}) {
  return new VerifiedTokenCache({ maxEntries: 100, maxKeyChars: 10_000, maxAgeMs: 300_000, ...limits });
}

/** A distinct token-like key of exactly `length` characters. */
const key = (i: number, length = 100) => `${i}.`.padEnd(length, "x");

async function sha256Prefix(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("VerifiedTokenCache", () => {
  it("a token whose exp is the current instant is not stored, so it evicts no live entry", () => {
    const cache = new VerifiedTokenCache({ maxEntries: 1, maxKeyChars: 10_000, maxAgeMs: 300_000 });
    cache.set("live", entry, T0 / 1000 + 60, T0);
    cache.set("dead", entry, T0 / 1000, T0);
    expect(cache.get("live", T0)).toBeDefined();
    expect(cache.size).toBe(1);
    expect(cache.keyChars).toBe("live".length);
  });

  it("holds at most maxEntries, evicting the oldest insertion first", () => {
    const c = cache({ maxEntries: 3 });
    for (let i = 0; i < 5; i++) c.set(key(i), entry, T0 / 1000 + 60, T0);
    expect(c.size).toBe(3);
    expect(c.get(key(0), T0)).toBeUndefined();
    expect(c.get(key(1), T0)).toBeUndefined();
    expect(c.get(key(4), T0)).toMatchObject({ identity: { issuerId: "idp" } });
  });

  it("holds at most maxKeyChars of tokens, evicting the oldest first", () => {
    const c = cache({ maxKeyChars: 1_000 });
    for (let i = 0; i < 50; i++) {
      c.set(key(i, 150 + (i % 7) * 40), entry, T0 / 1000 + 60, T0);
      expect(c.keyChars).toBeLessThanOrEqual(1_000);
    }
    expect(c.get(key(49, 150), T0)).toBeDefined();
    expect(c.get(key(0, 150), T0)).toBeUndefined();
    // The count matches what is actually held.
    let held = 0;
    for (let i = 0; i < 50; i++) {
      const k = key(i, 150 + (i % 7) * 40);
      if (c.get(k, T0)) held += k.length;
    }
    expect(c.keyChars).toBe(held);
  });

  it("never caches a token longer than the whole character budget", () => {
    const c = cache({ maxKeyChars: 1_000 });
    c.set(key(1, 500), entry, T0 / 1000 + 60, T0);
    c.set(key(2, 1_001), entry, T0 / 1000 + 60, T0);
    expect(c.size).toBe(1);
    expect(c.keyChars).toBe(500);
  });

  it("storing the same token again does not count it twice", () => {
    const c = cache();
    for (let i = 0; i < 3; i++) c.set(key(1), entry, T0 / 1000 + 60, T0);
    expect(c.size).toBe(1);
    expect(c.keyChars).toBe(100);
  });

  it("an entry ends at the token's exp, or at the maximum age if sooner", () => {
    const c = cache({ maxAgeMs: 120_000 });
    c.set("short", entry, T0 / 1000 + 60, T0);
    c.set("long", entry, T0 / 1000 + 3_600, T0);
    c.set("expired", entry, T0 / 1000, T0);
    expect(c.get("expired", T0)).toBeUndefined();
    expect(c.get("short", T0 + 59_999)).toBeDefined();
    expect(c.get("short", T0 + 60_000)).toBeUndefined();
    expect(c.get("long", T0 + 119_999)).toBeDefined();
    expect(c.get("long", T0 + 120_000)).toBeUndefined();
    expect(c.size).toBe(0);
    expect(c.keyChars).toBe(0);
  });

  it("maxEntries 0 disables it", () => {
    const c = cache({ maxEntries: 0 });
    c.set("t", entry, T0 / 1000 + 60, T0);
    expect(c.size).toBe(0);
  });

  it("under long churn with re-stored and expiring tokens, holds exactly what a plain oldest-first cache holds", () => {
    // The reference: a Map evicting its first key (insertion order) until the new token fits.
    const limits = { maxEntries: 40, maxKeyChars: 4_000, maxAgeMs: 300_000 };
    const reference = new Map<string, number>();
    const referenceChars = () => [...reference.keys()].reduce((sum, token) => sum + token.length, 0);
    const referenceSet = (token: string, expiresAt: number) => {
      reference.delete(token);
      for (const oldest of reference.keys()) {
        if (reference.size < limits.maxEntries && referenceChars() + token.length <= limits.maxKeyChars) break;
        reference.delete(oldest);
      }
      reference.set(token, expiresAt);
    };
    const c = new VerifiedTokenCache(limits);
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    let now = T0;
    // Enough operations for the queue to be rebuilt many times over.
    for (let op = 0; op < 20_000; op++) {
      now += random(50);
      const token = key(random(300), 50 + random(150));
      if (random(3) === 0) {
        const served = c.get(token, now) !== undefined;
        const expiresAt = reference.get(token);
        const held = expiresAt !== undefined && now < expiresAt;
        if (expiresAt !== undefined && !held) reference.delete(token);
        expect(served).toBe(held);
      } else {
        const expSeconds = Math.floor(now / 1000) + 1 + random(20);
        c.set(token, entry, expSeconds, now);
        referenceSet(token, Math.min(expSeconds * 1000, now + limits.maxAgeMs));
      }
      expect(c.size).toBe(reference.size);
      expect(c.keyChars).toBe(referenceChars());
    }
  });
});

describe("the verified-token cache in the verifier", () => {
  it("stays within its character bound under many distinct tokens", async () => {
    const issuer = await makeIssuer();
    const probe = await issuer.sign({ sub: "u-probe" });
    const bound = probe.length * 5 + 10;
    const { verifier, verify } = verifierFor({ issuers: { idp: { issuer } }, deps: { tokenCacheChars: bound } });
    for (let i = 0; i < 40; i++) {
      expect((await verify(await issuer.sign({ sub: `u${i}`, pad: "p".repeat(i % 5) }))).ok).toBe(true);
      expect(verifier.tokenCache.keyChars).toBeLessThanOrEqual(bound);
    }
    expect(verifier.tokenCache.size).toBeGreaterThanOrEqual(4);
    expect(verifier.tokenCache.size).toBeLessThanOrEqual(5);
  });

  it("by default an entry lasts at most 5 minutes, even for a token valid for an hour", async () => {
    const issuer = await makeIssuer();
    let now = Date.now();
    // No cache bounds injected: the verifier's own defaults.
    const { verify } = verifierFor({ issuers: { idp: { issuer } }, deps: { now: () => now } });
    const s = Math.floor(now / 1000);
    const token = await issuer.sign({ iat: s, exp: s + 3600 });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    now += 299_000;
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    // Past the maximum age the token is checked afresh (its key set, fetched 5 minutes ago,
    // is still fresh), however long it has left.
    now += 2_000;
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "memory" });
  });

  it("a clock stepped back behind a cached check checks the token afresh: its nbf is not yet reached", async () => {
    const issuer = await makeIssuer();
    let now = Date.now();
    const { verify } = verifierFor({ issuers: { idp: { issuer } }, deps: { now: () => now } });
    const s = Math.floor(now / 1000);
    // Valid from now on (the default skew is 60 s).
    const token = await issuer.sign({ iat: s, nbf: s, exp: s + 3600 });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    now += 1_000;
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    // The clock steps back five minutes: before the token's nbf (less the skew).
    now -= 300_000;
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_not_yet_valid" });
  });

  it("a token differing from a cached one in a single signature character is not served from it", async () => {
    const issuer = await makeIssuer();
    const { verify } = verifierFor({ issuers: { idp: { issuer } } });
    const token = await issuer.sign();
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    const middle = token.length - 20;
    const swapped = token.slice(0, middle) + (token[middle] === "A" ? "B" : "A") + token.slice(middle + 1);
    for (const forged of [flipLastChar(token), swapped]) {
      expect(await verify(forged)).toMatchObject({ ok: false, reason: "token_invalid", detail: "signature" });
    }
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
  });
});

describe("the audit hash of a verified token", () => {
  it("is SHA-256 of the token's signed part (header.payload) cut to 16 hex characters", async () => {
    expect(await tokenHash("a.b.c")).toBe(await sha256Prefix("a.b"));
    expect(await tokenHash("eyJhbGciOiJFUzI1NiJ9.e30.AAAA")).toBe(await sha256Prefix("eyJhbGciOiJFUzI1NiJ9.e30"));
    expect(await tokenHash("a.ü.c")).toBe(await sha256Prefix("a.ü"));
    expect(await tokenHash("a.b.c")).toMatch(/^[0-9a-f]{16}$/);
  });

  it("is not computed while verifying, and at most once per cached token", async () => {
    const issuer = await makeIssuer();
    const { verify } = verifierFor({ issuers: { idp: { issuer } } });
    const token = await issuer.sign();
    const expected = await sha256Prefix(token.slice(0, token.lastIndexOf(".")));
    const digest = vi.spyOn(crypto.subtle, "digest");
    const first = await verify(token);
    const second = await verify(token);
    expect(digest).not.toHaveBeenCalled();
    if (!first.ok || !second.ok) throw new Error("expected both verifications to succeed");
    expect(second.keySource).toBe("token_cache");
    const hash = first.identity.tokenHash as () => Promise<string>;
    expect(second.identity.tokenHash).toBe(hash);
    expect(await hash()).toBe(expected);
    expect(await hash()).toBe(expected);
    expect(digest).toHaveBeenCalledTimes(1);
  });

  it("lazyTokenHash memoises one computation", async () => {
    const digest = vi.spyOn(crypto.subtle, "digest");
    const lazy = lazyTokenHash("a.b.c");
    expect(digest).not.toHaveBeenCalled();
    const [x, y] = await Promise.all([lazy(), lazy()]);
    expect(x).toBe(y);
    expect(digest).toHaveBeenCalledTimes(1);
  });
});

describe("a token's exp goes by the clock the decision is made at", () => {
  const ISS = "https://idp.test";
  const AUD = "https://api.test";
  /**
   * One issuer whose key set a stub serves on an injected clock; while `fetchMs` is set, each
   * fetch of the set moves the clock on by that much (a slow issuer, within fetch_timeout_ms).
   */
  async function slowIssuerWorld(settings: Record<string, unknown>) {
    const key = await makeKey("ES256", "k1");
    const clock = { now: T0 + 500, fetchMs: 0, fetches: 0 };
    const policy = compilePolicy({
      version: 1,
      issuers: { idp: { kind: "oidc", issuer: ISS, jwks_uri: `${ISS}/jwks`, audiences: [AUD], ...settings } },
      upstreams: { o: { url: "https://origin.test" } },
      routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
    });
    const verifier = new TokenVerifier(policy, {
      fetch: async () => {
        clock.fetches += 1;
        clock.now += clock.fetchMs;
        return Response.json({ keys: [key.publicJwk] });
      },
      now: () => clock.now,
    });
    const pending: Promise<unknown>[] = [];
    const sign = (sub: string, iat: number, exp: number) =>
      signText(key, {}, JSON.stringify({ iss: ISS, aud: AUD, sub, iat, exp }));
    return {
      clock,
      sign,
      verify: (token: string) => verifier.verify(token, ["idp"], undefined, (work) => pending.push(work)),
      settle: () => settleDeferred(pending),
    };
  }

  it("a token that expires while its key set is fetched is refused", async () => {
    const { clock, sign, verify } = await slowIssuerWorld({ clock_skew_s: 0, fetch_timeout_ms: 5000 });
    const s = Math.floor(clock.now / 1000);
    // Valid for 1.5 s more when it arrives; the cold key-set fetch takes 3 s.
    const token = await sign("u1", s, s + 2);
    clock.fetchMs = 3000;
    const result = await verify(token);
    expect(clock.fetches).toBe(1);
    expect(clock.now).toBeGreaterThan((s + 2) * 1000);
    expect(result).toMatchObject({ ok: false, reason: "token_expired", detail: "exp" });
  });

  it("a cached token is not served past its exp after waiting for its key set's refresh", async () => {
    const { clock, sign, verify, settle } = await slowIssuerWorld({
      clock_skew_s: 0,
      cache_ttl_s: 300,
      fetch_timeout_ms: 5000,
    });
    const s0 = Math.floor(clock.now / 1000);
    // A token valid until s0 + 350 is verified (the set loads) and then served from the cache.
    const token = await sign("u1", s0, s0 + 350);
    expect(await verify(token)).toMatchObject({ ok: true });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    await settle();
    // Half a second before exp the set is past its TTL: the cache hit waits for a refresh that
    // takes 3 s, by the end of which the token has expired.
    clock.now = (s0 + 350) * 1000 - 500;
    clock.fetchMs = 3000;
    const result = await verify(token);
    expect(clock.fetches).toBe(2);
    expect(clock.now).toBeGreaterThan((s0 + 350) * 1000);
    expect(result).toMatchObject({ ok: false, reason: "token_expired", detail: "exp" });
  });
});

describe("one signed token, one audit hash", () => {
  /** P-256's group order: an ECDSA signature (r, s) verifies as (r, n − s) too. */
  const P256_N = BigInt("0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");

  /** The same ES256 token with its signature's twin: s replaced by n − s. */
  function withTwinSignature(token: string): string {
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const bytes = Uint8Array.from(atob(signature.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    let s = 0n;
    for (let i = 32; i < 64; i++) s = (s << 8n) | BigInt(bytes[i] as number);
    let twin = P256_N - s;
    for (let i = 63; i >= 32; i--) {
      bytes[i] = Number(twin & 255n);
      twin >>= 8n;
    }
    return `${header}.${payload}.${b64url(bytes)}`;
  }

  it("an ES256 token presented with its twin signature gets the token's token_hash", async () => {
    const issuer = await makeIssuer();
    const { verify } = verifierFor({ issuers: { idp: { issuer } } });
    const token = await issuer.sign();
    const twin = withTwinSignature(token);
    expect(twin).not.toBe(token);
    const first = await verify(token);
    const second = await verify(twin);
    // Both verify (the malleability of ECDSA itself); they are one token to the audit log.
    if (!first.ok || !second.ok) throw new Error("expected both forms to verify");
    expect(second.keySource).not.toBe("token_cache");
    expect(await second.identity.tokenHash()).toBe(await first.identity.tokenHash());
  });
});
