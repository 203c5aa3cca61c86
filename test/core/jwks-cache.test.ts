// The JWKS cache against a real loopback issuer and the local runtime's real KV, with an
// injected clock: warm path, unknown kids, rotation, and every failure mode.
import { exportJWK } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Fetcher } from "../../src/core/jwks/fetch-key-set";
import type { KeyValueStore } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { TokenVerifier } from "../../src/core/tokens/verify";
import { Clock, kv, signAt, verifierFor } from "../support/clocked-verifier";
import { AUDIENCE, issuerServer, makeIssuer, makeKey, type TestIssuer, type TestKey } from "../support/issuers";
import { makeAnyKey } from "./token-fixtures";
import { held } from "../support/waiting";

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

/**
 * Isolate b, beside an isolate a that fetched the set and, 31 s on, refreshed it for the unknown
 * kid of `stranger` (stamping KV, fetching, and writing the set it fetched). b starts then and
 * takes that very set from KV, so KV has nothing newer to offer it later: the only thing that
 * can stop its refresh is a's stamp (b itself has never tried one).
 */
async function heldBackByAStamp(
  issuer: TestIssuer,
  clock: Clock,
  settings: Partial<OidcIssuerConfig>,
  stranger: TestKey,
) {
  const a = verifierFor(issuer, clock, settings);
  expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
  await a.settle();
  clock.advance(31);
  await a.verify(await signAt(issuer, clock, stranger));
  await a.settle();
  expect(a.store.stats.fetches).toBe(2);
  const b = verifierFor(issuer, clock, settings);
  expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "kv" });
  return b;
}

/**
 * b (see heldBackByAStamp), asked 10 s after a's stamp for a key it does not hold, is answered
 * `refused` without a fetch; asked again past a's stamp and b's own attempt, it fetches.
 */
async function expectTheStampHoldsBack(
  b: ReturnType<typeof verifierFor>,
  clock: Clock,
  token: () => Promise<string>,
  refused: Record<string, unknown>,
) {
  clock.advance(10);
  expect(await b.verify(await token())).toMatchObject(refused);
  await b.settle();
  expect(b.store.stats.fetches).toBe(0);
  clock.advance(31); // past a's stamp and b's own attempt
  await b.verify(await token());
  await b.settle();
  expect(b.store.stats.fetches).toBe(1);
}

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
    const stranger = await makeKey();
    const b = await heldBackByAStamp(issuer, clock, { jwks_uri: `${issuer.url}/jwks` }, stranger);
    await expectTheStampHoldsBack(b, clock, () => signAt(issuer, clock, stranger), { detail: "kid_unknown" });
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

/** Publishes these keys with their `kid`s taken out. */
async function publishWithoutKids(issuer: TestIssuer, keys: TestKey[]) {
  const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
    method: "POST",
    body: JSON.stringify({ jwks: { keys: keys.map(({ publicJwk: { kid: _kid, ...jwk } }) => jwk) } }),
  });
  expect(response.ok).toBe(true);
}

/** A token signed "now" on the injected clock, with no `kid` in its header. */
function signWithoutKid(issuer: TestIssuer, clock: Clock, key: TestKey) {
  const now = Math.floor(clock.ms / 1000);
  return issuer.sign({ iat: now, exp: now + 3600 }, { key, header: { kid: undefined } });
}

describe("an issuer whose keys carry no kid", () => {
  it("adding a key for another algorithm: a token no held key fits brings one cooled-down refresh, as an unknown kid does", async () => {
    const issuer = await makeIssuer("RS256");
    const clock = new Clock();
    const rsa = issuer.keys[0] as TestKey;
    await publishWithoutKids(issuer, [rsa]);
    const settings = { jwks_uri: `${issuer.url}/jwks`, algorithms: ["RS256", "ES256", "EdDSA"] };
    const { verify, settle, store } = verifierFor(issuer, clock, settings, false);
    expect(await verify(await signWithoutKid(issuer, clock, rsa))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    const ec = await makeKey("ES256");
    await publishWithoutKids(issuer, [rsa, ec]);
    clock.advance(31);
    expect(await verify(await signWithoutKid(issuer, clock, ec))).toMatchObject({ ok: true, keySource: "fetch" });
    // A token for an algorithm no key has: refused as before, within the cooldown without a fetch.
    const fetches = store.stats.fetches;
    const stranger = await makeKey("EdDSA");
    expect(await verify(await signWithoutKid(issuer, clock, stranger))).toMatchObject({
      ok: false,
      detail: "no_matching_key",
    });
    expect(store.stats.fetches).toBe(fetches);
  });

  it("a token no held key fits obeys another isolate's shared refresh stamp, as an unknown kid does", async () => {
    // Any client can send one for an allowed algorithm the issuer publishes no key for (an
    // EdDSA token to an RSA issuer): it must not buy every isolate a fetch per cooldown.
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, algorithms: ["ES256", "EdDSA"] };
    const b = await heldBackByAStamp(issuer, clock, settings, await makeKey("ES256"));
    const stranger = await makeKey("EdDSA");
    await expectTheStampHoldsBack(b, clock, () => signWithoutKid(issuer, clock, stranger), {
      ok: false,
      reason: "token_invalid",
      detail: "no_matching_key",
    });
  });

  it("a token no held key fits is 503 jwks_refreshing while another isolate's fresh stamp has brought no set here", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const jwksUri = `${issuer.url}/jwks`;
    const b = verifierFor(issuer, clock, { jwks_uri: jwksUri, algorithms: ["ES256", "EdDSA"] });
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await b.settle();
    clock.advance(31);
    // Another isolate asked the issuer 5 s ago; what it fetched has not reached this location.
    await kv.put(`jwks-refresh:v1:${issuer.url} ${jwksUri}`, String(clock.ms - 5000), { expirationTtl: 60 });
    await issuer.resetCounters();
    const noKid = await signWithoutKid(issuer, clock, await makeKey("EdDSA"));
    expect(await b.verify(noKid)).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_refreshing" });
    await b.settle();
    expect((await issuer.stats()).jwks_fetches).toBe(0);
  });

  it("a token without a kid is tried against at most 3 keys of its algorithm, current keys before retired ones", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const [first, second, third, fourth] = await Promise.all([1, 2, 3, 4].map(() => makeKey("ES256")));
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, rotation_grace_s: 3600 };
    const { verify, settle } = verifierFor(issuer, clock, settings, false);
    await publishWithoutKids(issuer, [first!, second!, third!, fourth!]);
    // Each candidate costs a signature check: a token without a kid must not make the edge try
    // every key of a large set. The first three keys listed are tried, the fourth never.
    expect(await verify(await signWithoutKid(issuer, clock, third!))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(await signWithoutKid(issuer, clock, fourth!))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "signature",
    });
    await settle();

    // The issuer withdraws the first key; within rotation_grace_s it still verifies, tried
    // after the keys still current.
    await publishWithoutKids(issuer, [second!, third!]);
    clock.advance(301); // past its TTL: refreshed before it is used
    expect(await verify(await signWithoutKid(issuer, clock, second!))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    expect(await verify(await signWithoutKid(issuer, clock, first!))).toMatchObject({ ok: true, keySource: "memory" });

    // Three current keys fill the candidates: the retired key comes after them and is not tried.
    await publishWithoutKids(issuer, [second!, third!, fourth!]);
    clock.advance(301);
    expect(await verify(await signWithoutKid(issuer, clock, second!))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    expect(await verify(await signWithoutKid(issuer, clock, fourth!))).toMatchObject({ ok: true, keySource: "memory" });
    expect(await verify(await signWithoutKid(issuer, clock, first!))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "signature",
    });
  });
});

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
      // One attempt: discovery first (this isolate has not read it yet), then the new URI; the
      // old one is not asked.
      expect(b.store.stats.fetches).toBe(2);
      expect(await issuer.stats()).toMatchObject({ discovery_fetches: 2, jwks_fetches: 1 });
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
      expect(b.store.stats.fetches).toBe(2);

      // After it, an unknown kid costs the new URI and one discovery, which names the same URI:
      // no third fetch.
      clock.advance(25);
      expect(await b.verify(await signAt(issuer, clock, stranger))).toMatchObject({ detail: "kid_unknown" });
      await b.settle();
      expect(b.store.stats.fetches).toBe(4);
      expect(await issuer.stats()).toMatchObject({ discovery_fetches: 3, jwks_fetches: 1 });
      expect(await movedTo.stats()).toMatchObject({ jwks_fetches: 2 });
    },
  );
});

