// Readings between routes that bind a tenant by their host and by their path, and the
// CodeIgniter query path under a public page (route-readings.ts `runsAsStrictly`,
// `movesTenant`, `queryReadAsAnotherRoute`; routes.ts `bindsTenant`, `bindsHostTenant`). Each
// test drives the real pipeline against the loopback echo origin and issuer stand-in, and
// asserts the audit record's route, reason and detail, and what reached the origin (with the
// tenant it was told).
import { beforeAll, describe, expect, it } from "vitest";
import { admins, bearerOf, getRoute as route, signedIn, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { expectAmbiguous, sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("a host-bound build folder beside a page whose tenant is the path's first segment", () => {
  // The org as the first segment (`/acme/billing`, the GitHub-style shape), so that the page's
  // route `/:tenant/**` also takes the data path as written (tenant `_next`). Next.js (pages
  // router) answers `/_next/data/<build id>/acme/billing.json` by running
  // `pages/[org]/billing`'s getServerSideProps with `org` = `acme` (the build id is public: it is
  // in every page's `__NEXT_DATA__`). `next` binds globex from the host; the page's route binds
  // acme from the path read: another tenant than the edge bound, so the request is refused.
  it("globex's user on globex's host is refused /_next/data/b1/acme/billing.json, nothing forwarded", async () => {
    const edge = harness(
      withIdp(issuer, [
        route("next", "/_next/**", signedIn(), { host: ":tenant.app.example.test" }),
        route("org-pages", "/:tenant/**", signedIn()),
      ]),
    );
    const globex = await bearerOf(issuer, { sub: "gina", tenant_id: "globex" });
    // Control: acme's page refuses globex's user.
    const page = await sendMarked(edge, "https://globex.app.example.test/acme/billing", { headers: globex });
    expect(page.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "org-pages" });
    expect(page.seen).toEqual([]);

    const data = await sendMarked(edge, "https://globex.app.example.test/_next/data/b1/acme/billing.json", {
      headers: globex,
    });
    expect(data.seen.map((s) => s.raw_target)).toEqual([]);
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

describe("a page's data route and the page's route, both binding the tenant of a :tenant host", () => {
  // A Next.js platform on its tenants' hosts, written as the README says: a route for the data
  // path with the page's rules (`/_next/data/*/admin/**` beside `/admin/**`). Both routes take the
  // tenant from the host, which no reading of the path moves, so the data path goes on under the
  // route that took it, bound to the host's tenant. The page's route is for one port only (8443):
  // a host route without a port takes every port, and the label it binds is the same.
  const platform = () =>
    withIdp(issuer, [
      route("admin-data", "/_next/data/*/admin/**", admins(), { host: ":tenant.app.example.test" }),
      route("admin", "/admin/**", admins(), { host: ":tenant.app.example.test:8443" }),
    ]);
  const data = "https://acme.app.example.test:8443/_next/data/b1/admin/users.json";

  it("acme's admin reaches the data on acme's host, told the tenant acme", async () => {
    const edge = harness(platform());
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme", groups: ["admins"] });
    // Control: the page itself, under its own route.
    const page = await sendMarked(edge, "https://acme.app.example.test:8443/admin/users", { headers: acme });
    expect(page.record).toMatchObject({ decision: "allow", route: "admin" });

    const { record, seen, got } = await sendMarked(edge, data, { headers: acme });
    expect(record).toMatchObject({ decision: "allow", route: "admin-data" });
    expect(seen.map((s) => s.raw_target)).toEqual(["/_next/data/b1/admin/users.json"]);
    expect(got["x-tenant"]).toBe("acme");
  });

  it("globex's admin is refused acme's data as a tenant mismatch, nothing forwarded", async () => {
    const edge = harness(platform());
    const globex = await bearerOf(issuer, { sub: "gina", tenant_id: "globex", groups: ["admins"] });
    const { record, seen } = await sendMarked(edge, data, { headers: globex });
    expect(record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "admin-data" });
    expect(seen).toEqual([]);
  });

  // The host-bound data route asks what the page asks but binds no group: a caller the page
  // refuses must not reach its data through it.
  it("a data route on the tenants' hosts that asks less than the page is refused its data path", async () => {
    const edge = harness(
      withIdp(issuer, [
        route("admin-data", "/_next/data/*/admin/**", signedIn(), { host: ":tenant.app.example.test" }),
        route("admin", "/admin/**", admins(), { host: ":tenant.app.example.test" }),
      ]),
    );
    const member = await bearerOf(issuer, { sub: "bob", tenant_id: "acme" });
    const sent = await sendMarked(edge, "https://acme.app.example.test/_next/data/b1/admin/users.json", {
      headers: member,
    });
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_format");
  });
});

describe("the README's public routes for a public home page's form actions", () => {
  // README (CodeIgniter's query path): under a public `/` before a signed-in `/**`,
  // `/?/admin/users` is refused; "give a public page's form actions public routes of their names
  // (`/login`)". SvelteKit posts the home page's `login` action as `POST /?/login`. On fixed hosts
  // and on a shop platform's `:tenant` hosts alike (a public route binds no tenant), the action
  // then goes on under the home page's route, and the admin area stays refused.
  const site = (host?: string) =>
    withIdp(issuer, [
      route("home", "/", "public", { methods: ["GET", "POST"], ...(host ? { host } : {}) }),
      route("login", "/login", "public", { methods: ["GET", "POST"], ...(host ? { host } : {}) }),
      route("app", "/**", signedIn(), { methods: ["GET", "POST"], ...(host ? { host } : {}) }),
    ]);
  const form = { "content-type": "application/x-www-form-urlencoded" };

  it.each([
    ["a fixed host", undefined, "https://www.example.test"],
    ["a shop's :tenant host", ":tenant.shops.example.test", "https://acme.shops.example.test"],
  ])("on %s an anonymous `POST /?/login` reaches the origin; `/?/admin/users` does not", async (_label, host, base) => {
    const edge = harness(site(host));
    const login = await sendMarked(edge, `${base}/?/login`, { method: "POST", headers: form, body: "u=a&p=b" });
    expect(login.record).toMatchObject({ decision: "allow", route: "home" });
    expect(login.seen.map((s) => [s.method, s.raw_target])).toEqual([["POST", "/?/login"]]);
    expect(login.got["x-tenant"]).toBeUndefined();

    const admin = await sendMarked(edge, `${base}/?/admin/users`);
    expectAmbiguous(admin);
    expect(admin.record?.detail).toBe("ambiguous_path_info");
  });
});
