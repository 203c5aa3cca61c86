// The JWKS cache against a real loopback issuer and the local runtime's real KV, with an
// injected clock: warm path, unknown kids, rotation, and every failure mode.
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { Fetcher } from "../../src/core/jwks/fetch-key-set";
import type { KeyValueStore } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { TokenVerifier } from "../../src/core/tokens/verify";
import { AUDIENCE, makeIssuer, makeKey, type TestIssuer, type TestKey } from "../support/issuers";

const kv = (env as unknown as { JWKS_CACHE: KeyValueStore }).JWKS_CACHE;

class Clock {
  constructor(public ms = Date.now()) {}
  now = () => this.ms;
  advance(seconds: number) {
    this.ms += seconds * 1000;
  }
}

function verifierFor(
  issuer: TestIssuer,
  clock: Clock,
  settings: Partial<OidcIssuerConfig> = {},
  withKv = true,
  fetcher: Fetcher = (input, init) => fetch(input, init),
  tokenCacheEntries = 0,
) {
  const policy = compilePolicy({
    version: 1,
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], ...settings } },
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
  });
  const verifier = new TokenVerifier(policy, {
    fetch: fetcher,
    ...(withKv ? { kv } : {}),
    now: clock.now,
    tokenCacheEntries,
  });
  const store = verifier.keyStore(policy.issuers.get("idp")!);
  const pending: Promise<unknown>[] = [];
  const defer = (p: Promise<unknown>) => pending.push(p);
  return {
    verifier,
    store,
    verify: (token: string) => verifier.verify(token, ["idp"], undefined, defer),
    settle: () => Promise.all(pending.splice(0)),
  };
}

/** Tokens signed "now" on the injected clock. */
function signAt(issuer: TestIssuer, clock: Clock, key = issuer.keys[0]) {
  const now = Math.floor(clock.ms / 1000);
  return issuer.sign({ iat: now, exp: now + 3600 }, key ? { key } : {});
}

