// README "The JWKS cache": which keys of a fetched set are kept, and how long what is written
// to KV lives. Real loopback issuer, the local runtime's real KV namespace.
import { env } from "cloudflare:workers";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { AUDIENCE, b64url, issuerServer, makeIssuer, makeKey, type TestIssuer, type TestKey } from "../support/issuers";
import { verifierFor as sharedVerifierFor } from "./token-fixtures";

const kv = (env as unknown as { JWKS_CACHE: KVNamespace }).JWKS_CACHE;

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] as const;

function verifierFor(issuer: TestIssuer, settings: Omit<Partial<OidcIssuerConfig>, "issuer" | "kind"> = {}) {
  return sharedVerifierFor({ issuers: { idp: { issuer, ...settings } }, deps: { kv, tokenCacheEntries: 0 } });
}

/** Publish raw JWKs, exactly as given (the harness's `publish` takes key pairs). */
async function publishRaw(issuer: TestIssuer, keys: unknown[]): Promise<void> {
  const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
    method: "POST",
    body: JSON.stringify({ jwks: { keys } }),
  });
  expect(response.ok).toBe(true);
}

/** A token signed by `key` with no `kid` in its header: every key that fits the alg is tried. */
async function signWithoutKid(issuer: TestIssuer, key: TestKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: issuer.url, aud: AUDIENCE, sub: "user-1", tenant_id: "acme", iat: now, exp: now + 600 })
    .setProtectedHeader({ alg: key.alg, typ: "JWT" })
    .sign(key.privateKey);
}

async function storedKeys(issuer: TestIssuer): Promise<Record<string, unknown>[]> {
  const text = await kv.get(`jwks:v1:${issuer.url}`);
  expect(text).not.toBeNull();
  return (JSON.parse(text as string) as { keys: Record<string, unknown>[] }).keys;
}

/** Bad keys built from their own key pair, so only the filter stands between them and a pass. */
const REFUSED: {
  name: string;
  jwk: (key: TestKey) => JWK;
  /** Dropped on arrival (README), rather than kept but never matched. */
  dropped: boolean;
  /** The detail for a token naming the bad key's kid. */
  detail: string;
}[] = [
  { name: 'use: "enc"', jwk: (k) => ({ ...k.publicJwk, use: "enc" }), dropped: true, detail: "kid_unknown" },
  {
    name: 'use: "wrap" (neither absent nor "sig")',
    jwk: (k) => ({ ...k.publicJwk, use: "wrap" }),
    dropped: true,
    detail: "kid_unknown",
  },
  // key_ops, when present, must permit "verify" (RFC 7517 §4.3), whatever `use` says.
  {
    name: 'key_ops: ["encrypt"]',
    jwk: (k) => ({ ...k.publicJwk, key_ops: ["encrypt"] }),
    dropped: true,
    detail: "kid_unknown",
  },
  {
    name: 'key_ops: ["sign"] with use: "sig"',
    jwk: (k) => ({ ...k.publicJwk, use: "sig", key_ops: ["sign"] }),
    dropped: true,
    detail: "kid_unknown",
  },
  { name: "key_ops: []", jwk: (k) => ({ ...k.publicJwk, key_ops: [] }), dropped: true, detail: "kid_unknown" },
  {
    name: 'key_ops: "verify" (not a list)',
    jwk: (k) => ({ ...k.publicJwk, key_ops: "verify" }) as unknown as JWK,
    dropped: true,
    detail: "kid_unknown",
  },
  // A key type named like an inherited object member is an unknown type: dropped alone, the
  // rest of the set kept (it once threw, and the whole set was refused as a failed fetch).
  ...["__proto__", "constructor", "toString"].map((kty) => ({
    name: `kty: "${kty}"`,
    jwk: (k: TestKey) => ({ ...k.publicJwk, kty }) as unknown as JWK,
    dropped: true,
    detail: "kid_unknown",
  })),
  // Not in the README's list: the code keeps such a key, never offers it for another alg, and
  // refuses a token naming it without spending a refresh.
  {
    name: "alg conflicting with the key (P-256 key marked ES384)",
    jwk: (k) => ({ ...k.publicJwk, alg: "ES384" }),
    dropped: false,
    detail: "key_alg_mismatch",
  },
];

