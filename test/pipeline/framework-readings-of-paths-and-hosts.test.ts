// Paths (and a host) that a common origin framework routes to another route's handler than the
// one the edge matches as written: the framework first rewrites them into what its router
// sees. Each test asserts what the edge decided (reason and detail in the audit record) and
// what reached the real echo origin.
import { beforeAll, describe, expect, it } from "vitest";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { bearerOf, siteWithAdmin, tenantBound } from "../support/guarded-sites";
import { sendMarked, expectAmbiguous } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("a front controller's PATH_INFO, the path Laravel, Symfony and CodeIgniter route, is read as another route's", () => {
  // Laravel's and Symfony's Request::getPathInfo() take the script's own name off the front of
  // REQUEST_URI (prepareBaseUrl: SCRIPT_NAME `/index.php` is a prefix of `/index.php/admin/users`,
  // so the base URL is `/index.php` and the path routed is `/admin/users`); CodeIgniter and Yii
  // route `index.php/<route>` the same way. With Laravel's stock nginx configuration
  // (`try_files $uri $uri/ /index.php?$query_string`) or Apache (AcceptPathInfo on for PHP), that
  // request runs public/index.php, whose router runs the admin controller. Matched as written
  // it is the public site's, and an anonymous caller would get the admin area: it is refused as
  // ambiguous_path_info, as `/admin.php/x` is where `/admin.php` is guarded.
  it("`/index.php/admin/users` is not forwarded as the public site where `/admin/**` is guarded", async () => {
    const edge = harness(siteWithAdmin(issuer));
    // Control: the admin area itself refuses the anonymous caller, and a front-controller path
    // no other route takes goes on; so a forward below is the reading's doing.
    const direct = await sendMarked(edge, "/admin/users");
    expect(direct.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "admin" });
    expect(direct.seen).toHaveLength(0);
    // Under a prefix, the script is the base URL: `/site/index.php/admin/x` is `/site/admin/x`,
    // no other route's here.
    const prefixed = await sendMarked(edge, "/site/index.php/admin/users");
    expect(prefixed.record).toMatchObject({ decision: "allow", route: "site" });
    expect(prefixed.seen.map((s) => s.raw_target)).toEqual(["/site/index.php/admin/users"]);
    const about = await sendMarked(edge, "/index.php/about");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/index.php/about"]);

    const { response, body, record, seen } = await sendMarked(edge, "/index.php/admin/users");
    expect(seen.map((s) => s.raw_target)).toEqual([]);
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
  });

  // The same reading past a tenant binding: Laravel routes `/index.php/v1/tenants/globex/orders`
  // to `v1/tenants/{tenant}/orders` with tenant globex, while the edge matched the broader
  // route, which binds no tenant, for a caller of tenant acme.
  it("`/index.php/v1/tenants/globex/…` is not forwarded, unbound, for a caller of another tenant", async () => {
    const edge = harness(tenantBound(issuer, { name: "tenant-api", path: "/v1/tenants/:tenant/**" }));
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Control: the tenant route refuses acme's caller globex's data when asked directly.
    const direct = await sendMarked(edge, "/v1/tenants/globex/orders", { headers: acme });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-api" });
    expect(direct.seen).toHaveLength(0);

    const { response, record, seen } = await sendMarked(edge, "/index.php/v1/tenants/globex/orders", {
      headers: acme,
    });
    expect(seen.map((s) => s.raw_target)).toEqual([]);
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
  });
});

describe("a Next.js data path, which runs its page's server-side data, is read as that page's route", () => {
  // The Pages Router serves every page's getServerSideProps (or getStaticProps) as JSON at
  // `/_next/data/<buildId>/<page>.json` (`index.json` for `/`): its NextDataPathnameNormalizer
  // takes the prefix and `.json` off and routes `/admin/users`, the page the client-side router
  // asks for on navigation. The build ID is in every page's `__NEXT_DATA__`, so any visitor has
  // it. Matched as written, `/_next/data/b1/admin/users.json` is the public site's, and an
  // anonymous caller would read the admin page's data: it is refused like a format suffix
  // hiding another route's path (bad_request, an `ambiguous_*` detail).
  it.each([
    ["a page below the guarded area", "/_next/data/b1/admin/users.json"],
    ["the guarded area's own page", "/_next/data/b1/admin.json"],
  ])("%s (%s) is not forwarded as the public site", async (_label, path) => {
    const edge = harness(siteWithAdmin(issuer));
    // Control: a public page's data and a static chunk go on as sent.
    for (const open of ["/_next/data/b1/about.json", "/_next/static/chunks/main-1a2b.js"]) {
      const sent = await sendMarked(edge, open);
      expect(sent.record, open).toMatchObject({ decision: "allow", route: "site" });
      expect(sent.seen.map((s) => s.raw_target)).toEqual([open]);
    }

    const data = await sendMarked(edge, path);
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

describe("a host with more labels than a `:tenant` host's capture does not fall through to a host-less route", () => {
  // `:tenant.tenants.example.com` captures one label, so `globex.acme.tenants.example.com` misses
  // the tenant route, and the host-less route behind it would take it, binding no tenant, with
  // `X-Forwarded-Host: globex.acme.tenants.example.com`. Rails takes the host from
  // X-Forwarded-Host unconditionally, and the Apartment gem's Subdomain elevator (its documented
  // way to pick a tenant from the host) switches to the first label below the registered
  // domain, `globex`: a caller of tenant acme would run in globex's schema. As for a host with
  // an empty label, the fall-through is refused (`ambiguous_host`). (It needs the
  // name to resolve to the zone, as a wildcard DNS record for tenant hosts makes it, and the
  // same application behind the host-less route, as with a marketing site on the apex.)
  it("`globex.acme.<tenant suffix>` is refused ambiguous_host, not forwarded unbound for acme's caller", async () => {
    const edge = harness(
      tenantBound(issuer, { name: "tenant-host", path: "/app/**", host: ":tenant.tenants.example.test" }),
    );
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Control: globex's own host refuses acme's caller.
    const direct = await sendMarked(edge, "https://globex.tenants.example.test/app/orders", { headers: acme });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-host" });
    expect(direct.seen).toHaveLength(0);

    // Control: a tenant host's path no tenant route takes goes to the route for any host, as
    // before (the host is one label under the suffix: the origin reads the same tenant).
    const other = await sendMarked(edge, "https://acme.tenants.example.test/status", { headers: acme });
    expect(other.record).toMatchObject({ decision: "allow", route: "any" });
    expect(other.seen.map((s) => s.headers["x-forwarded-host"])).toEqual(["acme.tenants.example.test"]);

    const { response, record, seen } = await sendMarked(edge, "https://globex.acme.tenants.example.test/app/orders", {
      headers: acme,
    });
    expect(seen.map((s) => s.headers["x-forwarded-host"])).toEqual([]);
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_host", route: null });
  });
});
