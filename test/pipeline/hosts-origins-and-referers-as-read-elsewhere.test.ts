// The request's host, its Origin and its Referer as the edge reads them, beside how browsers
// (WHATWG URL, Fetch's Origin serialisation, RFC 6454) and origin frameworks read the same
// values. Each test asserts the reason, the audit record and what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { ACCESS_AUD_TAG, accessAssertion, makeIssuer, type TestIssuer } from "../support/issuers";
import { accessAppEdge, admins, bearerOf, signedIn, tenantBound, withIdp } from "../support/guarded-sites";
import { sendMarked } from "../support/sent";
import { WireRequest } from "../support/wire-request";

let idp: TestIssuer;
let team: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
  team = await makeIssuer("RS256");
});

/** A tenant host (`:tenant.tenants.example.test`, `/app/**`), then `/**` for any signed-in caller. */
const tenantHostEdge = () =>
  harness(tenantBound(idp, { name: "tenant-host", path: "/app/**", host: ":tenant.tenants.example.test" }));

/** The admin host, guarded by the `admins` group, then `/**` on any host for any signed-in caller. */
const adminHostEdge = () =>
  harness(
    withIdp(idp, [
      {
        name: "admin-host",
        methods: ["GET"],
        path: "/**",
        host: "admin.example.test",
        auth: admins(),
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/**", auth: signedIn(), upstream: "echo" },
    ]),
  );

// WHATWG URL forbids no comma in a host (it is no forbidden host code point), so
// `https://a.example.test,b.example.test/` parses with that whole string as its host, and the
// edge writes it into X-Forwarded-Host as it is. Frameworks read X-Forwarded-Host as the list a
// chain of proxies appends to: Express's `req.hostname` takes the element before the first
// comma; Rails' `raw_host_with_port` (`split(/,\s?/).last`) and Rack's `host_with_port` take
// the last. Either element is a host of the edge's zone, so the request reaches the Worker under
// a wildcard route, and one of them is a host a route guards.
describe("a host that lists two hosts, as X-Forwarded-Host reads to an origin", () => {
  it("`globex.<tenant suffix>,www.example.test` is not forwarded unbound for acme's caller: origins reading the first host take it for globex's", async () => {
    const edge = tenantHostEdge();
    const acme = await bearerOf(idp, { sub: "alice", tenant_id: "acme" });
    // Control: globex's own host refuses acme's caller.
    const direct = await sendMarked(edge, "https://globex.tenants.example.test/app/orders", { headers: acme });
    expect(direct.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-host" });
    expect(direct.seen).toHaveLength(0);

    const r = await sendMarked(edge, "https://globex.tenants.example.test,www.example.test/app/orders", {
      headers: acme,
    });
    expect(r.seen.map((s) => s.headers["x-forwarded-host"])).toEqual([]);
    expect(r.response.status).toBe(400);
    expect(r.body?.reason).toBe("bad_request");
    expect(r.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_host", route: null });
  });

  it("`www.example.test,admin.example.test` is not forwarded under the route for any host: origins reading the last host take it for the admin host", async () => {
    const edge = adminHostEdge();
    const staff = await bearerOf(idp, { sub: "bob", groups: ["staff"] });
    // Control: the admin host itself refuses a caller outside `admins`.
    const direct = await sendMarked(edge, "https://admin.example.test/reports", { headers: staff });
    expect(direct.record).toMatchObject({
      decision: "deny",
      reason: "forbidden",
      detail: "group",
      route: "admin-host",
    });
    expect(direct.seen).toHaveLength(0);

    const r = await sendMarked(edge, "https://www.example.test,admin.example.test/reports", { headers: staff });
    expect(r.seen.map((s) => s.headers["x-forwarded-host"])).toEqual([]);
    expect(r.response.status).toBe(400);
    expect(r.body?.reason).toBe("bad_request");
    expect(r.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_host", route: null });
  });

  it("`admin.example.test,www.example.test` is not forwarded under the route for any host: origins reading the first host take it for the admin host", async () => {
    const edge = adminHostEdge();
    const staff = await bearerOf(idp, { sub: "bob", groups: ["staff"] });
    const r = await sendMarked(edge, "https://admin.example.test,www.example.test/reports", { headers: staff });
    expect(r.seen.map((s) => s.headers["x-forwarded-host"])).toEqual([]);
    expect(r.response.status).toBe(400);
    expect(r.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_host", route: null });
  });

  it("`www.example.test,globex.<tenant suffix>` (last host a tenant's) is refused ambiguous_host, nothing forwarded", async () => {
    const edge = tenantHostEdge();
    const acme = await bearerOf(idp, { sub: "alice", tenant_id: "acme" });
    const r = await sendMarked(edge, "https://www.example.test,globex.tenants.example.test/app/orders", {
      headers: acme,
    });
    expect(r.seen).toHaveLength(0);
    expect(r.response.status).toBe(400);
    expect(r.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_host" });
  });

  it.each(["admin.example.test;www.example.test", "admin.example.test*", "www.example.test!", "admin+x.example.test"])(
    "a host holding a character no host name holds (%s) is refused ambiguous_host, nothing forwarded",
    async (host) => {
      const edge = adminHostEdge();
      expect(new URL(`https://${host}/reports`).host).toBe(host);
      const r = await sendMarked(edge, `https://${host}/reports`, { headers: await bearerOf(idp, { sub: "bob" }) });
      expect(r.seen).toHaveLength(0);
      expect(r.response.status).toBe(400);
      expect(r.record).toMatchObject({
        decision: "deny",
        reason: "bad_request",
        detail: "ambiguous_host",
        route: null,
      });
    },
  );

  it.each([
    "www.example.test",
    "WWW.Example.TEST",
    "www.example.test.",
    "www.example.test:8443",
    "my_host.example.test",
    "xn--bcher-kva.example.test",
    "192.0.2.10",
    "[2001:db8::1]:8443",
    "localhost",
  ])("the host %s, as real clients write hosts, goes on to the route for any host", async (host) => {
    const edge = adminHostEdge();
    const r = await sendMarked(edge, `https://${host}/reports`, { headers: await bearerOf(idp, { sub: "bob" }) });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", route: "any" });
    expect(r.seen).toHaveLength(1);
  });
});

const accessEdge = () => accessAppEdge(team);

describe("a host as the client writes it, and the origin a browser names for it", () => {
  // A browser without Sec-Fetch-Site (Safari before 16.4) names the page in Origin, serialised
  // (Fetch §3.1; RFC 6454 §6.2): scheme and host in lower case, no default port. The Host line
  // it sent for the same origin may be spelt otherwise; both are the one origin the URL parser
  // makes of them, and the origin is told that host.
  it.each([
    ["in upper case", "https://EDGE.TEST/app/transfer"],
    ["with the default port", "https://edge.test:443/app/transfer"],
    ["with an empty port", "https://edge.test:/app/transfer"],
  ])(
    "a post from this origin's own page to its host %s passes, and X-Forwarded-Host is edge.test",
    async (_label, url) => {
      const edge = accessEdge();
      const m = marker();
      const token = await accessAssertion(team, ACCESS_AUD_TAG);
      const response = await edge.fetch(
        new WireRequest(url, {
          method: "POST",
          body: "to=savings",
          headers: { cookie: `CF_Authorization=${token}`, origin: "https://edge.test", "x-test-marker": m },
        }),
      );
      expect(response.status).toBe(200);
      expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "app", path: "/app/transfer" });
      const seen = await originSaw(m);
      expect(seen.map((s) => [s.headers["x-forwarded-host"], s.headers["x-forwarded-proto"]])).toEqual([
        ["edge.test", "https"],
      ]);
      expect(seen[0]!.headers.origin).toBe("https://edge.test");
    },
  );

  // `edge.test.` and `edge.test` are two hosts to a browser (RFC 6454 §5 compares hosts as
  // strings): a page on one is another origin to the other, though routes take them alike.
  it("a post to the fully qualified `edge.test.` from a page on `edge.test` is refused cross_site_origin; from `edge.test.` it passes", async () => {
    const edge = accessEdge();
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const post = (origin: string) =>
      sendMarked(edge, "https://edge.test./app/transfer", {
        method: "POST",
        body: "to=savings",
        headers: { cookie: `CF_Authorization=${token}`, origin },
      });
    const other = await post("https://edge.test");
    expect(other.response.status).toBe(403);
    expect(other.body?.reason).toBe("cross_site_request");
    expect(other.record).toMatchObject({ reason: "cross_site_request", detail: "cross_site_origin" });
    expect(other.seen).toHaveLength(0);
    const own = await post("https://edge.test.");
    expect(own.response.status).toBe(200);
    expect(own.record).toMatchObject({ decision: "allow", route: "app" });
    expect(own.seen.map((s) => s.headers["x-forwarded-host"])).toEqual(["edge.test."]);
  });

  // Fetch's Origin for a page with `Referrer-Policy: no-referrer` is `null` even on a
  // same-origin post; a sandboxed frame of any site sends the same. Without Sec-Fetch-Site the
  // edge cannot tell them apart, and refuses.
  it("Origin: null without Sec-Fetch-Site is refused cross_site_origin; with Sec-Fetch-Site: same-origin it passes", async () => {
    const edge = accessEdge();
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const headers = { cookie: `CF_Authorization=${token}`, origin: "null" };
    const opaque = await sendMarked(edge, "/app/transfer", { method: "POST", body: "a=1", headers });
    expect(opaque.response.status).toBe(403);
    expect(opaque.record).toMatchObject({ reason: "cross_site_request", detail: "cross_site_origin" });
    expect(opaque.seen).toHaveLength(0);
    const same = await sendMarked(edge, "/app/transfer", {
      method: "POST",
      body: "a=1",
      headers: { ...headers, "sec-fetch-site": "same-origin" },
    });
    expect(same.response.status).toBe(200);
    expect(same.record).toMatchObject({ decision: "allow", route: "app" });
    expect(same.seen).toHaveLength(1);
  });
});

describe("the page a Referer names, as an origin server parses it", () => {
  it.each([
    // Userinfo and backslashes (a special URL's `\` is `/`): the query still starts at the first
    // `?`, and the user name and password go as the token does (RFC 9110 §10.1.3).
    ["https://u:p@app.example\\cb\\?x=1&Access_Token=abc.def.ghi", "https://app.example\\cb\\?x=1"],
    // Userinfo after backslashes, as a special URL reads them, up to the last `@` before the host ends.
    ["HTTPS:\\\\u:p@q@app.example/cb", "HTTPS:\\\\app.example/cb"],
    // PHP's `.` for `_`, and an escape, in a Referer no URL parser takes.
    ["::not a url::?access.token=abc.def.ghi&k=v#f", "::not a url::?k=v"],
    // The token inside another parameter's value is that parameter's, to every parser.
    [
      "https://app.example/?next=%2Fcb%3Faccess_token%3Dabc.def.ghi",
      "https://app.example/?next=%2Fcb%3Faccess_token%3Dabc.def.ghi",
    ],
  ])("%s reaches the origin as %s", async (referer, forwarded) => {
    const edge = harness(basePolicy());
    const r = await sendMarked(edge, "/public/a", { headers: { referer } });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", route: "public" });
    expect(r.seen.map((s) => s.headers.referer)).toEqual([forwarded]);
  });
});
