// README "Providers", the rows after the first six (GitLab CI, Kinde, Logto, Supabase Auth,
// Clerk), played as test/core/providers.test.ts plays the others: an injected fetcher serves
// each provider's documents at its real URLs, and tokens carry the claims its own
// documentation shows. What each row tells an operator to write, and what it warns of, holds.
import { beforeAll, describe, expect, it } from "vitest";
import { authorisationFor } from "../../src/core/authz";
import { type KeyPair, keyPair, NOW_S, sign, verifierFor } from "../support/provider-fakes";

describe("Kinde: M2M tokens carry no sub, and scope (granted) beside scp (requested)", () => {
  // Kinde's "Token structure and claims" page for M2M applications: aud an array, azp the M2M
  // client, `scope` the granted scopes and `scp` "the list of scopes initially requested", no `sub`.
  const ISS = "https://acme.kinde.com";
  const API = "https://api.acme.example";
  let key: KeyPair;
  beforeAll(async () => {
    key = await keyPair("RS256");
  });
  const docs = () => ({
    [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/.well-known/jwks` },
    [`${ISS}/.well-known/jwks`]: { keys: [{ ...key.bare, kid: "kinde-1", alg: "RS256", use: "sig" }] },
  });
  const m2m = () =>
    sign(
      key,
      { alg: "RS256", typ: "JWT", kid: "kinde-1" },
      {
        aud: [API],
        azp: "d4d3c5b74e064badb9625a4aa6241bcc",
        exp: NOW_S() + 3600,
        gty: ["client_credentials"],
        iat: NOW_S(),
        iss: ISS,
        jti: "f95ed3e0-cc4d-40c4-b95a-9971729b0ae5",
        scope: "read:users",
        scp: ["read:users", "write:flags"],
        v: "2",
      },
    );

  it("with the default subject claim, an M2M token is refused for its missing subject", async () => {
    const { verify } = verifierFor({ kinde: { kind: "oidc", issuer: ISS, audiences: [API] } }, docs());
    expect(await verify(await m2m())).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "subject_missing_or_unsafe",
      issuerId: "kinde",
    });
  });

  it("scopes are the granted `scope`, never the requested `scp` (write:flags was asked for, not granted)", async () => {
    const { verify } = verifierFor(
      { kinde: { kind: "oidc", issuer: ISS, audiences: [API], claims: { subject: "azp" } } },
      docs(),
    );
    const result = await verify(await m2m());
    expect(result).toMatchObject({
      ok: true,
      identity: { subject: "d4d3c5b74e064badb9625a4aa6241bcc", scopes: ["read:users"] },
    });
    if (!result.ok) return;
    const needsWrite = authorisationFor(
      result.identity,
      { issuers: ["kinde"], scopes: { all_of: ["write:flags"] } },
      {},
    );
    expect(needsWrite).toEqual({
      ok: false,
      reason: "insufficient_scope",
      detail: "scope",
      requiredScope: "write:flags",
    });
  });
});

describe("Logto: access tokens signed ES384 (P-384 keys), typ at+jwt, issuer …/oidc", () => {
  // Logto's "validate access tokens" guide: issuer https://<tenant>.logto.app/oidc, keys at
  // …/oidc/jwks. Its default signing keys are EC P-384 (ES384), which the default algorithm list
  // (RS256, PS256, ES256, EdDSA) does not hold.
  const ISS = "https://acme.logto.app/oidc";
  const API = "https://api.acme.example";
  let key: KeyPair;
  beforeAll(async () => {
    key = await keyPair("ES384");
  });
  const docs = () => ({
    [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/jwks` },
    [`${ISS}/jwks`]: { keys: [{ ...key.bare, kid: "logto-1", alg: "ES384", use: "sig" }] },
  });
  const token = () =>
    sign(
      key,
      { alg: "ES384", typ: "at+jwt", kid: "logto-1" },
      {
        jti: "x",
        sub: "u7b3k2",
        iat: NOW_S(),
        exp: NOW_S() + 3600,
        scope: "read:orders",
        client_id: "app1",
        iss: ISS,
        aud: API,
      },
    );

  it("with the default algorithms its tokens are refused as alg_not_allowed, before any key is fetched", async () => {
    const { verify } = verifierFor({ logto: { kind: "oidc", issuer: ISS, audiences: [API] } }, docs());
    expect(await verify(await token())).toEqual({ ok: false, reason: "token_invalid", detail: "alg_not_allowed" });
  });

  it('with "algorithms": ["ES384"] and typ at+jwt they verify', async () => {
    const { verify } = verifierFor(
      { logto: { kind: "oidc", issuer: ISS, audiences: [API], algorithms: ["ES384"], typ: "at+jwt" } },
      docs(),
    );
    expect(await verify(await token())).toMatchObject({
      ok: true,
      identity: { subject: "u7b3k2", scopes: ["read:orders"] },
    });
  });
});

