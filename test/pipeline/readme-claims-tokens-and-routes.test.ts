// README claims (from the top through "Identity headers") that no other test held to account,
// each through the whole pipeline (workerd, the loopback echo origin and issuer): the reason
// and detail of each answer, what reached the origin, and what was recorded.
import { CompactSign } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import {
  AUDIENCE,
  accessAssertion,
  makeIssuer,
  type TestIssuer,
  type TestKey,
  ACCESS_AUD_TAG,
} from "../support/issuers";
import { sendMarked } from "../support/sent";

const PAYMENTS = "https://payments.api.test";

let idp: TestIssuer;
let team: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
  team = await makeIssuer("RS256");
});

type Edge = ReturnType<typeof harness>;

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A token signed over this exact payload text, which no JWT library writes (duplicate names). */
function signPayloadText(payload: string): Promise<string> {
  const key = idp.keys[0] as TestKey;
  return new CompactSign(new TextEncoder().encode(payload))
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
    .sign(key.privateKey);
}

function oidcEdge(routes: PolicyDocument["routes"]): Edge {
  return harness(
    basePolicy({
      issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
      routes,
    }),
  );
}

describe("Identity headers: duplicate JSON names", () => {
  // README: "the edge keeps the last of duplicate JSON keys, as jose does; an origin's parser
  // might keep the first, so only the edge's reading is passed on".
  const tenantEdge = () =>
    oidcEdge([
      {
        name: "tenants",
        methods: ["GET"],
        path: "/v1/tenants/:tenant/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
      },
    ]);

  async function twoNamed(): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return signPayloadText(
      `{"iss":${JSON.stringify(idp.url)},"aud":"${AUDIENCE}","sub":"alice","tenant_id":"globex",` +
        `"scope":"api:read","iat":${now},"exp":${now + 600},"sub":"bob","tenant_id":"acme"}`,
    );
  }

  it("the origin receives the last sub and tenant, never the first, and the raw token not at all", async () => {
    const token = await twoNamed();
    const { response, seen, record } = await sendMarked(tenantEdge(), "/v1/tenants/acme/orders", {
      headers: bearer(token),
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "tenants", user_sub: "bob", tenant_id: "acme" });
    expect(seen).toHaveLength(1);
    const headers = seen[0]!.headers;
    expect(headers["x-user-sub"]).toBe("bob");
    expect(headers["x-tenant"]).toBe("acme");
    expect(headers.authorization).toBeUndefined();
    expect(JSON.stringify(seen[0])).not.toContain(token.split(".")[1]);
  });

  it("tenant binding is judged on the last tenant: the first one binds nothing", async () => {
    const { response, body, seen, record } = await sendMarked(tenantEdge(), "/v1/tenants/globex/orders", {
      headers: bearer(await twoNamed()),
    });
    expect(response.status).toBe(403);
    expect(body?.reason).toBe("tenant_mismatch");
    expect(record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenants" });
    expect(seen).toHaveLength(0);
  });
});

