// Every check of token verification, one by one, by its reason and detail: the strict parse,
// the issuer's algorithm allow-list, the WebCrypto signature check, the registered claims
// (typ, exp, nbf, iat with the clock skew) and the audience.
import { beforeAll, describe, expect, it } from "vitest";
import type { ResolvedIssuer } from "../../src/core/policy";
import { verifySignature } from "../../src/core/tokens/jws-verify";
import { checkRegisteredClaims } from "../../src/core/tokens/registered-claims";
import { AUDIENCE, b64url, makeIssuer, makeKey, type TestIssuer, type TestKey } from "../support/issuers";
import { fixedNow, flipLastChar, makeKeyRing, signText, verifierFor } from "./token-fixtures";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);
const SKEW = 60;

let plain: TestIssuer;
let typed: TestIssuer;
let narrow: TestIssuer;
const keys: Record<string, TestKey> = {};
let verify: (token: string) => ReturnType<ReturnType<typeof verifierFor>["verify"]>;

beforeAll(async () => {
  Object.assign(keys, await makeKeyRing());
  keys.dupA = await makeKey("ES256", "dup");
  keys.dupB = await makeKey("ES256", "dup");
  [plain, typed, narrow] = await Promise.all([makeIssuer(), makeIssuer(), makeIssuer()]);
  await Promise.all([plain, typed, narrow].map((issuer) => issuer.publish(Object.values(keys))));
  ({ verify } = verifierFor({
    issuers: {
      plain: { issuer: plain, clock_skew_s: SKEW },
      typed: { issuer: typed, clock_skew_s: SKEW, typ: "at+jwt" },
      narrow: { issuer: narrow, clock_skew_s: SKEW, algorithms: ["ES256"] },
    },
    deps: { now: () => NOW, tokenCacheEntries: 0 },
  }));
});

/** A token from `plain` (unless `iss` says otherwise), valid at NOW unless claims override. */
function sign(claims: Record<string, unknown> = {}, key = keys.es as TestKey, header: Record<string, unknown> = {}) {
  return plain.sign({ iat: S, exp: S + 600, ...claims }, { key, header });
}

function claimsText(claims: Record<string, unknown> = {}): string {
  return JSON.stringify({ iss: plain.url, aud: AUDIENCE, sub: "u1", iat: S, exp: S + 600, ...claims });
}

describe("signatures, checked with WebCrypto against the issuer's keys", () => {
  it.each(["es", "rs", "ps", "ed"])("a valid %s token is accepted", async (name) => {
    expect(await verify(await sign({}, keys[name]))).toMatchObject({ ok: true, identity: { subject: "user-1" } });
  });

  it.each(["es", "rs", "ps", "ed"])("a %s signature with one character changed is refused", async (name) => {
    const token = await sign({}, keys[name]);
    expect(await verify(flipLastChar(token))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "signature",
    });
  });

  it.each([
    ["es", 63],
    ["es", 65],
    ["ed", 63],
    ["rs", 255],
  ])("a %s signature of %i bytes is refused", async (name, length) => {
    const [header, payload] = (await sign({}, keys[name])).split(".");
    const token = `${header}.${payload}.${b64url(new Uint8Array(length).fill(1))}`;
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "signature" });
  });

  it("an RSA key shorter than 2048 bits is never taken into the set: its tokens are refused, good signature or not", async () => {
    const token = await signText(keys.weak as TestKey, {}, claimsText());
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });

  it("a weak key listed first does not block a token without a kid that a good key verifies", async () => {
    const mixed = await makeIssuer();
    await mixed.publish([keys.weak as TestKey, keys.rs as TestKey]);
    const { verify: verifyMixed } = verifierFor({
      issuers: { mixed: { issuer: mixed } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    const claims = JSON.stringify({ iss: mixed.url, aud: AUDIENCE, sub: "u1", iat: S, exp: S + 600 });
    expect(await verifyMixed(await signText(keys.rs as TestKey, { kid: undefined }, claims))).toMatchObject({
      ok: true,
    });
    // Signed by the weak key itself: still refused (no key of the set verifies it).
    expect(await verifyMixed(await signText(keys.weak as TestKey, { kid: undefined }, claims))).toMatchObject({
      ok: false,
      detail: "signature",
    });
  });

  it("the next key with the same kid is tried after a signature mismatch", async () => {
    expect(await verify(await sign({}, keys.dupB))).toMatchObject({ ok: true });
  });

  it.each([
    ["none", { alg: "none" }],
    ["None", { alg: "None" }],
    ["HS256", { alg: "HS256" }],
  ])("alg %s is never allowed", async (_label, header) => {
    const token = await signText(keys.es as TestKey, header, claimsText());
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "alg_not_allowed" });
  });

  it("an algorithm the issuer does not list is refused, whatever keys it publishes", async () => {
    expect(await verify(await sign({}, keys.es384))).toMatchObject({ detail: "alg_not_allowed" });
    const rs = await narrow.sign({ iat: S, exp: S + 600 }, { key: keys.rs as TestKey });
    expect(await verify(rs)).toMatchObject({ ok: false, reason: "token_invalid", detail: "alg_not_allowed" });
    const es = await narrow.sign({ iat: S, exp: S + 600 }, { key: keys.es as TestKey });
    expect(await verify(es)).toMatchObject({ ok: true });
  });

  it("an unknown kid is refused", async () => {
    const token = await signText(keys.es as TestKey, { kid: "nope" }, claimsText());
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });
});

