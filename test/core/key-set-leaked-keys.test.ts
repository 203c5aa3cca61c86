// A key published with its private part is leaked for good: under any kid, beside its public
// half, and after the issuer takes the private part down again. Only a private member that
// holds something counts (`"d": null` holds nothing), and only a record that says so makes an
// empty set in KV the issuer's answer.
import { exportJWK, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { KeySetFetchError, keyMaterialOf, usableKeys } from "../../src/core/jwks/fetch-key-set";
import { IssuerKeyStore } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import { makeKey, type TestKey } from "../support/issuers";
import { kv, readRecord, T0, uniqueIssuer, world } from "../support/key-store-world";
import { settleDeferred } from "../support/waiting";

/** A lookup's answer in one word, so a failure shows the refusal's reason and detail. */
const said = (r: { ok: boolean; reason?: string; detail?: string }) => (r.ok ? "ok" : `${r.reason}/${r.detail}`);

/** The same number, written with one leading zero byte (an encoding the runtime's import accepts). */
function withLeadingZero(b64: string): string {
  const binary = atob(b64.replace(/-/g, "+").replace(/_/g, "/"));
  return btoa(`\0${binary}`).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The key as an issuer publishes it by mistake: public members and private ones. */
async function withPrivatePart(key: TestKey, kid = key.kid): Promise<JWK> {
  return { ...(await exportJWK(key.privateKey)), kid, alg: key.alg, use: "sig" };
}

describe("a key published with its private part", () => {
  it("is not kept current by a public listing of the same key beside it", async () => {
    const a = await makeKey("ES256", "a");
    const w = world({ cache_ttl_s: 300, rotation_grace_s: 0 });
    w.issuer.keys = [a.publicJwk];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok");
    w.issuer.keys = [a.publicJwk, await withPrivatePart(a)];
    w.clock.ms = T0 + 301_000;
    expect(said(await edge.lookup("a"))).toBe("token_invalid/kid_unknown");
    expect(w.issuer.fetches).toBe(2);
  });

  it("is leaked under every kid it is listed under", async () => {
    const a = await makeKey("ES256", "a");
    const b = await makeKey("ES256", "b");
    const w = world({ cache_ttl_s: 300, rotation_grace_s: 0 });
    w.issuer.keys = [a.publicJwk, await withPrivatePart(a, "a-backup"), b.publicJwk];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("token_invalid/kid_unknown");
    expect(said(await edge.lookup("b"))).toBe("ok");
  });

  it("stays leaked once the issuer publishes its public half alone again, in this isolate and in others", async () => {
    const a = await makeKey("ES256", "a");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0 });
    w.issuer.keys = [a.publicJwk];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok");
    w.issuer.keys = [await withPrivatePart(a)];
    w.clock.ms = T0 + 301_000;
    expect(said(await edge.lookup("a"))).toBe("token_invalid/kid_unknown");
    // The issuer takes the private part down; whoever read it still holds it.
    w.issuer.keys = [a.publicJwk];
    w.clock.ms += 31_000;
    expect(said(await edge.lookup("a"))).toBe("token_invalid/kid_unknown");
    expect(w.issuer.fetches).toBe(3);
    // The record in KV carries the leak to an isolate that never saw it.
    expect((await w.record())?.leaked).toHaveLength(1);
    w.clock.ms += 1000;
    expect(said(await w.isolate().lookup("a"))).toBe("token_invalid/kid_unknown");
  });

  it.each([
    ["RSA n with a leading zero byte", "RS256", (j: JWK) => ({ ...j, n: withLeadingZero(j.n as string) })],
    ["RSA e as AAEAAQ", "RS256", (j: JWK) => ({ ...j, e: "AAEAAQ" })],
    ["an EC x with a leading zero byte", "ES256", (j: JWK) => ({ ...j, x: withLeadingZero(j.x as string) })],
  ] as const)(
    "is the same key however its numbers are spelt (%s), which the runtime imports alike",
    async (_label, alg, respell) => {
      const a = await makeKey(alg, "a");
      // Beside its public half in one set, the leak spelt otherwise.
      expect(usableKeys({ keys: [respell(await withPrivatePart(a, "backup")) as JWK, a.publicJwk] }).keys).toEqual([]);
      // And once leaked, the public half alone spelt otherwise does not make it current again.
      const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0 });
      const edge = w.isolate();
      const lookup = async () => {
        const pending: Promise<unknown>[] = [];
        const result = await edge.store.lookup("a", alg, (work) => pending.push(work));
        await settleDeferred(pending);
        return said(result);
      };
      w.issuer.keys = [a.publicJwk];
      expect(await lookup()).toBe("ok");
      w.issuer.keys = [await withPrivatePart(a)];
      w.clock.ms = T0 + 301_000;
      expect(await lookup()).toBe("token_invalid/kid_unknown");
      w.issuer.keys = [respell(a.publicJwk) as JWK];
      w.clock.ms += 31_000;
      expect(await lookup()).toBe("token_invalid/kid_unknown");
    },
  );

  it('is not leaked when its private members are written as null or empty ("d": null holds nothing)', async () => {
    const a = await makeKey("ES256", "a");
    const w = world({ cache_ttl_s: 300, rotation_grace_s: 0 });
    w.issuer.keys = [a.publicJwk];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok");
    w.issuer.keys = [{ ...a.publicJwk, d: null, p: "" } as unknown as JWK];
    w.clock.ms = T0 + 301_000;
    expect(said(await edge.lookup("a"))).toBe("ok");
    expect(w.issuer.fetches).toBe(2);
  });
});

