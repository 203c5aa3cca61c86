// Authorisation and tenant binding under attack: escaped, cased and look-alike tenants in
// paths and hosts, claims of every shape, conditions, mixed Access and OIDC routes, several
// issuers. Each asserts the reason and exactly what (if anything) reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { IssuerConfig, PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";
import { sendMarked } from "../support/sent";

let idp: TestIssuer;
let idp2: TestIssuer;
let team: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
  idp2 = await makeIssuer("ES256");
  team = await makeIssuer("RS256");
});

function policy(claims?: IssuerConfig["claims"]): PolicyDocument {
  return basePolicy({
    issuers: {
      idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE], ...(claims ? { claims } : {}) },
      idp2: { kind: "oidc", issuer: idp2.url, audiences: [AUDIENCE] },
      access: { kind: "cloudflare_access", team_domain: team.url },
    } as Record<string, IssuerConfig>,
    routes: [
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
      {
        name: "tenant-path",
        methods: ["GET"],
        path: "/v1/tenants/:tenant/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
      },
      {
        name: "tenant-host",
        methods: ["GET"],
        path: "/app/**",
        host: ":tenant.tenants.example.test",
        auth: { issuers: ["idp"] },
        upstream: "echo",
      },
      {
        name: "admin",
        methods: ["GET"],
        path: "/v1/admin/**",
        auth: { issuers: ["idp"], scopes: { all_of: ["admin:write"] } },
        upstream: "echo",
      },
      {
        name: "writers",
        methods: ["GET"],
        path: "/v1/writers/**",
        auth: { issuers: ["idp"], groups: { any_of: ["payments-writer"] } },
        upstream: "echo",
      },
      {
        name: "mfa",
        methods: ["GET"],
        path: "/v1/mfa/**",
        auth: { issuers: ["idp"], claims: [{ claim: "amr", one_of: ["mfa"] }] },
        upstream: "echo",
      },
      {
        name: "verified",
        methods: ["GET"],
        path: "/v1/verified/**",
        auth: { issuers: ["idp"], claims: [{ claim: "email_verified", equals: true }] },
        upstream: "echo",
      },
      {
        name: "mixed",
        methods: ["GET"],
        path: "/mixed/:tenant/**",
        auth: { issuers: ["idp", "access"], audiences: [AUDIENCE, ACCESS_AUD_TAG], scopes: { all_of: ["api:read"] } },
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp", "idp2"] }, upstream: "echo" },
    ],
  });
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

function accessAssertionOf(claims: Record<string, unknown> = {}) {
  return accessAssertion(team, ACCESS_AUD_TAG, claims);
}

describe("tenant binding: path captures", () => {
  it("an escaped spelling of the token's own tenant is allowed and forwarded canonical", async () => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/tenants/%61cme/x", {
      headers: bearer(await idp.sign({ tenant_id: "acme" })),
    });
    expect(r.response.status).toBe(200);
    expect(r.seen[0]?.path).toBe("/v1/tenants/acme/x");
    expect(r.got["x-tenant"]).toBe("acme");
  });

  it.each([
    ["another tenant", "/v1/tenants/globex/x"],
    ["the tenant in another case", "/v1/tenants/ACME/x"],
    ["a climb out of the tenant", "/v1/tenants/acme/%2e%2e/globex/x"],
  ])("%s is refused and nothing is forwarded", async (_label, path) => {
    const edge = harness(policy());
    const r = await sendMarked(edge, path, { headers: bearer(await idp.sign({ tenant_id: "acme" })) });
    expect(r.response.status).toBe(403);
    expect(r.record?.reason).toBe("tenant_mismatch");
    expect(r.seen).toHaveLength(0);
  });

  it("a broader route cannot be reached by changing the case of the tenant route's literals", async () => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/TENANTS/globex/x", {
      headers: bearer(await idp2.sign({ tenant_id: "acme" })),
    });
    expect(r.response.status).toBe(400);
    expect(r.record?.detail).toBe("ambiguous_case");
    expect(r.seen).toHaveLength(0);
  });

  it("a tenant captured from an escaped segment is compared decoded, and the origin reads the same value", async () => {
    const edge = harness(policy());
    const token = await idp.sign({ tenant_id: "acme+" });
    for (const path of ["/v1/tenants/acme%2B/x", "/v1/tenants/acme+/x"]) {
      const r = await sendMarked(edge, path, { headers: bearer(token) });
      expect(r.response.status).toBe(200);
      expect(decodeURIComponent(r.seen[0]?.path.split("/")[3] ?? "")).toBe("acme+");
      expect(r.got["x-tenant"]).toBe("acme+");
    }
  });
});

