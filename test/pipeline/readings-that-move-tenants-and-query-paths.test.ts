// A path read as another route's goes on where the route that took it guards at least as well
// (route-readings.ts `runsAsStrictly`): here the readings beside that rule — a front
// controller's reading that moves the matched route's own `:tenant`, CodeIgniter's query path
// under a public home page, and the rule on `:tenant` hosts. Each test drives the real pipeline
// against the loopback echo origin and issuer stand-in, and asserts the audit record's route,
// reason and detail and what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import { bearerOf, getRoute as route, signedIn, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { expectAmbiguous, sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("a front controller's reading that moves the matched route's own :tenant", () => {
  // `/*/:tenant/**` (a region or locale before the tenant: `/eu/acme/orders`) binds the second
  // segment. Laravel and Symfony at the web root route `/index.php/acme/globex/orders` as
  // `/acme/globex/orders` (Request::prepareBaseUrl: SCRIPT_NAME `/index.php` prefixes the
  // request URI, so it is the base URL), where their `{region}/{tenant}/orders` route takes
  // tenant `globex`, while the edge bound `acme` (the `*` took `index.php`): the reading lands on
  // the same route, for another tenant, and is refused.
  const tenantArea = () => withIdp(issuer, [route("tenant-area", "/*/:tenant/**", signedIn())]);

  it("`/index.php/acme/globex/orders` is refused as ambiguous_path_info for acme's caller, not forwarded", async () => {
    const edge = harness(tenantArea());
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Controls: the caller's own tenant goes on; globex's is refused when asked directly.
    const own = await sendMarked(edge, "/eu/acme/orders", { headers: acme });
    expect(own.record).toMatchObject({ decision: "allow", route: "tenant-area" });
    expect(own.seen.map((s) => s.raw_target)).toEqual(["/eu/acme/orders"]);
    const direct = await sendMarked(edge, "/eu/globex/orders", { headers: acme });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-area" });
    expect(direct.seen).toEqual([]);

    const moved = await sendMarked(edge, "/index.php/acme/globex/orders", { headers: acme });
    expectAmbiguous(moved);
    expect(moved.record?.detail).toBe("ambiguous_path_info");
  });
});

describe("CodeIgniter's query path under a public home page before a signed-in /**", () => {
  // A public landing page at `/` before a signed-in `/**` (the app) is the common SaaS shape.
  // CodeIgniter 3's URI::_parse_request_uri (its default uri_protocol, REQUEST_URI; CodeIgniter
  // 4 keeps the code) routes `/?/admin/users` as `/admin/users`. The edge matched the public
  // `home`, which asks nothing of a caller: the query's route, `/**`, asks more, so the request
  // is refused, or an anonymous caller would run every controller of the app.
  const landing = () => withIdp(issuer, [route("home", "/", "public"), route("app", "/**", signedIn())]);

  it("`/?/admin/users` is refused as ambiguous_path_info for an anonymous caller, not forwarded", async () => {
    const edge = harness(landing());
    // Controls: the app refuses the anonymous caller when asked by path; the landing page and a
    // query that is no path go on under `home`.
    const direct = await sendMarked(edge, "/admin/users");
    expect(direct.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "app" });
    expect(direct.seen).toEqual([]);
    const page = await sendMarked(edge, "/?utm_source=ad");
    expect(page.record).toMatchObject({ decision: "allow", route: "home" });
    expect(page.seen.map((s) => s.raw_target)).toEqual(["/?utm_source=ad"]);

    const queried = await sendMarked(edge, "/?/admin/users");
    expectAmbiguous(queried);
    expect(queried.record?.detail).toBe("ambiguous_path_info");
  });
});

describe("a reading on `:tenant` hosts, where no reading moves the tenant", () => {
  // Springdoc's public `/swagger-ui.html` beside a public `/swagger-ui/**`, on a shop platform's
  // `:tenant` hosts: a path reading cannot move a host label (the route read is looked up on the
  // same host), so the request goes on as on a fixed host.
  const docs = (host: string) =>
    withIdp(issuer, [
      route("docs-page", "/swagger-ui.html", "public", { host }),
      route("docs", "/swagger-ui/**", "public", { host }),
    ]);

  it("a public `/swagger-ui.html` beside a public `/swagger-ui/**` on a shop's host goes on", async () => {
    // Control: on a fixed host, springdoc's public pages go on.
    const fixed = await sendMarked(harness(docs("api.example.test")), "https://api.example.test/swagger-ui.html");
    expect(fixed.record).toMatchObject({ decision: "allow", route: "docs-page" });
    expect(fixed.seen.map((s) => s.raw_target)).toEqual(["/swagger-ui.html"]);

    const shop = await sendMarked(
      harness(docs(":tenant.shops.example.test")),
      "https://acme.shops.example.test/swagger-ui.html",
    );
    expect({ status: shop.response.status, record: shop.record }, shop.record?.detail ?? "").toMatchObject({
      status: 200,
      record: { decision: "allow", route: "docs-page" },
    });
    expect(shop.seen.map((s) => s.raw_target)).toEqual(["/swagger-ui.html"]);
  });
});

describe("a reading to a route that binds the tenant by its path", () => {
  // On a tenant's host the matched `/**` binds the host's tenant, so it admits no caller the
  // tenant route `/v1/:tenant` (for any host) refuses; but Laravel on acme's host routes
  // `/index.php/v1/globex` as `/v1/globex`, `v1/{tenant}` with tenant globex, a segment the edge
  // bound to no one: refused.
  it("`/index.php/v1/globex` on acme's host is refused for acme's caller, read as the path-bound tenant route", async () => {
    const host = ":tenant.app.example.test";
    const edge = harness(
      withIdp(issuer, [route("tenant-home", "/v1/:tenant", signedIn()), route("app", "/**", signedIn(), { host })]),
    );
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Controls: acme's own host serves its caller under `app`; globex's tenant route refuses it.
    const own = await sendMarked(edge, "https://acme.app.example.test/index.php/reports", { headers: acme });
    expect(own.record).toMatchObject({ decision: "allow", route: "app" });
    expect(own.seen.map((s) => s.raw_target)).toEqual(["/index.php/reports"]);
    const direct = await sendMarked(edge, "https://acme.app.example.test/v1/globex", { headers: acme });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-home" });
    expect(direct.seen).toEqual([]);

    const read = await sendMarked(edge, "https://acme.app.example.test/index.php/v1/globex", { headers: acme });
    expectAmbiguous(read);
    expect(read.record?.detail).toBe("ambiguous_path_info");
  });
});
