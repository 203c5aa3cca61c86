// Checks of src/core/jwks/* at their edges, each failing if its one rule moves: boundaries (a
// kid of 256 characters, a body of exactly max_jwks_bytes, a set at exactly its TTL), entries
// the filter refuses by their numbers (so none takes a usable key's place under the 100-key cap),
// answers other than 200, a fetch reported aborted, a leak beside keys the runtime cannot
// import, and KV records checked as strictly as a fetched set (jwks_uri, leaks, the leak cap).
// Isolates are IssuerKeyStores on an injected clock, sharing the runtime's real KV; the issuer
// is scripted (key-store-world), or a fetcher a test writes where it needs other answers.
import type { JWK } from "jose";
import { describe, expect, it } from "vitest";
import { type Fetcher, keyMaterialOf } from "../../src/core/jwks/fetch-key-set";
import { IssuerKeyStore, type KeyLookup } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { b64url, makeKey } from "../support/issuers";
import { kv, publicJwk, readRecord, T0, uniqueIssuer, world } from "../support/key-store-world";
import { scriptedIssuer } from "../support/scripted-issuer";
import { settleDeferred } from "../support/waiting";

/** A lookup's answer in one word, so a failure shows the refusal's reason and detail. */
const said = (r: KeyLookup) => (r.ok ? `ok/${r.source}` : `${r.reason}/${r.detail}`);

