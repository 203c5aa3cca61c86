// Claim values of a verified token, as a hostile user or tenant admin may choose them (a display
// name, an address, an organisation's name, a group in a directory the tenant administers): what
// the edge makes of them on the way to the identity headers, the tenant binding, the rate-limit
// counters and the audit record. The issuer's signature is good; the contents are not trusted.
// Each test asserts the reason, the audit record and exactly what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { LimitSpec, PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { accessAssertion, makeIssuer, type TestIssuer } from "../support/issuers";
import { bearerOf, withIdp } from "../support/guarded-sites";
import { sendMarked } from "../support/sent";

let idp: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

const unique = () => crypto.randomUUID().slice(0, 8);

/**
 * A tenant-bound path route and host route, an admins-only area, and any signed-in caller on
 * `/v1/**`; `tenantHeader` renames the tenant identity header (Loki, Mimir, Cortex and Tempo
 * read `X-Scope-OrgID`, as the README advises naming it).
 */
function edgeFor(options: { tenantHeader?: string; limits?: LimitSpec[] } = {}) {
  const route = (r: Omit<RouteConfig, "methods" | "upstream">): RouteConfig => ({
    methods: ["GET"],
    upstream: "echo",
    ...(options.limits ? { limits: options.limits, inherit_default_limits: false } : {}),
    ...r,
  });
  const policy: PolicyDocument = withIdp(idp, [
    route({ name: "org-host", host: ":tenant.logs.example.test", path: "/**", auth: { issuers: ["idp"] } }),
    route({ name: "org-path", path: "/orgs/:tenant/**", auth: { issuers: ["idp"] } }),
    route({ name: "admin", path: "/admin/**", auth: { issuers: ["idp"], groups: { any_of: ["admins"] } } }),
    route({ name: "any", path: "/v1/**", auth: { issuers: ["idp"] } }),
  ]);
  if (options.tenantHeader)
    policy.settings = { ...policy.settings, identity_headers: { tenant: options.tenantHeader } };
  return harness(policy);
}

/** The tenants a Loki, Mimir, Cortex or Tempo with tenant federation on reads in `X-Scope-OrgID` (dskit's MultiResolver splits on `|`). */
const tenantsFederationReads = (orgId: string) => [...new Set(orgId.split("|"))].sort();

describe("a tenant the Grafana stack reads as several tenants", () => {
  // With tenant federation on (Mimir and Cortex `tenant-federation.enabled`, Loki
  // `multi_tenant_queries_enabled`, Tempo's multi-tenant queries), `X-Scope-OrgID: acme|globex`
  // queries both tenants: dskit's MultiResolver splits the header on `|` and checks each part as
  // a tenant of its own. A `|` in a tenant claim (an organisation named by its admin) would have
  // the edge bind the request to one tenant while the origin serves two, one of them another
  // organisation's. Such a tenant is refused as a `,` in one is.
  it("a tenant claim holding `|` is refused on a route that binds no tenant: `X-Scope-OrgID` never says two tenants", async () => {
    const edge = edgeFor({ tenantHeader: "x-scope-orgid" });
    const sent = await sendMarked(edge, "/v1/api/v1/query", {
      headers: await bearerOf(idp, { sub: "mallory", tenant_id: "acme|globex" }),
    });
    // What an origin with federation on would read from what reached it.
    const read = sent.got["x-scope-orgid"] === undefined ? [] : tenantsFederationReads(sent.got["x-scope-orgid"]);
    expect(read).not.toContain("globex");
    expect(sent.response.status).toBe(401);
    expect(sent.body?.reason).toBe("token_invalid");
    expect(sent.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "tenant_unsafe" });
    expect(sent.record?.tenant_id).toBeNull();
    expect(sent.seen).toHaveLength(0);
  });

  it("a tenant claim holding `|` is not bound from a path segment that spells it", async () => {
    const edge = edgeFor({ tenantHeader: "x-scope-orgid" });
    const sent = await sendMarked(edge, "/orgs/acme%7Cglobex/api/v1/query", {
      headers: await bearerOf(idp, { sub: "mallory", tenant_id: "acme|globex" }),
    });
    expect(sent.seen.map((s) => s.headers["x-scope-orgid"])).toEqual([]);
    expect(sent.response.status).toBe(401);
    expect(sent.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "tenant_unsafe" });
  });

  it("a tenant of the characters tenants are made of goes on as the one tenant it is", async () => {
    const edge = edgeFor({ tenantHeader: "x-scope-orgid" });
    for (const tenant of ["acme", "acme-eu_1", "org.acme", "Acme(eu)"]) {
      const sent = await sendMarked(edge, `/orgs/${encodeURIComponent(tenant)}/api/v1/query`, {
        headers: await bearerOf(idp, { sub: "alice", tenant_id: tenant }),
      });
      expect([tenant, sent.response.status, sent.record?.tenant_id]).toEqual([tenant, 200, tenant]);
      expect(tenantsFederationReads(sent.got["x-scope-orgid"] ?? "")).toEqual([tenant]);
    }
  });
});

