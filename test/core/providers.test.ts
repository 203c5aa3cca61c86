// README "Providers": real identity providers' discovery documents, key sets and tokens
// (Auth0, Okta, Keycloak, Entra ID v1/v2, Google, Cognito) and Cloudflare Access. Each provider
// is played by an injected fetcher serving its documents at its real URLs, with tokens shaped
// as it issues them: what works, and what is refused, is what the README says.
import { beforeAll, describe, expect, it } from "vitest";
import type { JWK } from "jose";
import { compilePolicy, PolicyError } from "../../src/core/policy";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { ACCESS_AUD_TAG } from "../support/issuers";
import { ec, fakeProvider, type KeyPair, NOW_S, rsa, sign, verifierFor } from "../support/provider-fakes";

/** A syntactically plausible base64 DER certificate; keys' x5c is never used for verifying. */
const FAKE_X5C =
  "MIIC/jCCAeagAwIBAgIJAKL0UG+mRkSuMA0GCSqGSIb3DQEBCwUAMC0xKzApBgNVBAMTImFjY291bnRzLmFjY2Vzc2NvbnRyb2wud2luZG93cy5uZXQ=";

// ---------------------------------------------------------------------------------------------
// Issuers and discovery
// ---------------------------------------------------------------------------------------------

describe("Auth0: issuer with a trailing slash, aud array with userinfo, azp, permissions", () => {
  const ISS = "https://acme.eu.auth0.com/";
  const API = "https://api.acme.example";
  let key: KeyPair;
  beforeAll(async () => {
    key = await rsa();
  });
  const docs = () => ({
    "https://acme.eu.auth0.com/.well-known/openid-configuration": {
      issuer: ISS,
      jwks_uri: "https://acme.eu.auth0.com/.well-known/jwks.json",
      id_token_signing_alg_values_supported: ["HS256", "RS256", "PS256"],
    },
    "https://acme.eu.auth0.com/.well-known/jwks.json": {
      keys: [
        {
          kty: "RSA",
          use: "sig",
          n: key.bare.n,
          e: key.bare.e,
          kid: "auth0-kid-1",
          x5t: "abc",
          x5c: [FAKE_X5C],
          alg: "RS256",
        },
      ],
    },
  });
  const claims = () => ({
    iss: ISS,
    sub: "auth0|64f1c2d3e4b5a6978",
    aud: [API, "https://acme.eu.auth0.com/userinfo"],
    iat: NOW_S(),
    exp: NOW_S() + 86400,
    scope: "openid profile read:things",
    azp: "Xk3b9cLientIdAuth0abcdef",
    permissions: ["read:things"],
  });

  it("auth0: token with iss 'https://tenant.auth0.com/' verifies via discovery at '/.well-known' (no double slash)", async () => {
    const { verify, asked } = verifierFor({ a0: { kind: "oidc", issuer: ISS, audiences: [API] } }, docs());
    const result = await verify(await sign(key, { alg: "RS256", typ: "JWT", kid: "auth0-kid-1" }, claims()));
    expect(result).toMatchObject({
      ok: true,
      identity: { subject: "auth0|64f1c2d3e4b5a6978", scopes: ["openid", "profile", "read:things"] },
    });
    expect(asked[0]).toBe("https://acme.eu.auth0.com/.well-known/openid-configuration");
  });

  it("auth0: RFC 9068 profile (typ at+jwt) accepted when the issuer requires at+jwt", async () => {
    const { verify } = verifierFor({ a0: { kind: "oidc", issuer: ISS, audiences: [API], typ: "at+jwt" } }, docs());
    const ok = await verify(await sign(key, { alg: "RS256", typ: "at+jwt", kid: "auth0-kid-1" }, claims()));
    expect(ok.ok).toBe(true);
    const idTokenLike = await verify(await sign(key, { alg: "RS256", typ: "JWT", kid: "auth0-kid-1" }, claims()));
    expect(idTokenLike).toMatchObject({ ok: false, reason: "token_invalid", detail: "claim_typ_check_failed" });
  });

  it("auth0: configured without the trailing slash, its tokens are refused (issuer compared byte for byte)", async () => {
    const { verify } = verifierFor(
      { a0: { kind: "oidc", issuer: "https://acme.eu.auth0.com", audiences: [API] } },
      docs(),
    );
    const result = await verify(await sign(key, { alg: "RS256", typ: "JWT", kid: "auth0-kid-1" }, claims()));
    expect(result).toMatchObject({ ok: false, reason: "issuer_unknown" });
  });
});

