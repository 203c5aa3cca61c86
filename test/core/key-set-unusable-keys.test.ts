// Key handling at its edges (src/core/jwks/*, policy-issuers, TokenVerifier's use of them):
// keys that can verify nothing, which never count as a set's keys, weak RSA keys spelt to look
// strong, one issuer's keys against another's tokens, a cold isolate under a burst, and key-set
// documents of the wrong shape. Real loopback issuer stand-in and the runtime's real KV, on an
// injected clock; a scripted issuer where a test needs answers no stand-in mode gives.
import { type JWK, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import type { Fetcher } from "../../src/core/jwks/fetch-key-set";
import { Clock, signAt, verifierFor } from "../support/clocked-verifier";
import { AUDIENCE, b64url, issuerServer, makeIssuer, makeKey, type TestIssuer, type TestKey } from "../support/issuers";
import { publicJwk, T0, world } from "../support/key-store-world";
import { verifierFor as manyIssuersVerifierFor, makeWeakRsaKey, signText } from "./token-fixtures";

/** A lookup's answer in one word, so a failure shows the refusal's reason and detail. */
const said = (r: { ok: boolean; reason?: string; detail?: string; source?: string }) =>
  r.ok ? `ok/${r.source}` : `${r.reason}/${r.detail}`;

function bytesOf(segment: string): Uint8Array {
  return Uint8Array.from(atob(segment.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
}

/** Publish raw JWKs on the stand-in, exactly as given. */
async function publishRaw(issuer: TestIssuer, keys: unknown[]): Promise<void> {
  const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
    method: "POST",
    body: JSON.stringify({ jwks: { keys } }),
  });
  expect(response.ok).toBe(true);
}

/** Claims of a token of `issuer` valid on `clock`, as exact text for `signText`. */
function claimsAt(issuer: TestIssuer, clock: Clock): string {
  const now = Math.floor(clock.ms / 1000);
  return JSON.stringify({ iss: issuer.url, aud: AUDIENCE, sub: "user-1", iat: now, exp: now + 600 });
}

/**
 * Entries that pass every member check of the filter (type, curve, use, key_ops, kid, alg, member
 * lengths) yet can verify no token at all: the runtime refuses to import them, or the signature
 * check refuses them whatever the signature.
 */
const DEAD_KEYS: Record<string, () => Promise<JWK>> = {
  "an RSA key whose modulus is one byte": async () => ({ kty: "RSA", kid: "dead", n: "AA", e: "AQAB" }),
  // The runtime refuses the import ("invalid publicExponent 1").
  "an RSA key with e = 1": async () => ({ kty: "RSA", kid: "dead", n: (await makeKey("RS256")).publicJwk.n, e: "AQ" }),
  // Two random coordinates: not a point of P-256, so the import fails.
  "a P-256 key off the curve": async () => {
    const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
    return { kty: "EC", crv: "P-256", kid: "dead", x: random(), y: random() };
  },
  // Imported, but no RSA algorithm may use it (RFC 7518 §3.3).
  "a 1024-bit RSA key": async () => (await makeWeakRsaKey("dead")).publicJwk,
};

describe("a set whose only keys can verify nothing", () => {
  // README "The JWKS cache": an endpoint answering a set "without usable keys" is a failed fetch:
  // the newest good set serves on (stale) up to max-stale and a bad response is never cached, as
  // {"keys":[]} is handled (key-rotation-and-kv-records.test.ts). An entry the runtime cannot
  // import, or an RSA key under 2048 bits, is no more usable than no entry.
  it.each(Object.keys(DEAD_KEYS))(
    "%s, alone, after a good set: a failed fetch, the good set serves on",
    async (name) => {
      const dead = { name, jwk: await (DEAD_KEYS[name] as () => Promise<JWK>)() };
      const a = await publicJwk("a");
      const w = world({ cache_ttl_s: 300, max_stale_s: 600, refresh_cooldown_s: 30, rotation_grace_s: 0 });
      w.issuer.keys = [a];
      const edge = w.isolate();
      expect(said(await edge.lookup("a"))).toBe("ok/fetch");
      const saved = await w.record();

      // The issuer now answers a set holding only the dead key (a truncated or broken publish).
      w.issuer.keys = [dead.jwk];
      w.clock.ms = T0 + 301_000;
      const afterRefresh = said(await edge.lookup("a"));
      const recordKept = JSON.stringify(await w.record()) === JSON.stringify(saved);
      w.clock.ms += 31_000;
      const newKid = said(await edge.lookup("new"));
      // Were the dead key's set adopted, the good key would be withdrawn (grace 0: its tokens
      // 401 kid_unknown), KV overwritten with the dead set for every isolate, and a new kid 401
      // (the client drops its token), not 503.
      expect({ name: dead.name, afterRefresh, recordKept, newKid }).toEqual({
        name: dead.name,
        afterRefresh: "ok/stale",
        recordKept: true,
        newKid: "jwks_unavailable/jwks_no_usable_keys",
      });
    },
  );
});

describe("the 100-key cap of a set", () => {
  // README: at most 100 keys per set, "so a long list of unusable entries cannot push a usable
  // key out". Entries the runtime cannot import are unusable, yet they take the places.
  it("100 keys the runtime cannot import, listed first, do not push out the signing key after them", async () => {
    const a = await publicJwk("a");
    const w = world({});
    w.issuer.keys = [
      ...Array.from({ length: 100 }, (_, i) => ({ kty: "RSA", kid: `dead-${i}`, n: "AA", e: "AQAB" })),
      a,
    ];
    const edge = w.isolate();
    // Counted, the 100 dead RSA entries would fill the cap and drop the set's real key.
    expect(said(await edge.lookup("a"))).toBe("ok/fetch");
  });
});

describe("weak RSA keys", () => {
  it("a 1024-bit modulus written with leading zero bytes as 2048 bits is still too small: never taken into the set", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const good = issuer.keys[0] as TestKey;
    const weak = await makeWeakRsaKey("padded");
    const n = bytesOf(weak.publicJwk.n as string);
    const padded = new Uint8Array(256);
    padded.set(n, 256 - n.length);
    // The leak check reads such a spelling as the same key; the size check must read it as one too.
    // Dropped from the set, its kid is unknown there.
    await publishRaw(issuer, [{ ...weak.publicJwk, n: b64url(padded) }, good.publicJwk]);
    const { verify } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` }, false);
    expect(await verify(await signAt(issuer, clock))).toMatchObject({ ok: true });
    expect(await verify(await signText(weak, {}, claimsAt(issuer, clock)))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
  });

  it("an RSA key with e = 1 cannot be signed for by anyone: the encoded message itself is no signature", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const good = issuer.keys[0] as TestKey;
    const strong = await makeKey("RS256", "strong");
    await publishRaw(issuer, [{ ...strong.publicJwk, kid: "e1", e: "AQ" }, good.publicJwk, strong.publicJwk]);
    const { verify } = verifierFor(issuer, clock, { jwks_uri: `${issuer.url}/jwks` }, false);

    // Under e = 1, s^e mod n = s: the PKCS#1 v1.5 encoding of the input's hash is a signature.
    const forge = async (header: Record<string, unknown>) => {
      const input = `${b64url(JSON.stringify({ alg: "RS256", ...header }))}.${b64url(claimsAt(issuer, clock))}`;
      const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(input)));
      const digestInfo = [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
      const t = [...digestInfo, 0x05, 0x00, 0x04, 0x20, ...hash];
      const em = new Uint8Array(256);
      em.set([0x00, 0x01]);
      em.fill(0xff, 2, 256 - t.length - 1);
      em.set(t, 256 - t.length);
      return `${input}.${b64url(em)}`;
    };
    expect(await verify(await forge({ kid: "e1" }))).toMatchObject({ ok: false, reason: "token_invalid" });
    expect(await verify(await forge({}))).toMatchObject({ ok: false, reason: "token_invalid", detail: "signature" });
    // The same modulus with its real exponent, and the set's other keys, still verify.
    expect(await verify(await signAt(issuer, clock, strong))).toMatchObject({ ok: true });
    expect(await verify(await signAt(issuer, clock, good))).toMatchObject({ ok: true });
  });
});

describe("one issuer's keys against another issuer's tokens", () => {
  // Providers number their keys alike ("1", "key-1"): a kid says nothing across issuers.
  it("a key of another issuer under the same kid never verifies, and costs this issuer a refresh only for a kid it lacks", async () => {
    const [first, second] = await Promise.all([makeIssuer("ES256"), makeIssuer("ES256")]);
    const firstKey = await makeKey("ES256", "1");
    const secondKey = await makeKey("ES256", "1");
    const secondOnly = await makeKey("ES256", "second-only");
    await first.publish([firstKey]);
    await second.publish([secondKey, secondOnly]);
    const clock = new Clock();
    const { verify, settle } = manyIssuersVerifierFor({
      issuers: {
        first: { issuer: first, jwks_uri: `${first.url}/jwks` },
        second: { issuer: second, jwks_uri: `${second.url}/jwks` },
      },
      deps: { tokenCacheEntries: 0, now: clock.now },
    });
    expect(await verify(await first.sign({}, { key: firstKey }))).toMatchObject({ ok: true });
    expect(await verify(await second.sign({}, { key: secondKey }))).toMatchObject({ ok: true });
    await settle();
    await Promise.all([first.resetCounters(), second.resetCounters()]);

    // iss names the first issuer; the signature is the second issuer's key "1".
    expect(await verify(await first.sign({}, { key: secondKey }))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "signature",
      issuerId: "first",
    });
    expect(await verify(await first.sign({}, { key: secondKey, header: { kid: undefined } }))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "signature",
    });
    // A kid only the second issuer has, once the first issuer's cooldown allows a refresh: the
    // first issuer's set is refreshed, never the second's.
    clock.advance(31);
    expect(await verify(await first.sign({}, { key: secondOnly }))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
      issuerId: "first",
    });
    await settle();
    expect(await first.stats()).toMatchObject({ jwks_fetches: 1 });
    expect(await second.stats()).toMatchObject({ discovery_fetches: 0, jwks_fetches: 0 });
  });
});

describe("a cold isolate under a burst of unknown kids", () => {
  it("50 concurrent requests make one discovery and one key-set fetch, and all get the issuer's answer", async () => {
    const issuer = await makeIssuer("ES256");
    const clock = new Clock();
    const { verify, settle } = verifierFor(issuer, clock);
    const signer = issuer.keys[0] as TestKey;
    const tokens = await Promise.all(
      Array.from({ length: 50 }, (_, i) => signAt(issuer, clock, { ...signer, kid: `made-up-${i}` })),
    );
    const answers = await Promise.all(tokens.map((token) => verify(token)));
    await settle();
    expect(new Set(answers.map((r) => said({ ...r, source: undefined })))).toEqual(
      new Set(["token_invalid/kid_unknown"]),
    );
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 1, jwks_fetches: 1 });
  });

  it("with the key endpoint down: one attempt, and every request the same 503 with the same Retry-After", async () => {
    const issuer = await makeIssuer("ES256");
    await issuer.setMode("down");
    const clock = new Clock();
    const { verify, settle } = verifierFor(issuer, clock);
    const signer = issuer.keys[0] as TestKey;
    const tokens = await Promise.all(
      Array.from({ length: 50 }, (_, i) => signAt(issuer, clock, i % 2 ? signer : { ...signer, kid: `made-up-${i}` })),
    );
    const answers = await Promise.all(tokens.map((token) => verify(token)));
    await settle();
    expect(new Set(answers.map((r) => JSON.stringify([r.ok, !r.ok && r.detail, !r.ok && r.retryAfterS])))).toEqual(
      new Set([JSON.stringify([false, "jwks_fetch_failed", 30])]),
    );
    expect(await issuer.stats()).toMatchObject({ discovery_fetches: 1, jwks_fetches: 1 });
  });
});

describe("key-set and discovery documents of the wrong shape", () => {
  /** A scripted issuer answering discovery and the key set with these bodies (JSON text). */
  function answering(discovery: string, jwks: string): Fetcher {
    return async (input) =>
      new Response(String(input).endsWith("/openid-configuration") ? discovery : jwks, {
        headers: { "content-type": "application/json" },
      });
  }

  /** A token of `iss` (an issuer only a scripted fetcher serves), valid on `clock`. */
  async function tokenFor(iss: string, clock: Clock, key: TestKey): Promise<string> {
    const now = Math.floor(clock.ms / 1000);
    return new SignJWT({ iss, aud: AUDIENCE, sub: "u", iat: now, exp: now + 600 })
      .setProtectedHeader({ alg: "ES256", kid: key.kid })
      .sign(key.privateKey);
  }

  it.each([
    ["[]", "jwks_malformed"],
    ["null", "jwks_malformed"],
    ['"keys"', "jwks_malformed"],
    ['{"keys":{}}', "jwks_malformed"],
    ['{"keys":null}', "jwks_malformed"],
    ["{}", "jwks_malformed"],
    ["", "jwks_not_json"],
    ['{"keys":[]} trailing', "jwks_not_json"],
  ])("a key set %j is 503 %s, and the next request within the cooldown asks nothing", async (body, detail) => {
    const clock = new Clock();
    const key = await makeKey("ES256");
    const iss = `https://shapes-${crypto.randomUUID()}.test`;
    let asked = 0;
    const scripted = answering("", body);
    const { verify } = verifierFor(iss, clock, { jwks_uri: `${iss}/jwks` }, false, (input, init) => {
      asked += 1;
      return scripted(input, init);
    });
    const token = await tokenFor(iss, clock, key);
    expect(await verify(token)).toMatchObject({ ok: false, reason: "jwks_unavailable", detail, retryAfterS: 30 });
    // Nothing was kept from the bad answer, and its failure holds the next attempt back.
    clock.advance(10);
    expect(await verify(token)).toMatchObject({ ok: false, reason: "jwks_unavailable", detail, retryAfterS: 20 });
    expect(asked).toBe(1);
  });

  it.each([
    ["null", "jwks_malformed"],
    ['"issuer"', "jwks_malformed"],
    ["[]", "jwks_discovery_issuer_mismatch"],
    ["{}", "jwks_discovery_issuer_mismatch"],
    ["not json", "jwks_not_json"],
  ])("a discovery document %j is 503 %s, and no key set is fetched", async (body, detail) => {
    const clock = new Clock();
    const key = await makeKey("ES256");
    const iss = `https://shapes-${crypto.randomUUID()}.test`;
    const asked: string[] = [];
    const scripted = answering(body, '{"keys":[]}');
    const { verify } = verifierFor(iss, clock, {}, false, (input, init) => {
      asked.push(String(input));
      return scripted(input, init);
    });
    const token = await tokenFor(iss, clock, key);
    expect(await verify(token)).toMatchObject({ ok: false, reason: "jwks_unavailable", detail });
    expect(asked).toEqual([`${iss}/.well-known/openid-configuration`]);
  });
});