describe("claim values no header can carry verbatim are refused with a stable reason", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["CR LF in the subject", { sub: "alice\r\nx-user-groups: admins" }, "subject_missing_or_unsafe"],
    ["NUL in the subject", { sub: "alice\u0000admin" }, "subject_missing_or_unsafe"],
    ["a line separator in the subject", { sub: "alice\u2028admin" }, "subject_missing_or_unsafe"],
    ["a fullwidth letter in the subject", { sub: "ａlice" }, "subject_missing_or_unsafe"],
    ["a subject of 256 characters", { sub: "a".repeat(256) }, "subject_missing_or_unsafe"],
    ["a trailing space in the tenant", { tenant_id: "acme " }, "tenant_unsafe"],
    ["LF in the tenant", { tenant_id: "acme\nglobex" }, "tenant_unsafe"],
    ["a comma in the tenant", { tenant_id: "acme,globex" }, "tenant_unsafe"],
    ["a quoted tenant", { tenant_id: '"acme"' }, "tenant_unsafe"],
    ["a zero-width space in the tenant", { tenant_id: "ac\u200Bme" }, "tenant_unsafe"],
    ["a group holding a comma", { groups: ["admin,ops"] }, "groups_unsafe"],
    ["a quoted group", { groups: ['"admins"'] }, "groups_unsafe"],
    ["a group with a leading space", { groups: [" admins"] }, "groups_unsafe"],
    ["a group beyond Latin-1", { groups: ["admins\u0100"] }, "groups_unsafe"],
    ["a group with a tab", { groups: ["admins\t"] }, "groups_unsafe"],
    ["a scope holding a comma", { scope: "api:read,admin:write" }, "scopes_unsafe"],
    ["an address with CR LF", { email: "a@example.com\r\nx-user-sub: root" }, "email_unsafe"],
    ["an address beyond ASCII", { email: "jösé@example.com" }, "email_unsafe"],
  ];
  it.each(cases)("%s: 401 token_invalid, nothing forwarded, no uncaught error", async (_label, claims, detail) => {
    const edge = edgeFor();
    const sent = await sendMarked(edge, "/admin/panel", {
      headers: await bearerOf(idp, { sub: "alice", groups: ["admins"], ...claims }),
    });
    expect(sent.response.status).toBe(401);
    expect(sent.body?.reason).toBe("token_invalid");
    expect(sent.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail });
    expect([sent.record?.user_sub, sent.record?.tenant_id]).toEqual([null, null]);
    expect(sent.seen).toHaveLength(0);
    // One audit line, and no log line carries the injected text.
    expect(sent.records).toHaveLength(1);
    expect(edge.logs.filter((line) => /x-user-(groups|sub):|\u2028|\r/.test(line))).toEqual([]);
  });
});

describe("claims of the wrong type", () => {
  it.each([
    ["a number", 1],
    ["a boolean", true],
    ["null", null],
    ["an empty string", ""],
    ["an array", ["acme"]],
    ["an object", { id: "acme" }],
  ])("a tenant that is %s is refused (tenant_unsafe), never read as its string form", async (_label, tenant) => {
    const edge = edgeFor();
    const sent = await sendMarked(edge, "/orgs/acme/x", { headers: await bearerOf(idp, { tenant_id: tenant }) });
    expect(sent.response.status).toBe(401);
    expect(sent.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "tenant_unsafe" });
    expect(sent.seen).toHaveLength(0);
  });

  it("a number tenant 1 never binds the path tenant `1`; the string does", async () => {
    const edge = edgeFor();
    const number = await sendMarked(edge, "/orgs/1/x", { headers: await bearerOf(idp, { tenant_id: 1 }) });
    expect(number.record).toMatchObject({ reason: "token_invalid", detail: "tenant_unsafe" });
    expect(number.seen).toHaveLength(0);
    const string = await sendMarked(edge, "/orgs/1/x", { headers: await bearerOf(idp, { tenant_id: "1" }) });
    expect(string.record).toMatchObject({ decision: "allow", route: "org-path", tenant_id: "1" });
    expect(string.got["x-tenant"]).toBe("1");
  });

  it("a subject absent, a number or empty is refused; groups as one string is one group", async () => {
    const edge = edgeFor();
    for (const sub of [undefined, 42, ""]) {
      const sent = await sendMarked(edge, "/v1/x", { headers: await bearerOf(idp, { sub }) });
      expect([sub, sent.response.status, sent.record?.detail, sent.seen.length]).toEqual([
        sub,
        401,
        "subject_missing_or_unsafe",
        0,
      ]);
    }
    const one = await sendMarked(edge, "/admin/x", { headers: await bearerOf(idp, { groups: "admins" }) });
    expect(one.record).toMatchObject({ decision: "allow", route: "admin" });
    expect(one.got["x-user-groups"]).toBe("admins");
    // A string is never split on spaces: `eng admins` is not the group admins.
    const spaced = await sendMarked(edge, "/admin/x", { headers: await bearerOf(idp, { groups: "eng admins" }) });
    expect(spaced.record).toMatchObject({ decision: "deny", reason: "forbidden", detail: "group" });
    expect(spaced.seen).toHaveLength(0);
  });

  it("with `scope` and `scp` disagreeing, `scope` alone is read and forwarded", async () => {
    const edge = edgeFor();
    const sent = await sendMarked(edge, "/v1/x", {
      headers: await bearerOf(idp, { scope: "api:read", scp: ["admin:write"] }),
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "any" });
    expect(sent.got["x-user-scope"]).toBe("api:read");
  });
});