describe("(a) only public signature keys are used", () => {
  it.each(REFUSED)(
    "$name: tokens it signs are refused; good keys of the same set verify",
    async ({ jwk, dropped, detail }) => {
      const issuer = await makeIssuer("ES256");
      const goodEc = issuer.keys[0] as TestKey;
      const goodRsa = await makeKey("RS256");
      const goodEd = await makeKey("EdDSA");
      const bad = await makeKey("ES256", "bad-key");
      // The bad key comes first: were it kept, it would be the first candidate for any ES256 token.
      const { use: _use, ...rsaWithoutUse } = goodRsa.publicJwk;
      // key_ops that permit "verify" keep a key usable, alone or with other operations.
      const edVerifyOnly = { ...goodEd.publicJwk, key_ops: ["verify"] };
      const ecVerifyAndSign = { ...goodEc.publicJwk, key_ops: ["sign", "verify"] };
      await publishRaw(issuer, [jwk(bad), ecVerifyAndSign, rsaWithoutUse, edVerifyOnly]);
      const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks` });

      for (const good of [goodEc, goodRsa, goodEd]) {
        expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true });
      }
      expect(await verify(await signWithoutKid(issuer, goodEc))).toMatchObject({ ok: true });

      expect(await verify(await issuer.sign({}, { key: bad }))).toMatchObject({
        ok: false,
        reason: "token_invalid",
        detail,
      });
      expect(await verify(await signWithoutKid(issuer, bad))).toMatchObject({
        ok: false,
        reason: "token_invalid",
        detail: "signature",
      });
      await settle();
      const kids = (await storedKeys(issuer)).map((k) => k.kid);
      expect(kids).toEqual(expect.arrayContaining([goodEc.kid, goodRsa.kid, goodEd.kid]));
      expect(kids.includes("bad-key")).toBe(!dropped);
    },
  );

  it.each(REFUSED.filter((c) => c.dropped))(
    "$name alone: no usable keys, 503 jwks_unavailable, nothing cached",
    async ({ jwk }) => {
      const issuer = await makeIssuer("ES256");
      const bad = await makeKey("ES256", "bad-key");
      await publishRaw(issuer, [jwk(bad)]);
      const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks` });
      expect(await verify(await issuer.sign({}, { key: bad }))).toMatchObject({
        ok: false,
        reason: "jwks_unavailable",
        detail: "jwks_no_usable_keys",
      });
      await settle();
      expect(await kv.get(`jwks:v1:${issuer.url}`)).toBeNull();
    },
  );

  it.each([
    { name: 'use: "enc"', bad: { use: "enc" } },
    { name: 'key_ops: ["encrypt"]', bad: { key_ops: ["encrypt"] } },
  ])("$name in a KV record is dropped as from a fetch; a key_ops verify key there is used", async ({ bad }) => {
    const issuer = await makeIssuer("ES256");
    const good = issuer.keys[0] as TestKey;
    const badKey = await makeKey("ES256", "bad-key");
    // The issuer serves the same set, so the refresh an unknown kid causes cannot hide a kept key.
    const keys = [
      { ...badKey.publicJwk, ...bad },
      { ...good.publicJwk, key_ops: ["verify"] },
    ];
    await publishRaw(issuer, keys);
    const jwksUri = `${issuer.url}/jwks`;
    const record = { v: 1, fetched_at: Date.now() - 1000, jwks_uri: jwksUri, keys, retired: [] };
    await kv.put(`jwks:v1:${issuer.url}`, JSON.stringify(record), { expirationTtl: 3600 });
    const { verify, settle } = verifierFor(issuer, { jwks_uri: jwksUri });

    expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true, keySource: "kv" });
    // Were the bad key kept, it would verify its own token straight from KV.
    expect(await verify(await issuer.sign({}, { key: badKey }))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
    await settle();
  });

  it('symmetric (kty "oct") keys are dropped; an HS256 token is refused before any key lookup', async () => {
    const issuer = await makeIssuer("ES256");
    const good = issuer.keys[0] as TestKey;
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const octJwk = { kty: "oct", kid: "sym", alg: "HS256", use: "sig", k: b64url(secret) };
    await publishRaw(issuer, [octJwk, good.publicJwk]);
    const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks` });

    expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true });
    const now = Math.floor(Date.now() / 1000);
    const hs256 = await new SignJWT({ iss: issuer.url, aud: AUDIENCE, sub: "user-1", iat: now, exp: now + 600 })
      .setProtectedHeader({ alg: "HS256", kid: "sym", typ: "JWT" })
      .sign(secret);
    expect(await verify(hs256)).toMatchObject({ ok: false, reason: "token_invalid", detail: "alg_not_allowed" });
    await settle();
    expect((await storedKeys(issuer)).map((k) => k.kid)).toEqual([good.kid]);

    // A set of nothing but symmetric keys has no usable key at all.
    const lone = await makeIssuer("ES256");
    await publishRaw(lone, [octJwk]);
    const alone = verifierFor(lone, { jwks_uri: `${lone.url}/jwks` });
    expect(await alone.verify(await lone.sign())).toMatchObject({
      ok: false,
      reason: "jwks_unavailable",
      detail: "jwks_no_usable_keys",
    });
  });

  it("private members (d, p, q, dp, dq, qi, k) are dropped on arrival: none is kept in memory or KV", async () => {
    const issuer = await makeIssuer("ES256");
    const good = issuer.keys[0] as TestKey;
    const { privateKey } = await generateKeyPair("RS256", { extractable: true });
    const leakedRsa = { ...(await exportJWK(privateKey)), kid: "leaked-rsa", alg: "RS256", use: "sig", k: "AAAA" };
    const ec = await generateKeyPair("ES256", { extractable: true });
    const leakedEc = { ...(await exportJWK(ec.privateKey)), kid: "leaked-ec", alg: "ES256" };
    expect(Object.keys(leakedRsa)).toEqual(expect.arrayContaining(["d", "p", "q", "dp", "dq", "qi"]));
    expect(Object.keys(leakedEc)).toContain("d");
    await publishRaw(issuer, [leakedRsa, leakedEc, good.publicJwk]);
    const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks` });

    expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true });
    await settle();
    const stored = await storedKeys(issuer);
    expect(stored.map((k) => k.kid)).toEqual(["leaked-rsa", "leaked-ec", good.kid]);
    for (const key of stored) {
      for (const member of PRIVATE_MEMBERS) expect(key, `${key.kid}.${member}`).not.toHaveProperty(member);
    }
    // What is kept is the public half only (the README drops the members, not the key).
    expect(stored[0]).toEqual({ kty: "RSA", kid: "leaked-rsa", alg: "RS256", n: leakedRsa.n, e: leakedRsa.e });
    expect(stored[1]).toEqual({
      kty: "EC",
      kid: "leaked-ec",
      alg: "ES256",
      crv: "P-256",
      x: leakedEc.x,
      y: leakedEc.y,
    });
    const rsaSigner: TestKey = { kid: "leaked-rsa", alg: "RS256", privateKey, publicJwk: {} };
    expect(await verify(await issuer.sign({}, { key: rsaSigner }))).toMatchObject({ ok: true });
  });
});

