// Correct policies, as platform teams write them for real APIs, that the compile step
// (scripts/compile-policy.mjs: the validator, then the lint as deployed) must let through, and
// refusals whose message must tell the operator what to change. A false refusal stops every
// deploy: the operator either cannot ship the policy at all or is pushed to loosen it.
import { describe, expect, it } from "vitest";
import { compileStepProblems } from "../support/policy-compile-step";
import { ACCESS_AUD_TAG } from "../support/issuers";
import { problemsOf } from "../support/policy-problems";

/** Auth0 for the product, Entra per customer tenant, Cloudflare Access for staff. */
const issuers = {
  auth0: {
    kind: "oidc",
    issuer: "https://acme.us.auth0.com/",
    audiences: ["https://api.acme.dev"],
    claims: { tenant: "https://acme.dev/tenant", groups: "https://acme.dev/roles" },
  },
  "entra-contoso": {
    kind: "oidc",
    issuer: "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
    audiences: ["6e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"],
    claims: { tenant: "tid", groups: "roles" },
  },
  "entra-fabrikam": {
    kind: "oidc",
    issuer: "https://login.microsoftonline.com/0b4c1d3e-5f6a-4b7c-8d9e-0f1a2b3c4d5e/v2.0",
    audiences: ["6e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"],
    claims: { tenant: "tid" },
  },
  access: { kind: "cloudflare_access", team_domain: "acme.cloudflareaccess.com" },
};

const document = (routes: unknown[], more: Record<string, unknown> = {}): any => ({
  version: 3,
  issuers,
  upstreams: {
    api: { url: "https://origin.acme.dev/api/" },
    erp: { url: "https://erp.acme.dev" },
    portal: { url: "https://portal.acme.dev" },
  },
  routes,
  ...more,
});

const staff = { issuers: ["access"], audiences: [ACCESS_AUD_TAG] };
const spa = { allow_origins: ["https://app.acme.dev"], allow_credentials: true };

describe("the $batch lint leaves out a route that never takes a path under the batch's root", () => {
  // An OData service (Dynamics, SAP Gateway, ASP.NET Core OData) behind Entra, and the staff
  // portal behind Access as the catch-all. Every request under /odata/ is taken by routes[1]
  // for every method the portal takes (routes match in order), so no sub-request of the batch
  // would ever have run under the portal's rules if sent on its own: the batch demands exactly
  // what /odata/** demands. Counted, the portal would leave no batch route deployable (it would
  // have to accept only issuers both the Entra and the Access routes accept), as the edge's own
  // reading of a batch (readsODataBatch in route-readings.ts) leaves it out.
  const odata = (catchAll: unknown) =>
    document([
      {
        name: "odata-batch",
        methods: ["POST"],
        path: "/odata/$batch",
        auth: { issuers: ["entra-contoso"], scopes: { all_of: ["odata.read"] } },
        upstream: "erp",
      },
      {
        name: "odata",
        methods: ["GET", "POST", "PUT", "PATCH", "DELETE"],
        path: "/odata/**",
        auth: { issuers: ["entra-contoso"], scopes: { all_of: ["odata.read"] } },
        upstream: "erp",
      },
      catchAll,
    ]);

  it("a catch-all for another issuer after /odata/** that takes its every method there deploys", () => {
    const portal = { name: "portal", methods: ["GET", "POST"], path: "/**", auth: staff, upstream: "portal" };
    expect(compileStepProblems(odata(portal))).toEqual([]);
  });

  it("the same catch-all taking a method /odata/** does not take is still reported (it does govern there)", () => {
    // The control: OPTIONS under /odata/ reaches the portal route, so a batch sub-request with
    // it would run under weaker rules than sent on its own.
    const portal = { name: "portal", methods: ["GET", "OPTIONS"], path: "/**", auth: staff, upstream: "portal" };
    expect(compileStepProblems(odata(portal))).toEqual([
      "routes[0] (odata-batch): its $batch runs requests under routes[2] (portal), which demands more of a caller",
    ]);
  });
});

