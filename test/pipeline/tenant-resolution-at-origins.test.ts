// Tenant binding set beside how multi-tenant origin frameworks pick their tenant. The edge binds
// a request to the token's tenant through a `:tenant` path segment or host label and writes
// `x-tenant`; a framework behind it resolves the tenant with strategies of its own, in a fixed
// order, some of which read places the client controls. Where one of those comes before the
// place the edge bound (or is the only place the origin reads), a caller bound to acme runs as
// globex at the origin. Each test asserts what reached the real echo origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { bearerOf, tenantBound, withIdp } from "../support/guarded-sites";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** `/api/**` on `:tenant.tenants.example.test`, bound to the token's tenant by the host's first label. */
const hostBound = (): PolicyDocument =>
  withIdp(issuer, [
    {
      name: "tenant-host",
      methods: ["GET", "POST"],
      path: "/api/**",
      host: ":tenant.tenants.example.test",
      auth: { issuers: ["idp"] },
      upstream: "echo",
    },
  ]);

/** The query's parameter names as ASP.NET Core's QueryCollection keys them: decoded, any case. */
const aspNetQueryNames = (query: string) => [...new URLSearchParams(query).keys()].map((name) => name.toLowerCase());

describe("a `__tenant` query parameter never reaches an ABP origin on a tenant-bound route", () => {
  // ABP Framework resolves the tenant with AbpTenantResolveOptions.TenantResolvers in list order,
  // the first that answers winning: CurrentUser (the origin's own sign-in, which has no token
  // behind the edge), then QueryString, Form, Route, Header, Cookie
  // (AbpAspNetCoreMultiTenancyModule), each reading AbpAspNetCoreMultiTenancyOptions.TenantKey,
  // `__tenant` by default. An ABP API behind a route `/v1/tenants/:tenant/**` reads the tenant the
  // edge bound from its route template `/v1/tenants/{__tenant}/…`, but QueryString comes before
  // Route: `/v1/tenants/acme/orders?__tenant=globex` runs as globex at ABP, for a caller the edge
  // let through because the path says acme. ASP.NET Core's query keys are decoded and compared
  // without regard to case (`__TENANT`, `%5F%5Ftenant`). As `_method` (a framework reads it over
  // what the edge authorised), `__tenant` is taken out of the query, the rest of it kept.
  it.each([
    ["as ABP spells it", "__tenant=globex&view=full"],
    ["upper case, which ASP.NET Core's query collection reads alike", "__TENANT=globex&view=full"],
    ["percent-encoded, which ASP.NET Core decodes before keying", "%5F%5Ftenant=globex&view=full"],
  ])("%s (`?%s`) does not reach the origin for acme's caller", async (_label, query) => {
    const edge = harness(tenantBound(issuer, { name: "tenant-api", path: "/v1/tenants/:tenant/**" }));
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Control: the route itself refuses acme's caller globex's path.
    const direct = await sendMarked(edge, "/v1/tenants/globex/orders", { headers: acme });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-api" });
    expect(direct.seen).toHaveLength(0);

    const { record, seen } = await sendMarked(edge, `/v1/tenants/acme/orders?${query}`, { headers: acme });
    expect(record).toMatchObject({ decision: "allow", route: "tenant-api" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers["x-tenant"]).toBe("acme");
    // ABP's QueryString contributor would read `__tenant` here before its Route contributor.
    expect(aspNetQueryNames(seen[0]?.query ?? "")).toEqual(["view"]);
  });
});

describe("the Grafana stack's `X-Scope-OrgID` and Thanos' `THANOS-TENANT` stop at the edge", () => {
  // Loki, Mimir, Cortex, Tempo and Pyroscope (multi-tenancy on: Loki's `auth_enabled`, Mimir's
  // `multitenancy_enabled`, on by default) take the tenant from `X-Scope-OrgID` and nothing else,
  // and their documentation expects an authenticating reverse proxy in front to set it; with
  // tenant federation on, `acme|globex` reads both. Thanos Receive takes it from `THANOS-TENANT`.
  // Their clients (Grafana's data sources, Promtail, Alloy, Prometheus remote write) send the
  // header on every request, so behind a host route `:tenant.logs.example.com` acme's caller only
  // has to keep sending `X-Scope-OrgID: globex` to read and write globex's logs and metrics. The
  // edge strips them in every spelling, as it does `X-Tenant*` and `X-Org*`; naming
  // `x-scope-orgid` as the tenant identity header makes the edge write it (tested below).
  it.each([
    ["x-scope-orgid", "globex"],
    ["x_scope_orgid", "globex"],
    ["x-scope-orgid", "acme|globex"],
    ["thanos-tenant", "globex"],
  ])("`%s: %s` from acme's caller is not forwarded", async (name, value) => {
    const edge = harness(hostBound());
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Control: globex's own host refuses acme's caller.
    const direct = await sendMarked(edge, "https://globex.tenants.example.test/api/v1/query", { headers: acme });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-host" });
    expect(direct.seen).toHaveLength(0);

    const { record, seen } = await sendMarked(edge, "https://acme.tenants.example.test/api/v1/query", {
      headers: { ...acme, [name]: value },
    });
    expect(record).toMatchObject({ decision: "allow", route: "tenant-host" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers["x-tenant"]).toBe("acme");
    // The echo origin keys header names in lower case, spelt otherwise as sent.
    expect(Object.keys(seen[0]?.headers ?? {}).filter((h) => /scope.orgid|thanos.tenant/.test(h))).toEqual([]);
  });
});

describe("`X-Scope-OrgID` named as the tenant identity header", () => {
  // For Loki and Mimir: with `identity_headers.tenant` set to `x-scope-orgid`, the client's is
  // stripped in every spelling (a federated `acme|globex` too) and the edge writes the bound
  // tenant there.
  it("carries the bound tenant, whatever acme's caller sent under that name", async () => {
    const policy = hostBound();
    const edge = harness({
      ...policy,
      settings: { ...policy.settings, identity_headers: { tenant: "x-scope-orgid" } },
    });
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });

    const { record, seen } = await sendMarked(edge, "https://acme.tenants.example.test/api/v1/query", {
      headers: { ...acme, "X-Scope-OrgID": "acme|globex", X_Scope_OrgID: "globex" },
    });
    expect(record).toMatchObject({ decision: "allow", route: "tenant-host" });
    expect(seen).toHaveLength(1);
    const orgHeaders = Object.entries(seen[0]?.headers ?? {}).filter(([h]) => /scope.orgid|tenant/.test(h));
    expect(orgHeaders).toEqual([["x-scope-orgid", "acme"]]);
  });
});

