// The route lint's `routesReadAsOthers` and a `:tenant` host on a public route
// (route-overlap.ts, policy-lint.ts, route-readings.ts, route-demands.ts). Policies are compiled
// as scripts/compile-policy.mjs compiles them (the validator, then the lint as deployed); what a
// route does with requests is shown through the real pipeline, against the echo origin.
import { describe, expect, it } from "vitest";
import { harness } from "../support/harness";
import { deployable, onEcho } from "../support/lint-policies";
import { compileStepProblems } from "../support/policy-compile-step";
import { sendMarked } from "../support/sent";

type Route = Record<string, unknown>;

/** These routes with every `host` replaced by `host`. */
const onHost = (routes: Route[], host: string): Route[] =>
  routes.map((route) => (route.host ? { ...route, host } : route));

/** What a request came to: its status, the audit reason and detail, and the paths the origin saw. */
async function outcome(edge: ReturnType<typeof harness>, url: string, init: RequestInit = {}) {
  const { response, record, seen } = await sendMarked(edge, url, init);
  return {
    status: response.status,
    reason: record?.reason ?? null,
    detail: record?.detail ?? null,
    route: record?.route ?? null,
    seen: seen.map((s) => s.path),
  };
}

describe("a reading between two public routes on the same :tenant hosts", () => {
  // A shop platform on its shops' hosts (Shopify's `<shop>.myshopify.com`): a public storefront
  // for GET, and a public cart taking POST too under `/cart/**`. Shopify's theme JavaScript
  // reads the cart at `GET /cart.js`; the storefront route takes that path, and the route stage
  // reads it as `/cart` (Rails' format suffix), which the cart route takes. Both routes are
  // public, and a public route binds no tenant (no token is there): the request goes on, on a
  // shop's host as on an exact host.
  const shop = [
    {
      name: "shop-admin",
      methods: ["GET", "POST", "PUT", "DELETE"],
      host: ":tenant.shops.example.com",
      path: "/admin/**",
      auth: { issuers: ["idp"] },
    },
    { name: "cart", methods: ["GET", "POST"], host: ":tenant.shops.example.com", path: "/cart/**", auth: "public" },
    { name: "storefront", methods: ["GET"], host: ":tenant.shops.example.com", path: "/**", auth: "public" },
  ];

  it("GET /cart.js reaches the origin under the storefront on a shop's host, as on an exact host", async () => {
    const reached = { status: 200, reason: null, detail: null, route: "storefront", seen: ["/cart.js"] };
    // The control: the same routes on an exact host.
    const exact = harness(onEcho(onHost(shop, "shop.example.com")));
    expect(await outcome(exact, "https://shop.example.com/cart.js")).toEqual(reached);
    const tenants = harness(onEcho(shop));
    expect(await outcome(tenants, "https://acme.shops.example.com/cart.js")).toEqual(reached);
  });

  // Nor does the lint name a route written for `/cart.js` beside the cart's.
  it("a public route written for /cart.js beside a public /cart/** on the shops' hosts deploys", () => {
    const withCartJs = [
      shop[0] as Route,
      { name: "cart-js", methods: ["GET"], host: ":tenant.shops.example.com", path: "/cart.js", auth: "public" },
      ...shop.slice(1),
    ];
    expect(compileStepProblems(deployable(onHost(withCartJs, "shop.example.com")))).toEqual([]);
    expect(compileStepProblems(deployable(withCartJs))).toEqual([]);
  });

  // Nor does the batch lint take a public `:tenant`-host feed under a signed-in `$batch` for
  // one that binds a tenant the batch route does not.
  it("a signed-in $batch over a public feed on the shops' hosts deploys", () => {
    const odata = [
      { name: "batch", methods: ["POST"], path: "/odata/$batch", auth: { issuers: ["idp"] } },
      { name: "feed", methods: ["GET"], host: ":tenant.shops.example.com", path: "/odata/**", auth: "public" },
    ];
    expect(compileStepProblems(deployable(onHost(odata, "shop.example.com")))).toEqual([]);
    expect(compileStepProblems(deployable(odata))).toEqual([]);
  });
});

