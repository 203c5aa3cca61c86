// Key rotation and the KV-held key-set record under hostile conditions: records that are expired,
// mistyped or from another version, an issuer answering an empty set, a leak another isolate
// saw reaching a token in the verified-token cache, what is left of a leaked key's grace in a
// cold isolate, and records holding more retired or leaked keys than the edge keeps.
// Isolates are IssuerKeyStores (or TokenVerifiers) on an injected clock, sharing the runtime's
// real KV; the issuer is scripted, or the loopback stand-in where a token is signed.
import type { JWK } from "jose";
import { describe, expect, it } from "vitest";
import { keyMaterialOf } from "../../src/core/jwks/fetch-key-set";
import { Clock, kv, signAt, verifierFor } from "../support/clocked-verifier";
import { makeIssuer, makeKey, type TestKey } from "../support/issuers";
import { publicJwk, T0, world } from "../support/key-store-world";

/** A lookup's answer in one word, so a failure shows the refusal's reason and detail. */
const said = (r: { ok: boolean; reason?: string; detail?: string; source?: string }) =>
  r.ok ? `ok/${r.source}` : `${r.reason}/${r.detail}`;

const material = (jwk: JWK) => keyMaterialOf(jwk as Record<string, unknown>);

describe("a KV record whose set expired long ago", () => {
  // fetched_at is finite and in the past, so the record is taken, but its set is past
  // cache_ttl_s + max_stale_s: it may not serve, and the keys it lists were last current then.
  it.each([
    ["fetched_at 0", 0],
    ["a negative fetched_at", -86_400_000],
    ["fetched_at a fraction of a millisecond after the epoch", 1e-300],
  ])(
    "(%s) never serves its keys while the issuer is down, and gives them no grace once it answers",
    async (_label, fetchedAt) => {
      const old = await publicJwk("old");
      const successor = await publicJwk("successor");
      const w = world({ cache_ttl_s: 600, max_stale_s: 86_400, rotation_grace_s: 3600, refresh_cooldown_s: 30 });
      await w.putRecord(fetchedAt, [old]);
      w.issuer.down = true;
      const edge = w.isolate();
      // Not the record's key: the issuer is asked, and its failure is the answer.
      expect(said(await edge.lookup("old"))).toBe("jwks_unavailable/jwks_http_status");
      expect(w.issuer.fetches).toBe(1);
      // The issuer comes back having withdrawn the key: the record's set was fetched (and its key
      // last current) long before rotation_grace_s, so the key gets no window from this fetch.
      w.issuer.down = false;
      w.issuer.keys = [successor];
      w.clock.ms += 31_000;
      expect(said(await edge.lookup("successor"))).toBe("ok/fetch");
      expect(said(await edge.lookup("old"))).toBe("token_invalid/kid_unknown");
      // Nor in what it saved for other isolates.
      expect((await w.record())?.retired).toEqual([]);
    },
  );
});

describe("a KV record of another shape", () => {
  // Written by another version of the edge (a `v` it does not know), or mistyped: a miss. The
  // issuer is asked, the planted key is never trusted, and the record is replaced by this
  // version's own.
  it.each<[string, Record<string, unknown>]>([
    ["a newer version (v 2)", { v: 2 }],
    ["v as a string", { v: "1" }],
    ["fetched_at as a numeric string", { fetched_at: String(T0 - 1000) }],
    ["fetched_at null (NaN as JSON writes it)", { fetched_at: null }],
    ["fetched_at absent", { fetched_at: undefined }],
    ["keys not a list", { keys: { planted: true } }],
    ["keys absent", { keys: undefined }],
  ])("%s: a miss, replaced by the set fetched", async (_label, fields) => {
    const planted = await publicJwk("planted");
    const own = await publicJwk("own");
    const w = world({ cache_ttl_s: 600 });
    await w.putRecord(T0 - 1000, [planted], fields);
    w.issuer.keys = [own];
    const edge = w.isolate();
    expect(said(await edge.lookup("own"))).toBe("ok/fetch");
    expect(said(await edge.lookup("planted"))).toBe("token_invalid/kid_unknown");
    expect(w.issuer.fetches).toBe(1);
    expect(await w.record()).toMatchObject({ v: 1, fetched_at: T0, jwks_uri: w.jwksUri, keys: [{ kid: "own" }] });
  });
});

