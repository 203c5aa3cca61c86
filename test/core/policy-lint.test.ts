import { describe, expect, it } from "vitest";
import { localPolicy } from "../../dev/local-policy";
import policy from "../../policy/policy.json";
import { compilePolicy } from "../../src/core/policy";
import { policyProblems } from "../../src/core/policy-lint";
import type { PolicyDocument, RouteConfig } from "../../src/core/policy-types";

function document(route: Partial<RouteConfig>, more: Partial<PolicyDocument> = {}): PolicyDocument {
  return {
    version: 1,
    upstreams: { api: { url: "https://origin.example.com" } },
    issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
    routes: [{ name: "r", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "api", ...route }],
    ...more,
  } as PolicyDocument;
}

const problemsOf = (doc: PolicyDocument, deployed = false) => policyProblems(compilePolicy(doc), { deployed });

describe("policy problems the validator lets through", () => {
  it("the deployable policy has none, as deployed; the local stack's none, locally", () => {
    expect(problemsOf(policy as unknown as PolicyDocument, true)).toEqual([]);
    expect(problemsOf(localPolicy())).toEqual([]);
  });

  it("a shadowed route", () => {
    const doc = document({ auth: "public" });
    doc.routes.push({ ...doc.routes[0]!, name: "admin", path: "/v1/admin/**", auth: { issuers: ["idp"] } });
    expect(problemsOf(doc)).toEqual([
      "routes[1] (admin): GET never reaches it: routes[0] (r) takes every such request first",
    ]);
  });

  it.each([
    ["a route for one port of a host after a route for every port of it", "api.example.com", "API.example.com.:8443"],
    ["after a route capturing that host on every port", ":tenant.example.com", "acme.example.com:8443"],
    [
      "a capture route for one port after one of the same suffix on every port",
      ":tenant.example.com",
      ":tenant.example.com:8443",
    ],
  ])(
    "%s, for the same paths and methods, is shadowed: a host without a port matches every port",
    (_, host, portHost) => {
      const doc = document({ host });
      doc.routes.push({ ...doc.routes[0]!, name: "alt", host: portHost });
      expect(problemsOf(doc)).toEqual([
        "routes[1] (alt): GET never reaches it: routes[0] (r) takes every such request first",
      ]);
    },
  );

  it("a route for one port after a route for every port of its host but another path is reachable", () => {
    const doc = document({ host: "api.example.com", path: "/healthz", auth: "public" });
    doc.routes.push({ ...doc.routes[0]!, name: "admin", host: "api.example.com:8443", path: "/admin/**" });
    expect(problemsOf(doc)).toEqual([]);
  });

  it("credentials for a page served over plain http, but not for a local one", () => {
    const cors = (origin: string) => ({ cors: { allow_origins: [origin], allow_credentials: true } });
    expect(problemsOf(document(cors("http://app.example.com")))).toEqual([
      'routes[0].cors.allow_origins: "http://app.example.com" gets credentialed answers over plain http',
    ]);
    expect(problemsOf(document(cors("http://localhost:3000")))).toEqual([]);
    expect(problemsOf(document(cors("http://127.0.0.1:3000")))).toEqual([]);
    // A name whose first label is 127 is no loopback address.
    expect(problemsOf(document(cors("http://127.app.example.com")))).toEqual([
      'routes[0].cors.allow_origins: "http://127.app.example.com" gets credentialed answers over plain http',
    ]);
    // A page at a bare address is no safer on plain http than one with a name.
    expect(problemsOf(document(cors("http://192.168.1.20")))).toEqual([
      'routes[0].cors.allow_origins: "http://192.168.1.20" gets credentialed answers over plain http',
    ]);
    expect(problemsOf(document(cors("https://app.example.com")))).toEqual([]);
    expect(problemsOf(document({ cors: { allow_origins: ["http://app.example.com"] } }))).toEqual([]);
  });

  it("a route limit that replaces a default of another key by its name", () => {
    const defaults = { limits: { defaults: [{ name: "per-caller", key: "user" as const, limit: 60, window_s: 60 }] } };
    const own = (key: "route" | "user") =>
      document({ limits: [{ name: "per-caller", key, limit: 10, window_s: 60 }] }, defaults);
    expect(problemsOf(own("route"))).toEqual([
      'routes[0].limits: "per-caller", a route limit, replaces the default user limit of that name on this route',
    ]);
    // The same key resized for this route is what replacing by name is for.
    expect(problemsOf(own("user"))).toEqual([]);
  });

  // In a path, `*` says the same; a `:tenant` host is the one pattern that takes the tenants'
  // hosts (a public storefront on each shop's host), so it stands on a public route.
  it(":tenant in a public route's path; a :tenant host on one is fine", () => {
    expect(problemsOf(document({ auth: "public", path: "/t/:tenant/**" }))).toEqual([
      "routes[0]: :tenant on a public route binds nothing: write * for the segment",
    ]);
    expect(problemsOf(document({ auth: "public", path: "/t/*/**", host: ":tenant.example.com" }))).toEqual([]);
    expect(problemsOf(document({ path: "/t/:tenant/**" }))).toEqual([]);
  });

  it("as deployed: upstreams and key sets on loopback or at a bare address", () => {
    const local = document(
      {},
      {
        upstreams: { api: { url: "http://127.0.0.1:8080" } },
        issuers: {
          idp: {
            kind: "oidc",
            issuer: "https://idp.example.com",
            jwks_uri: "http://localhost:9000/jwks",
            audiences: ["api"],
          },
        },
      },
    );
    expect(problemsOf(local, true)).toEqual([
      "routes[0].upstream: http://127.0.0.1:8080 is local or an address",
      "issuers.idp: http://localhost:9000/jwks is local or an address",
    ]);
    expect(problemsOf(local)).toEqual([]);
    expect(problemsOf(document({}, { upstreams: { api: { url: "https://127.cdn.example.com" } } }), true)).toEqual([]);
    const dotted = document({}, { upstreams: { api: { url: "https://localhost.:8443" } } });
    expect(problemsOf(dotted, true)).toEqual(["routes[0].upstream: https://localhost.:8443 is local or an address"]);
  });
});