describe("GitLab CI/CD ID tokens: the job chooses aud, so only a route's claims tell projects apart", () => {
  // GitLab's "OIDC authentication using ID tokens": iss is the instance (https://gitlab.com,
  // shared by every project on it), aud is whatever the job's `id_tokens:aud` asks for, and
  // namespace_id / project_path name the project (as strings).
  const ISS = "https://gitlab.com";
  const API = "https://deploy.acme.example";
  let key: KeyPair;
  beforeAll(async () => {
    key = await keyPair("RS256");
  });
  const docs = () => ({
    [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/oauth/discovery/keys` },
    [`${ISS}/oauth/discovery/keys`]: { keys: [{ ...key.bare, kid: "gl-1", alg: "RS256", use: "sig", kty: "RSA" }] },
  });
  const ciToken = (namespaceId: string, projectPath: string) =>
    sign(
      key,
      { alg: "RS256", typ: "JWT", kid: "gl-1" },
      {
        namespace_id: namespaceId,
        namespace_path: projectPath.split("/")[0],
        project_id: "53804090",
        project_path: projectPath,
        ref: "main",
        ref_type: "branch",
        ref_protected: "true",
        jti: "j",
        iss: ISS,
        iat: NOW_S(),
        nbf: NOW_S() - 5,
        exp: NOW_S() + 300,
        sub: `project_path:${projectPath}:ref_type:branch:ref:main`,
        aud: API,
      },
    );

  it("another gitlab.com project's job token for the API's audience verifies: aud alone admits it", async () => {
    const { verify } = verifierFor({ gitlab: { kind: "oidc", issuer: ISS, audiences: [API] } }, docs());
    expect(await verify(await ciToken("999", "stranger/anything"))).toMatchObject({
      ok: true,
      identity: { subject: "project_path:stranger/anything:ref_type:branch:ref:main" },
    });
  });

  it("a route pinning namespace_id (as the string GitLab sends) admits its own project's job and refuses a stranger's", async () => {
    const { verify } = verifierFor({ gitlab: { kind: "oidc", issuer: ISS, audiences: [API] } }, docs());
    const rule = { issuers: ["gitlab"], claims: [{ claim: "namespace_id", equals: "12885807" }] };
    const own = await verify(await ciToken("12885807", "acme/deployer"));
    const stranger = await verify(await ciToken("999", "stranger/anything"));
    if (!own.ok || !stranger.ok) throw new Error("both tokens should verify");
    expect(authorisationFor(own.identity, rule, {})).toEqual({ ok: true });
    expect(authorisationFor(stranger.identity, rule, {})).toEqual({
      ok: false,
      reason: "forbidden",
      detail: "claim:namespace_id",
    });
    // A number never equals GitLab's string: such a condition refuses everyone, never admits anyone.
    const numeric = { issuers: ["gitlab"], claims: [{ claim: "namespace_id", equals: 12885807 }] };
    expect(authorisationFor(own.identity, numeric, {})).toMatchObject({ ok: false, detail: "claim:namespace_id" });
  });
});

describe("Supabase Auth with asymmetric signing keys", () => {
  // Supabase's JWT docs: iss https://<ref>.supabase.co/auth/v1, aud "authenticated" (in every
  // project), ES256 keys at …/auth/v1/.well-known/jwks.json, which the auth server's discovery
  // document (…/auth/v1/.well-known/openid-configuration) names. `amr` is an array of objects,
  // `email` is "" for a phone user, and anonymous users get aud "authenticated" too.
  const ISS = "https://abcdefghijklmnop.supabase.co/auth/v1";
  let key: KeyPair;
  beforeAll(async () => {
    key = await keyPair("ES256");
  });
  const docs = () => ({
    [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/.well-known/jwks.json` },
    [`${ISS}/.well-known/jwks.json`]: {
      keys: [{ ...key.bare, kid: "sb-1", alg: "ES256", key_ops: ["verify"], ext: true }],
    },
  });
  const token = (claims: Record<string, unknown>) =>
    sign(
      key,
      { alg: "ES256", typ: "JWT", kid: "sb-1" },
      {
        iss: ISS,
        sub: "8f2c0e1a-5b4d-4c3e-9a7f-1d2e3f4a5b6c",
        aud: "authenticated",
        exp: NOW_S() + 3600,
        iat: NOW_S(),
        role: "authenticated",
        aal: "aal1",
        amr: [{ method: "otp", timestamp: NOW_S() }],
        session_id: "s1",
        app_metadata: { provider: "phone" },
        user_metadata: {},
        ...claims,
      },
    );

  it("a phone user's token verifies through discovery; its empty email is no address", async () => {
    const { verify } = verifierFor({ sb: { kind: "oidc", issuer: ISS, audiences: ["authenticated"] } }, docs());
    const result = await verify(await token({ email: "", phone: "15555550100", is_anonymous: false }));
    expect(result).toMatchObject({ ok: true, identity: { subject: "8f2c0e1a-5b4d-4c3e-9a7f-1d2e3f4a5b6c" } });
    expect(result.ok && "email" in result.identity).toBe(false);
  });

  it("an anonymous user's token verifies too; only a route condition on is_anonymous keeps it out", async () => {
    const { verify } = verifierFor({ sb: { kind: "oidc", issuer: ISS, audiences: ["authenticated"] } }, docs());
    const result = await verify(await token({ email: "", phone: "", is_anonymous: true }));
    if (!result.ok) throw new Error(`anonymous token refused: ${result.detail}`);
    const signedIn = { issuers: ["sb"], claims: [{ claim: "is_anonymous", equals: false }] };
    expect(authorisationFor(result.identity, signedIn, {})).toEqual({
      ok: false,
      reason: "forbidden",
      detail: "claim:is_anonymous",
    });
  });
});