/**
 * A verifier without KV for a new issuer, at `jwks_uri` with `settings`, whose `hangOn`-th fetch
 * never settles, as I/O of a cancelled request may never do (`hang.counter`: the calls).
 */
async function verifierWithHangingFetch(hangOn: number, settings: Partial<OidcIssuerConfig>) {
  const issuer = await makeIssuer();
  const clock = new Clock();
  const counter = { calls: 0 };
  const fetcher: Fetcher = (input, init) =>
    ++counter.calls === hangOn ? new Promise<Response>(() => {}) : fetch(input, init);
  const { verify } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, ...settings }, false, fetcher);
  return { issuer, clock, hang: { counter }, verify };
}

/** A request's answer once it has one: `answer` stays undefined while the request waits. */
function answered<T>(request: Promise<T>) {
  const box: { answer?: T } = {};
  const done = request.then((answer) => {
    box.answer = answer;
    return answer;
  });
  return { box, done };
}

/**
 * Yields to the runtime until `ready`, fake time standing still (vi.waitFor would move the fake
 * timers on every check). The test's own timeout stops a wait that never ends.
 */
async function until(ready: () => boolean) {
  while (!ready()) await vi.advanceTimersByTimeAsync(0);
}

describe("a refresh that never settles", () => {
  // The wait's bound is the key store's timer: fake here, so the test moves it rather than
  // waiting it out. The issuer's real fetches are unaffected.
  afterEach(() => {
    vi.useRealTimers();
  });

  it("cold: the leader and a waiter give up after 2 × fetch_timeout_ms; a later request fetches anew", async () => {
    const { issuer, clock, hang, verify } = await verifierWithHangingFetch(1, { fetch_timeout_ms: 100 });
    const token = await signAt(issuer, clock);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const requests = [answered(verify(token)), answered(verify(token))];
    // The leader's fetch is out (it never settles) and both requests wait on their bound.
    await until(() => hang.counter.calls === 1 && vi.getTimerCount() === 2);
    await vi.advanceTimersByTimeAsync(199);
    expect(requests.map((r) => r.box.answer)).toEqual([undefined, undefined]);
    await vi.advanceTimersByTimeAsync(1);
    for (const request of requests)
      expect(request.box.answer).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_timeout" });
    clock.advance(31); // past the bound, and past the cooldown the dead attempt started
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(hang.counter.calls).toBe(2);
  });

  it("cold: Retry-After is the fetch timeout (in whole seconds) while the fetch given up on still runs, not the cooldown", async () => {
    const { issuer, clock, hang, verify } = await verifierWithHangingFetch(1, {
      fetch_timeout_ms: 1100,
      refresh_cooldown_s: 30,
    });
    const token = await signAt(issuer, clock);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const request = answered(verify(token));
    await until(() => hang.counter.calls === 1 && vi.getTimerCount() === 1);
    // Given up at its bound, 2 × fetch_timeout_ms, while the fetch still runs.
    await vi.advanceTimersByTimeAsync(2199);
    expect(request.box.answer).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(request.box.answer).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_timeout",
      retryAfterS: 2,
    });
  });

  it("stale: a background refresh that never settles does not stop later ones", async () => {
    const { issuer, clock, hang, verify } = await verifierWithHangingFetch(2, {
      fetch_timeout_ms: 100,
      cache_ttl_s: 300,
    });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    clock.advance(301); // stale: served, and refreshed in the background by a fetch that hangs
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await vi.waitFor(() => expect(hang.counter.calls).toBe(2));
    clock.advance(31); // past the bound and the cooldown
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await vi.waitFor(() => expect(hang.counter.calls).toBe(3));
  });
});

describe("a refresh for an unknown kid that never settles", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is 503 jwks_unavailable (timeout), not a refusal of the token", async () => {
    const { issuer, clock, hang, verify } = await verifierWithHangingFetch(2, { fetch_timeout_ms: 100 });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    const next = await makeKey();
    await issuer.publish([issuer.keys[0] as TestKey, next]);
    clock.advance(31);
    const token = await signAt(issuer, clock, next);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const request = answered(verify(token));
    await until(() => hang.counter.calls === 2 && vi.getTimerCount() === 1);
    // The unknown kid's refresh is waited for 2 × fetch_timeout_ms at most.
    await vi.advanceTimersByTimeAsync(199);
    expect(request.box.answer).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(request.box.answer).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_timeout" });
    clock.advance(31); // past the bound and the cooldown: the issuer answers now
    expect(await verify(await signAt(issuer, clock, next))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(hang.counter.calls).toBe(3);
  });
});

/** A KV whose reads never settle, counting them; its writes are taken and dropped. */
function neverAnsweringKv() {
  const counted = {
    reads: 0,
    kv: {
      get: () => {
        counted.reads += 1;
        return new Promise<string | null>(() => {});
      },
      put: async () => {},
    } as KeyValueStore,
  };
  return counted;
}