describe("the strict parse", () => {
  it.each([
    ["crit", { crit: ["exp"] }, "crit_not_supported"],
    ["empty crit", { crit: [] }, "crit_not_supported"],
    ["b64", { b64: true }, "b64_not_supported"],
    ["enc", { enc: "A256GCM" }, "jwe_not_accepted"],
    ["zip", { zip: "DEF" }, "jwe_not_accepted"],
    ["no alg", { alg: undefined }, "alg_missing"],
  ])("header with %s is refused", async (_label, header, detail) => {
    const token = await signText(keys.es as TestKey, header, claimsText());
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail });
  });

  it.each([
    ["a JSON array", "[1,2]"],
    ["null", "null"],
    ["a string", '"claims"'],
    ["not JSON", "{iss:1}"],
  ])("a payload that is %s is refused", async (_label, payload) => {
    const token = await signText(keys.es as TestKey, {}, payload);
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "bad_payload" });
  });

  it("a payload that is not valid UTF-8 is refused; valid non-ASCII UTF-8 is read as such", async () => {
    const text = claimsText({ name: "Zoë" });
    const bytes = new TextEncoder().encode(text);
    expect(await verify(await signText(keys.es as TestKey, {}, bytes))).toMatchObject({
      ok: true,
      identity: { claims: { name: "Zoë" } },
    });
    const broken = Uint8Array.from([...bytes.slice(0, -2), 0xc3, 0x7d]);
    expect(await verify(await signText(keys.es as TestKey, {}, broken))).toMatchObject({ detail: "bad_payload" });
  });

  it("duplicate claim names: the last one counts, as in jose and JSON.parse", async () => {
    const text = claimsText().replace(/^\{/, '{"sub":"admin",');
    expect(await verify(await signText(keys.es as TestKey, {}, text))).toMatchObject({
      ok: true,
      identity: { subject: "u1" },
    });
  });

  it("iss must be a string", async () => {
    const token = await signText(keys.es as TestKey, {}, claimsText({ iss: 7 }));
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "iss_missing" });
  });
});

