// README "The JWKS cache": which keys of a fetched set are kept, and how long what is written
// to KV lives. Real loopback issuer, the local runtime's real KV namespace.
import { env } from "cloudflare:workers";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { keyMaterialOf, usableKeys } from "../../src/core/jwks/fetch-key-set";
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
  // A kid no token could name (a token's is a string of at most 256 characters).
  {
    name: "a kid of 257 characters",
    jwk: (k) => ({ ...k.publicJwk, kid: "k".repeat(257) }),
    dropped: true,
    detail: "kid_unknown",
  },
  {
    name: "a kid that is not a string",
    jwk: (k) => ({ ...k.publicJwk, kid: 7 }) as unknown as JWK,
    dropped: true,
    detail: "kid_unknown",
  },
  // A key set that publishes a private key (RFC 7517 §9.2) gave it to every reader.
  {
    name: "a private part (d) published with the key",
    jwk: (k) => ({ ...k.publicJwk, d: "AAAA" }),
    dropped: true,
    detail: "kid_unknown",
  },
  // An RSA key's p and q give away d; so does q alone (p = n / q), or one CRT exponent
  // (p = gcd(m^(e·dp) − m, n)).
  {
    name: "private factors (p, q) published without d",
    jwk: (k) => ({ ...k.publicJwk, p: "AAAA", q: "AAAA" }),
    dropped: true,
    detail: "kid_unknown",
  },
  ...(["q", "dp", "dq", "qi", "oth"] as const).map((member) => ({
    name: `a private member (${member}) published alone`,
    jwk: (k: TestKey) => ({ ...k.publicJwk, [member]: "AAAA" }) as unknown as JWK,
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

  // A private member marks the key as leaked, and the set as the issuer's answer (see below).
  const leaked = (name: string) => name.startsWith("a private") || name.startsWith("private");

  // Alone in the set: no usable keys, 503 jwks_unavailable and nothing cached; but a leaked
  // key's set is the issuer's answer, a set without keys: 401 kid_unknown, cached as such.
  it.each(REFUSED.filter((c) => c.dropped))("$name alone", async ({ name, jwk }) => {
    const issuer = await makeIssuer("ES256");
    const bad = await makeKey("ES256", "bad-key");
    await publishRaw(issuer, [jwk(bad)]);
    const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks` });
    expect(await verify(await issuer.sign({}, { key: bad }))).toMatchObject(
      leaked(name)
        ? { ok: false, reason: "token_invalid", detail: "kid_unknown" }
        : { ok: false, reason: "jwks_unavailable", detail: "jwks_no_usable_keys" },
    );
    await settle();
    if (leaked(name)) expect(await storedKeys(issuer)).toEqual([]);
    else expect(await kv.get(`jwks:v1:${issuer.url}`)).toBeNull();
  });

  it.each([
    { name: 'use: "enc"', bad: { use: "enc" } },
    { name: 'key_ops: ["encrypt"]', bad: { key_ops: ["encrypt"] } },
    { name: "a private part (d)", bad: { d: "AAAA" } },
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

  it("a key published with its private part is never used: a reader of the set cannot sign with it", async () => {
    const issuer = await makeIssuer("ES256");
    const good = issuer.keys[0] as TestKey;
    const { privateKey } = await generateKeyPair("RS256", { extractable: true });
    const leakedRsa = { ...(await exportJWK(privateKey)), kid: "leaked-rsa", alg: "RS256", use: "sig" };
    const ec = await generateKeyPair("ES256", { extractable: true });
    const leakedEc = { ...(await exportJWK(ec.privateKey)), kid: "leaked-ec", alg: "ES256" };
    expect(Object.keys(leakedRsa)).toEqual(expect.arrayContaining(["d", "p", "q", "dp", "dq", "qi"]));
    expect(Object.keys(leakedEc)).toContain("d");
    await publishRaw(issuer, [leakedRsa, leakedEc, good.publicJwk]);
    const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks` });

    expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true });
    // Anyone who read the set holds these private keys.
    for (const [kid, alg, key] of [
      ["leaked-rsa", "RS256", privateKey],
      ["leaked-ec", "ES256", ec.privateKey],
    ] as const) {
      const signer: TestKey = { kid, alg, privateKey: key, publicJwk: {} };
      expect(await verify(await issuer.sign({ sub: "admin" }, { key: signer }))).toMatchObject({
        ok: false,
        reason: "token_invalid",
        detail: "kid_unknown",
      });
      expect(await verify(await signWithoutKid(issuer, signer))).toMatchObject({ ok: false, reason: "token_invalid" });
    }
    await settle();
    const stored = await storedKeys(issuer);
    expect(stored).toEqual([good.publicJwk].map(({ use: _use, ...key }) => key));
    for (const key of stored) {
      for (const member of PRIVATE_MEMBERS) expect(key, `${key.kid}.${member}`).not.toHaveProperty(member);
    }
  });
});

