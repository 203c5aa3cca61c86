// Token verification held to RFC 8725 (JWT BCP), RFC 9068 (JWT access tokens) and Cloudflare
// Access assertions: mapped claims of the wrong type, keys shared across issuers, explicit
// typing, the verified-token cache across routes, encrypted and nested tokens.
import { beforeAll, describe, expect, it } from "vitest";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, b64url, makeIssuer, makeKey, type TestIssuer, type TestKey } from "../support/issuers";
import { fixedNow, signText, verifierFor } from "./token-fixtures";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);

let idp: TestIssuer;
let other: TestIssuer;
let scoped: TestIssuer;

beforeAll(async () => {
  [idp, other, scoped] = await Promise.all([makeIssuer(), makeIssuer(), makeIssuer()]);
});

function claimsJson(issuer: TestIssuer, extra = ""): string {
  return `{"iss":${JSON.stringify(issuer.url)},"aud":"${AUDIENCE}","sub":"u1","iat":${S}${extra}}`;
}

describe("mapped claims of the wrong type (README: scopes a string or an array of strings)", () => {
  // A mapped claim of the wrong type rejects the token (subject, tenant, email strings; scopes
  // and groups a string or array of strings): `scope: null` too, not read as "no scope claim",
  // with the default mapping, which would then read `scp` instead.
  it("scope: null is refused, not replaced by scp", async () => {
    const { verify } = verifierFor({
      issuers: { a: { issuer: idp } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    const token = await signText(
      idp.keys[0] as TestKey,
      {},
      claimsJson(idp, `,"exp":${S + 600},"scope":null,"scp":"admin:write"`),
    );
    const result = await verify(token);
    expect(result).toMatchObject({ ok: false, reason: "token_invalid", detail: "scopes_unsafe" });
  });

  // With an explicit scopes mapping (no scp fallback), a null scope is not "no scopes" either.
  it("scope: null is refused with an explicit scopes mapping, as groups: null is", async () => {
    const { verify } = verifierFor({
      issuers: { a: { issuer: scoped, claims: { scopes: "scope" } } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    const key = scoped.keys[0] as TestKey;
    const groupsNull = await signText(key, {}, claimsJson(scoped, `,"exp":${S + 600},"groups":null`));
    // As `groups: null` is.
    expect(await verify(groupsNull)).toMatchObject({ ok: false, reason: "token_invalid", detail: "groups_unsafe" });
    const scopeNull = await signText(key, {}, claimsJson(scoped, `,"exp":${S + 600},"scope":null`));
    expect(await verify(scopeNull)).toMatchObject({ ok: false, reason: "token_invalid", detail: "scopes_unsafe" });
  });
});

describe("keys, typing, the cache and token forms", () => {
  // Two issuers publishing the same kid. A token claiming issuer A but
  // signed with B's key under the shared kid is refused: keys come only from iss's own set.
  it("cross-issuer kid collision: a token is checked only against its own issuer's keys", async () => {
    const a = await makeIssuer();
    const b = await makeIssuer();
    const ka = await makeKey("ES256", "shared");
    const kb = await makeKey("ES256", "shared");
    await a.publish([ka]);
    await b.publish([kb]);
    const { verify } = verifierFor({
      issuers: { a: { issuer: a }, b: { issuer: b } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    const forged = await signText(kb, {}, claimsJson(a, `,"exp":${S + 600}`));
    expect(await verify(forged)).toMatchObject({ ok: false, reason: "token_invalid", detail: "signature" });
    expect(await verify(await signText(kb, {}, claimsJson(b, `,"exp":${S + 600}`)))).toMatchObject({ ok: true });
  });

  // RFC 9068 §4 / RFC 8725 §3.11: with typ "at+jwt" configured, an ID
  // token (typ JWT) or a logout token (typ logout+jwt) from the same issuer is refused.
  it("with typ configured, ID tokens and other typed JWTs of the issuer are refused", async () => {
    const { verify } = verifierFor({
      issuers: { a: { issuer: other, typ: "at+jwt" } },
      deps: { now: () => NOW, tokenCacheEntries: 0 },
    });
    for (const typ of ["JWT", "logout+jwt", "dpop+jwt", "application/jwt"]) {
      const token = await other.sign({ iat: S, exp: S + 600 }, { header: { typ } });
      expect(await verify(token)).toMatchObject({ ok: false, detail: "claim_typ_check_failed" });
    }
  });

  // The verified-token cache never serves a token on a route whose
  // issuers or audiences it was not checked for; it is refused with the same reason as fresh.
  it("a cached token is refused on a route with another audience or another issuer", async () => {
    const edge = harness(
      basePolicy({
        issuers: {
          a: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
          b: { kind: "oidc", issuer: other.url, audiences: [AUDIENCE] },
        },
        routes: [
          { name: "ok", methods: ["GET"], path: "/ok/**", auth: { issuers: ["a"] }, upstream: "echo" },
          {
            name: "aud",
            methods: ["GET"],
            path: "/aud/**",
            auth: { issuers: ["a"], audiences: ["https://payments.test"] },
            upstream: "echo",
          },
          { name: "iss", methods: ["GET"], path: "/iss/**", auth: { issuers: ["b"] }, upstream: "echo" },
        ],
      }),
    );
    const token = await idp.sign({});
    const m = marker();
    const headers = { authorization: `Bearer ${token}`, "x-test-marker": m };
    expect((await edge.fetch("/ok/x", { headers })).status).toBe(200);
    expect((await edge.fetch("/ok/x", { headers })).status).toBe(200);
    const aud = await edge.fetch("/aud/x", { headers });
    expect(aud.status).toBe(401);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "audience_mismatch" });
    const iss = await edge.fetch("/iss/x", { headers });
    expect(iss.status).toBe(401);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "issuer_unknown" });
    expect(await originSaw(m)).toHaveLength(2);
  });

  // A JWE (5 segments) and a nested JWT (payload a JWT string, cty JWT)
  // are refused as 401 token_invalid problem+json, not 500.
  it("JWE and nested JWTs are refused clearly", async () => {
    const edge = harness(
      basePolicy({
        issuers: { a: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
        routes: [{ name: "r", methods: ["GET"], path: "/r/**", auth: { issuers: ["a"] }, upstream: "echo" }],
      }),
    );
    const jwe = `${b64url(JSON.stringify({ alg: "RSA-OAEP", enc: "A256GCM" }))}.${"A".repeat(43)}.${"A".repeat(16)}.${"A".repeat(22)}.${"A".repeat(22)}`;
    const inner = await idp.sign({});
    const nested = await signText(idp.keys[0] as TestKey, { cty: "JWT" }, JSON.stringify(inner));
    for (const [token, detail] of [
      [jwe, "not_compact_jws"],
      [nested, "bad_payload"],
    ] as const) {
      const response = await edge.fetch("/r/x", { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(401);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      expect(edge.audit.at(-1)).toMatchObject({ reason: "token_invalid", detail });
    }
  });
});
