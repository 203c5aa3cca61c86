// The $batch lint where an earlier route's `**` shadows a route under the batch's root, app web
// view origins in CORS, a port route after a host-wide route (the lint's to judge), the literal
// and IDN refusals, the CodeIgniter query path read again, and stored counters checked on load.
import { ODATA_BATCH_BODY, ODATA_BATCH_CONTENT_TYPE } from "../support/odata-batch";
import { beforeAll, describe, expect, it } from "vitest";
import { crossSiteRefusal } from "../../src/core/cross-site";
import { CounterTable } from "../../src/core/limits/counter-table";
import { addCost, refund, startingTat, type Tat } from "../../src/core/limits/gcra";
import type { LimitSpec, RouteConfig } from "../../src/core/policy-types";
import { compileStepProblems } from "../support/policy-compile-step";
import { problemsOf } from "../support/policy-problems";
import { admins, bearerOf, siteWithAdmin, signedIn, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** A deployable document around these routes: one OIDC issuer (`idp`), one https upstream. */
const deployable = (routes: unknown[], more: Record<string, unknown> = {}): any => ({
  version: 1,
  upstreams: { erp: { url: "https://erp.example.com" } },
  issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["erp"] } },
  routes,
  ...more,
});

const lintAuth = {
  signedIn: { issuers: ["idp"] },
  admins: { issuers: ["idp"], groups: { any_of: ["admins"] } },
};

const batchBody = ODATA_BATCH_BODY;
const batchHeaders = { "content-type": ODATA_BATCH_CONTENT_TYPE };

describe("the $batch lint and a stricter capture route for one port of the batch route's host", () => {
  // routes[0] serves acme's OData batches on acme.example.com, which without a port matches
  // every port (routes.ts, matchHost). routes[1] guards every tenant's OData service on
  // Cloudflare's port 8443 for admins; routes[2] is acme's catch-all on that port. At
  // acme.example.com:8443, `POST /odata/$batch` reaches routes[0] (first in order, and the edge
  // admits a batch on a route written for it: readsODataBatch), and the origin runs its
  // sub-requests (`DELETE Users(1)`) under routes[0]'s rules; sent on its own, the same
  // `DELETE /odata/Users(1)` there reaches routes[1] and is refused to a caller who is not an
  // admin. The lint must stop this policy (README: "the deploy lint stops a policy whose `$batch`
  // route admits a caller a route under its root refuses").
  //
  // routes[2] is left out, since routes[1]'s `**` shadows it under /odata/; routes[1] is judged:
  // `acme.example.com` (every port) and `:tenant.example.com:8443` cover neither the other, but
  // both match acme.example.com:8443 (hostsOverlap).
  const routes = (methods: string[], upstream: string) => [
    { name: "acme-batch", methods: ["POST"], host: "acme.example.com", path: "/odata/$batch", upstream },
    { name: "tenant-admin", methods, host: ":tenant.example.com:8443", path: "/odata/**", upstream },
    { name: "acme-portal", methods, host: "acme.example.com:8443", path: "/**", upstream },
  ];

  it("the edge runs the batch for a caller it refuses the same request sent on its own, and the lint stops the policy", async () => {
    const [batch, tenantAdmin, portal] = routes(["GET", "POST", "DELETE"], "echo");
    const edge = harness(
      withIdp(issuer, [
        { ...batch!, auth: signedIn() },
        { ...tenantAdmin!, auth: admins() },
        { ...portal!, auth: admins() },
      ] as never),
    );
    const alice = await bearerOf(issuer, { sub: "alice", tenant_id: "acme", groups: ["staff"] });
    // On its own, the sub-request's path there is routes[1]'s, which refuses a caller not an admin.
    const direct = await sendMarked(edge, "https://acme.example.com:8443/odata/Users(1)", {
      method: "DELETE",
      headers: alice,
    });
    expect(direct.response.status).toBe(403);
    expect(direct.record).toMatchObject({ decision: "deny", route: "tenant-admin" });
    expect(direct.seen).toHaveLength(0);
    const batched = await sendMarked(edge, "https://acme.example.com:8443/odata/$batch", {
      method: "POST",
      headers: { ...alice, ...batchHeaders },
      body: batchBody,
    });
    expect(batched.record).toMatchObject({ decision: "allow", route: "acme-batch" });
    expect(batched.seen.map((s) => [s.method, s.raw_target])).toEqual([["POST", "/odata/$batch"]]);

    const doc = deployable(
      routes(["GET", "POST", "DELETE"], "erp").map((route, i) => ({
        ...route,
        auth: i === 0 ? lintAuth.signedIn : lintAuth.admins,
      })),
    );
    expect(compileStepProblems(doc)).toEqual([
      "routes[0] (acme-batch): its $batch runs requests under routes[1] (tenant-admin), which demands more of a caller",
    ]);
  });
});