// Edwards25519 arithmetic (RFC 8032 §5.1), enough to tell the order of a small point: the
// test knows which keys are of small order by computing it, not from the code under test.
const P = 2n ** 255n - 19n;
const mod = (a: bigint) => ((a % P) + P) % P;
function pow(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}
const inv = (a: bigint) => pow(a, P - 2n);
const D = mod(-121665n * inv(121666n));
type Point = [bigint, bigint];

function decodePoint(bytes: Uint8Array): Point | undefined {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt((bytes[i] as number) & (i === 31 ? 0x7f : 0xff));
  y = mod(y);
  const x2 = mod((y * y - 1n) * inv(D * y * y + 1n));
  let x = pow(x2, (P + 3n) / 8n);
  if (mod(x * x - x2) !== 0n) x = mod(x * pow(2n, (P - 1n) / 4n));
  if (mod(x * x - x2) !== 0n) return undefined;
  return [x, y];
}

function addPoints([x1, y1]: Point, [x2, y2]: Point): Point {
  const t = D * x1 * x2 * y1 * y2;
  return [mod((x1 * y2 + x2 * y1) * inv(1n + t)), mod((y1 * y2 + x1 * x2) * inv(1n - t))];
}

/** The order of a point if it is at most 8, else undefined. */
function smallOrder(point: Point): number | undefined {
  let multiple = point;
  for (let n = 1; n <= 8; n++) {
    if (multiple[0] === 0n && multiple[1] === 1n) return n;
    multiple = addPoints(multiple, point);
  }
  return undefined;
}

const fromHex = (hex: string) => Uint8Array.from(hex.match(/../g) as string[], (byte) => Number.parseInt(byte, 16));
const ff30 = "ff".repeat(30);

/** Every encoding of a point of order 1, 2, 4 or 8: canonical ones, and y written as y + p. */
const SMALL_ORDER_KEYS = [
  `01${"00".repeat(31)}`, // the identity
  `ec${ff30}7f`, // (0, -1)
  "00".repeat(32),
  `${"00".repeat(31)}80`,
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
  `ed${ff30}7f`, // y = p, read as 0
  `ee${ff30}7f`, // y = p + 1, read as 1
].map(fromHex);