describe('an issuer that answers {"keys":[]} after a good set', () => {
  // README: a set with no usable key and no leaked one stays a failed fetch; the newest good
  // set, this isolate's or one saved in KV, serves on until cache_ttl_s + max_stale_s.
  it("is a failed fetch: the good set serves on, stale, here and through KV, and an unknown kid is 503, not 401", async () => {
    const a = await publicJwk("a");
    const w = world({ cache_ttl_s: 300, max_stale_s: 600, refresh_cooldown_s: 30 });
    w.issuer.keys = [a];
    const first = w.isolate();
    expect(said(await first.lookup("a"))).toBe("ok/fetch");
    const saved = await w.record();
    w.issuer.keys = [];
    w.clock.ms = T0 + 301_000;
    expect(said(await first.lookup("a"))).toBe("ok/stale");
    expect(w.issuer.fetches).toBe(2);
    // The empty answer replaced nothing in KV: the good set is still what other isolates read.
    expect(await w.record()).toEqual(saved);
    // A new key's token cannot be decided while the issuer answers nothing usable.
    w.clock.ms += 31_000;
    expect(said(await first.lookup("new"))).toBe("jwks_unavailable/jwks_no_usable_keys");
    // An isolate started now takes the good set from KV, refreshes it, fails, and serves it on.
    w.clock.ms += 1000;
    const second = w.isolate();
    expect(said(await second.lookup("a"))).toBe("ok/stale");
    // Past cache_ttl_s + max_stale_s nothing is left to serve.
    w.clock.ms = T0 + 900_000;
    expect(said(await first.lookup("a"))).toBe("jwks_unavailable/jwks_no_usable_keys");
    expect(said(await second.lookup("a"))).toBe("jwks_unavailable/jwks_no_usable_keys");
  });
});

