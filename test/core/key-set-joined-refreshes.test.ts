// Key-set refreshes a request joins: a set past its TTL is refreshed whatever another isolate's
// stamp says; a request that joins another's refresh counts it as its one when it timed out or
// failed, and asks again itself (cooldown permitting, within its wait) after one that
// succeeded without its key. See ../support/key-store-world.ts for the world they run in.
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  checkRetryAfter,
  expectFetchesACooldownApart,
  newKidJoinsRefreshBeforeUse,
  pastTtlIssuerFailingSlowly,
  publicJwk,
  T0,
  twoWarmIsolates,
  warmIsolate,
  world,
} from "../support/key-store-world";

afterEach(() => {
  vi.useRealTimers();
});

describe("a request that joins another request's refresh", () => {
  it("rotation, issuer hangs: a new-kid token that joined a refresh before use that timed out is 503, not 401", async () => {
    const { w, a, k1, k2 } = await warmIsolate({
      cache_ttl_s: 300,
      refresh_cooldown_s: 30,
      fetch_timeout_ms: 100,
      max_stale_s: 86_400,
    });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    // Past the TTL. The issuer has rotated to k2 (k1 kept) and now does not answer.
    w.clock.ms = T0 + 301_000;
    w.issuer.keys = [k1, k2];
    w.issuer.hang = true;
    const first = a.start("k1"); // starts the refresh-before-use (fetch 2, never answers)
    await w.asked(2); // after its KV read
    await w.elapse(50);
    const second = a.start("k2"); // joins it
    // Both bounds (2 × fetch_timeout_ms = 200 ms from each request's start) pass.
    await w.elapse(250);
    expect(first.box.answer).toMatchObject({ ok: true, source: "stale" });
    // README "unknown kid": when the issuer cannot be asked (the refresh fails or times out…),
    // 503 jwks_unavailable with Retry-After rather than 401.
    const answer = await second.done;
    expect(answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    checkRetryAfter(answer, 30);
  });

  it("issuer hangs: a request joining another's refresh before use waits for no second one (at most 2 × fetch_timeout_ms)", async () => {
    const { w, a } = await warmIsolate({
      cache_ttl_s: 300,
      refresh_cooldown_s: 1,
      fetch_timeout_ms: 2000,
      max_stale_s: 86_400,
    });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    w.clock.ms = T0 + 301_000;
    w.issuer.hang = true;
    const first = a.start("k1"); // refresh-before-use; the fetch never answers
    await w.asked(2); // after its KV read
    await w.elapse(100);
    const second = a.start("k2"); // an unknown kid joins it
    // 2 × fetch_timeout_ms (4 s) after the second request arrived, plus a little.
    await w.elapse(4_000);
    await w.elapse(10);
    expect(first.box.answer).toMatchObject({ ok: true, source: "stale" });
    // README "set older than cache_ttl_s": the request waits for the refresh (at most
    // 2 × fetch_timeout_ms). The second request must have been answered by now.
    expect(second.box.answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    checkRetryAfter(second.box.answer, 1);
    await w.elapse(10_000); // let whatever is left settle
  });

  it("issuer down and slower than the cooldown: a request that joined a failed refresh before use makes no second failing fetch", async () => {
    const { a } = await pastTtlIssuerFailingSlowly({ refresh_cooldown_s: 1, fetch_timeout_ms: 2000 });
    const first = a.lookup("k1"); // refresh-before-use: fetch 2, fails after 1.5 s
    const second = a.lookup("k2"); // joins it
    expect(await first).toMatchObject({ ok: true, source: "stale" });
    const answer = await second;
    expect(answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    // README: while refreshes keep failing, later attempts run after the response; the refresh
    // this request waited for already failed: it must not make and wait for another.
    expect(answer.fetchesAtAnswer).toBe(2);
  });

  it("a made-up kid buys no fetch past the shared stamp when KV already holds another isolate's set fetched 1 s ago, the held set past its TTL", async () => {
    const { w, a, b } = await twoWarmIsolates({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    // Both sets past their TTL. A refreshes (fetch 2), stamps KV and saves its set.
    w.clock.ms = T0 + 301_000;
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "fetch" });
    expect(w.issuer.fetches).toBe(2);
    w.clock.ms += 1_000;
    // B, with a real kid, would take A's 1 s old set from KV and fetch nothing. An attacker's
    // made-up kid: README "so a made-up kid buys no fetch"; the stamp is 1 s old.
    const answer = await b.lookup("attacker-1");
    expect(answer.ok).toBe(false);
    expect(w.issuer.fetches).toBe(2);
  });
});

describe("what the refresh rules keep", () => {
  it("a set past its TTL with a fresh stamp from another isolate: a known-kid token still refetches and the withdrawn key stops (grace 0)", async () => {
    const { w, a, k2 } = await warmIsolate({
      cache_ttl_s: 300,
      refresh_cooldown_s: 30,
      rotation_grace_s: 0,
      max_stale_s: 86_400,
    });
    w.issuer.keys = [k2];
    w.clock.ms = T0 + 301_000;
    await w.stamp(w.clock.ms - 1_000);
    expect(await a.lookup("k1")).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(await a.lookup("k2")).toMatchObject({ ok: true });
    expect(w.issuer.fetches).toBe(2);
  });

  it("a token without a kid past the TTL, with a fresh stamp: refetched before use, withdrawn key gone", async () => {
    const [k1, k2] = [await publicJwk("k1"), await publicJwk("k2")];
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup(undefined)).toMatchObject({ ok: true });
    w.issuer.keys = [k2];
    w.clock.ms = T0 + 301_000;
    await w.stamp(w.clock.ms - 1_000);
    expect(await a.lookup(undefined)).toMatchObject({ ok: true, source: "fetch" });
    expect(await a.lookup("k1")).toMatchObject({ ok: false, reason: "token_invalid" });
  });

  it("an attacker's made-up kids cost one isolate at most one fetch per cooldown, across fresh, ahead and stale windows", async () => {
    const { w, a } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    w.clock.ms = T0 + 200_000;
    const fetchTimes: number[] = [];
    for (let i = 0; i < 400; i++) {
      w.clock.ms += 500;
      const before = w.issuer.fetches;
      checkRetryAfter(await a.lookup(`attacker-${i}`), 30);
      if (w.issuer.fetches !== before) fetchTimes.push(w.clock.ms);
    }
    expectFetchesACooldownApart(fetchTimes, 30_000);
  });

  /**
   * 600 s of made-up kids, one a second, against one isolate while another stamps the refresh
   * every `stampEveryS` seconds and saves its sets (without those kids) to KV every 13 s: the
   * times this isolate asked the issuer itself.
   */
  async function madeUpKidsBesideAnotherIsolate(stampEveryS: number): Promise<number[]> {
    const { w, a, k1 } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    const fetchTimes: number[] = [];
    for (let i = 0; i < 600; i++) {
      w.clock.ms += 1_000;
      if (i % stampEveryS === 0) await w.stamp(w.clock.ms - 500);
      if (i % 13 === 0) await w.putRecord(w.clock.ms - 2_000, [k1]);
      const before = w.issuer.fetches;
      checkRetryAfter(await a.lookup(`x${i}`), 30);
      if (w.issuer.fetches !== before) fetchTimes.push(w.clock.ms);
    }
    return fetchTimes;
  }

  it("made-up kids with another isolate stamping every few seconds and its sets in KV: one isolate never fetches", async () => {
    // The other isolate's stamp is never more than 8 s old and the set it saved never more than
    // 15 s: a set past its TTL is refreshed from KV, and a made-up kid buys no fetch.
    expect(await madeUpKidsBesideAnotherIsolate(7)).toEqual([]);
  });

  it("made-up kids with another isolate stamping less often than the cooldown and its sets in KV: one isolate fetches, never more than once per cooldown", async () => {
    // Between the other isolate's stamps (every 97 s) the stamp goes stale and this isolate asks
    // the issuer itself (the sets in KV lack the kid): now its own cooldown holds it back, now
    // the other isolate's stamp.
    const fetchTimes = await madeUpKidsBesideAnotherIsolate(97);
    expectFetchesACooldownApart(fetchTimes, 30_000);
  });

  it("expired set with a fresh stamp: refetched, new kid accepted", async () => {
    const { w, a, k2 } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 0 });
    w.issuer.keys = [k2];
    w.clock.ms = T0 + 301_000;
    await w.stamp(w.clock.ms - 1_000);
    expect(await a.lookup("k2")).toMatchObject({ ok: true, source: "fetch" });
  });

  it("rotation within a fresh set: the new kid is fetched and accepted (no stamp)", async () => {
    const { w, a, k1, k2 } = await warmIsolate({ cache_ttl_s: 600, refresh_cooldown_s: 30 });
    w.clock.ms += 100_000;
    w.issuer.keys = [k1, k2];
    expect(await a.lookup("k2")).toMatchObject({ ok: true, source: "fetch" });
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
  });
});

