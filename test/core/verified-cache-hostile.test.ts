// The verified-token cache from the attacker's side: a string that differs from a
// cached token only where a lenient decoder would not look is checked afresh, and refused as
// such; no refused token ever enters the cache, so refusals cannot evict a client's entry; a
// token first checked at the skew's edge is cached only once a fresh check passes it; two
// first checks of one token at once make one whole entry; and a cached answer on any route is
// the answer a fresh check gives there.
import { describe, expect, it } from "vitest";
import type { VerifyResult } from "../../src/core/tokens/verify";
import { makeIssuer, makeKey } from "../support/issuers";
import { held } from "../support/waiting";
import { fixedNow, verifierFor } from "./token-fixtures";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);
const SKEW = 60;

/** What a check decided, without where its key came from (a cache hit and a fresh check differ there). */
function decision(result: VerifyResult) {
  if (result.ok) return { ok: true, issuerId: result.identity.issuerId, subject: result.identity.subject };
  const { keySource: _source, ...rest } = result;
  return rest;
}

/** The base64url alphabet, in value order. */
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * The token with its signature's last character's lowest bit flipped: an ES256 signature (86
 * characters) leaves 4 bits of it unused, so a lenient decoder reads the very same bytes.
 */
function withStrayLowBit(token: string): string {
  const last = token.at(-1) as string;
  return token.slice(0, -1) + (B64URL[B64URL.indexOf(last) ^ 1] as string);
}

