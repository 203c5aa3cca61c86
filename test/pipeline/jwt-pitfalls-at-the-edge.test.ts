// JWT pitfalls through the whole pipeline, each judged by the problem+json reason, the audit
// record's detail and what reached the origin: keys a token names in its own header without a
// kid, a P-521 signature spelt a second way, a kid of the wrong JSON type, and ID tokens sent
// as access tokens with and without the issuer's `typ` (README "OAuth / OIDC issuers").
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
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
import { sendMarked } from "../support/sent";

const P521_N = BigInt(
  "0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
);

let idp: TestIssuer;
let p521: TestIssuer;
let p521Key: TestKey;
let typed: TestIssuer;
let untyped: TestIssuer;

beforeAll(async () => {
  [idp, p521, typed, untyped] = await Promise.all([makeIssuer(), makeIssuer(), makeIssuer(), makeIssuer()]);
  const pair = await generateKeyPair("ES512", { extractable: true });
  p521Key = {
    kid: "p521",
    alg: "ES512" as TestKey["alg"],
    privateKey: pair.privateKey,
    publicJwk: { ...(await exportJWK(pair.publicKey)), kid: "p521", alg: "ES512", use: "sig" },
  };
  await p521.publish([p521Key]);
});

function edgeFor(issuers: PolicyDocument["issuers"]) {
  return harness(
    basePolicy({
      issuers,
      routes: [
        {
          name: "api",
          methods: ["GET"],
          path: "/v1/**",
          auth: { issuers: Object.keys(issuers ?? {}) },
          upstream: "echo",
        },
      ],
    }),
  );
}

function claimsOf(issuer: TestIssuer, extra: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { iss: issuer.url, aud: AUDIENCE, sub: "user-1", scope: "api:read", iat: now, exp: now + 600, ...extra };
}

/** Refused with this status, reason and detail; nothing forwarded; an invalid_token challenge on 401s. */
async function expectRefusedAtEdge(
  edge: ReturnType<typeof harness>,
  token: string,
  expected: { status: number; reason: string; detail: string },
) {
  const { response, body, record, seen } = await sendMarked(edge, "/v1/x", {
    headers: { authorization: `Bearer ${token}` },
  });
  expect({ status: response.status, reason: body?.reason, record: record?.reason, detail: record?.detail }).toEqual({
    status: expected.status,
    reason: expected.reason,
    record: expected.reason,
    detail: expected.detail,
  });
  if (expected.status === 401) expect(response.headers.get("www-authenticate")).toContain('error="invalid_token"');
  expect(seen).toHaveLength(0);
}

describe("keys a token names in its own header, without a kid", () => {
  it("x5c, jwk and jku naming the attacker's key: 401 signature, nothing forwarded, nothing fetched", async () => {
    const edge = edgeFor({ idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } });
    const attacker = await makeKey("ES256", "attacker");
    const certificate = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(300))));
    const before = await attackerHits();
    for (const header of [
      { x5c: [certificate] },
      { jwk: attacker.publicJwk },
      { jku: `${issuerServer}/attacker/jwks`, jwk: attacker.publicJwk },
    ]) {
      const token = await new SignJWT(claimsOf(idp, { sub: "mallory" }))
        .setProtectedHeader({ alg: "ES256", ...header } as never)
        .sign(attacker.privateKey);
      await expectRefusedAtEdge(edge, token, { status: 401, reason: "token_invalid", detail: "signature" });
    }
    expect(await attackerHits()).toBe(before);
  });
});

