// How the key-set refresh rules work together: refresh before use past the TTL, refresh after
// the response in its last tenth, no waiting while refreshes fail, a set taken from KV for
// another kid, against the shared stamp, the cooldown, the 1 s KV recheck, grace and max-stale.
// Every clock is injected; isolates are IssuerKeyStores sharing the runtime's real KV.
import { describe, expect, it } from "vitest";
import type { KeyLookup } from "../../src/core/jwks/key-store";
import {
  checkRetryAfter,
  newKidJoinsRefreshBeforeUse,
  pastTtlIssuerFailingSlowly,
  publicJwk,
  T0,
  twoWarmIsolates,
  warmIsolate,
  world,
} from "../support/key-store-world";

describe("key-set refresh rules together", () => {
  it("in the last tenth of the TTL an unknown kid still obeys the shared stamp: a second isolate does not fetch again 1 s after the first", async () => {
    const { w, a, b } = await twoWarmIsolates({ cache_ttl_s: 300, refresh_cooldown_s: 30 });
    // Both sets are now in the last tenth of their TTL (last 30 s). An attacker sends unknown kids.
    w.clock.ms = T0 + 275_000;
    expect(await a.lookup("attacker-1")).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(w.issuer.fetches).toBe(2); // A asked the issuer, stamped KV and saved the set
    w.clock.ms += 1000;
    // B: the set in KV was fetched 1 s ago and A's stamp is 1 s old. An unknown kid obeys the
    // shared cooldown: B must not ask the issuer again (kid_unknown from that set, or 503 jwks_refreshing).
    const answer = await b.lookup("attacker-2");
    expect(answer.ok).toBe(false);
    expect(w.issuer.fetches).toBe(2);
  });

  it.each([
    { issuer: "slower than", cooldownS: 1 },
    { issuer: "faster than", cooldownS: 2 },
  ])(
    "a set past its TTL and an unknown kid, with an issuer (1.5 s a fetch) $issuer the cooldown ($cooldownS s): the request waits for one refresh, not two, and is 503 with Retry-After in range",
    async ({ cooldownS }) => {
      const { a } = await pastTtlIssuerFailingSlowly({ refresh_cooldown_s: cooldownS });
      const answer = await a.lookup("k2");
      expect(answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
      // README: "unknown kid | one refresh, then retry"; and while refreshes fail, later attempts
      // run after the response. The refresh-before-use (made for k2) already failed; the request
      // should not make and wait for a second one.
      expect(answer.fetchesAtAnswer).toBe(2);
      checkRetryAfter(answer, cooldownS);
    },
  );

  it("cold isolate: its refresh fails, then KV brings a set fetched before that failure; an unknown kid within the cooldown is 503, not 401", async () => {
    const k1 = await publicJwk("k1");
    const w = world({ cache_ttl_s: 600, refresh_cooldown_s: 30 });
    const a = w.isolate();
    w.clock.ms = T0 + 100_000;
    w.issuer.down = true;
    // No set anywhere: the issuer is asked and fails.
    expect(await a.lookup("k1")).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_http_status" });
    expect(w.issuer.fetches).toBe(1);
    // KV (lagging) now shows another isolate's set, fetched 60 s before this isolate's failed attempt.
    await w.putRecord(T0 + 40_000, [k1]);
    w.clock.ms += 1500;
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "kv" });
    // A token signed with a key published since: the issuer could not be asked (the last attempt,
    // made after that set was fetched, failed, and the cooldown allows no other). README: 503.
    const answer = await a.lookup("k2");
    expect(w.issuer.fetches).toBe(1);
    expect(answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
  });

  it("warm isolate: its set expired, its refresh fails, KV brings a set fetched before the failure; an unknown kid is 503, not 401", async () => {
    const { w, a, k1 } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 0 });
    // Past TTL + max-stale (0): expired. The issuer is down.
    w.clock.ms = T0 + 400_000;
    w.issuer.down = true;
    expect(await a.lookup("k1")).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_http_status" });
    expect(w.issuer.fetches).toBe(2);
    // Another isolate's set, fetched 50 s before that failure, reaches this location's KV.
    await w.putRecord(T0 + 350_000, [k1]);
    w.clock.ms += 1500;
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "kv" });
    const answer = await a.lookup("k2");
    expect(w.issuer.fetches).toBe(2);
    expect(answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
  });

  it("outside the last tenth, the second isolate obeys the stamp (no second fetch)", async () => {
    const { w, a, b } = await twoWarmIsolates({ cache_ttl_s: 300, refresh_cooldown_s: 30 });
    w.clock.ms = T0 + 200_000;
    expect(await a.lookup("attacker-1")).toMatchObject({ ok: false, detail: "kid_unknown" });
    expect(w.issuer.fetches).toBe(2);
    w.clock.ms += 1000;
    const answer = await b.lookup("attacker-2");
    expect(answer).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(w.issuer.fetches).toBe(2);
  });

  it("refresh-ahead for known kids: the request does not wait, the second isolate takes the first one's set from KV", async () => {
    const { w, a, b } = await twoWarmIsolates({ cache_ttl_s: 300, refresh_cooldown_s: 30 });
    w.clock.ms = T0 + 275_000;
    const first = await a.lookup("k1");
    expect(first).toMatchObject({ ok: true, source: "memory", fetchesAtAnswer: 1 }); // answered before the refresh
    expect(w.issuer.fetches).toBe(2);
    w.clock.ms += 1000;
    expect(await b.lookup("k1")).toMatchObject({ ok: true, source: "memory" });
    expect(w.issuer.fetches).toBe(2);
  });

  it("an attacker's unknown kids cost at most one fetch per cooldown in one isolate, ahead window included", async () => {
    const { w, a } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30 });
    w.clock.ms = T0 + 270_000;
    for (let i = 0; i < 40; i++) {
      w.clock.ms += 500;
      await a.lookup(`attacker-${i}`);
    }
    // 20 s: the ahead fetch (set fresh again afterwards), nothing more.
    expect(w.issuer.fetches).toBe(2);
  });

  it("a KV set taken for another kid (older than a cooldown): 503 jwks_refreshing with Retry-After 1 inside the second; the flag is gone at the next attempt, which asks the issuer", async () => {
    const { w, a, k1 } = await warmIsolate({ cache_ttl_s: 600, refresh_cooldown_s: 30 });
    const ka = await publicJwk("ka");
    w.clock.ms = T0 + 120_000;
    await w.putRecord(T0 + 60_000, [k1, ka]);
    expect(await a.lookup("ka")).toMatchObject({ ok: true, source: "kv" });
    const held = await a.lookup("kb");
    expect(held).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_refreshing", retryAfterS: 1 });
    expect(w.issuer.fetches).toBe(1);
    w.clock.ms += 1500;
    // The issuer's own answer lacks kb: 401, from a fetch (not another 503).
    w.issuer.keys = [k1, ka];
    expect(await a.lookup("kb")).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(w.issuer.fetches).toBe(2);
    // Many seconds later, within the cooldown of that fetch: still the issuer's answer, 401.
    w.clock.ms += 10_000;
    expect(await a.lookup("kc")).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });

  it("the ahead refresh takes a newer KV set for a known kid; a kid it lacks 1 s later is not refused 401 from a set older than a cooldown", async () => {
    const { w, a, k1 } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30 });
    w.clock.ms = T0 + 280_000;
    await w.putRecord(T0 + 200_000, [k1]); // newer, 80 s old
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    expect(w.issuer.fetches).toBe(1); // taken from KV after the response
    w.clock.ms += 200;
    expect(await a.lookup("kb")).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_refreshing" });
  });

  it("Retry-After is an integer in 1…refresh_cooldown_s through stamps, KV-taken sets, failures and a clock step back", async () => {
    const cooldown = 7;
    const { w, a, k1 } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: cooldown, max_stale_s: 600 });
    const ka = await publicJwk("ka");
    const seen: unknown[] = [];
    const check = (r: KeyLookup) => {
      if (!r.ok && r.reason === "jwks_unavailable") seen.push(r.retryAfterS);
      checkRetryAfter(r, cooldown);
    };
    const steps: (() => unknown)[] = [
      () => w.stamp(w.clock.ms - 2000),
      () => w.stamp(w.clock.ms + 60_000), // from the future
      () => w.putRecord(w.clock.ms - 100_000, [k1, ka]),
      () => (w.issuer.down = true),
      () => (w.clock.ms -= 30_000), // step back
      () => (w.clock.ms += 400_000), // past TTL
      () => (w.issuer.down = false),
      () => (w.clock.ms += 700_000), // past max-stale
    ];
    for (const step of steps) {
      await step();
      for (let i = 0; i < 6; i++) {
        w.clock.ms += 900;
        check(await a.lookup(`x${i % 3}`));
        check(await a.lookup("k1"));
      }
    }
    expect(seen.length).toBeGreaterThan(0);
  });

  it("the stale key source: reported for a stale set that answered, not after the refresh succeeded", async () => {
    const { w, a } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 3600 });
    w.clock.ms = T0 + 301_000;
    w.issuer.down = true;
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "stale" });
    w.clock.ms += 10_000;
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "stale" }); // cooldown holds
    w.clock.ms += 100_000;
    w.issuer.down = false;
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "fetch" }); // failure > 2 cooldowns old: waits
    w.clock.ms += 1000;
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "memory" });
  });

  it("a withdrawn key (grace 0): an idle isolate's stale set refreshes first; a cached CryptoKey is no longer trusted", async () => {
    const settings = { cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0, max_stale_s: 86_400 };
    const { w, a, k2, first } = await warmIsolate(settings);
    const key = first.ok ? (first.keys[0] as CryptoKey) : undefined;
    w.issuer.keys = [k2];
    w.clock.ms = T0 + 5 * 3_600_000;
    const refreshing = a.store.keepCurrent(w.clock.ms, () => {});
    expect(refreshing).toBeDefined();
    await refreshing;
    expect(a.store.trusts(key as CryptoKey, w.clock.ms)).toBe(false);
    expect(await a.lookup("k1")).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });

  it("a failure while the set still serves makes the unknown kid 503", async () => {
    const { w, a } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 3600 });
    w.clock.ms = T0 + 100_000;
    w.issuer.down = true;
    expect(await a.lookup("k2")).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_http_status" });
    w.clock.ms += 1500;
    expect(await a.lookup("k3")).toMatchObject({ ok: false, reason: "jwks_unavailable" });
  });

  it("a set past its TTL is refreshed before use whatever the kid: another isolate's fresh stamp does not leave a withdrawn key in use", async () => {
    const settings = { cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0, max_stale_s: 86_400 };
    const { w, a: b, k2 } = await warmIsolate(settings);
    // k1 leaked: the issuer withdraws it for k2. Another isolate has just asked the issuer,
    // and its set has not reached this location's KV.
    w.issuer.keys = [k2];
    w.clock.ms = T0 + 301_000;
    await w.stamp(w.clock.ms - 2_000);
    // The first request past the TTL carries the new kid: the refresh fetches all the same.
    expect(await b.lookup("k2")).toMatchObject({ ok: true, source: "fetch" });
    expect(await b.lookup("k1")).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(w.issuer.fetches).toBe(2);
  });

  it("a new kid that joins another request's refresh, begun before its key was published, asks the issuer itself once the cooldown allows", async () => {
    // The k2 token joins 1.5 s after the refresh began: past the 1 s cooldown.
    const { w, second } = await newKidJoinsRefreshBeforeUse(1);
    expect(second).toMatchObject({ ok: true, source: "fetch" });
    expect(w.issuer.fetches).toBe(3);
  });
});