describe("(a2) Ed25519 keys of small order", () => {
  it("the list holds points of order 1, 2, 4 and 8, and a real key is not one", async () => {
    const orders = SMALL_ORDER_KEYS.map((bytes) => smallOrder(decodePoint(bytes) as Point));
    expect(orders).toEqual([1, 2, 4, 4, 8, 8, 8, 8, 4, 1]);
    const real = await makeKey("EdDSA");
    const x = Uint8Array.from(atob((real.publicJwk.x as string).replace(/-/g, "+").replace(/_/g, "/")), (c) =>
      c.charCodeAt(0),
    );
    expect(smallOrder(decodePoint(x) as Point)).toBeUndefined();
  });

  it("are dropped on arrival: R = identity, S = 0 forgeries the runtime would accept are refused", async () => {
    const issuer = await makeIssuer("EdDSA");
    const good = issuer.keys[0] as TestKey;
    const smallKeys = SMALL_ORDER_KEYS.map((bytes, i) => ({
      kty: "OKP",
      crv: "Ed25519",
      kid: `small-${i}`,
      use: "sig",
      x: b64url(bytes),
    }));
    await publishRaw(issuer, [...smallKeys, good.publicJwk]);
    const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks` });
    expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true });

    const forgedSignature = new Uint8Array(64);
    forgedSignature[0] = 1; // R = the identity's encoding, S = 0
    const now = Math.floor(Date.now() / 1000);
    const forge = (kid: string | undefined, attempt: number) => {
      const header = b64url(JSON.stringify({ alg: "EdDSA", typ: "JWT", ...(kid ? { kid } : {}) }));
      const claims = {
        iss: issuer.url,
        aud: AUDIENCE,
        sub: "admin",
        jti: `forged-${attempt}`,
        iat: now,
        exp: now + 600,
      };
      const input = `${header}.${b64url(JSON.stringify(claims))}`;
      return { input, token: `${input}.${b64url(forgedSignature)}` };
    };

    let acceptedByRuntime = 0;
    for (const [i, key] of smallKeys.entries()) {
      const imported = await crypto.subtle
        .importKey("jwk", { kty: "OKP", crv: "Ed25519", x: key.x }, { name: "Ed25519" }, false, ["verify"])
        .catch(() => undefined);
      for (let attempt = 0; attempt < 128; attempt++) {
        const { input, token } = forge(key.kid, attempt);
        if (imported) {
          const valid = await crypto.subtle.verify(
            "Ed25519",
            imported,
            forgedSignature,
            new TextEncoder().encode(input),
          );
          if (valid) acceptedByRuntime += 1;
        }
        expect(await verify(token), `${key.kid} attempt ${attempt} (point ${i})`).toMatchObject({
          ok: false,
          reason: "token_invalid",
          detail: "kid_unknown",
        });
        // Without a kid every Ed25519 key of the set is a candidate.
        expect(await verify(forge(undefined, attempt).token)).toMatchObject({ ok: false, reason: "token_invalid" });
      }
    }
    // The forgery is real: the runtime's own Ed25519 accepts it under these keys.
    expect(acceptedByRuntime).toBeGreaterThan(0);
    await settle();
    expect((await storedKeys(issuer)).map((k) => k.kid)).toEqual([good.kid]);
  });
});

describe("(a2b) Ed25519 keys spelt otherwise than RFC 8037 writes them", () => {
  it("are dropped, since the runtime's import reads some of them: a padded small-order key cannot be used to forge", async () => {
    const issuer = await makeIssuer("EdDSA");
    const good = issuer.keys[0] as TestKey;
    const identity = b64url(SMALL_ORDER_KEYS[0] as Uint8Array);
    const spellings = [`  ${identity}  `, `${identity}=`, `${identity}\n`, `\t${identity}`];
    // Control: the runtime's own import takes the key with whitespace around it.
    const imported = await crypto.subtle
      .importKey("jwk", { kty: "OKP", crv: "Ed25519", x: spellings[0] }, { name: "Ed25519" }, false, ["verify"])
      .then(
        () => true,
        () => false,
      );
    expect(imported).toBe(true);
    const keys = spellings.map((x, i) => ({ kty: "OKP", crv: "Ed25519", kid: `spelt-${i}`, use: "sig", x }));
    // A real key spelt with whitespace is dropped too: only the exact form is read.
    const real = await makeKey("EdDSA", "real-spaced");
    keys.push({
      ...(real.publicJwk as { kty: string; crv: string; kid: string; use: string; x: string }),
      x: ` ${real.publicJwk.x} `,
    });
    await publishRaw(issuer, [...keys, good.publicJwk]);
    const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks` });
    expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true });
    const forgedSignature = new Uint8Array(64);
    forgedSignature[0] = 1; // R = the identity, S = 0: verifies every message under the identity key
    const now = Math.floor(Date.now() / 1000);
    for (const { kid } of keys.slice(0, spellings.length)) {
      const header = b64url(JSON.stringify({ alg: "EdDSA", typ: "JWT", kid }));
      const claims = { iss: issuer.url, aud: AUDIENCE, sub: "admin", iat: now, exp: now + 600 };
      expect(await verify(`${header}.${b64url(JSON.stringify(claims))}.${b64url(forgedSignature)}`)).toMatchObject({
        ok: false,
        detail: "kid_unknown",
      });
    }
    expect(await verify(await issuer.sign({}, { key: real }))).toMatchObject({ ok: false, detail: "kid_unknown" });
    await settle();
    expect((await storedKeys(issuer)).map((k) => k.kid)).toEqual([good.kid]);
  });
});