describe("a leak another isolate saw, and the verified-token cache", () => {
  /**
   * This isolate verified and cached a token of `leaked` (rotation_grace_s 0). 100 s later
   * another isolate saw `leaked` published with its private part, and saved a newer set without
   * it; the issuer has since taken the private part down (its own fetch would not show the leak).
   */
  async function cachedThenLeakedElsewhere() {
    const issuer = await makeIssuer();
    const clock = new Clock(T0);
    const leaked = issuer.keys[0] as TestKey;
    const kept = await makeKey();
    await issuer.publish([leaked, kept]);
    const jwksUri = `${issuer.url}/jwks`;
    const settings = { jwks_uri: jwksUri, cache_ttl_s: 600, rotation_grace_s: 0, refresh_cooldown_s: 30 };
    const edge = verifierFor(issuer, clock, settings, true, undefined, 100);
    const token = await signAt(issuer, clock, leaked);
    expect(await edge.verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await edge.verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    await edge.settle();
    const record = {
      v: 1,
      fetched_at: T0 + 100_000,
      jwks_uri: jwksUri,
      keys: [kept.publicJwk],
      retired: [],
      leaked: [material(leaked.publicJwk)],
    };
    await kv.put(`jwks:v1:${issuer.url}`, JSON.stringify(record), { expirationTtl: 3600 });
    return { issuer, clock, leaked, token, edge };
  }
  type Leaked = Awaited<ReturnType<typeof cachedThenLeakedElsewhere>>;

  /**
   * The cached token, once this isolate has read the leak: not served. KV's newer set (fresh,
   * though fetched more than a cooldown ago) spared the fetch and says nothing of a key published
   * since, so the kid is 503 jwks_refreshing for a second; then the issuer, asked, lists the key's
   * public half alone, which the leak keeps from being current: kid_unknown.
   */
  async function refusedOnceRead({ issuer, clock, leaked, token, edge }: Leaked) {
    expect(await edge.verify(token)).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_refreshing",
      retryAfterS: 1,
    });
    expect(edge.store.stats.fetches).toBe(1);
    await edge.settle();
    clock.ms += 1500;
    expect(await edge.verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(edge.store.stats.fetches).toBe(2);
    // Nor is a token anyone signs with the published private key taken.
    expect(await edge.verify(await signAt(issuer, clock, leaked))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
  }

  it("stops the cached token once the refresh in the last stretch of the TTL has read KV, before the TTL", async () => {
    const leakedElsewhere = await cachedThenLeakedElsewhere();
    leakedElsewhere.clock.ms = T0 + 570_000; // in the last 60 s of the 600 s TTL: refreshed after the response
    await leakedElsewhere.edge.verify(leakedElsewhere.token);
    await leakedElsewhere.edge.settle();
    await refusedOnceRead(leakedElsewhere);
  });

  it("stops the cached token at once past the TTL: the refresh before use reads KV first", async () => {
    const leakedElsewhere = await cachedThenLeakedElsewhere();
    leakedElsewhere.clock.ms = T0 + 601_000;
    await refusedOnceRead(leakedElsewhere);
  });
});

describe("a cold isolate reading a leak with its retirement from KV", () => {
  // The isolate that saw the leak retired the key then; an isolate that starts later gives it
  // only what is left of rotation_grace_s, not a window of its own from when it read the record.
  it("gives the leaked key what is left of its grace, and never lists it as current", async () => {
    const leaked = await publicJwk("leaked");
    const kept = await publicJwk("kept");
    const w = world({ cache_ttl_s: 600, rotation_grace_s: 60, refresh_cooldown_s: 30 });
    w.issuer.keys = [kept];
    // The record lists the leaked key's public half among its keys too (as an older writer might).
    await w.putRecord(T0 - 10_000, [leaked, kept], {
      retired: [{ jwk: leaked, retired_at: T0 - 10_000 }],
      leaked: [material(leaked)],
    });
    w.clock.ms = T0 + 40_000; // 50 s after the retirement
    const edge = w.isolate();
    expect(said(await edge.lookup("leaked"))).toBe("ok/kv");
    expect(said(await edge.lookup("kept"))).toBe("ok/memory");
    w.clock.ms = T0 + 51_000; // 61 s after it
    expect(said(await edge.lookup("leaked"))).toBe("token_invalid/kid_unknown");
    // The refresh that unknown kid brought saved a record that still names the leak and lists
    // the key nowhere.
    const saved = await w.record();
    expect(saved?.leaked).toEqual([material(leaked)]);
    expect(saved?.keys).toEqual([expect.objectContaining({ kid: "kept" })]);
    expect(saved?.retired).toEqual([]);
  });
});

describe("a KV record holding more retired or leaked keys than the edge keeps", () => {
  // A record cannot make an isolate keep more than it would itself: 100 retired keys, the
  // latest retired, and 100 leaked keys, the latest seen; and what it writes back is as bounded.
  it("is cut to the latest 100 of each, in memory and in the record written back", async () => {
    const current = await publicJwk("current");
    const retiredKeys = await Promise.all(Array.from({ length: 150 }, (_, i) => publicJwk(`r${i}`)));
    const leakedKeys = await Promise.all(Array.from({ length: 150 }, (_, i) => publicJwk(`l${i}`)));
    const w = world({ cache_ttl_s: 600, rotation_grace_s: 3600, refresh_cooldown_s: 30 });
    w.issuer.keys = [current];
    await w.putRecord(T0 - 200_000, [current], {
      // Retired in order, r149 last.
      retired: retiredKeys.map((jwk, i) => ({ jwk, retired_at: T0 - 200_000 + i * 1000 })),
      leaked: leakedKeys.map(material),
    });
    const edge = w.isolate();
    expect(said(await edge.lookup("r149"))).toBe("ok/kv");
    expect(said(await edge.lookup("r50"))).toBe("ok/memory");
    // r49 and before are past the 100 kept: gone, though within their grace. (An unknown kid:
    // the record's set is fresh, so its refresh fetches, and the issuer does not list r49.)
    expect(said(await edge.lookup("r49"))).toBe("token_invalid/kid_unknown");
    expect(w.issuer.fetches).toBe(1);
    const saved = (await w.record()) as { retired: { jwk: { kid: string } }[]; leaked: string[] };
    expect(saved.retired.map((r) => r.jwk.kid).sort()).toEqual(
      retiredKeys
        .slice(50)
        .map((k) => k.kid)
        .sort(),
    );
    expect(saved.leaked).toEqual(leakedKeys.slice(50).map(material));
  }, 30_000);
});
