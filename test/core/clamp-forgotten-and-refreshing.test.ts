// A clamp's guard outlives the counter it cut back (a counter made anew under the same id takes
// back no charge made before it), and jwks_unavailable's Retry-After is never longer than until
// this isolate asks again. Every clock is injected.
import { describe, expect, it } from "vitest";
import { IssuerKeyStore, type KeyLookup, type KeyValueStore } from "../../src/core/jwks/key-store";
import { type CounterRequest, CounterTable } from "../../src/core/limits";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { makeKey } from "../support/issuers";

const T0 = 1_800_000_000_000;

// ─── Limiter: a clamp's guard must outlive the counter being forgotten ─────────────────

describe("limiter: a charge cut off by a clamp gives nothing back, even after the counter was forgotten", () => {
  // A tenant override shortened u's window from an hour to a second.
  const long: CounterRequest = { id: '["user","u"]', limit: 1, windowS: 3600 };
  const short: CounterRequest = { id: '["user","u"]', limit: 1, windowS: 1 };

  it("clamp, sweep (the flush drops the expired counter), new charge, then the pre-clamp give-back: still refused", () => {
    const table = new CounterTable();
    const a = table.acquire([long], T0); // charged under the hour-long window
    expect(a.allowed).toBe(true);
    expect(table.acquire([short], T0 + 10).allowed).toBe(false); // clamped to full (1 s)
    table.sweep(T0 + 1100); // the clamped counter has drained: forgotten (with its clamp)
    const c = table.acquire([short], T0 + 1100);
    expect(c.allowed).toBe(true); // the only slot of this second
    // a's request is refused by its other object (1.2 s later): given back.
    table.release([long], a.at, a.epoch, T0 + 1200);
    // a's charge was cut away by the clamp: giving it back must not erase c's.
    expect(table.acquire([short], T0 + 1300).allowed).toBe(false);
  });

  it("clamp, a post-clamp charge given back (empties the counter), new charge, then the pre-clamp give-back: still refused", () => {
    const table = new CounterTable();
    const a = table.acquire([long], T0);
    expect(a.allowed).toBe(true);
    expect(table.acquire([short], T0 + 10).allowed).toBe(false); // clamp
    const b = table.acquire([short], T0 + 1500);
    expect(b.allowed).toBe(true);
    table.release([short], b.at, b.epoch, T0 + 1501); // refunded to nothing: #forget
    const c = table.acquire([short], T0 + 1502);
    expect(c.allowed).toBe(true);
    table.release([long], a.at, a.epoch, T0 + 1503); // 1.5 s after a: a give-back in time
    expect(table.acquire([short], T0 + 1504).allowed).toBe(false);
  });

  it("one rate, clock stepped back: clamp, sweep, new charge, then the give-back of the charge decided before the step: still refused", () => {
    const c1: CounterRequest = { id: '["tenant","t"]', limit: 1, windowS: 1 };
    const table = new CounterTable();
    const a = table.acquire([c1], T0 + 10_000);
    expect(a.allowed).toBe(true);
    // The clock steps back 5 s: the counter is more than a window ahead, cut back to full.
    expect(table.acquire([c1], T0 + 5_000).allowed).toBe(false);
    table.sweep(T0 + 6_000); // drained by the stepped-back clock: forgotten
    const c = table.acquire([c1], T0 + 6_001);
    expect(c.allowed).toBe(true);
    table.release([c1], a.at, a.epoch, T0 + 6_002);
    expect(table.acquire([c1], T0 + 6_003).allowed).toBe(false);
  });

  it("a clamp on another counter, once that counter is forgotten, voids an earlier charge's give-back (whose clamp it was is no longer known)", () => {
    const a: CounterRequest = { id: '["user","a"]', limit: 2, windowS: 60 };
    const table = new CounterTable();
    const charged = table.acquire([a], T0);
    expect(charged.allowed).toBe(true);
    table.acquire([long], T0 + 5);
    expect(table.acquire([short], T0 + 10).allowed).toBe(false); // u clamped
    table.sweep(T0 + 1100); // u drained: forgotten, with its clamp
    table.release([a], charged.at, charged.epoch, T0 + 1200);
    // a keeps its charge (towards refusing): one slot left, not two.
    expect(table.acquire([a], T0 + 1300).allowed).toBe(true);
    expect(table.acquire([a], T0 + 1300).allowed).toBe(false);
  });

  it("a charge made after the clamp is still given back (the guard is per charge time)", () => {
    const table = new CounterTable();
    table.acquire([long], T0);
    table.acquire([short], T0 + 10); // clamp
    const b = table.acquire([short], T0 + 1500);
    expect(b.allowed).toBe(true);
    table.release([short], b.at, b.epoch, T0 + 1501);
    expect(table.acquire([short], T0 + 1502).allowed).toBe(true);
  });
});