describe("the .NET frameworks' default tenant headers `__tenant` and `__tenant__` stop at the edge", () => {
  // Finbuckle.MultiTenant's WithHeaderStrategy() reads `__tenant__` by default, and its strategies
  // are "tried in the order configured until a non-null identifier is returned" (its docs): an app
  // configured `.WithHeaderStrategy().WithHostStrategy()` (a header for its SPA and tools, the host
  // for browsers) takes `__tenant__: globex` over the host `acme.…` the edge bound. ABP's Header
  // contributor reads `__tenant` (its Angular UI sends that header on every call), after Route:
  // behind a host-bound route it is what ABP reads unless its DomainTenantResolver is configured.
  // Neither can be the identity header the edge writes (it must start with `x-`). Like
  // `X-Tenant*`, a header common frameworks read as the tenant does not reach the origin from the
  // client; on a route that binds a tenant there is nothing it can add.
  it.each([
    ["__tenant__", "Finbuckle's header strategy"],
    ["__tenant", "ABP's Header contributor"],
  ])("`%s` (%s) from acme's caller is not forwarded", async (name) => {
    const edge = harness(hostBound());
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });

    const { record, seen } = await sendMarked(edge, "https://acme.tenants.example.test/api/orders", {
      headers: { ...acme, [name]: "globex" },
    });
    expect(record).toMatchObject({ decision: "allow", route: "tenant-host" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers["x-tenant"]).toBe("acme");
    expect(Object.keys(seen[0]?.headers ?? {}).filter((h) => h.includes("tenant") && h !== "x-tenant")).toEqual([]);
  });
});

describe("the tenant headers frameworks read by default in the x-tenant family", () => {
  // Spring/Hibernate multi-tenancy samples read `X-TenantID` (a CurrentTenantIdentifierResolver
  // fed by a filter), ros-apartment's Header elevator `X-Tenant-Id` (as HTTP_X_TENANT_ID, so
  // `X_Tenant_Id` too), stancl/tenancy's InitializeTenancyByRequestData `X-Tenant` before its
  // `tenant` query parameter. All are under the `x-tenant` prefix the edge strips in every
  // spelling, so on a tenant-bound route only the edge's `x-tenant` reaches the origin; since the
  // edge writes it whenever the token carries a tenant, stancl never falls back to the query.
  it("`X-TenantID`, `X_Tenant_Id` and `X-Tenant` from acme's caller give way to the edge's `x-tenant: acme`", async () => {
    const edge = harness(tenantBound(issuer, { name: "tenant-api", path: "/v1/tenants/:tenant/**" }));
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });

    const { record, seen } = await sendMarked(edge, "/v1/tenants/acme/orders", {
      headers: { ...acme, "X-TenantID": "globex", X_Tenant_Id: "globex", "X-Tenant": "globex" },
    });
    expect(record).toMatchObject({ decision: "allow", route: "tenant-api" });
    expect(seen).toHaveLength(1);
    const tenantHeaders = Object.entries(seen[0]?.headers ?? {}).filter(([h]) => /tenant/i.test(h));
    expect(tenantHeaders).toEqual([["x-tenant", "acme"]]);
  });
});
