// Readings of a path that combine a script's PATH_INFO with its directory's index, a Next.js
// static export's page payload (`index.txt`), and ColdFusion's front controller (route-readings.ts):
// requests that would reach the origin under one route's rules while the origin runs the page
// another route guards are refused. Each test drives the real pipeline against the loopback
// echo origin and issuer stand-in, and asserts the audit record's reason and detail and what
// reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import { siteWithAdmin, siteWithAdminPage, siteWithSignedInHome } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { expectAmbiguous, sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("a script's PATH_INFO where the script is its directory's index", () => {
  // The edge reads `/admin.php/x` as `/admin.php` (Apache's AcceptPathInfo, on for PHP's
  // handler; nginx's stock `fastcgi_split_path_info ^(.+\.php)(/.+)$`; IIS for `.aspx`) and
  // `/index.php`, `/default.aspx` and `/admin/index.php` as their directory's page; it reads the
  // first reading again as the second: the script `/admin/index.php/x` runs is
  // `/admin/index.php`, the `/admin` page itself, with PATH_INFO `/x` it may ignore, and IIS's
  // `/default.aspx/x` runs default.aspx with Request.PathInfo `/x`.
  it("`/admin/index.php/x` is refused where the /admin page is guarded, as `/admin/index.php` is", async () => {
    const edge = harness(siteWithAdminPage(issuer));
    // Controls: the page and its index script alone are refused for an anonymous caller; another
    // directory's index script with PATH_INFO goes on as the public site.
    const page = await sendMarked(edge, "/admin");
    expect(page.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "admin" });
    const script = await sendMarked(edge, "/admin/index.php");
    expectAmbiguous(script);
    expect(script.record?.detail).toBe("ambiguous_path_info");
    const about = await sendMarked(edge, "/about/index.php/x");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/about/index.php/x"]);

    const withPathInfo = await sendMarked(edge, "/admin/index.php/x");
    expectAmbiguous(withPathInfo);
    expect(withPathInfo.record?.detail).toBe("ambiguous_path_info");
  });

  it.each(["/index.php/x", "/default.aspx/x"])(
    "%s is refused where the home page `/` is signed-in, as the script alone is",
    async (path) => {
      const edge = harness(siteWithSignedInHome(issuer));
      // Control: the script alone is the home page, and refused.
      const script = await sendMarked(edge, path.slice(0, path.lastIndexOf("/")));
      expectAmbiguous(script);
      expect(script.record?.detail).toBe("ambiguous_path_info");

      const withPathInfo = await sendMarked(edge, path);
      expectAmbiguous(withPathInfo);
      expect(withPathInfo.record?.detail).toBe("ambiguous_path_info");
    },
  );
});

describe("a Next.js static export's RSC payload for a directory's page, `index.txt`", () => {
  // Next.js's App Router with `output: "export"` writes each page's React Server Components
  // payload beside its HTML, which the client router fetches on navigation: `out/about.txt` for
  // `/about`, `out/index.txt` for `/` always, and with `trailingSlash: true` `out/about/index.txt`
  // (vercel/next.js#73427, #97608). The payload carries everything the page renders, so
  // `/admin/index.txt` is the `/admin` page's as `/admin/index.html` is.
  it("`/admin/index.txt` is refused where the /admin page is guarded, as `/admin/index.html` is", async () => {
    const edge = harness(siteWithAdminPage(issuer));
    // Controls: the exported HTML of the page, and its payload without trailing slashes, are
    // refused; another page's payload goes on.
    const html = await sendMarked(edge, "/admin/index.html");
    expectAmbiguous(html);
    const flat = await sendMarked(edge, "/admin.txt");
    expectAmbiguous(flat);
    const about = await sendMarked(edge, "/about/index.txt");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/about/index.txt"]);

    const payload = await sendMarked(edge, "/admin/index.txt");
    expectAmbiguous(payload);
  });

  it("`/index.txt` is refused where the home page `/` is signed-in, as `/index.html` is", async () => {
    const edge = harness(siteWithSignedInHome(issuer));
    const html = await sendMarked(edge, "/index.html");
    expectAmbiguous(html);

    const payload = await sendMarked(edge, "/index.txt");
    expectAmbiguous(payload);
  });
});

describe("a ColdFusion front controller, `index.cfm`, with the route as its PATH_INFO", () => {
  // ColdBox routes `/index.cfm/admin/users` as `/admin/users` (its application templates route
  // so by default), as FW/1 and Taffy do (their stock rewrite is `^(.*)$ index.cfm/$1`); Lucee's
  // and Adobe ColdFusion's connectors hand `/index.cfm/*` to the CFML servlet with the rest as
  // CGI.PATH_INFO: the same front-controller reading as Laravel's `/index.php/admin/users`.
  it("`/index.cfm/admin/users` is refused where `/admin/**` is guarded, as `/index.php/admin/users` is", async () => {
    const edge = harness(siteWithAdmin(issuer));
    // Controls: the admin area refuses an anonymous caller, Laravel's spelling of the same
    // request is refused, and the front controller with a public route goes on.
    const direct = await sendMarked(edge, "/admin/users");
    expect(direct.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "admin" });
    const php = await sendMarked(edge, "/index.php/admin/users");
    expectAmbiguous(php);
    expect(php.record?.detail).toBe("ambiguous_path_info");
    const about = await sendMarked(edge, "/index.cfm/about");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/index.cfm/about"]);

    const cfml = await sendMarked(edge, "/index.cfm/admin/users");
    expectAmbiguous(cfml);
    expect(cfml.record?.detail).toBe("ambiguous_path_info");
  });
});