describe("warm path", () => {
  it("makes zero JWKS fetches and zero key imports once warm", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, store, settle } = verifierFor(issuer, clock);
    const first = await verify(await signAt(issuer, clock));
    expect(first).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    const after = { ...store.stats, ...(await issuer.stats()) };
    expect(after).toMatchObject({ fetches: 2, imports: 1, discovery_fetches: 1, jwks_fetches: 1 });
    const kvReads = store.stats.kvReads;
    for (let i = 0; i < 50; i++) {
      const result = await verify(
        await issuer.sign({ sub: `u${i}`, iat: Math.floor(clock.ms / 1000), exp: Math.floor(clock.ms / 1000) + 60 }),
      );
      expect(result).toMatchObject({ ok: true, keySource: "memory" });
    }
    expect(store.stats.fetches).toBe(2);
    expect(store.stats.imports).toBe(1);
    expect(store.stats.kvReads).toBe(kvReads);
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 1, jwks_fetches: 1 });
  });

  it("a second isolate is served from KV without fetching", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const a = verifierFor(issuer, clock);
    expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await a.settle();
    const b = verifierFor(issuer, clock);
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "kv" });
    expect(b.store.stats.fetches).toBe(0);
    expect(await issuer.stats()).toMatchObject({ jwks_fetches: 1 });
  });

  it("uses an explicit jwks_uri without discovery", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` }, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 0, jwks_fetches: 1 });
  });
});

describe("unknown kid", () => {
  it("1,000 tokens with 1,000 distinct unknown kids cause one fetch per cooldown", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, settle } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await settle();
    await issuer.resetCounters();
    clock.advance(31); // past the first fetch's cooldown
    const signer = issuer.keys[0]!;
    const tokens = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        issuer.sign(
          { iat: Math.floor(clock.ms / 1000), exp: Math.floor(clock.ms / 1000) + 60 },
          { key: { ...signer, kid: `unknown-${i}` } },
        ),
      ),
    );
    const results = await Promise.all(tokens.map((t) => verify(t)));
    expect(results.every((r) => !r.ok && r.reason === "token_invalid" && r.detail === "kid_unknown")).toBe(true);
    // A configured jwks_uri is never rediscovered, however unknown the kid.
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 0, jwks_fetches: 1 });
    // Still within the cooldown: more unknown kids fetch nothing.
    clock.advance(10);
    await verify(await issuer.sign({}, { key: { ...signer, kid: "unknown-later" } }));
    expect((await issuer.stats()).jwks_fetches).toBe(1);
    // After the cooldown, one more.
    clock.advance(25);
    await verify(
      await issuer.sign(
        { iat: Math.floor(clock.ms / 1000), exp: Math.floor(clock.ms / 1000) + 60 },
        { key: { ...signer, kid: "unknown-after" } },
      ),
    );
    expect((await issuer.stats()).jwks_fetches).toBe(2);
  });

  it("the cooldown is shared through KV: an isolate already holding KV's set obeys another's stamp", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks` };
    const a = verifierFor(issuer, clock, settings);
    expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await a.settle();
    clock.advance(31);
    const stranger = await makeKey();
    // a refreshes for an unknown kid: it stamps KV, fetches, and writes the set it fetched.
    await a.verify(await signAt(issuer, clock, stranger));
    await a.settle();
    expect(a.store.stats.fetches).toBe(2);
    // b starts now and takes that very set from KV, so KV has nothing newer to offer it later:
    // the only thing that can stop its refresh is a's stamp (b itself has never tried one).
    const b = verifierFor(issuer, clock, settings);
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "kv" });
    clock.advance(10);
    expect(await b.verify(await signAt(issuer, clock, stranger))).toMatchObject({ detail: "kid_unknown" });
    await b.settle();
    expect(b.store.stats.fetches).toBe(0);
    clock.advance(31); // past a's stamp and b's own attempt
    await b.verify(await signAt(issuer, clock, stranger));
    await b.settle();
    expect(b.store.stats.fetches).toBe(1);
  });

  it("a known kid with an alg its key cannot verify is refused as a mismatch, without a refresh", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const { verify, settle, store } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await settle();
    clock.advance(31); // past the cooldown: an unknown kid would fetch now
    const sameKidRsa = await makeKey("RS256", issuer.keys[0]!.kid);
    expect(await verify(await signAt(issuer, clock, sameKidRsa))).toEqual({
      ok: false,
      reason: "token_invalid",
      detail: "key_alg_mismatch",
      issuerId: "idp",
      keySource: "memory",
    });
    await settle();
    expect(store.stats.fetches).toBe(1);
    expect(await issuer.stats()).toMatchObject({ jwks_fetches: 1 });
  });
});

/**
 * The IdP moving its keys: once `move.to` is set, its discovery document (still fetched from
 * the stand-in, and counted there) names that jwks_uri instead.
 */
function movingDiscovery(issuer: TestIssuer) {
  const move: { to?: string } = {};
  const discoveryUrl = `${issuer.url}/.well-known/openid-configuration`;
  const fetcher: Fetcher = async (input, init) => {
    const response = await fetch(input, init);
    if (input !== discoveryUrl || move.to === undefined) return response;
    return Response.json({ ...((await response.json()) as object), jwks_uri: move.to });
  };
  return { move, fetcher };
}

