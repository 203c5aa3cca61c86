// JWT pitfalls of RFC 7515 / 7519 / 8725 at the core verifier, each by its reason and detail:
// keys a token names in its own header (`x5c`, `jwk`, `jku` without a `kid`), `kid` and `alg`
// of the wrong JSON type, `crit` naming members the edge knows, compact forms with too many or
// too few dots, duplicate members in the header and the claims (the last one counts, for the
// issuer's choice as for its check), NumericDates and audiences at their extremes, issuers
// spelt another way, and signatures that are the right numbers in the wrong encoding or
// outside their range (DER ECDSA, r or s of 0 or n, r + n and s + n on P-521, S + L for Ed25519,
// an RSA signature with a leading zero byte, a cube-root forgery under e = 3); an Ed448 key in
// a set is never a key here.
import { beforeAll, describe, expect, it } from "vitest";
import type { VerifyResult } from "../../src/core/tokens/verify";
import {
  AUDIENCE,
  attackerHits,
  b64url,
  issuerServer,
  makeIssuer,
  makeKey,
  type TestIssuer,
  type TestKey,
} from "../support/issuers";
import { fixedNow, makeAnyKey, verifierFor } from "./token-fixtures";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);

let idp: TestIssuer;
let typed: TestIssuer;
let bounded: TestIssuer;
const keys: Record<string, TestKey> = {};
let verify: (token: string) => Promise<VerifyResult>;

/** The group orders of the NIST curves (SEC 2), big-endian. */
const ORDER: Record<string, bigint> = {
  ES256: BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
  ES384: BigInt("0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"),
  ES512: BigInt(
    "0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
  ),
};
/** Bytes of r (and of s) in a raw JWS ECDSA signature (RFC 7518 §3.4). */
const HALF: Record<string, number> = { ES256: 32, ES384: 48, ES512: 66 };
/** The order of Ed25519's base point (RFC 8032 §5.1). */
const ED25519_L = (1n << 252n) + 27742317777372353535851937790883648493n;

const SIGN_PARAMS: Record<string, { name: string; hash?: string; saltLength?: number }> = {
  ES256: { name: "ECDSA", hash: "SHA-256" },
  ES384: { name: "ECDSA", hash: "SHA-384" },
  ES512: { name: "ECDSA", hash: "SHA-512" },
  RS256: { name: "RSASSA-PKCS1-v1_5" },
  PS256: { name: "RSA-PSS", saltLength: 32 },
  EdDSA: { name: "Ed25519" },
};

