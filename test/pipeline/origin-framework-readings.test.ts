// How common origins read what the edge forwards: identity and connection headers that
// frameworks and single-sign-on agents take as verified, paths an origin routes to another
// route's handler than the edge authorised, and odd CORS and Connection input that must end in
// a stable problem+json answer, never a 500.
import { beforeAll, describe, expect, it } from "vitest";
import type { IssuerConfig, PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

const idp = () =>
  ({ idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } }) as Record<string, IssuerConfig>;

/** An admin area behind a group condition, and a broader authenticated area behind it. */
const adminPolicy = () =>
  basePolicy({
    issuers: idp(),
    routes: [
      { name: "public", methods: ["GET", "POST"], path: "/public/**", auth: "public", upstream: "echo" },
      {
        name: "admins",
        methods: ["GET"],
        path: "/v1/admin/**",
        auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ],
  });

async function send(
  path: string,
  headers: Record<string, string> = {},
  init: RequestInit = {},
  policy: PolicyDocument = adminPolicy(),
) {
  return sendMarked(harness(policy), path, { ...init, headers });
}

/** What the origin receives when these headers are sent straight to it, edge bypassed. */
async function direct(headers: Record<string, string>) {
  const m = marker();
  await (await fetch(`${echoOrigin}/public/a`, { headers: { ...headers, "x-test-marker": m } })).arrayBuffer();
  return (await originSaw(m))[0]!.headers;
}

const lowerCased = (headers: Record<string, string>) =>
  Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));

// Headers that a framework's own pre-authentication support, or an SSO agent's convention,
// takes as the verified user or as the original connection.
const PRE_AUTHENTICATION_HEADERS: [string, Record<string, string>][] = [
  [
    // Spring Security's RequestHeaderAuthenticationFilter reads the principal from
    // `SM_USER` unless told otherwise (principalRequestHeader's default, CA SiteMinder's name);
    // an app that adds the filter with its defaults signs in whoever the header names.
    "Spring Security's pre-authentication default and CA SiteMinder (SM_USER, SMUSER, SM_UNIVERSALID)",
    { SM_USER: "admin", "SM-User": "admin", SMUSER: "admin", SM_UNIVERSALID: "admin" },
  ],
  [
    // IBM Security Verify Access (WebSEAL) junctions hand over the user and groups
    // in iv-user / iv-groups / iv-creds; applications behind a junction read them as verified.
    "IBM WebSEAL junction headers (iv-user, iv-groups, iv-creds)",
    { "iv-user": "admin", "iv-groups": '"admins"', "iv-creds": "Version=1, BAKs3DCCBnMM" },
  ],
  [
    // Oracle Access Manager's WebGate writes OAM_REMOTE_USER for the application.
    "Oracle Access Manager WebGate (OAM_REMOTE_USER, OAM_IDENTITY_DOMAIN)",
    { OAM_REMOTE_USER: "admin", OAM_IDENTITY_DOMAIN: "corp" },
  ],
  [
    // WSO2 API Manager passes the caller to the backend as a JWT in X-JWT-Assertion
    // (its default header name); backends commonly decode it without checking the signature.
    "WSO2 API Manager's backend JWT (X-JWT-Assertion)",
    { "X-JWT-Assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9." },
  ],
  [
    // WebSphere Liberty trusts the web-server plug-in's private headers from any
    // source by default (httpDispatcher trustedHeaderOrigin="*"): the client address, remote
    // host, scheme, "is secure" and the server name that selects the virtual host.
    "WebSphere Liberty's plug-in private headers ($WSRA, $WSRH, $WSSC, $WSIS, $WSSN)",
    { $WSRA: "10.0.0.1", $WSRH: "intranet.corp", $WSSC: "https", $WSIS: "true", $WSSN: "admin.corp" },
  ],
];

describe("identity and connection headers of pre-authentication frameworks and SSO agents", () => {
  it.each(PRE_AUTHENTICATION_HEADERS)("strips %s on a public route", async (_family, spoofed) => {
    const lower = lowerCased(spoofed);
    // Control: without the edge every one reaches the origin, so one found below got past the edge.
    expect(await direct(spoofed)).toMatchObject(lower);
    const { response, seen, got, record } = await send("/public/a", { ...spoofed, "x-kept": "yes" });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    expect(got["x-kept"]).toBe("yes");
    const leaked = Object.keys(lower).filter((name) => got[name] !== undefined);
    expect(leaked).toEqual([]);
  });

  // next to a verified identity the origin sees two users, the edge's in
  // x-user-sub and the client's in SM_USER; a Spring app configured for SiteMinder reads the latter.
  it("strips SM_USER next to the identity the edge verified", async () => {
    const token = await issuer.sign({ sub: "alice" });
    const { response, got, record } = await send("/v1/things", { authorization: `Bearer ${token}`, SM_USER: "admin" });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "any", user_sub: "alice" });
    expect(got["x-user-sub"]).toBe("alice");
    expect(got.sm_user).toBeUndefined();
  });
});

/** A non-admin caller's token: the admin route's group condition refuses it. */
const engineer = () => issuer.sign({ sub: "alice", groups: ["eng"] });

