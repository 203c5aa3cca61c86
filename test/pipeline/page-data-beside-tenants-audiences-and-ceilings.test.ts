// A page's data path beside routes that bind another tenant, accept other audiences (or write
// them otherwise) or count their own ceilings: the data is the page's, and none of these lets a caller the page's route
// refuses read it. Pipeline tests: the real edge, the loopback echo origin and issuer
// stand-in; they assert the audit record's reason and detail and what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { LimitSpec } from "../../src/core/policy-types";
import { admins, bearerOf, getRoute as route, signedIn, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { expectAmbiguous, sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

// A build folder bound to the tenant its host names (`:tenant.app.example.test`, `/_next/**`)
// beside pages bound to the tenant their path names (`/orgs/:tenant/**`): globex's user asking
// globex's host for `/_next/data/b1/orgs/acme/billing.json` would have Next.js run
// `/orgs/[org]/billing`'s getServerSideProps with `org` = `acme`. A data path outside its page's
// route is refused, globex's own included.
describe("a tenant bound by the host beside a page's tenant bound by its path", () => {
  it("globex's user is refused acme's /orgs/acme/billing data on globex's host", async () => {
    const routes = [
      route("org-pages", "/orgs/:tenant/**", signedIn()),
      route("next", "/_next/**", signedIn(), { host: ":tenant.app.example.test" }),
    ];
    const edge = harness(withIdp(issuer, routes));
    const globex = await bearerOf(issuer, { sub: "gina", tenant_id: "globex" });
    // Control: acme's page refuses globex's user on any host.
    const page = await sendMarked(edge, "https://globex.app.example.test/orgs/acme/billing", { headers: globex });
    expect(page.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "org-pages" });
    expect(page.seen).toHaveLength(0);
    // globex's own org page's data too: outside the page's route.
    const own = await sendMarked(edge, "https://globex.app.example.test/_next/data/b1/orgs/globex/billing.json", {
      headers: globex,
    });
    expectAmbiguous(own);

    const data = await sendMarked(edge, "https://globex.app.example.test/_next/data/b1/orgs/acme/billing.json", {
      headers: globex,
    });
    expect(data.seen).toHaveLength(0);
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

// A route without `audiences` takes the issuer's, which a route's own list replaces rather than
// narrows: a data route that also accepts another API's audience must not admit, to the page's
// data, a token the page refuses as `audience_mismatch` (a token minted for that other API,
// which holds it and may replay it: RFC 8725 §3.9).
describe("a data route accepting more audiences than the page's", () => {
  it("an admin's token for another API is refused the admin page's data as it is the page", async () => {
    const other = "https://payments.test";
    const routes = [
      route("admin", "/admin/**", admins()),
      route("admin-data", "/_next/data/*/admin/**", { ...admins(), audiences: ["https://api.test", other] }),
      route("site", "/**", "public"),
    ];
    const edge = harness(withIdp(issuer, routes));
    const elsewhere = await bearerOf(issuer, { sub: "alice", groups: ["admins"], aud: other });
    // Control: the admin page refuses a token for the other API.
    const page = await sendMarked(edge, "/admin/users", { headers: elsewhere });
    expect(page.record).toMatchObject({ decision: "deny", reason: "audience_mismatch", route: "admin" });
    expect(page.seen).toHaveLength(0);

    const data = await sendMarked(edge, "/_next/data/b1/admin/users.json", { headers: elsewhere });
    expect(data.seen).toHaveLength(0);
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

// A `route` (or `ip`) limit is counted in the route's own limiter object, so the same ceiling
// written on the data route is a second budget, not the page's: callers would get the page's
// ceiling (what protects its handler, an expensive getServerSideProps) twice over.
describe("a page's route ceiling beside a data route with the same ceiling", () => {
  it("with the page's one-a-minute ceiling spent, its data is not forwarded", async () => {
    const id = crypto.randomUUID().slice(0, 8);
    const ceiling: LimitSpec = { name: `report-ceiling-${id}`, key: "route", limit: 1, window_s: 60 };
    const routes = [
      route(`reports-${id}`, "/reports/**", admins(), { limits: [ceiling] }),
      route(`reports-data-${id}`, "/_next/data/*/reports/**", admins(), { limits: [{ ...ceiling }] }),
      route("site", "/**", "public"),
    ];
    const edge = harness(withIdp(issuer, routes));
    const admin = await bearerOf(issuer, { sub: "alice", groups: ["admins"] });
    const first = await sendMarked(edge, "/reports/q3", { headers: admin });
    expect(first.record).toMatchObject({ decision: "allow", route: `reports-${id}` });
    // Control: the page's ceiling is spent for the page.
    const again = await sendMarked(edge, "/reports/q3", { headers: admin });
    expect(again.record).toMatchObject({ decision: "deny", reason: "rate_limited" });
    expect(again.seen).toHaveLength(0);

    // The page's handler runs again, under the data route's own budget of one.
    const data = await sendMarked(edge, "/_next/data/b1/reports/q3.json", { headers: admin });
    expect(data.seen).toHaveLength(0);
    expect(data.record?.decision).toBe("deny");
    expect(["rate_limited", "bad_request"]).toContain(data.record?.reason);
  });
});

// The page-data rule compares audiences as written (it has no issuers to read a missing list
// from): a build folder without a list and pages writing out their issuer's own audience are
// taken as different, and every page's data is refused there; written alike, both lists
// missing or both the same, the data goes on under `/_next/**` (README, Security model).
describe("page data between routes whose audiences are written otherwise", () => {
  it("one list written, the other the issuer's: refused; both written alike: goes on", async () => {
    const routes = [
      route("next", "/_next/**", signedIn()),
      route("app", "/**", { ...signedIn(), audiences: [AUDIENCE] }),
    ];
    const edge = harness(withIdp(issuer, routes));
    const user = await bearerOf(issuer, { sub: "alice" });
    // Control: the page itself admits the caller.
    const page = await sendMarked(edge, "/dashboard", { headers: user });
    expect(page.record).toMatchObject({ decision: "allow", route: "app" });
    expect(page.seen).toHaveLength(1);

    const data = await sendMarked(edge, "/_next/data/b1/dashboard.json", { headers: user });
    expect(data.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_format" });
    expect(data.seen).toHaveLength(0);

    const alike = harness(
      withIdp(issuer, [route("next", "/_next/**", { ...signedIn(), audiences: [AUDIENCE] }), routes[1]!]),
    );
    const written = await sendMarked(alike, "/_next/data/b1/dashboard.json", { headers: user });
    expect(written.record).toMatchObject({ decision: "allow", route: "next" });
    expect(written.seen.map((s) => s.raw_target)).toEqual(["/_next/data/b1/dashboard.json"]);
  });
});
