// Issuer and upstream URLs: what the validator accepts must mean what it says.
import { describe, expect, it } from "vitest";
import { compilePolicy } from "../../src/core/policy";
import { problemsOf } from "../support/policy-problems";

const minimal = (): any => ({
  version: 1,
  upstreams: { api: { url: "https://origin.example.com" } },
  issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
  routes: [{ name: "r", methods: ["GET"], path: "/public/**", auth: "public", upstream: "api" }],
});

describe("upstream URLs are the prefix of every forwarded URL", () => {
  // The forwarded URL is the upstream URL followed by the canonical path. A second slash at
  // the join makes the path start with `//`, which origins that resolve the request target
  // against a base (`new URL(req.url, base)`) read as a host: `//public/admin/x` becomes
  // `/admin/x` there, a path no route authorised.
  it.each([
    ["https://origin.example.com//", "https://origin.example.com"],
    ["https://origin.example.com\\", "https://origin.example.com"],
    ["https://origin.example.com/\\", "https://origin.example.com"],
    ["https://origin.example.com/base//", "https://origin.example.com/base"],
    ["https://origin.example.com/base/", "https://origin.example.com/base"],
    ["https://origin.example.com", "https://origin.example.com"],
    ["http://127.0.0.1:8788/", "http://127.0.0.1:8788"],
  ])("%s forwards /public/admin/x as the path authorised", (url, prefix) => {
    const doc = minimal();
    doc.upstreams.api.url = url;
    const upstream = compilePolicy(doc).routes[0]?.upstream as { url: string };
    expect(upstream.url).toBe(prefix);
    expect(new URL(`${upstream.url}/public/admin/x`).pathname).toMatch(/^\/[^/]/);
  });
});

describe("issuer URLs carry no query or fragment", () => {
  // OpenID discovery is `<issuer>/.well-known/openid-configuration`: after a `?` or `#` that
  // would fetch the issuer's own page instead (and OIDC issuers never have either).
  it.each(["https://idp.example.com?tenant=a", "https://idp.example.com/#"])("issuer %s", (issuer) => {
    const doc = minimal();
    doc.issuers.idp.issuer = issuer;
    expect(problemsOf(doc)).toContain("issuers.idp.issuer: must not carry a query or fragment");
  });

  it("an Access team domain", () => {
    const doc = minimal();
    doc.issuers.idp = { kind: "cloudflare_access", team_domain: "acme.cloudflareaccess.com?x" };
    expect(problemsOf(doc)).toContain("issuers.idp.team_domain: must not carry a query or fragment");
  });

  it("a jwks_uri may carry a query (some providers select a key set by it)", () => {
    const doc = minimal();
    doc.issuers.idp.jwks_uri = "https://idp.example.com/keys?appid=1";
    expect(compilePolicy(doc).issuers.get("idp")?.jwksUri).toBe("https://idp.example.com/keys?appid=1");
  });
});

describe("an Access team domain names the issuer Access writes", () => {
  // Access writes `iss` as a lower-case origin: a team domain written otherwise must still match it.
  it.each(["Acme.CloudflareAccess.com", "acme.cloudflareaccess.com:443", "https://ACME.cloudflareaccess.com/"])(
    "%s",
    (team_domain) => {
      const doc = minimal();
      doc.issuers.idp = { kind: "cloudflare_access", team_domain };
      const issuer = compilePolicy(doc).issuers.get("idp");
      expect(issuer?.issuer).toBe("https://acme.cloudflareaccess.com");
      expect(issuer?.jwksUri).toBe("https://acme.cloudflareaccess.com/cdn-cgi/access/certs");
    },
  );

  // The team's name as the dashboard shows it, or a trailing dot: no assertion would ever match.
  it.each(["acme", "acme.cloudflareaccess.com.", "https://acme/"])("%s is refused", (team_domain) => {
    const doc = minimal();
    doc.issuers.idp = { kind: "cloudflare_access", team_domain };
    expect(problemsOf(doc)).toContain(
      'issuers.idp.team_domain: must be the team domain, such as "acme.cloudflareaccess.com"',
    );
  });

  // The certs URL pasted whole, or any path: no assertion's `iss` carries one, so every Access
  // request would be refused as issuer_unknown with nothing at build time saying why.
  it.each([
    "https://acme.cloudflareaccess.com/cdn-cgi/access/certs",
    "acme.cloudflareaccess.com/x",
    "https://acme.cloudflareaccess.com/x/",
  ])("%s (with a path) is refused", (team_domain) => {
    const doc = minimal();
    doc.issuers.idp = { kind: "cloudflare_access", team_domain };
    expect(problemsOf(doc)).toContain(
      'issuers.idp.team_domain: must be the team domain alone, without a path, such as "acme.cloudflareaccess.com"',
    );
  });

  it("a loopback stand-in keeps its path (the local stack serves teams under paths)", () => {
    const doc = minimal();
    doc.issuers.idp = { kind: "cloudflare_access", team_domain: "http://127.0.0.1:8788/access" };
    expect(compilePolicy(doc).issuers.get("idp")?.issuer).toBe("http://127.0.0.1:8788/access");
  });
});

describe("-0, which JSON writes back as 0", () => {
  it.each<[string, (doc: any) => void, string]>([
    [
      "an issuer's clock skew",
      (doc) => (doc.issuers.idp.clock_skew_s = -0),
      "issuers.idp.clock_skew_s: is -0: write 0",
    ],
    ["an issuer's number", (doc) => (doc.issuers.idp.max_stale_s = -0), "issuers.idp.max_stale_s: is -0: write 0"],
    [
      "a claim condition's value",
      (doc) => (doc.routes[0].auth = { issuers: ["idp"], claims: [{ claim: "n", equals: -0 }] }),
      "routes[0].auth.claims[0].equals: is -0: write 0",
    ],
    [
      "a claim condition's list",
      (doc) => (doc.routes[0].auth = { issuers: ["idp"], claims: [{ claim: "n", one_of: [1, -0] }] }),
      "routes[0].auth.claims[0].one_of: holds -0: write 0",
    ],
    // Where 0 is out of range anyway, the range is the advice.
    [
      "a timeout",
      (doc) => (doc.upstreams.api.timeout_ms = -0),
      "upstreams.api.timeout_ms: must be an integer from 100 to 300000",
    ],
  ])("in %s is refused, naming the field", (_label, change, problem) => {
    const doc = minimal();
    change(doc);
    expect(problemsOf(doc)).toEqual([problem]);
  });
});