describe("Okta custom authorization server: issuer with a path, scp array, cid/uid", () => {
  const ISS = "https://dev-1234567.okta.com/oauth2/default";
  it("okta: /oauth2/default discovery and scp array map to scopes", async () => {
    const key = await rsa();
    const { verify, asked } = verifierFor(
      { okta: { kind: "oidc", issuer: ISS, audiences: ["api://default"] } },
      {
        [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/v1/keys` },
        [`${ISS}/v1/keys`]: {
          keys: [{ kty: "RSA", alg: "RS256", kid: "okta-1", use: "sig", e: key.bare.e, n: key.bare.n }],
        },
      },
    );
    const token = await sign(
      key,
      { kid: "okta-1", alg: "RS256" },
      {
        ver: 1,
        jti: "AT.abc",
        iss: ISS,
        aud: "api://default",
        iat: NOW_S(),
        exp: NOW_S() + 3600,
        cid: "0oa1b2c3d4",
        uid: "00u1a2b3c4",
        scp: ["openid", "things.read"],
        auth_time: NOW_S() - 10,
        sub: "alice@example.com",
        groups: ["Everyone", "Domain Admins"],
      },
    );
    const result = await verify(token);
    expect(result).toMatchObject({
      ok: true,
      identity: { scopes: ["openid", "things.read"], groups: ["Everyone", "Domain Admins"] },
    });
    expect(asked).toContain(`${ISS}/.well-known/openid-configuration`);
  });
});

describe("Keycloak: /realms/x issuer, certs with an RSA-OAEP enc key, x5c/x5t#S256, azp, aud 'account'", () => {
  const ISS = "https://kc.example.com/realms/acme";
  it("keycloak: realm token verifies; the enc key is ignored", async () => {
    const key = await rsa();
    const encKey = await rsa();
    const { verify } = verifierFor(
      { kc: { kind: "oidc", issuer: ISS, audiences: ["account", "things-api"] } },
      {
        [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/protocol/openid-connect/certs` },
        [`${ISS}/protocol/openid-connect/certs`]: {
          keys: [
            {
              kid: "enc-1",
              kty: "RSA",
              alg: "RSA-OAEP",
              use: "enc",
              n: encKey.bare.n,
              e: "AQAB",
              x5c: [FAKE_X5C],
              x5t: "x",
              "x5t#S256": "y",
            },
            {
              kid: "sig-1",
              kty: "RSA",
              alg: "RS256",
              use: "sig",
              n: key.bare.n,
              e: "AQAB",
              x5c: [FAKE_X5C],
              x5t: "x",
              "x5t#S256": "y",
            },
          ],
        },
      },
    );
    const token = await sign(
      key,
      { alg: "RS256", typ: "JWT", kid: "sig-1" },
      {
        exp: NOW_S() + 300,
        iat: NOW_S(),
        jti: "onrtac:1",
        iss: ISS,
        aud: ["things-api", "account"],
        sub: "f3b4c5d6-0000-4000-8000-000000000001",
        typ: "Bearer",
        azp: "web-app",
        sid: "abc",
        acr: "1",
        realm_access: { roles: ["offline_access", "admin"] },
        scope: "openid email profile",
        email_verified: true,
        preferred_username: "alice",
        email: "alice@example.com",
      },
    );
    expect(await verify(token)).toMatchObject({
      ok: true,
      identity: { email: "alice@example.com", scopes: ["openid", "email", "profile"] },
    });
    // The encryption key is not a verification key: a token naming it finds no key.
    const byEncKey = await sign(
      encKey,
      { alg: "RS256", typ: "JWT", kid: "enc-1" },
      { iss: ISS, aud: "account", sub: "x", exp: NOW_S() + 300 },
    );
    expect(await verify(byEncKey)).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });
});