beforeAll(async () => {
  Object.assign(keys, {
    es: await makeKey("ES256", "es"),
    rs: await makeKey("RS256", "rs"),
    ps: await makeKey("PS256", "ps"),
    ed: await makeKey("EdDSA", "ed"),
    es384: await makeAnyKey("ES384", "es384"),
    es512: await makeAnyKey("ES512", "es512"),
  });
  [idp, typed, bounded] = await Promise.all([makeIssuer(), makeIssuer(), makeIssuer()]);
  await Promise.all([idp, typed, bounded].map((issuer) => issuer.publish(Object.values(keys))));
  ({ verify } = verifierFor({
    issuers: {
      idp: { issuer: idp, algorithms: ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"] },
      typed: { issuer: typed, typ: "at+jwt" },
      bounded: { issuer: bounded, max_lifetime_s: 3900 },
    },
    deps: { now: () => NOW, tokenCacheEntries: 0 },
  }));
});

/** Claims text of `issuer`, valid at NOW; `extra` is spliced in as written (JSON members). */
function claimsOf(issuer: TestIssuer, extra = "", exp = String(S + 600)): string {
  return `{"iss":${JSON.stringify(issuer.url)},"aud":"${AUDIENCE}","sub":"u1","iat":${S},"exp":${exp}${extra}}`;
}

function claims(extra = "", exp?: string): string {
  return claimsOf(idp, extra, exp);
}

/** Signs exactly this header text and this claims text with `key`'s algorithm. */
async function signRaw(key: TestKey, headerText: string, payload: string): Promise<string> {
  const input = `${b64url(headerText)}.${b64url(payload)}`;
  const params = SIGN_PARAMS[key.alg];
  if (!params) throw new Error(`signRaw: no parameters for ${key.alg}`);
  const signature = await crypto.subtle.sign(params, key.privateKey, new TextEncoder().encode(input));
  return `${input}.${b64url(new Uint8Array(signature))}`;
}

/** A token of `key` over `payload`, its header `{alg, kid}` of the key. */
function signWith(key: TestKey, payload = claims()): Promise<string> {
  return signRaw(key, JSON.stringify({ alg: key.alg, kid: key.kid }), payload);
}

function bytesOf(segment: string): Uint8Array {
  return Uint8Array.from(atob(segment.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
}

function toBig(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

function toBytes(value: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let rest = value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(rest & 255n);
    rest >>= 8n;
  }
  if (rest !== 0n) throw new Error("does not fit");
  return out;
}

/** The token with its signature segment replaced by these bytes. */
function withSignature(token: string, signature: Uint8Array): string {
  const [header, payload] = token.split(".");
  return `${header}.${payload}.${b64url(signature)}`;
}

/** A raw r‖s signature of `alg` from two numbers. */
function rawEcdsa(alg: string, r: bigint, s: bigint): Uint8Array {
  const half = HALF[alg] as number;
  return Uint8Array.from([...toBytes(r, half), ...toBytes(s, half)]);
}

/** The r and s of a token's raw ECDSA signature. */
function rsOf(token: string, alg: string): [bigint, bigint] {
  const signature = bytesOf(token.split(".")[2] as string);
  const half = HALF[alg] as number;
  return [toBig(signature.slice(0, half)), toBig(signature.slice(half))];
}

/** DER INTEGER of a non-negative number, as ASN.1 writes it (a leading zero when the top bit is set). */
function derInteger(value: bigint): number[] {
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  const bytes = hex.match(/../g)?.map((h) => Number.parseInt(h, 16)) ?? [0];
  if ((bytes[0] as number) & 0x80) bytes.unshift(0);
  return [0x02, bytes.length, ...bytes];
}

const refused = (detail: string, reason = "token_invalid") => ({ ok: false, reason, detail });

describe("keys a token brings in its own header, without a kid", () => {
  // RFC 8725 §3.10 / README "How a token is checked" step 3: jku, x5u, x5c and embedded jwk
  // are ignored and never fetched. Without a kid, the issuer's keys of the alg are tried, and
  // none of them verifies what the attacker's own key signed.
  it("x5c, jwk, jku and x5u naming the attacker's key: the signature is refused, nothing is fetched", async () => {
    const attacker = await makeKey("ES256", "attacker");
    // Any certificate-shaped base64 will do: it must never be read.
    const certificate = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(300))));
    const before = await attackerHits();
    for (const header of [
      { x5c: [certificate] },
      { jwk: attacker.publicJwk },
      { jku: `${issuerServer}/attacker/jwks` },
      { x5u: `${issuerServer}/attacker/cert.pem` },
      { x5c: [certificate], jwk: attacker.publicJwk, jku: `${issuerServer}/attacker/jwks` },
    ]) {
      const token = await signRaw(attacker, JSON.stringify({ alg: "ES256", ...header }), claims());
      expect({ header: Object.keys(header), result: await verify(token) }).toMatchObject({
        header: Object.keys(header),
        result: refused("signature"),
      });
    }
    expect(await attackerHits()).toBe(before);
  });

  it("an x5c naming the attacker's key beside the kid of a real key: the real key decides", async () => {
    const attacker = await makeKey("ES256", "es");
    const certificate = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(300))));
    const token = await signRaw(attacker, JSON.stringify({ alg: "ES256", kid: "es", x5c: [certificate] }), claims());
    expect(await verify(token)).toMatchObject(refused("signature"));
    // The issuer's own token with the same header members verifies: they are ignored, not refused.
    const own = await signRaw(
      keys.es as TestKey,
      JSON.stringify({ alg: "ES256", kid: "es", x5c: [certificate] }),
      claims(),
    );
    expect(await verify(own)).toMatchObject({ ok: true, identity: { subject: "u1" } });
  });
});