describe("a request that joins a refresh that succeeded without its key", () => {
  it("fresh set: a new-kid token that joins another request's unknown-kid refresh begun before its key was published asks again once the cooldown allows (not 401)", async () => {
    const { w, a, k1, k2 } = await warmIsolate({
      cache_ttl_s: 600,
      refresh_cooldown_s: 1,
      fetch_timeout_ms: 2000,
      max_stale_s: 86_400,
    });
    w.clock.ms = T0 + 100_000; // set fresh, stamp old
    const release = w.hold();
    const first = a.lookup("k9"); // unknown kid: refresh N, its fetch answered with [k1]
    await vi.waitFor(() => expect(w.issuer.fetches).toBe(2));
    w.issuer.keys = [k1, k2]; // the issuer publishes k2 while N is out
    w.clock.ms += 1_500; // more than the cooldown since N began
    const second = a.lookup("k2"); // joins N
    release();
    await first;
    // README "unknown kid": a request that joined another request's refresh ... asks again
    // itself, cooldown permitting, after one that succeeded without its key.
    expect(await second).toMatchObject({ ok: true });
  });

  it("set in its last tenth: a new-kid token that joins the refresh-ahead begun before its key was published asks again once the cooldown allows (not 401)", async () => {
    const { w, a, k1, k2 } = await warmIsolate({
      cache_ttl_s: 300,
      refresh_cooldown_s: 1,
      fetch_timeout_ms: 2000,
      max_stale_s: 86_400,
    });
    w.clock.ms = T0 + 280_000; // last tenth of the TTL
    const release = w.hold();
    const first = a.start("k1"); // answered at once; refresh-ahead after the response (gated)
    await vi.waitFor(() => expect(w.issuer.fetches).toBe(2));
    w.issuer.keys = [k1, k2];
    w.clock.ms += 1_500;
    const second = a.start("k2"); // joins the refresh-ahead
    release();
    expect(await first.done).toMatchObject({ ok: true });
    expect(await second.done).toMatchObject({ ok: true });
  });

  it("set past its TTL: a new-kid request that joined a refresh-before-use which succeeded without its key waits no more than 2 × fetch_timeout_ms in all", async () => {
    const { w, a, k1, k2 } = await warmIsolate({
      cache_ttl_s: 300,
      refresh_cooldown_s: 1,
      fetch_timeout_ms: 2000,
      max_stale_s: 86_400,
    });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    w.clock.ms = T0 + 301_000;
    const release = w.hold();
    const first = a.start("k1"); // refresh-before-use, fetch 2 held (answers [k1])
    // The refresh reads the real KV first: once the issuer is asked, no KV read is left for
    // the fake timers to cut short.
    await w.asked(2);
    await w.elapse(100);
    expect(w.issuer.fetches).toBe(2);
    w.issuer.keys = [k1, k2];
    w.issuer.hang = true; // every later fetch never answers
    const second = a.start("k2"); // joins it, at +100 ms
    await w.elapse(1_400); // +1.5 s: past the 1 s cooldown
    release();
    // 2 × fetch_timeout_ms (4 s) after the second request arrived, plus a little.
    await w.elapse(2_600);
    await w.elapse(10);
    expect(first.box.answer).toMatchObject({ ok: true });
    // README "set older than cache_ttl_s": the request waits for the refresh (at most
    // 2 × fetch_timeout_ms). It must have been answered by now (503: the issuer hangs).
    expect(second.box.answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    checkRetryAfter(second.box.answer, 1);
    await w.elapse(10_000);
  });
});

describe("joined refreshes: what holds", () => {
  it("a joined refresh that failed: the new-kid token is 503 with Retry-After in range, no second fetch", async () => {
    const { w, a } = await warmIsolate({
      cache_ttl_s: 600,
      refresh_cooldown_s: 30,
      fetch_timeout_ms: 2000,
      max_stale_s: 86_400,
    });
    w.clock.ms = T0 + 100_000;
    w.issuer.down = true;
    const release = w.hold();
    const first = a.lookup("k9");
    await vi.waitFor(() => expect(w.issuer.fetches).toBe(2));
    const second = a.lookup("k2");
    release();
    const [r1, r2] = [await first, await second];
    expect(r1).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    expect(r2).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    checkRetryAfter(r2, 30);
    expect(w.issuer.fetches).toBe(2);
  });

  it("a joined refresh-before-use that took a fresh KV set fetched more than a cooldown ago, lacking the kid: 503 refreshing, Retry-After 1, then accepted", async () => {
    const { w, a, k1, k2 } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    w.clock.ms = T0 + 301_000;
    await w.putRecord(T0 + 200_000, [k1]); // another isolate's set, 101 s old
    await w.stamp(T0 + 200_000);
    w.issuer.keys = [k1, k2];
    const first = a.start("k1");
    const second = a.start("k2");
    expect(await first.done).toMatchObject({ ok: true, source: "kv" });
    const r = await second.done;
    expect(r).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_refreshing", retryAfterS: 1 });
    w.clock.ms += 1_000;
    expect(await a.lookup("k2")).toMatchObject({ ok: true });
    expect(w.issuer.fetches).toBe(2);
  });

  it("a joined refresh-before-use skipped on another isolate's stamp (KV set fresh, lacks the kid): 503 with Retry-After within the stamp's cooldown", async () => {
    const { w, a, k1, k2 } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    w.clock.ms = T0 + 301_000;
    await w.putRecord(T0 + 200_000, [k1]);
    await w.stamp(w.clock.ms - 5_000); // another isolate is fetching now
    w.issuer.keys = [k1, k2];
    const first = a.start("k8"); // stale refresh for k8: KV set fresh, lacks it, stamp holds
    const second = a.start("k2");
    const [r1, r2] = [await first.done, await second.done];
    expect(r1).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    expect(r2).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    checkRetryAfter(r2, 30);
    expect(w.issuer.fetches).toBe(1);
  });

  it("joined successful refresh, cooldown still running: kid_unknown (README: the fetched set is the issuer's answer; ask again only cooldown permitting)", async () => {
    const { w, a, second } = await newKidJoinsRefreshBeforeUse(30);
    expect(second).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(w.issuer.fetches).toBe(2);
    w.clock.ms += 30_000;
    expect(await a.lookup("k2")).toMatchObject({ ok: true });
  });

  it("withdrawn key, grace 0: a made-up kid on a set past its TTL whose refresh took a fresh KV set and was skipped on a stamp stops the withdrawn key", async () => {
    const [k1, kw] = [await publicJwk("k1"), await publicJwk("kw")];
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0, max_stale_s: 86_400 });
    w.issuer.keys = [k1, kw];
    const a = w.isolate();
    expect(await a.lookup("kw")).toMatchObject({ ok: true });
    w.clock.ms = T0 + 301_000;
    await w.putRecord(T0 + 290_000, [k1]); // another isolate saw kw withdrawn
    await w.stamp(w.clock.ms - 2_000);
    w.issuer.keys = [k1];
    const first = a.start("made-up");
    const second = a.start("kw");
    expect((await first.done).ok).toBe(false);
    // Not accepted: 503 jwks_refreshing while the stamp's answer has not arrived (README), never ok.
    const r = await second.done;
    expect(r.ok).toBe(false);
    checkRetryAfter(r, 30);
    w.clock.ms += 30_000;
    expect(await a.lookup("kw")).toMatchObject({ ok: false, reason: "token_invalid" });
    expect(w.issuer.fetches).toBe(2);
  });

  it("made-up kids from many joined requests, sets going stale and fresh KV sets appearing: one isolate fetches at most once per cooldown, Retry-After in range", async () => {
    const { w, a, k1 } = await warmIsolate({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    const fetchTimes: number[] = [];
    for (let i = 0; i < 900; i++) {
      w.clock.ms += 1_000;
      if (i % 23 === 0) await w.stamp(w.clock.ms - 300);
      if (i % 37 === 0) await w.putRecord(w.clock.ms - 290_000 + (i % 3) * 5_000, [k1]);
      const before = w.issuer.fetches;
      const batch = [a.start(i % 5 === 0 ? "k1" : `x${i}`), a.start(`y${i}`), a.start(undefined)];
      for (const r of batch) checkRetryAfter(await r.done, 30);
      if (w.issuer.fetches !== before) fetchTimes.push(w.clock.ms);
    }
    expectFetchesACooldownApart(fetchTimes, 30_000);
  });

  it("a clock stepped back while a new-kid request waits on a joined refresh: its own refresh is still bounded by 2 × fetch_timeout_ms", async () => {
    const { w, a, k1, k2 } = await warmIsolate({
      cache_ttl_s: 600,
      refresh_cooldown_s: 1,
      fetch_timeout_ms: 2000,
      max_stale_s: 86_400,
    });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    w.clock.ms = T0 + 100_000; // set fresh
    const release = w.hold();
    const first = a.start("k9"); // unknown kid: refresh N, held
    await w.asked(2); // after its KV reads (set, stamp)
    await w.elapse(10);
    expect(w.issuer.fetches).toBe(2);
    w.issuer.keys = [k1, k2];
    const second = a.start("k2"); // joins N; its waitEnds = now + 4 s
    await w.elapse(100);
    // The host clock steps back 60 s (an NTP correction), which ends the cooldown.
    w.clock.ms -= 60_000;
    w.issuer.hang = true; // every later fetch never answers (cancelled I/O)
    release(); // N answers [k1]: succeeded without k2; R asks again itself (N+1 hangs)
    await w.elapse(10);
    // 2 × fetch_timeout_ms after the second request arrived, and a little more.
    await w.elapse(3_900);
    await w.elapse(100);
    expect((first.box.answer as { ok: boolean } | undefined)?.ok).toBe(false);
    // README: a request waits for a refresh at most 2 × fetch_timeout_ms.
    expect(second.box.answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    checkRetryAfter(second.box.answer, 1);
    await w.elapse(70_000); // let everything settle
  });
});