describe("a KV that does not answer", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("KV reads that never settle are a miss after a short wait: a healthy issuer's keys are fetched and used", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const hung = neverAnsweringKv();
    const hungKv = hung.kv;
    const settings = { jwks_uri: `${issuer.url}/jwks`, fetch_timeout_ms: 100 };
    const { verify, store } = verifierFor(issuer, clock, settings, hungKv);
    const token = await signAt(issuer, clock);
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    /** Gives up on the `read`-th KV read: 50 ms (half of fetch_timeout_ms) after it was made. */
    const giveUpOn = async (read: number) => {
      await until(() => hung.reads === read);
      await vi.advanceTimersByTimeAsync(50);
    };
    // Cold: the load's read and the refresh's read each give up, then the issuer is asked.
    const cold = verify(token);
    await giveUpOn(1);
    await giveUpOn(2);
    expect(await cold).toMatchObject({ ok: true, keySource: "fetch" });
    // After the answer the set is saved, KV read once more first (for leaks saved meanwhile).
    await giveUpOn(3);
    expect(hung.reads).toBe(3);
    clock.advance(31);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
    // An unknown kid: the KV set and the shared stamp go unanswered too; the refresh still fetches.
    const next = await makeKey();
    await issuer.publish([issuer.keys[0]!, next]);
    const rotated = verify(await signAt(issuer, clock, next));
    await giveUpOn(4);
    await giveUpOn(5);
    expect(await rotated).toMatchObject({ ok: true, keySource: "fetch" });
    await giveUpOn(6);
    expect(hung.reads).toBe(6);
    expect(store.stats.fetches).toBe(2);
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 0, jwks_fetches: 2 });
  });
});

describe("how long a KV read is waited for", () => {
  // Each read that KV does not answer is given up after 300 ms, or half of fetch_timeout_ms if
  // less, so that a cold isolate's two reads leave the fetch time within its budget. The key
  // store's timers run on a fake clock here; KV never answers and the issuer answers at once.
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each([
    [300, "at the default fetch_timeout_ms of 2 s", {}],
    [100, "at a fetch_timeout_ms of 200 ms", { fetch_timeout_ms: 200 }],
  ])("a read KV does not answer is given up after %i ms %s", async (waitMs, _label, settings) => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const hung = neverAnsweringKv();
    const hungKv = hung.kv;
    let fetches = 0;
    const counting: Fetcher = (input, init) => {
      fetches += 1;
      return fetch(input, init);
    };
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { verify } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, ...settings }, hungKv, counting);
    const result = verify(await signAt(issuer, clock));
    // Cold: the load reads KV, then the refresh reads it again before it fetches.
    await vi.advanceTimersByTimeAsync(waitMs - 1);
    expect({ reads: hung.reads, fetches }).toEqual({ reads: 1, fetches: 0 });
    await vi.advanceTimersByTimeAsync(1);
    expect({ reads: hung.reads, fetches }).toEqual({ reads: 2, fetches: 0 });
    await vi.advanceTimersByTimeAsync(waitMs - 1);
    expect({ reads: hung.reads, fetches }).toEqual({ reads: 2, fetches: 0 });
    await vi.advanceTimersByTimeAsync(1);
    expect({ reads: hung.reads, fetches }).toEqual({ reads: 2, fetches: 1 });
    expect(await result).toMatchObject({ ok: true, keySource: "fetch" });
  });
});

describe("a KV whose writes do not answer", () => {
  // Writes never settle; reads work. Nothing may wait on a write before asking the issuer.
  const hungWrites = (): KeyValueStore => ({
    get: (key) => kv.get(key),
    put: () => new Promise<void>(() => {}),
  });

  it("a stale set is still refreshed: a key the issuer withdrew stops, a key it published is taken", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, rotation_grace_s: 0, fetch_timeout_ms: 200 };
    const { verify, store } = verifierFor(issuer, clock, settings, hungWrites());
    const leaked = issuer.keys[0] as TestKey;
    expect(await verify(await signAt(issuer, clock, leaked))).toMatchObject({ ok: true, keySource: "fetch" });
    const successor = await makeKey();
    await issuer.publish([successor]);
    clock.advance(301);
    // Past its TTL: refreshed before it is used (deferred work not awaited: the writes never
    // settle), so the withdrawn key stops at once.
    expect(await verify(await signAt(issuer, clock, leaked))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
    expect(store.stats.fetches).toBe(2);
    expect(await verify(await signAt(issuer, clock, successor))).toMatchObject({ ok: true, keySource: "memory" });
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
    const settings = { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: 600 };
    const retired = (at: number) =>
      record(clock.ms, newKey.publicJwk, {
        jwks_uri: settings.jwks_uri,
        retired: [{ jwk: oldKey!.publicJwk, retired_at: at }],
      });

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

/** A KV record as the key store writes it for a discovering issuer, with `fields` overriding. */
function record(fetchedAt: number, jwk: object, fields: Record<string, unknown> = {}) {
  return JSON.stringify({ v: 1, fetched_at: fetchedAt, discovered: true, keys: [jwk], retired: [], ...fields });
}

describe("shared refresh stamp", () => {
  it("a stamp from the future does not block refreshes", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const a = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await a.settle();
    clock.advance(31);
    // With a jwks_uri configured, the stamp's key names it (stamps are per key source).
    const stampKey = `jwks-refresh:v1:${issuer.url} ${issuer.url}/jwks`;
    await kv.put(stampKey, String(clock.ms + 3_600_000), { expirationTtl: 3600 });
    const next = await makeKey();
    await issuer.publish([issuer.keys[0]!, next]);
    expect(await a.verify(await signAt(issuer, clock, next))).toMatchObject({ ok: true, keySource: "fetch" });
  });
});

describe("KV expiry times", () => {
  // KV keeps a set exactly as long as it may serve (cache_ttl_s + max_stale_s: an outage can
  // last that long), and a refresh stamp as long as the cooldown it shares, but at least the
  // 60 s that KV allows.
  it.each<[string, Partial<OidcIssuerConfig>, number, number]>([
    ["the defaults", {}, 600 + 86_400, 60],
    ["set ones", { cache_ttl_s: 300, max_stale_s: 1000, refresh_cooldown_s: 90 }, 1300, 90],
    ["a cooldown shorter than a minute", { refresh_cooldown_s: 10, max_stale_s: 0 }, 600, 60],
  ])("with %s", async (_label, settings, setTtl, stampTtl) => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const puts: { key: string; expirationTtl?: number }[] = [];
    const recording: KeyValueStore = {
      get: (key) => kv.get(key),
      put: (key, value, options) => {
        puts.push({ key, expirationTtl: options?.expirationTtl });
        return kv.put(key, value, options);
      },
    };
    const { verify, settle } = verifierFor(issuer, clock, settings, recording);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    expect(puts).toEqual([
      { key: `jwks-refresh:v1:${issuer.url}`, expirationTtl: stampTtl },
      { key: `jwks:v1:${issuer.url}`, expirationTtl: setTtl },
    ]);
  });
});

describe("an isolate whose set expired while the issuer was down", () => {
  it("takes the fresh set another isolate saved to KV within a second, not after its own cooldown", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, max_stale_s: 0, refresh_cooldown_s: 299 };
    const a = verifierFor(issuer, clock, settings);
    expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await a.settle();
    const b = verifierFor(issuer, clock, settings);
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "kv" });
    // The issuer goes down; B's set runs out and its refresh fails.
    await issuer.setMode("down");
    clock.advance(301);
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    await b.settle();
    const fetches = b.store.stats.fetches;
    // The issuer is back; another isolate fetches and saves a fresh set.
    await issuer.setMode("ok");
    clock.advance(5);
    const c = verifierFor(issuer, clock, settings);
    expect(await c.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await c.settle();
    // B's cooldown holds its own refresh back for five minutes; KV has the set now.
    clock.advance(2);
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await b.settle();
    expect(b.store.stats.fetches).toBe(fetches);
    // And while KV has nothing newer, it is asked at most once a second, not on every request.
    const reads = b.store.stats.kvReads;
    await issuer.setMode("down");
    clock.advance(301);
    for (let i = 0; i < 5; i++) await b.verify(await signAt(issuer, clock));
    await b.settle();
    expect(b.store.stats.kvReads - reads).toBeLessThanOrEqual(2);
    await issuer.setMode("ok");
  });
});