describe("the $batch lint and an earlier route whose literal is the root's but for letter case", () => {
  // Routes match a path case-sensitively: `/OData/**` never takes `/odata/admin/users`, so it
  // shadows nothing under `/odata/`. Sent on its own, `GET /odata/admin/users` is routes[2]'s
  // (and refused as ambiguous_case, routes[1] taking it but for case), while inside routes[0]'s
  // batch a case-sensitive OData origin (Olingo on a servlet container, a Spring or Express
  // router with case-sensitive routing on) would run it for any signed-in caller: the lint
  // judges routes[2].
  const routes = (upstream: string) => [
    { name: "batch", methods: ["POST"], path: "/odata/$batch", upstream },
    { name: "odata-cased", methods: ["GET"], path: "/OData/**", upstream },
    { name: "any-admin", methods: ["GET"], path: "/*/admin/**", upstream },
  ];

  it("the route a sub-request's path reaches on its own is still judged", async () => {
    const [batch, cased, anyAdmin] = routes("echo");
    const edge = harness(
      withIdp(issuer, [
        { ...batch!, auth: signedIn() },
        { ...cased!, auth: signedIn() },
        { ...anyAdmin!, auth: admins() },
      ] as never),
    );
    const alice = await bearerOf(issuer, { sub: "alice", groups: ["staff"] });
    // On its own, the path under the root is not routes[1]'s: refused, and never forwarded.
    const direct = await sendMarked(edge, "/odata/admin/users", { headers: alice });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_case" });
    expect(direct.seen).toHaveLength(0);
    // In the batch, forwarded under routes[0]'s rules.
    const batched = await sendMarked(edge, "/odata/$batch", {
      method: "POST",
      headers: { ...alice, ...batchHeaders },
      body: batchBody.replace("DELETE Users(1)", "GET admin/users"),
    });
    expect(batched.record).toMatchObject({ decision: "allow", route: "batch" });
    expect(batched.seen).toHaveLength(1);

    const doc = deployable(
      routes("erp").map((route, i) => ({ ...route, auth: i === 2 ? lintAuth.admins : lintAuth.signedIn })),
    );
    expect(compileStepProblems(doc)).toEqual([
      "routes[0] (batch): its $batch runs requests under routes[2] (any-admin), which demands more of a caller",
    ]);
  });
});

describe("an app web view origin written with capitals", () => {
  // A web view sends its page's origin with the host in lower case: WebKit's SecurityOrigin
  // lowercases scheme and host (`url.host().convertToASCIILowercase()`), so a Capacitor app
  // whose `server.hostname` is set as `MyApp` sends `Origin: capacitor://myapp`. The URL parser
  // keeps a non-special scheme's host as written: the check lowercases it, and an entry written
  // otherwise, which would never match, is refused naming the spelling sent.
  it("capacitor://MyApp is refused naming capacitor://myapp", () => {
    const cors = { allow_origins: ["capacitor://MyApp"], allow_credentials: true };
    const route = { name: "api", methods: ["GET"], path: "/v1/**", auth: lintAuth.signedIn, upstream: "erp", cors };
    expect(problemsOf(deployable([route]))).toEqual([
      'routes[0].cors.allow_origins: "capacitor://MyApp" never matches: browsers send it as "capacitor://myapp"',
    ]);
  });
});

