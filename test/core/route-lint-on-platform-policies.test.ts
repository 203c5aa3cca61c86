// The route lint (route-overlap.ts, policy-lint.ts) against realistic policies: routes no
// request can reach, which the build names, and correct policies, which it deploys. Policies
// are compiled as scripts/compile-policy.mjs compiles them (the validator, then the lint as
// deployed); what a route does with requests is shown through the real pipeline, against the
// echo origin.
import { describe, expect, it } from "vitest";
import { harness } from "../support/harness";
import { deployable, onEcho } from "../support/lint-policies";
import { compileStepProblems } from "../support/policy-compile-step";
import { sendMarked } from "../support/sent";

describe("springdoc's public paths beside their directories", () => {
  // springdoc-openapi serves Swagger UI at /swagger-ui.html (and /swagger-ui/**) and the spec at
  // /v3/api-docs (and /v3/api-docs.yaml); Spring Security configurations permit exactly
  // `"/v3/api-docs/**", "/v3/api-docs.yaml", "/swagger-ui/**", "/swagger-ui.html"`, and a
  // platform team moving that list to the edge writes one public route each. The route stage
  // reads /swagger-ui.html as /swagger-ui (Rails' format, Spring's old suffix match), which
  // `/swagger-ui/**` takes: public too, it asks no more of a caller, so nothing is refused.
  const springdoc = [
    { name: "api-docs", methods: ["GET"], path: "/v3/api-docs/**", auth: "public", upstream: "api" },
    { name: "api-docs-yaml", methods: ["GET"], path: "/v3/api-docs.yaml", auth: "public", upstream: "api" },
    { name: "swagger-ui", methods: ["GET"], path: "/swagger-ui/**", auth: "public", upstream: "api" },
    { name: "swagger-ui-html", methods: ["GET"], path: "/swagger-ui.html", auth: "public", upstream: "api" },
    { name: "api", methods: ["GET", "POST"], path: "/**", auth: { issuers: ["idp"] }, upstream: "api" },
  ];

  it("/v3/api-docs.yaml and /swagger-ui.html reach the origin under their routes, and the build is clean", async () => {
    const edge = harness(onEcho(springdoc));
    for (const [path, route] of [
      ["/v3/api-docs.yaml", "api-docs-yaml"],
      ["/swagger-ui.html", "swagger-ui-html"],
    ]) {
      const { record, seen } = await sendMarked(edge, path as string);
      expect(record, path).toMatchObject({ decision: "allow", route });
      expect(seen.map((s) => s.path)).toEqual([path]);
    }
    expect(compileStepProblems(deployable(springdoc))).toEqual([]);
  });
});

describe("a route every request of which is read as a stricter route's is named by the build", () => {
  // `/orders.json` public beside a guarded `/orders/**`: Rails runs it as `/orders`, so the
  // route stage refuses every request of it as ambiguous_format; `/index.php` public beside a
  // guarded `/`: Laravel runs it as `/`, refused as ambiguous_path_info. Both routes are dead,
  // and the build says so, as it does for a route an earlier one takes.
  const orders = [
    { name: "orders", methods: ["GET"], path: "/orders/**", auth: { issuers: ["idp"] }, upstream: "api" },
    { name: "orders-feed", methods: ["GET"], path: "/orders.json", auth: "public", upstream: "api" },
    { name: "front", methods: ["GET"], path: "/index.php", auth: "public", upstream: "api" },
    { name: "home", methods: ["GET"], path: "/", auth: { issuers: ["idp"] }, upstream: "api" },
    { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "api" },
  ];

  it("names /orders.json (ambiguous_format) and /index.php (ambiguous_path_info), which no request reaches", async () => {
    const edge = harness(onEcho(orders));
    for (const [path, detail] of [
      ["/orders.json", "ambiguous_format"],
      ["/index.php", "ambiguous_path_info"],
    ]) {
      const { response, record, seen } = await sendMarked(edge, path as string);
      expect({ status: response.status, reason: record?.reason, detail: record?.detail }, path).toEqual({
        status: 400,
        reason: "bad_request",
        detail,
      });
      expect(seen, path).toEqual([]);
    }
    expect(compileStepProblems(deployable(orders))).toEqual([
      "routes[1] (orders-feed): GET never reaches it: every such request is refused as ambiguous_format, read as routes[0] (orders)'s path, which asks more of a caller: give this route its rules",
      "routes[2] (front): GET never reaches it: every such request is refused as ambiguous_path_info, read as routes[3] (home)'s path, which asks more of a caller: give this route its rules",
    ]);
  });

  it("names nothing where the route read asks no more, or another route takes the path first", () => {
    const alike = orders.map((route) => ({ ...route, auth: "public" }));
    expect(compileStepProblems(deployable(alike))).toEqual([]);
  });
});