describe("registered claims, with the issuer's clock skew", () => {
  it.each([
    ["exp missing", { exp: undefined }, "token_invalid", "claim_exp_missing"],
    ["exp a string", { exp: String(S + 600) }, "token_invalid", "claim_exp_invalid"],
    ["exp null", { exp: null }, "token_invalid", "claim_exp_invalid"],
    ["exp an array", { exp: [S + 600] }, "token_invalid", "claim_exp_invalid"],
    ["nbf a string", { nbf: String(S) }, "token_not_yet_valid", "nbf"],
    ["nbf a boolean", { nbf: true }, "token_not_yet_valid", "nbf"],
    ["iat a string", { iat: String(S) }, "token_invalid", "claim_iat_invalid"],
    ["iat an object", { iat: {} }, "token_invalid", "claim_iat_invalid"],
    ["expired beyond the skew", { exp: S - SKEW }, "token_expired", "exp"],
    ["nbf beyond the skew", { nbf: S + SKEW + 1 }, "token_not_yet_valid", "nbf"],
    ["iat beyond the skew", { iat: S + SKEW + 1 }, "token_invalid", "iat_in_future"],
    [
      "DPoP-bound (cnf.jkt)",
      { cnf: { jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" } },
      "token_invalid",
      "sender_constrained",
    ],
    [
      "certificate-bound (cnf x5t#S256)",
      { cnf: { "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" } },
      "token_invalid",
      "sender_constrained",
    ],
    ["cnf of any other shape", { cnf: null }, "token_invalid", "sender_constrained"],
  ])("%s -> %s %s", async (_label, claims, reason, detail) => {
    expect(await verify(await sign(claims))).toMatchObject({ ok: false, reason, detail });
  });

  it.each([
    ["expired within the skew", { exp: S - SKEW + 1 }],
    ["nbf within the skew", { nbf: S + SKEW }],
    ["iat within the skew", { iat: S + SKEW }],
    ["no iat and no nbf", { iat: undefined }],
    ["a fractional exp", { exp: S + 0.5 }],
  ])("%s is accepted", async (_label, claims) => {
    expect(await verify(await sign(claims))).toMatchObject({ ok: true });
  });

  it("the claim checks run after the signature: a forged expired token is a bad signature", async () => {
    const token = flipLastChar(await sign({ exp: S - 3600 }));
    expect(await verify(token)).toMatchObject({ detail: "signature" });
  });

  it("iss is compared exactly with the issuer's configured value", () => {
    const issuer = { issuer: "https://idp.test", clockSkewS: 0 } as ResolvedIssuer;
    for (const iss of ["https://idp.test/", "https://IDP.test", 7]) {
      expect(checkRegisteredClaims({}, { iss, exp: S + 60 }, issuer, NOW)).toEqual({
        ok: false,
        reason: "issuer_unknown",
        detail: "iss",
      });
    }
    expect(checkRegisteredClaims({}, { iss: "https://idp.test", exp: S + 60 }, issuer, NOW)).toEqual({
      ok: true,
      exp: S + 60,
    });
  });
});

describe("typ, when the issuer configures one (compared as jose does)", () => {
  const typedToken = (typ: unknown) =>
    typed.sign({ iat: S, exp: S + 600 }, { key: keys.es as TestKey, header: { typ } });

  it.each(["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"])("typ %s is accepted", async (typ) => {
    expect(await verify(await typedToken(typ))).toMatchObject({ ok: true });
  });

  it.each([["JWT"], ["jwt"], ["foo/at+jwt"], ["application/jwt"], [undefined], [7]])(
    "typ %s is refused",
    async (typ) => {
      expect(await verify(await typedToken(typ))).toMatchObject({
        ok: false,
        reason: "token_invalid",
        detail: "claim_typ_check_failed",
      });
    },
  );

  it("an issuer without typ accepts any", async () => {
    for (const typ of ["JWT", "at+jwt", "whatever", undefined]) {
      expect(await verify(await sign({}, keys.es, { typ }))).toMatchObject({ ok: true });
    }
  });
});

describe("audience", () => {
  it.each([
    ["our audience", AUDIENCE, true],
    ["an array holding ours", ["https://other.test", AUDIENCE], true],
    ["another audience", "https://other.test", false],
    ["an array without ours", ["a", "b"], false],
    ["no aud", undefined, false],
    ["a number", 7, false],
  ])("%s", async (_label, aud, ok) => {
    const result = await verify(await sign({ aud }));
    expect(result).toMatchObject(ok ? { ok: true } : { ok: false, reason: "audience_mismatch", detail: "aud" });
  });
});

describe("verifySignature", () => {
  const input = new TextEncoder().encode("header.payload");

  /** Imports only the public members, as the key store does, so any algorithm can be asked for. */
  async function importAs(
    jwk: TestKey["publicJwk"] | undefined,
    params: { name: string; hash?: string; namedCurve?: string },
  ) {
    const { kty, crv, x, y, n, e } = jwk ?? {};
    return crypto.subtle.importKey("jwk", { kty, crv, x, y, n, e } as JsonWebKey, params, false, ["verify"]);
  }

  it("refuses a key imported for another algorithm than the token's", async () => {
    const es384 = await importAs(keys.es384?.publicJwk, { name: "ECDSA", namedCurve: "P-384" });
    expect(await verifySignature("ES256", es384, input, new Uint8Array(64))).toBe("key_alg_mismatch");
    const rs512 = await importAs(keys.rs?.publicJwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-512" });
    expect(await verifySignature("RS256", rs512, input, new Uint8Array(256))).toBe("key_alg_mismatch");
    const pkcs1 = await importAs(keys.rs?.publicJwk, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" });
    expect(await verifySignature("PS256", pkcs1, input, new Uint8Array(256))).toBe("key_alg_mismatch");
    const ed = await importAs(keys.ed?.publicJwk, { name: "Ed25519" });
    expect(await verifySignature("ES256", ed, input, new Uint8Array(64))).toBe("key_alg_mismatch");
  });

  it("knows no algorithm outside the JWS asymmetric set", async () => {
    const es = await importAs(keys.es?.publicJwk, { name: "ECDSA", namedCurve: "P-256" });
    for (const alg of ["HS256", "none", "__proto__", "toString", "ES256K"]) {
      expect(await verifySignature(alg, es, input, new Uint8Array(64))).toBe("alg_not_supported");
    }
  });

  it("answers valid only for a signature over exactly the signing input", async () => {
    const key = keys.es as TestKey;
    const signature = new Uint8Array(
      await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key.privateKey, input),
    );
    const es = await importAs(key.publicJwk, { name: "ECDSA", namedCurve: "P-256" });
    expect(await verifySignature("ES256", es, input, signature)).toBe("valid");
    expect(await verifySignature("ES256", es, new TextEncoder().encode("header.payloaD"), signature)).toBe("mismatch");
    expect(await verifySignature("ES384", es, input, signature)).toBe("key_alg_mismatch");
  });
});
