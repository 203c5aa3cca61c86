// A hostile client against path canonicalisation, route and host matching, CORS and the Access
// cross-site check: spellings that only look like an allowed page, this origin or a tenant's
// host, and paths that must reach the origin exactly as they were routed. Each asserts the
// reason and what (if anything) reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness } from "../support/harness";
import { AUDIENCE, accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";
import { sendMarked } from "../support/sent";

const APP = "https://app.example.com";
const SELF = "https://edge.test";

let idp: TestIssuer;
let team: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
  team = await makeIssuer("RS256");
});

function policy(): PolicyDocument {
  const bearer = { issuers: ["idp"] };
  const access = { issuers: ["access"], audiences: [ACCESS_AUD_TAG] };
  return basePolicy({
    issuers: {
      idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
      access: { kind: "cloudflare_access", team_domain: team.url },
    },
    routes: [
      {
        name: "admin-host",
        methods: ["GET"],
        path: "/**",
        host: "admin.example.test",
        auth: { ...bearer, groups: { any_of: ["admins"] } },
        upstream: "echo",
      },
      {
        name: "tenant-host",
        methods: ["GET"],
        path: "/app/**",
        host: ":tenant.tenants.example.test",
        auth: bearer,
        upstream: "echo",
      },
      { name: "tenant-path", methods: ["GET"], path: "/v1/tenants/:tenant/**", auth: bearer, upstream: "echo" },
      {
        name: "spa",
        methods: ["GET", "POST", "DELETE"],
        path: "/spa/**",
        auth: access,
        upstream: "echo",
        cors: {
          allow_origins: [APP],
          allow_credentials: true,
          allow_methods: ["GET", "POST"],
          allow_headers: ["authorization", "content-type", "x-csrf-token"],
        },
      },
      {
        name: "pub",
        methods: ["GET"],
        path: "/pub/**",
        auth: "public",
        upstream: "echo",
        cors: { allow_origins: [APP] },
      },
      { name: "api", methods: ["GET"], path: "/**", auth: bearer, upstream: "echo" },
    ],
  });
}

/** `sendMarked`, and that the request wrote exactly one audit record, as every request here must. */
async function call(edge: Harness, url: string, init: RequestInit = {}) {
  const sent = await sendMarked(edge, url, init);
  expect(sent.records).toHaveLength(1);
  return sent;
}

const bearerOf = async (claims: Record<string, unknown>) => ({
  authorization: `Bearer ${await idp.sign(claims)}`,
});