describe("tenant binding compares the decoded segment with the claim exactly", () => {
  it.each([
    ["another letter case", "/orgs/ACME/x", 403, "tenant_mismatch"],
    ["a zero-width space inside", "/orgs/ac%E2%80%8Bme/x", 403, "tenant_mismatch"],
    ["the tenant as a wildcard", "/orgs/*/x", 403, "tenant_mismatch"],
    ["a fullwidth letter", "/orgs/%EF%BD%81cme/x", 400, "bad_request"],
    ["a trailing dot", "/orgs/acme./x", 400, "bad_request"],
  ])("acme's caller on %s is refused before the origin", async (_label, path, status, reason) => {
    const edge = edgeFor();
    const sent = await sendMarked(edge, path, { headers: await bearerOf(idp, { tenant_id: "acme" }) });
    expect(sent.response.status).toBe(status);
    expect(sent.body?.reason).toBe(reason);
    expect(sent.record).toMatchObject({ decision: "deny", reason });
    expect(sent.seen).toHaveLength(0);
  });

  it("an escaped unreserved letter is the tenant, forwarded in its canonical spelling", async () => {
    const edge = edgeFor();
    const sent = await sendMarked(edge, "/orgs/%61cme/x", { headers: await bearerOf(idp, { tenant_id: "acme" }) });
    expect(sent.record).toMatchObject({ decision: "allow", route: "org-path", tenant_id: "acme" });
    expect(sent.seen[0]?.path).toBe("/orgs/acme/x");
    expect(sent.got["x-tenant"]).toBe("acme");
  });

  it("a tenant claim of `*`, `..` or with `/` binds no other tenant's path or host", async () => {
    const edge = edgeFor();
    for (const tenant of ["*", "..", "acme/../globex"]) {
      const headers = await bearerOf(idp, { tenant_id: tenant });
      const path = await sendMarked(edge, "/orgs/globex/x", { headers });
      const host = await sendMarked(edge, "https://globex.logs.example.test/x", { headers });
      for (const sent of [path, host]) {
        expect([tenant, sent.response.status, sent.record?.reason, sent.seen.length]).toEqual([
          tenant,
          403,
          "tenant_mismatch",
          0,
        ]);
      }
    }
  });

  it("a host in capitals or with a trailing dot is the tenant's own host", async () => {
    const edge = edgeFor();
    const headers = await bearerOf(idp, { tenant_id: "acme" });
    for (const url of ["https://ACME.logs.example.test/x", "https://acme.logs.example.test./x"]) {
      const sent = await sendMarked(edge, url, { headers });
      expect([url, sent.record?.decision, sent.record?.route, sent.got["x-tenant"]]).toEqual([
        url,
        "allow",
        "org-host",
        "acme",
      ]);
    }
  });
});