describe("a public route on `:tenant` hosts, beside their tenant-bound admin", () => {
  // A shop platform's tenant subdomains (Shopify's `<shop>.myshopify.com`, a Zendesk help
  // centre's `<tenant>.zendesk.com/hc`): the storefront is public, the shop's admin bound to its
  // tenant. `:tenant.shops.example.com` is the only host pattern that takes the shops' hosts (a
  // leading dot or `*.` is refused, README "Routes"), and the edge does exactly what the
  // operator means with it: the storefront route serves shop hosts and no other. Refused, the
  // one way to deploy would be a route with no host at all, serving every host the Worker is
  // routed for: `api.example.com/anything` that no API route takes would be forwarded to the
  // storefront instead of being the edge's 404. (In a path, `*` says what a public `:tenant`
  // segment would, and the build asks for it.)
  const shops = [
    {
      name: "shop-admin",
      methods: ["GET", "POST", "PUT", "DELETE"],
      host: ":tenant.shops.example.com",
      path: "/admin/**",
      auth: { issuers: ["idp"] },
      upstream: "api",
    },
    {
      name: "storefront",
      methods: ["GET", "POST"],
      host: ":tenant.shops.example.com",
      path: "/**",
      auth: "public",
      upstream: "api",
    },
    { name: "api", methods: ["GET", "POST"], host: "api.example.com", path: "/v1/**", auth: { issuers: ["idp"] } },
  ].map((route) => ({ upstream: "api", ...route }));

  it("a public storefront on the shops' hosts beside their tenant-bound admin deploys", async () => {
    // The edge serves the storefront on a shop's host, and on no other host.
    const edge = harness(onEcho(shops));
    const shop = await sendMarked(edge, "https://acme.shops.example.com/products/boots");
    expect({ status: shop.response.status, route: shop.record?.route }).toEqual({ status: 200, route: "storefront" });
    expect(shop.seen.map((s) => s.path)).toEqual(["/products/boots"]);
    const elsewhere = await sendMarked(edge, "https://api.example.com/products/boots");
    expect({ status: elsewhere.response.status, reason: elsewhere.record?.reason }).toEqual({
      status: 404,
      reason: "route_not_found",
    });
    expect(elsewhere.seen).toEqual([]);
    expect(compileStepProblems(deployable(shops))).toEqual([]);
  });
});

describe("a platform team's policy for several hosts deploys", () => {
  // Each shape below is one the lint must tell apart from a shadowed route: a public health
  // check and a public catalogue read before the guarded prefix, per-method routes for one
  // path, v1 beside v2, a marketing host before the tenant hosts that would capture it, an
  // OPTIONS-only route, and two hosts with the same paths. Refused, the team could not deploy.
  it("compiles and lints clean", () => {
    const signedIn = { issuers: ["idp"] };
    const doc = deployable([
      { name: "healthz", methods: ["GET"], path: "/v1/healthz", auth: "public" },
      { name: "catalog-read", methods: ["GET"], path: "/v1/catalog/**", auth: "public" },
      { name: "catalog-write", methods: ["POST", "PUT", "DELETE"], path: "/v1/catalog/**", auth: signedIn },
      { name: "v1", methods: ["GET", "POST"], path: "/v1/**", auth: signedIn },
      { name: "v2", methods: ["GET", "POST"], path: "/v2/**", auth: { ...signedIn, scopes: { all_of: ["v2"] } } },
      { name: "www", methods: ["GET"], host: "www.example.com", path: "/**", auth: "public" },
      { name: "tenant-app", methods: ["GET", "POST"], host: ":tenant.example.com", path: "/app/**", auth: signedIn },
      { name: "probe", methods: ["OPTIONS"], path: "/probe", auth: "public" },
      { name: "eu-orders", methods: ["GET"], host: "eu.api.example.net", path: "/orders/**", auth: signedIn },
      { name: "us-orders", methods: ["GET"], host: "us.api.example.net", path: "/orders/**", auth: signedIn },
    ]);
    for (const route of doc.routes) route.upstream = "api";
    expect(compileStepProblems(doc)).toEqual([]);
  });
});
