// Key-set refreshes a request joins: a set past its TTL is refreshed whatever another isolate's
// stamp says, and a request that joins another's refresh counts it as its one when it timed out
// or failed, and starts its own only after one that succeeded. Every clock is injected; isolates are IssuerKeyStores sharing
// one in-memory KV. Where a request's wait matters, vitest's fake setTimeout runs in step with
// the injected clock (withDeadline's bound is a setTimeout).
import { afterEach, describe, expect, it, vi } from "vitest";
import type { JWK } from "jose";
import { IssuerKeyStore, type KeyLookup, type KeyValueStore } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { makeKey } from "../support/issuers";

const T0 = 1_800_000_000_000;
const ISSUER = "https://idp.test";
const JWKS_URI = "https://idp.test/jwks";
const RECORD_KEY = `jwks:v1:${ISSUER}`;
const STAMP_KEY = `jwks-refresh:v1:${ISSUER} ${JWKS_URI}`;

const publicJwk = async (kid: string) => (await makeKey("ES256", kid)).publicJwk;

class MapKv implements KeyValueStore {
  readonly data = new Map<string, string>();
  async get(key: string) {
    return this.data.get(key) ?? null;
  }
  async put(key: string, value: string) {
    this.data.set(key, value);
  }
}

interface Issuer {
  keys: JWK[];
  down: boolean;
  /** Every fetch from now on never answers (a Worker's cancelled I/O, a black-holed issuer). */
  hang: boolean;
  costMs: number;
  fetches: number;
  gate?: Promise<void>;
}

function world(settings: Partial<OidcIssuerConfig>) {
  const policy = compilePolicy({
    version: 1,
    issuers: {
      idp: { kind: "oidc", issuer: ISSUER, jwks_uri: JWKS_URI, audiences: ["https://api.test"], ...settings },
    },
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
  });
  const clock = { ms: T0 };
  const kv = new MapKv();
  const issuer: Issuer = { keys: [], down: false, hang: false, costMs: 0, fetches: 0 };
  const fetcher = async () => {
    issuer.fetches += 1;
    clock.ms += issuer.costMs;
    const keys = issuer.keys;
    if (issuer.hang) return new Promise<Response>(() => {});
    if (issuer.gate) await issuer.gate;
    if (issuer.down) return new Response("down", { status: 503 });
    return Response.json({ keys });
  };
  const isolate = () => {
    const store = new IssuerKeyStore(policy.issuers.get("idp")!, { fetch: fetcher, kv, now: () => clock.ms });
    /** A request: its answer, and how many fetches this isolate had made when it was answered. */
    const lookup = async (kid: string | undefined): Promise<KeyLookup & { fetchesAtAnswer: number }> => {
      const pending: Promise<unknown>[] = [];
      const result = await store.lookup(kid, "ES256", (p) => pending.push(p));
      const fetchesAtAnswer = store.stats.fetches;
      await Promise.allSettled(pending);
      return { ...result, fetchesAtAnswer };
    };
    /** A request whose deferred work is not waited for (it may never settle); `answer` once answered. */
    const start = (kid: string | undefined) => {
      const box: { answer?: KeyLookup & { fetchesAtAnswer: number } } = {};
      const done = store
        .lookup(kid, "ES256", () => {})
        .then((r) => {
          box.answer = { ...r, fetchesAtAnswer: store.stats.fetches };
          return box.answer;
        });
      return { box, done };
    };
    return { store, lookup, start };
  };
  const putRecord = (fetchedAt: number, keys: JWK[]) =>
    kv.data.set(RECORD_KEY, JSON.stringify({ v: 1, fetched_at: fetchedAt, jwks_uri: JWKS_URI, keys, retired: [] }));
  const stamp = (at: number) => kv.data.set(STAMP_KEY, String(at));
  /** Moves the injected clock and the (fake) timers together. */
  const elapse = async (ms: number) => {
    clock.ms += ms;
    await vi.advanceTimersByTimeAsync(ms);
  };
  return { clock, kv, issuer, isolate, putRecord, stamp, elapse };
}

const checkRetryAfter = (r: KeyLookup | undefined, cooldown: number) => {
  if (r && !r.ok && r.reason === "jwks_unavailable") {
    expect(Number.isInteger(r.retryAfterS)).toBe(true);
    expect(r.retryAfterS).toBeGreaterThanOrEqual(1);
    expect(r.retryAfterS).toBeLessThanOrEqual(cooldown);
  }
};

afterEach(() => {
  vi.useRealTimers();
});

