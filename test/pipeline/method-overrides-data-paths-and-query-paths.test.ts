// More of what origins read otherwise than the edge matches: a method override in the query as
// ASP.NET MVC reads it, page data paths in the forms Next.js and React Router also take, a path
// in the query (CodeIgniter), a host with several labels under a `:tenant` suffix however spelt;
// and a Refresh header read in linear time. The comment above each test says which framework
// or browser reads the request so.
import { beforeAll, describe, expect, it } from "vitest";
import { upstreamUrlsOnEdge } from "../../src/core/origin-response";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { siteWithAdmin, siteWithAdminPage, tenantBound, withIdp } from "../support/guarded-sites";
import { sendMarked, expectAmbiguous } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("ASP.NET MVC's X-HTTP-Method-Override query parameter does not reach the origin", () => {
  // ASP.NET MVC 5 (System.Web.Mvc, HttpRequestExtensions.GetHttpMethodOverride) takes a POST's
  // method from the `X-HTTP-Method-Override` header, else the form field, else the QUERY STRING
  // parameter of that name (its own tests: "Can override POST with query string PUT"), and every
  // `[HttpDelete]`/`[HttpPut]`/`[AcceptVerbs]` selector routes by it (any verb but GET and POST).
  // The query is a NameValueCollection, so the name is read in any case. The edge strips the
  // header and takes `_method` out of the query, and the README says "nothing that tells an
  // origin to run another one reaches it": `POST /items/7?X-HTTP-Method-Override=DELETE`,
  // authorised as the POST a route grants, must not reach an ASP.NET MVC origin as the DELETE
  // it does not.
  const postOnly = (): PolicyDocument =>
    basePolicy({
      routes: [{ name: "items", methods: ["POST"], path: "/items/**", auth: "public", upstream: "echo" }],
    });

  it.each(["X-HTTP-Method-Override=DELETE&keep=1", "keep=1&x-http-method-override=DELETE"])(
    "`POST /items/7?%s` reaches the origin without the override",
    async (query) => {
      const edge = harness(postOnly());
      // Control: `_method`, the override the edge already takes out, is gone from the same query.
      const control = await sendMarked(edge, "/items/7?_method=DELETE&keep=1", { method: "POST", body: "x" });
      expect(control.seen.map((s) => [s.method, s.query])).toEqual([["POST", "keep=1"]]);

      const { response, seen, record } = await sendMarked(edge, `/items/7?${query}`, { method: "POST", body: "x" });
      expect(response.status).toBe(200);
      expect(record).toMatchObject({ decision: "allow", route: "items", method: "POST" });
      expect(seen.map((s) => [s.method, s.query])).toEqual([["POST", "keep=1"]]);
    },
  );
});