describe("an IDN host's refusal names only a spelling that compiles", () => {
  // The URL parser also writes names the host check refuses for another reason (an empty label,
  // an underscore): the refusal names the `xn--` spelling only when it passes the check itself.
  const route = (host: string) =>
    deployable([{ name: "r", methods: ["GET"], host, path: "/v1/**", auth: lintAuth.signedIn, upstream: "erp" }]);

  it.each([
    ["an empty label", "bücher..example"],
    ["an underscore", "bü_cher.example"],
  ])("a host with %s names no spelling that is refused", (_label, host) => {
    const problems = problemsOf(route(host));
    expect(problems).toHaveLength(1);
    const named = /write "([^"]*)"/.exec(problems[0]!)?.[1];
    // A refusal naming nothing to write is right too; one naming a spelling must name one that compiles.
    expect(named === undefined ? [] : problemsOf(route(named))).toEqual([]);
  });
});

describe("app web view origins: what the relaxed check still refuses", () => {
  // An origin of any scheme with a host is let through. Browsers send a blob:, data: or
  // javascript: page's origin as its creator's or as `null`, never these spellings; written so,
  // an entry could only match nothing, and the check says so.
  it.each([["blob:https://app.example.com/1b2c"], ["data:text/html,x"], ["javascript:alert(1)"], ["file:///app"]])(
    "%s is refused as no origin",
    (origin) => {
      const cors = { allow_origins: [origin] };
      const route = { name: "api", methods: ["GET"], path: "/v1/**", auth: lintAuth.signedIn, upstream: "erp", cors };
      expect(problemsOf(deployable([route]))).toEqual([
        `routes[0].cors.allow_origins: "${origin}" must be "*" or an origin such as https://app.example.com`,
      ]);
    },
  );

  it("a credentialed capacitor://localhost passes the cross-site check for an Access cookie, another origin does not", () => {
    // The cross-site check lets an allowed, credentialed origin through as it lets an https one:
    // Origin is set by the web view, which no web page can claim.
    const cors = { allow_origins: ["capacitor://localhost"], allow_credentials: true };
    const methods = new Set(["GET", "POST"]);
    const from = (origin: string) =>
      new Headers({ origin, "sec-fetch-site": "cross-site", cookie: "CF_Authorization=x" });
    const own = "https://api.example.com";
    expect(crossSiteRefusal("POST", from("capacitor://localhost"), own, cors as never, methods)).toBeUndefined();
    expect(crossSiteRefusal("POST", from("ionic://localhost"), own, cors as never, methods)).toBe("cross_site_origin");
    expect(crossSiteRefusal("POST", from("capacitor://localhost.evil"), own, cors as never, methods)).toBe(
      "cross_site_origin",
    );
  });
});

describe("a port route after a host-wide route: what the lint now judges", () => {
  // The lint, not the validator, judges it: it reports each method an earlier
  // route takes first, so a partial overlap of methods is named method by method and the rest
  // of the port route stays reachable.
  it("only the methods the host-wide route takes are named", () => {
    const doc = deployable(
      [
        { name: "wide", host: "api.example.com", methods: ["GET"], path: "/admin/**", auth: lintAuth.admins },
        {
          name: "admin-8443",
          host: "api.example.com:8443",
          methods: ["GET", "DELETE"],
          path: "/admin/**",
          auth: lintAuth.admins,
        },
      ].map((route) => ({ ...route, upstream: "erp" })),
    );
    expect(compileStepProblems(doc)).toEqual([
      "routes[1] (admin-8443): GET never reaches it: routes[0] (wide) takes every such request first",
    ]);
  });
});