describe("a CORS origin of a native app's web view", () => {
  // Capacitor serves an iOS app's pages from capacitor://localhost (WKWebView reserves http and
  // https for remote pages), and its web view sends that as `Origin` on every cross-origin
  // fetch; Ionic's docs tell API owners to allow it (and http://localhost for Android). The
  // edge compares origins exactly (src/pipeline/cors.ts), so this origin works as written;
  // refused, the operator's only way to deploy would be "*", giving up both the allow-list and
  // credentials.
  it("written otherwise than the app sends it, it is refused naming the spelling it sends", () => {
    const cors = { ...spa, allow_origins: ["capacitor://localhost/"] };
    const route = {
      name: "api",
      methods: ["GET"],
      path: "/v1/**",
      auth: { issuers: ["auth0"] },
      upstream: "api",
      cors,
    };
    expect(problemsOf(document([route]))).toEqual([
      'routes[0].cors.allow_origins: "capacitor://localhost/" never matches: browsers send it as "capacitor://localhost"',
    ]);
  });

  it("capacitor://localhost, beside the SPA and the Android app, deploys with credentials", () => {
    const cors = { ...spa, allow_origins: ["https://app.acme.dev", "capacitor://localhost", "http://localhost"] };
    const route = { name: "api", methods: ["GET", "POST"], path: "/v1/**", auth: { issuers: ["auth0"] } };
    expect(compileStepProblems(document([{ ...route, upstream: "api", cors }]))).toEqual([]);
  });
});

describe("OPTIONS in cors.allow_methods", () => {
  // Spring's `allowedMethods("GET", "POST", "PUT", "DELETE", "OPTIONS")` and most nginx CORS
  // snippets list OPTIONS, so operators porting them do too. Told it "is not one of the route's
  // methods", they would add it to methods, which is refused as "OPTIONS is answered by the
  // edge when cors is set": the message says the one thing to do, drop it from allow_methods.
  const route = (methods: string[]) =>
    document([
      {
        name: "api",
        methods,
        path: "/v1/**",
        auth: { issuers: ["auth0"] },
        upstream: "api",
        cors: { ...spa, allow_methods: ["GET", "POST", "OPTIONS"] },
      },
    ]);

  it("the refusal says OPTIONS is the edge's to answer, not that the route lacks it", () => {
    const problems = problemsOf(route(["GET", "POST"]));
    expect(problems).toEqual([
      'routes[0].cors.allow_methods: "OPTIONS" is not needed: the edge answers preflights itself',
    ]);
  });
});

describe("a route for one port after a host-wide route for another path", () => {
  // An admin API on Cloudflare's port 8443 of the API host, behind Access, after the host's
  // public health check. GET api.acme.dev:8443/admin/users matches routes[1]: routes[0] takes
  // only /healthz. A port route an earlier route really shadows, path and methods included, is
  // the lint's shadow check's to report (route-overlap.ts), as any shadowed route is.
  it("the port route is reachable, and the policy deploys", () => {
    const doc = document([
      { name: "healthz", methods: ["GET"], host: "api.acme.dev", path: "/healthz", auth: "public", upstream: "api" },
      {
        name: "admin-8443",
        methods: ["GET", "POST"],
        host: "api.acme.dev:8443",
        path: "/admin/**",
        auth: staff,
        upstream: "portal",
      },
      {
        name: "api",
        methods: ["GET"],
        host: "api.acme.dev",
        path: "/v1/**",
        auth: { issuers: ["auth0"] },
        upstream: "api",
      },
    ]);
    expect(compileStepProblems(doc)).toEqual([]);
  });
});

describe("refusals of a host or a path literal say what to write", () => {
  const route = (more: Record<string, unknown>) =>
    document([{ name: "r", methods: ["GET"], path: "/v1/**", auth: { issuers: ["auth0"] }, upstream: "api", ...more }]);

  it("an IDN host is refused naming its punycode spelling, which compiles", () => {
    // bücher.example is a host name; requests carry it as xn--bcher-kva.example (the URL parser's
    // and the browser's spelling), which compiles. The CORS check already says so for an origin
    // ("browsers send it as https://xn--bcher-kva.example"), and so does the host check.
    const problems = problemsOf(route({ host: "bücher.example" }));
    expect(problems).toEqual(['routes[0].host: not a host name as requests carry it: write "xn--bcher-kva.example"']);
    expect(problemsOf(route({ host: "xn--bcher-kva.example" }))).toEqual([]);
  });

  it("a literal typed in decomposed form (macOS file names, NFD) names the NFKC spelling to write", () => {
    // "cafe\u0301" looks exactly like "café" in every editor and diff: the refusal names the
    // composed form to write, which compiles and matches café.
    const problems = problemsOf(route({ path: "/v1/cafe\u0301/**" }));
    expect(problems).toEqual([
      'routes[0].path: segment "cafe\u0301" is not in Unicode NFKC form: write it as "caf\u00e9"',
    ]);
    expect(problemsOf(route({ path: "/v1/caf\u00e9/**" }))).toEqual([]);
  });
});