describe("the lint's message names the route the path is read as, and why", () => {
  // In a platform policy of dozens of routes, the operator learns which route `/orders.json` is
  // read as, and what to write: that route's rules here, or that route taking the path too.
  it("names routes[0] (orders), which /orders.json is read as", () => {
    const orders = [
      { name: "orders", methods: ["GET"], path: "/orders/**", auth: { issuers: ["idp"] } },
      { name: "orders-feed", methods: ["GET"], path: "/orders.json", auth: "public" },
      { name: "site", methods: ["GET"], path: "/**", auth: "public" },
    ];
    expect(compileStepProblems(deployable(orders))).toEqual([
      expect.stringMatching(/^routes\[1\] \(orders-feed\): GET never reaches it: .*routes\[0\] \(orders\)/),
    ]);
  });

  // `/v1/me.json` with credentialed CORS for the web app, beside `/v1/me/**` with the same rules
  // and no CORS: refused because a page of another site could read `/v1/me`'s answers with
  // credentials through it, which the message says (auth and limits are alike).
  it("says a route's own credentialed CORS is why its every request is refused", async () => {
    const signedIn = { issuers: ["idp"] };
    const me = [
      { name: "me", methods: ["GET"], path: "/v1/me/**", auth: signedIn },
      {
        name: "me-json",
        methods: ["GET"],
        path: "/v1/me.json",
        auth: signedIn,
        cors: { allow_origins: ["https://app.example.com"], allow_credentials: true },
      },
    ];
    // The refusal itself (before any token is looked at): nothing reaches the origin.
    const edge = harness(onEcho(me));
    expect(await outcome(edge, "/v1/me.json")).toEqual({
      status: 400,
      reason: "bad_request",
      detail: "ambiguous_format",
      route: null,
      seen: [],
    });
    expect(compileStepProblems(deployable(me))).toEqual([expect.stringMatching(/credentials|cors/i)]);
  });
});

describe("a :tenant host on a public route binds nothing at run time", () => {
  // The lint now lets a public route take the tenants' hosts. Nothing reads the captured label
  // there: x-tenant and the audit's tenant come from a verified token only, so a storefront on
  // `acme.shops.example.com` forwards no tenant (neither the host's label nor one the client
  // sent), and is refused no request for a tenant mismatch.
  it("forwards no x-tenant, and records no tenant", async () => {
    const edge = harness(
      onEcho([
        { name: "storefront", methods: ["GET"], host: ":tenant.shops.example.com", path: "/**", auth: "public" },
      ]),
    );
    const { response, record, seen, got } = await sendMarked(edge, "https://acme.shops.example.com/products/boots", {
      headers: { "x-tenant": "globex" },
    });
    expect({ status: response.status, decision: record?.decision, tenant: record?.tenant_id }).toEqual({
      status: 200,
      decision: "allow",
      tenant: null,
    });
    expect(seen.map((s) => s.path)).toEqual(["/products/boots"]);
    expect(got["x-tenant"]).toBeUndefined();
  });
});

describe("the lint asks about a route for any host on every host a route names, ports included", () => {
  // A public `/orders.json` for any host beside a guarded `/orders/**` on one port of one host
  // only: requests on that port are refused (read as `/orders`), every other host's reach the
  // route, so the build names nothing.
  const routes = [
    { name: "orders", methods: ["GET"], host: "api.example.com:8443", path: "/orders/**", auth: { issuers: ["idp"] } },
    { name: "orders-feed", methods: ["GET"], path: "/orders.json", auth: "public" },
  ];

  it("names nothing, and the route serves the hosts the stricter route does not", async () => {
    const edge = harness(onEcho(routes));
    expect(await outcome(edge, "https://api.example.com:8443/orders.json")).toMatchObject({
      status: 400,
      detail: "ambiguous_format",
      seen: [],
    });
    expect(await outcome(edge, "https://api.example.com/orders.json")).toEqual({
      status: 200,
      reason: null,
      detail: null,
      route: "orders-feed",
      seen: ["/orders.json"],
    });
    expect(compileStepProblems(deployable(routes))).toEqual([]);
  });
});