describe("SvelteKit form actions after the query path is read again", () => {
  // The query's path is also asked whether it is another route's but for letter case: a
  // camelCase action name (`?/createTodo`, as SvelteKit's docs name them) on a public site with
  // a guarded /admin/** folds to a path no other route takes, and goes on as sent.
  it("`POST /?/createTodo` reaches the origin as sent", async () => {
    const doc = siteWithAdmin(issuer);
    for (const route of doc.routes) route.methods = ["GET", "POST"];
    const edge = harness(doc);
    const { record, seen } = await sendMarked(edge, "/?/createTodo", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "text=milk",
    });
    expect(record).toMatchObject({ decision: "allow", route: "site" });
    expect(seen.map((s) => [s.method, s.raw_target])).toEqual([["POST", "/?/createTodo"]]);
  });
});

describe("stored counters the load check keeps", () => {
  // Loading skips a row whose fraction is not a proper one of a whole denominator. Every TAT the
  // table writes is one: a charge, a refund and a clamp to full keep 0 ≤ frac < den, so a
  // restart forgets none of them.
  it("charges, a refund and a rescale over awkward limits all load back", () => {
    const rate = { limit: 7, windowMs: 60_000 };
    const now = 1_700_000_000_000;
    let tat: Tat = startingTat(undefined, now, rate.limit);
    const written: Tat[] = [];
    for (let i = 0; i < 7; i++) {
      tat = addCost(tat, rate, 1);
      written.push(tat);
    }
    written.push(refund(tat, now + 1, rate, now, 1)!);
    written.push(startingTat(tat, now, 13));
    const table = new CounterTable();
    written.forEach((row, i) => {
      table.load(`c${i}`, { ...row });
    });
    expect(written.every((row) => row.frac >= 0 && row.frac < row.den)).toBe(true);
    expect(table.size).toBe(written.length);
  });
});

describe("the $batch lint compares the audiences routes take, a route's default its issuers'", () => {
  // A route without `audiences` takes its issuers' (here `erp`), which a route's own list
  // replaces rather than narrows.
  const odata = (batchAudiences: string[]) =>
    deployable([
      {
        name: "batch",
        methods: ["POST"],
        path: "/odata/$batch",
        auth: { issuers: ["idp"], audiences: batchAudiences },
        upstream: "erp",
      },
      { name: "odata", methods: ["GET", "POST"], path: "/odata/**", auth: lintAuth.signedIn, upstream: "erp" },
    ]);

  it("a batch route naming the issuer's own audience is no laxer than a route taking the default", () => {
    expect(compileStepProblems(odata(["erp"]))).toEqual([]);
  });

  it("a batch route also taking another API's audience is reported", () => {
    expect(compileStepProblems(odata(["erp", "https://payments.example.com"]))).toEqual([
      "routes[0] (batch): its $batch runs requests under routes[1] (odata), which demands more of a caller",
    ]);
  });
});

// The `$batch` lint weighs what routes demand and their tenant binding, not their limits: a
// batch is counted once on each counter whatever its body holds, and a `route` or `ip` limit is
// never another route's counter, so a service whose routes all take such a default deploys.
describe("the $batch lint and routes taking the same default limits", () => {
  const service = (auth: RouteConfig["auth"], defaults: LimitSpec[]) => ({
    version: 1,
    upstreams: { erp: { url: "https://erp.example.com" } },
    issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["erp"] } },
    limits: { defaults },
    routes: [
      { name: "batch", methods: ["POST"], path: "/odata/$batch", auth, upstream: "erp" },
      { name: "odata", methods: ["GET"], path: "/odata/**", auth, upstream: "erp" },
    ],
  });

  it("a public catalogue, every route taking the default per-address limit, deploys", () => {
    const perAddress: LimitSpec = { name: "per-address", key: "ip", limit: 600, window_s: 60 };
    // Control: without the default, the lint has nothing to say.
    expect(compileStepProblems(service("public", []))).toEqual([]);
    expect(compileStepProblems(service("public", [perAddress]))).toEqual([]);
  });

  it("a signed-in service, every route taking the default route ceiling, deploys", () => {
    const ceiling: LimitSpec = { name: "origin-ceiling", key: "route", limit: 5000, window_s: 60 };
    expect(compileStepProblems(service({ issuers: ["idp"] }, []))).toEqual([]);
    expect(compileStepProblems(service({ issuers: ["idp"] }, [ceiling]))).toEqual([]);
  });
});