describe("another isolate fetching the new kid", () => {
  it("an isolate the shared stamp held back reads KV again a second later, not a cooldown later", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, refresh_cooldown_s: 30 };
    // Isolate A's fetch of the new set is held until B has asked.
    let releaseA!: () => void;
    const aHeld = new Promise<void>((resolve) => {
      releaseA = resolve;
    });
    let held = false;
    const heldFetch: Fetcher = async (input, init) => {
      if (held) await aHeld;
      return fetch(input, init);
    };
    const a = verifierFor(issuer, clock, settings, true, heldFetch);
    const b = verifierFor(issuer, clock, settings, true);
    expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await a.settle();
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "kv" });

    const next = await makeKey();
    await issuer.publish([issuer.keys[0] as TestKey, next]);
    clock.advance(31);
    held = true;
    const aResult = a.verify(await signAt(issuer, clock, next));
    await vi.waitFor(async () =>
      expect(await kv.get(`jwks-refresh:v1:${issuer.url} ${issuer.url}/jwks`)).toBe(String(clock.ms)),
    );
    // B finds A's stamp and no newer set: it does not fetch, and cannot tell yet. Nothing is
    // known against the token, so it is not refused as invalid (a client would drop it).
    expect(await b.verify(await signAt(issuer, clock, next))).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_refreshing",
    });
    releaseA();
    expect(await aResult).toMatchObject({ ok: true, keySource: "fetch" });
    await a.settle();
    // A second later B reads the set A saved, well within the 30 s cooldown.
    clock.advance(1);
    expect(await b.verify(await signAt(issuer, clock, next))).toMatchObject({ ok: true, keySource: "kv" });
    expect(b.store.stats.fetches).toBe(0);
  });
});

/**
 * KV as one Cloudflare location serves it: a value read there is served from the location's
 * cache for 60 s, and another location's write reaches it no sooner (KV is eventually
 * consistent); a write made here is seen here at once.
 */
function locationKv(clock: Clock): KeyValueStore {
  const cached = new Map<string, { value: string | null; at: number }>();
  return {
    async get(key) {
      const hit = cached.get(key);
      if (hit && clock.ms - hit.at < 60_000) return hit.value;
      const value = await kv.get(key);
      cached.set(key, { value, at: clock.ms });
      return value;
    },
    async put(key, value, options) {
      cached.set(key, { value, at: clock.ms });
      await kv.put(key, value, options);
    },
  };
}

describe("another isolate's refresh, as another location sees it", () => {
  const settings = (issuer: TestIssuer) => ({ jwks_uri: `${issuer.url}/jwks`, refresh_cooldown_s: 30 });

  /** Two isolates sharing KV, both holding the issuer's set: A fetched it, B read it from KV. */
  async function twoWarmIsolates() {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const a = verifierFor(issuer, clock, settings(issuer));
    const b = verifierFor(issuer, clock, settings(issuer));
    expect(await a.verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await a.settle();
    expect(await b.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "kv" });
    return { issuer, clock, a, b };
  }

  it("a location whose KV still serves the old set answers a new kid 503, never 401, until it has the key", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const k1 = issuer.keys[0] as TestKey;
    const a = verifierFor(issuer, clock, settings(issuer));
    const b = verifierFor(issuer, clock, settings(issuer), locationKv(clock));
    expect(await a.verify(await signAt(issuer, clock, k1))).toMatchObject({ ok: true, keySource: "fetch" });
    await a.settle();
    // B's location reads the set A saved, and keeps it cached.
    expect(await b.verify(await signAt(issuer, clock, k1))).toMatchObject({ ok: true, keySource: "kv" });
    await b.settle();
    const k2 = await makeKey();
    await issuer.publish([k1, k2]);
    clock.advance(31);
    // A stamps, fetches and saves the set with k2 before B sees its first k2 token.
    expect(await a.verify(await signAt(issuer, clock, k2))).toMatchObject({ ok: true, keySource: "fetch" });
    await a.settle();
    const answers: string[] = [];
    for (const step of [0, 2, 3, 5, 10, 11]) {
      clock.advance(step);
      const result = await b.verify(await signAt(issuer, clock, k2));
      await b.settle();
      answers.push(result.ok ? "ok" : `${result.reason}:${result.detail}`);
    }
    // Within A's cooldown B's location still shows the old set: unavailable for now. Once
    // the cooldown is over B asks the issuer itself.
    expect(answers).toEqual([...Array(5).fill("jwks_unavailable:jwks_refreshing"), "ok"]);
  });

  it("another isolate's failed fetch: 503 here until this isolate may ask the issuer itself", async () => {
    const { issuer, clock, a, b } = await twoWarmIsolates();
    const k2 = await makeKey();
    clock.advance(31);
    await issuer.setMode("down");
    expect(await a.verify(await signAt(issuer, clock, k2))).toMatchObject({ reason: "jwks_unavailable" });
    await a.settle();
    clock.advance(1);
    expect(await b.verify(await signAt(issuer, clock, k2))).toMatchObject({
      reason: "jwks_unavailable",
      detail: "jwks_refreshing",
    });
    await issuer.setMode("ok");
    await issuer.publish([issuer.keys[0] as TestKey, k2]);
    clock.advance(30);
    expect(await b.verify(await signAt(issuer, clock, k2))).toMatchObject({ ok: true, keySource: "fetch" });
  });

  it("a kid the set another isolate fetched since does not have is refused as unknown: the issuer answered", async () => {
    const { issuer, clock, a, b } = await twoWarmIsolates();
    clock.advance(31);
    const forged = await makeKey();
    expect(await a.verify(await signAt(issuer, clock, forged))).toMatchObject({ detail: "kid_unknown" });
    await a.settle();
    clock.advance(1);
    expect(await b.verify(await signAt(issuer, clock, forged))).toMatchObject({
      reason: "token_invalid",
      detail: "kid_unknown",
    });
    expect(b.store.stats.fetches).toBe(0);
  });
});