describe("a string that differs from a cached token only where a lenient reading would not look", () => {
  it("is checked afresh and refused, as a fresh check refuses it, while the token itself stays cached", async () => {
    const issuer = await makeIssuer();
    const { verify } = verifierFor({ issuers: { idp: { issuer } }, deps: { now: () => NOW } });
    const { verify: verifyFresh } = verifierFor({
      issuers: { idp: { issuer } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    // A signature holding `-` or `_`, so its standard-base64 spelling decodes to the same bytes.
    let token = "";
    do token = await issuer.sign({ iat: S, exp: S + 600 });
    while (!/[-_]/.test(token.slice(token.lastIndexOf(".") + 1)));
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    expect(await verifyFresh(token)).toMatchObject({ ok: true });

    const [header, payload, signature] = token.split(".") as [string, string, string];
    const variants: [string, string][] = [
      [`${token} `, "not_compact_jws"],
      [` ${token}`, "not_compact_jws"],
      [`${token}\n`, "not_compact_jws"],
      [`${token}==`, "not_compact_jws"],
      [`${header}=.${payload}.${signature}`, "not_compact_jws"],
      [`${token}.`, "not_compact_jws"],
      [`${header}.${payload}.${signature.replace(/-/g, "+").replace(/_/g, "/")}`, "not_compact_jws"],
      [withStrayLowBit(token), "non_canonical_base64url"],
    ];
    for (const [variant, detail] of variants) {
      const cached = await verify(variant);
      expect(cached).toMatchObject({ ok: false, reason: "token_invalid", detail });
      expect(decision(cached)).toEqual(decision(await verifyFresh(variant)));
    }
    // Another case of the same text is another token: refused as a fresh check refuses it.
    for (const variant of [
      token.toUpperCase(),
      token.toLowerCase(),
      `${header}.${payload}.${signature.toUpperCase()}`,
    ]) {
      const cached = await verify(variant);
      expect(cached.ok).toBe(false);
      expect(decision(cached)).toEqual(decision(await verifyFresh(variant)));
    }
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
  });
});

describe("a refused token never enters the cache", () => {
  it("so no refusal, however cheap to send, evicts the one token a one-entry cache holds", async () => {
    const [issuer, other] = [await makeIssuer(), await makeIssuer()];
    const { verifier, verify } = verifierFor({
      issuers: { idp: { issuer, clock_skew_s: SKEW }, other: { issuer: other } },
      deps: { now: () => NOW, tokenCacheEntries: 1 },
    });
    const good = await issuer.sign({ iat: S, exp: S + 600 });
    expect(await verify(good)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(verifier.tokenCache.size).toBe(1);

    // The issuer's kid on an attacker's key, and the cached token's signature on another payload.
    const impostor = await makeKey("ES256", (issuer.keys[0] as { kid: string }).kid);
    const sibling = await issuer.sign({ iat: S, exp: S + 600, sub: "user-2" });
    const spliced = `${sibling.slice(0, sibling.lastIndexOf("."))}${good.slice(good.lastIndexOf("."))}`;
    const refusals: [string, Partial<VerifyResult>][] = [
      [
        await issuer.sign({ iat: S, exp: S + 600 }, { key: impostor }),
        { reason: "token_invalid", detail: "signature" },
      ],
      [spliced, { reason: "token_invalid", detail: "signature" }],
      [await issuer.sign({ iat: S - 600, exp: S - SKEW }), { reason: "token_expired", detail: "exp" }],
      [
        await issuer.sign({ iat: S, nbf: S + SKEW + 1, exp: S + 600 }),
        { reason: "token_not_yet_valid", detail: "nbf" },
      ],
      [await issuer.sign({ iat: S + SKEW + 1, exp: S + 600 }), { reason: "token_invalid", detail: "iat_in_future" }],
      [
        await issuer.sign({ iat: S, exp: S + 600, cnf: { jkt: "x" } }),
        { reason: "token_invalid", detail: "sender_constrained" },
      ],
      [
        await issuer.sign({ iat: S, exp: S + 600, sub: "a b" }),
        { reason: "token_invalid", detail: "subject_missing_or_unsafe" },
      ],
      [await issuer.sign({ iat: S, exp: S + 600, aud: "elsewhere" }), { reason: "audience_mismatch", detail: "aud" }],
    ];
    for (const [token, refusal] of refusals) {
      // Twice: a refusal is not remembered either, the second is checked as the first was.
      expect(await verify(token)).toMatchObject({ ok: false, ...refusal });
      expect(await verify(token)).toMatchObject({ ok: false, ...refusal });
      expect(verifier.tokenCache.size).toBe(1);
    }
    // A good token of an issuer this route does not take.
    const foreign = await other.sign({ iat: S, exp: S + 600 });
    expect(await verifier.verify(foreign, ["idp"], undefined, () => {})).toEqual({
      ok: false,
      reason: "issuer_unknown",
      detail: "issuer_not_accepted_by_route",
    });
    expect(verifier.tokenCache.size).toBe(1);
    expect(verifier.tokenCache.keyChars).toBe(good.length);
    expect(await verify(good)).toMatchObject({ ok: true, keySource: "token_cache" });
  });
});

describe("a token first checked at the edge of the clock skew", () => {
  it("is cached once a fresh check passes its nbf and iat, and refused (uncached) a second beyond", async () => {
    const issuer = await makeIssuer();
    let now = NOW;
    const { verifier, verify } = verifierFor({
      issuers: { idp: { issuer, clock_skew_s: SKEW } },
      deps: { now: () => now },
    });
    const atEdge = await issuer.sign({ iat: S + SKEW, nbf: S + SKEW, exp: S + 600 });
    const early = await issuer.sign({ iat: S, nbf: S + SKEW + 1, exp: S + 600 });
    expect(await verify(atEdge)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(atEdge)).toMatchObject({ ok: true, keySource: "token_cache" });
    expect(await verify(early)).toMatchObject({ ok: false, reason: "token_not_yet_valid", detail: "nbf" });
    expect(await verify(early)).toMatchObject({ ok: false, reason: "token_not_yet_valid", detail: "nbf" });
    expect(verifier.tokenCache.size).toBe(1);
    // A second on, the early token's nbf is within the skew: it passes, afresh, and is cached.
    now += 1_000;
    expect(await verify(early)).toMatchObject({ ok: true, keySource: "memory" });
    expect(await verify(early)).toMatchObject({ ok: true, keySource: "token_cache" });
    expect(await verify(atEdge)).toMatchObject({ ok: true, keySource: "token_cache" });
  });

  it("a clock stepped back by one millisecond checks a cached token afresh, which passes and is cached again", async () => {
    const issuer = await makeIssuer();
    let now = NOW;
    const { verify } = verifierFor({ issuers: { idp: { issuer, clock_skew_s: SKEW } }, deps: { now: () => now } });
    const token = await issuer.sign({ iat: S, exp: S + 600 });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    now -= 1;
    // Its key set now seems fetched "in the future" too, so it is refreshed before use.
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
  });
});

describe("two first checks of one token at once", () => {
  it("both verify on the one key-set load, and leave one whole entry that the next request is served from", async () => {
    const issuer = await makeIssuer();
    const fetched = held<void>();
    const release = held<void>();
    const { verifier, verify } = verifierFor({
      issuers: { idp: { issuer } },
      deps: {
        now: () => NOW,
        fetch: async (input, init) => {
          fetched.resolve();
          await release.promise;
          return fetch(input, init);
        },
      },
    });
    const token = await issuer.sign({ iat: S, exp: S + 600 });
    const first = verify(token);
    const second = verify(token);
    await fetched.promise;
    // Neither has an answer yet, so neither has stored anything.
    expect(verifier.tokenCache.size).toBe(0);
    release.resolve();
    const [a, b] = await Promise.all([first, second]);
    expect(a).toMatchObject({ ok: true, identity: { subject: "user-1" } });
    expect(b).toMatchObject({ ok: true, identity: { subject: "user-1" } });
    expect([a.ok && a.keySource, b.ok && b.keySource]).not.toContain("token_cache");
    expect(verifier.tokenCache.size).toBe(1);
    expect(verifier.tokenCache.keyChars).toBe(token.length);
    const third = await verify(token);
    expect(third).toMatchObject({ ok: true, keySource: "token_cache", identity: { subject: "user-1" } });
  });
});

describe("the entry bound under many distinct tokens, through the verifier", () => {
  it("holds, and a token it evicted is checked afresh and accepted", async () => {
    const issuer = await makeIssuer();
    const { verifier, verify } = verifierFor({
      issuers: { idp: { issuer } },
      deps: { now: () => NOW, tokenCacheEntries: 4 },
    });
    const tokens: string[] = [];
    for (let i = 0; i < 30; i++) {
      const token = await issuer.sign({ iat: S, exp: S + 600, sub: `u${i}` });
      tokens.push(token);
      expect(await verify(token)).toMatchObject({ ok: true, identity: { subject: `u${i}` } });
      expect(verifier.tokenCache.size).toBeLessThanOrEqual(4);
    }
    expect(verifier.tokenCache.size).toBe(4);
    for (const token of tokens.slice(-4))
      expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    expect(await verify(tokens[0] as string)).toMatchObject({
      ok: true,
      keySource: "memory",
      identity: { subject: "u0" },
    });
    expect(verifier.tokenCache.size).toBe(4);
  });
});

describe("a cached answer, on any route", () => {
  it("is the answer a fresh check gives there: reason, detail, issuer and identity alike", async () => {
    const [a, b] = [await makeIssuer(), await makeIssuer()];
    const issuers = { a: { issuer: a }, b: { issuer: b } };
    const { verifier: cachedVerifier } = verifierFor({ issuers, deps: { now: () => NOW } });
    const { verifier: freshVerifier } = verifierFor({ issuers, deps: { now: () => NOW, tokenCacheEntries: 0 } });
    const token = await a.sign({ iat: S, exp: S + 600, aud: ["route-a", "shared"] });
    const routes: [string[], string[] | undefined][] = [
      [["a"], ["route-a"]],
      [["a"], ["shared", "route-x"]],
      [["a"], ["route-b"]],
      [["a"], undefined],
      [["b"], ["route-a"]],
      [["b", "a"], ["route-a"]],
      [[], ["route-a"]],
    ];
    // Cached first, on the route that takes it; the fresh verifier warmed on the same route.
    expect(await cachedVerifier.verify(token, ["a"], ["route-a"], () => {})).toMatchObject({ ok: true });
    expect(await freshVerifier.verify(token, ["a"], ["route-a"], () => {})).toMatchObject({ ok: true });
    for (const [accepted, audiences] of routes) {
      const cached = await cachedVerifier.verify(token, accepted, audiences, () => {});
      const fresh = await freshVerifier.verify(token, accepted, audiences, () => {});
      expect(decision(cached)).toEqual(decision(fresh));
      // Where a fresh check names its issuer and key source (for the metrics), so does a hit.
      expect("keySource" in cached).toBe("keySource" in fresh);
    }
    expect(await cachedVerifier.verify(token, ["a"], ["route-a"], () => {})).toMatchObject({
      ok: true,
      keySource: "token_cache",
    });
  });
});