describe("an ES512 signature with s + n in place of s", () => {
  it("is refused, while the signature it was made from goes through as the verified identity only", async () => {
    const edge = edgeFor({ p521: { kind: "oidc", issuer: p521.url, audiences: [AUDIENCE], algorithms: ["ES512"] } });
    const token = await p521.sign(claimsOf(p521), { key: p521Key });
    const ok = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
    expect(ok.response.status).toBe(200);
    expect(ok.got["x-user-sub"]).toBe("user-1");
    expect(ok.got.authorization).toBeUndefined();

    const [header, payload, signature] = token.split(".") as [string, string, string];
    const bytes = Uint8Array.from(atob(signature.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    let s = 0n;
    for (const byte of bytes.slice(66)) s = (s << 8n) | BigInt(byte);
    let twin = s + P521_N;
    for (let i = 131; i >= 66; i--) {
      bytes[i] = Number(twin & 255n);
      twin >>= 8n;
    }
    expect(twin).toBe(0n); // s + n fits in the 66 bytes of s
    await expectRefusedAtEdge(edge, `${header}.${payload}.${b64url(bytes)}`, {
      status: 401,
      reason: "token_invalid",
      detail: "signature",
    });
  });
});

describe("a kid of the wrong JSON type", () => {
  it.each([
    ["an array naming the real kid", "ARRAY"],
    ["true", true],
  ])("kid %s: 401 kid_invalid, nothing forwarded", async (_label, kid) => {
    const edge = edgeFor({ idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } });
    const key = idp.keys[0] as TestKey;
    const token = await new SignJWT(claimsOf(idp))
      .setProtectedHeader({ alg: key.alg, kid: (kid === "ARRAY" ? [key.kid] : kid) as never })
      .sign(key.privateKey);
    await expectRefusedAtEdge(edge, token, { status: 401, reason: "token_invalid", detail: "kid_invalid" });
  });
});

describe("an ID token sent as an access token (README: typ)", () => {
  /** An OpenID ID token of `issuer` whose aud is the API (as authentik and Entra may sign one). */
  function idToken(issuer: TestIssuer) {
    return issuer.sign(
      claimsOf(issuer, { nonce: "n-0S6_WzA2Mj", azp: "web-client", at_hash: "77QmUPtjPfzWtF2AnpK9RQ" }),
      {
        header: { typ: "JWT" },
      },
    );
  }

  it("with typ at+jwt configured: refused (claim_typ_check_failed), while its access tokens reach the origin", async () => {
    const edge = edgeFor({ typed: { kind: "oidc", issuer: typed.url, audiences: [AUDIENCE], typ: "at+jwt" } });
    await expectRefusedAtEdge(edge, await idToken(typed), {
      status: 401,
      reason: "token_invalid",
      detail: "claim_typ_check_failed",
    });
    // A DPoP proof's media type is no access token's either.
    await expectRefusedAtEdge(edge, await typed.sign(claimsOf(typed), { header: { typ: "dpop+jwt" } }), {
      status: 401,
      reason: "token_invalid",
      detail: "claim_typ_check_failed",
    });
    for (const typ of ["at+jwt", "application/at+jwt", "AT+JWT"]) {
      const sent = await sendMarked(edge, "/v1/x", {
        headers: { authorization: `Bearer ${await typed.sign(claimsOf(typed), { header: { typ } })}` },
      });
      expect({ typ, status: sent.response.status, sub: sent.got["x-user-sub"] }).toEqual({
        typ,
        status: 200,
        sub: "user-1",
      });
    }
  });

  // README: a provider that writes no typ and signs ID tokens for the API's audience "cannot
  // have its ID tokens told apart: give the API an audience of its own".
  it("without typ: an ID token for the API's audience is taken, as the README warns", async () => {
    const edge = edgeFor({ untyped: { kind: "oidc", issuer: untyped.url, audiences: [AUDIENCE] } });
    const sent = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${await idToken(untyped)}` } });
    expect(sent.response.status).toBe(200);
    expect(sent.got["x-user-sub"]).toBe("user-1");
    // One for another audience (the client's own, as ID tokens normally are) is not.
    await expectRefusedAtEdge(
      edge,
      await untyped.sign(claimsOf(untyped, { aud: "web-client", nonce: "n" }), { header: { typ: "JWT" } }),
      { status: 401, reason: "audience_mismatch", detail: "aud" },
    );
  });
});