describe("a discovered jwks_uri that moves", () => {
  it.each(["fails", "serves the old set"] as const)(
    "old URI %s: a new kid is accepted after one cooled-down refresh that rediscovers",
    async (oldUri) => {
      const issuer = await makeIssuer();
      const movedTo = await makeIssuer(); // only its /jwks is used: the new home of the key set
      const newKey = movedTo.keys[0]!;
      const clock = new Clock();
      const { move, fetcher } = movingDiscovery(issuer);
      const a = verifierFor(issuer, clock, {}, true, fetcher);
      expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
      await a.settle();

      move.to = `${movedTo.url}/jwks`;
      if (oldUri === "fails") await issuer.setMode("status500");
      // A new isolate inherits the old URI from KV; past the cooldown a's refresh stamped there.
      clock.advance(31);
      const b = verifierFor(issuer, clock, {}, true, fetcher);
      expect(await b.verify(await signAt(issuer, clock, newKey))).toMatchObject({ ok: true, keySource: "fetch" });
      await b.settle();
      // One attempt: the old URI, discovery, the new URI.
      expect(b.store.stats.fetches).toBe(3);
      expect(await issuer.stats()).toMatchObject({ discovery_fetches: 2, jwks_fetches: 2 });
      expect(await movedTo.stats()).toMatchObject({ jwks_fetches: 1 });
      // Other isolates now start from the new URI.
      const stored = JSON.parse((await kv.get(`jwks:v1:${issuer.url}`)) as string) as { jwks_uri: string };
      expect(stored.jwks_uri).toBe(move.to);

      // Still within the cooldown: other unknown kids fetch nothing.
      clock.advance(10);
      const stranger = await makeKey();
      expect(await b.verify(await signAt(issuer, clock, stranger))).toMatchObject({ detail: "kid_unknown" });
      expect(await b.verify(await signAt(issuer, clock, newKey))).toMatchObject({ ok: true, keySource: "memory" });
      await b.settle();
      expect(b.store.stats.fetches).toBe(3);

      // After it, an unknown kid costs the new URI and one discovery, which names the same URI:
      // no third fetch.
      clock.advance(25);
      expect(await b.verify(await signAt(issuer, clock, stranger))).toMatchObject({ detail: "kid_unknown" });
      await b.settle();
      expect(b.store.stats.fetches).toBe(5);
      expect(await issuer.stats()).toMatchObject({ discovery_fetches: 3, jwks_fetches: 2 });
      expect(await movedTo.stats()).toMatchObject({ jwks_fetches: 2 });
    },
  );
});

/** A fetch whose `hangOn`-th call never settles, as I/O of a cancelled request may never do. */
function hangingFetch(hangOn: number) {
  const counter = { calls: 0 };
  const fetcher: Fetcher = (input, init) =>
    ++counter.calls === hangOn ? new Promise<Response>(() => {}) : fetch(input, init);
  return { counter, fetcher };
}

describe("a refresh that never settles", () => {
  it("cold: the leader and a waiter give up after 2 × fetch_timeout_ms; a later request fetches anew", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const hang = hangingFetch(1);
    const settings = { jwks_uri: `${issuer.url}/jwks`, fetch_timeout_ms: 100 };
    const { verify } = verifierFor(issuer, clock, settings, false, hang.fetcher);
    const token = await signAt(issuer, clock);
    const started = Date.now();
    const results = await Promise.all([verify(token), verify(token)]);
    expect(Date.now() - started).toBeLessThan(1000);
    for (const result of results)
      expect(result).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_timeout" });
    clock.advance(31); // past the bound, and past the cooldown the dead attempt started
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(hang.counter.calls).toBe(2);
  }, 3000);

  it("stale: a background refresh that never settles does not stop later ones", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const hang = hangingFetch(2);
    const settings = { jwks_uri: `${issuer.url}/jwks`, fetch_timeout_ms: 100, cache_ttl_s: 300 };
    const { verify } = verifierFor(issuer, clock, settings, false, hang.fetcher);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    clock.advance(301); // stale: served, and refreshed in the background by a fetch that hangs
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await vi.waitFor(() => expect(hang.counter.calls).toBe(2));
    clock.advance(31); // past the bound and the cooldown
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await vi.waitFor(() => expect(hang.counter.calls).toBe(3));
  });
});