/** Seconds-since-epoch expiration of one KV key, as KV reports it. */
async function expirationOf(name: string): Promise<number | undefined> {
  const listed = await kv.list({ prefix: name });
  const entry = listed.keys.find((k) => k.name === name);
  expect(entry, name).toBeDefined();
  return entry?.expiration;
}

describe("(b) KV expiry", () => {
  it.each([
    { name: "defaults (600 + 86400; cooldown 30 → 60)", settings: {}, keySetTtl: 600 + 86_400, stampTtl: 60 },
    {
      name: "short set, cooldown 1 s (below KV's 60 s minimum → 60)",
      settings: { cache_ttl_s: 300, max_stale_s: 0, refresh_cooldown_s: 1 },
      keySetTtl: 300,
      stampTtl: 60,
    },
    {
      name: "long set, cooldown 120 s (above the minimum: kept)",
      settings: { cache_ttl_s: 3600, max_stale_s: 7200, refresh_cooldown_s: 120 },
      keySetTtl: 10_800,
      stampTtl: 120,
    },
    {
      name: "cooldown exactly 60 s",
      settings: { cache_ttl_s: 900, max_stale_s: 45, refresh_cooldown_s: 60 },
      keySetTtl: 945,
      stampTtl: 60,
    },
  ])("$name", async ({ settings, keySetTtl, stampTtl }) => {
    const issuer = await makeIssuer("ES256");
    const { verify, settle } = verifierFor(issuer, settings);
    const before = Date.now();
    expect(await verify(await issuer.sign())).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    const after = Date.now();
    const within = (actual: number | undefined, ttl: number) => {
      expect(actual).toBeGreaterThanOrEqual(Math.floor(before / 1000) + ttl - 1);
      expect(actual).toBeLessThanOrEqual(Math.ceil(after / 1000) + ttl + 1);
    };

    within(await expirationOf(`jwks:v1:${issuer.url}`), keySetTtl);
    within(await expirationOf(`jwks-refresh:v1:${issuer.url}`), stampTtl);
    const stamp = Number(await kv.get(`jwks-refresh:v1:${issuer.url}`));
    expect(stamp).toBeGreaterThanOrEqual(before);
    expect(stamp).toBeLessThanOrEqual(after);
  });
});