describe("Entra ID (Azure AD)", () => {
  const TID = "72f988bf-86f1-41af-91ab-2d7cd011db47";
  const V2 = `https://login.microsoftonline.com/${TID}/v2.0`;
  const CLIENT = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
  let key: KeyPair;
  beforeAll(async () => {
    key = await rsa();
  });
  /** Entra keys: no alg, x5t, x5c, and an `issuer` member on v2 keys. */
  const entraKeys = () => ({
    keys: [
      {
        kty: "RSA",
        use: "sig",
        kid: "entra-kid",
        x5t: "entra-kid",
        n: key.bare.n,
        e: "AQAB",
        x5c: [FAKE_X5C],
        cloud_instance_name: "microsoftonline.com",
        issuer: `https://login.microsoftonline.com/${TID}/v2.0`,
      },
    ],
  });
  const v2Claims = () => ({
    aud: CLIENT,
    iss: V2,
    iat: NOW_S(),
    nbf: NOW_S(),
    exp: NOW_S() + 3600,
    aio: "AXQAi/8TAAAA",
    azp: "a3c1b2d4-0000-0000-0000-000000000000",
    azpacr: "0",
    name: "Alice",
    oid: "690222be-ff1a-4d56-abd1-7e4f7d38e474",
    preferred_username: "alice@contoso.com",
    rh: "0.AXQA",
    roles: ["Things.ReadWrite.All", "Admin"],
    scp: "access_as_user User.Read",
    sub: "wLRDMKCpNvnCDBWl3S5BPHbUyJjTJD2Fwn6aaRhy1Ds",
    tid: TID,
    uti: "fqiBqXLPj0eQa82S-IYFAA",
    ver: "2.0",
  });

  it("entra v2 single tenant: discovery, keys without alg, scp as a space-separated string", async () => {
    const { verify } = verifierFor(
      { entra: { kind: "oidc", issuer: V2, audiences: [CLIENT], claims: { tenant: "tid" } } },
      {
        [`${V2}/.well-known/openid-configuration`]: {
          issuer: V2,
          jwks_uri: `https://login.microsoftonline.com/${TID}/discovery/v2.0/keys`,
        },
        [`https://login.microsoftonline.com/${TID}/discovery/v2.0/keys`]: entraKeys(),
      },
    );
    const token = await sign(key, { typ: "JWT", alg: "RS256", kid: "entra-kid" }, v2Claims());
    expect(await verify(token)).toMatchObject({
      ok: true,
      identity: { tenant: TID, scopes: ["access_as_user", "User.Read"] },
    });
  });

  it("entra: roles claim usable as groups via claims.groups = 'roles'", async () => {
    const { verify } = verifierFor(
      { entra: { kind: "oidc", issuer: V2, audiences: [CLIENT], claims: { tenant: "tid", groups: "roles" } } },
      {
        [`${V2}/.well-known/openid-configuration`]: {
          issuer: V2,
          jwks_uri: `https://login.microsoftonline.com/${TID}/discovery/v2.0/keys`,
        },
        [`https://login.microsoftonline.com/${TID}/discovery/v2.0/keys`]: entraKeys(),
      },
    );
    const token = await sign(key, { typ: "JWT", alg: "RS256", kid: "entra-kid" }, v2Claims());
    expect(await verify(token)).toMatchObject({ ok: true, identity: { groups: ["Things.ReadWrite.All", "Admin"] } });
  });

  it("entra v1: iss https://sts.windows.net/{tid}/ (trailing slash) with an explicit jwks_uri, aud api://…", async () => {
    const ISS = `https://sts.windows.net/${TID}/`;
    const { verify } = verifierFor(
      {
        v1: {
          kind: "oidc",
          issuer: ISS,
          jwks_uri: `https://login.microsoftonline.com/${TID}/discovery/keys`,
          audiences: [`api://${CLIENT}`],
        },
      },
      { [`https://login.microsoftonline.com/${TID}/discovery/keys`]: entraKeys() },
    );
    const token = await sign(
      key,
      { typ: "JWT", alg: "RS256", x5t: "entra-kid", kid: "entra-kid" },
      {
        aud: `api://${CLIENT}`,
        iss: ISS,
        iat: NOW_S(),
        nbf: NOW_S(),
        exp: NOW_S() + 3600,
        acr: "1",
        appid: "a3c1b2d4-0000-0000-0000-000000000000",
        appidacr: "0",
        ipaddr: "203.0.113.7",
        oid: "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        scp: "user_impersonation",
        sub: "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
        tid: TID,
        unique_name: "alice@contoso.com",
        upn: "alice@contoso.com",
        ver: "1.0",
      },
    );
    expect(await verify(token)).toMatchObject({ ok: true, identity: { scopes: ["user_impersonation"] } });
  });

  // The `common`/`organizations` discovery documents name the issuer as a template
  // ("https://login.microsoftonline.com/{tenantid}/v2.0"), and tokens carry the user's own
  // tenant: one exact issuer never matches them. Not supported (README): refused, never accepted.
  for (const alias of ["common", "organizations"]) {
    it(`entra v2 multi-tenant '${alias}': a user's token is refused as from an issuer not configured`, async () => {
      const issuer = `https://login.microsoftonline.com/${alias}/v2.0`;
      const { verify } = verifierFor(
        { entra: { kind: "oidc", issuer, audiences: [CLIENT] } },
        {
          [`${issuer}/.well-known/openid-configuration`]: {
            issuer: "https://login.microsoftonline.com/{tenantid}/v2.0",
            jwks_uri: `https://login.microsoftonline.com/${alias}/discovery/v2.0/keys`,
          },
          [`https://login.microsoftonline.com/${alias}/discovery/v2.0/keys`]: entraKeys(),
        },
      );
      const result = await verify(await sign(key, { typ: "JWT", alg: "RS256", kid: "entra-kid" }, v2Claims()));
      expect(result).toMatchObject({ ok: false, reason: "issuer_unknown", detail: "issuer_not_configured" });
    });
  }

  it("entra: an issuer copied from the common discovery document ('…/{tenantid}/v2.0') is refused by the policy", () => {
    expect(() =>
      compilePolicy({
        version: 1,
        issuers: {
          entra: { kind: "oidc", issuer: "https://login.microsoftonline.com/{tenantid}/v2.0", audiences: [CLIENT] },
        },
        upstreams: { o: { url: "https://origin.test" } },
        routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["entra"] }, upstream: "o" }],
      }),
    ).toThrow("issuers.entra.issuer: is a {template}: name one tenant");
  });
});

