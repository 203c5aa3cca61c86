// A small world for key-store tests: isolates (IssuerKeyStores) sharing the local runtime's real
// KV namespace, an issuer whose answers a test controls, and an injected clock. The issuer stays
// scripted and the clock injected: the refresh rules are about times (TTL, cooldown, stamps) a
// real server cannot be made to keep to an injected clock. Where a request's wait matters,
// `elapse` moves vitest's fake setTimeout in step with the clock (withDeadline's bound is one).
// A KV read is bounded by such a timer too, and real KV answers in real time: wait for the event
// that follows the reads (`asked`: the issuer asked) before elapsing, or a read may be cut short.
import { env } from "cloudflare:workers";
import type { JWK } from "jose";
import { expect, vi } from "vitest";
import { IssuerKeyStore, type KeyLookup } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { makeKey } from "./issuers";
import { settleDeferred } from "./waiting";

export const T0 = 1_800_000_000_000;

/**
 * The runtime's KV namespace. The test runner gives no per-test storage (a key written by one
 * test is read by the next), so every world has an issuer, and so KV keys, of its own.
 */
export const kv = (env as unknown as { JWKS_CACHE: KVNamespace }).JWKS_CACHE;

/** A published ES256 key. */
export const publicJwk = async (kid: string) => (await makeKey("ES256", kid)).publicJwk;

/** An issuer URL no other world (in this file or another) shares, and its configured jwks_uri. */
export function uniqueIssuer() {
  const issuer = `https://${crypto.randomUUID()}.idp.test`;
  return { issuer, jwksUri: `${issuer}/jwks` };
}

/** The KV record an issuer's key sets are saved under, read back (null: none). */
export async function readRecord(issuer: string): Promise<Record<string, unknown> | null> {
  return JSON.parse((await kv.get(`jwks:v1:${issuer}`)) ?? "null");
}

/**
 * What the issuer answers: a set of keys, or a failure (`down`: 503), or nothing ever (`hang`);
 * `costMs` advances the clock per fetch; `gate` holds answers (see `hold`).
 */
export interface Issuer {
  keys: JWK[];
  down: boolean;
  hang: boolean;
  costMs: number;
  fetches: number;
  gate?: Promise<void>;
}

