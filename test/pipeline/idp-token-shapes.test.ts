// Access tokens shaped as real identity providers issue them (authentik, Entra ID, Cognito,
// Okta, Keycloak), through the whole pipeline: what the edge binds the tenant, the audience
// and the groups to, and what reaches the origin. Each token is signed by a real key the
// loopback issuer publishes.
import { beforeAll, describe, expect, it } from "vitest";
import type { IssuerConfig, PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let idp: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("RS256");
});

/** One issuer with these audiences and claim mapping; a tenant route, an admin-group route, and a catch-all. */
function policy(audiences: string[], claims?: IssuerConfig["claims"]): PolicyDocument {
  return basePolicy({
    issuers: {
      idp: { kind: "oidc", issuer: idp.url, audiences, ...(claims ? { claims } : {}) },
    } as Record<string, IssuerConfig>,
    routes: [
      {
        name: "tenant",
        methods: ["GET"],
        path: "/v1/tenants/:tenant/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
      },
      {
        name: "admin",
        methods: ["GET"],
        path: "/v1/admin/**",
        auth: { issuers: ["idp"], groups: { any_of: ["admin"] } },
        upstream: "echo",
      },
      {
        name: "realm-admin",
        methods: ["GET"],
        path: "/v1/realm-admin/**",
        auth: { issuers: ["idp"], claims: [{ claim: "realm_access", equals: "admin" }] },
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ],
  });
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

describe("an empty email claim is no address, not a reason to refuse the token", () => {
  // authentik builds its access tokens from the ID token's claims (IDToken.to_access_token), and
  // its default `email` scope mapping returns `{"email": request.user.email, "email_verified":
  // False}` (blueprints/system/providers-oauth2.yaml): a user without an address, every service
  // account included, gets `"email": ""`. Refused as email_unsafe, every such caller would be
  // locked out of the API, on routes that never read the address too. An empty address is no
  // address, as an empty `groups` string is no groups: the token is accepted and no
  // x-user-email is written.
  it("an authentik access token of a user without an address is let through, without x-user-email", async () => {
    const CLIENT = "Xp3kR9client0authentik";
    const edge = harness(policy([CLIENT]));
    const now = Math.floor(Date.now() / 1000);
    const token = await idp.sign({
      aud: CLIENT,
      azp: CLIENT,
      sub: "5c1e3a8f9b2d4e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f",
      uid: "Tq2xVb8LmN3oPq4rSt5u",
      acr: "goauthentik.io/providers/oauth2/default",
      auth_time: now - 30,
      email: "",
      email_verified: false,
      name: "ci-runner",
      given_name: "ci-runner",
      preferred_username: "ak-ci-runner",
      nickname: "ak-ci-runner",
      groups: ["ci"],
      tenant_id: undefined,
      scope: "openid email profile",
    });
    const { response, body, record, got, seen } = await sendMarked(edge, "/v1/builds", bearer(token));
    expect(body?.reason).toBeUndefined();
    expect(record).toMatchObject({ decision: "allow", route: "any" });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(got["x-user-sub"]).toBe("5c1e3a8f9b2d4e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f");
    expect(got["x-user-groups"]).toBe("ci");
    expect(got).not.toHaveProperty("x-user-email");
  });
});

describe("the tenant is bound from the claim the mapping names, never from a default's name", () => {
  // Entra's tenant is `tid` (README: claims.tenant "tid"). A `tenant_id` in the same token (an
  // optional or extension claim, a directory attribute) must neither bind nor reach the origin.
  const TID_A = "72f988bf-86f1-41af-91ab-2d7cd011db47";
  const TID_B = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
  const CLIENT = "6e74172b-be56-4843-9ff4-e66a39bb12e3";

  it("an Entra token of tenant A carrying tenant_id B is refused on B's path and let through on A's", async () => {
    const edge = harness(policy([CLIENT], { tenant: "tid", groups: "roles" }));
    const token = await idp.sign({
      aud: CLIENT,
      sub: "wLRDMKCpNvnCDBWl3S5BPHbUyJjTJD2Fwn6aaRhy1Ds",
      oid: "690222be-ff1a-4d56-abd1-7e4f7d38e474",
      tid: TID_A,
      tenant_id: TID_B,
      scope: undefined,
      scp: "access_as_user",
      roles: ["Reader"],
      ver: "2.0",
    });
    const refused = await sendMarked(edge, `/v1/tenants/${TID_B}/orders`, bearer(token));
    expect(refused.response.status).toBe(403);
    expect(refused.body?.reason).toBe("tenant_mismatch");
    expect(refused.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", detail: "tenant" });
    expect(refused.seen).toHaveLength(0);

    const allowed = await sendMarked(edge, `/v1/tenants/${TID_A}/orders`, bearer(token));
    expect(allowed.response.status).toBe(200);
    expect(allowed.record).toMatchObject({ decision: "allow", route: "tenant", tenant_id: TID_A });
    expect(allowed.got["x-tenant"]).toBe(TID_A);
    // Nor does tenant_id's value reach the origin under any header.
    expect(JSON.stringify(allowed.got)).not.toContain(TID_B);
    expect(allowed.got["x-user-scope"]).toBe("access_as_user");
    expect(allowed.got["x-user-groups"]).toBe("Reader");
  });
});

describe("a route's audience is matched against aud alone, never the client's id", () => {
  // Providers name the client that asked for a token in a claim of their own (Cognito's
  // `client_id`, Okta's `cid`, Keycloak's and Auth0's `azp`, Entra v1's `appid`): a token whose
  // client is the API's own id is not a token for the API, so listing that id as an audience must
  // not let it in.
  const CLIENT = "4k8v1u2jc0gnito9client";

  it.each([
    ["a Cognito access token (no aud, client_id)", { aud: undefined, client_id: CLIENT, token_use: "access" }],
    ["an Okta token (aud api://default, cid)", { aud: "api://default", cid: CLIENT }],
    ["a Keycloak token (aud account, azp)", { aud: "account", azp: CLIENT, typ: "Bearer" }],
    ["an Entra v1 token (aud Graph, appid)", { aud: "00000003-0000-0000-c000-000000000000", appid: CLIENT }],
  ])("%s naming the audience as its client is refused as audience_mismatch", async (_label, claims) => {
    const edge = harness(policy([CLIENT]));
    const { response, body, record, seen } = await sendMarked(edge, "/v1/things", bearer(await idp.sign(claims)));
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("audience_mismatch");
    expect(record).toMatchObject({ decision: "deny", reason: "audience_mismatch", detail: "aud" });
    expect(seen).toHaveLength(0);
  });
});

describe("an issuer whose audience claim is client_id takes Cognito's access tokens, not its ID tokens", () => {
  // Cognito's access tokens carry no `aud`: the app client they were issued to is `client_id`
  // (API Gateway's JWT authorizers read it so). An issuer mapped to read its audience there takes
  // them; its ID tokens, whose `aud` is the same client id, carry no `client_id` and are refused.
  const CLIENT = "3n4b5urk1ft4fl3mg5e62d9ado";
  const access = {
    aud: undefined,
    client_id: CLIENT,
    token_use: "access",
    scope: "aws.cognito.signin.user.admin things/read",
    "cognito:groups": ["admin"],
  };

  it("an access token naming the client reaches the origin with its scopes and groups", async () => {
    const edge = harness(policy([CLIENT], { audience: "client_id", groups: "cognito:groups" }));
    const token = await idp.sign(access);
    const { response, record, seen, got } = await sendMarked(edge, "/v1/admin/users", bearer(token));
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "admin" });
    expect(seen).toHaveLength(1);
    expect(got["x-user-scope"]).toBe("aws.cognito.signin.user.admin things/read");
    expect(got["x-user-groups"]).toBe("admin");
  });

  it("an ID token (aud the client, no client_id) and an access token for another client are refused, naming client_id", async () => {
    const edge = harness(policy([CLIENT], { audience: "client_id" }));
    for (const claims of [
      { aud: CLIENT, token_use: "id" },
      { ...access, client_id: "another-app-client" },
    ]) {
      const { response, body, record, seen } = await sendMarked(edge, "/v1/things", bearer(await idp.sign(claims)));
      expect(response.status).toBe(401);
      expect(body?.reason).toBe("audience_mismatch");
      expect(record).toMatchObject({ decision: "deny", reason: "audience_mismatch", detail: "client_id" });
      expect(seen).toHaveLength(0);
    }
  });

  it("a route's own audiences are matched against client_id too, for a token served from the cache", async () => {
    const base = policy([CLIENT], { audience: "client_id" });
    const edge = harness({
      ...base,
      routes: [
        {
          name: "other-app",
          methods: ["GET"],
          path: "/v1/other/**",
          auth: { issuers: ["idp"], audiences: ["other-app"] },
          upstream: "echo",
        },
        ...base.routes,
      ],
    });
    const token = await idp.sign(access);
    const first = await sendMarked(edge, "/v1/things", bearer(token));
    expect(first.record).toMatchObject({ decision: "allow", route: "any" });
    const other = await sendMarked(edge, "/v1/other/things", bearer(token));
    expect(other.record).toMatchObject({
      decision: "deny",
      reason: "audience_mismatch",
      detail: "client_id",
      key_source: "token_cache",
    });
    expect(other.seen).toHaveLength(0);
  });
});

describe("Keycloak roles, nested in objects, never grant a group or satisfy a condition", () => {
  // Keycloak puts realm roles in `realm_access.roles` and client roles in
  // `resource_access.<client>.roles`: objects, which neither the default `groups` mapping nor a
  // claim condition compares with a name. A role named like the route's group must not pass.
  const keycloak = {
    aud: "account",
    azp: "web-app",
    typ: "Bearer",
    realm_access: { roles: ["admin", "offline_access"] },
    resource_access: { admin: { roles: ["admin"] }, account: { roles: ["manage-account"] } },
    scope: "openid email profile",
  };

  it("an admin role in realm_access or resource_access is not the group admin", async () => {
    const edge = harness(policy(["account"]));
    const token = await idp.sign(keycloak);
    const group = await sendMarked(edge, "/v1/admin/users", bearer(token));
    expect(group.response.status).toBe(403);
    expect(group.record).toMatchObject({ decision: "deny", reason: "forbidden", detail: "group" });
    expect(group.seen).toHaveLength(0);

    const condition = await sendMarked(edge, "/v1/realm-admin/users", bearer(token));
    expect(condition.response.status).toBe(403);
    expect(condition.record).toMatchObject({ decision: "deny", reason: "forbidden", detail: "claim:realm_access" });
    expect(condition.seen).toHaveLength(0);

    // The token itself is good: elsewhere it is let through, with no groups written.
    const elsewhere = await sendMarked(edge, "/v1/things", bearer(token));
    expect(elsewhere.response.status).toBe(200);
    expect(elsewhere.record).toMatchObject({ decision: "allow", route: "any" });
    expect(elsewhere.seen).toHaveLength(1);
    expect(elsewhere.got).not.toHaveProperty("x-user-groups");
    expect(elsewhere.got["x-user-scope"]).toBe("openid email profile");
  });
});
