// What a signed-in member of a multi-tenant SaaS app really sends through the edge (pages,
// framework data paths, assets, exports, form posts), against the readings of a path that treat
// tenants (route-readings.ts `movesTenant`, `runsAsStrictly`; routes.ts `bindsTenant`): the
// member's own traffic must reach the origin, told the member's tenant, and another tenant's
// member must not. Each test drives the real pipeline against the loopback echo origin and
// issuer stand-in, and asserts the audit record's route, reason and detail, and what reached the
// origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { RouteConfig } from "../../src/core/policy-types";
import { admins, bearerOf, getRoute, signedIn, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** A GET and POST route to the echo origin: pages are read and their forms posted. */
/** A route taking GET and POST (pages and their form posts), with whatever else `extra` says. */
const route = (name: string, path: string, auth: RouteConfig["auth"], extra: Partial<RouteConfig> = {}) =>
  getRoute(name, path, auth, { methods: ["GET", "POST"], ...extra });

const acmeAdmin = () => bearerOf(issuer, { sub: "alice", tenant_id: "acme", groups: ["admins"] });
const globexAdmin = () => bearerOf(issuer, { sub: "gina", tenant_id: "globex", groups: ["admins"] });

// A page bound to the tenant its path names, with a route written for its data or format path
// with the page's rules (README, Security model on readings): that route binds the same
// `:tenant` segment, and the origin runs the page's handler for the very tenant the edge bound
// and checked, under rules as strict, so the tenant's members are served and other tenants'
// members refused.
describe("a tenant page's data or format route with the page's own rules serves the tenant's members", () => {
  // Next.js Pages Router: on client-side navigation the router fetches
  // `/_next/data/<build id>/orgs/acme/projects.json` and runs `pages/orgs/[org]/projects`'s
  // getServerSideProps with org = acme. A failed fetch makes it fall back to a full page load
  // (handleHardNavigation), so every in-app navigation reloads the page and writes a deny record.
  it("Next.js: acme's member reaches `/_next/data/b1/orgs/acme/projects.json` under the data route, globex's is refused", async () => {
    const member = { issuers: ["idp"] };
    const edge = harness(
      withIdp(issuer, [
        route("static", "/_next/static/**", "public"),
        route("org-data", "/_next/data/*/orgs/:tenant/**", member),
        route("org", "/orgs/:tenant/**", member),
      ]),
    );
    // Control: the page itself goes on for acme's member.
    const page = await sendMarked(edge, "/orgs/acme/projects", { headers: await acmeAdmin() });
    expect(page.record).toMatchObject({ decision: "allow", route: "org" });

    const data = await sendMarked(edge, "/_next/data/b1/orgs/acme/projects.json", { headers: await acmeAdmin() });
    expect(data.record).toMatchObject({ decision: "allow", route: "org-data" });
    expect(data.seen.map((s) => s.raw_target)).toEqual(["/_next/data/b1/orgs/acme/projects.json"]);
    expect(data.got["x-tenant"]).toBe("acme");
    const other = await sendMarked(edge, "/_next/data/b1/orgs/acme/projects.json", { headers: await globexAdmin() });
    expect(other.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "org-data" });
    expect(other.seen).toEqual([]);
  });

  // SvelteKit fetches `<page>/__data.json` on navigation; the README's own `/admin/__data.json`
  // beside `/admin`, for an org's settings page guarded more than the rest of the org.
  it("SvelteKit: acme's admin reaches `/orgs/acme/settings/__data.json` under a route written for it", async () => {
    const edge = harness(
      withIdp(issuer, [
        route("settings-data", "/orgs/:tenant/settings/__data.json", admins()),
        route("settings", "/orgs/:tenant/settings", admins()),
        route("org", "/orgs/:tenant/**", signedIn()),
      ]),
    );
    const path = "/orgs/acme/settings/__data.json?x-sveltekit-invalidated=01";
    const { record, seen, got } = await sendMarked(edge, path, { headers: await acmeAdmin() });
    expect(record).toMatchObject({ decision: "allow", route: "settings-data" });
    expect(seen.map((s) => s.raw_target)).toEqual([path]);
    expect(got["x-tenant"]).toBe("acme");
  });

  // Rails nests `resources :reports` under the tenant: `GET /v1/tenants/acme/reports.csv` is
  // reports#index as CSV. The broader tenant route rightly may not take it (it asks no
  // `reports:read`); the route written for it asks exactly what the reports route asks.
  it("Rails: acme's analyst reaches the `/v1/tenants/acme/reports.csv` export under a route written for it", async () => {
    const reports = { issuers: ["idp"], scopes: { all_of: ["reports:read"] } };
    const edge = harness(
      withIdp(issuer, [
        route("reports-export", "/v1/tenants/:tenant/reports.csv", reports),
        route("reports", "/v1/tenants/:tenant/reports/**", reports),
        route("tenant-api", "/v1/tenants/:tenant/**", signedIn()),
      ]),
    );
    const analyst = await bearerOf(issuer, { sub: "ana", tenant_id: "acme", scope: "reports:read" });
    // Control: the same report as JSON, under the reports route.
    const json = await sendMarked(edge, "/v1/tenants/acme/reports/q1.json", { headers: analyst });
    expect(json.record).toMatchObject({ decision: "allow", route: "reports" });

    const { record, seen, got } = await sendMarked(edge, "/v1/tenants/acme/reports.csv", { headers: analyst });
    expect(record).toMatchObject({ decision: "allow", route: "reports-export" });
    expect(seen.map((s) => s.raw_target)).toEqual(["/v1/tenants/acme/reports.csv"]);
    expect(got["x-tenant"]).toBe("acme");
  });

  // SvelteKit with `trailingSlash: "always"` (the setting for static hosts) serves the page at
  // `/orgs/acme/settings/`, so `<form method="POST" action="?/save">` posts to
  // `/orgs/acme/settings/?/save`. The edge reads the query as CodeIgniter's path,
  // `/orgs/acme/settings/save`, which the members' route takes: that route asks less than the
  // settings route that took the request, and for the same tenant acme, yet the post is refused
  // (`queryReadAsAnotherRoute` → `runsAsStrictly`).
  it("SvelteKit: acme's admin posts the settings form to `/orgs/acme/settings/?/save`", async () => {
    const edge = harness(
      withIdp(issuer, [
        route("settings", "/orgs/:tenant/settings", admins()),
        route("org", "/orgs/:tenant/**", signedIn()),
      ]),
    );
    const { record, seen, got } = await sendMarked(edge, "/orgs/acme/settings/?/save", {
      method: "POST",
      headers: { ...(await acmeAdmin()), "content-type": "application/x-www-form-urlencoded" },
      body: "name=Acme",
    });
    expect(record).toMatchObject({ decision: "allow", route: "settings" });
    expect(seen.map((s) => [s.method, s.raw_target])).toEqual([["POST", "/orgs/acme/settings/?/save"]]);
    expect(got["x-tenant"]).toBe("acme");
  });
});