describe("hostile KV records", () => {
  const recordKey = (issuer: TestIssuer) => `jwks:v1:${issuer.url}`;

  it.each<[string, (now: number, jwk: object) => string, "kv" | "fetch"]>([
    ["retired jwk null", (now, jwk) => record(now, jwk, { retired: [{ jwk: null, retired_at: now }] }), "kv"],
    ["retired entry null", (now, jwk) => record(now, jwk, { retired: [null, "x", 7] }), "kv"],
    [
      "retired key unusable or its time not a number",
      (now, jwk) =>
        record(now, jwk, {
          retired: [
            { jwk: { kty: "oct", k: "c2VjcmV0" }, retired_at: now },
            { jwk: { kty: "EC", crv: "P-256", x: 1 }, retired_at: now },
            { jwk, retired_at: "yesterday" },
          ],
        }),
      "kv",
    ],
    ["retired not a list", (now, jwk) => record(now, jwk, { retired: { jwk } }), "kv"],
    ["fetched_at in the future", (now, jwk) => record(now + 86_400_000, jwk), "fetch"],
    ["fetched_at overflowing to Infinity", (now, jwk) => record(now, jwk).replace(`${now}`, "1e999"), "fetch"],
    ["no usable key", (now) => record(now, { kty: "oct", k: "c2VjcmV0" }), "fetch"],
    ["not JSON", () => "{", "fetch"],
    ["JSON null", () => "null", "fetch"],
    ["a list", () => "[]", "fetch"],
  ])("%s: never throws, and only a usable record is used", async (_label, text, source) => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    await kv.put(recordKey(issuer), text(clock.ms, issuer.keys[0]!.publicJwk), { expirationTtl: 3600 });
    const { verify, store } = verifierFor(issuer, clock);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: source });
    expect(store.stats.fetches).toBe(source === "kv" ? 0 : 2);
  });

  it("a jwks_uri that is not a URL is ignored: the next refresh discovers it again", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const expired = clock.ms - 2 * 86_400_000;
    await kv.put(recordKey(issuer), record(expired, issuer.keys[0]!.publicJwk, { jwks_uri: "not a url" }), {
      expirationTtl: 3600,
    });
    const { verify } = verifierFor(issuer, clock);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 1, jwks_fetches: 1 });
  });

  it("a retired_at in the future grants no grace; a past one within the window does", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const [oldKey] = issuer.keys;
    const newKey = await makeKey();
    await issuer.publish([newKey]);
    const retired = (at: number) =>
      record(clock.ms, newKey.publicJwk, { retired: [{ jwk: oldKey!.publicJwk, retired_at: at }] });
    const settings = { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: 600 };

    await kv.put(recordKey(issuer), retired(clock.ms - 10_000), { expirationTtl: 3600 });
    const honest = verifierFor(issuer, clock, settings);
    expect(await honest.verify(await signAt(issuer, clock, oldKey))).toMatchObject({ ok: true, keySource: "kv" });

    await kv.put(recordKey(issuer), retired(clock.ms + 365 * 86_400_000), { expirationTtl: 3600 });
    const fooled = verifierFor(issuer, clock, settings);
    expect(await fooled.verify(await signAt(issuer, clock, oldKey))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
  });
});

/** A KV record as the key store writes it, with `fields` overriding. */
function record(fetchedAt: number, jwk: object, fields: Record<string, unknown> = {}) {
  return JSON.stringify({ v: 1, fetched_at: fetchedAt, keys: [jwk], retired: [], ...fields });
}

describe("shared refresh stamp", () => {
  it("a stamp from the future does not block refreshes", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const a = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await a.settle();
    clock.advance(31);
    await kv.put(`jwks-refresh:v1:${issuer.url}`, String(clock.ms + 3_600_000), { expirationTtl: 3600 });
    const next = await makeKey();
    await issuer.publish([issuer.keys[0]!, next]);
    expect(await a.verify(await signAt(issuer, clock, next))).toMatchObject({ ok: true, keySource: "fetch" });
  });
});

