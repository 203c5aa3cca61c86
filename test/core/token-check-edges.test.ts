// Token checks at their edges, each failing if its one rule moves or goes: a base64url
// segment spelt two ways for the same bytes, a segment no base64 can spell, a token naming
// the fully-specified `Ed25519` under a key published as `EdDSA`, a fractional `iat` at the
// skew's edge, a group name with a leading or trailing space, and the verified-token cache
// keeping no entry whose key was withdrawn.
import { generateKeyPair, exportJWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import type { ResolvedIssuer } from "../../src/core/policy";
import { checkRegisteredClaims } from "../../src/core/tokens/registered-claims";
import type { VerifyResult } from "../../src/core/tokens/verify";
import { Clock, signAt, verifierFor as clockedVerifierFor } from "../support/clocked-verifier";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, b64url, makeIssuer, makeKey, type TestIssuer, type TestKey } from "../support/issuers";
import { sendMarked } from "../support/sent";
import { fixedNow, verifierFor } from "./token-fixtures";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);
const SKEW = 60;

let idp: TestIssuer;
let fully: TestIssuer;
let rsa4096: TestKey;
let ed: TestKey;
let verify: (token: string) => Promise<VerifyResult>;

beforeAll(async () => {
  [idp, fully] = await Promise.all([makeIssuer(), makeIssuer()]);
  // 512 signature bytes are 683 base64url characters (3 mod 4): the last one carries two
  // unused bits, so four spellings decode to the same signature.
  const pair = await generateKeyPair("RS256", { modulusLength: 4096, extractable: true });
  rsa4096 = {
    kid: "rsa4096",
    alg: "RS256",
    privateKey: pair.privateKey,
    publicJwk: { ...(await exportJWK(pair.publicKey)), kid: "rsa4096", alg: "RS256", use: "sig" },
  };
  ed = await makeKey("EdDSA", "ed");
  await idp.publish([idp.keys[0] as TestKey, rsa4096]);
  await fully.publish([ed]);
  ({ verify } = verifierFor({
    issuers: {
      idp: { issuer: idp, clock_skew_s: SKEW },
      fully: { issuer: fully, clock_skew_s: SKEW, algorithms: ["Ed25519"] },
    },
    deps: { now: () => NOW, tokenCacheEntries: 0 },
  }));
});

/** A token of `idp` valid at NOW. */
function sign(key = idp.keys[0] as TestKey) {
  return idp.sign({ iat: S, exp: S + 600 }, { key });
}

describe("the strict parse: one spelling per token", () => {
  it("a 3-mod-4 signature segment whose last character sets unused bits is refused, though it decodes to a valid signature", async () => {
    const token = await sign(rsa4096);
    const signature = token.split(".")[2] as string;
    expect(signature.length % 4).toBe(3);
    expect(await verify(token)).toMatchObject({ ok: true, identity: { subject: "user-1" } });
    // The canonical last characters are every fourth of the alphabet; the next three share its
    // four meaningful bits, so they decode to the very same 512 bytes.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(signature.at(-1) as string);
    expect(last % 4).toBe(0);
    for (const offset of [1, 2, 3]) {
      const twin = token.slice(0, -1) + alphabet[last + offset];
      expect(await verify(twin)).toMatchObject({
        ok: false,
        reason: "token_invalid",
        detail: "non_canonical_base64url",
      });
    }
  });

  it.each([
    ["header", 0],
    ["payload", 1],
    ["signature", 2],
  ])(
    "a %s segment no base64 can spell (length 1 mod 4) is refused as non-canonical, not read",
    async (_label, index) => {
      const segments = (await sign()).split(".");
      let segment = segments[index] as string;
      while (segment.length % 4 !== 1) segment += "A";
      segments[index] = segment;
      expect(await verify(segments.join("."))).toEqual({
        ok: false,
        reason: "token_invalid",
        detail: "non_canonical_base64url",
      });
    },
  );
});

