// A clamp's guard outlives the counter it cut back (a counter made anew under the same id takes
// back no charge made before it), and jwks_unavailable's Retry-After is never longer than until
// this isolate asks again. Every clock is injected.
import { describe, expect, it } from "vitest";
import { CounterTable } from "../../src/core/limits/counter-table";
import type { CounterRequest } from "../../src/core/limits/limiter-rpc";
import { checkRetryAfter, publicJwk, T0, world } from "../support/key-store-world";

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

describe("jwks_unavailable Retry-After: no longer than until this isolate asks again", () => {
  it("an unknown kid while another isolate's stamp holds: jwks_refreshing, also in the set's last stretch before its TTL; asked once the stamp has run out", async () => {
    const w = world({ refresh_cooldown_s: 60, cache_ttl_s: 300, max_stale_s: 600 });
    w.issuer.keys = [await publicJwk("k1")];
    const { lookup, store } = w.isolate();
    expect((await lookup("k1")).ok).toBe(true); // fetched at T0
    // Another isolate asked the issuer at T0 + 250 s.
    await w.stamp(T0 + 250_000);
    w.clock.ms = T0 + 260_000;
    const unknown = await lookup("k2");
    expect(unknown).toMatchObject({ ok: false, detail: "jwks_refreshing" });
    // Retry-After: the rest of that isolate's cooldown (50 s), not a whole one.
    expect(unknown.ok ? 0 : unknown.retryAfterS).toBe(50);
    // Within 30 s of the TTL (a tenth of it) the set is refreshed after the response; for an
    // unknown kid that refresh obeys the stamp too, so a kid buys no fetch.
    w.clock.ms = T0 + 285_000;
    expect(await lookup("k2")).toMatchObject({ ok: false, detail: "jwks_refreshing" });
    expect(store.stats.fetches).toBe(1);
    // Once the stamp has run out, the issuer's own answer, which lacks k2, decides.
    w.clock.ms = T0 + 311_000;
    expect(await lookup("k2")).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(store.stats.fetches).toBe(2);
  });

  it("own failure while the set still serves counts from the attempt; value an integer in 1…cooldown", async () => {
    const w = world({ refresh_cooldown_s: 30, cache_ttl_s: 300 });
    w.issuer.keys = [await publicJwk("k1")];
    const { lookup } = w.isolate();
    expect((await lookup("k1")).ok).toBe(true);
    w.clock.ms += 40_000;
    // The issuer now answers 503, 1.7 s after it is asked.
    w.issuer.down = true;
    w.issuer.costMs = 1700;
    const attemptAt = w.clock.ms;
    const refused = await lookup("k2");
    expect(refused).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_http_status" });
    expect(refused.ok ? 0 : refused.retryAfterS).toBe(Math.ceil((attemptAt + 30_000 - w.clock.ms) / 1000));
    for (let i = 0; i < 12; i++) {
      w.clock.ms += 2500;
      const again = await lookup("k2");
      if (again.ok) break;
      checkRetryAfter(again, 30);
    }
  });
});