describe("a route written for an OData $batch", () => {
  // Its sub-requests run under its rules anywhere under its root: it must demand no less of a
  // caller than each route there (the edge refuses a `$batch` no route is written for).
  const odata = (batch: RouteConfig["auth"], more: RouteConfig[] = []) =>
    ({
      version: 1,
      upstreams: { api: { url: "https://origin.example.com" } },
      issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
      routes: [
        { name: "batch", methods: ["POST"], path: "/odata/$batch", auth: batch, upstream: "api" },
        ...more,
        {
          name: "odata-admin",
          methods: ["DELETE"],
          path: "/odata/**",
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "api",
        },
        { name: "odata", methods: ["GET", "POST"], path: "/odata/**", auth: { issuers: ["idp"] }, upstream: "api" },
        { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "api" },
      ],
    }) as PolicyDocument;

  it("admitting callers a route under its root refuses is a problem naming both", () => {
    expect(problemsOf(odata({ issuers: ["idp"] }))).toEqual([
      "routes[0] (batch): its $batch runs requests under routes[1] (odata-admin), which demands more of a caller",
    ]);
    expect(problemsOf(odata("public"))).toHaveLength(2);
  });

  it("as strict as the strictest route under its root is none; routes outside its root do not count", () => {
    expect(problemsOf(odata({ issuers: ["idp"], groups: { any_of: ["admins"] } }))).toEqual([]);
  });

  it("scopes, claims and a tenant binding below its root count too", () => {
    const scoped: RouteConfig = {
      name: "orders-write",
      methods: ["PATCH"],
      path: "/odata/Orders/**",
      auth: { issuers: ["idp"], scopes: { all_of: ["orders:write"] }, claims: [{ claim: "tier", equals: "gold" }] },
      upstream: "api",
    };
    const admins = { issuers: ["idp"], groups: { any_of: ["admins"] } };
    expect(problemsOf(odata(admins, [scoped]))).toEqual([
      "routes[0] (batch): its $batch runs requests under routes[1] (orders-write), which demands more of a caller",
    ]);
    const strict = { ...admins, scopes: { all_of: ["orders:write"] }, claims: [{ claim: "tier", equals: "gold" }] };
    expect(problemsOf(odata(strict, [scoped]))).toEqual([]);
    const tenant: RouteConfig = {
      name: "tenant",
      methods: ["GET"],
      path: "/odata/t/:tenant/**",
      auth: { issuers: ["idp"] },
      upstream: "api",
    };
    expect(problemsOf(odata(strict, [tenant]))).toEqual([
      "routes[0] (batch): its $batch runs requests under routes[1] (tenant), which demands more of a caller",
    ]);
  });
});