describe("the fully-specified Ed25519 algorithm (RFC 9864)", () => {
  /** Signed with alg `Ed25519` in the header; `ed` is published with alg `EdDSA`. */
  async function signEd25519() {
    const header = b64url(JSON.stringify({ alg: "Ed25519", kid: ed.kid, typ: "JWT" }));
    const claims = b64url(JSON.stringify({ iss: fully.url, aud: AUDIENCE, sub: "ed-user", iat: S, exp: S + 600 }));
    const input = `${header}.${claims}`;
    const signature = await crypto.subtle.sign("Ed25519", ed.privateKey, new TextEncoder().encode(input));
    return `${input}.${b64url(new Uint8Array(signature))}`;
  }

  it("is verified with a key published as EdDSA, which names the same signatures", async () => {
    expect(ed.publicJwk.alg).toBe("EdDSA");
    expect(await verify(await signEd25519())).toMatchObject({
      ok: true,
      identity: { issuerId: "fully", subject: "ed-user" },
    });
  });
});

describe("iat goes by the exact time, not the second", () => {
  const issuer = { issuer: "https://idp.test", clockSkewS: SKEW } as ResolvedIssuer;
  const claims = (iat: number) => checkRegisteredClaims({}, { iss: issuer.issuer, iat, exp: S + 600 }, issuer, NOW);

  // NOW is half a second past S: an iat a quarter second past S + skew is not yet in the future.
  it("a fractional iat within the skew of the current instant is accepted; one past it is refused", () => {
    expect(claims(S + SKEW + 0.25)).toEqual({ ok: true, exp: S + 600 });
    expect(claims(S + SKEW + 0.75)).toEqual({ ok: false, reason: "token_invalid", detail: "iat_in_future" });
  });
});

describe("group names with a space at either end", () => {
  // An origin reading the groups header as a list trims its members: ` admins` would read as
  // `admins`, a group no token named.
  it.each([" admins", "admins "])(
    "a token carrying group %j is refused (groups_unsafe), and nothing is forwarded",
    async (group) => {
      const edge = harness(
        basePolicy({
          issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
          routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
        }),
      );
      const token = await idp.sign({ groups: ["eng", group] });
      const { response, body, record, seen } = await sendMarked(edge, "/v1/x", {
        headers: { authorization: `Bearer ${token}` },
      });
      expect({ status: response.status, reason: body?.reason, detail: record?.detail }).toEqual({
        status: 401,
        reason: "token_invalid",
        detail: "groups_unsafe",
      });
      expect(seen).toHaveLength(0);
    },
  );
});

describe("the verified-token cache keeps no entry whose key was withdrawn", () => {
  it("a cached token refused because its key was withdrawn leaves the cache, and takes no live token's place", async () => {
    const issuer = await makeIssuer();
    const withdrawn = issuer.keys[0] as TestKey;
    const successor = await makeKey();
    await issuer.publish([withdrawn, successor]);
    const clock = new Clock();
    const settings = { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, rotation_grace_s: 0 };
    const { verifier, verify: verifyAt, settle } = clockedVerifierFor(issuer, clock, settings, true, undefined, 2);
    expect(await verifyAt(await signAt(issuer, clock, successor))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    clock.advance(250);
    // The cache holds `live` (the older entry) and then `doomed`.
    const live = await signAt(issuer, clock, successor);
    const doomed = await signAt(issuer, clock, withdrawn);
    expect(await verifyAt(live)).toMatchObject({ ok: true, keySource: "memory" });
    expect(await verifyAt(doomed)).toMatchObject({ ok: true, keySource: "memory" });
    expect(verifier.tokenCache.size).toBe(2);
    await settle();
    await issuer.publish([successor]);
    clock.advance(60); // the set is past its TTL: the refresh drops the withdrawn key
    expect(await verifyAt(doomed)).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
    await settle();
    expect(verifier.tokenCache.size).toBe(1);
    // A new token fits beside `live` without evicting it: `live` is still answered from the cache.
    expect(await verifyAt(await signAt(issuer, clock, successor))).toMatchObject({ ok: true, keySource: "memory" });
    expect(await verifyAt(live)).toMatchObject({ ok: true, keySource: "token_cache" });
  });
});
