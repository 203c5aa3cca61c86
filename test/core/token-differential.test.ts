// Differential test: our verifier (one strict parse, WebCrypto directly) against jose's
// `jwtVerify` with the same strict options, over a corpus of good and bad tokens. They must
// agree on accept/reject for every token, except the few cases listed in STRICTER where we
// refuse on purpose what jose lets through. This is the evidence that taking jose off the
// request path lost no check.
import { createLocalJWKSet, type JWK, jwtVerify } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_ALGORITHMS } from "../../src/core/policy-issuers";
import { AUDIENCE, b64url, makeIssuer, makeKey, type TestIssuer, type TestKey } from "../support/issuers";
import { fixedNow, flipLastChar, makeKeyRing, signText, verifierFor } from "./token-fixtures";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);
const SKEW = 60;

let plain: TestIssuer;
let typed: TestIssuer;
const keys: Record<string, TestKey> = {};
let jwks: { keys: JWK[] };

interface Case {
  name: string;
  /** Which configured issuer the token is meant for: `typed` requires `typ: at+jwt`. */
  issuer: "plain" | "typed";
  token: () => Promise<string>;
  /** The right answer, so that agreement on a wrong answer would still fail. */
  accept: boolean;
}

/** Where we refuse on purpose what jose accepts; each one is a parse rule in compact.ts. */
const STRICTER = new Set([
  "signature's last character with non-zero unused bits",
  "trailing space",
  "b64 header without crit",
  "JWE-style enc header",
  "padded signature",
]);

function claims(extra: Record<string, unknown> = {}, issuer: TestIssuer = plain) {
  return { iss: issuer.url, aud: AUDIENCE, sub: "u1", iat: S, exp: S + 600, ...extra };
}

/** A token signed when the test runs (the issuers and keys exist only then). */
function signed(extra: Record<string, unknown> = {}, key = "es", header: Record<string, unknown> = {}, to = "plain") {
  return () => {
    const issuer = to === "typed" ? typed : plain;
    return issuer.sign(claims(extra, issuer), { key: keys[key] as TestKey, header });
  };
}

/** Signs exact payload text (given as a function when it needs the issuers' URLs). */
function raw(payload: string | (() => string), header: Record<string, unknown> = {}) {
  return () => signText(keys.es as TestKey, header, typeof payload === "string" ? payload : payload());
}

function withSignature(token: () => Promise<string>, signature: (current: string) => string) {
  return async () => {
    const [header, payload, current] = (await token()).split(".");
    return `${header}.${payload}.${signature(current as string)}`;
  };
}

