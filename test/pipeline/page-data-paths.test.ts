// More paths that a common origin framework routes to another route's handler than the one the
// edge matches as written: the data paths of SvelteKit, Nuxt and React Router, which run a
// page's server-side loader, and a Next.js data path under a base path. Each test asserts what
// the edge decided (reason and detail in the audit record) and what reached the real echo
// origin.
import { beforeAll, describe, expect, it } from "vitest";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { bearerOf, siteWithAdminPage, siteWithSignedInHome, tenantBound, withIdp } from "../support/guarded-sites";
import { sendMarked, expectAmbiguous } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

// SvelteKit (respond.js): a path ending `/__data.json` is a data request; it strips the suffix
// (`strip_data_suffix(url.pathname) || '/'`) and routes what is left, running that page's
// server `load` functions and answering their data as JSON. The client router asks for it on
// every navigation, so it is always on. Nuxt 3's renderer does the same for a path ending
// `/_payload.json` (PAYLOAD_URL_RE; `url.substring(0, url.lastIndexOf('/')) || '/'`): it renders
// the page and answers its payload, the data its useFetch/useAsyncData calls fetched on the
// server (Nuxt 3 at runtime; Nuxt 4 only where payload extraction is on for the route).
// React Router v7's single fetch (and Remix v2's) takes `.data` off the end of the path, then
// one trailing slash, so `/admin/.data` runs the `/admin` route's loaders (`/_root.data` the
// root's): the edge refuses `/admin.data` as a format suffix, but a name with a leading dot
// has no format, so `/admin/.data` goes on.
// With `/admin` guarded before a public `/**`, each of these paths is the public site's as
// written and the admin page's at the origin: an anonymous caller reads the admin page's
// loader data. Like a Next.js data path, each is refused as another route's.
describe("a page's data path (SvelteKit __data.json, Nuxt _payload.json, React Router .data) is read as that page's route", () => {
  it.each([
    ["SvelteKit", "/admin/__data.json", "/about/__data.json"],
    ["Nuxt", "/admin/_payload.json", "/about/_payload.json"],
    ["React Router", "/admin/.data", "/about/.data"],
  ])("%s's %s is not forwarded as the public site where the /admin page is guarded", async (_framework, path, open) => {
    const edge = harness(siteWithAdminPage(issuer));
    // Control: the page itself refuses the anonymous caller, and another page's data path,
    // which no other route takes, goes on as sent; so a forward below is the reading's doing.
    const direct = await sendMarked(edge, "/admin");
    expect(direct.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "admin" });
    expect(direct.seen).toHaveLength(0);
    const about = await sendMarked(edge, open);
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual([open]);

    const data = await sendMarked(edge, path);
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });

  // The root page's data: SvelteKit's `/__data.json` and Nuxt's `/_payload.json` strip to `/`,
  // React Router's `/_root.data` and Next.js's `index.json` are `/` by name. A signed-in dashboard at `/` would hand its
  // data to an anonymous caller through the public site.
  it.each([
    ["SvelteKit", "/__data.json"],
    ["Nuxt", "/_payload.json"],
    ["React Router", "/_root.data"],
    ["Next.js", "/_next/data/b1/index.json"],
  ])("%s's %s is not forwarded as the public site where the / page is signed-in", async (_framework, path) => {
    const edge = harness(siteWithSignedInHome(issuer));
    const direct = await sendMarked(edge, "/");
    expect(direct.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "home" });
    expect(direct.seen).toHaveLength(0);

    const data = await sendMarked(edge, path);
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });

  // The same reading past a tenant binding: SvelteKit runs `/t/[tenant]`'s load with tenant
  // globex for `/t/globex/__data.json`, which the edge matched as the broader route, binding
  // no tenant, for a caller of tenant acme; an origin that trusts the edge's binding serves
  // globex's data to acme's caller.
  it.each([
    ["SvelteKit", "/t/globex/__data.json"],
    ["Nuxt", "/t/globex/_payload.json"],
    ["React Router", "/t/globex/.data"],
  ])("%s's %s is not forwarded, unbound, for a caller of tenant acme", async (_framework, path) => {
    const edge = harness(tenantBound(issuer, { name: "tenant-page", path: "/t/:tenant" }));
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Control: the tenant page refuses acme's caller globex's page when asked directly.
    const direct = await sendMarked(edge, "/t/globex", { headers: acme });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-page" });
    expect(direct.seen).toHaveLength(0);

    // Refused as another route's path (the tenant page's data), as at the top of this
    // describe: never under the broader route's rules, which bind no tenant.
    const sent = await sendMarked(edge, path, { headers: acme });
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_format");
    expect(sent.record?.route).not.toBe("any");
  });
});

