// Route matching as an attacker sees it: spellings of a host or a path that an origin reads
// as the one a specific route was written for must not fall through to a broader route.
import { describe, expect, it } from "vitest";
import { compiledRoutes as routes } from "../support/policy-compile-step";
import { authorisationFor } from "../../src/core/authz";
import type { Identity } from "../../src/core/identity";
import type { CompiledRoute } from "../../src/core/policy";
import { canonicalPath } from "../../src/core/path";
import { foldCase } from "../../src/core/case-fold";
import { readAsAnotherRoute } from "../../src/core/route-readings";
import { findRoute } from "../../src/core/routes";

const auth = { issuers: ["idp"] };

/** The route a request reaches, through the same canonicalisation the pipeline runs first. */
function routeFor(list: CompiledRoute[], method: string, host: string, rawPath: string) {
  const canonical = canonicalPath(new URL(rawPath, "https://x.test").pathname);
  if (!canonical.ok) throw new Error(`not canonical: ${rawPath}`);
  return findRoute(list, method, host, canonical.path);
}

const identity = (tenant: string): Identity => ({
  issuerId: "idp",
  issuer: "https://idp.example.com",
  kind: "oidc",
  subject: "alice",
  tenant,
  scopes: [],
  groups: [],
  claims: {},
  tokenHash: async () => "",
});

describe("a host-specific route is not sidestepped by another spelling of its host", () => {
  const list = routes([
    {
      name: "admin",
      methods: ["GET"],
      path: "/**",
      host: "admin.example.com",
      auth: { ...auth, groups: { any_of: ["admins"] } },
    },
    { name: "tenant", methods: ["GET"], path: "/**", host: ":tenant.tenants.example.com", auth },
    { name: "rest", methods: ["GET"], path: "/**", auth: "public" },
  ]);

  it.each([
    ["admin.example.com", "admin"],
    // A fully qualified name: the same host to DNS and to a name-based origin.
    ["admin.example.com.", "admin"],
    // Cloudflare proxies other ports (8443, 2053, …) to the same Worker.
    ["admin.example.com:8443", "admin"],
    ["admin.example.com.:8443", "admin"],
    ["acme.tenants.example.com", "tenant"],
    ["acme.tenants.example.com.", "tenant"],
    ["acme.tenants.example.com:8443", "tenant"],
    ["www.example.com", "rest"],
  ])("%s -> %s", (host, expected) => {
    const match = routeFor(list, "GET", host, "/x");
    expect(match?.route.name).toBe(expected);
    if (expected === "tenant") expect(match?.params).toEqual({ tenant: "acme" });
  });

  it("a route written for one port matches only that port", () => {
    const ported = routes([
      { name: "alt", methods: ["GET"], path: "/**", host: "api.example.com:8443", auth },
      { name: "rest", methods: ["GET"], path: "/**", auth: "public" },
    ]);
    expect(routeFor(ported, "GET", "api.example.com:8443", "/x")?.route.name).toBe("alt");
    expect(routeFor(ported, "GET", "api.example.com", "/x")?.route.name).toBe("rest");
    expect(routeFor(ported, "GET", "api.example.com:2053", "/x")?.route.name).toBe("rest");
  });
});

describe("a literal segment matches however the request escapes its characters", () => {
  const list = routes([
    // A custom method (AIP-136) and an address in the path: origins decode `%3A`, `%40`.
    {
      name: "purge",
      methods: ["POST"],
      path: "/v1/things/*/data:purge",
      auth: { ...auth, groups: { any_of: ["admins"] } },
    },
    {
      name: "me",
      methods: ["GET"],
      path: "/v1/users/admin@example.com",
      auth: { ...auth, groups: { any_of: ["admins"] } },
    },
    { name: "wiki", methods: ["GET"], path: "/wiki/café/edit", auth: { ...auth, groups: { any_of: ["editors"] } } },
    { name: "rest", methods: ["GET", "POST"], path: "/**", auth },
  ]);

  it.each([
    ["POST", "/v1/things/t1/data:purge", "purge"],
    ["POST", "/v1/things/t1/data%3Apurge", "purge"],
    ["POST", "/v1/things/t1/data%3apurge", "purge"],
    ["GET", "/v1/users/admin@example.com", "me"],
    ["GET", "/v1/users/admin%40example.com", "me"],
    ["GET", "/wiki/café/edit", "wiki"],
    ["GET", "/wiki/caf%C3%A9/edit", "wiki"],
    ["GET", "/wiki/cafe/edit", "rest"],
  ])("%s %s -> %s", (method, path, expected) => {
    expect(routeFor(list, method, "api.example.com", path)?.route.name).toBe(expected);
  });
});

