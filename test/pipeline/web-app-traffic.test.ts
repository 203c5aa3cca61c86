// What a browser sends loading a real web app through the edge, against the readings of a path
// (route-readings.ts) that refuse a request an origin may take for another route's: hashed build
// assets, framework data paths, format suffixes, commas and `batch` in ordinary names. Each test
// drives the real pipeline against the loopback echo origin and issuer stand-in, and asserts
// the audit record's route, reason and detail and what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { RouteConfig } from "../../src/core/policy-types";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { admins, bearerOf, getRoute as route, signedIn, siteWithAdmin, withIdp } from "../support/guarded-sites";
import { expectAmbiguous, sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

const adminToken = () => bearerOf(issuer, { sub: "alice", groups: ["admins"] });

describe("a public /_next/** before a signed-in /**: no page's server-side data for an anonymous caller", () => {
  // Next.js answers `/_next/data/<build>/<page>.json` by running that page's getServerSideProps:
  // the data path is the page, though `/**` takes it as written too. Make `/_next/static/**`
  // public, not `/_next/**`, and the data paths go to the page's own route.
  it("`/_next/data/b1/dashboard.json` is refused as the /dashboard page's, not forwarded anonymously", async () => {
    const edge = harness(withIdp(issuer, [route("next", "/_next/**", "public"), route("app", "/**", signedIn())]));
    // Controls: the page refuses an anonymous caller, and the build's assets stay public.
    const page = await sendMarked(edge, "/dashboard");
    expect(page.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "app" });
    expect(page.seen).toHaveLength(0);
    const chunk = await sendMarked(edge, "/_next/static/chunks/pages/dashboard-3f9a1c.js");
    expect(chunk.record).toMatchObject({ decision: "allow", route: "next" });
    expect(chunk.seen.map((s) => s.raw_target)).toEqual(["/_next/static/chunks/pages/dashboard-3f9a1c.js"]);

    const data = await sendMarked(edge, "/_next/data/b1/dashboard.json");
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

// A route written for a page's data path (or a format suffix's path) with the page's rules
// takes it: the origin runs the page's loader under rules as strict as the page's own. One that
// asks less, or counts fewer of the page's limits, is refused the reading (README, Security
// model: readings of a path).
describe("a route written for a guarded page's data path", () => {
  it.each<[string, string, RouteConfig[]]>([
    [
      "Next.js",
      "/_next/data/b1/admin/users.json",
      [route("admin", "/admin/**", admins()), route("admin-data", "/_next/data/*/admin/**", admins())],
    ],
    [
      "SvelteKit",
      "/admin/__data.json?x-sveltekit-invalidated=01",
      [route("admin", "/admin", admins()), route("admin-data", "/admin/__data.json", admins())],
    ],
    // A format suffix alike: Rails routes `/orders.json` to `/orders`'s handler.
    ["Rails", "/orders.json", [route("admin", "/orders/**", admins()), route("admin-data", "/orders.json", admins())]],
  ])(
    "%s, with the page's rules: %s reaches the origin for an admin, and for no one else",
    async (_framework, path, guards) => {
      const edge = harness(withIdp(issuer, [...guards, route("site", "/**", "public")]));
      const admin = await sendMarked(edge, path, { headers: await adminToken() });
      expect(admin.record).toMatchObject({ decision: "allow", route: "admin-data" });
      expect(admin.seen.map((s) => s.raw_target)).toEqual([path]);
      const anonymous = await sendMarked(edge, path);
      expect(anonymous.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "admin-data" });
      const user = await sendMarked(edge, path, { headers: await bearerOf(issuer, { sub: "bob", groups: ["staff"] }) });
      expect(user.record).toMatchObject({
        decision: "deny",
        reason: "forbidden",
        detail: "group",
        route: "admin-data",
      });
      expect(anonymous.seen.length + user.seen.length).toBe(0);
    },
  );

  it("with a limit fewer than the page's: refused as ambiguous_format, nothing forwarded", async () => {
    const limited = {
      ...route("admin", "/admin/**", admins()),
      limits: [{ name: "admin-per-minute", key: "user" as const, limit: 5, window_s: 60 }],
    };
    const edge = harness(
      withIdp(issuer, [
        limited,
        route("admin-data", "/_next/data/*/admin/**", admins()),
        route("site", "/**", "public"),
      ]),
    );
    const admin = await sendMarked(edge, "/_next/data/b1/admin/users.json", { headers: await adminToken() });
    expectAmbiguous(admin);
    expect(admin.record?.detail).toBe("ambiguous_format");
  });

  // A page of another site the data route lets send credentials (an Access cookie goes with
  // them) could read the page's data, which the page's own route lets no other site read.
  it("with the page's rules but credentialed CORS the page does not have: refused as ambiguous_format", async () => {
    const partner = {
      ...route("admin-data", "/_next/data/*/admin/**", admins()),
      cors: { allow_origins: ["https://partner.example"], allow_credentials: true },
    };
    const edge = harness(
      withIdp(issuer, [route("admin", "/admin/**", admins()), partner, route("site", "/**", "public")]),
    );
    const admin = await sendMarked(edge, "/_next/data/b1/admin/users.json", { headers: await adminToken() });
    expectAmbiguous(admin);
    expect(admin.record?.detail).toBe("ambiguous_format");
  });

  it("asking less than the page (signed in, not an admin): refused as ambiguous_format for everyone", async () => {
    const edge = harness(
      withIdp(issuer, [
        route("admin", "/orders/**", admins()),
        route("orders-data", "/orders.json", signedIn()),
        route("site", "/**", "public"),
      ]),
    );
    expectAmbiguous(await sendMarked(edge, "/orders.json", { headers: await adminToken() }));
    expectAmbiguous(await sendMarked(edge, "/orders.json", { headers: await bearerOf(issuer, { sub: "bob" }) }));
  });
});

describe("a browser loading the public site beside a guarded /admin/**", () => {
  // What the pages of a public site load, where the word `admin`, dots, commas and `batch` sit
  // in ordinary names: none is read as the admin area's, so each reaches the origin as sent
  // under the public route.
  it.each([
    "/_next/static/chunks/app/admin/page-3f9a1c.js",
    "/_next/static/chunks/app/admin/page-3f9a1c.js.map",
    "/_app/immutable/nodes/3.BJk2.js",
    "/_next/image?url=%2Fadmin%2Fhero.png&w=64&q=75",
    "/static/admin/css/base.css",
    "/wp-admin/admin-ajax.php?action=load_more",
    "/index.php?route=account/login",
    "/manifest.webmanifest",
    "/.well-known/security.txt",
    "/products/batch-cooking",
    "/batches/2024",
    "/compare/1,2,3",
    "/Pricing",
    "/About-Us",
    "/about/_payload.json",
    "/page-data/about/page-data.json",
    "/about/index.html",
  ])("GET %s goes on under the public site", async (path) => {
    const sent = await sendMarked(harness(siteWithAdmin(issuer)), path);
    expect(sent.record).toMatchObject({ decision: "allow", route: "site", detail: null });
    expect(sent.seen.map((s) => s.raw_target)).toEqual([path]);
  });

  // The admin area's own data paths and form actions are its route's: they go on for an admin,
  // and refuse an anonymous caller as the admin page does (not as an ambiguous reading).
  it.each(["/admin/__data.json", "/admin/users/_payload.json", "/admin/users.json", "/admin/?/save"])(
    "GET %s is the admin route's own: an admin's goes on, an anonymous caller's is token_missing",
    async (path) => {
      const edge = harness(siteWithAdmin(issuer));
      const admin = await sendMarked(edge, path, { headers: await adminToken() });
      expect(admin.record).toMatchObject({ decision: "allow", route: "admin", detail: null });
      expect(admin.seen.map((s) => s.raw_target)).toEqual([path]);
      const anonymous = await sendMarked(edge, path);
      expect(anonymous.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "admin" });
      expect(anonymous.seen).toHaveLength(0);
    },
  );
});

// Exempting Next.js's build output as `/_next/**` (rather than `/_next/static/**`) puts its data
// paths under a public route too; with the guard on an area (`/admin/**`), the area's page data
// is still refused, while the build's assets and public pages' data go on.
describe("a public /_next/** before a guarded /admin/**", () => {
  it("refuses an admin page's data and serves the build's assets and a public page's data", async () => {
    const edge = harness(
      withIdp(issuer, [
        route("next", "/_next/**", "public"),
        route("admin", "/admin/**", admins()),
        route("site", "/**", "public"),
      ]),
    );
    const data = await sendMarked(edge, "/_next/data/b1/admin/users.json", { headers: await adminToken() });
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");

    for (const path of ["/_next/static/chunks/app/admin/page-3f9a1c.js", "/_next/data/b1/about.json"]) {
      const sent = await sendMarked(edge, path);
      expect(sent.record).toMatchObject({ decision: "allow", route: "next", detail: null });
      expect(sent.seen.map((s) => s.raw_target)).toEqual([path]);
    }
  });
});