describe("host spellings a hostile client sends", () => {
  // The URL parser writes an IDN label as punycode: a Cyrillic `а` in `аcme` is never the
  // ASCII tenant `acme`, so a token for acme does not reach a look-alike tenant's host.
  it("a look-alike tenant label (Cyrillic а) is another tenant: 403 tenant_mismatch, nothing forwarded", async () => {
    const edge = harness(policy());
    const r = await call(edge, "https://\u0430cme.tenants.example.test/app/orders", {
      headers: await bearerOf({ tenant_id: "acme" }),
    });
    expect(r.response.status).toBe(403);
    expect(r.body?.reason).toBe("tenant_mismatch");
    expect(r.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-host" });
    expect(r.seen).toHaveLength(0);
  });

  it("a fullwidth spelling of the admin host is the admin host: its group condition holds", async () => {
    const edge = harness(policy());
    const r = await call(edge, "https://\uff21\uff24\uff2d\uff29\uff2e.example.test/reports", {
      headers: await bearerOf({ groups: ["staff"] }),
    });
    expect(r.response.status).toBe(403);
    expect(r.body?.reason).toBe("forbidden");
    expect(r.record).toMatchObject({ reason: "forbidden", detail: "group", route: "admin-host" });
    expect(r.seen).toHaveLength(0);
  });

  // Routing reads the request's URL; a Host header that says otherwise neither moves the
  // request to another route nor reaches the origin (which gets the edge's X-Forwarded-Host).
  it("a Host header that differs from the URL is not what routes the request, nor what the origin is told", async () => {
    const edge = harness(policy());
    const auth = await bearerOf({ groups: ["staff"] });
    const escaped = await call(edge, "https://api.example.test/reports", {
      headers: { ...auth, host: "admin.example.test", "x-forwarded-host": "admin.example.test" },
    });
    expect(escaped.response.status).toBe(200);
    expect(escaped.record).toMatchObject({ decision: "allow", route: "api" });
    expect(escaped.seen).toHaveLength(1);
    expect(escaped.seen[0]!.headers["x-forwarded-host"]).toBe("api.example.test");
    expect(escaped.seen[0]!.headers.host).not.toContain("example.test");

    const guarded = await call(edge, "https://admin.example.test/reports", {
      headers: { ...auth, host: "api.example.test" },
    });
    expect(guarded.response.status).toBe(403);
    expect(guarded.record).toMatchObject({ reason: "forbidden", detail: "group", route: "admin-host" });
    expect(guarded.seen).toHaveLength(0);
  });
});

/** Origins a page elsewhere could send that only look like the allowed page `https://app.example.com`. */
const APP_LOOKALIKES: [string, string][] = [
  ["a trailing slash", `${APP}/`],
  ["the default port written out", `${APP}:443`],
  ["another port", `${APP}:8443`],
  ["upper case", "https://APP.example.com"],
  ["a user name", "https://user@app.example.com"],
  ["a suffix after it", "https://app.example.com.evil.example"],
  ["a prefix before it", "https://evilapp.example.com"],
  ["plain http", "http://app.example.com"],
  ["a trailing dot", "https://app.example.com."],
  ["two Origin values joined", `${APP}, https://evil.example`],
  ["the opaque origin", "null"],
];

describe("CORS: Origins that only look like the allowed page", () => {
  it.each(APP_LOOKALIKES)(
    "a preflight from %s is refused 403 cors_rejected (origin_not_allowed), says Vary: Origin, grants nothing",
    async (_label, origin) => {
      const edge = harness(policy());
      const r = await call(edge, "/spa/x", {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
      });
      expect(r.response.status).toBe(403);
      expect(r.body?.reason).toBe("cors_rejected");
      expect(r.record).toMatchObject({ decision: "deny", reason: "cors_rejected", detail: "origin_not_allowed" });
      expect(r.response.headers.get("vary")).toContain("Origin");
      const granted = [...r.response.headers.keys()].filter((name) => name.startsWith("access-control-"));
      expect(granted).toEqual([]);
      expect(r.seen).toHaveLength(0);
    },
  );

  it.each(APP_LOOKALIKES)(
    "an actual GET from %s is served, but the page may not read it: no Access-Control-Allow-Origin, Vary: Origin",
    async (_label, origin) => {
      const edge = harness(policy());
      const r = await call(edge, "/pub/x", { headers: { origin } });
      expect(r.response.status).toBe(200);
      expect(r.record).toMatchObject({ decision: "allow", route: "pub" });
      expect(r.response.headers.get("access-control-allow-origin")).toBeNull();
      expect(r.response.headers.get("vary")).toContain("Origin");
      expect(r.seen).toHaveLength(1);
    },
  );

  // Private Network Access: a public page asking to reach a private network is answered only
  // with what the policy grants; the edge never adds Access-Control-Allow-Private-Network.
  it("a preflight asking for private network access is answered without granting it", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/spa/x", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-private-network": "true",
      },
    });
    expect(r.response.status).toBe(204);
    expect(r.response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(r.response.headers.get("access-control-allow-private-network")).toBeNull();
    expect(r.record).toMatchObject({ decision: "allow", route: "spa", status: 204 });
    expect(r.seen).toHaveLength(0);
  });

  it("requested header names are read without regard to case or spaces; an identity header is never granted", async () => {
    const edge = harness(policy());
    const ok = await call(edge, "/spa/x", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": " X-CSRF-Token ,Authorization,, Content-Type",
      },
    });
    expect(ok.response.status).toBe(204);
    expect(ok.response.headers.get("access-control-allow-headers")).toBe("authorization, content-type, x-csrf-token");
    expect(ok.response.headers.get("access-control-allow-methods")).toBe("GET, POST");
    expect(ok.response.headers.get("access-control-allow-credentials")).toBe("true");

    const spoof = await call(edge, "/spa/x", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-user-sub",
      },
    });
    expect(spoof.response.status).toBe(403);
    expect(spoof.record).toMatchObject({ reason: "cors_rejected", detail: "header_not_allowed" });
    expect(spoof.response.headers.get("access-control-allow-origin")).toBeNull();
    expect(spoof.seen).toHaveLength(0);
  });

  // The route takes DELETE but lets pages send only GET and POST: a preflight for it is refused
  // however the page spells the method (the route stage routes it upper-cased).
  it.each(["DELETE", "delete"])(
    "a preflight for %s, a method the route serves but does not grant, is refused",
    async (method) => {
      const edge = harness(policy());
      const r = await call(edge, "/spa/x", {
        method: "OPTIONS",
        headers: { origin: APP, "access-control-request-method": method },
      });
      expect(r.response.status).toBe(403);
      expect(r.record).toMatchObject({ reason: "cors_rejected", detail: "method_not_allowed", route: "spa" });
      expect(r.response.headers.get("access-control-allow-methods")).toBeNull();
      expect(r.seen).toHaveLength(0);
    },
  );
});