const corpus: Case[] = [
  { name: "valid ES256", issuer: "plain", token: signed(), accept: true },
  { name: "valid RS256", issuer: "plain", token: signed({}, "rs"), accept: true },
  { name: "valid PS256", issuer: "plain", token: signed({}, "ps"), accept: true },
  { name: "valid EdDSA", issuer: "plain", token: signed({}, "ed"), accept: true },
  { name: "expired", issuer: "plain", token: signed({ exp: S - 120 }), accept: false },
  { name: "expired at the skew boundary", issuer: "plain", token: signed({ exp: S - SKEW }), accept: false },
  { name: "expired within the skew", issuer: "plain", token: signed({ exp: S - SKEW + 1 }), accept: true },
  // NOW is half a second past S: jose compares with the current whole second, and so do we.
  {
    name: "expired a fraction within the skew",
    issuer: "plain",
    token: signed({ exp: S - SKEW + 0.25 }),
    accept: true,
  },
  { name: "nbf in the future", issuer: "plain", token: signed({ nbf: S + 600 }), accept: false },
  { name: "nbf at the skew boundary", issuer: "plain", token: signed({ nbf: S + SKEW }), accept: true },
  { name: "nbf a fraction beyond the skew", issuer: "plain", token: signed({ nbf: S + SKEW + 0.25 }), accept: false },
  { name: "iat in the future", issuer: "plain", token: signed({ iat: S + 600 }), accept: false },
  { name: "iat within the skew", issuer: "plain", token: signed({ iat: S + SKEW }), accept: true },
  { name: "wrong iss", issuer: "plain", token: signed({ iss: "https://evil.test" }), accept: false },
  {
    name: "iss with a trailing slash",
    issuer: "plain",
    token: () => plain.sign(claims({ iss: `${plain.url}/` }), { key: keys.es as TestKey }),
    accept: false,
  },
  { name: "wrong aud", issuer: "plain", token: signed({ aud: "https://other.test" }), accept: false },
  { name: "aud array with one match", issuer: "plain", token: signed({ aud: ["x", AUDIENCE] }), accept: true },
  { name: "aud array without a match", issuer: "plain", token: signed({ aud: ["x", "y"] }), accept: false },
  { name: "missing aud", issuer: "plain", token: signed({ aud: undefined }), accept: false },
  { name: "missing exp", issuer: "plain", token: signed({ exp: undefined }), accept: false },
  { name: "string exp", issuer: "plain", token: signed({ exp: String(S + 600) }), accept: false },
  { name: "null exp", issuer: "plain", token: signed({ exp: null }), accept: false },
  { name: "string nbf", issuer: "plain", token: signed({ nbf: String(S) }), accept: false },
  { name: "string iat", issuer: "plain", token: signed({ iat: String(S) }), accept: false },
  { name: "fractional exp", issuer: "plain", token: signed({ exp: S + 600.25 }), accept: true },
  {
    name: "exp beyond any float",
    issuer: "plain",
    token: raw(() => JSON.stringify(claims()).replace(/"exp":\d+/, '"exp":1e999')),
    accept: true,
  },
  { name: "no iat", issuer: "plain", token: signed({ iat: undefined }), accept: true },
  {
    name: "typ matching (configured at+jwt)",
    issuer: "typed",
    token: signed({}, "es", { typ: "at+jwt" }, "typed"),
    accept: true,
  },
  {
    name: "typ matching with prefix and case",
    issuer: "typed",
    token: signed({}, "es", { typ: "Application/AT+JWT" }, "typed"),
    accept: true,
  },
  { name: "typ mismatch", issuer: "typed", token: signed({}, "es", { typ: "JWT" }, "typed"), accept: false },
  { name: "typ missing", issuer: "typed", token: signed({}, "es", { typ: undefined }, "typed"), accept: false },
  { name: "typ not a string", issuer: "typed", token: signed({}, "es", { typ: 1 }, "typed"), accept: false },
  {
    name: "any typ without configuration",
    issuer: "plain",
    token: signed({}, "es", { typ: "whatever" }),
    accept: true,
  },
  {
    name: "signature with flipped last char",
    issuer: "plain",
    token: withSignature(signed(), flipLastChar),
    accept: false,
  },
  {
    name: "RS256 signature with flipped last char",
    issuer: "plain",
    token: withSignature(signed({}, "rs"), flipLastChar),
    accept: false,
  },
  {
    name: "signature of wrong length (63 bytes)",
    issuer: "plain",
    token: withSignature(signed(), () => b64url(new Uint8Array(63).fill(7))),
    accept: false,
  },
  {
    name: "signature of wrong length (65 bytes)",
    issuer: "plain",
    token: withSignature(signed(), () => b64url(new Uint8Array(65).fill(7))),
    accept: false,
  },
  {
    name: "signature r=s=0",
    issuer: "plain",
    token: withSignature(signed(), () => b64url(new Uint8Array(64))),
    accept: false,
  },
  {
    name: "header alg none",
    issuer: "plain",
    token: async () => `${b64url('{"alg":"none"}')}.${b64url(JSON.stringify(claims()))}.`,
    accept: false,
  },
  {
    name: "header alg none with a signature",
    issuer: "plain",
    token: async () => `${b64url('{"alg":"none"}')}.${b64url(JSON.stringify(claims()))}.AAAA`,
    accept: false,
  },
  {
    name: "header alg NONE",
    issuer: "plain",
    token: raw(() => JSON.stringify(claims()), { alg: "NONE" }),
    accept: false,
  },
  { name: "alg not allowed (ES384, key published)", issuer: "plain", token: signed({}, "es384"), accept: false },
  {
    name: "RS256 with a 1024-bit key",
    issuer: "plain",
    token: () => signText(keys.weak as TestKey, {}, JSON.stringify(claims())),
    accept: false,
  },
  {
    name: "kid unknown",
    issuer: "plain",
    token: raw(() => JSON.stringify(claims()), { kid: "unknown" }),
    accept: false,
  },
  {
    name: "kid of another algorithm's key",
    issuer: "plain",
    token: raw(() => JSON.stringify(claims()), { kid: "rs" }),
    accept: false,
  },
  { name: "payload JSON array", issuer: "plain", token: raw("[1,2,3]"), accept: false },
  { name: "payload JSON string", issuer: "plain", token: raw('"x"'), accept: false },
  { name: "payload not JSON", issuer: "plain", token: raw("{iss:1}"), accept: false },
  {
    name: "duplicate keys",
    issuer: "plain",
    token: raw(() => JSON.stringify(claims()).replace(/^\{/, '{"sub":"admin","exp":1,')),
    accept: true,
  },
  {
    name: "duplicate exp, the last expired",
    issuer: "plain",
    token: raw(() => `${JSON.stringify(claims()).slice(0, -1)},"exp":${S - 3600}}`),
    accept: false,
  },
  { name: "non-ASCII claim", issuer: "plain", token: signed({ name: "Zoë ✓" }), accept: true },
  {
    name: "crit header",
    issuer: "plain",
    token: raw(() => JSON.stringify(claims()), { crit: ["exp"], exp: 1 }),
    accept: false,
  },
  {
    name: "JWE-style enc header",
    issuer: "plain",
    token: raw(() => JSON.stringify(claims()), { enc: "A256GCM" }),
    accept: false,
  },
  {
    name: "embedded jwk of the signer, kid of a real key",
    issuer: "plain",
    token: async () => {
      const attacker = await makeKey("ES256", "es");
      return signText(attacker, { jwk: attacker.publicJwk }, JSON.stringify(claims()));
    },
    accept: false,
  },
  {
    name: "signature's last character with non-zero unused bits",
    issuer: "plain",
    token: withSignature(signed(), (s) => s.slice(0, -1) + String.fromCharCode((s.at(-1) as string).charCodeAt(0) + 1)),
    accept: false,
  },
  { name: "trailing space", issuer: "plain", token: async () => `${await signed()()} `, accept: false },
  { name: "padded signature", issuer: "plain", token: withSignature(signed(), (s) => `${s}==`), accept: false },
  {
    name: "b64 header without crit",
    issuer: "plain",
    token: raw(() => JSON.stringify(claims()), { b64: true }),
    accept: false,
  },
];

beforeAll(async () => {
  Object.assign(keys, await makeKeyRing());
  [plain, typed] = await Promise.all([makeIssuer(), makeIssuer()]);
  await Promise.all([plain, typed].map((issuer) => issuer.publish(Object.values(keys))));
  jwks = { keys: Object.values(keys).map((k) => k.publicJwk) };
});

/** jose with the options that match our checks, plus the `iat` rule we add. */
async function joseAccepts(token: string, issuer: TestIssuer, typ?: string): Promise<boolean> {
  try {
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: issuer.url,
      audience: AUDIENCE,
      algorithms: [...DEFAULT_ALGORITHMS],
      requiredClaims: ["exp"],
      clockTolerance: SKEW,
      currentDate: new Date(NOW),
      ...(typ ? { typ } : {}),
    });
    // jose bounds `iat` only through maxTokenAge, which would also make `iat` required: the
    // reference applies the same rule verify.ts adds (no `iat` beyond the skew).
    return !(typeof payload.iat === "number" && payload.iat > NOW / 1000 + SKEW);
  } catch {
    return false;
  }
}