describe("tenant binding: host captures", () => {
  it.each([
    ["upper case", "https://ACME.tenants.example.test/app/x"],
    ["a trailing dot and a port", "https://acme.tenants.example.test.:8443/app/x"],
    ["a fullwidth letter", "https://\uff41cme.tenants.example.test/app/x"],
    ["an escaped letter", "https://%61cme.tenants.example.test/app/x"],
  ])("the token's own tenant host in %s is allowed, bound to acme", async (_label, url) => {
    const edge = harness(policy());
    const r = await sendMarked(edge, url, { headers: bearer(await idp.sign({ tenant_id: "acme" })) });
    expect(r.response.status).toBe(200);
    expect(r.got["x-tenant"]).toBe("acme");
  });

  it("a token whose tenant differs only in case never matches a host label", async () => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "https://acme.tenants.example.test/app/x", {
      headers: bearer(await idp.sign({ tenant_id: "ACME" })),
    });
    expect(r.response.status).toBe(403);
    expect(r.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", tenant_id: "ACME" });
    expect(r.seen).toHaveLength(0);
  });
});

describe("mapped claims of every shape", () => {
  it.each([42, true, ["acme"], { id: "acme" }, null, ""])("tenant %j rejects the token", async (tenant) => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/x", { headers: bearer(await idp.sign({ tenant_id: tenant })) });
    expect(r.record).toMatchObject({ reason: "token_invalid", detail: "tenant_unsafe" });
    expect(r.seen).toHaveLength(0);
  });

  it.each([
    "api:read\tadmin:write",
    ["api:read", 1],
    [["admin:write"]],
    ["admin:write", ""],
    { "admin:write": true },
    null,
    // An origin reading x-user-scope as a list (Spring's List<String>) would find admin:write.
    "api:read x,admin:write",
    ["api:read", "x,admin:write"],
    // Not scope-tokens (RFC 6749 §3.3): an HTTP list parser would unquote it to admin:write.
    '"admin:write"',
    "admin\\:write",
  ])("scope %j rejects the token", async (scope) => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/admin/x", { headers: bearer(await idp.sign({ scope })) });
    expect(r.record).toMatchObject({ reason: "token_invalid", detail: "scopes_unsafe" });
    expect(r.seen).toHaveLength(0);
  });

  it("an empty scope claim does not fall back to scp", async () => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/admin/x", {
      headers: bearer(await idp.sign({ scope: "", scp: ["admin:write"] })),
    });
    expect(r.record?.reason).toBe("insufficient_scope");
    expect(r.seen).toHaveLength(0);
  });

  it("extra spaces in scope are not scopes; the origin gets exactly the scopes authorised", async () => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/admin/x", {
      headers: bearer(await idp.sign({ scope: "  api:read   admin:write " })),
    });
    expect(r.response.status).toBe(200);
    expect(r.got["x-user-scope"]).toBe("api:read admin:write");
  });

  it.each([[["payments-writer"]], { 0: "payments-writer" }, null, 5, "payments-writer, admins", ['"payments-writer"']])(
    "groups %j reject the token",
    async (groups) => {
      const edge = harness(policy());
      const r = await sendMarked(edge, "/v1/writers/x", { headers: bearer(await idp.sign({ groups })) });
      expect(r.record).toMatchObject({ reason: "token_invalid", detail: "groups_unsafe" });
      expect(r.seen).toHaveLength(0);
    },
  );

  it("the groups header holds exactly the groups authorised", async () => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/writers/x", {
      headers: bearer(await idp.sign({ groups: ["Domain Admins", "payments-writer"] })),
    });
    expect(r.response.status).toBe(200);
    expect(r.got["x-user-groups"]).toBe("Domain Admins,payments-writer");
  });
});