describe("a set taken from KV for one unknown kid", () => {
  /**
   * An isolate holding k0 takes from KV, for a token signed with a new key a, the set another
   * isolate fetched `ageS` ago (k0 and a); the issuer has published b since. Then comes a token
   * signed with b, within the second that attempt holds the next one back.
   */
  async function kidAfterKvSet(ageS: number) {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const [k0, a, b] = [issuer.keys[0] as TestKey, await makeKey(), await makeKey()];
    const isolate = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, refresh_cooldown_s: 30 });
    expect(await isolate.verify(await signAt(issuer, clock, k0))).toMatchObject({ ok: true, keySource: "fetch" });
    await isolate.settle();
    clock.advance(120);
    const record = { v: 1, fetched_at: clock.ms - ageS * 1000, jwks_uri: `${issuer.url}/jwks`, retired: [] };
    await kv.put(`jwks:v1:${issuer.url}`, JSON.stringify({ ...record, keys: [k0.publicJwk, a.publicJwk] }));
    await issuer.publish([k0, a, b]);
    expect(await isolate.verify(await signAt(issuer, clock, a))).toMatchObject({ ok: true, keySource: "kv" });
    await isolate.settle();
    const answer = await isolate.verify(await signAt(issuer, clock, b));
    expect(isolate.store.stats.fetches).toBe(1);
    const later = async () => {
      clock.advance(1.5);
      return isolate.verify(await signAt(issuer, clock, b));
    };
    return { answer, later };
  }

  it("fetched more than a cooldown ago, it says nothing of a key published since: 503, and the isolate asks a second later", async () => {
    const { answer, later } = await kidAfterKvSet(60);
    expect(answer).toMatchObject({ ok: false, reason: "jwks_unavailable", detail: "jwks_refreshing", retryAfterS: 1 });
    expect(await later()).toMatchObject({ ok: true, keySource: "fetch" });
  });

  it("fetched within a cooldown, it is the issuer's answer, as this isolate's own fetch would be: kid_unknown", async () => {
    const { answer } = await kidAfterKvSet(10);
    expect(answer).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });
});

describe("an older KV record written late", () => {
  it("never replaces the newer set an isolate holds: no withdrawn key comes back", async () => {
    const issuer = await makeIssuer();
    const k1 = issuer.keys[0] as TestKey;
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: 0, cache_ttl_s: 300 };
    const recordKey = `jwks:v1:${issuer.url}`;
    const a = verifierFor(issuer, clock, settings);
    expect(await a.verify(await signAt(issuer, clock, k1))).toMatchObject({ ok: true });
    await a.settle();
    const older = (await kv.get(recordKey)) as string;
    const k2 = await makeKey();
    await issuer.publish([k2]);
    clock.advance(31);
    const b = verifierFor(issuer, clock, settings);
    expect(await b.verify(await signAt(issuer, clock, k2))).toMatchObject({ ok: true, keySource: "fetch" });
    await b.settle();
    // A slow writer's older record lands after B's; then B's set goes stale, and its refresh
    // finds the issuer down: only what it makes of KV's record decides.
    await kv.put(recordKey, older, { expirationTtl: 3600 });
    await issuer.setMode("down");
    clock.advance(301);
    expect(await b.verify(await signAt(issuer, clock, k2))).toMatchObject({ ok: true, keySource: "stale" });
    await b.settle();
    // (Its kid unknown while the issuer is down: refused as undecidable, never accepted.)
    expect(await b.verify(await signAt(issuer, clock, k1))).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    expect(await b.verify(await signAt(issuer, clock, k2))).toMatchObject({ ok: true, keySource: "stale" });
  });
});

describe("a key the issuer goes on to publish with its private part", () => {
  it.each([
    [3600, true],
    [0, false],
  ])("counts as withdrawn: with rotation_grace_s %i it is still accepted: %s", async (grace, accepted) => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const leaked = await makeAnyKey("ES256", "leaked");
    const other = issuer.keys[0] as TestKey;
    await issuer.publish([leaked, other]);
    const settings = { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: grace };
    const { verify, settle } = verifierFor(issuer, clock, settings);
    expect(await verify(await signAt(issuer, clock, leaked))).toMatchObject({ ok: true });
    await settle();
    // Now served with its private part: every reader of the set holds it.
    const privateJwk = { ...(await exportJWK(leaked.privateKey)), kid: "leaked", alg: "ES256", use: "sig" };
    const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
      method: "POST",
      body: JSON.stringify({ jwks: { keys: [privateJwk, other.publicJwk] } }),
    });
    expect(response.ok).toBe(true);
    clock.advance(31);
    // An unknown kid brings the new set in.
    expect(await verify(await signAt(issuer, clock, { ...other, kid: "unknown" }))).toMatchObject({ ok: false });
    await settle();
    expect((await verify(await signAt(issuer, clock, leaked))).ok).toBe(accepted);
  });
});