describe("HS* signed with a published public key as the secret (algorithm confusion)", () => {
  async function hmacToken(hash: string, alg: string, secret: Uint8Array, kid: string): Promise<string> {
    const input = `${b64url(JSON.stringify({ alg, kid }))}.${b64url(claims())}`;
    const key = await crypto.subtle.importKey("raw", secret, { name: "HMAC", hash }, false, ["sign"]);
    const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input));
    return `${input}.${b64url(new Uint8Array(mac))}`;
  }

  it.each(["es", "ed", "es384"])(
    "the %s key's JWK text and raw x as the HMAC secret: alg_not_allowed",
    async (name) => {
      const key = keys[name] as TestKey;
      const text = new TextEncoder().encode(JSON.stringify(key.publicJwk));
      const raw = bytesOf(key.publicJwk.x as string);
      for (const [hash, alg] of [
        ["SHA-256", "HS256"],
        ["SHA-384", "HS384"],
        ["SHA-512", "HS512"],
      ] as const) {
        for (const secret of [text, raw]) {
          expect(await verify(await hmacToken(hash, alg, secret, key.kid))).toMatchObject(refused("alg_not_allowed"));
        }
      }
    },
  );

  // RFC 7515 §4.1.1: alg is case-sensitive; a spelling of an allowed one in another case is not it.
  it.each(["es256", "Es256", "ES256 ", "ES-256", "rs256"])("alg %j is not an allowed algorithm", async (alg) => {
    const token = await signRaw(keys.es as TestKey, JSON.stringify({ alg, kid: "es" }), claims());
    expect(await verify(token)).toMatchObject(refused("alg_not_allowed"));
  });
});

describe("kid and alg of the wrong JSON type", () => {
  it.each([
    ["an array naming a real kid", ["es"]],
    ["an empty array", []],
    ["true", true],
    ["false", false],
    ["0", 0],
  ])("kid %s is refused unread (kid_invalid)", async (_label, kid) => {
    const token = await signRaw(keys.es as TestKey, JSON.stringify({ alg: "ES256", kid }), claims());
    expect(await verify(token)).toMatchObject(refused("kid_invalid"));
  });

  it.each([
    ["an array naming an allowed alg", ["ES256"]],
    ["null", null],
    ["an object", { name: "ES256" }],
  ])("alg %s is no alg (alg_missing)", async (_label, alg) => {
    const token = await signRaw(keys.es as TestKey, JSON.stringify({ alg, kid: "es" }), claims());
    expect(await verify(token)).toMatchObject(refused("alg_missing"));
  });
});

describe("crit naming members the edge knows", () => {
  // RFC 7515 §4.1.11: crit lists extensions the recipient must understand; the edge implements
  // none, so crit refuses the token whatever it names, registered members and b64 included.
  it.each([
    ["b64, with b64 false", { crit: ["b64"], b64: false }],
    ["b64, with b64 true", { crit: ["b64"], b64: true }],
    ["alg", { crit: ["alg"] }],
    ["kid", { crit: ["kid"] }],
    ["typ", { crit: ["typ"] }],
    ["an unknown member and a known one", { crit: ["urn:example:x", "exp"], "urn:example:x": 1 }],
  ])("crit naming %s is refused", async (_label, header) => {
    const token = await signRaw(keys.es as TestKey, JSON.stringify({ alg: "ES256", kid: "es", ...header }), claims());
    expect(await verify(token)).toMatchObject(refused("crit_not_supported"));
  });
});

describe("the compact form: exactly three segments", () => {
  it.each([
    ["four segments", (t: string) => `${t}.${t.split(".")[2]}`],
    ["a trailing dot", (t: string) => `${t}.`],
    ["a leading dot", (t: string) => `.${t}`],
    ["two dots between header and payload", (t: string) => t.replace(".", "..")],
    ["an empty payload", (t: string) => `${t.split(".")[0]}..${t.split(".")[2]}`],
    [
      "a JWS JSON serialization",
      (t: string) => {
        const [protectedHeader, payload, signature] = t.split(".");
        return JSON.stringify({ protected: protectedHeader, payload, signature });
      },
    ],
    [
      "a flattened JSON serialization, base64url-encoded",
      (t: string) => {
        const [protectedHeader, payload, signature] = t.split(".");
        return b64url(JSON.stringify({ protected: protectedHeader, payload, signature }));
      },
    ],
  ])("%s is not a compact JWS", async (_label, mangle) => {
    expect(await verify(mangle(await signWith(keys.es as TestKey)))).toEqual(refused("not_compact_jws"));
  });
});