describe("a set without usable keys", () => {
  it("is the issuer's answer only when a key in it was leaked; otherwise a failed fetch", async () => {
    const a = await makeKey("ES256", "a");
    const failure = (doc: unknown) => {
      try {
        return usableKeys(doc);
      } catch (error) {
        return error instanceof KeySetFetchError ? error.message : "other";
      }
    };
    expect(failure({ keys: [] })).toBe("no_usable_keys");
    expect(failure({ keys: [{ kty: "oct", k: "c2VjcmV0" }] })).toBe("no_usable_keys");
    // A private key for encryption leaked too: its material goes with it, whatever its use.
    expect(failure({ keys: [{ ...(await withPrivatePart(a)), use: "enc" }] })).toMatchObject({ keys: [] });
    expect(failure({ keys: [await withPrivatePart(a)] })).toMatchObject({ keys: [] });
    // No real key has a member this long (RSA-16384's modulus is 2,731 characters): skipped
    // unread, so a leak the issuer makes up cannot grow what is remembered.
    expect(failure({ keys: [{ kty: "RSA", n: "A".repeat(2801), e: "AQAB", d: "x" }] })).toBe("no_usable_keys");
    expect(failure({ keys: [{ kty: "RSA", n: "A".repeat(2800), e: "AQAB", d: "x" }] })).toMatchObject({
      keys: [],
      leaked: [expect.any(String)],
    });
  });

  it("is taken from KV only with the leak it records: a record of no keys that says nothing is a miss", async () => {
    const a = await makeKey("ES256", "a");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30 });
    w.issuer.keys = [a.publicJwk];
    await w.stamp(T0 - 1500);
    await w.putRecord(T0 - 1000, []);
    expect(said(await w.isolate().lookup("a"))).toBe("ok");
    expect(w.issuer.fetches).toBe(1);
    // The fetched set has replaced the empty one.
    expect(await w.record()).toMatchObject({ fetched_at: T0, jwks_uri: w.jwksUri, keys: [{ kid: "a" }] });
  });
});

/** An issuer found by discovery, whose jwks_uri a test moves, and one isolate's key store. */
function discoveryWorld() {
  const iss = uniqueIssuer().issuer;
  const policy = compilePolicy({
    version: 1,
    issuers: { idp: { kind: "oidc", issuer: iss, audiences: ["https://api.test"], rotation_grace_s: 0 } },
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
  });
  const clock = { ms: T0 };
  const docs = new Map<string, unknown>();
  const at = { jwksUri: `${iss}/jwks-1` };
  const fetcher = async (input: string) => {
    if (input === `${iss}/.well-known/openid-configuration`)
      return Response.json({ issuer: iss, jwks_uri: at.jwksUri });
    const doc = docs.get(input);
    return doc ? Response.json(doc) : new Response("no", { status: 404 });
  };
  const store = new IssuerKeyStore(policy.issuers.get("idp")!, { fetch: fetcher, kv, now: () => clock.ms });
  const lookup = async (kid: string) => {
    const pending: Promise<unknown>[] = [];
    const answer = await store.lookup(kid, "ES256", (work) => pending.push(work));
    await settleDeferred(pending);
    return answer;
  };
  return { iss, clock, docs, at, lookup };
}

/** What another isolate saved on seeing `leaked` leak: a set of `kept`, older than T0. */
async function saveLeakSeenElsewhere(w: ReturnType<typeof world>, leaked: TestKey, kept: TestKey): Promise<string> {
  const material = keyMaterialOf(leaked.publicJwk as Record<string, unknown>);
  await w.putRecord(T0 - 5000, [kept.publicJwk], { leaked: [material] });
  return material;
}