describe("tenant binding compares the tenant the origin will read", () => {
  const list = routes([{ name: "t", methods: ["GET"], path: "/t/:tenant/**", auth }]);

  it("an escaped capture is compared decoded", () => {
    const match = routeFor(list, "GET", "api.example.com", "/t/a%3Ab/orders");
    expect(match?.params).toEqual({ tenant: "a:b" });
    // A token whose tenant is spelt like the escape is not the tenant an origin decodes.
    expect(authorisationFor(identity("a%3Ab"), auth, match?.params ?? {})).toMatchObject({
      ok: false,
      reason: "tenant_mismatch",
    });
    expect(authorisationFor(identity("a:b"), auth, match?.params ?? {})).toEqual({ ok: true });
  });
});

describe("a path an origin routing without regard to case reads as an earlier route's", () => {
  /** Whether the request is refused as ambiguous (undefined: no route matches it at all). */
  function ambiguous(list: CompiledRoute[], rawPath: string, method = "GET") {
    const canonical = canonicalPath(new URL(rawPath, "https://x.test").pathname);
    if (!canonical.ok) throw new Error(`not canonical: ${rawPath}`);
    const match = findRoute(list, method, "x.test", canonical.path);
    return match && readAsAnotherRoute(list, method, "x.test", canonical.path, match.route) === "ambiguous_case";
  }

  const guarded = routes([
    { name: "admin", methods: ["GET"], path: "/api/admin/**", auth },
    { name: "me", methods: ["GET"], path: "/api/users/me", auth },
    { name: "tenant-admin", methods: ["GET"], path: "/t/:tenant/admin/**", auth },
    { name: "api", methods: ["GET"], path: "/**", auth },
  ]);

  it.each(["/api/ADMIN/users", "/API/admin", "/api/Admin/", "/api/users/ME", "/t/acme/Admin/x", "/api/%41dmin/x"])(
    "%s: refused (an earlier route takes it but for letter case)",
    (path) => {
      expect(ambiguous(guarded, path)).toBe(true);
    },
  );

  it.each(["/api/admin/users", "/api/users/42", "/api/users/AbC123", "/t/ACME/admin/x", "/Other/Path", "/caf%C3%A9"])(
    "%s: routed (the same route either way)",
    (path) => {
      expect(ambiguous(guarded, path)).toBe(false);
    },
  );

  // Folded both ways, per character, as Java's equalsIgnoreCase and .NET compare: dotless ı and
  // dotted İ read as i, final ς as σ (NFKC, which the path stage checks, leaves all three).
  it.each(["/api/adm%C4%B1n/users", "/api/adm%C4%B0n/users", "/api/ADM%C4%B1N/x"])(
    "%s: refused (ı and İ fold to i)",
    (path) => {
      expect(ambiguous(guarded, path)).toBe(true);
    },
  );

  it("final sigma folds to sigma: a route written with σ is not sidestepped with ς", () => {
    const greek = routes([
      { name: "service", methods: ["GET"], path: "/υπηρεσία/**", auth },
      { name: "rest", methods: ["GET"], path: "/**", auth },
    ]);
    expect(ambiguous(greek, "/%CF%85%CF%80%CE%B7%CF%81%CE%B5%CF%82%CE%AF%CE%B1/x")).toBe(true);
    expect(ambiguous(greek, "/%CF%85%CF%80%CE%B7%CF%81%CE%B5%CF%83%CE%AF%CE%B1/x")).toBe(false);
  });

  // ß has no one-character capital but ẞ; folding it to ss, as a whole-string mapping does,
  // is no comparison a server makes one character at a time.
  it("capital ẞ reads as ß; ss is another word", () => {
    const german = routes([
      { name: "strasse", methods: ["GET"], path: "/straße/**", auth },
      { name: "rest", methods: ["GET"], path: "/**", auth },
    ]);
    expect(ambiguous(german, "/STRA%E1%BA%9EE/x")).toBe(true);
    expect(ambiguous(german, "/STRA%C3%9FE/x")).toBe(true);
    for (const path of ["/strasse/x", "/STRASSE/x"]) expect(ambiguous(german, path)).toBe(false);
    const ascii = routes([
      { name: "strasse", methods: ["GET"], path: "/strasse/**", auth },
      { name: "rest", methods: ["GET"], path: "/**", auth },
    ]);
    expect(ambiguous(ascii, "/stra%C3%9Fe/x")).toBe(false);
  });

  it("every character a per-character case-insensitive comparison equates (and NFKC leaves alone) folds alike", () => {
    const misses: string[] = [];
    for (let point = 0x80; point < 0x20000; point++) {
      if (point >= 0xd800 && point < 0xe000) continue;
      const char = String.fromCodePoint(point);
      if (char.normalize("NFKC") !== char) continue;
      for (const other of new Set([char.toUpperCase(), char.toLowerCase(), char.toUpperCase().toLowerCase()])) {
        if ([...other].length !== 1 || other === char || other.normalize("NFKC") !== other) continue;
        // A regular expression's `iu` flags compare one character at a time, as servers do.
        const equated = new RegExp(`^${char.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&")}$`, "iu").test(other);
        if (equated && foldCase(char) !== foldCase(other)) misses.push(`${char}/${other}`);
      }
    }
    expect(misses).toEqual([]);
  });

  it("a literal written with capitals: the lower-case spelling is refused too", () => {
    const cased = routes([
      { name: "reports", methods: ["GET"], path: "/Reports/**", auth },
      { name: "rest", methods: ["GET"], path: "/**", auth },
    ]);
    expect(ambiguous(cased, "/Reports/q1")).toBe(false);
    expect(ambiguous(cased, "/reports/q1")).toBe(true);
  });

  it("only routes for the request's method count", () => {
    expect(ambiguous(guarded, "/api/ADMIN/users", "POST")).toBeUndefined();
    const byMethod = routes([
      { name: "admin-delete", methods: ["DELETE"], path: "/api/admin/**", auth },
      { name: "api", methods: ["GET", "DELETE"], path: "/api/**", auth },
    ]);
    expect(ambiguous(byMethod, "/api/ADMIN/x", "GET")).toBe(false);
    expect(ambiguous(byMethod, "/api/ADMIN/x", "DELETE")).toBe(true);
  });
});