export function world(settings: Partial<OidcIssuerConfig>) {
  const { issuer: issuerUrl, jwksUri } = uniqueIssuer();
  const recordKey = `jwks:v1:${issuerUrl}`;
  const stampKey = `jwks-refresh:v1:${issuerUrl} ${jwksUri}`;
  const policy = compilePolicy({
    version: 1,
    issuers: {
      idp: { kind: "oidc", issuer: issuerUrl, jwks_uri: jwksUri, audiences: ["https://api.test"], ...settings },
    },
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
  });
  const resolved = policy.issuers.get("idp")!;
  const clock = { ms: T0 };
  const issuer: Issuer = { keys: [], down: false, hang: false, costMs: 0, fetches: 0 };
  const waiting: { fetches: number; resolve: () => void }[] = [];
  const fetcher = async () => {
    issuer.fetches += 1;
    for (const waiter of waiting.filter((w) => w.fetches <= issuer.fetches)) {
      waiting.splice(waiting.indexOf(waiter), 1);
      waiter.resolve();
    }
    clock.ms += issuer.costMs;
    const keys = issuer.keys;
    if (issuer.hang) return new Promise<Response>(() => {});
    if (issuer.gate) await issuer.gate;
    if (issuer.down) return new Response("down", { status: 503 });
    return Response.json({ keys });
  };
  const isolate = () => {
    const store = new IssuerKeyStore(resolved, { fetch: fetcher, kv, now: () => clock.ms });
    /** A request: its answer, and how many fetches this isolate had made when it was answered. */
    const lookup = async (kid: string | undefined): Promise<KeyLookup & { fetchesAtAnswer: number }> => {
      const pending: Promise<unknown>[] = [];
      const result = await store.lookup(kid, "ES256", (p) => pending.push(p));
      const fetchesAtAnswer = store.stats.fetches;
      await settleDeferred(pending);
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
  // Written as another isolate's key store writes them (KV takes no expirationTtl below 60 s).
  /** Another isolate's saved set, fetched at `at` (`extra`: more members, e.g. `leaked`). */
  const putRecord = (fetchedAt: number, keys: JWK[], extra: Record<string, unknown> = {}) =>
    kv.put(recordKey, JSON.stringify({ v: 1, fetched_at: fetchedAt, jwks_uri: jwksUri, keys, retired: [], ...extra }), {
      expirationTtl: Math.max(60, resolved.cacheTtlS + resolved.maxStaleS),
    });
  /** Another isolate's refresh stamp: it asked the issuer at `at`. */
  const stamp = (at: number) =>
    kv.put(stampKey, String(at), { expirationTtl: Math.max(60, resolved.refreshCooldownS) });
  /** The set saved in KV, as the key stores wrote it (null: none). */
  const record = () => readRecord(issuerUrl);
  /**
   * Resolves once the issuer has been asked `fetches` times in all. Unlike vi.waitFor, which
   * moves fake timers on each check, it leaves fake time where it is.
   */
  const asked = (fetches: number) =>
    new Promise<void>((resolve) => {
      if (issuer.fetches >= fetches) resolve();
      else waiting.push({ fetches, resolve });
    });
  /** Moves the injected clock and the (fake) timers together. */
  const elapse = async (ms: number) => {
    clock.ms += ms;
    await vi.advanceTimersByTimeAsync(ms);
  };
  /** Holds the issuer's answers (the keys as they were when asked) until `release`. */
  const hold = () => {
    let release: () => void = () => undefined;
    issuer.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    return () => {
      issuer.gate = undefined;
      release();
    };
  };
  return { issuerUrl, jwksUri, clock, issuer, isolate, putRecord, stamp, record, asked, elapse, hold };
}

/** A jwks_unavailable answer's Retry-After is a whole number of seconds in 1…cooldown. */
export const checkRetryAfter = (r: KeyLookup | undefined, cooldown: number) => {
  if (r && !r.ok && r.reason === "jwks_unavailable") {
    expect(Number.isInteger(r.retryAfterS)).toBe(true);
    expect(r.retryAfterS).toBeGreaterThanOrEqual(1);
    expect(r.retryAfterS).toBeLessThanOrEqual(cooldown);
  }
};

/**
 * A world whose issuer publishes k1, and an isolate `a` that fetched it at T0 (fetch 1) and saved
 * it to KV (`first`: that answer). k2 is a key the issuer has not published yet.
 */
export async function warmIsolate(settings: Partial<OidcIssuerConfig>) {
  const [k1, k2] = [await publicJwk("k1"), await publicJwk("k2")];
  const w = world(settings);
  w.issuer.keys = [k1];
  const a = w.isolate();
  const first = await a.lookup("k1");
  expect(first).toMatchObject({ ok: true, source: "fetch" });
  return { w, a, k1, k2, first };
}

/** A warm isolate `a` (see warmIsolate), and an isolate `b` that took a's set from KV 1 s later. */
export async function twoWarmIsolates(settings: Partial<OidcIssuerConfig>) {
  const warm = await warmIsolate(settings);
  const b = warm.w.isolate();
  warm.w.clock.ms += 1000;
  expect(await b.lookup("k1")).toMatchObject({ ok: true, source: "kv" });
  expect(warm.w.issuer.fetches).toBe(1);
  return { ...warm, b };
}

/**
 * A warm isolate (see warmIsolate; cache_ttl_s 300) whose set is past its TTL, while the issuer
 * answers 503 after 1.5 s (within the default fetch_timeout_ms of 2 s): a refresh before use fails.
 */
export async function pastTtlIssuerFailingSlowly(settings: Partial<OidcIssuerConfig>) {
  const warm = await warmIsolate({ cache_ttl_s: 300, max_stale_s: 86_400, ...settings });
  warm.w.clock.ms = T0 + 301_000;
  warm.w.issuer.down = true;
  warm.w.issuer.costMs = 1_500;
  return warm;
}

/**
 * Past the TTL (300 s), a k1 request starts a warm isolate's refresh before use, held at the
 * issuer; k2 is published and, 1.5 s on, a k2 request joins that refresh; then the issuer answers
 * (with k1 and k2). `second`: the k2 request's answer.
 */
export async function newKidJoinsRefreshBeforeUse(refreshCooldownS: number) {
  const warm = await warmIsolate({
    cache_ttl_s: 300,
    refresh_cooldown_s: refreshCooldownS,
    fetch_timeout_ms: 2000,
    max_stale_s: 86_400,
  });
  const { w, a, k1, k2 } = warm;
  w.clock.ms = T0 + 301_000;
  const release = w.hold();
  const first = a.lookup("k1");
  await vi.waitFor(() => expect(w.issuer.fetches).toBe(2));
  w.issuer.keys = [k1, k2];
  w.clock.ms += 1_500;
  const second = a.lookup("k2");
  release();
  expect(await first).toMatchObject({ ok: true });
  return { ...warm, second: await second };
}

/** The issuer was asked at least twice (so the bound is not vacuous), never twice within `cooldownMs`. */
export function expectFetchesACooldownApart(fetchTimes: number[], cooldownMs: number) {
  expect(fetchTimes.length).toBeGreaterThanOrEqual(2);
  for (let i = 1; i < fetchTimes.length; i++)
    expect(fetchTimes[i]! - fetchTimes[i - 1]!).toBeGreaterThanOrEqual(cooldownMs);
}
