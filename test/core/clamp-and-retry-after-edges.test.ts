// Edges of the limiter's clamp and give-backs (clock steps, shortened windows, splices), of
// cookie names with nothing escaped, and of jwks_unavailable's Retry-After. Every clock is
// injected.
import { describe, expect, it } from "vitest";
import { IssuerKeyStore, type KeyLookup } from "../../src/core/jwks/key-store";
import { lenientName } from "../../src/core/lenient-name";
import { CounterTable } from "../../src/core/limits/counter-table";
import { type AcquireResult, type CounterRequest, HOLD_MS } from "../../src/core/limits/limiter-rpc";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { makeKey } from "../support/issuers";
import { kv, uniqueIssuer } from "../support/key-store-world";
import { settleDeferred } from "../support/waiting";

const T0 = 1_800_000_000_000;

function rng(seed: number) {
  return () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed / 2_147_483_648;
  };
}

// ─── Limiter ──────────────────────────────────────────────────────────

describe("limiter: release settles due holds first", () => {
  it("a hold given back within HOLD_MS after the clock stepped back a little is still given back", () => {
    // A hold not given back within 2 seconds is charged for good; this one is given back
    // 500 ms (by the object's clock, stepped back) after it was decided: not yet due, so the
    // give-back (which first charges the holds due) gives it back.
    const c: CounterRequest = { id: "c", limit: 1, windowS: 60 };
    const table = new CounterTable();
    const held = table.acquire([c], T0 + 1000, HOLD_MS);
    expect(held.allowed).toBe(true);
    table.release([c], held.at, held.epoch, T0 + 500, held.seq); // clock 500 ms behind the decision
    // Nothing kept: the slot is free again.
    expect(table.acquire([c], T0 + 600).allowed).toBe(true);
  });
});

describe("limiter: a clamp is the counter's own", () => {
  it("a clamp of one counter does not void the refund of a charge on another, untouched counter", () => {
    // A clamp (user b's first request after a tenant override shortened its window) voids the
    // give-backs of charges made before it on that counter only: user a's counter never
    // changed, and a's refused request is given back.
    const a: CounterRequest = { id: '["user","a"]', limit: 2, windowS: 60 };
    const table = new CounterTable();
    // b was charged under a one-hour window; the tenant override then shortened it to a minute.
    expect(table.acquire([{ id: '["user","b"]', limit: 1, windowS: 3600 }], T0).allowed).toBe(true);
    const charged = table.acquire([a], T0 + 10);
    expect(charged.allowed).toBe(true);
    // b's next request (refused, or not) clamps b.
    table.acquire([{ id: '["user","b"]', limit: 1, windowS: 60 }], T0 + 15);
    // a's request is refused anyway (its other limit timed out, on_error deny): given back.
    table.release([a], charged.at, charged.epoch, T0 + 20);
    // Refunded by its cost less 10 ms: a has (almost) both slots, so two more are admitted.
    expect(table.acquire([a], T0 + 30).allowed).toBe(true);
    expect(table.acquire([a], T0 + 30).allowed).toBe(true);
  });
});