function bytesOf(segment: string): Uint8Array {
  return Uint8Array.from(atob(segment.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
}

/** The kids of the set saved in KV (undefined: none saved). */
const savedKids = async (w: ReturnType<typeof world>) =>
  ((await w.record())?.keys as JWK[] | undefined)?.map((key) => key.kid);

/** One isolate's key store for an issuer only `fetcher` serves, on an injected clock. */
function storeAnswering(fetcher: Fetcher, settings: Partial<OidcIssuerConfig> = {}) {
  const { issuer, jwksUri } = uniqueIssuer();
  const policy = compilePolicy({
    version: 1,
    issuers: { idp: { kind: "oidc", issuer, jwks_uri: jwksUri, audiences: ["https://api.test"], ...settings } },
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
  });
  const clock = { ms: T0 };
  const store = new IssuerKeyStore(policy.issuers.get("idp")!, { fetch: fetcher, kv, now: () => clock.ms });
  const lookup = async (kid: string | undefined, alg = "ES256") => {
    const pending: Promise<unknown>[] = [];
    const answer = await store.lookup(kid, alg, (work) => pending.push(work));
    await settleDeferred(pending);
    return answer;
  };
  return { issuer, clock, store, lookup, record: () => readRecord(issuer) };
}

describe("entries the filter refuses by their numbers take no place under the 100-key cap", () => {
  // The runtime would refuse most of these at import too, but only after the cap had counted
  // them: 100 of them listed first would push the set's one real key out, and a set the issuer
  // publishes correctly would be refused as one without usable keys.
  const RSA_N = async () => (await makeKey("RS256")).publicJwk.n as string;
  const REFUSED: Record<string, (i: number) => Promise<JWK>> = {
    "an RSA key with e = 1": async (i) => ({ kty: "RSA", kid: `weak-${i}`, n: await RSA_N(), e: "AQ" }),
    "an RSA key with an even e (65536)": async (i) => ({ kty: "RSA", kid: `weak-${i}`, n: await RSA_N(), e: "AQAA" }),
    // 256 bytes, but the top bit clear: a modulus of at most 2047 bits (RFC 7518 §3.3 wants 2048).
    "an RSA key whose 256-byte modulus is under 2048 bits": async (i) => {
      const n = bytesOf(await RSA_N());
      n[0] = (n[0] as number) & 0x7f;
      return { kty: "RSA", kid: `weak-${i}`, n: b64url(n), e: "AQAB" };
    },
    // 33 bytes: not RFC 8037's spelling of an Ed25519 key (nor a key the runtime imports).
    "an Ed25519 key of 44 base64url characters": async (i) => ({
      kty: "OKP",
      crv: "Ed25519",
      kid: `weak-${i}`,
      x: `${(await makeKey("EdDSA")).publicJwk.x}A`,
    }),
  };

  it.each(Object.keys(REFUSED))("%s, 100 times before the signing key: the key is kept", async (name) => {
    const make = REFUSED[name] as (i: number) => Promise<JWK>;
    const first = await make(0);
    // The same entry under 100 kids: generating 100 RSA keys would only slow the test.
    const refused = Array.from({ length: 100 }, (_, i) => ({ ...first, kid: `weak-${i}` }));
    const a = await publicJwk("a");
    const w = world({});
    w.issuer.keys = [...refused, a];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok/fetch");
    // Dropped on arrival: its kid is unknown (no key to try), and the set saved holds the real key only.
    expect(said(await edge.lookup("weak-0"))).toBe("token_invalid/kid_unknown");
    expect(await savedKids(w)).toEqual(["a"]);
  });
});

describe("a key-set answer other than 200", () => {
  // Only a 200 is the issuer's set: a 203 is a proxy's rewrite of it, a 206 a part of it, a 201
  // or 202 no answer to a GET of it. Taken, it would replace the set held (and KV's) with keys
  // the issuer may not publish.
  it.each([201, 202, 203, 206])(
    "%i with a set in its body: jwks_http_status, the good set serves on",
    async (status) => {
      const good = await publicJwk("good");
      const planted = await publicJwk("planted");
      let answer = () => Response.json({ keys: [good] });
      const edge = storeAnswering(async () => answer(), { cache_ttl_s: 300, refresh_cooldown_s: 30 });
      expect(said(await edge.lookup("good"))).toBe("ok/fetch");
      const saved = await edge.record();

      answer = () => Response.json({ keys: [planted] }, { status });
      edge.clock.ms += 31_000;
      expect(said(await edge.lookup("planted"))).toBe("jwks_unavailable/jwks_http_status");
      expect(said(await edge.lookup("good"))).toBe("ok/memory");
      expect(await edge.record()).toEqual(saved);
    },
  );
});

describe("max_jwks_bytes is a bound the set may reach", () => {
  // A set of exactly max_jwks_bytes is within it, one byte more is not: whether the length is
  // declared (content-length) or only counted as the body streams in.
  const sized = async (bytes: number, declared: boolean) => {
    const text = JSON.stringify({ keys: [await publicJwk("k1")] });
    const body = text.padEnd(bytes, " ");
    expect(body.length).toBe(bytes);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (declared) headers["content-length"] = String(bytes);
    return new Response(declared ? body : new Blob([body]).stream(), { headers });
  };

  it.each([
    ["declared", true],
    ["streamed", false],
  ])("%s: exactly max_jwks_bytes is read, one byte more is jwks_too_large", async (_label, declared) => {
    let bytes = 1024;
    const edge = storeAnswering(async () => sized(bytes, declared as boolean), {
      max_jwks_bytes: 1024,
      refresh_cooldown_s: 30,
    });
    expect(said(await edge.lookup("k1"))).toBe("ok/fetch");
    bytes = 1025;
    edge.clock.ms += 31_000;
    expect(said(await edge.lookup("k2"))).toBe("jwks_unavailable/jwks_too_large");
  });
});

describe("a kid of the longest length a token may name", () => {
  // A token's kid may be 256 characters: a key listed under such a kid is kept and found (one
  // of 257 is dropped, jwks-key-filter.test.ts).
  it("256 characters: the key is kept, found for its kid, and saved", async () => {
    const kid = "k".repeat(256);
    const long = await publicJwk(kid);
    const w = world({});
    w.issuer.keys = [long];
    const edge = w.isolate();
    const answer = await edge.lookup(kid);
    expect(said(answer)).toBe("ok/fetch");
    expect(answer.ok && answer.keys.length).toBe(1);
    expect(await savedKids(w)).toEqual([kid]);
  });
});

describe("a set whose only key the runtime can import is one that leaked", () => {
  // The issuer republishes its key with the private part, beside an entry that passes the
  // filter but cannot be imported (a point off P-256). Nothing in it can verify, yet it is the
  // issuer's answer, not a failed fetch: taken as one, the last good set would serve on, and
  // with it the leaked key, to anyone who read the private part.
  it("the leaked key is withdrawn at the refresh that sees it (rotation_grace_s 0)", async () => {
    const a = await publicJwk("a");
    const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
    const offCurve = { kty: "EC", crv: "P-256", kid: "dead", x: random(), y: random() };
    const w = world({ cache_ttl_s: 300, max_stale_s: 3600, rotation_grace_s: 0, refresh_cooldown_s: 30 });
    w.issuer.keys = [a];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok/fetch");
    w.issuer.keys = [{ ...a, d: "AAAA" } as JWK, offCurve as JWK];
    w.clock.ms = T0 + 301_000;
    expect(said(await edge.lookup("a"))).toBe("token_invalid/kid_unknown");
    expect(w.issuer.fetches).toBe(2);
    // Saved as the issuer's answer: no key, the leak named for other isolates.
    const saved = await w.record();
    expect(saved).toMatchObject({ keys: [], fetched_at: T0 + 301_000 });
    expect((saved?.leaked as string[] | undefined)?.length).toBe(1);
  });
});

describe("a set at exactly its TTL", () => {
  // cache_ttl_s is how long a set serves as fetched: at the TTL it is refreshed before use, so a
  // key the issuer withdrew since (with no grace) stops then, not one request later.
  it("is refreshed before the request is answered: a withdrawn key stops at the TTL", async () => {
    const k1 = await publicJwk("k1");
    const k2 = await publicJwk("k2");
    const w = world({ cache_ttl_s: 300, rotation_grace_s: 0, refresh_cooldown_s: 30 });
    w.issuer.keys = [k1];
    const edge = w.isolate();
    expect(said(await edge.lookup("k1"))).toBe("ok/fetch");
    w.issuer.keys = [k2];
    w.clock.ms = T0 + 300_000 - 1;
    expect(edge.store.servesStale(w.clock.ms)).toBe(false);
    w.clock.ms = T0 + 300_000;
    expect(edge.store.servesStale(w.clock.ms)).toBe(true);
    const answer = await edge.lookup("k1");
    expect({ said: said(answer), fetchesAtAnswer: answer.fetchesAtAnswer }).toEqual({
      said: "token_invalid/kid_unknown",
      fetchesAtAnswer: 2,
    });
  });
});

describe("a set another isolate took from KV for another kid, as old as the cooldown", () => {
  // An unknown kid held back (for a second) by an attempt that took another isolate's set from
  // KV: fetched within a cooldown, that set is the issuer's answer (401 kid_unknown); fetched a
  // whole cooldown ago or more, it says nothing of a key published since (503 jwks_refreshing).
  it.each([
    ["a cooldown less 1 ms old: kid_unknown", -1, "token_invalid/kid_unknown"],
    ["exactly a cooldown old: jwks_refreshing", 0, "jwks_unavailable/jwks_refreshing"],
  ])("%s", async (_label, offsetMs, expected) => {
    const a = await publicJwk("a");
    const b = await publicJwk("b");
    const w = world({ cache_ttl_s: 3600, refresh_cooldown_s: 30 });
    w.issuer.keys = [a];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok/fetch");
    const fetchedElsewhere = T0 + 100_000;
    await w.putRecord(fetchedElsewhere, [a, b]);
    w.clock.ms = fetchedElsewhere + 30_000 + offsetMs;
    expect(said(await edge.lookup("b"))).toBe("ok/kv");
    expect(said(await edge.lookup("unknown"))).toBe(expected);
    expect(w.issuer.fetches).toBe(1);
  });
});

describe("a KV record's jwks_uri is checked as a discovered one is", () => {
  // KV is a cache, not a source of trust: a record naming a key URL the edge may not fetch
  // (plain http to another host) gets no fetch from it, even when discovery cannot be read and
  // the remembered URI would otherwise serve.
  it("an http jwks_uri in the record is never fetched, and its keys never served", async () => {
    const { host, fetcher } = scriptedIssuer();
    const k1 = await publicJwk("k1");
    const planted = await publicJwk("planted");
    const insecure = `http://keys-${crypto.randomUUID().slice(0, 8)}.test/jwks`;
    host.sets.set(insecure, { keys: [planted] });
    host.discovery = () => new Response("unavailable", { status: 503 });
    const policy = compilePolicy({
      version: 1,
      issuers: { idp: { kind: "oidc", issuer: host.iss, audiences: ["https://api.test"] } },
      upstreams: { o: { url: "https://origin.test" } },
      routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
    });
    await kv.put(
      `jwks:v1:${host.iss}`,
      JSON.stringify({ v: 1, fetched_at: T0 - 1000, jwks_uri: insecure, discovered: true, keys: [k1], retired: [] }),
      { expirationTtl: 3600 },
    );
    const store = new IssuerKeyStore(policy.issuers.get("idp")!, { fetch: fetcher, kv, now: () => T0 });
    const lookup = async (kid: string) => {
      const pending: Promise<unknown>[] = [];
      const answer = await store.lookup(kid, "ES256", (work) => pending.push(work));
      await settleDeferred(pending);
      return answer;
    };
    expect(said(await lookup("k1"))).toBe("ok/kv");
    expect(said(await lookup("planted"))).toBe("jwks_unavailable/jwks_http_status");
    expect(host.asked).toEqual([host.discoveryUrl]);
  });
});

describe("a KV record listing keys it also names as leaked", () => {
  // parseStored filters a record as a fetched set is filtered: listings of a key the record
  // names as leaked are dropped before the 100-key cap, so 100 of them do not push out the
  // usable key after them.
  it("100 listings of a leaked key before a good one: the good key serves from KV", async () => {
    const a = await publicJwk("a");
    const leaked = await publicJwk("leaked");
    const w = world({});
    const listings = Array.from({ length: 100 }, (_, i) => ({ ...leaked, kid: `leaked-${i}` }));
    await w.putRecord(T0 - 1000, [...listings, a], { leaked: [keyMaterialOf(leaked as Record<string, unknown>)] });
    w.issuer.down = true;
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok/kv");
    expect(w.issuer.fetches).toBe(0);
  });
});

describe("a fetch the runtime reports as aborted", () => {
  // The fetch's only signal is its deadline: a runtime that rejects an aborted fetch with an
  // AbortError (rather than the signal's TimeoutError) reports the same timeout.
  it("AbortError once the deadline aborts the fetch: jwks_timeout, not jwks_fetch_failed", async () => {
    const edge = storeAnswering(
      (_input, init) =>
        new Promise<Response>((_, reject) => {
          const signal = init?.signal as AbortSignal;
          signal.addEventListener("abort", () => reject(new DOMException("The operation was aborted", "AbortError")));
        }),
      { fetch_timeout_ms: 100 },
    );
    expect(said(await edge.lookup("k1"))).toBe("jwks_unavailable/jwks_timeout");
  });
});

describe("what a KV record's leaks hold", () => {
  // A leak is a key's material, three members at most: an entry longer than any key's is no leak,
  // and taken on it would be carried in memory and in every record written after.
  it("an entry longer than any key's material is not taken, nor written back", async () => {
    const a = await publicJwk("a");
    const leakedKey = await publicJwk("leaked");
    const leak = keyMaterialOf(leakedKey as Record<string, unknown>);
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30 });
    await w.putRecord(T0 - 1000, [a], { leaked: ["x".repeat(60_000), leak] });
    w.issuer.keys = [a];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok/kv");
    // An unknown kid: the issuer is asked, and the set saved again.
    expect(said(await edge.lookup("unknown"))).toBe("token_invalid/kid_unknown");
    expect(w.issuer.fetches).toBe(1);
    expect((await w.record())?.leaked).toEqual([leak]);
  });

  // The edge remembers 100 leaks at most, in memory and in the record it writes.
  it("a leak seen at the issuer beside a record of 100: the record written back holds 100", async () => {
    const a = await publicJwk("a");
    const x = await publicJwk("x");
    const w = world({ cache_ttl_s: 300, refresh_cooldown_s: 30 });
    const recorded = Array.from({ length: 100 }, (_, i) => `["EC","P-256",null,null,"x${i}","y${i}"]`);
    await w.putRecord(T0 - 1000, [a], { leaked: recorded });
    w.issuer.keys = [a, { ...x, d: "AAAA" } as JWK];
    const edge = w.isolate();
    expect(said(await edge.lookup("a"))).toBe("ok/kv");
    expect(said(await edge.lookup("x"))).toBe("token_invalid/kid_unknown");
    expect(w.issuer.fetches).toBe(1);
    const leaked = (await w.record())?.leaked as string[];
    expect(leaked).toHaveLength(100);
    // The one just seen leaking at the issuer is among them (the record, read again before the
    // save, names 100 older ones): once the issuer publishes x's public half alone, x stays out.
    expect(leaked).toContain(keyMaterialOf(x as Record<string, unknown>));
    expect(leaked).not.toContain(recorded[0]);
    w.issuer.keys = [a, x];
    w.clock.ms += 31_000;
    expect(said(await edge.lookup("x"))).toBe("token_invalid/kid_unknown");
  });

  // Without KV nothing re-reads the leaks; the order kept is the order seen at the issuer.
  it("without KV, the latest leaks seen are the 100 kept", async () => {
    const { issuer, jwksUri } = uniqueIssuer();
    const policy = compilePolicy({
      version: 1,
      issuers: { idp: { kind: "oidc", issuer, jwks_uri: jwksUri, audiences: ["https://api.test"] } },
      upstreams: { o: { url: "https://origin.test" } },
      routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
    });
    let published: JWK[] = [];
    const clock = { ms: T0 };
    const store = new IssuerKeyStore(policy.issuers.get("idp")!, {
      fetch: async () => Response.json({ keys: published }),
      now: () => clock.ms,
    });
    const lookup = async (kid: string) => {
      clock.ms += 60_000; // past the refresh cooldown each time
      const pending: Promise<unknown>[] = [];
      const answer = await store.lookup(kid, "ES256", (work) => pending.push(work));
      await settleDeferred(pending);
      return said(answer);
    };
    const withPrivatePart = (jwk: JWK) => ({ ...jwk, d: "AAAA" }) as JWK;
    const a = await publicJwk("a");
    const x = await publicJwk("x");
    const y = await publicJwk("y");
    const z = await publicJwk("z");
    const many = await Promise.all(Array.from({ length: 99 }, (_, i) => publicJwk(`m${i}`)));
    // Seen in this order: x, the 99, y, z: 102 leaks, so x and the first of the 99 are forgotten.
    for (const set of [[x], many, [y], [z]]) {
      published = [a, ...set.map(withPrivatePart)];
      expect(await lookup(set[0]!.kid as string)).toBe("token_invalid/kid_unknown");
    }
    // Their public halves alone: the latest leaks stay out, the oldest are forgotten.
    published = [a, x, y, z, ...many.slice(0, 2)];
    expect(await lookup("y")).toBe("token_invalid/kid_unknown");
    expect(await lookup("z")).toBe("token_invalid/kid_unknown");
    expect(await lookup("m1")).toBe("token_invalid/kid_unknown");
    expect(await lookup("x")).toBe("ok/memory");
  });
});