describe("Identity headers: x-user-sub and x-user-email are single values", () => {
  // README: "`x-user-sub` and `x-user-email` are single values that may hold a comma (an X.500
  // subject, a quoted local part): read them whole, never as lists."
  it("a subject and an address holding commas reach the origin whole, as one value each", async () => {
    const edge = oidcEdge([
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ]);
    const subject = "CN=alice,OU=eng,O=acme";
    const email = '"alice,ops"@example.com';
    const { response, seen, record } = await sendMarked(edge, "/v1/things", {
      headers: bearer(await idp.sign({ sub: subject, email })),
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", user_sub: subject });
    expect(seen[0]?.headers["x-user-sub"]).toBe(subject);
    expect(seen[0]?.headers["x-user-email"]).toBe(email);
  });
});

describe("Routes: HEAD is authorised as GET", () => {
  // README: "A route that allows `GET` also answers `HEAD` (HEAD is authorised as GET)".
  const edge = () =>
    oidcEdge([
      {
        name: "reports",
        methods: ["GET"],
        path: "/v1/reports/**",
        auth: { issuers: ["idp"], scopes: { all_of: ["reports:read"] } },
        upstream: "echo",
      },
      { name: "writes", methods: ["POST"], path: "/v1/writes/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ]);

  it("a HEAD without the GET route's scope is refused as the GET would be, and never forwarded", async () => {
    const e = edge();
    const token = await idp.sign({ scope: "api:read" });
    for (const method of ["GET", "HEAD"]) {
      const { response, seen, record } = await sendMarked(e, "/v1/reports/q1", { method, headers: bearer(token) });
      expect({ method, status: response.status }).toEqual({ method, status: 403 });
      expect(record).toMatchObject({ decision: "deny", reason: "insufficient_scope", route: "reports", method });
      expect(seen).toHaveLength(0);
    }
  });

  it("a HEAD with the scope reaches the origin through the GET route", async () => {
    const { response, seen, record } = await sendMarked(edge(), "/v1/reports/q1", {
      method: "HEAD",
      headers: bearer(await idp.sign({ scope: "api:read reports:read" })),
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "reports", method: "HEAD" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers["x-user-scope"]).toBe("api:read reports:read");
  });

  it("a route that does not allow GET does not answer HEAD", async () => {
    const { response, seen, record } = await sendMarked(edge(), "/v1/writes/x", {
      method: "HEAD",
      headers: bearer(await idp.sign()),
    });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST");
    expect(record).toMatchObject({ decision: "deny", reason: "method_not_allowed" });
    expect(seen).toHaveLength(0);
  });
});

describe("How a token is checked: extraction", () => {
  const edge = () =>
    oidcEdge([{ name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }]);

  // README: "Bearer tokens come only from `Authorization`: scheme case-insensitive, exactly one
  // space, one token."
  it.each(["bearer", "BEARER", "bEaReR"])("the scheme spelt %s is Bearer", async (scheme) => {
    const token = await idp.sign({ sub: `case-${scheme}` });
    const { response, seen, record } = await sendMarked(edge(), "/v1/x", {
      headers: { authorization: `${scheme} ${token}` },
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", user_sub: `case-${scheme}` });
    expect(seen[0]?.headers["x-user-sub"]).toBe(`case-${scheme}`);
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });

  // README: "a request carrying one is refused whatever else it carries (`400 token_malformed`
  // when another credential comes with it, `401 token_missing` otherwise)" — an Access
  // assertion is such a credential on an Access route.
  it("a query token beside an Access assertion is 400 token_malformed; alone it is 401 token_missing", async () => {
    const e = harness(
      basePolicy({
        issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
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
    );
    const assertion = await accessAssertion(team, ACCESS_AUD_TAG);
    const transports: Record<string, string>[] = [
      { "cf-access-jwt-assertion": assertion },
      { cookie: `CF_Authorization=${assertion}` },
    ];
    for (const headers of transports) {
      const both = await sendMarked(e, `/app/x?access_token=${assertion}`, { headers });
      expect(both.response.status).toBe(400);
      expect(both.body?.reason).toBe("token_malformed");
      expect(both.record).toMatchObject({ decision: "deny", reason: "token_malformed", detail: "multiple_methods" });
      expect(both.seen).toHaveLength(0);
    }
    const alone = await sendMarked(e, `/app/x?access_token=${assertion}`);
    expect(alone.response.status).toBe(401);
    expect(alone.record).toMatchObject({ reason: "token_missing", detail: "query_token_not_accepted" });
    expect(alone.seen).toHaveLength(0);
  });

  // README: "On a route that accepts both bearer tokens and Access assertions, a Bearer
  // `Authorization` header is read first": the Bearer token decides, for or against.
  const mixedEdge = () =>
    harness(
      basePolicy({
        issuers: {
          access: { kind: "cloudflare_access", team_domain: team.url },
          idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
        },
        routes: [
          {
            name: "mixed",
            methods: ["GET"],
            path: "/mixed/**",
            auth: { issuers: ["idp", "access"], audiences: [AUDIENCE, ACCESS_AUD_TAG] },
            upstream: "echo",
          },
        ],
      }),
    );

  it("on a mixed route a refused Bearer token is not rescued by a valid Access assertion", async () => {
    const expired = await idp.sign({ exp: Math.floor(Date.now() / 1000) - 3600 });
    const { response, body, seen, record } = await sendMarked(mixedEdge(), "/mixed/x", {
      headers: { ...bearer(expired), "cf-access-jwt-assertion": await accessAssertion(team, ACCESS_AUD_TAG) },
    });
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_expired");
    // The assertion beside it is valid: only the Bearer token can have been read.
    expect(record).toMatchObject({ decision: "deny", reason: "token_expired", route: "mixed" });
    expect(seen).toHaveLength(0);
  });

  it("on a mixed route a valid Bearer token decides, and a forged assertion beside it goes nowhere", async () => {
    const forged = `${(await accessAssertion(team, ACCESS_AUD_TAG)).slice(0, -4)}AAAA`;
    const { response, seen, record } = await sendMarked(mixedEdge(), "/mixed/x", {
      headers: { ...bearer(await idp.sign({ sub: "bearer-user" })), "cf-access-jwt-assertion": forged },
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", user_sub: "bearer-user", issuer: idp.url });
    expect(seen[0]?.headers["x-user-sub"]).toBe("bearer-user");
    expect(seen[0]?.headers["cf-access-jwt-assertion"]).toBeUndefined();
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });
});

describe("How a token is checked: the route's audiences replace the issuer's", () => {
  // README: "the audience must be one the route (or else the issuer) accepts — with an `aud`
  // array, any element may match"; issuer `audiences`: "accepted for where a route names none
  // of its own".
  const edge = () =>
    oidcEdge([
      {
        name: "payments",
        methods: ["GET"],
        path: "/v1/payments/**",
        auth: { issuers: ["idp"], audiences: [PAYMENTS] },
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ]);

  it("a token for the issuer's audience is refused on a route that names its own", async () => {
    const e = edge();
    const token = await idp.sign({ aud: AUDIENCE });
    const refused = await sendMarked(e, "/v1/payments/x", { headers: bearer(token) });
    expect(refused.response.status).toBe(401);
    expect(refused.body?.reason).toBe("audience_mismatch");
    expect(refused.record).toMatchObject({ decision: "deny", reason: "audience_mismatch", route: "payments" });
    expect(refused.seen).toHaveLength(0);
    // The same token is fine where the route names no audience of its own.
    const elsewhere = await sendMarked(e, "/v1/things", { headers: bearer(token) });
    expect(elsewhere.response.status).toBe(200);
    expect(elsewhere.record).toMatchObject({ decision: "allow", route: "any" });
  });

  it("a token for the route's audience passes, alone or as any element of an aud array", async () => {
    const e = edge();
    for (const aud of [PAYMENTS, ["https://other.test", PAYMENTS]]) {
      const { response, seen, record } = await sendMarked(e, "/v1/payments/x", {
        headers: bearer(await idp.sign({ aud, sub: "payer" })),
      });
      expect({ aud, status: response.status }).toEqual({ aud, status: 200 });
      expect(record).toMatchObject({ decision: "allow", route: "payments" });
      expect(seen[0]?.headers["x-user-sub"]).toBe("payer");
    }
    // And a token only for the route's audience is not one for the issuer's default routes.
    const other = await sendMarked(e, "/v1/things", { headers: bearer(await idp.sign({ aud: PAYMENTS })) });
    expect(other.response.status).toBe(401);
    expect(other.record).toMatchObject({ reason: "audience_mismatch", route: "any" });
    expect(other.seen).toHaveLength(0);
  });
});