describe("limiter: give-backs and clamps", () => {
  it("a give-back (splice + early stop) leaves exactly the counters of never having held it: mixed rates, dens, duplicates, idle gaps", () => {
    // Differential: table A takes every hold and gives some back before due; table B only ever
    // takes the holds A kept. After settling both, every counter must be identical. Rates vary
    // per call on one id (different dens: rescale rounding), calls repeat an id (one hold's
    // entries are adjacent), and gaps let chains rejoin (the early stop).
    const random = rng(20261129);
    let valid = 0;
    const failures: string[] = [];
    for (let run = 0; run < 400 && failures.length < 5; run++) {
      const ids = ["a", "b", '["tenant","t"]'];
      const calls: { now: number; items: CounterRequest[] }[] = [];
      const releases: { now: number; call: number }[] = [];
      let now = T0;
      // Schedule first.
      for (let step = 0; step < 40; step++) {
        now += Math.floor(random() * random() * 700);
        const open = calls
          .map((c, i) => ({ c, i }))
          .filter(({ c, i }) => c.now + HOLD_MS > now && !releases.some((r) => r.call === i));
        if (open.length > 0 && random() < 0.35) {
          releases.push({ now, call: open[Math.floor(random() * open.length)]!.i });
          continue;
        }
        const n = 1 + Math.floor(random() * 3);
        const items: CounterRequest[] = [];
        for (let k = 0; k < n; k++) {
          const id = items.length > 0 && random() < 0.35 ? items[0]!.id : ids[Math.floor(random() * ids.length)]!;
          items.push({
            id,
            limit: [7, 12, 13, 40, 97][Math.floor(random() * 5)]!,
            windowS: 1 + Math.floor(random() * 3),
            cost: 1 + Math.floor(random() * 2),
          });
        }
        calls.push({ now, items });
      }
      const released = new Set(releases.map((r) => r.call));
      // Table A: all holds, some given back.
      const A = new CounterTable();
      const results: AcquireResult[] = [];
      let refused = false;
      const timeline = [
        ...calls.map((c, i) => ({ now: c.now, kind: "acquire" as const, i })),
        ...releases.map((r) => ({ now: r.now, kind: "release" as const, i: r.call })),
      ].sort((x, y) => x.now - y.now || (x.kind === y.kind ? x.i - y.i : x.kind === "acquire" ? -1 : 1));
      for (const e of timeline) {
        if (e.kind === "acquire") {
          const r = A.acquire(calls[e.i]!.items, e.now, HOLD_MS);
          refused ||= !r.allowed;
          results[e.i] = r;
        } else {
          const r = results[e.i]!;
          A.release(calls[e.i]!.items, r.at, r.epoch, e.now, r.seq);
        }
      }
      const B = new CounterTable();
      calls.forEach((c, i) => {
        if (released.has(i)) return;
        refused ||= !B.acquire(c.items, c.now, HOLD_MS).allowed;
      });
      if (refused) continue;
      valid++;
      const later = now + 10 * HOLD_MS;
      A.settleHolds(later);
      B.settleHolds(later);
      for (const id of ids) {
        const x = A.get(id);
        const y = B.get(id);
        if (JSON.stringify(x) !== JSON.stringify(y))
          failures.push(`run ${run} ${id}: ${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
      }
    }
    expect(failures).toEqual([]);
    expect(valid).toBeGreaterThan(100);
  });

  it("after a window shortened by an override, the counter is clamped once, not on every call", () => {
    const table = new CounterTable();
    expect(table.acquire([{ id: "u", limit: 1, windowS: 3600 }], T0).allowed).toBe(true);
    const short: CounterRequest = { id: "u", limit: 1, windowS: 60 };
    const first = table.acquire([short], T0 + 1);
    expect(first.allowed).toBe(false);
    expect(first.counters[0]!.retryAfterMs).toBeLessThanOrEqual(60_000);
    const epochs = new Set<number>();
    for (let t = 2; t < 2000; t += 97) epochs.add(table.acquire([short], T0 + t).epoch!);
    expect(epochs.size).toBe(1);
    expect(epochs.has(first.epoch!)).toBe(true);
    // Full for one window from the clamp, then admitted again.
    expect(table.acquire([short], T0 + 1 + 60_000).allowed).toBe(true);
  });

  it("a hold given back after a clamp of another counter still gives back exactly (hold epochs are the hold's own)", () => {
    const table = new CounterTable();
    const c: CounterRequest = { id: '["tenant","t"]', limit: 1, windowS: 60 };
    const held = table.acquire([c], T0, HOLD_MS);
    table.acquire([{ id: "u", limit: 1, windowS: 3600 }], T0);
    table.acquire([{ id: "u", limit: 1, windowS: 60 }], T0 + 5); // a clamp of another counter
    table.release([c], held.at, held.epoch, T0 + 10, held.seq);
    expect(table.acquire([c], T0 + 20).allowed).toBe(true);
  });
});

// ─── Cookie names ──────────────────────────────────────────────────────────────

describe("cookie names with nothing escaped", () => {
  it("names without % read as they did before the early return (+, İ, ı, BOM, index, Latin-1 and astral characters)", () => {
    // Reference: the full path (escape each non-ASCII run as UTF-8, unescape, decode), which
    // for a name without `%` is the identity except for lone surrogates (no header carries one).
    const before = (raw: string, plusIsSpace: boolean) => {
      const name = plusIsSpace ? raw.replace(/\+/g, " ") : raw;
      const sent = name.replace(/[^\0-\x7f]+/g, (run) => encodeURIComponent(run));
      let chars = unescape(sent);
      if (/[\x80-\xff]/.test(chars)) chars = new TextDecoder().decode(Uint8Array.from(chars, (ch) => ch.charCodeAt(0)));
      return chars
        .trim()
        .replace(/\u0130/g, "i")
        .toUpperCase()
        .toLowerCase()
        .replace(/[. []/g, "_");
    };
    for (const name of [
      "CF+Authorization",
      "+CF_Authorization",
      "CF_Author\u0130zation",
      "CF_Author\u0131zation",
      "\uFEFFCF_Authorization",
      " \uFEFFCF_Authorization",
      "CF_Authorization[\u0100\u00e9]",
      "CF_Authorization[\u{1F600}\u00e9]",
      "pr\u00e9nom",
      "\u540d\u524d",
      "CF\u212AAuthorization",
      "\u017Fession",
    ]) {
      for (const plusIsSpace of [true, false])
        expect(lenientName(name, { plusIsSpace }), name).toBe(before(name, plusIsSpace));
    }
  });
});

// ─── jwks_unavailable's Retry-After ────────────────────────────────────────────

/** A published ES256 key (the shared test helper's). */
const publicJwk = async (kid: string) => (await makeKey("ES256", kid)).publicJwk;

class Clock {
  constructor(public ms = T0) {}
  now = () => this.ms;
}

/**
 * A key store on an injected clock and fetcher, with the runtime's KV under an issuer no other
 * store shares (no other isolate's stamp or set: only this store's own).
 */
async function storeWith(settings: Partial<OidcIssuerConfig>, fetcher: (clock: Clock) => Promise<Response>) {
  const { issuer, jwksUri } = uniqueIssuer();
  const policy = compilePolicy({
    version: 1,
    issuers: {
      idp: {
        kind: "oidc",
        issuer,
        jwks_uri: jwksUri,
        audiences: ["https://api.test"],
        ...settings,
      },
    },
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
  });
  const clock = new Clock();
  const store = new IssuerKeyStore(policy.issuers.get("idp")!, { fetch: () => fetcher(clock), kv, now: clock.now });
  const pending: Promise<unknown>[] = [];
  const lookup = async (kid: string): Promise<KeyLookup> => {
    const result = await store.lookup(kid, "ES256", (p) => pending.push(p));
    await settleDeferred(pending);
    return result;
  };
  return { store, clock, lookup };
}

const timeoutError = () =>
  Object.assign(new Error("The operation was aborted due to timeout"), { name: "TimeoutError" });

describe("jwks_unavailable Retry-After", () => {
  it("after a fetch that timed out (the issuer hangs), Retry-After is what is left of the cooldown, not the fetch timeout", async () => {
    // A hanging issuer fails the refresh with KeySetFetchError("timeout"), so #lastFailure is
    // "timeout" — the same string `lookup` passes when a wait for a fetch still RUNNING ran out.
    // #unavailable then answers the fetch timeout (2 s) although no fetch runs and the cooldown
    // (600 s) holds every refresh back: clients told to come back in 2 s are refused (again
    // with Retry-After: 2) for ten minutes.
    const good = await publicJwk("k1");
    let mode: "ok" | "hang" = "ok";
    const { clock, lookup, store } = await storeWith({ refresh_cooldown_s: 600, cache_ttl_s: 3600 }, async (c) => {
      if (mode === "hang") {
        c.ms += 2000; // the fetch timeout runs out
        throw timeoutError();
      }
      return Response.json({ keys: [good] });
    });
    expect((await lookup("k1")).ok).toBe(true);
    clock.ms += 700_000; // this isolate's cooldown is over; the set (ttl 1 h) still serves
    mode = "hang";
    const first = await lookup("rotated");
    expect(first).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_timeout" });
    const fetches = store.stats.fetches;
    // 10 s later: still refused, and no fetch was made (cooldown).
    clock.ms += 10_000;
    const second = await lookup("rotated");
    expect(second).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    expect(store.stats.fetches).toBe(fetches);
    // The isolate asks again 600 s after its attempt began: 598 s after the first answer.
    expect(first.ok ? 0 : first.retryAfterS).toBeGreaterThanOrEqual(598);
    expect(second.ok ? 0 : second.retryAfterS).toBeGreaterThanOrEqual(588);
  });

  it("after a refresh that failed slowly, Retry-After counts the cooldown from when this isolate asked, not from when the failure came back", async () => {
    // README: "what is left of the issuer's refresh_cooldown_s since it ... last asked". The
    // code takes max(#lastAttemptAt, #lastFailedAt), and for a failed fetch #lastFailedAt is
    // when it FAILED (up to fetch_timeout_ms later than the attempt): the next attempt comes
    // sooner than Retry-After says — with fetch_timeout_ms = refresh_cooldown_s = 30, Retry-After
    // is the whole 30 s when the cooldown is already over.
    const good = await publicJwk("k1");
    const rotated = await publicJwk("k2");
    let mode: "ok" | "fail" | "rotated" = "ok";
    const { clock, lookup, store } = await storeWith(
      { refresh_cooldown_s: 30, cache_ttl_s: 3600, fetch_timeout_ms: 5000 },
      async (c) => {
        if (mode === "fail") {
          c.ms += 5000; // connection attempts until the issuer answers 503
          return new Response("unavailable", { status: 503 });
        }
        return Response.json({ keys: mode === "rotated" ? [good, rotated] : [good] });
      },
    );
    expect((await lookup("k1")).ok).toBe(true);
    clock.ms += 60_000;
    mode = "fail";
    const attemptAt = clock.ms;
    const refused = await lookup("k2");
    expect(refused).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_http_status" });
    const answeredAt = clock.ms;
    // The isolate asks again once 30 s have passed since attemptAt: 25 s after the answer.
    mode = "rotated";
    clock.ms = attemptAt + 30_000;
    const fetches = store.stats.fetches;
    expect((await lookup("k2")).ok).toBe(true);
    expect(store.stats.fetches).toBe(fetches + 1);
    expect(refused.ok ? 0 : refused.retryAfterS).toBeLessThanOrEqual(
      Math.ceil((attemptAt + 30_000 - answeredAt) / 1000),
    );
  });

  it("when the clock stepped back behind the attempt, Retry-After is not the whole cooldown (the cooldown has ended)", async () => {
    // README: after a clock step "the refresh cooldown ends rather than stretching over the
    // step" (#cooldownOver), so the next request fetches at once; #unavailable instead computes
    // lastAttemptAt + cooldown − now > cooldown and answers min(cooldown, …) = the whole cooldown.
    let mode: "fail" | "ok" = "fail";
    const good = await publicJwk("k1");
    const { lookup, store } = await storeWith({ refresh_cooldown_s: 300 }, async (c) => {
      if (mode === "fail") {
        c.ms -= 10_000; // the clock steps back while the fetch runs
        throw new TypeError("network connection lost");
      }
      return Response.json({ keys: [good] });
    });
    const refused = await lookup("k1"); // cold: no set
    expect(refused).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    mode = "ok";
    const fetches = store.stats.fetches;
    expect((await lookup("k1")).ok).toBe(true); // asked again at once
    expect(store.stats.fetches).toBe(fetches + 1);
    expect(refused.ok ? 0 : refused.retryAfterS).toBe(1);
  });

  it("the cold path's own failure counts the cooldown from the attempt; values stay in 1…cooldown", async () => {
    let mode: "fail" | "ok" = "fail";
    const good = await publicJwk("k1");
    const { clock, lookup } = await storeWith({ refresh_cooldown_s: 30 }, async (c) => {
      if (mode === "fail") {
        c.ms += 1500;
        throw new TypeError("network connection lost");
      }
      return Response.json({ keys: [good] });
    });
    const refused = await lookup("k1");
    expect(refused).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_fetch_failed",
      retryAfterS: 29,
    });
    for (let s = 1; s < 40; s += 3) {
      clock.ms += 3000;
      const again = await lookup("k1");
      if (again.ok) break;
      expect(again.retryAfterS).toBeGreaterThanOrEqual(1);
      expect(again.retryAfterS).toBeLessThanOrEqual(30);
      expect(Number.isInteger(again.retryAfterS)).toBe(true);
    }
    mode = "ok";
  });
});