describe("duplicate member names: the last one counts, for choosing as for checking", () => {
  // RFC 7515 §5.2 allows either refusing duplicates or taking the last; JSON.parse and jose take
  // the last. What matters is that every step reads the same one.
  it("a header alg none before ES256 verifies as ES256", async () => {
    const token = await signRaw(keys.es as TestKey, '{"alg":"none","alg":"ES256","kid":"es"}', claims());
    expect(await verify(token)).toMatchObject({ ok: true, identity: { subject: "u1" } });
  });

  it("of two kids, the last names the key", async () => {
    expect(
      await verify(await signRaw(keys.es as TestKey, '{"alg":"ES256","kid":"nope","kid":"es"}', claims())),
    ).toMatchObject({
      ok: true,
    });
    expect(
      await verify(await signRaw(keys.es as TestKey, '{"alg":"ES256","kid":"es","kid":"nope"}', claims())),
    ).toMatchObject(refused("kid_unknown"));
  });

  it("of two typs, the last is checked against the issuer's", async () => {
    const typedClaims = claimsOf(typed);
    const last = await signRaw(
      keys.es as TestKey,
      '{"alg":"ES256","kid":"es","typ":"JWT","typ":"at+jwt"}',
      typedClaims,
    );
    expect(await verify(last)).toMatchObject({ ok: true });
    const first = await signRaw(
      keys.es as TestKey,
      '{"alg":"ES256","kid":"es","typ":"at+jwt","typ":"JWT"}',
      typedClaims,
    );
    expect(await verify(first)).toMatchObject(refused("claim_typ_check_failed"));
  });

  it("of two isss, the last chooses the issuer and is the one compared", async () => {
    const evil = JSON.stringify("https://evil.test");
    const real = JSON.stringify(idp.url);
    const lastReal = claims().replace(/^\{/, `{"iss":${evil},`);
    expect(await verify(await signWith(keys.es as TestKey, lastReal))).toMatchObject({
      ok: true,
      identity: { issuerId: "idp" },
    });
    const lastEvil = `${claims().slice(0, -1)},"iss":${evil}}`;
    expect(lastEvil).toContain(real);
    expect(await verify(await signWith(keys.es as TestKey, lastEvil))).toMatchObject(
      refused("issuer_not_configured", "issuer_unknown"),
    );
  });
});

describe("NumericDates at their extremes", () => {
  it.each([
    ["an integer beyond 2^53", "9007199254740993"],
    ["1e308", "1e308"],
    ["a float with many digits", `${S + 600}.000000000000001`],
  ])("exp %s is a number, and a far-off one", async (_label, exp) => {
    expect(await verify(await signWith(keys.es as TestKey, claims("", exp)))).toMatchObject({ ok: true });
  });

  // With max_lifetime_s (README), such a token is refused for its whole life.
  it.each([
    ["exp beyond 2^53", () => claimsOf(bounded, "", "9007199254740993")],
    ["exp 1e308", () => claimsOf(bounded, "", "1e308")],
    ["iat -1e308", () => claimsOf(bounded).replace(`"iat":${S}`, '"iat":-1e308')],
  ])("%s is lifetime_too_long under max_lifetime_s", async (_label, payload) => {
    expect(await verify(await signWith(keys.es as TestKey, payload()))).toMatchObject(refused("lifetime_too_long"));
  });

  it.each([
    ["NaN", "NaN"],
    ["Infinity", "Infinity"],
    ["hexadecimal", "0x7fffffff"],
    ["with a leading plus", `+${S + 600}`],
    ["with leading zeros", `00${S + 600}`],
  ])("exp %s is no JSON: the claims are refused (bad_payload)", async (_label, exp) => {
    expect(await verify(await signWith(keys.es as TestKey, claims("", exp)))).toEqual(refused("bad_payload"));
  });

  it.each([
    ["exp the string 1e308", () => claims("", '"1e308"'), refused("claim_exp_invalid")],
    ["exp true", () => claims("", "true"), refused("claim_exp_invalid")],
    ["exp an object", () => claims("", "{}"), refused("claim_exp_invalid")],
    ["exp negative", () => claims("", "-1"), refused("exp", "token_expired")],
    ["nbf 1e308", () => claims(',"nbf":1e308'), refused("nbf", "token_not_yet_valid")],
    ["nbf a float just past the skew", () => claims(`,"nbf":${S + 60}.5`), refused("nbf", "token_not_yet_valid")],
    ["iat the string now", () => claims().replace(`"iat":${S}`, `"iat":"${S}"`), refused("claim_iat_invalid")],
    ["iat 1e308", () => claims().replace(`"iat":${S}`, '"iat":1e308'), refused("iat_in_future")],
  ])("%s", async (_label, payload, expected) => {
    expect(await verify(await signWith(keys.es as TestKey, payload()))).toMatchObject(expected);
  });
});

describe("audiences and issuers spelt another way", () => {
  it.each([
    ["an empty array", "[]"],
    ["an array of non-strings", "[42,null,true,{}]"],
    ["our audience nested in an array", `[["${AUDIENCE}"]]`],
    ["our audience as an object", `{"aud":"${AUDIENCE}"}`],
    ["our audience with a trailing slash", `"${AUDIENCE}/"`],
    ["our audience in upper case", `"${AUDIENCE.toUpperCase()}"`],
    ["an empty string", '""'],
  ])("aud %s is audience_mismatch", async (_label, aud) => {
    const payload = claims().replace(`"aud":"${AUDIENCE}"`, `"aud":${aud}`);
    expect(await verify(await signWith(keys.es as TestKey, payload))).toMatchObject(
      refused("aud", "audience_mismatch"),
    );
  });

  it.each([
    ["a trailing slash", (u: string) => `${u}/`],
    ["a trailing dot segment", (u: string) => `${u}/.`],
    ["an empty query", (u: string) => `${u}?`],
    ["an empty fragment", (u: string) => `${u}#`],
    ["the scheme in upper case", (u: string) => u.replace(/^http/, "HTTP")],
    ["a percent-encoded letter", (u: string) => u.replace("/iss-", "/%69ss-")],
    ["a leading space", (u: string) => ` ${u}`],
    ["a trailing NUL", (u: string) => `${u}\u0000`],
  ])("iss with %s names no configured issuer", async (_label, spell) => {
    const payload = claims().replace(JSON.stringify(idp.url), JSON.stringify(spell(idp.url)));
    expect(await verify(await signWith(keys.es as TestKey, payload))).toEqual(
      refused("issuer_not_configured", "issuer_unknown"),
    );
  });
});

describe("ECDSA signatures in the wrong encoding or out of range", () => {
  it("a valid ES256 signature re-encoded as DER (as Java and OpenSSL write it) is refused", async () => {
    const token = await signWith(keys.es as TestKey);
    expect(await verify(token)).toMatchObject({ ok: true });
    const [r, s] = rsOf(token, "ES256");
    const body = [...derInteger(r), ...derInteger(s)];
    const der = Uint8Array.from([0x30, body.length, ...body]);
    expect(await verify(withSignature(token, der))).toMatchObject(refused("signature"));
  });

  it.each(["ES256", "ES384", "ES512"])(
    "%s: r = 0, s = 0, r = s = 0 and r = s = n are refused (psychic signatures)",
    async (alg) => {
      const key = keys[{ ES256: "es", ES384: "es384", ES512: "es512" }[alg] as string] as TestKey;
      const token = await signWith(key);
      expect(await verify(token)).toMatchObject({ ok: true });
      const [r, s] = rsOf(token, alg);
      const n = ORDER[alg] as bigint;
      for (const [label, rr, ss] of [
        ["r = 0", 0n, s],
        ["s = 0", r, 0n],
        ["r = s = 0", 0n, 0n],
        ["r = s = n", n, n],
        ["r = n, s real", n, s],
      ] as const) {
        expect({ label, result: await verify(withSignature(token, rawEcdsa(alg, rr, ss))) }).toMatchObject({
          label,
          result: refused("signature"),
        });
      }
    },
  );

  // A P-521 scalar takes 521 bits of a 528-bit field: r + n and s + n fit, and a verifier that
  // reduced them mod n would take a second spelling of the same signature.
  it("ES512: r + n and s + n, which fit in 66 bytes, are refused", async () => {
    const token = await signWith(keys.es512 as TestKey);
    const [r, s] = rsOf(token, "ES512");
    const n = ORDER.ES512 as bigint;
    expect(await verify(withSignature(token, rawEcdsa("ES512", r + n, s)))).toMatchObject(refused("signature"));
    expect(await verify(withSignature(token, rawEcdsa("ES512", r, s + n)))).toMatchObject(refused("signature"));
    expect(await verify(token)).toMatchObject({ ok: true });
  });
});

describe("EdDSA and RSA signatures spelt a second way", () => {
  // RFC 8032 §5.1.7: S must be below L, else Ed25519 signatures are malleable.
  it("Ed25519 with S + L in place of S is refused", async () => {
    const token = await signWith(keys.ed as TestKey);
    expect(await verify(token)).toMatchObject({ ok: true });
    const signature = bytesOf(token.split(".")[2] as string);
    const sLittle = signature.slice(32).reverse();
    const twin = toBytes(toBig(sLittle) + ED25519_L, 32).reverse();
    expect(await verify(withSignature(token, Uint8Array.from([...signature.slice(0, 32), ...twin])))).toMatchObject(
      refused("signature"),
    );
  });

  it.each(["rs", "ps"])("%s: a valid signature with a zero byte put before it (257 bytes) is refused", async (name) => {
    const token = await signWith(keys[name] as TestKey);
    const signature = bytesOf(token.split(".")[2] as string);
    expect(await verify(withSignature(token, Uint8Array.from([0, ...signature])))).toMatchObject(refused("signature"));
  });

  // Bleichenbacher 2006: under e = 3 a verifier that stops reading after the hash takes a cube
  // root of "00 01 FF 00 DigestInfo hash" followed by anything as a signature, no private key needed.
  it("an RSA key with e = 3: a cube-root forgery with trailing garbage is refused", async () => {
    const issuer = await makeIssuer();
    const e3 = { ...(keys.rs as TestKey).publicJwk, kid: "e3", e: "Aw" };
    const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
      method: "POST",
      body: JSON.stringify({ jwks: { keys: [e3] } }),
    });
    expect(response.ok).toBe(true);
    const { verify: verifyE3 } = verifierFor({
      issuers: { e3: { issuer } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    const forge = async (header: Record<string, unknown>) => {
      const input = `${b64url(JSON.stringify({ alg: "RS256", ...header }))}.${b64url(claimsOf(issuer))}`;
      const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(input)));
      const digestInfo = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
        0x20,
      ];
      const prefix = Uint8Array.from([0x00, 0x01, 0xff, 0x00, ...digestInfo, ...hash]);
      const garbageBits = BigInt(8 * (256 - prefix.length));
      const high = (toBig(prefix) << garbageBits) | ((1n << garbageBits) - 1n);
      // The integer cube root of the top of the range: its cube keeps the prefix.
      let root = 1n << 700n;
      for (;;) {
        const next = (2n * root + high / (root * root)) / 3n;
        if (next >= root) break;
        root = next;
      }
      while (root ** 3n > high) root -= 1n;
      const cube = toBytes(root ** 3n, 256);
      expect(cube.slice(0, prefix.length)).toEqual(prefix);
      return `${input}.${b64url(toBytes(root, 256))}`;
    };
    expect(await verifyE3(await forge({ kid: "e3" }))).toMatchObject(refused("signature"));
    expect(await verifyE3(await forge({}))).toMatchObject(refused("signature"));
  });
});