describe("rotation", () => {
  it("a new key is picked up on first sight; the old one stays accepted for the grace window", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, settle } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: 600 });
    const oldKey = issuer.keys[0]!;
    expect(await verify(await signAt(issuer, clock, oldKey))).toMatchObject({ ok: true });
    const oldToken = await signAt(issuer, clock, oldKey);

    // The issuer rotates abruptly: new key published, old key gone.
    clock.advance(31);
    const newKey = await makeKey();
    await issuer.publish([newKey]);
    expect(await verify(await signAt(issuer, clock, newKey))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    // A token signed just before the rotation still verifies…
    expect(await verify(oldToken)).toMatchObject({ ok: true });
    // …until the grace window has passed.
    clock.advance(601);
    const late = await verify(oldToken);
    expect(late).toMatchObject({ ok: false, reason: "token_invalid" });
  });

  // Another isolate (a) fetches after b did (here for a stranger's kid), so KV holds a newer
  // set than b's; then the issuer rotates abruptly, and b first sees the new kid when its own
  // set is still fresh (31 s later), past cache_ttl_s (600 s) or past cache_ttl_s +
  // max_stale_s. b's refresh takes KV's newer set first, which lacks the kid: it must fetch.
  it.each([
    ["still fresh", {}, 31],
    ["past its TTL", {}, 580],
    ["expired", { cache_ttl_s: 300, max_stale_s: 0 }, 280],
  ])("a new key is found by an isolate whose set is %s, when KV's newer set lacks it", async (_label, extra, later) => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, ...extra };
    const b = verifierFor(issuer, clock, settings);
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await b.settle();
    clock.advance(31);
    const a = verifierFor(issuer, clock, settings);
    await a.verify(await signAt(issuer, clock, await makeKey()));
    await a.settle();
    expect(a.store.stats.fetches).toBe(1);
    const newKey = await makeKey();
    await issuer.publish([newKey]);
    clock.advance(later);
    expect(await b.verify(await signAt(issuer, clock, newKey))).toMatchObject({ ok: true, keySource: "fetch" });
    await b.settle();
    expect(b.store.stats.fetches).toBe(2);
  });

  it("keys published alongside (overlapping rotation) verify without any grace", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: 0 });
    const k1 = issuer.keys[0]!;
    const k2 = await makeKey("EdDSA");
    await issuer.publish([k1, k2]);
    expect(await verify(await signAt(issuer, clock, k1))).toMatchObject({ ok: true });
    expect(await verify(await signAt(issuer, clock, k2))).toMatchObject({ ok: true });
  });
});