describe("Access cross-site check: Origins that only look like this origin or the allowed page", () => {
  async function fromPage(method: string, from: Record<string, string>) {
    const edge = harness(policy());
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    return call(edge, "/spa/transfer", {
      method,
      body: "to=attacker&amount=1000",
      headers: {
        "content-type": "text/plain",
        cookie: `CF_Authorization=${token}`,
        "cf-access-jwt-assertion": token,
        ...from,
      },
    });
  }

  it.each([
    ["this origin with a suffix", "https://edge.test.evil.example", "cross-site"],
    ["this host on another port", "https://edge.test:8443", "same-site"],
    ["this host over plain http", "http://edge.test", "cross-site"],
    ["this origin with a trailing slash", `${SELF}/`, "same-site"],
    ["this host written fully qualified", "https://edge.test.", "cross-site"],
    ["a sibling of this host", "https://evil.edge.test", "same-site"],
    ["the allowed page with a trailing slash", `${APP}/`, "cross-site"],
    ["the allowed page with a suffix", "https://app.example.com.evil.example", "cross-site"],
    ["the allowed page over plain http", "http://app.example.com", "cross-site"],
    ["the allowed page's host on another port", `${APP}:8443`, "cross-site"],
    ["the allowed page in upper case", "https://APP.example.com", "cross-site"],
  ])(
    "a text/plain form post from %s is 403 cross_site_request before the assertion is checked",
    async (_label, origin, site) => {
      const r = await fromPage("POST", { origin, "sec-fetch-site": site, "sec-fetch-mode": "navigate" });
      expect(r.response.status).toBe(403);
      expect(r.body?.reason).toBe("cross_site_request");
      expect(r.record).toMatchObject({
        decision: "deny",
        reason: "cross_site_request",
        detail: "cross_site_origin",
        token_hash: null,
        route: "spa",
      });
      expect(r.seen).toHaveLength(0);
    },
  );

  // The allowed page may send credentials for GET and POST only: a DELETE the route serves is
  // not its to send, whatever the browser says of the site.
  it.each(["cross-site", "same-site"])(
    "the allowed page's DELETE (Sec-Fetch-Site: %s) is refused as cross_site_method",
    async (site) => {
      const r = await fromPage("DELETE", { origin: APP, "sec-fetch-site": site });
      expect(r.response.status).toBe(403);
      expect(r.record).toMatchObject({ reason: "cross_site_request", detail: "cross_site_method", token_hash: null });
      expect(r.seen).toHaveLength(0);
    },
  );

  it("the allowed page's own post, and this origin's, go through with the verified identity", async () => {
    for (const from of [
      { origin: APP, "sec-fetch-site": "cross-site" },
      { origin: SELF, "sec-fetch-site": "same-origin" },
    ]) {
      const r = await fromPage("POST", from);
      expect(r.response.status).toBe(200);
      expect(r.record).toMatchObject({ decision: "allow", route: "spa" });
      expect(r.seen).toHaveLength(1);
      expect(r.seen[0]!.headers["x-user-email"]).toBe("user@example.com");
      expect(r.seen[0]!.headers.cookie).toBeUndefined();
    }
  });
});