describe("a path an origin reads without its format suffix, or past a script, as another route's", () => {
  function ambiguity(list: CompiledRoute[], rawPath: string) {
    const canonical = canonicalPath(new URL(rawPath, "https://x.test").pathname);
    if (!canonical.ok) throw new Error(`not canonical: ${rawPath}`);
    const match = findRoute(list, "GET", "x.test", canonical.path);
    return match && readAsAnotherRoute(list, "GET", "x.test", canonical.path, match.route);
  }

  const admins = { ...auth, groups: { any_of: ["admin"] } };
  const guarded = routes([
    { name: "admin", methods: ["GET"], path: "/v1/admin", auth: admins },
    { name: "script", methods: ["GET"], path: "/tools/admin.php", auth: admins },
    { name: "files", methods: ["GET"], path: "/v1/files/*", auth },
    { name: "rest", methods: ["GET"], path: "/**", auth },
  ]);

  it.each([
    ["/v1/admin.json", "ambiguous_format"],
    ["/v1/admin.json/", "ambiguous_format"],
    ["/v1/ADMIN.json", "ambiguous_format"],
    // Spring reads everything from the first dot off; Rails only the last suffix.
    ["/v1/admin.b.json", "ambiguous_format"],
    ["/tools/admin.php/x", "ambiguous_path_info"],
    ["/tools/Admin.PHP/x/y", "ambiguous_path_info"],
  ])("%s: refused (%s)", (path, detail) => {
    expect(ambiguity(guarded, path)).toBe(detail);
  });

  it.each([
    // The same route either way: nothing to mistake.
    "/v1/files/report.pdf",
    "/v1/files/archive.tar.gz",
    // A leading dot names a file; it is no suffix.
    "/.well-known/openid-configuration",
    "/v1/.env",
    // No other route takes what these read as.
    "/v1/reports.json",
    "/index.php/about",
    "/v1/adminx.json",
  ])("%s: routed", (path) => {
    expect(ambiguity(guarded, path)).toBeUndefined();
  });

  // Read as a route that asks no more of a caller than the one that took it (and binds no
  // tenant), the origin runs that route's handler under rules as strict: nothing to refuse.
  it.each(["/v1/admin.json", "/tools/admin.php/x"])("%s: routed where the route read asks no more", (path) => {
    const alike = routes([
      { name: "admin", methods: ["GET"], path: "/v1/admin", auth },
      { name: "script", methods: ["GET"], path: "/tools/admin.php", auth },
      { name: "rest", methods: ["GET"], path: "/**", auth },
    ]);
    expect(ambiguity(alike, path)).toBeUndefined();
  });
});