describe("failure of the key endpoint", () => {
  it.each(["down", "status500", "garbage", "html", "huge", "no_keys"] as const)(
    "%s: the last good set serves up to max-stale, then 503 jwks_unavailable; recovery needs no restart",
    async (mode) => {
      const issuer = await makeIssuer();
      const clock = new Clock();
      const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, max_stale_s: 600, refresh_cooldown_s: 30 };
      const { verify, settle, store } = verifierFor(issuer, clock, settings, false);
      expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
      await issuer.setMode(mode);

      clock.advance(301); // stale: served, refreshed in the background (which fails)
      expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "stale" });
      await settle();
      // Still stale after the failed refresh, and said so: an outage is visible before max-stale.
      expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "stale" });
      const fetchesBefore = store.stats.fetches;

      clock.advance(600); // beyond ttl + max-stale: nothing usable is left
      const denied = await verify(await signAt(issuer, clock));
      expect(denied).toMatchObject({ ok: false, reason: "jwks_unavailable" });
      expect(store.stats.fetches).toBe(fetchesBefore + 1);

      await issuer.setMode("ok");
      clock.advance(31);
      expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    },
  );

  it("a stale set whose background refresh succeeds is no longer reported stale", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, max_stale_s: 600 };
    const { verify, settle } = verifierFor(issuer, clock, settings, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
    clock.advance(301);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "stale" });
    await settle();
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
  });

  it("a bad response is never cached, in memory or KV", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    await issuer.setMode("html");
    const a = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await a.verify(await signAt(issuer, clock))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_not_json",
    });
    await a.settle();
    await issuer.setMode("ok");
    const b = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
  });

  it("a slow endpoint is cut off at the fetch timeout", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    await issuer.setMode("slow", 3000);
    const { verify } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, fetch_timeout_ms: 200 }, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_timeout",
    });
  });

  it("discovery and the JWKS fetch share one fetch_timeout_ms", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    await issuer.setMode("slow", 200); // each answer alone fits in 300 ms; the two together do not
    const { verify } = verifierFor(issuer, clock, { fetch_timeout_ms: 300 }, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_timeout",
    });
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 1, jwks_fetches: 1 });
  });

  it("cold and down: requests within the cooldown do not fetch again", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    await issuer.setMode("down");
    const { verify } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` }, false);
    for (let i = 0; i < 20; i++)
      expect(await verify(await signAt(issuer, clock))).toMatchObject({ reason: "jwks_unavailable" });
    expect((await issuer.stats()).jwks_fetches).toBe(1);
  });

  it("cold and down, with KV: requests within the cooldown read KV at most once a second", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    await issuer.setMode("down");
    const { verify, settle, store } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    for (let i = 0; i < 20; i++)
      expect(await verify(await signAt(issuer, clock))).toMatchObject({ reason: "jwks_unavailable" });
    await settle();
    // The first request: the load, then the refresh's own look before fetching.
    expect(store.stats.kvReads).toBe(2);
    clock.advance(0.5);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ reason: "jwks_unavailable" });
    expect(store.stats.kvReads).toBe(2);

    // Another isolate got the set meanwhile: after the recheck interval this one uses it from KV.
    await issuer.setMode("ok");
    const other = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await other.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await other.settle();
    clock.advance(0.5);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "kv" });
    expect(store.stats.kvReads).toBe(3);
    expect((await issuer.stats()).jwks_fetches).toBe(2);
  });

  it("discovery naming a different issuer is refused", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    // Configured with a trailing slash: the discovery document names the issuer without it.
    const policy = compilePolicy({
      version: 1,
      issuers: { idp: { kind: "oidc", issuer: `${issuer.url}/`, audiences: [AUDIENCE] } },
      upstreams: { o: { url: "https://origin.test" } },
      routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
    });
    const verifier = new TokenVerifier(policy, { fetch: (i, init) => fetch(i, init), now: clock.now });
    const token = await issuer.sign({ iss: `${issuer.url}/` });
    expect(await verifier.verify(token, ["idp"], undefined, () => {})).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_discovery_issuer_mismatch",
    });
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 1, jwks_fetches: 0 });
  });
});

describe("verified-token cache", () => {
  const cached = (issuer: TestIssuer, clock: Clock, settings: Partial<OidcIssuerConfig>) =>
    verifierFor(issuer, clock, settings, false, undefined, 100);

  it("a key imported while a refresh lands is trusted: its tokens are served from the cache", async () => {
    const issuer = await makeIssuer();
    const k1 = issuer.keys[0] as TestKey;
    const k2 = await makeKey();
    await issuer.publish([k1, k2]);
    const clock = new Clock();
    const { verify, settle } = cached(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await verify(await signAt(issuer, clock, k1))).toMatchObject({ ok: true, keySource: "fetch" });
    const k3 = await makeKey();
    await issuer.publish([k1, k2, k3]);
    clock.advance(31); // past the refresh cooldown
    // k2's import is slow; meanwhile k3's unknown kid makes a refresh adopt a new set.
    const realImport = crypto.subtle.importKey.bind(crypto.subtle);
    const slowImport = vi.spyOn(crypto.subtle, "importKey").mockImplementation((async (...args: unknown[]) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return (realImport as (...a: unknown[]) => Promise<CryptoKey>)(...args);
    }) as never);
    const t2 = await signAt(issuer, clock, k2);
    const [r2, r3] = await Promise.all([verify(t2), verify(await signAt(issuer, clock, k3))]);
    slowImport.mockRestore();
    await settle();
    expect([r2, r3]).toMatchObject([{ ok: true }, { ok: true, keySource: "fetch" }]);
    expect(await verify(t2)).toMatchObject({ ok: true, keySource: "token_cache" });
  });

  it("a key withdrawn without grace stops its cached tokens at once", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, settle } = cached(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: 0 });
    const oldToken = await signAt(issuer, clock, issuer.keys[0]);
    expect(await verify(oldToken)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(oldToken)).toMatchObject({ ok: true, keySource: "token_cache" });
    clock.advance(31);
    const newKey = await makeKey();
    await issuer.publish([newKey]);
    expect(await verify(await signAt(issuer, clock, newKey))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    expect(await verify(oldToken)).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });

  it("a cached token is good for its key's grace window, and not past it", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, settle } = cached(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: 60 });
    const oldToken = await signAt(issuer, clock, issuer.keys[0]);
    expect(await verify(oldToken)).toMatchObject({ ok: true });
    const newKey = await makeKey();
    await issuer.publish([newKey]);
    clock.advance(31);
    expect(await verify(await signAt(issuer, clock, newKey))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    expect(await verify(oldToken)).toMatchObject({ ok: true, keySource: "token_cache" });
    clock.advance(61); // the grace window is over; the cache entry itself would last 5 minutes
    expect(await verify(oldToken)).toMatchObject({ ok: false, reason: "token_invalid" });
  });

  it("a cached token is refused once its key set is past max-stale, as an uncached one is", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, settle } = cached(issuer, clock, {
      jwks_uri: `${issuer.url}/jwks`,
      cache_ttl_s: 300,
      max_stale_s: 60,
    });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await issuer.setMode("down");
    clock.advance(200);
    const token = await signAt(issuer, clock);
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "memory" });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    clock.advance(170); // the set is 370 s old: past cache_ttl_s + max_stale_s
    await settle();
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    expect(await verify(token)).toMatchObject({ ok: false, reason: "jwks_unavailable" });
  });

  it("skips the signature check for a reused token, but never past its exp", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const policy = compilePolicy({
      version: 1,
      issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], clock_skew_s: 0 } },
      upstreams: { o: { url: "https://origin.test" } },
      routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
    });
    const verifier = new TokenVerifier(policy, {
      fetch: (i, init) => fetch(i, init),
      now: clock.now,
      tokenCacheEntries: 100,
    });
    const now = Math.floor(clock.ms / 1000);
    const token = await issuer.sign({ iat: now, exp: now + 60 });
    expect(await verifier.verify(token, ["idp"], undefined, () => {})).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verifier.verify(token, ["idp"], undefined, () => {})).toMatchObject({
      ok: true,
      keySource: "token_cache",
    });
    // A different token with the same kid and sub is verified on its own.
    const sibling = await issuer.sign({ iat: now, exp: now + 60, jti: "other" });
    expect(await verifier.verify(sibling, ["idp"], undefined, () => {})).toMatchObject({
      ok: true,
      keySource: "memory",
    });
    // A forged sibling (same header and claims, bad signature) is never served from the cache.
    const forged = `${token.split(".").slice(0, 2).join(".")}.${sibling.split(".")[2]}`;
    expect(await verifier.verify(forged, ["idp"], undefined, () => {})).toMatchObject({
      ok: false,
      reason: "token_invalid",
    });
    clock.advance(61);
    expect(await verifier.verify(token, ["idp"], undefined, () => {})).toMatchObject({
      ok: false,
      reason: "token_expired",
    });
  });

  it("stays within its bound under many distinct tokens", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const policy = compilePolicy({
      version: 1,
      issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
      upstreams: { o: { url: "https://origin.test" } },
      routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
    });
    const verifier = new TokenVerifier(policy, {
      fetch: (i, init) => fetch(i, init),
      now: clock.now,
      tokenCacheEntries: 50,
    });
    for (let i = 0; i < 300; i++) {
      const result = await verifier.verify(await issuer.sign({ sub: `u${i}` }), ["idp"], undefined, () => {});
      expect(result.ok).toBe(true);
    }
    expect(verifier.tokenCache.size).toBe(50);
  });

  it("a cached token is still checked against the route's audiences and issuers", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const policy = compilePolicy({
      version: 1,
      issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE, "https://other.test"] } },
      upstreams: { o: { url: "https://origin.test" } },
      routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
    });
    const verifier = new TokenVerifier(policy, { fetch: (i, init) => fetch(i, init), now: clock.now });
    const token = await issuer.sign({ aud: "https://other.test" });
    expect(await verifier.verify(token, ["idp"], undefined, () => {})).toMatchObject({ ok: true });
    expect(await verifier.verify(token, ["idp"], [AUDIENCE], () => {})).toMatchObject({
      ok: false,
      reason: "audience_mismatch",
    });
    expect(await verifier.verify(token, [], undefined, () => {})).toMatchObject({
      ok: false,
      reason: "issuer_unknown",
    });
  });
});

describe("bounded parsing at the core", () => {
  it("trailing whitespace or a 2 MB header never reaches JSON parsing", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, store } = verifierFor(issuer, clock, {}, false);
    const token = await signAt(issuer, clock);
    expect(await verify(`${token} `)).toMatchObject({ ok: false, reason: "token_invalid", detail: "not_compact_jws" });
    expect(await verify(`${token}\n`)).toMatchObject({ ok: false, reason: "token_invalid", detail: "not_compact_jws" });
    const huge = `${"e".repeat(2_000_000)}.e30.AAAA`;
    expect(await verify(huge)).toMatchObject({ ok: false, reason: "token_invalid", detail: "token_too_large" });
    expect(store.stats.fetches).toBe(0);
  });
});