describe("a request that joins another request's refresh", () => {
  it("rotation, issuer hangs: a new-kid token that joined a refresh before use that timed out is 503, not 401", async () => {
    const [k1, k2] = [await publicJwk("k1"), await publicJwk("k2")];
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, fetch_timeout_ms: 100, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "fetch" }); // fetched at T0
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    // Past the TTL. The issuer has rotated to k2 (k1 kept) and now does not answer.
    w.clock.ms = T0 + 301_000;
    w.issuer.keys = [k1, k2];
    w.issuer.hang = true;
    const first = a.start("k1"); // starts the refresh-before-use (fetch 2, never answers)
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
    const k1 = await publicJwk("k1");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 1, fetch_timeout_ms: 2000, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true }); // fetched at T0
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    w.clock.ms = T0 + 301_000;
    w.issuer.hang = true;
    const first = a.start("k1"); // refresh-before-use; the fetch never answers
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
    const k1 = await publicJwk("k1");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 1, fetch_timeout_ms: 2000, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    w.clock.ms = T0 + 301_000;
    w.issuer.down = true;
    w.issuer.costMs = 1_500;
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
    const k1 = await publicJwk("k1");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    const b = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true, source: "fetch" });
    expect(await b.lookup("k1")).toMatchObject({ ok: true, source: "kv" });
    expect(w.issuer.fetches).toBe(1);
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
    const [k1, k2] = [await publicJwk("k1"), await publicJwk("k2")];
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    w.issuer.keys = [k2];
    w.clock.ms = T0 + 301_000;
    w.stamp(w.clock.ms - 1_000);
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
    w.stamp(w.clock.ms - 1_000);
    expect(await a.lookup(undefined)).toMatchObject({ ok: true, source: "fetch" });
    expect(await a.lookup("k1")).toMatchObject({ ok: false, reason: "token_invalid" });
  });

  it("an attacker's made-up kids cost one isolate at most one fetch per cooldown, across fresh, ahead and stale windows", async () => {
    const k1 = await publicJwk("k1");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    w.clock.ms = T0 + 200_000;
    const fetchTimes: number[] = [];
    for (let i = 0; i < 400; i++) {
      w.clock.ms += 500;
      const before = w.issuer.fetches;
      checkRetryAfter(await a.lookup(`attacker-${i}`), 30);
      if (w.issuer.fetches !== before) fetchTimes.push(w.clock.ms);
    }
    for (let i = 1; i < fetchTimes.length; i++)
      expect(fetchTimes[i]! - fetchTimes[i - 1]!).toBeGreaterThanOrEqual(30_000);
  });

  it("made-up kids with another isolate stamping every few seconds and its sets in KV: one isolate never fetches more than once per cooldown", async () => {
    const k1 = await publicJwk("k1");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    const fetchTimes: number[] = [];
    for (let i = 0; i < 600; i++) {
      w.clock.ms += 1_000;
      if (i % 7 === 0) w.stamp(w.clock.ms - 500);
      if (i % 13 === 0) w.putRecord(w.clock.ms - 2_000, [k1]);
      const before = w.issuer.fetches;
      checkRetryAfter(await a.lookup(`x${i}`), 30);
      if (w.issuer.fetches !== before) fetchTimes.push(w.clock.ms);
    }
    for (let i = 1; i < fetchTimes.length; i++)
      expect(fetchTimes[i]! - fetchTimes[i - 1]!).toBeGreaterThanOrEqual(30_000);
  });

  it("rotation: a new kid that joins another request's refresh begun before its key was published is accepted once the cooldown allows its own", async () => {
    const [k1, k2] = [await publicJwk("k1"), await publicJwk("k2")];
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 1, fetch_timeout_ms: 2000, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    w.clock.ms = T0 + 301_000;
    let release: () => void = () => undefined;
    w.issuer.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = a.lookup("k1");
    await vi.waitFor(() => expect(w.issuer.fetches).toBe(2));
    w.issuer.keys = [k1, k2];
    w.clock.ms += 1_500;
    const second = a.lookup("k2");
    w.issuer.gate = undefined;
    release();
    expect(await first).toMatchObject({ ok: true });
    expect(await second).toMatchObject({ ok: true });
  });

  it("a request's own failing refresh-before-use for an unknown kid: one refresh, 503 with Retry-After in range", async () => {
    const k1 = await publicJwk("k1");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 1, max_stale_s: 86_400 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    w.clock.ms = T0 + 301_000;
    w.issuer.down = true;
    w.issuer.costMs = 1_500;
    const answer = await a.lookup("k2");
    expect(answer).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    expect(answer.fetchesAtAnswer).toBe(2);
    checkRetryAfter(answer, 1);
  });

  it("expired set with a fresh stamp: refetched, new kid accepted", async () => {
    const [k1, k2] = [await publicJwk("k1"), await publicJwk("k2")];
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, max_stale_s: 0 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    w.issuer.keys = [k2];
    w.clock.ms = T0 + 301_000;
    w.stamp(w.clock.ms - 1_000);
    expect(await a.lookup("k2")).toMatchObject({ ok: true, source: "fetch" });
  });

  it("rotation within a fresh set: the new kid is fetched and accepted (no stamp)", async () => {
    const [k1, k2] = [await publicJwk("k1"), await publicJwk("k2")];
    const w = world({ cache_ttl_s: 600, refresh_cooldown_s: 30 });
    w.issuer.keys = [k1];
    const a = w.isolate();
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
    w.clock.ms += 100_000;
    w.issuer.keys = [k1, k2];
    expect(await a.lookup("k2")).toMatchObject({ ok: true, source: "fetch" });
    expect(await a.lookup("k1")).toMatchObject({ ok: true });
  });
});