describe("paths a common origin routes to an earlier route's handler", () => {
  it("control: the admin area itself refuses the non-admin, so a pass below is the path's doing", async () => {
    const token = await engineer();
    for (const path of ["/v1/admin", "/v1/admin/", "/v1/ADMIN"]) {
      const { response, seen, record } = await send(path, { authorization: `Bearer ${token}` });
      expect(response.status, path).toBeGreaterThanOrEqual(400);
      expect(record?.decision, path).toBe("deny");
      expect(seen, path).toHaveLength(0);
    }
  });

  // Rails routes every path with an optional format, `get "v1/admin"` being
  // `/v1/admin(.:format)`, so `/v1/admin.json` runs the admin action (as Spring MVC's suffix
  // pattern matching did by default before 5.3). The edge matches the segment `admin.json`
  // against the literal `admin`, misses the admin route and authorises the request under the
  // broader `/v1/**`: refused as ambiguous_format (a path another route takes but for a
  // format suffix), never forwarded.
  it.each(["/v1/admin.json", "/v1/admin%2Ejson", "/v1/admin.xml/", "/v1/Admin.json", "/v1/admin.b.json"])(
    "%s, which Rails or Spring routes to the admin action, is not authorised under the broader route",
    async (path) => {
      const token = await engineer();
      const { response, text, seen, record } = await send(path, { authorization: `Bearer ${token}` });
      expect(response.status).toBe(400);
      expect(JSON.parse(text)).toMatchObject({ reason: "bad_request" });
      expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_format" });
      expect(seen).toHaveLength(0);
    },
  );

  it("a dotted last segment no earlier route would take goes on: only a suffix hiding another route's path matters", async () => {
    const token = await engineer();
    const { response, seen, record } = await send("/v1/reports/q1.json", { authorization: `Bearer ${token}` });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "any" });
    expect(seen[0]?.raw_target).toBe("/v1/reports/q1.json");
  });

  /** A public site with its admin area guarded: the shape both ASP.NET and PHP findings need. */
  const siteWithAdmin = (adminPath: string) =>
    basePolicy({
      issuers: idp(),
      routes: [
        {
          name: "admin",
          methods: ["GET"],
          path: adminPath,
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "echo",
        },
        { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
      ],
    });

  // ASP.NET (Framework) on IIS takes a cookieless-session segment, `(S(…))`, `(A(…))`
  // or `(F(…))`, out of the path before routing (the trick behind CVE-2023-36899), so
  // `/(S(x))/admin/users` is `/admin/users` there; the edge sees a first segment `(S(x))`, no
  // admin route, and would serve it as the public site: refused as an ambiguous segment.
  it.each(["/(S(x))/admin/users", "/(A(x))/admin/users", "/(F(x))/admin/users", "/%28S%28x%29%29/admin/users"])(
    "%s, which ASP.NET reads as /admin/users, is not served as the public site",
    async (path) => {
      const { response, seen, record } = await send(path, {}, {}, siteWithAdmin("/admin/**"));
      expect(response.status).toBe(400);
      expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_segment" });
      expect(seen).toHaveLength(0);
    },
  );

  it("a parenthesised name that is no cookieless-session segment goes on as sent", async () => {
    const { response, seen } = await send("/wiki/Mercury_(planet)", {}, {}, siteWithAdmin("/admin/**"));
    expect(response.status).toBe(200);
    expect(seen[0]?.raw_target).toBe("/wiki/Mercury_(planet)");
  });

  // Apache (AcceptPathInfo, the default for PHP handlers) and php-fpm setups with
  // fastcgi_split_path_info run `/admin.php/anything` as admin.php with PATH_INFO=/anything.
  // A route written for the script, `/admin.php`, does not match the longer path, which goes
  // to the public site route: refused as ambiguous_path_info.
  it.each(["/admin.php/x", "/admin.php/x/", "/Admin.PHP/x/y", "/admin.aspx/x"])(
    "%s, which Apache or IIS runs as the admin script, is not served as the public site",
    async (path) => {
      const script = path.toLowerCase().includes("aspx") ? "/admin.aspx" : "/admin.php";
      const { response, seen, record } = await send(path, {}, {}, siteWithAdmin(script));
      expect(response.status).toBe(400);
      expect(record?.decision).toBe("deny");
      expect(record).toMatchObject({ reason: "bad_request", detail: "ambiguous_path_info" });
      expect(seen).toHaveLength(0);
    },
  );

  it("a path past a script no route guards goes on as sent", async () => {
    const { response, seen } = await send("/index.php/about", {}, {}, siteWithAdmin("/admin.php"));
    expect(response.status).toBe(200);
    expect(seen[0]?.raw_target).toBe("/index.php/about");
  });
});

describe("Connection naming end-to-end fields", () => {
  it("naming Cookie drops every cookie, the Access cookie with them, and the request still goes on", async () => {
    const { response, seen, got, record } = await send("/public/a", {
      connection: "cookie",
      cookie: "theme=dark; CF_Authorization=forged.access.jwt",
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    expect(seen).toHaveLength(1);
    expect(got.cookie).toBeUndefined();
    expect(JSON.stringify(got)).not.toContain("forged.access.jwt");
  });

  it("naming Content-Length does not cut or lose the body: the origin receives it whole", async () => {
    const { response, seen, record } = await send(
      "/public/upload",
      { connection: "content-length", "content-type": "text/plain" },
      { method: "POST", body: "hello world" },
    );
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.body_bytes).toBe(11);
    expect(seen[0]?.headers.connection).toBeUndefined();
  });
});

describe("a preflight asking about no method a route could take", () => {
  it.each([
    ["an empty method", ""],
    ["a list of methods", "GET, POST"],
    ["a method no route lists", "PROPFIND"],
  ])("%s is 405 method_not_allowed as problem+json, never a 500, never forwarded", async (_label, method) => {
    const { response, text, seen, record } = await send(
      "/public/a",
      { origin: "https://app.example.com", "access-control-request-method": method },
      { method: "OPTIONS" },
    );
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET, HEAD, POST");
    expect(response.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(text)).toMatchObject({ status: 405, reason: "method_not_allowed" });
    expect(record).toMatchObject({ decision: "deny", reason: "method_not_allowed" });
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(seen).toHaveLength(0);
  });
});
