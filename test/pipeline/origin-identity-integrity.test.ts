// What reaches the origin, end to end: identity headers only the edge could have written,
// and no credential. Each test asserts exactly what the echo origin saw (and the audit
// record).
import { beforeAll, describe, expect, it } from "vitest";
import type { IssuerConfig } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

const policy = () =>
  basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } } as Record<string, IssuerConfig>,
    routes: [
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
      {
        name: "admins",
        methods: ["GET"],
        path: "/v1/admin/**",
        auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ],
  });

async function send(path: string, headers: Record<string, string> = {}) {
  const edge = harness(policy());
  return { ...(await sendMarked(edge, path, { headers })), logs: edge.logs };
}

/** What the origin receives when these headers are sent straight to it, edge bypassed. */
async function direct(headers: Record<string, string>) {
  const m = marker();
  await (await fetch(`${echoOrigin}/public/a`, { headers: { ...headers, "x-test-marker": m } })).arrayBuffer();
  return (await originSaw(m))[0]!.headers;
}

// Identity, token and client-certificate headers that other gateways and identity-aware
// proxies write: a client can send them, and an origin written for that gateway would take
// them as verified. Each family is stripped, on public routes and next to an identity the
// edge verified.
const FOREIGN_IDENTITY_HEADERS: [string, Record<string, string>][] = [
  [
    "Kong (X-Consumer-*, X-Credential-Identifier, X-Anonymous-*) and kong-oidc (X-Userinfo)",
    {
      "x-anonymous-consumer": "false",
      "x-anonymous-groups": "admins",
      "x-consumer-id": "00000000-admin",
      "x-consumer-username": "admin",
      "x-consumer-custom-id": "admin",
      "x-consumer-groups": "admins",
      X_Consumer_Username: "admin-underscore",
      "x-credential-identifier": "admin-key",
      "x-userinfo": btoa('{"sub":"admin","email":"ceo@example.com"}'),
    },
  ],
  [
    "Keycloak Gatekeeper / Louketo proxy (X-Auth-Userid, -Username, -Email, -Roles, -Groups, -Subject, -Token)",
    {
      "x-auth-userid": "admin",
      "x-auth-username": "admin",
      "x-auth-email": "ceo@example.com",
      "x-auth-roles": "realm:admin",
      "x-auth-groups": "admins",
      "x-auth-subject": "admin",
      "x-auth-token": "forged.jwt.token",
      "x-auth-key": "forged-api-key",
    },
  ],
  [
    "Apache mod_auth_openidc (OIDC_CLAIM_*, OIDC_access_token)",
    {
      oidc_claim_sub: "admin",
      oidc_claim_email: "ceo@example.com",
      "OIDC-CLAIM-groups": "admins",
      oidc_access_token: "forged.jwt.token",
    },
  ],
  [
    "Google Cloud Endpoints ESP (X-Endpoint-API-UserInfo) and API Gateway (X-Apigateway-Api-Userinfo)",
    {
      "x-endpoint-api-userinfo": btoa('{"sub":"admin","email":"ceo@example.com"}'),
      "x-apigateway-api-userinfo": btoa('{"sub":"admin","email":"ceo@example.com"}'),
    },
  ],
  [
    "client-certificate identity: RFC 9440 (Client-Cert, Client-Cert-Chain), ingress-nginx (ssl-client-*), AWS ALB mTLS (X-Amzn-Mtls-Clientcert-*), CloudFront (CloudFront-Viewer-Cert-*)",
    {
      "client-cert": ":MIIBforgedcertificate=:",
      "client-cert-chain": ":MIIBforgedintermediate=:",
      "ssl-client-verify": "SUCCESS",
      "ssl-client-subject-dn": "CN=admin,O=Corp",
      "ssl-client-issuer-dn": "CN=Corp Root CA",
      "x-amzn-mtls-clientcert-subject": "CN=admin,O=Corp",
      "x-amzn-mtls-clientcert-serial-number": "01",
      "cloudfront-viewer-cert-subject": "CN=admin,O=Corp",
      "cloudfront-viewer-cert-present": "1",
    },
  ],
  [
    // Cloudflare's own mTLS family ("Add TLS client auth headers" managed transform). The edge
    // strips Cloudflare's cf-access-* family but passes every dash-spelled cf- header on as
    // Cloudflare's; these are written by Cloudflare only when that transform is on.
    "Cloudflare's mTLS managed-transform headers (cf-cert-*)",
    {
      "cf-cert-verified": "SUCCESS",
      "cf-cert-presented": "1",
      "cf-cert-subject-dn": "CN=admin,O=Corp",
      "cf-cert-fingerprint-sha256": "00".repeat(32),
    },
  ],
];