describe("Google: iss with or without scheme", () => {
  const ISS = "https://accounts.google.com";
  const CLIENT = "1234567890-abc.apps.googleusercontent.com";
  let key: KeyPair;
  let verify: ReturnType<typeof verifierFor>["verify"];
  beforeAll(async () => {
    key = await rsa();
    ({ verify } = verifierFor(
      { google: { kind: "oidc", issuer: ISS, audiences: [CLIENT] } },
      {
        [`${ISS}/.well-known/openid-configuration`]: {
          issuer: ISS,
          jwks_uri: "https://www.googleapis.com/oauth2/v3/certs",
        },
        "https://www.googleapis.com/oauth2/v3/certs": {
          keys: [{ e: "AQAB", kty: "RSA", alg: "RS256", use: "sig", kid: "g-1", n: key.bare.n }],
        },
      },
    ));
  });
  const claims = (iss: string) => ({
    iss,
    azp: CLIENT,
    aud: CLIENT,
    sub: "110169484474386276334",
    email: "alice@gmail.com",
    email_verified: true,
    at_hash: "HK6E_P6Dh8Y93mRNtsDB1Q",
    iat: NOW_S(),
    exp: NOW_S() + 3600,
  });

  it("google: iss 'https://accounts.google.com' verifies", async () => {
    expect(await verify(await sign(key, { alg: "RS256", kid: "g-1", typ: "JWT" }, claims(ISS)))).toMatchObject({
      ok: true,
    });
  });

  it("google: iss 'accounts.google.com' (no scheme) is refused, and cannot be configured", async () => {
    const result = await verify(
      await sign(key, { alg: "RS256", kid: "g-1", typ: "JWT" }, claims("accounts.google.com")),
    );
    expect(result).toMatchObject({ ok: false, reason: "issuer_unknown" });
    expect(() =>
      compilePolicy({
        version: 1,
        issuers: {
          g: {
            kind: "oidc",
            issuer: "accounts.google.com",
            jwks_uri: "https://www.googleapis.com/oauth2/v3/certs",
            audiences: [CLIENT],
          },
        },
        upstreams: { o: { url: "https://origin.test" } },
        routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["g"] }, upstream: "o" }],
      }),
    ).toThrow(PolicyError);
  });
});