describe("rate-limit counters are one per (tenant, user), whatever separators the values hold", () => {
  it("tenant `a:b` user `c` and tenant `a` user `b:c` (and a subject holding JSON) count apart", async () => {
    const t = unique();
    const edge = edgeFor({
      limits: [
        { name: "per-user", key: "user", limit: 1, window_s: 3600 },
        { name: "per-tenant", key: "tenant", limit: 1, window_s: 3600 },
      ],
    });
    const pairs: [string, string][] = [
      [`${t}:b`, "c"],
      [t, "b:c"],
      [`${t}","b`, "c"],
      [`${t}-x`, `c"],["tenant","${t}`],
    ];
    const verdicts: unknown[] = [];
    for (const [tenant, sub] of pairs) {
      const sent = await sendMarked(edge, "/v1/x", { headers: await bearerOf(idp, { tenant_id: tenant, sub }) });
      verdicts.push([tenant, sub, sent.response.status, sent.record?.detail ?? null]);
    }
    expect(verdicts).toEqual([
      [`${t}:b`, "c", 200, null],
      [t, "b:c", 200, null],
      // A tenant with a quote is refused before any counter.
      [`${t}","b`, "c", 401, "tenant_unsafe"],
      [`${t}-x`, `c"],["tenant","${t}`, 200, null],
    ]);
    // Each pair's own counter is spent: its next request is refused by its own limit.
    const again = await sendMarked(edge, "/v1/x", { headers: await bearerOf(idp, { tenant_id: t, sub: "b:c" }) });
    expect(again.response.status).toBe(429);
    expect(again.record).toMatchObject({ decision: "deny", reason: "rate_limited" });
    expect(again.record?.limit).toMatch(/^per-(tenant|user)$/);
    expect(again.seen).toHaveLength(0);
  });
});

describe("the audit record and the identity headers carry a hostile subject whole", () => {
  it("a subject holding quotes, backslashes and braces is one JSON field and one header value", async () => {
    const sub = `a"b\\c},"decision":"allow","x":{"`;
    const edge = edgeFor();
    const sent = await sendMarked(edge, "/v1/x", { headers: await bearerOf(idp, { sub }) });
    expect(sent.record).toMatchObject({ decision: "allow", user_sub: sub });
    expect(sent.got["x-user-sub"]).toBe(sub);
    const lines = edge.logs.filter((line) => line.includes(sent.record?.request_id ?? "?"));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ user_sub: sub, decision: "allow" });
    expect(lines[0]).not.toMatch(/[\r\n]/);
    // The token itself is in no log line.
    const token = (await bearerOf(idp, { sub })).authorization.slice(7);
    expect(edge.logs.some((line) => line.includes(token.split(".")[2] as string))).toBe(false);
  });

  it("claim conditions and mappings read own claims only: a token's `__proto__` member lends it no tenant or group", async () => {
    const edge = edgeFor();
    const token = await idp.sign({ tenant_id: undefined, groups: undefined, ["__proto__"]: { tenant_id: "acme" } });
    // jose serialises the member as written.
    expect(atob((token.split(".")[1] as string).replace(/-/g, "+").replace(/_/g, "/"))).toContain('"__proto__"');
    const bound = await sendMarked(edge, "/orgs/acme/x", { headers: { authorization: `Bearer ${token}` } });
    expect(bound.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", detail: "token_has_no_tenant" });
    expect(bound.seen).toHaveLength(0);
  });
});

describe("Cloudflare Access assertions", () => {
  const AUD_TAG = "a".repeat(64);
  let team: TestIssuer;
  beforeAll(async () => {
    team = await makeIssuer("RS256");
  });
  const accessEdge = () =>
    harness(
      basePolicy({
        issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
        routes: [
          {
            name: "internal",
            methods: ["GET"],
            path: "/internal/**",
            auth: { issuers: ["access"], audiences: [AUD_TAG] },
            upstream: "echo",
          },
        ],
      }),
    );

  it("a service token's common_name is the subject, whole; a hostile or non-string one is refused", async () => {
    const edge = accessEdge();
    const service = { sub: "", email: undefined, common_name: "88bf3b6d86161464f6509f7219099e57.access" };
    const ok = await sendMarked(edge, "/internal/x", {
      headers: { "cf-access-jwt-assertion": await accessAssertion(team, AUD_TAG, service) },
    });
    expect(ok.record).toMatchObject({ decision: "allow", route: "internal", user_sub: service.common_name });
    expect(ok.got["x-user-sub"]).toBe(service.common_name);
    expect(ok.got["x-user-email"]).toBeUndefined();
    for (const common_name of ["svc\r\nx-user-sub: admin", 42, "svc token"]) {
      const sent = await sendMarked(edge, "/internal/x", {
        headers: { "cf-access-jwt-assertion": await accessAssertion(team, AUD_TAG, { ...service, common_name }) },
      });
      expect([common_name, sent.response.status, sent.record?.detail, sent.seen.length]).toEqual([
        common_name,
        401,
        "subject_missing_or_unsafe",
        0,
      ]);
    }
  });

  it("a user's address beyond ASCII is refused rather than forwarded as raw bytes", async () => {
    const edge = accessEdge();
    const sent = await sendMarked(edge, "/internal/x", {
      headers: { "cf-access-jwt-assertion": await accessAssertion(team, AUD_TAG, { email: "zoë@example.com" }) },
    });
    expect(sent.response.status).toBe(401);
    expect(sent.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "email_unsafe" });
    expect(sent.seen).toHaveLength(0);
  });
});
