// A small world for key-store tests: isolates (IssuerKeyStores) sharing one in-memory KV, an
// issuer whose answers a test controls, and an injected clock. Where a request's wait matters,
// `elapse` moves vitest's fake setTimeout in step with the clock (withDeadline's bound is one).
import type { JWK } from "jose";
import { expect, vi } from "vitest";
import { IssuerKeyStore, type KeyLookup, type KeyValueStore } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { makeKey } from "./issuers";

export const T0 = 1_800_000_000_000;

export const ISSUER = "https://idp.test";
export const JWKS_URI = "https://idp.test/jwks";
export const RECORD_KEY = `jwks:v1:${ISSUER}`;
export const STAMP_KEY = `jwks-refresh:v1:${ISSUER} ${JWKS_URI}`;

/** A published ES256 key. */
export const publicJwk = async (kid: string) => (await makeKey("ES256", kid)).publicJwk;

export class MapKv implements KeyValueStore {
  readonly data = new Map<string, string>();
  async get(key: string) {
    return this.data.get(key) ?? null;
  }
  async put(key: string, value: string) {
    this.data.set(key, value);
  }
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
  /** Another isolate's refresh stamp: it asked the issuer at `at`. */
  const stamp = (at: number) => kv.data.set(STAMP_KEY, String(at));
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
  return { clock, kv, issuer, isolate, putRecord, stamp, elapse, hold };
}

/** A jwks_unavailable answer's Retry-After is a whole number of seconds in 1…cooldown. */
export const checkRetryAfter = (r: KeyLookup | undefined, cooldown: number) => {
  if (r && !r.ok && r.reason === "jwks_unavailable") {
    expect(Number.isInteger(r.retryAfterS)).toBe(true);
    expect(r.retryAfterS).toBeGreaterThanOrEqual(1);
    expect(r.retryAfterS).toBeLessThanOrEqual(cooldown);
  }
};