// Next.js with `basePath` (an app served under a prefix, as behind a shared edge): every URL of
// the app, `_next` assets and data included, is under it, so a page's server-side data is at
// `<basePath>/_next/data/<build>/<page>.json` (the client's getDataHref; the router's
// normalizeNextDataUrl takes `${basePath}/_next/data/${buildId}/` and `.json` off and routes
// `${basePath}/<page>`). The edge reads a data path only at the root, so with `/shop/admin/**`
// guarded before a public `/shop/**`, `/shop/_next/data/b1/admin/users.json` is the public
// site's as written and the admin page's data at the origin.
describe("a Next.js data path under the app's basePath is read as its page's route", () => {
  it("`/shop/_next/data/b1/admin/users.json` is not forwarded as the public site where `/shop/admin/**` is guarded", async () => {
    const edge = harness(
      withIdp(issuer, [
        {
          name: "admin",
          methods: ["GET"],
          path: "/shop/admin/**",
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "echo",
        },
        { name: "shop", methods: ["GET"], path: "/shop/**", auth: "public", upstream: "echo" },
      ]),
    );
    // Control: the page refuses the anonymous caller, and a public page's data goes on.
    const direct = await sendMarked(edge, "/shop/admin/users");
    expect(direct.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "admin" });
    expect(direct.seen).toHaveLength(0);
    const about = await sendMarked(edge, "/shop/_next/data/b1/about.json");
    expect(about.record).toMatchObject({ decision: "allow", route: "shop" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/shop/_next/data/b1/about.json"]);

    const data = await sendMarked(edge, "/shop/_next/data/b1/admin/users.json");
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

// React Router's single-fetch data path written the usual way, `<page>.data`, is a format
// suffix to the edge: refused where the page is another route's (`/admin.data`), and left to
// the route that takes the page where that route takes the data path too.
describe("React Router's `<page>.data` is read as its page", () => {
  it("`/admin.data` is refused ambiguous_format where the /admin page is guarded; `/about.data` goes on", async () => {
    const edge = harness(siteWithAdminPage(issuer));
    const about = await sendMarked(edge, "/about.data");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/about.data"]);

    const sent = await sendMarked(edge, "/admin.data");
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_format");
  });
});

describe("a Gatsby page-data path is read as its page", () => {
  // Gatsby serves a page's data at `/page-data/<page>/page-data.json` (`index` for `/`), and
  // computes it per request for a server-rendered page (`getServerData`): the page's own data,
  // to any visitor who asks for that path.
  it.each([
    ["/page-data/admin/page-data.json", siteWithAdminPage],
    ["/page-data/index/page-data.json", siteWithSignedInHome],
  ])("%s is refused where its page is guarded, and another page's goes on", async (path, policy) => {
    const edge = harness(policy(issuer));
    const open = await sendMarked(edge, "/page-data/about/page-data.json");
    expect(open.record).toMatchObject({ decision: "allow", route: "site" });
    expect(open.seen.map((s) => s.raw_target)).toEqual(["/page-data/about/page-data.json"]);
    const sent = await sendMarked(edge, path);
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_format");
  });
});

describe("a static export's index file is read as its directory's page", () => {
  // A site exported to static files (Next.js `output: "export"` with trailing slashes, Astro,
  // Hugo) has `/admin/index.html` for the `/admin` page, which nginx, S3 or Pages serve at
  // either path: with `/admin` guarded before a public `/**`, the file is the page.
  it.each(["/admin/index.html", "/admin/index.htm", "/admin/default.htm"])(
    "%s is refused where /admin is guarded",
    async (path) => {
      const edge = harness(siteWithAdminPage(issuer));
      const other = await sendMarked(edge, "/about/index.html");
      expect(other.record).toMatchObject({ decision: "allow", route: "site" });
      expect(other.seen.map((s) => s.raw_target)).toEqual(["/about/index.html"]);
      const sent = await sendMarked(edge, path);
      expectAmbiguous(sent);
      expect(sent.record?.detail).toBe("ambiguous_path_info");
    },
  );
});