describe("Clerk session tokens: no aud; azp names the page's origin", () => {
  // Clerk's "Session tokens" (v2): iss the Frontend API URL, azp the Origin of the request that
  // minted the token (omitted when the Origin was empty), sid, sub, nbf, no aud.
  const ISS = "https://clerk.acme.example";
  const APP = "https://app.acme.example";
  let key: KeyPair;
  beforeAll(async () => {
    key = await keyPair("RS256");
  });
  const docs = () => ({
    [`${ISS}/.well-known/openid-configuration`]: { issuer: ISS, jwks_uri: `${ISS}/.well-known/jwks.json` },
    [`${ISS}/.well-known/jwks.json`]: { keys: [{ ...key.bare, kid: "ins_2abc", alg: "RS256", use: "sig" }] },
  });
  const token = (azp?: string) =>
    sign(
      key,
      { alg: "RS256", typ: "JWT", kid: "ins_2abc" },
      {
        ...(azp !== undefined ? { azp } : {}),
        exp: NOW_S() + 60,
        fva: [7, -1],
        iat: NOW_S(),
        iss: ISS,
        nbf: NOW_S() - 10,
        sid: "sess_2abc",
        sts: "active",
        sub: "user_2abc",
        v: 2,
      },
    );

  it("with the default audience claim every session token is refused, the detail naming aud", async () => {
    const { verify } = verifierFor({ clerk: { kind: "oidc", issuer: ISS, audiences: [APP] } }, docs());
    expect(await verify(await token(APP))).toMatchObject({ ok: false, reason: "audience_mismatch", detail: "aud" });
  });

  it('with "audience": "azp", the app\'s own origin verifies; another origin\'s, or none, is refused', async () => {
    const { verify } = verifierFor(
      { clerk: { kind: "oidc", issuer: ISS, audiences: [APP], claims: { audience: "azp" } } },
      docs(),
    );
    expect(await verify(await token(APP))).toMatchObject({ ok: true, identity: { subject: "user_2abc" } });
    expect(await verify(await token("https://other.example"))).toMatchObject({
      ok: false,
      reason: "audience_mismatch",
      detail: "azp",
    });
    expect(await verify(await token())).toMatchObject({ ok: false, reason: "audience_mismatch", detail: "azp" });
  });
});
