// CodeIgniter's path in the query at its edges: the query the origin is sent (less what the
// edge takes out of it), dot segments CodeIgniter drops rather than resolves, a front
// controller reached by its directory, SvelteKit's form actions that look the same, and
// hostile query paths. The comment above each test names the framework that reads the request
// so.
import { beforeAll, describe, expect, it } from "vitest";
import { bearerOf, siteWithAdmin, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("the query path is judged in the query the origin is sent", () => {
  // The route stage reads CodeIgniter's path from the query as the client sent it
  // (`c.get("url").search`), but the forward stage sends the origin `originQuery(search)`: the
  // same query minus every `_method`, `X-HTTP-Method-Override`, `__tenant` (and, on a public
  // route, `access_token`). A query that begins with one of those and then a path does not begin
  // with `/` as sent, so it is not read; once the first parameter is taken out, what reaches the
  // origin is `?/admin/users`, which CodeIgniter 3's URI::_parse_request_uri (and CodeIgniter
  // 4's, the same code) routes as `/admin/users` at `/` or `/index.php`. With `/admin/**` guarded
  // before a public `/**`, an anonymous caller runs the admin controller: the very request the
  // README says is refused (`/?/admin/users`), reached by prefixing `_method=x&`. The check
  // judges the query the origin is sent.
  it.each([
    ["/?_method=x&/admin/users", "/?/admin/users"],
    ["/index.php?X-HTTP-Method-Override=GET&/admin/users", "/index.php?/admin/users"],
    ["/?__tenant=acme&/admin/users", "/?/admin/users"],
    ["/?_method=x;/admin/users", "/?/admin/users"],
  ])("`%s` (sent to the origin as `%s`) is not forwarded as the public site", async (target, sentAs) => {
    const edge = harness(siteWithAdmin(issuer));
    // Control: the query path as the origin would receive it is refused when sent so.
    const direct = await sendMarked(edge, sentAs);
    expect(direct.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    expect(direct.seen).toHaveLength(0);
    // Control: the same prefix before a page the site takes goes on, and the origin is sent
    // the query without it: the form the refusal below is judged in.
    const about = await sendMarked(edge, target.replace("/admin/users", "/about"));
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual([sentAs.replace("/admin/users", "/about")]);

    const { response, body, record, seen } = await sendMarked(edge, target);
    expect(seen.map((s) => s.raw_target)).toEqual([]);
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
  });
});

describe("a query path an origin reads as another route's again is refused as the path would be", () => {
  // The path in the query is a path to the origin like any other: one routing without regard
  // to letter case (CodeIgniter on a case-insensitive file system, an app's own router) runs
  // `/ADMIN/users` as `/admin/users`, one normalising Unicode `/ｶﾌｪ/menu` as `/カフェ/menu`; the
  // same paths sent as paths are refused (`ambiguous_case`, `ambiguous_segment`).
  it.each([
    ["/?/ADMIN/users", "/ADMIN/users", "ambiguous_case"],
    ["/index.php?/Admin/users", "/Admin/users", "ambiguous_case"],
    ["/?/adm%C4%B0n/users", "/adm%C4%B0n/users", "ambiguous_case"],
  ])("`%s` is not forwarded as the public site where `/admin/**` is guarded", async (target, asPath, pathDetail) => {
    const edge = harness(siteWithAdmin(issuer));
    const direct = await sendMarked(edge, asPath);
    expect(direct.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: pathDetail });
    const { response, record, seen } = await sendMarked(edge, target);
    expect(seen.map((s) => s.raw_target)).toEqual([]);
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
  });

  it("a halfwidth `/?/ｶﾌｪ/menu` is not forwarded as the public site where `/カフェ/**` is guarded", async () => {
    const edge = harness(
      withIdp(issuer, [
        { name: "cafe", methods: ["GET"], path: "/カフェ/**", auth: { issuers: ["idp"] }, upstream: "echo" },
        { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
      ]),
    );
    const direct = await sendMarked(edge, "/%EF%BD%B6%EF%BE%8C%EF%BD%AA/menu");
    expect(direct.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_segment" });
    const { response, record, seen } = await sendMarked(edge, "/?/%EF%BD%B6%EF%BE%8C%EF%BD%AA/menu");
    expect(seen.map((s) => s.raw_target)).toEqual([]);
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    // A query path the site takes, beyond ASCII too, goes on.
    const thai = await sendMarked(edge, "/?/%E0%B8%99%E0%B9%89%E0%B8%B3");
    expect(thai.record).toMatchObject({ decision: "allow", route: "site" });
    expect(thai.seen).toHaveLength(1);
  });
});

describe("a query path with dot segments, which CodeIgniter drops rather than resolves, is refused", () => {
  // `queryReadAsPath` resolves the query path with the WHATWG URL parser, which pops a segment
  // for every `..` and for every `%2e%2e` too, but the query itself is forwarded as sent.
  // CodeIgniter 3's URI::_parse_request_uri ends with _remove_relative_directory, which DROPS
  // each `..` token (strtok on `/`, keeping every token but `..` and empty ones), and never
  // decodes `%2e`: `?/admin/users/../..` is `admin/users` there, and
  // `?/admin/users/%2e%2e/%2e%2e` is the segments admin, users, %2e%2e, %2e%2e (`%` is among
  // its permitted_uri_chars), which its router runs as Admin::users('%2e%2e', '%2e%2e') (PHP
  // ignores the extra arguments). Read as `/`, the public site's, an anonymous caller would run
  // the guarded admin action. A query path with a dot segment, plain or escaped, has no one
  // reading and is refused (`ambiguous_path_info`), as one that is no canonical path is. (CodeIgniter 4 resolves a plain `..` as
  // RFC 3986 does, but does not decode `%2e` before routing either, as far as I know.)
  it.each(["/?/admin/users/../..", "/?/admin/users/%2e%2e/%2e%2e", "/index.php?/admin/users/%2E%2E/%2E%2E"])(
    "`%s` is not forwarded as the public site where `/admin/**` is guarded",
    async (target) => {
      const edge = harness(siteWithAdmin(issuer));
      // Control: the same path without the dot segments is refused.
      const plain = await sendMarked(edge, "/?/admin/users");
      expect(plain.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
      expect(plain.seen).toHaveLength(0);

      const { response, record, seen } = await sendMarked(edge, target);
      expect(seen.map((s) => s.raw_target)).toEqual([]);
      expect(response.status).toBe(400);
      expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    },
  );
});

describe("CodeIgniter in a directory, reached by its directory index, reads the query too", () => {
  // CodeIgniter 3's URI::_parse_request_uri strips SCRIPT_NAME from the path, else
  // dirname(SCRIPT_NAME): installed at `/blog/` (SCRIPT_NAME `/blog/index.php`, served for
  // `/blog/` by Apache's DirectoryIndex or nginx's `index index.php`), the path `/blog/` leaves
  // `/`, which is empty once trimmed, so a query that begins with `/` is routed: `/blog/?/admin/users`
  // runs what `/blog/admin/users` runs (CodeIgniter 4 strips the script's path segment by segment
  // and reads it alike). So a path ending in `/` is read as the directory: with `/blog/admin/**`
  // guarded before a public `/**`, `/blog/?/admin/users` is refused as
  // `/blog/index.php?/admin/users`, the same request to CodeIgniter, is.
  it("`/blog/?/admin/users` is not forwarded as the public site where `/blog/admin/**` is guarded", async () => {
    const edge = harness(
      withIdp(issuer, [
        {
          name: "blog-admin",
          methods: ["GET"],
          path: "/blog/admin/**",
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "echo",
        },
        { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
      ]),
    );
    // Control: through the script's own name, the edge reads it under `/blog/` and refuses it.
    const script = await sendMarked(edge, "/blog/index.php?/admin/users");
    expect(script.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    expect(script.seen).toHaveLength(0);
    // Control: a query path the site takes goes on.
    const about = await sendMarked(edge, "/blog/?/about");
    expect(about.record).toMatchObject({ decision: "allow", route: "site" });
    expect(about.seen.map((s) => s.raw_target)).toEqual(["/blog/?/about"]);

    const { response, record, seen } = await sendMarked(edge, "/blog/?/admin/users");
    expect(seen.map((s) => s.raw_target)).toEqual([]);
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
  });
});

describe("SvelteKit's named form actions on a home page with its own route go on", () => {
  // SvelteKit posts a named form action to the page's URL with `?/<name>` as its query
  // (`<form method="POST" action="?/logout">`, its documented form; `use:enhance` too): on the
  // home page that is `POST /?/logout`. With the home page signed-in before a public `/**` (the
  // README's own `/` before `/**`), the route stage reads the query as CodeIgniter's path
  // `/logout`, and finds `/**` there, not the home route. `/**` takes `/` as written too, so
  // the reading gives no route's rules that the path's route does not already cover (as with a
  // format suffix): the form goes on. (Where no route takes `/<name>`, it is refused: README.)
  it("a signed-in `POST /?/logout` from the home page reaches the origin", async () => {
    const edge = harness(
      withIdp(issuer, [
        { name: "home", methods: ["GET", "POST"], path: "/", auth: { issuers: ["idp"] }, upstream: "echo" },
        { name: "site", methods: ["GET", "POST"], path: "/**", auth: "public", upstream: "echo" },
      ]),
    );
    const alice = await bearerOf(issuer, { sub: "alice" });
    const form = { "content-type": "application/x-www-form-urlencoded", ...alice };
    // Control: the same form posted without a named action goes on under the home route.
    const unnamed = await sendMarked(edge, "/", { method: "POST", headers: form, body: "id=1" });
    expect(unnamed.record).toMatchObject({ decision: "allow", route: "home" });
    expect(unnamed.seen.map((s) => [s.method, s.raw_target])).toEqual([["POST", "/"]]);

    const { response, record, seen } = await sendMarked(edge, "/?/logout", {
      method: "POST",
      headers: form,
      body: "id=1",
    });
    expect(record).toMatchObject({ decision: "allow", route: "home" });
    expect(response.status).toBe(200);
    expect(seen.map((s) => [s.method, s.raw_target])).toEqual([["POST", "/?/logout"]]);
  });
});

describe("hostile query paths get an answer and a record", () => {
  // `queryReadAsPath` builds a URL from whatever the query holds: none of these may throw past
  // the route stage. Each is read as the URL parser reads a path (a backslash as `/`, a doubled
  // slash merged) or as none (a bad escape), and refused where that is the admin area or nothing;
  // a long one the site takes goes on as sent.
  it.each([
    ["a doubled slash", "/?//admin/users", "ambiguous_path_info"],
    ["backslashes", "/?/\\admin\\users", "ambiguous_path_info"],
    ["a lone `%`", "/?/%", "ambiguous_path_info"],
    ["a bad escape", "/?/%zz/admin", "ambiguous_path_info"],
    ["3,500 segments before a public page", `/?/${"a/".repeat(3_500)}admin`, undefined],
  ])("%s", async (_label, target, detail) => {
    const edge = harness(siteWithAdmin(issuer));
    const { response, body, record, records, seen } = await sendMarked(edge, target);
    expect(records).toHaveLength(1);
    if (detail) {
      expect(response.status).toBe(400);
      expect(body?.reason).toBe("bad_request");
      expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail });
      expect(seen).toHaveLength(0);
    } else {
      expect(record).toMatchObject({ decision: "allow", route: "site" });
      expect(seen.map((s) => s.raw_target)).toEqual([target]);
    }
  });
});