describe("a KV record is bound to its key source", () => {
  // A deployment (staging, or this one before its jwks_uri was corrected) filled KV with keys
  // from another jwks_uri; this deployment names the issuer's own jwks_uri, or uses discovery.
  it.each(["jwks_uri", "discovery"] as const)(
    "keys fetched from another jwks_uri are not trusted (this one: %s)",
    async (mode) => {
      const legit = await makeIssuer();
      const other = await makeIssuer(); // only its /jwks is used: keys this deployment must not trust
      const foreignKey = other.keys[0]!;
      const clock = new Clock();
      const before = verifierFor(legit, clock, { jwks_uri: `${other.url}/jwks` });
      expect(await before.verify(await signAt(legit, clock, foreignKey))).toMatchObject({ ok: true });
      await before.settle();

      const own = verifierFor(legit, clock, mode === "jwks_uri" ? { jwks_uri: `${legit.url}/jwks` } : {});
      // KV's record is a miss: this deployment fetches its own source, at once.
      expect(await own.verify(await signAt(legit, clock))).toMatchObject({ ok: true, keySource: "fetch" });
      expect(await own.verify(await signAt(legit, clock, foreignKey))).toMatchObject({
        ok: false,
        reason: "token_invalid",
        detail: "kid_unknown",
      });
      await own.settle();
      expect(own.store.stats.fetches).toBe(mode === "jwks_uri" ? 1 : 2);
      expect(await legit.stats()).toMatchObject({ discovery_fetches: mode === "jwks_uri" ? 0 : 1, jwks_fetches: 1 });
      // What it wrote names its own source, so the other deployment does not take it either.
      const stored = JSON.parse((await kv.get(`jwks:v1:${legit.url}`)) as string) as Record<string, unknown>;
      expect(stored).toMatchObject({ jwks_uri: `${legit.url}/jwks`, discovered: mode === "discovery" });
      clock.advance(10);
      const again = verifierFor(legit, clock, { jwks_uri: `${other.url}/jwks` });
      expect(await again.verify(await signAt(legit, clock, foreignKey))).toMatchObject({
        ok: true,
        keySource: "fetch",
      });
    },
  );

  it("a record that names no jwks_uri is a miss where one is configured", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const planted = await makeKey();
    await kv.put(`jwks:v1:${issuer.url}`, record(clock.ms, planted.publicJwk), { expirationTtl: 3600 });
    const { verify, store } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    // The record is a miss: the first token costs a fetch, and the planted key is never trusted.
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(await signAt(issuer, clock, planted))).toMatchObject({ ok: false, detail: "kid_unknown" });
    expect(store.stats.fetches).toBe(1);
  });

  it("another source's refresh stamp does not cool this one's down", async () => {
    const legit = await makeIssuer();
    const other = await makeIssuer();
    const clock = new Clock();
    const own = verifierFor(legit, clock, { jwks_uri: `${legit.url}/jwks` });
    expect(await own.verify(await signAt(legit, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await own.settle();
    // 31 s on, the other deployment refreshes for an unknown kid and stamps its attempt.
    clock.advance(31);
    const foreign = verifierFor(legit, clock, { jwks_uri: `${other.url}/jwks` });
    await foreign.verify(await signAt(legit, clock, await makeKey()));
    await foreign.settle();
    // 10 s after that stamp, past this isolate's own cooldown (and its own stamp), a new key.
    clock.advance(10);
    const next = await makeKey();
    await legit.publish([legit.keys[0]!, next]);
    expect(await own.verify(await signAt(legit, clock, next))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(own.store.stats.fetches).toBe(2);
  });
});

/**
 * An isolate that fetched the issuer's key `withdrawn` (cache_ttl_s 600, and `extra`); a
 * minute later the issuer replaced it with `successor`, and the isolate has seen no traffic in
 * the five hours since.
 */
async function idleHoursAfterWithdrawal(extra: Partial<OidcIssuerConfig>) {
  const issuer = await makeIssuer();
  const clock = new Clock();
  const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 600, ...extra };
  const withdrawn = issuer.keys[0]!;
  const idle = verifierFor(issuer, clock, settings);
  expect(await idle.verify(await signAt(issuer, clock, withdrawn))).toMatchObject({ ok: true, keySource: "fetch" });
  await idle.settle();
  clock.advance(60);
  const successor = await makeKey();
  await issuer.publish([successor]);
  clock.advance(5 * 3600);
  return { issuer, clock, settings, idle, withdrawn, successor };
}

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

  it("a key withdrawn right after an outage gets its grace: refreshes that failed meanwhile count as seeing it", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = {
      jwks_uri: `${issuer.url}/jwks`,
      cache_ttl_s: 600,
      max_stale_s: 86_400,
      rotation_grace_s: 600,
      refresh_cooldown_s: 30,
    };
    const k1 = issuer.keys[0]!;
    const { verify, settle } = verifierFor(issuer, clock, settings, false);
    expect(await verify(await signAt(issuer, clock, k1))).toMatchObject({ ok: true, keySource: "fetch" });
    // Three hours of outage: the stale set serves, and each refresh after a response fails.
    await issuer.setMode("down");
    for (let i = 0; i < 6; i++) {
      clock.advance(1800);
      expect(await verify(await signAt(issuer, clock, k1))).toMatchObject({ ok: true, keySource: "stale" });
      await settle();
    }
    const signedJustBefore = await signAt(issuer, clock, k1);
    // The issuer comes back having rotated k1 out.
    await issuer.setMode("ok");
    const k2 = await makeKey();
    await issuer.publish([k2]);
    clock.advance(31);
    expect(await verify(await signAt(issuer, clock, k2))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    expect(await verify(signedJustBefore)).toMatchObject({ ok: true });
    // And the window closes rotation_grace_s after the last failed refresh.
    clock.advance(600);
    expect(await verify(signedJustBefore)).toMatchObject({ ok: false, detail: "kid_unknown" });
  }, 30_000);

  it("a failed refresh while the held set had already expired gives a long-withdrawn key no grace, here or through KV", async () => {
    const { issuer, clock, settings, idle, withdrawn, successor } = await idleHoursAfterWithdrawal({
      max_stale_s: 3600,
      rotation_grace_s: 600,
      refresh_cooldown_s: 30,
    });
    // The held set expired four hours ago; one failed refresh…
    await issuer.setMode("down");
    expect(await idle.verify(await signAt(issuer, clock, successor))).toMatchObject({ reason: "jwks_unavailable" });
    await idle.settle();
    // …then the issuer is back.
    await issuer.setMode("ok");
    clock.advance(31);
    expect(await idle.verify(await signAt(issuer, clock, successor))).toMatchObject({ ok: true, keySource: "fetch" });
    await idle.settle();
    const refused = { ok: false, reason: "token_invalid", detail: "kid_unknown" };
    expect(await idle.verify(await signAt(issuer, clock, withdrawn))).toMatchObject(refused);
    const fresh = verifierFor(issuer, clock, settings);
    expect(await fresh.verify(await signAt(issuer, clock, withdrawn))).toMatchObject(refused);
  }, 30_000);

  it("a key withdrawn hours ago gets no new grace window when an idle isolate refreshes its stale set", async () => {
    // The issuer withdrew the key (say it leaked).
    const { issuer, clock, settings, idle, withdrawn, successor } = await idleHoursAfterWithdrawal({
      max_stale_s: 86_400,
      rotation_grace_s: 600,
    });
    // Far past the grace, its stale set is served and refreshed.
    expect(await idle.verify(await signAt(issuer, clock, successor))).toMatchObject({ ok: true, keySource: "fetch" });
    await idle.settle();
    expect(idle.store.stats.fetches).toBe(2);

    // The key was last seen published 5 h ago: it is not trusted again, here or from KV.
    const refused = { ok: false, reason: "token_invalid", detail: "kid_unknown" };
    expect(await idle.verify(await signAt(issuer, clock, withdrawn))).toMatchObject(refused);
    const stored = JSON.parse((await kv.get(`jwks:v1:${issuer.url}`)) as string) as { retired: unknown[] };
    expect(stored.retired).toEqual([]);
    const fresh = verifierFor(issuer, clock, settings);
    expect(await fresh.verify(await signAt(issuer, clock, withdrawn))).toMatchObject(refused);
  });

  it("a key withdrawn hours ago is refused by an idle isolate's first request: its set past its TTL is refreshed first", async () => {
    // The key leaked, and the issuer withdrew it.
    const {
      issuer,
      clock,
      idle,
      withdrawn: leaked,
    } = await idleHoursAfterWithdrawal({ max_stale_s: 86_400, rotation_grace_s: 0 });
    // Whoever holds it sends several tokens at once: none is taken from the old set.
    const forged = await Promise.all([1, 2, 3].map(() => signAt(issuer, clock, leaked)));
    for (const result of await Promise.all(forged.map((token) => idle.verify(token))))
      expect(result).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    expect(idle.store.stats.fetches).toBe(2);
  });

  it("a token in the verified-token cache is refused once the set past its TTL is refreshed without its key", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, rotation_grace_s: 0 };
    const leaked = issuer.keys[0]!;
    const { verify, settle } = verifierFor(issuer, clock, settings, true, undefined, 100);
    expect(await verify(await signAt(issuer, clock, leaked))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    clock.advance(250);
    const token = await signAt(issuer, clock, leaked);
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "memory" });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    await settle();
    await issuer.publish([await makeKey()]);
    clock.advance(60); // the set is past its TTL (310 s old); the cached entry is 60 s old
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });

  it("when KV and memory disagree on when a key was retired, the earlier time counts", async () => {
    const { issuer, clock, idle, withdrawn, successor } = await idleHoursAfterWithdrawal({
      max_stale_s: 86_400,
      rotation_grace_s: 600,
    });
    // Now KV holds a newer set whose writer dated the retirement 10 s ago (an isolate
    // that noticed late: one running an older version, say).
    await kv.put(
      `jwks:v1:${issuer.url}`,
      JSON.stringify({
        v: 1,
        fetched_at: clock.ms - 5000,
        jwks_uri: `${issuer.url}/jwks`,
        keys: [successor.publicJwk],
        retired: [{ jwk: withdrawn.publicJwk, retired_at: clock.ms - 10_000 }],
      }),
      { expirationTtl: 3600 },
    );
    // This isolate last saw the key published 5 h ago: its reckoning wins, and KV's set is used.
    expect(await idle.verify(await signAt(issuer, clock, successor))).toMatchObject({ ok: true, keySource: "kv" });
    expect(await idle.verify(await signAt(issuer, clock, withdrawn))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
    await idle.settle();
    expect(idle.store.stats.fetches).toBe(1);
  });

  it("an endpoint serving new keys on every fetch cannot grow the retired list: the latest retired are kept", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, settle, store } = verifierFor(issuer, clock, {
      jwks_uri: `${issuer.url}/jwks`,
      max_jwks_bytes: 1_048_576,
    });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    await settle();
    const batches: TestKey[][] = [];
    for (let round = 0; round < 4; round++) {
      // 100 brand-new keys (a key set's most); a stranger's unknown kid makes the refresh fetch them.
      batches.push(await Promise.all(Array.from({ length: 100 }, () => makeKey())));
      await issuer.publish(batches[round]!);
      clock.advance(31);
      await verify(await signAt(issuer, clock, await makeKey()));
      await settle();
    }
    expect(store.stats.fetches).toBe(5);
    const record = JSON.parse((await kv.get(`jwks:v1:${issuer.url}`)) as string) as {
      keys: { kid: string }[];
      retired: { jwk: { kid: string } }[];
    };
    const kids = (batch: TestKey[]) => batch.map((k) => k.kid).sort();
    expect(record.keys.map((k) => k.kid).sort()).toEqual(kids(batches[3]!));
    expect(record.retired.map((r) => r.jwk.kid).sort()).toEqual(kids(batches[2]!));
    // In memory too: the last set retired is in its grace window, older ones are gone.
    expect(await verify(await signAt(issuer, clock, batches[2]![0]))).toMatchObject({ ok: true });
    expect(await verify(await signAt(issuer, clock, batches[1]![0]))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
  }, 30_000);

  it("a bad signature under a known kid costs no refresh, so it cannot hold a rotation back; a key reusing a kid is picked up at the next refresh", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, settle, store } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300 });
    const first = issuer.keys[0]!;
    expect(await verify(await signAt(issuer, clock, first))).toMatchObject({ ok: true });
    await settle();
    const signature = { ok: false, reason: "token_invalid", detail: "signature" };
    // Forged under the known kid, past the cooldown: refused, and no fetch.
    clock.advance(31);
    const forger = await makeKey("ES256", first.kid);
    expect(await verify(await signAt(issuer, clock, forger))).toMatchObject(signature);
    await settle();
    expect(store.stats.fetches).toBe(1);
    // So the issuer's next key is fetched on first sight, not a cooldown later.
    const next = await makeKey();
    await issuer.publish([first, next]);
    expect(await verify(await signAt(issuer, clock, next))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    expect(store.stats.fetches).toBe(2);
    // New key material under an old kid is refused until the set is next refreshed…
    const reused = await makeKey("ES256", first.kid);
    await issuer.publish([reused, next]);
    clock.advance(31);
    expect(await verify(await signAt(issuer, clock, reused))).toMatchObject(signature);
    // …once past its TTL (cache_ttl_s), when it is refreshed before it is used.
    clock.advance(300);
    expect(await verify(await signAt(issuer, clock, reused))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(store.stats.fetches).toBe(3);
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

/**
 * A fetch that passes its first call to the issuer (the set), refuses the second connection, and
 * leaves every later one unanswered until `release` (then resets it): an outage after a set.
 */
function setThenRefusedThenHung() {
  const counter = { calls: 0 };
  const hung = held<void>();
  const fetcher: Fetcher = async (input, init) => {
    counter.calls += 1;
    if (counter.calls === 1) return fetch(input, init);
    if (counter.calls === 2) throw new TypeError("connection refused");
    await hung.promise;
    throw new TypeError("connection reset");
  };
  return { counter, fetcher, release: () => hung.resolve() };
}

describe("failure of the key endpoint", () => {
  it("an unknown kid while the issuer fails is 503 jwks_unavailable until it answers: it says nothing against the token", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, refresh_cooldown_s: 30 };
    const { verify, store } = verifierFor(issuer, clock, settings, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    const next = await makeKey();
    await issuer.publish([issuer.keys[0] as TestKey, next]);
    await issuer.setMode("status500");
    clock.advance(31);
    // The refresh it starts fails; within the cooldown that follows, no new one is tried.
    for (let i = 0; i < 2; i++) {
      expect(await verify(await signAt(issuer, clock, next))).toMatchObject({
        ok: false,
        reason: "jwks_unavailable",
        detail: "jwks_http_status",
      });
    }
    expect(store.stats.fetches).toBe(2);
    // The keys held still verify meanwhile.
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });

    await issuer.setMode("ok");
    clock.advance(31);
    expect(await verify(await signAt(issuer, clock, next))).toMatchObject({ ok: true, keySource: "fetch" });
    // Once the issuer has answered, a kid it does not publish is the token's fault again.
    clock.advance(31);
    const stranger = await makeKey();
    expect(await verify(await signAt(issuer, clock, stranger))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
  });

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

  // Another isolate saved a newer set to KV; then the issuer went down. When this isolate's own
  // set runs out (ttl 300 + max-stale 600), its refresh takes KV's newer set: without a fetch
  // when that set is fresh, after one failed fetch when it is past its TTL.
  it.each([
    ["fresh", 850, 1, "kv"],
    ["past its TTL", 400, 2, "stale"],
  ] as const)(
    "an isolate whose own set expired serves a newer set from KV that is %s",
    async (_label, savedAt, fetches, keySource) => {
      const issuer = await makeIssuer();
      const clock = new Clock();
      const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, max_stale_s: 600 };
      const early = verifierFor(issuer, clock, settings);
      expect(await early.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
      await early.settle();
      // Another isolate starts, finds KV's set past its TTL and refreshes it before using it.
      clock.advance(savedAt);
      const later = verifierFor(issuer, clock, settings);
      expect(await later.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
      await later.settle();
      expect(later.store.stats.fetches).toBe(1);

      await issuer.setMode("down");
      clock.advance(910 - savedAt);
      expect(await early.verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource });
      await early.settle();
      expect(early.store.stats.fetches).toBe(fetches);
      expect(await issuer.stats()).toMatchObject({ jwks_fetches: 1 + fetches });
    },
  );

  it("a set past its TTL is refreshed before it is used, so it is not served stale while the issuer answers", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, max_stale_s: 600 };
    const { verify, settle, store } = verifierFor(issuer, clock, settings, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
    clock.advance(301);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(store.stats.fetches).toBe(2);
    await settle();
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
  });

  it("a set within the last stretch before its TTL is refreshed after the response: steady traffic never waits", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    // TTL 300 s: the last tenth (30 s) before it.
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, max_stale_s: 600 };
    const { verify, settle, store } = verifierFor(issuer, clock, settings, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    clock.advance(269);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
    await settle();
    expect(store.stats.fetches).toBe(1);
    clock.advance(2); // 271 s: within 30 s of the TTL
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
    await settle();
    expect(store.stats.fetches).toBe(2);
    // The set is fetched anew: 300 s after the first fetch it is fresh, answered from memory.
    clock.advance(30);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
    expect(store.stats.fetches).toBe(2);
  });

  it("once a refresh of the set past its TTL has failed, later ones run after the response: an outage holds no request every cooldown", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const outage = setThenRefusedThenHung();
    const settings = {
      jwks_uri: `${issuer.url}/jwks`,
      cache_ttl_s: 300,
      refresh_cooldown_s: 30,
      fetch_timeout_ms: 30_000,
    };
    const { verify } = verifierFor(issuer, clock, settings, false, outage.fetcher);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    clock.advance(301);
    // The first request past the TTL waits for the refresh, which fails at once: stale.
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "stale" });
    clock.advance(31);
    // The next attempt hangs; the request does not wait for it (it would for 60 s).
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "stale" });
    expect(outage.counter.calls).toBe(3);
    outage.release();
  });

  it("after the clock stepped back behind the set's fetch, an outage still holds no request every cooldown", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const outage = setThenRefusedThenHung();
    const settings = { jwks_uri: `${issuer.url}/jwks`, refresh_cooldown_s: 30, fetch_timeout_ms: 30_000 };
    const { verify } = verifierFor(issuer, clock, settings, false, outage.fetcher);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    clock.advance(-3600); // the set now reads as fetched in the future: refreshed before use
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "stale" });
    clock.advance(31);
    // The issuer hangs now; the request does not wait for it (it would for 60 s).
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "stale" });
    expect(outage.counter.calls).toBe(3);
    outage.release();
  });

  it("a failure long past says nothing of the issuer now: an idle isolate refreshes before use, and refuses a key withdrawn since", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const leaked = issuer.keys[0] as TestKey;
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 600, refresh_cooldown_s: 30 };
    const { verify, settle } = verifierFor(issuer, clock, settings, false);
    expect(await verify(await signAt(issuer, clock, leaked))).toMatchObject({ ok: true, keySource: "fetch" });
    // Just past the TTL, a blip: the refresh fails once, and the set serves on, stale.
    clock.advance(601);
    await issuer.setMode("down");
    expect(await verify(await signAt(issuer, clock, leaked))).toMatchObject({ ok: true, keySource: "stale" });
    await settle();
    // The issuer recovers and withdraws the key (past rotation_grace_s by the time it is used);
    // the isolate sits idle for five hours.
    await issuer.setMode("ok");
    await issuer.publish([await makeKey()]);
    clock.advance(5 * 3600);
    expect(await verify(await signAt(issuer, clock, leaked))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
  });

  it("a token in the verified-token cache at a route that does not take its issuer waits for no refresh of that issuer's keys", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks` };
    const { verifier, verify, settle, store } = verifierFor(issuer, clock, settings, false, undefined, 100);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    clock.advance(400);
    const token = await signAt(issuer, clock);
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "memory" });
    await settle();
    clock.advance(201); // the set is past its 600 s TTL; the token is still cached
    expect(await verifier.verify(token, ["other"], undefined, () => undefined)).toMatchObject({
      ok: false,
      reason: "issuer_unknown",
      detail: "issuer_not_accepted_by_route",
    });
    expect(store.stats.fetches).toBe(1);
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
    // k2's import starts on the set held, and is held until k3's unknown kid has made a refresh
    // adopt a new set (k3's token answered from it): k2's key lands in the import map only after.
    // Only that first import is held: the refresh imports every key of the set it fetched too.
    const k2Importing = held<void>();
    const refreshLanded = held<void>();
    const realImport = crypto.subtle.importKey.bind(crypto.subtle) as (...a: unknown[]) => Promise<CryptoKey>;
    let holding = true;
    const heldImport = vi.spyOn(crypto.subtle, "importKey").mockImplementation((async (...args: unknown[]) => {
      if (holding && (args[1] as JsonWebKey).x === k2.publicJwk.x) {
        holding = false;
        k2Importing.resolve();
        await refreshLanded.promise;
      }
      return realImport(...args);
    }) as never);
    const t2 = await signAt(issuer, clock, k2);
    const answer2 = verify(t2);
    await k2Importing.promise;
    const r3 = await verify(await signAt(issuer, clock, k3));
    refreshLanded.resolve();
    const r2 = await answer2;
    heldImport.mockRestore();
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
    const { verifier } = cached(issuer, clock, { clock_skew_s: 0 });
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
    const { verifier } = verifierFor(issuer, clock, {}, false, undefined, 50);
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

describe("a clock that steps back", () => {
  it("grants a withdrawn key no new grace after its window closed", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, rotation_grace_s: 600, cache_ttl_s: 3600 };
    const { verify, settle } = verifierFor(issuer, clock, settings, false);
    const withdrawn = issuer.keys[0] as TestKey;
    expect(await verify(await signAt(issuer, clock, withdrawn))).toMatchObject({ ok: true });
    const successor = await makeKey();
    await issuer.publish([successor]);
    clock.advance(31);
    expect(await verify(await signAt(issuer, clock, successor))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    clock.advance(300);
    // Within its grace window: still accepted.
    expect(await verify(await signAt(issuer, clock, withdrawn))).toMatchObject({ ok: true });
    // The window closes; then the clock steps back an hour, to before the key was withdrawn.
    clock.advance(301);
    clock.advance(-3600);
    expect(await verify(await signAt(issuer, clock, withdrawn))).toMatchObject({
      ok: false,
      reason: "token_invalid",
    });
  });

  it("does not stretch the refresh cooldown: a kid published meanwhile is fetched", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const { verify, settle, store } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` });
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    clock.advance(-3600);
    const next = await makeKey();
    await issuer.publish([issuer.keys[0] as TestKey, next]);
    expect(await verify(await signAt(issuer, clock, next))).toMatchObject({ ok: true, keySource: "fetch" });
    expect(store.stats.fetches).toBe(2);
  });

  it("takes a set fetched 'in the future' as past its TTL: refreshed from the issuer before it is used", async () => {
    const issuer = await makeIssuer();
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300 };
    const { verify, settle, store } = verifierFor(issuer, clock, settings);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    clock.advance(-86_400);
    // Its age cannot be told: it is refreshed, not taken as younger than when it was fetched.
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    expect(store.stats.fetches).toBe(2);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true, keySource: "memory" });
  });
});