describe("a page data route where the org is the path's first segment (`/:tenant/**`)", () => {
  // The GitHub-style shape: `/_next/data/*/:tenant/**` beside `/:tenant/**`, which takes the data
  // path as written too (tenant `_next`), so the reading goes on where the tenants agree.
  const policy = () =>
    withIdp(issuer, [
      route("static", "/_next/static/**", "public"),
      route("home", "/", "public"),
      route("org-data", "/_next/data/*/:tenant/**", signedIn()),
      route("org", "/:tenant/**", signedIn()),
    ]);

  it("acme's member reaches its projects' data told acme; globex's member is refused it as tenant_mismatch", async () => {
    const edge = harness(policy());
    const own = await sendMarked(edge, "/_next/data/b1/acme/projects.json", { headers: await acmeAdmin() });
    expect(own.record).toMatchObject({ decision: "allow", route: "org-data" });
    expect(own.seen.map((s) => s.raw_target)).toEqual(["/_next/data/b1/acme/projects.json"]);
    expect(own.got["x-tenant"]).toBe("acme");

    const other = await sendMarked(edge, "/_next/data/b1/acme/projects.json", { headers: await globexAdmin() });
    expect(other.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "org-data" });
    expect(other.seen).toEqual([]);
  });
});

describe("Next.js App Router requests on a page bound to the tenant its path names", () => {
  // A client-side navigation fetches the page's React Server Components payload from the page's
  // own URL with a cache-busting `_rsc` query and the router's headers: the origin answers RSC
  // only when those headers arrive, and must get them as sent.
  const rscHeaders = {
    rsc: "1",
    "next-router-state-tree": "%5B%22%22%2C%7B%7D%5D",
    "next-url": "/orgs/acme",
    "next-router-prefetch": "1",
  };

  it("acme's member's RSC fetch reaches the origin with its query and headers; globex's member is refused", async () => {
    const edge = harness(
      withIdp(issuer, [route("static", "/_next/static/**", "public"), route("org", "/orgs/:tenant/**", signedIn())]),
    );
    const own = await sendMarked(edge, "/orgs/acme/projects?_rsc=1x2y3", {
      headers: { ...(await acmeAdmin()), ...rscHeaders },
    });
    expect(own.record).toMatchObject({ decision: "allow", route: "org" });
    expect(own.seen.map((s) => s.raw_target)).toEqual(["/orgs/acme/projects?_rsc=1x2y3"]);
    expect(own.got).toMatchObject({ ...rscHeaders, "x-tenant": "acme" });

    const other = await sendMarked(edge, "/orgs/acme/projects?_rsc=1x2y3", {
      headers: { ...(await globexAdmin()), ...rscHeaders },
    });
    expect(other.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "org" });
    expect(other.seen).toEqual([]);
  });
});