describe("the path a request is routed by is the path the origin receives", () => {
  // Sent again as the origin received it, a forwarded path routes to the same route and bound
  // tenant and is forwarded unchanged: no spelling is read one way by the edge and another
  // way by a second pass (a proxy in front of the origin, or the origin's own normalising).
  it.each([
    "/v1/tenants/%61cme/x",
    "/v1//tenants//acme//x//",
    "/v1/tenants/acme/./x/.",
    "/v1/other/../tenants/acme/x",
    "/v1/tenants/acme/x/%2e%2e/y",
    "/v1\\tenants\\acme\\x",
    "/v1/tenants/acme/a|b",
    "/v1/tenants/acme/a%7cb",
    "/v1/tenants/acme/%7e%2D%5f%2Ex",
    "/v1/tenants/acme/a%20b",
    "/v1/tenants/acme/100%25",
    "/v1/tenants/acme/caf%c3%a9",
    "/v1/tenants/acme/{x}<y>`z`",
    "/v1/tenants/acme/a:b@c=d,e+f",
    "/v1/tenants/acme/%E6%97%A5%E6%9C%AC",
  ])("%s: forwarded once, then the same when sent as forwarded", async (path) => {
    const edge = harness(policy());
    const headers = await bearerOf({ tenant_id: "acme" });
    const first = await call(edge, path, { headers });
    expect(first.response.status).toBe(200);
    expect(first.record).toMatchObject({ decision: "allow", route: "tenant-path", tenant_id: "acme" });
    expect(first.seen).toHaveLength(1);
    const forwarded = first.seen[0]!.raw_target;
    expect(forwarded.startsWith("/v1/tenants/acme")).toBe(true);
    expect(first.seen[0]!.headers["x-tenant"]).toBe("acme");

    const again = await call(edge, forwarded, { headers });
    expect(again.response.status).toBe(200);
    expect(again.record).toMatchObject({ decision: "allow", route: "tenant-path", path: forwarded });
    expect(again.seen.map((seen) => seen.raw_target)).toEqual([forwarded]);
  });

  it("a climb out of the tenant however deep, and spelt with escaped dots, binds the tenant it lands on", async () => {
    const edge = harness(policy());
    const climb = `/v1/tenants/acme/${"x/".repeat(300)}${"%2e%2e/".repeat(301)}globex/orders`;
    const r = await call(edge, climb, { headers: await bearerOf({ tenant_id: "acme" }) });
    expect(r.response.status).toBe(403);
    expect(r.body?.reason).toBe("tenant_mismatch");
    expect(r.record).toMatchObject({ route: "tenant-path", path: "/v1/tenants/globex/orders" });
    expect(r.seen).toHaveLength(0);
  });

  it("a path of a thousand segments is routed and forwarded whole", async () => {
    const edge = harness(policy());
    const deep = `/v1/tenants/acme/${Array.from({ length: 1000 }, (_, i) => `s${i}`).join("/")}`;
    const r = await call(edge, deep, { headers: await bearerOf({ tenant_id: "acme" }) });
    expect(r.response.status).toBe(200);
    expect(r.seen.map((seen) => seen.raw_target)).toEqual([deep]);
  });

  it.each([
    ["only dots", "/v1/tenants/acme/...", "ambiguous_segment"],
    ["escaped dots past two", "/v1/tenants/acme/%2e%2e%2e/x", "ambiguous_segment"],
    ["a tenant with a trailing dot", "/v1/tenants/acme./x", "ambiguous_segment"],
    ["a tenant with an escaped NUL", "/v1/tenants/acme%00/x", "control_character"],
    ["a tenant with a path parameter", "/v1/tenants/acme;globex/x", "path_parameter"],
    ["an overlong slash after the tenant", "/v1/tenants/acme%C0%AFglobex/x", "invalid_utf8"],
    ["a tenant in fullwidth letters", "/v1/tenants/%EF%BD%81cme/x", "ambiguous_segment"],
  ])("%s is refused 400 before any route or token is looked at", async (_label, path, detail) => {
    const edge = harness(policy());
    const r = await call(edge, path, { headers: await bearerOf({ tenant_id: "acme" }) });
    expect(r.response.status).toBe(400);
    expect(r.body?.reason).toBe("bad_request");
    expect(r.record).toMatchObject({ decision: "deny", reason: "bad_request", detail, route: null, token_hash: null });
    expect(r.seen).toHaveLength(0);
  });
});
