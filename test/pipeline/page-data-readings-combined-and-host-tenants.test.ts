// A page's data path read every way a framework reads it, and beside routes binding the tenant
// by the host and by the path (route-readings.ts `pagesOfData`, `exposesPageData`,
// `runsAsStrictly`, `movesTenant`): no data path carries a request past its page's rules or
// tenant. Pipeline tests: the real edge, the loopback echo origin and issuer stand-in; they
// assert the audit record's route, reason and detail, and what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import { admins, bearerOf, getRoute as route, signedIn, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { expectAmbiguous, sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

// A Next.js (pages router) origin answers `/_next/data/<build>/<page>.json` with `<page>`'s
// getServerSideProps whatever `<page>` holds, so
// `/_next/data/b1/orgs/acme/settings/page-data/billing/page-data.json` runs
// `pages/orgs/[org]/settings/[[...tab]].tsx` (a settings area with tabs, as a catch-all) with
// org = acme, though Gatsby would read it as another page: every reading counts, and a member
// outside `admins` is refused the admins-only settings page's data however it is spelt.
describe("a Gatsby page-data name inside a Next.js data path is the Next.js page's too", () => {
  // A Next.js origin has no Gatsby layer: it strips `/_next/data/<build>/` and `.json` and runs
  // the page at the rest, `page-data/billing/page-data` under the settings area included.
  const orgApp = () =>
    withIdp(issuer, [
      route("static", "/_next/static/**", "public"),
      route("org-data", "/_next/data/*/orgs/:tenant/**", signedIn()),
      route("settings", "/orgs/:tenant/settings/**", admins()),
      route("org", "/orgs/:tenant/**", signedIn()),
    ]);

  it("acme's member outside admins is refused the settings page's data however the data path is spelt", async () => {
    const edge = harness(orgApp());
    const member = await bearerOf(issuer, { sub: "bob", tenant_id: "acme" });
    // Controls: the settings page refuses the member, and so does its data path as Next.js names it.
    const page = await sendMarked(edge, "/orgs/acme/settings/billing", { headers: member });
    expect(page.record).toMatchObject({ decision: "deny", reason: "forbidden", detail: "group", route: "settings" });
    const plain = await sendMarked(edge, "/_next/data/b1/orgs/acme/settings/billing.json", { headers: member });
    expectAmbiguous(plain);
    expect(plain.record?.detail).toBe("ambiguous_format");

    const sent = await sendMarked(edge, "/_next/data/b1/orgs/acme/settings/page-data/billing/page-data.json", {
      headers: member,
    });
    expect(sent.seen.map((s) => s.raw_target)).toEqual([]);
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_format");
  });
});

// The README (Security model, paths): a reading goes on where "any tenant that route binds is the
// one the edge bound: ... from the host, one both routes capture". A Next.js platform whose
// tenants' sites are `<tenant>.app.example.test` (the `sites` route binds the host's tenant), with
// a data route for org pages written for any host and bound by the path. On globex's site the
// page `/orgs/acme/billing` is `sites`' (globex's, refused to acme's member), and so is its data
// path `/_next/data/b1/orgs/acme/billing.json`, which the origin answers with that page's
// getServerSideProps on globex's site.
describe("a page's route binding the host's tenant, taking the data path as written too, beside a path-bound data route", () => {
  // The data route binds the tenant from its path, the page's route from the host: not one
  // tenant both capture, so the data path is refused as its page is.
  const platform = () =>
    withIdp(issuer, [
      route("org-data", "/_next/data/*/orgs/:tenant/**", signedIn()),
      route("sites", "/**", signedIn(), { host: ":tenant.app.example.test" }),
    ]);

  it("acme's member on globex's site is refused `/orgs/acme/billing`'s data as its page is refused", async () => {
    const edge = harness(platform());
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Control: the page on globex's site is globex's.
    const page = await sendMarked(edge, "https://globex.app.example.test/orgs/acme/billing", { headers: acme });
    expect(page.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "sites" });
    expect(page.seen).toEqual([]);

    const data = await sendMarked(edge, "https://globex.app.example.test/_next/data/b1/orgs/acme/billing.json", {
      headers: acme,
    });
    expect(data.seen.map((s) => s.raw_target)).toEqual([]);
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});