describe("(a3) at most 100 usable keys per set", () => {
  it("counts usable keys only: 100 encryption keys before the signing key do not hide it", async () => {
    const issuer = await makeIssuer("ES256");
    const good = issuer.keys[0] as TestKey;
    const filler = Array.from({ length: 100 }, (_, i) => ({ ...good.publicJwk, kid: `enc-${i}`, use: "enc" }));
    await publishRaw(issuer, [...filler, good.publicJwk]);
    const { verify } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks`, max_jwks_bytes: 1_048_576 });
    expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true });
  });

  it("counts neither leaked listings nor key-agreement keys: a token of the key after 100 of them verifies", async () => {
    const issuer = await makeIssuer("ES256");
    const good = issuer.keys[0] as TestKey;
    const leaked = await makeKey("ES256", "leaked");
    const leakedListings = Array.from({ length: 100 }, (_, i) => ({ ...leaked.publicJwk, kid: `pub-${i}` }));
    const { publicKey } = await generateKeyPair("ECDH-ES", { crv: "X25519", extractable: true });
    const x25519 = await exportJWK(publicKey);
    const agreement = Array.from({ length: 100 }, (_, i) => ({ ...x25519, kid: `x-${i}` }));
    // The private listing last: the listings before it must not take places either.
    const leakedPrivate = { ...(await exportJWK(leaked.privateKey)), kid: "leaked" };
    await publishRaw(issuer, [...leakedListings, ...agreement, good.publicJwk, leakedPrivate]);
    const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks`, max_jwks_bytes: 1_048_576 });
    expect(await verify(await issuer.sign({}, { key: good }))).toMatchObject({ ok: true });
    expect(await verify(await issuer.sign({}, { key: { ...leaked, kid: "pub-0" } }))).toMatchObject({ ok: false });
    await settle();
    expect((await storedKeys(issuer)).map((key) => key.kid)).toEqual([good.kid]);
  });

  it("counts no listing of a key that leaked before: the key after 100 of them is kept", async () => {
    const leaked = await makeKey("ES256", "leaked");
    const good = await makeKey("ES256", "good");
    const listings = Array.from({ length: 100 }, (_, i) => ({ ...leaked.publicJwk, kid: `pub-${i}` }));
    const known = new Set([keyMaterialOf(leaked.publicJwk as Record<string, unknown>)]);
    expect(usableKeys({ keys: [...listings, good.publicJwk] }, known).keys.map((key) => key.kid)).toEqual(["good"]);
    // Listing only what leaked is still the issuer's answer (it withdraws the key), not a failed fetch.
    expect(usableKeys({ keys: listings }, known)).toEqual({ keys: [], leaked: [] });
  });

  it("drops a key of a curve no signature the edge verifies uses, and keeps one whose alg conflicts (refused by name)", async () => {
    const good = await makeKey("ES256", "good");
    const { publicKey } = await generateKeyPair("ECDH-ES", { crv: "X25519", extractable: true });
    const unfit = [
      { ...good.publicJwk, kid: "secp256k1", crv: "secp256k1" },
      { ...(await exportJWK(publicKey)), kid: "x25519" },
    ];
    // Encryption keys published without `use`: their `alg` is no signature algorithm.
    unfit.push({ ...good.publicJwk, kid: "ecdh", alg: "ECDH-ES", use: undefined } as never);
    unfit.push({ ...good.publicJwk, kid: "oaep", alg: "RSA-OAEP", use: undefined } as never);
    expect(() => usableKeys({ keys: unfit })).toThrow("no_usable_keys");
    expect(usableKeys({ keys: [...Array(100).fill(unfit[2]), good.publicJwk] }).keys.map((key) => key.kid)).toEqual([
      "good",
    ]);
    const conflicting = { ...good.publicJwk, kid: "es384-on-p256", alg: "ES384" };
    expect(usableKeys({ keys: [...unfit, conflicting, good.publicJwk] }).keys.map((key) => key.kid)).toEqual([
      "es384-on-p256",
      "good",
    ]);
  });

  it("keeps the first 100 usable keys in the order the set lists them", async () => {
    const issuer = await makeIssuer("ES256");
    const good = issuer.keys[0] as TestKey;
    const many = Array.from({ length: 120 }, (_, i) => ({ ...good.publicJwk, kid: `k-${i + 1}` }));
    await publishRaw(issuer, many);
    const { verify, settle } = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks`, max_jwks_bytes: 1_048_576 });
    const signedAs = (kid: string) => issuer.sign({}, { key: { ...good, kid } });
    expect(await verify(await signedAs("k-1"))).toMatchObject({ ok: true });
    expect(await verify(await signedAs("k-100"))).toMatchObject({ ok: true });
    expect(await verify(await signedAs("k-101"))).toMatchObject({ ok: false, detail: "kid_unknown" });
    await settle();
    expect(await storedKeys(issuer)).toHaveLength(100);
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