describe("a Next.js data path with a leading `index` segment is the page without it", () => {
  // Next.js routes a data path by its NextDataPathnameNormalizer, which takes
  // `/_next/data/<build>` and `.json` off and then calls denormalizePagePath: `/index/foo` →
  // `/foo` (for any page not dynamic; the inverse of normalizePagePath, which writes a page
  // whose own path starts with `/index` as `/index/index/…`). So
  // `/_next/data/b1/index/admin/users.json` runs `/admin/users`'s getServerSideProps. Read as
  // `/index/admin/users`, the public site's, an anonymous caller would read the guarded page's
  // server-side data (the build ID is in every page's `__NEXT_DATA__`).
  it("`/_next/data/b1/index/admin/users.json` is not forwarded as the public site where `/admin/**` is guarded", async () => {
    const edge = harness(siteWithAdmin(issuer));
    // Control: the same page's data without `index/` is refused, and a public page's data with
    // it goes on: a refusal below is the reading's, not one of every `index/`.
    const plain = await sendMarked(edge, "/_next/data/b1/admin/users.json");
    expect(plain.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_format" });
    const about = await sendMarked(edge, "/_next/data/b1/index/about.json");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/_next/data/b1/index/about.json"]);

    const data = await sendMarked(edge, "/_next/data/b1/index/admin/users.json");
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

describe("React Router data paths under a basename and for a trailing slash", () => {
  // React Router v7's server (getNormalizedPath / normalizePath in server-runtime) reads
  // `stripBasename(pathname, basename) === "/_root.data"` as the basename's own page: with
  // `basename: "/shop"` in react-router.config.ts, the client asks for `/shop/_root.data` on
  // every navigation to `/shop`, and the server runs that page's loaders for it. With `/shop`
  // signed-in before a public `/shop/**` (the README's `/` before `/**`, under a base), read
  // otherwise an anonymous caller would get the signed-in page's loader data.
  it("`/shop/_root.data` is not forwarded as the public `/shop/**` where the `/shop` page is signed-in", async () => {
    const edge = harness(
      withIdp(issuer, [
        { name: "home", methods: ["GET"], path: "/shop", auth: { issuers: ["idp"] }, upstream: "echo" },
        { name: "shop", methods: ["GET"], path: "/shop/**", auth: "public", upstream: "echo" },
      ]),
    );
    const direct = await sendMarked(edge, "/shop");
    expect(direct.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "home" });
    expect(direct.seen).toHaveLength(0);
    // Control: a public page's data under the base goes on.
    const about = await sendMarked(edge, "/shop/about.data");
    expect(about.record).toMatchObject({ decision: "allow", route: "shop" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/shop/about.data"]);

    const data = await sendMarked(edge, "/shop/_root.data");
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });

  // With the `v8_trailingSlashAwareDataRequests` future flag (`unstable_…` before it; the
  // default to come in v8), the client asks for `/admin/` as `/admin/_.data`, and the same
  // server function takes `_.data` off a path ending `/_.data`: `/admin/`, which the edge
  // itself matches as `/admin`; read as a format suffix, `/admin/_`, it would be the public
  // site's.
  it("`/admin/_.data` is not forwarded as the public site where the `/admin` page is guarded", async () => {
    const edge = harness(siteWithAdminPage(issuer));
    const about = await sendMarked(edge, "/about/_.data");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/about/_.data"]);

    const data = await sendMarked(edge, "/admin/_.data");
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

describe("CodeIgniter's front controller routes a query that begins with `/`", () => {
  // The README names CodeIgniter among the front controllers read past their script
  // (`/index.php/admin/users` as `/admin/users`). CodeIgniter 3's URI::_parse_request_uri (its
  // default uri_protocol, REQUEST_URI; CodeIgniter 4 keeps the same code) also routes the query
  // when the path left after the script, or its directory, is empty and the query begins with
  // `/`: "so that even on servers that require the URI to be in the query string (Nginx) a
  // correct URI is found". So `/index.php?/admin/users` and `/?/admin/users` run the admin
  // controller, whatever the web server's configuration. Matched as written they are the public
  // site's `/index.php` and `/`: they are refused as `ambiguous_path_info`.
  it.each(["/index.php?/admin/users", "/?/admin/users"])(
    "`%s` is not forwarded as the public site where `/admin/**` is guarded",
    async (target) => {
      const edge = harness(siteWithAdmin(issuer));
      // Control: the path form, which the edge already reads so, is refused; a query that is
      // no path goes on.
      const pathForm = await sendMarked(edge, "/index.php/admin/users");
      expect(pathForm.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
      expect(pathForm.seen).toHaveLength(0);
      const plain = await sendMarked(edge, "/index.php?page=2");
      expect(plain.record).toMatchObject({ decision: "allow", route: "site" });
      expect(plain.seen.map((s) => s.raw_target)).toEqual(["/index.php?page=2"]);

      const sent = await sendMarked(edge, target);
      expectAmbiguous(sent);
      expect(sent.record?.detail).toBe("ambiguous_path_info");
    },
  );

  it("a query path this route takes too goes on; one under a script in a directory is read there; one that is no path is refused", async () => {
    const edge = harness(siteWithAdmin(issuer));
    // `/?/about` is the site's either way: forwarded as sent.
    const about = await sendMarked(edge, "/?/about");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/?/about"]);
    // Under `/blog/index.php`, CodeIgniter's base is `/blog`: `?/admin/users` is
    // `/blog/admin/users`, the site's too.
    const blog = await sendMarked(edge, "/blog/index.php?/admin/users");
    expect(blog.record).toMatchObject({ decision: "allow", route: "site" });
    expect(blog.seen.map((s) => s.raw_target)).toEqual(["/blog/index.php?/admin/users"]);
    // A query path the canonical path refuses (an encoded slash) has no reading to check.
    const refused = await sendMarked(edge, "/?/public%2F..%2Fadmin/users");
    expect(refused.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    expect(refused.seen).toHaveLength(0);
    // Dot segments in it are resolved as the origin's own would be: `/?/x/../admin/users` is admin's.
    const dotted = await sendMarked(edge, "/?/x/../admin/users");
    expectAmbiguous(dotted);
    expect(dotted.record?.detail).toBe("ambiguous_path_info");
  });
});

describe("a Refresh header from the origin costs the edge CPU linear in its length", () => {
  // A pattern for `Refresh` that began `^(\s*[\d.]*\s*[;,]` would, on a value that starts with
  // a long run of `\s` characters and has no `;` or `,` after it, let the two `\s*` share the
  // run, and the engine try every split of it, n²/2 steps. The runtime trims only spaces and
  // tabs from a header value; a vertical tab (0x0B), form feed or U+00A0 is kept, and `\s`
  // matches it. Checked by hand against a raw-socket origin on loopback: the runtime hands on
  // a 200,000-byte `Refresh` of 0x0B, and one of 30,000 took the edge about 0.7 s of CPU for the
  // one answer, so 200,000 take some 30 s: an origin (a user-content one, or one compromised,
  // as the README's Set-Cookie bound has in mind) makes each answer on its route exceed the
  // Worker's CPU limit. The echo origin cannot send such a header, so the field is given to the
  // function the forward stage calls. The timeout is a hang guard only: linear work on this
  // value takes about a millisecond.
  it("a 150,000-character Refresh of vertical tabs is read in linear time, and goes on as sent", () => {
    const value = `${"\v".repeat(150_000)}x`;
    const headers = new Headers({ refresh: value });
    upstreamUrlsOnEdge(headers, "https://origin.internal", "https://edge.example.com");
    expect(headers.get("refresh")).toBe(value);
  }, 10_000);
});

describe("a host with several labels under a `:tenant` host's suffix, however spelt", () => {
  // The route stage reads the host as matching does (lower case, port and one trailing dot off),
  // and the URL parser has made an IDN label its punycode, one label of letters, digits and `-`:
  // so no spelling of `globex.acme.<suffix>` reaches the route for any host, and a one-label IDN
  // tenant host is the tenant route's, not refused.
  const tenantHosts = () =>
    tenantBound(issuer, { name: "tenant-host", path: "/app/**", host: ":tenant.tenants.example.test" });

  it.each([
    ["upper case", "https://GLOBEX.Acme.Tenants.Example.Test/app/orders"],
    ["a port", "https://globex.acme.tenants.example.test:8443/app/orders"],
    ["a trailing dot", "https://globex.acme.tenants.example.test./app/orders"],
    ["an IDN label", "https://globex.b\u00fccher.tenants.example.test/app/orders"],
  ])("with %s is refused ambiguous_host, never forwarded", async (_label, url) => {
    const edge = harness(tenantHosts());
    const { response, record, seen } = await sendMarked(edge, url);
    expect(seen).toHaveLength(0);
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_host", route: null });
  });

  it("a one-label IDN tenant host is the tenant route's (its punycode label), not refused", async () => {
    const edge = harness(tenantHosts());
    const { record, seen } = await sendMarked(edge, "https://b\u00fccher.tenants.example.test/app/orders");
    // The tenant route took it: the anonymous caller is refused there, not as an ambiguous host.
    expect(record).toMatchObject({ decision: "deny", reason: "token_missing", route: "tenant-host" });
    expect(seen).toHaveLength(0);
  });
});