describe("an Ed448 key in the set", () => {
  // README "The JWKS cache": OKP keys are kept on Ed25519 only; Ed448 verifies nothing here.
  const ed448 = () => ({
    kty: "OKP",
    crv: "Ed448",
    x: b64url(crypto.getRandomValues(new Uint8Array(57))),
    kid: "ed448",
    alg: "EdDSA",
    use: "sig",
  });

  async function publishRaw(issuer: TestIssuer, jwks: unknown[]) {
    const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
      method: "POST",
      body: JSON.stringify({ jwks: { keys: jwks } }),
    });
    expect(response.ok).toBe(true);
  }

  function ed448Token(issuer: TestIssuer, header: Record<string, unknown>): string {
    return `${b64url(JSON.stringify({ alg: "EdDSA", ...header }))}.${b64url(claimsOf(issuer))}.${b64url(new Uint8Array(114).fill(7))}`;
  }

  it("beside an Ed25519 key: dropped, its kid unknown; the Ed25519 key verifies", async () => {
    const issuer = await makeIssuer();
    const ed = keys.ed as TestKey;
    await publishRaw(issuer, [ed448(), ed.publicJwk]);
    const { verify: verifyMixed } = verifierFor({
      issuers: { x: { issuer } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    expect(await verifyMixed(ed448Token(issuer, { kid: "ed448" }))).toMatchObject(refused("kid_unknown"));
    expect(await verifyMixed(ed448Token(issuer, {}))).toMatchObject(refused("signature"));
    expect(await verifyMixed(await signWith(ed, claimsOf(issuer)))).toMatchObject({ ok: true });
  });

  it("alone: a set without usable keys (503 jwks_unavailable), never a key", async () => {
    const issuer = await makeIssuer();
    await publishRaw(issuer, [ed448()]);
    const { verify: verifyAlone } = verifierFor({
      issuers: { x: { issuer } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    expect(await verifyAlone(ed448Token(issuer, { kid: "ed448" }))).toMatchObject(
      refused("jwks_no_usable_keys", "jwks_unavailable"),
    );
  });
});