// ─── jwks_unavailable's Retry-After ───────────────────────────────────────────────────

const ISSUER = "https://idp.test";
const JWKS_URI = "https://idp.test/jwks";
const STAMP_KEY = `jwks-refresh:v1:${ISSUER} ${JWKS_URI}`;

/** A published ES256 key (the shared test helper's). */
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

function storeWith(settings: Partial<OidcIssuerConfig>, fetcher: () => Promise<Response>) {
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
  const store = new IssuerKeyStore(policy.issuers.get("idp")!, { fetch: fetcher, kv, now: () => clock.ms });
  const pending: Promise<unknown>[] = [];
  const lookup = async (kid: string): Promise<KeyLookup> => {
    const result = await store.lookup(kid, "ES256", (p) => pending.push(p));
    await Promise.allSettled(pending.splice(0));
    return result;
  };
  return { store, clock, kv, lookup };
}

describe("jwks_unavailable Retry-After: no longer than until this isolate asks again", () => {
  it("an unknown kid while another isolate's stamp holds: jwks_refreshing, also in the set's last stretch before its TTL; asked once the stamp has run out", async () => {
    const good = await publicJwk("k1");
    const { clock, kv, lookup, store } = storeWith(
      { refresh_cooldown_s: 60, cache_ttl_s: 300, max_stale_s: 600 },
      async () => Response.json({ keys: [good] }),
    );
    expect((await lookup("k1")).ok).toBe(true); // fetched at T0
    // Another isolate asked the issuer at T0 + 250 s.
    kv.data.set(STAMP_KEY, String(T0 + 250_000));
    clock.ms = T0 + 260_000;
    const unknown = await lookup("k2");
    expect(unknown).toMatchObject({ ok: false, detail: "jwks_refreshing" });
    // Retry-After: the rest of that isolate's cooldown (50 s), not a whole one.
    expect(unknown.ok ? 0 : unknown.retryAfterS).toBe(50);
    // Within 30 s of the TTL (a tenth of it) the set is refreshed after the response; for an
    // unknown kid that refresh obeys the stamp too, so a kid buys no fetch.
    clock.ms = T0 + 285_000;
    expect(await lookup("k2")).toMatchObject({ ok: false, detail: "jwks_refreshing" });
    expect(store.stats.fetches).toBe(1);
    // Once the stamp has run out, the issuer's own answer, which lacks k2, decides.
    clock.ms = T0 + 311_000;
    expect(await lookup("k2")).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(store.stats.fetches).toBe(2);
  });

  it("own failure while the set still serves counts from the attempt; value an integer in 1…cooldown", async () => {
    const good = await publicJwk("k1");
    let fail = false;
    const { clock, lookup } = storeWith({ refresh_cooldown_s: 30, cache_ttl_s: 300 }, async () => {
      if (fail) {
        clock.ms += 1700;
        return new Response("down", { status: 503 });
      }
      return Response.json({ keys: [good] });
    });
    expect((await lookup("k1")).ok).toBe(true);
    clock.ms += 40_000;
    fail = true;
    const attemptAt = clock.ms;
    const refused = await lookup("k2");
    expect(refused).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_http_status" });
    expect(refused.ok ? 0 : refused.retryAfterS).toBe(Math.ceil((attemptAt + 30_000 - clock.ms) / 1000));
    for (let i = 0; i < 12; i++) {
      clock.ms += 2500;
      const again = await lookup("k2");
      if (again.ok) break;
      expect(Number.isInteger(again.retryAfterS)).toBe(true);
      expect(again.retryAfterS).toBeGreaterThanOrEqual(1);
      expect(again.retryAfterS).toBeLessThanOrEqual(30);
    }
  });
});