describe("a leak seen in one refresh", () => {
  it("counts when discovery then moves to a new jwks_uri that lists the key's public half", async () => {
    const a = await makeKey("ES256", "a");
    const c = await makeKey("ES256", "c");
    const w = discoveryWorld();
    w.docs.set(`${w.iss}/jwks-1`, { keys: [a.publicJwk] });
    expect(said(await w.lookup("a"))).toBe("ok");
    // The old URI publishes `a` with its private part; the issuer moved to a new URI listing
    // `a`'s public half and a new `c`. A token with kid `c` brings the refresh: remembered URI
    // (the leak seen, no `c`), discovery, new URI.
    w.docs.set(`${w.iss}/jwks-1`, { keys: [await withPrivatePart(a)] });
    w.docs.set(`${w.iss}/jwks-2`, { keys: [a.publicJwk, c.publicJwk] });
    w.at.jwksUri = `${w.iss}/jwks-2`;
    w.clock.ms += 60_000;
    expect(said(await w.lookup("c"))).toBe("ok");
    expect(said(await w.lookup("a"))).toBe("token_invalid/kid_unknown");
    const record = await readRecord(w.iss);
    expect(record?.leaked).toEqual([keyMaterialOf(a.publicJwk as Record<string, unknown>)]);
  });

  it("read from KV, withdraws the key from the set held at once, though that set is newer and the issuer down", async () => {
    const a = await makeKey("ES256", "a");
    const b = await makeKey("ES256", "b");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0 });
    w.issuer.keys = [a.publicJwk, b.publicJwk];
    const edge = w.isolate();
    const first = await edge.lookup("a");
    expect(said(first)).toBe("ok");
    const keyA = (first as { keys: CryptoKey[] }).keys[0] as CryptoKey;
    // Another isolate saw the leak and saved it, in a record older than this isolate's set.
    await saveLeakSeenElsewhere(w, a, b);
    // Mid-incident the issuer is down: the refresh reads KV, its fetch fails, the set serves on.
    w.issuer.down = true;
    w.clock.ms = T0 + 301_000;
    expect(said(await edge.lookup("b"))).toBe("ok");
    // Not verified with: unknown now, and the issuer cannot be asked about it (503, not 401).
    expect(said(await edge.lookup("a"))).toBe("jwks_unavailable/jwks_http_status");
    // Nor are tokens it verified earlier trusted from the verified-token cache.
    expect(edge.store.trusts(keyA, w.clock.ms)).toBe(false);
  });

  it("is carried on by an isolate that read it from KV, though it kept its own newer set", async () => {
    const a = await makeKey("ES256", "a");
    const b = await makeKey("ES256", "b");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0 });
    w.issuer.keys = [a.publicJwk, b.publicJwk];
    const other = w.isolate();
    expect(said(await other.lookup("b"))).toBe("ok");
    // Another isolate saw the leak and saved it, in a record older than this isolate's set.
    const material = await saveLeakSeenElsewhere(w, a, b);
    // The issuer has taken the private part down; this isolate's refresh reads KV, keeps the
    // set it fetches, and must neither trust `a` nor drop the leak from what it saves.
    w.clock.ms = T0 + 301_000;
    expect(said(await other.lookup("a"))).toBe("token_invalid/kid_unknown");
    expect((await w.record())?.leaked).toEqual([material]);
  });
});

describe("a leak another isolate saved, against this isolate's own set and its writes", () => {
  it("counts the record's earlier retirement of the leaked key, here and in the record written back", async () => {
    const leaked = await makeKey("ES256", "l");
    const b = await makeKey("ES256", "b");
    const w = world({ cache_ttl_s: 600, refresh_cooldown_s: 30, rotation_grace_s: 3600 });
    w.issuer.keys = [leaked.publicJwk, b.publicJwk];
    const edge = w.isolate();
    expect(said(await edge.lookup("b"))).toBe("ok");
    // Another isolate saw the private part 5 s before this one's fetch, and retired the key then.
    await w.putRecord(T0 - 5_000, [b.publicJwk], {
      retired: [{ jwk: leaked.publicJwk, retired_at: T0 - 5_000 }],
      leaked: [keyMaterialOf(leaked.publicJwk as Record<string, unknown>)],
    });
    // Past the TTL: the refresh reads that (older) record first; its leak withdraws the key.
    w.clock.ms = T0 + 601_000;
    expect(said(await edge.lookup("b"))).toBe("ok");
    const record = (await w.record()) as { retired: { jwk: JWK; retired_at: number }[] };
    expect(record.retired.filter((r) => r.jwk.kid === "l").map((r) => r.retired_at)).toEqual([T0 - 5_000]);
    // Its grace runs from then: over at T0 + 3,595 s, not 600 s later.
    w.clock.ms = T0 + 3_596_000;
    expect(said(await edge.lookup("l"))).toBe("token_invalid/kid_unknown");
  });

  it("is not dropped from KV by a refresh that read KV before it was saved and writes after", async () => {
    const leaked = await makeKey("ES256", "l");
    const k = await makeKey("ES256", "k");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0 });
    w.issuer.keys = [leaked.publicJwk, k.publicJwk];
    const slow = w.isolate();
    const release = w.hold();
    // This isolate's refresh has read KV (nothing yet) and waits for the issuer's answer.
    const answered = slow.lookup("k");
    await w.asked(1);
    // Meanwhile another isolate saw the private part and saved the leak.
    const material = keyMaterialOf(leaked.publicJwk as Record<string, unknown>);
    await w.putRecord(T0, [k.publicJwk], { leaked: [material] });
    release();
    expect(said(await answered)).toBe("ok");
    // The set written after it carries the leak on; the key is refused here and in a new isolate.
    expect((await w.record())?.leaked).toEqual([material]);
    expect(said(await slow.lookup("l"))).toBe("token_invalid/kid_unknown");
    expect(said(await w.isolate().lookup("l"))).toBe("token_invalid/kid_unknown");
  });
});