describe("identity headers of other gateways", () => {
  it.each(FOREIGN_IDENTITY_HEADERS)("strips %s on a public route", async (_family, spoofed) => {
    const lower = Object.fromEntries(Object.entries(spoofed).map(([name, value]) => [name.toLowerCase(), value]));
    // Control: without the edge every one reaches the origin, so a missing one below is the edge's doing.
    expect(await direct(spoofed)).toMatchObject(lower);
    const { response, seen, got, record } = await send("/public/a", { ...spoofed, "x-kept": "yes" });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(got["x-kept"]).toBe("yes");
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    for (const name of Object.keys(lower)) expect(got[name], name).toBeUndefined();
  });

  it.each(FOREIGN_IDENTITY_HEADERS)("strips %s next to a verified identity", async (_family, spoofed) => {
    const token = await issuer.sign({ sub: "alice" });
    const { response, seen, got, record } = await send("/v1/things", {
      authorization: `Bearer ${token}`,
      ...spoofed,
    });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(record).toMatchObject({ decision: "allow", user_sub: "alice" });
    expect(got["x-user-sub"]).toBe("alice");
    for (const name of Object.keys(spoofed)) expect(got[name.toLowerCase()], name).toBeUndefined();
  });
});

// The edge joins groups with `,` into one list field; a list parser that honours quoted
// strings (RFC 9110 §5.6.1: Werkzeug's parse_list_header, Python's parse_http_list) would read
// `"admins"` as `admins`, a group the edge's own `groups.any_of: ["admins"]` refuses, or two
// quoted names as one. A group name with `"` or `\` is refused, as one with `,` is.
describe("group names an HTTP list parser would read otherwise", () => {
  it.each([
    ["a quoted group name", ['"admins"']],
    ["a quoted name with an escape", ['"admi\\ns"', "eng"]],
    ["two names a quote pair joins", ['"eng', 'ops"']],
  ])("%s is refused as unsafe, and nothing reaches the origin", async (_label, groups) => {
    const token = await issuer.sign({ sub: "alice", groups });
    for (const path of ["/v1/admin/panel", "/v1/things"]) {
      const { response, seen, record } = await send(path, { authorization: `Bearer ${token}` });
      expect(response.status).toBe(401);
      expect(seen).toHaveLength(0);
      expect(record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "groups_unsafe" });
    }
  });
});