describe("a multi-tenant SaaS policy as a platform team writes it", () => {
  // Every feature below in one policy compiles and lints clean as deployed, so a
  // change to the validator or the lint that refuses one of them shows here first.
  it("compiles and lints clean", () => {
    const tenantApi = {
      auth: {
        issuers: ["auth0", "entra-contoso", "entra-fabrikam"],
        scopes: { any_of: ["api:read", "api.read"] },
      },
      upstream: "api",
      cors: {
        allow_origins: ["https://app.acme.dev", "https://staging.app.acme.dev", "http://localhost:5173"],
        allow_credentials: true,
        allow_headers: ["authorization", "content-type", "idempotency-key", "traceparent"],
        expose_headers: ["x-request-id", "retry-after", "ratelimit", "ratelimit-policy", "location", "etag"],
        max_age_s: 7200,
      },
    };
    const doc = document(
      [
        {
          name: "healthz",
          methods: ["GET", "HEAD"],
          path: "/healthz",
          auth: "public",
          upstream: "api",
          inherit_default_limits: false,
        },
        { name: "well-known", methods: ["GET"], path: "/.well-known/**", auth: "public", upstream: "docs" },
        {
          name: "openapi",
          methods: ["GET"],
          path: "/openapi.json",
          auth: "public",
          upstream: "docs",
          cors: { allow_origins: ["*"] },
        },
        {
          name: "stripe-webhook",
          methods: ["POST"],
          path: "/webhooks/stripe",
          auth: "public",
          upstream: "hooks",
          limits: [{ name: "ip-per-minute", key: "ip", limit: 600, window_s: 60 }],
        },
        {
          name: "admin",
          methods: ["GET", "POST", "PUT", "PATCH", "DELETE"],
          path: "/admin/**",
          auth: staff,
          upstream: "portal",
        },
        {
          name: "reports",
          methods: ["GET"],
          path: "/v1/tenants/:tenant/reports/**",
          auth: { issuers: ["auth0"], scopes: { all_of: ["reports:read"] } },
          upstream: "api",
          limits: [{ name: "reports-per-hour", key: "tenant", limit: 10, window_s: 3600 }],
        },
        { name: "tenant-read", methods: ["GET", "HEAD"], path: "/v1/tenants/:tenant/**", ...tenantApi },
        {
          name: "tenant-write",
          methods: ["POST", "PUT", "PATCH", "DELETE"],
          path: "/v1/tenants/:tenant/**",
          ...tenantApi,
          auth: { ...tenantApi.auth, scopes: { any_of: ["api:write", "api.write"] } },
        },
        {
          name: "tenant-host",
          methods: ["GET", "POST"],
          host: ":tenant.api.acme.dev",
          path: "/**",
          auth: { issuers: ["auth0"] },
          upstream: "api",
        },
        {
          name: "graphql",
          methods: ["GET", "POST"],
          path: "/graphql",
          auth: { issuers: ["auth0"] },
          upstream: "api",
          cors: { ...spa, allow_headers: ["authorization", "content-type", "apollo-require-preflight"] },
        },
        { name: "me", methods: ["GET"], path: "/v1/users/@me", auth: { issuers: ["auth0"] }, upstream: "api" },
        {
          name: "purge",
          methods: ["POST"],
          path: "/v1/things/*/data:purge",
          auth: { issuers: ["auth0"], groups: { any_of: ["admins"] } },
          upstream: "api",
        },
        { name: "home", methods: ["GET"], path: "/~acme/files/*/**", auth: { issuers: ["auth0"] }, upstream: "api" },
        { name: "cpp", methods: ["GET"], path: "/docs/c++/men\u00fc", auth: "public", upstream: "docs" },
        { name: "idn", methods: ["GET"], host: "xn--bcher-kva.example", path: "/**", auth: "public", upstream: "docs" },
        {
          name: "v1",
          methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
          path: "/v1/**",
          auth: { issuers: ["auth0"] },
          upstream: "api",
        },
      ],
      {
        upstreams: {
          api: { url: "https://origin.acme.dev/api/" },
          portal: { url: "https://portal.acme.dev" },
          docs: { service: "DOCS_WORKER" },
          hooks: { url: "https://hooks.acme.dev:8443/ingest", timeout_ms: 10000 },
        },
        limits: {
          defaults: [
            { name: "tenant-per-minute", key: "tenant", limit: 6000, window_s: 60 },
            { name: "user-per-minute", key: "user", limit: 600, window_s: 60 },
            { name: "ip-per-minute", key: "ip", limit: 120, window_s: 60 },
            { name: "route-per-second", key: "route", limit: 2000, window_s: 1, on_error: "allow" },
          ],
          tenant_overrides: {
            "enterprise-acme": { "tenant-per-minute": { limit: 60000 }, "user-per-minute": { limit: 6000 } },
            "72f988bf-86f1-41af-91ab-2d7cd011db47": { "tenant-per-minute": { limit: 30000 } },
            org_2ZkqA9: { "reports-per-hour": { limit: 100 } },
          },
        },
      },
    );
    expect(compileStepProblems(doc)).toEqual([]);
  });
});