describe("our verifier and jose's jwtVerify agree", () => {
  it("on every token of the corpus, with and without the verified-token cache", async () => {
    const issuers = {
      plain: { issuer: plain, clock_skew_s: SKEW },
      typed: { issuer: typed, clock_skew_s: SKEW, typ: "at+jwt" },
    };
    const uncached = verifierFor({ issuers, deps: { now: () => NOW, tokenCacheEntries: 0 } });
    const cached = verifierFor({ issuers, deps: { now: () => NOW } });
    const rows: { name: string; ours: boolean; cachedTwice: boolean[]; jose: boolean; accept: boolean }[] = [];
    for (const c of corpus) {
      const token = await c.token();
      const ours = await uncached.verify(token);
      const twice = [(await cached.verify(token)).ok, (await cached.verify(token)).ok];
      const jose = await joseAccepts(
        token,
        c.issuer === "typed" ? typed : plain,
        c.issuer === "typed" ? "at+jwt" : undefined,
      );
      rows.push({ name: c.name, ours: ours.ok, cachedTwice: twice, jose, accept: c.accept });
    }
    // One table, so a failure shows every disagreement at once.
    const expected = rows.map((r) => ({
      name: r.name,
      ours: r.accept,
      cachedTwice: [r.accept, r.accept],
      jose: STRICTER.has(r.name) ? true : r.accept,
      accept: r.accept,
    }));
    expect(rows).toEqual(expected);
    // Every accepted token was cached, but the two already past their exp (let in by the skew).
    expect(cached.verifier.tokenCache.size).toBe(corpus.filter((c) => c.accept).length - 2);
  });

  it("accepted tokens yield the claims jose returns (duplicate keys: the last wins in both)", async () => {
    const token = await raw(() => JSON.stringify(claims()).replace(/^\{/, '{"sub":"admin",'))();
    const { verify } = verifierFor({
      issuers: { plain: { issuer: plain, clock_skew_s: SKEW } },
      deps: { now: () => NOW },
    });
    const ours = await verify(token);
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { currentDate: new Date(NOW) });
    expect(ours).toMatchObject({ ok: true, identity: { subject: "u1", claims: payload } });
    expect(payload.sub).toBe("u1");
  });
});