describe("claim conditions", () => {
  it.each([null, [["mfa"]], { mfa: true }, "mfa pwd", "MFA"])("amr %j does not satisfy one_of [mfa]", async (amr) => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/mfa/x", { headers: bearer(await idp.sign({ amr })) });
    expect(r.record).toMatchObject({ reason: "forbidden", detail: "claim:amr" });
    expect(r.seen).toHaveLength(0);
  });

  it.each(["true", 1, null, [false], "__proto__"])("email_verified %j does not satisfy equals true", async (v) => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/verified/x", { headers: bearer(await idp.sign({ email_verified: v })) });
    expect(r.record?.reason).toBe("forbidden");
    expect(r.seen).toHaveLength(0);
  });
});

describe("a route taking OIDC tokens and Access assertions", () => {
  it("an OIDC token in the Access header, or an Access assertion as a Bearer token, is refused", async () => {
    const edge = harness(policy());
    const oidc = await idp.sign({ tenant_id: "acme" });
    const access = await accessAssertionOf({ tenant_id: "acme", scope: "api:read" });
    const presentations: Record<string, string>[] = [
      { "cf-access-jwt-assertion": oidc },
      { cookie: `CF_Authorization=${oidc}` },
      bearer(access),
    ];
    for (const headers of presentations) {
      const r = await sendMarked(edge, "/mixed/acme/x", { headers });
      expect(r.record?.reason).toBe("issuer_unknown");
      expect(r.seen).toHaveLength(0);
    }
  });

  it("the same token verified (and cached) as one kind is not accepted as the other", async () => {
    const edge = harness(policy());
    const oidc = await idp.sign({ tenant_id: "acme" });
    expect((await sendMarked(edge, "/mixed/acme/x", { headers: bearer(oidc) })).response.status).toBe(200);
    const r = await sendMarked(edge, "/mixed/acme/x", { headers: { "cf-access-jwt-assertion": oidc } });
    expect(r.record?.reason).toBe("issuer_unknown");
    expect(r.seen).toHaveLength(0);
  });

  it("an assertion without a tenant is not bound to any tenant", async () => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/mixed/acme/x", {
      headers: {
        "cf-access-jwt-assertion": await accessAssertionOf({ scope: "api:read" }),
      },
    });
    expect(r.record?.reason).toBe("tenant_mismatch");
    expect(r.seen).toHaveLength(0);
  });
});

describe("several issuers", () => {
  it("a token from an issuer the tenant route does not list is refused there, whatever its tenant", async () => {
    const edge = harness(policy());
    const r = await sendMarked(edge, "/v1/tenants/globex/x", {
      headers: bearer(await idp2.sign({ tenant_id: "globex" })),
    });
    expect(r.record?.reason).toBe("issuer_unknown");
    expect(r.seen).toHaveLength(0);
  });

  it("a custom tenant claim is read instead of tenant_id", async () => {
    const edge = harness(policy({ tenant: "https://example.test/org" }));
    const token = await idp.sign({ tenant_id: "acme", "https://example.test/org": "globex" });
    const own = await sendMarked(edge, "/v1/tenants/globex/x", { headers: bearer(token) });
    expect(own.response.status).toBe(200);
    expect(own.got["x-tenant"]).toBe("globex");
    const other = await sendMarked(edge, "/v1/tenants/acme/x", { headers: bearer(token) });
    expect(other.record?.reason).toBe("tenant_mismatch");
    expect(other.seen).toHaveLength(0);
  });
});