describe("one tenant route serving every framework's data paths, exports and form posts", () => {
  // What a member's browser sends inside its org: SvelteKit's `__data.json` and form actions,
  // Nuxt's `_payload.json`, React Router's `.data`, Rails' `.json`, a CSV export and a hashed
  // asset. Each is the route's own path read any way, for the tenant the edge bound.
  const requests: [string, string][] = [
    ["GET", "/orgs/acme/projects/__data.json?x-sveltekit-invalidated=01"],
    ["GET", "/orgs/acme/projects/_payload.json"],
    ["GET", "/orgs/acme/projects.data"],
    ["GET", "/orgs/acme/projects/42.json"],
    ["GET", "/orgs/acme/invoices/export.csv"],
    ["GET", "/orgs/acme/files/report.final.v2.pdf"],
    ["POST", "/orgs/acme/?/invite"],
    ["POST", "/orgs/acme/projects?/create"],
  ];
  const policy = () =>
    withIdp(issuer, [
      route("static", "/_next/static/**", "public"),
      route("home", "/", "public"),
      route("org", "/orgs/:tenant/**", signedIn()),
    ]);

  it.each(requests)(
    "%s %s reaches the origin for acme's member, told acme, and not for globex's",
    async (method, path) => {
      const edge = harness(policy());
      const body = method === "POST" ? "email=bob%40acme.test" : undefined;
      const init = (headers: Record<string, string>) => ({
        method,
        body,
        headers: { ...headers, ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}) },
      });
      const own = await sendMarked(edge, path, init(await acmeAdmin()));
      expect(own.record).toMatchObject({ decision: "allow", route: "org" });
      expect(own.seen.map((s) => [s.method, s.raw_target])).toEqual([[method, path]]);
      expect(own.got["x-tenant"]).toBe("acme");

      const other = await sendMarked(edge, path, init(await globexAdmin()));
      expect(other.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "org" });
      expect(other.seen).toEqual([]);
    },
  );
});