// ---------------------------------------------------------------------------------------------
// JWKS quirks: one issuer per quirk, the token names the key's kid (or none)
// ---------------------------------------------------------------------------------------------

describe("JWKS key shapes real providers publish", () => {
  const ISS = "https://idp.quirks.example";
  const cases: {
    name: string;
    kind: "rsa" | "ec";
    jwk: (bare: JWK) => Record<string, unknown>;
    alg: string;
    withKid?: boolean;
  }[] = [
    {
      name: "RSA with x5c/x5t alongside n/e",
      kind: "rsa",
      alg: "RS256",
      jwk: (b) => ({ ...b, kid: "k", use: "sig", alg: "RS256", x5c: [FAKE_X5C], x5t: "abc", "x5t#S256": "def" }),
    },
    {
      name: "RSA with alg absent (Entra)",
      kind: "rsa",
      alg: "RS256",
      jwk: (b) => ({ kty: "RSA", n: b.n, e: b.e, kid: "k", use: "sig" }),
    },
    {
      name: "RSA with use absent",
      kind: "rsa",
      alg: "RS256",
      jwk: (b) => ({ kty: "RSA", n: b.n, e: b.e, kid: "k", alg: "RS256" }),
    },
    {
      name: "RSA with alg and use absent, e AQAB",
      kind: "rsa",
      alg: "RS256",
      jwk: (b) => ({ kty: "RSA", n: b.n, e: "AQAB", kid: "k" }),
    },
    {
      name: "RSA with key_ops ['verify']",
      kind: "rsa",
      alg: "RS256",
      jwk: (b) => ({ ...b, kid: "k", key_ops: ["verify"] }),
    },
    {
      name: "RSA with key_ops ['sign','verify'] and use sig",
      kind: "rsa",
      alg: "RS256",
      jwk: (b) => ({ ...b, kid: "k", use: "sig", key_ops: ["sign", "verify"] }),
    },
    {
      name: "EC P-256 with alg absent",
      kind: "ec",
      alg: "ES256",
      jwk: (b) => ({ kty: "EC", crv: "P-256", x: b.x, y: b.y, kid: "k", use: "sig" }),
    },
    {
      name: "EC P-256 with alg and use absent",
      kind: "ec",
      alg: "ES256",
      jwk: (b) => ({ kty: "EC", crv: "P-256", x: b.x, y: b.y, kid: "k" }),
    },
    {
      name: "RSA alg absent, token without kid",
      kind: "rsa",
      alg: "RS256",
      withKid: false,
      jwk: (b) => ({ kty: "RSA", n: b.n, e: b.e, use: "sig" }),
    },
    {
      name: "RSA alg absent, token PS256",
      kind: "rsa",
      alg: "PS256",
      jwk: (b) => ({ kty: "RSA", n: b.n, e: b.e, kid: "k", use: "sig" }),
    },
  ];
  it.each(cases)("jwks: $name verifies", async ({ kind, jwk, alg, withKid = true }) => {
    const key = kind === "rsa" ? await rsa(alg === "PS256" ? "PS256" : "RS256") : await ec();
    const { verify } = verifierFor(
      { q: { kind: "oidc", issuer: ISS, audiences: ["api"] } },
      {
        [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/jwks` },
        [`${ISS}/jwks`]: { keys: [jwk(key.bare)] },
      },
    );
    const header: Record<string, unknown> = { alg, typ: "JWT", ...(withKid ? { kid: "k" } : {}) };
    const token = await sign(key, header, { iss: ISS, aud: "api", sub: "u1", iat: NOW_S(), exp: NOW_S() + 600 });
    expect(await verify(token)).toMatchObject({ ok: true });
  });
});

// ---------------------------------------------------------------------------------------------
// Token claim shapes
// ---------------------------------------------------------------------------------------------

describe("token claim shapes", () => {
  const ISS = "https://idp.claims.example";
  let key: KeyPair;
  let verifiers: Record<string, ReturnType<typeof verifierFor>["verify"]>;
  const docs = () => ({
    [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/jwks` },
    [`${ISS}/jwks`]: { keys: [{ ...key.bare, kid: "k", alg: "RS256", use: "sig" }] },
  });
  beforeAll(async () => {
    key = await rsa();
    verifiers = {
      plain: verifierFor({ c: { kind: "oidc", issuer: ISS, audiences: ["api"] } }, docs()).verify,
      typed: verifierFor({ c: { kind: "oidc", issuer: ISS, audiences: ["api"], typ: "at+jwt" } }, docs()).verify,
    };
  });
  const tok = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    sign(key, { alg: "RS256", kid: "k", typ: "JWT", ...header }, { iss: ISS, aud: "api", sub: "u1", ...claims });

  it("claims: aud array with several entries, one of them accepted", async () => {
    expect(await verifiers.plain!(await tok({ aud: ["other", "api", "third"], exp: NOW_S() + 60 }))).toMatchObject({
      ok: true,
    });
    expect(await verifiers.plain!(await tok({ aud: ["other", "third"], exp: NOW_S() + 60 }))).toMatchObject({
      ok: false,
      reason: "audience_mismatch",
    });
  });

  it("claims: scope string preferred over scp when both present", async () => {
    expect(await verifiers.plain!(await tok({ scope: "a b", scp: ["c"], exp: NOW_S() + 60 }))).toMatchObject({
      ok: true,
      identity: { scopes: ["a", "b"] },
    });
  });

  it("claims: nbf and iat absent are accepted", async () => {
    expect(await verifiers.plain!(await tok({ exp: NOW_S() + 60 }))).toMatchObject({ ok: true });
  });

  it("claims: very large exp (year 9999) and fractional exp are accepted", async () => {
    expect(await verifiers.plain!(await tok({ iat: NOW_S(), exp: 253402300799 }))).toMatchObject({ ok: true });
    expect(await verifiers.plain!(await tok({ iat: NOW_S(), exp: NOW_S() + 600.5 }))).toMatchObject({ ok: true });
  });

  it("claims: typ at+jwt accepted without an issuer typ; 'application/at+jwt' and 'AT+JWT' with typ at+jwt", async () => {
    expect(await verifiers.plain!(await tok({ exp: NOW_S() + 60 }, { typ: "at+jwt" }))).toMatchObject({ ok: true });
    expect(await verifiers.typed!(await tok({ exp: NOW_S() + 60 }, { typ: "application/at+jwt" }))).toMatchObject({
      ok: true,
    });
    expect(await verifiers.typed!(await tok({ exp: NOW_S() + 60 }, { typ: "AT+JWT" }))).toMatchObject({ ok: true });
    expect(await verifiers.typed!(await tok({ exp: NOW_S() + 60 }, { typ: "JWT" }))).toMatchObject({
      ok: false,
      detail: "claim_typ_check_failed",
    });
    // No typ header at all (Okta, Cognito omit it): refused only where the issuer asks for at+jwt.
    expect(await verifiers.plain!(await tok({ exp: NOW_S() + 60 }, { typ: undefined }))).toMatchObject({ ok: true });
  });
});

describe("AWS Cognito", () => {
  const POOL = "us-east-1_AbCdEf123";
  const ISS = `https://cognito-idp.us-east-1.amazonaws.com/${POOL}`;
  const CLIENT = "3n4b5urk1ft4fl3mg5e62d9ado";
  let key: KeyPair;
  let verify: ReturnType<typeof verifierFor>["verify"];
  beforeAll(async () => {
    key = await rsa();
    ({ verify } = verifierFor(
      { cognito: { kind: "oidc", issuer: ISS, audiences: [CLIENT], claims: { groups: "cognito:groups" } } },
      {
        [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/.well-known/jwks.json` },
        [`${ISS}/.well-known/jwks.json`]: {
          keys: [{ alg: "RS256", e: "AQAB", kid: "cog-1", kty: "RSA", n: key.bare.n, use: "sig" }],
        },
      },
    ));
  });

  it("cognito: ID token (aud = client id, token_use id) verifies", async () => {
    const token = await sign(
      key,
      { kid: "cog-1", alg: "RS256" },
      {
        sub: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admin"],
        email_verified: true,
        iss: ISS,
        "cognito:username": "alice",
        aud: CLIENT,
        token_use: "id",
        auth_time: NOW_S(),
        exp: NOW_S() + 3600,
        iat: NOW_S(),
        email: "alice@example.com",
      },
    );
    expect(await verify(token)).toMatchObject({ ok: true, identity: { groups: ["admin"] } });
  });

  it("cognito: an access token (no aud; client_id names the app client) is refused as audience_mismatch", async () => {
    const token = await sign(
      key,
      { kid: "cog-1", alg: "RS256" },
      {
        sub: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admin"],
        iss: ISS,
        version: 2,
        client_id: CLIENT,
        origin_jti: "o-1",
        event_id: "e-1",
        token_use: "access",
        scope: "aws.cognito.signin.user.admin things/read",
        auth_time: NOW_S(),
        exp: NOW_S() + 3600,
        iat: NOW_S(),
        jti: "j-1",
        username: "alice",
      },
    );
    expect(await verify(token)).toMatchObject({ ok: false, reason: "audience_mismatch", detail: "aud" });
  });

  it("cognito: with claims.audience client_id, the access token verifies and the ID token is refused", async () => {
    const { verify: verifyByClient } = verifierFor(
      {
        cognito: {
          kind: "oidc",
          issuer: ISS,
          audiences: [CLIENT],
          claims: { groups: "cognito:groups", audience: "client_id" },
        },
      },
      {
        [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/.well-known/jwks.json` },
        [`${ISS}/.well-known/jwks.json`]: {
          keys: [{ alg: "RS256", e: "AQAB", kid: "cog-1", kty: "RSA", n: key.bare.n, use: "sig" }],
        },
      },
    );
    const claims = { sub: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", iss: ISS, exp: NOW_S() + 3600, iat: NOW_S() };
    const access = await sign(
      key,
      { kid: "cog-1", alg: "RS256" },
      { ...claims, client_id: CLIENT, token_use: "access", scope: "things/read", "cognito:groups": ["admin"] },
    );
    expect(await verifyByClient(access)).toMatchObject({
      ok: true,
      identity: { scopes: ["things/read"], groups: ["admin"] },
    });
    const id = await sign(key, { kid: "cog-1", alg: "RS256" }, { ...claims, aud: CLIENT, token_use: "id" });
    expect(await verifyByClient(id)).toMatchObject({ ok: false, reason: "audience_mismatch", detail: "client_id" });
  });
});

// ---------------------------------------------------------------------------------------------
// Cloudflare Access through the whole pipeline, with the certs endpoint's real shape
// ---------------------------------------------------------------------------------------------

describe("Cloudflare Access: real certs shape, header, cookie, service token, aud array", () => {
  const TEAM = `team-${crypto.randomUUID().slice(0, 8)}.cloudflareaccess.com`;
  const ISS = `https://${TEAM}`;
  const KID_NEW = "6c3bffef71bb0a90c9cbef3b7c0d4a1c7b4b8b76b80292a623afd9dac45d1c65";
  const KID_OLD = "1a1c3986a44ce6390be42ec772b031df8f433fdc71716db821dc0c39af3bce49";
  let current: KeyPair;
  let previous: KeyPair;
  let edge: ReturnType<typeof harness>;
  let asked: string[];

  beforeAll(async () => {
    current = await rsa();
    previous = await rsa();
    const pem = "-----BEGIN CERTIFICATE-----\nMIIC...\n-----END CERTIFICATE-----\n";
    const provider = fakeProvider({
      [`${ISS}/cdn-cgi/access/certs`]: {
        keys: [
          { kid: KID_OLD, kty: "RSA", alg: "RS256", use: "sig", e: "AQAB", n: previous.bare.n },
          { kid: KID_NEW, kty: "RSA", alg: "RS256", use: "sig", e: "AQAB", n: current.bare.n },
        ],
        public_cert: { kid: KID_NEW, cert: pem },
        public_certs: [
          { kid: KID_OLD, cert: pem },
          { kid: KID_NEW, cert: pem },
        ],
      },
    });
    asked = provider.asked;
    edge = harness(
      basePolicy({
        issuers: { access: { kind: "cloudflare_access", team_domain: TEAM } },
        routes: [
          {
            name: "app",
            methods: ["GET"],
            path: "/app/**",
            auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
            upstream: "echo",
          },
        ],
      }),
      { authentication: { fetch: provider.fetcher as typeof fetch } },
    );
  });

  function assertion(claims: Record<string, unknown> = {}, key: KeyPair = current, kid = KID_NEW) {
    const now = NOW_S();
    return sign(
      key,
      { alg: "RS256", kid },
      {
        aud: [ACCESS_AUD_TAG],
        email: "ada@example.com",
        exp: now + 86400,
        iat: now,
        nbf: now,
        iss: ISS,
        type: "app",
        identity_nonce: "6ei69kawdKzMIAPF",
        sub: "7335d417-61da-459d-899c-0a01c76a2f94",
        country: "GB",
        ...claims,
      },
    );
  }

  async function call(headers: Record<string, string>) {
    const m = marker();
    const response = await edge.fetch("/app/x", { headers: { "x-test-marker": m, ...headers } });
    return { status: response.status, detail: edge.audit.at(-1)?.detail, seen: await originSaw(m) };
  }

  it("access: the assertion header verifies against the certs document (keys + public_cert + public_certs)", async () => {
    const { status, seen, detail } = await call({ "cf-access-jwt-assertion": await assertion() });
    expect({ status, detail }).toEqual({ status: 200, detail: null });
    expect(seen[0]?.headers["x-user-email"]).toBe("ada@example.com");
    expect(asked).toContain(`${ISS}/cdn-cgi/access/certs`);
  });

  it("access: the previous (rotated-out) key still listed in keys verifies", async () => {
    expect((await call({ "cf-access-jwt-assertion": await assertion({}, previous, KID_OLD) })).status).toBe(200);
  });

  it("access: the CF_Authorization cookie alone verifies", async () => {
    expect((await call({ cookie: `CF_Authorization=${await assertion()}` })).status).toBe(200);
  });

  it("access: a service-token assertion (sub '', common_name, no email) verifies with common_name as subject", async () => {
    const { status, seen } = await call({
      "cf-access-jwt-assertion": await assertion({
        sub: "",
        email: undefined,
        identity_nonce: undefined,
        country: undefined,
        common_name: "a1b2c3.access",
      }),
    });
    expect(status).toBe(200);
    expect(seen[0]?.headers["x-user-sub"]).toBe("a1b2c3.access");
  });

  it("access: aud array holding several tags, one being the application's", async () => {
    expect(
      (await call({ "cf-access-jwt-assertion": await assertion({ aud: ["another-app-tag", ACCESS_AUD_TAG] }) })).status,
    ).toBe(200);
  });
});