describe("what the edge writes, and what it never forwards", () => {
  it("naming things that are no field names (quoted, spaced, empty) neither fails the request nor spares a spoofed identity", async () => {
    // The request side reads Connection members as origins read names, never deleting by the
    // raw member: a member that is no valid header name must not make Headers throw.
    const token = await issuer.sign({ sub: "alice", tenant_id: "acme" });
    const { response, got, record, logs } = await send("/v1/x", {
      authorization: `Bearer ${token}`,
      connection: '"x-user-sub", x b, , x@y;q=1, X_Tenant',
      "x-user-sub": "admin",
      "x-tenant": "globex",
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", user_sub: "alice", tenant_id: "acme" });
    expect(got).toMatchObject({ "x-user-sub": "alice", "x-tenant": "acme" });
    expect(got.connection).toBeUndefined();
    expect(got.authorization).toBeUndefined();
    expect(JSON.stringify(got)).not.toMatch(/admin|globex/);
    expect(logs.join("\n")).not.toContain("unhandled");
  });

  it("Connection naming the edge's identity, request-id and forwarding headers does not remove what the edge writes", async () => {
    const token = await issuer.sign({ sub: "alice", tenant_id: "acme", groups: ["eng"], email: "alice@example.com" });
    const { response, got } = await send("/v1/things", {
      authorization: `Bearer ${token}`,
      connection: "x-user-sub, X_Tenant, x-user-groups, x-user-email, x-request-id, x-forwarded-for, x-real-ip",
      "cf-connecting-ip": "203.0.113.9",
      "x-user-sub": "admin",
      x_tenant: "globex",
      "x-user-groups": "admins",
      "X.User.Email": "ceo@example.com",
      "x-request-id": "client-chosen",
      "x-forwarded-for": "10.0.0.1",
    });
    expect(response.status).toBe(200);
    expect(got).toMatchObject({
      "x-user-sub": "alice",
      "x-tenant": "acme",
      "x-user-groups": "eng",
      "x-user-email": "alice@example.com",
      "x-forwarded-for": "203.0.113.9",
      "x-real-ip": "203.0.113.9",
    });
    expect(got["x-request-id"]).not.toBe("client-chosen");
    expect(got.connection).toBeUndefined();
    expect(JSON.stringify(got)).not.toMatch(/admin|globex|ceo@|10\.0\.0\.1/);
  });

  it("a valid token on a public route injects no identity, and neither the token nor spoofed identity goes on", async () => {
    const token = await issuer.sign({ sub: "alice" });
    const { response, got, record } = await send("/public/a", {
      authorization: `Bearer ${token}`,
      "x-user-sub": "admin",
      x_user_iss: issuer.url,
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", user_sub: null });
    expect(got.authorization).toBeUndefined();
    expect(Object.keys(got).filter((name) => /^x[-_]user/.test(name))).toEqual([]);
    expect(JSON.stringify(got)).not.toContain(token);
  });

  it("Proxy-Authorization, Access service-token headers and the Access cookie never reach the origin, nor the audit record", async () => {
    const token = await issuer.sign({ sub: "alice" });
    const { response, got, logs } = await send("/v1/things", {
      authorization: `Bearer ${token}`,
      "proxy-authorization": "Basic cHJveHk6c2VjcmV0",
      "cf-access-client-id": "client.access",
      "cf-access-client-secret": "s3cret-service-token",
      cookie: "theme=dark; CF_Authorization=forged.access.jwt",
    });
    expect(response.status).toBe(200);
    expect(got["proxy-authorization"]).toBeUndefined();
    expect(got["cf-access-client-id"]).toBeUndefined();
    expect(got["cf-access-client-secret"]).toBeUndefined();
    expect(got.cookie).toBe("theme=dark");
    const everything = JSON.stringify(got) + logs.join("\n");
    for (const secret of [token, "cHJveHk6c2VjcmV0", "s3cret-service-token", "forged.access.jwt"]) {
      expect(everything).not.toContain(secret);
    }
  });

  it.each([
    ["CR/LF in the subject", { sub: "alice\r\nx-user-sub: admin" }, "subject_missing_or_unsafe"],
    ["NUL in the email", { email: "a@b.c\u0000admin" }, "email_unsafe"],
    ["non-ASCII tenant", { tenant_id: "acme\u2028" }, "tenant_unsafe"],
    ["a comma in a group", { groups: ["eng,admins"] }, "groups_unsafe"],
    [
      "a comma in the tenant (an origin reading x-tenant as a list takes the first)",
      { tenant_id: "acme,globex" },
      "tenant_unsafe",
    ],
    ["a 256-character subject", { sub: "a".repeat(256) }, "subject_missing_or_unsafe"],
  ])("%s is refused, and nothing reaches the origin", async (_label, claims, detail) => {
    const token = await issuer.sign({ sub: "alice", ...claims });
    const { response, seen, record } = await send("/v1/things", { authorization: `Bearer ${token}` });
    expect(response.status).toBe(401);
    expect(record).toMatchObject({ decision: "deny", reason: "token_invalid", detail });
    expect(seen).toHaveLength(0);
  });
});

describe("the email address", () => {
  it.each([
    ["verified", { email_verified: true }, "alice@example.com"],
    ["not said to be verified or not", {}, "alice@example.com"],
    ["unverified", { email_verified: false }, undefined],
    ["unverified, the flag sent as a string", { email_verified: "false" }, undefined],
    ["unverified, the flag as Python writes it", { email_verified: "False" }, undefined],
    ["verified, the flag sent as a string", { email_verified: "TRUE" }, "alice@example.com"],
    ["a flag that is neither", { email_verified: 0 }, undefined],
  ])("goes to the origin as x-user-email only when not marked unverified: %s", async (_label, claims, expected) => {
    const token = await issuer.sign({ sub: "alice", email: "alice@example.com", ...claims });
    const { response, got } = await send("/v1/things", {
      authorization: `Bearer ${token}`,
      "x-user-email": "spoofed@example.com",
    });
    expect(response.status).toBe(200);
    expect(got["x-user-sub"]).toBe("alice");
    expect(got["x-user-email"]).toBe(expected);
  });

  it("as the subject, unverified, rejects the token: whoever signed up with the address would be that user", async () => {
    const edge = harness(
      basePolicy({
        issuers: {
          idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], claims: { subject: "email" } },
        } as Record<string, IssuerConfig>,
        routes: [{ name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const m = marker();
    const unverified = await issuer.sign({ email: "ceo@example.com", email_verified: false });
    const refused = await edge.fetch("/v1/things", {
      headers: { authorization: `Bearer ${unverified}`, "x-test-marker": m },
    });
    expect(refused.status).toBe(401);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "token_invalid", detail: "subject_email_unverified" });
    expect(await originSaw(m)).toHaveLength(0);
    const verified = await issuer.sign({ email: "ceo@example.com", email_verified: true });
    const admitted = await edge.fetch("/v1/things", {
      headers: { authorization: `Bearer ${verified}`, "x-test-marker": m },
    });
    expect(admitted.status).toBe(200);
    expect((await originSaw(m))[0]?.headers["x-user-sub"]).toBe("ceo@example.com");
  });

  it("mapped from another claim (upn), is passed on whatever email_verified says: the flag speaks of the email claim", async () => {
    const edge = harness(
      basePolicy({
        issuers: {
          idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], claims: { email: "upn" } },
        } as Record<string, IssuerConfig>,
        routes: [{ name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const m = marker();
    const token = await issuer.sign({
      sub: "alice",
      upn: "alice@corp.example",
      email: "a@x.example",
      email_verified: false,
    });
    const response = await edge.fetch("/v1/things", {
      headers: { authorization: `Bearer ${token}`, "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    expect((await originSaw(m))[0]?.headers["x-user-email"]).toBe("alice@corp.example");
  });
});

describe("a JWT in the path of a refused request", () => {
  it("is recorded as [jwt] on every refusal path, and its signature reaches no log line", async () => {
    const jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
    const edge = harness(policy());
    const sends: [string, RequestInit?][] = [
      [`/nowhere/${jws}`],
      [`/v1/cb/${jws}`],
      [`/v1/cb/${jws}`, { headers: { authorization: "Bearer x.y.z" } }],
      [`/public/cb/${jws}`, { headers: { cookie: "a=b CF_Authorization=x" } }],
      [`/public/cb/${jws}`, { method: "DELETE" }],
    ];
    for (const [path, init] of sends) await (await edge.fetch(path, init)).arrayBuffer();
    expect(edge.audit.map((r) => [r.path, r.reason, r.detail])).toEqual([
      ["/nowhere/[jwt]", "route_not_found", null],
      ["/v1/cb/[jwt]", "token_missing", "no_credentials"],
      ["/v1/cb/[jwt]", "token_invalid", "non_canonical_base64url"],
      ["/public/cb/[jwt]", "bad_request", "credential_cookie_in_value"],
      ["/public/cb/[jwt]", "method_not_allowed", null],
    ]);
    const everything = [...edge.logs, ...edge.dataPoints.map((point) => JSON.stringify(point))].join("\n");
    expect(everything).not.toContain("c2lnbmF0dXJl");
    expect(everything).not.toContain("eyJzdWIiOiJhIn0");
  });
});
