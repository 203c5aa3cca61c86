// A request whose URL routes take, but not for its method: 405 with the methods they take
// (RFC 9110 §15.5.6), as the origin would answer, never forwarded; a URL no route takes for
// any method stays 404. MCP clients open their event stream with a GET and must be told 405
// where the server offers none: a 404 tells them their session is gone.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { admins, bearerOf, getRoute, siteWithAdmin, tenantBound, withIdp } from "../support/guarded-sites";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

const policy = () =>
  basePolicy({
    issuers: {
      idp: {
        kind: "oidc",
        issuer: "https://idp.portcullis.test",
        jwks_uri: "https://idp.portcullis.test/jwks",
        audiences: ["api"],
      },
    },
    routes: [
      { name: "reads", methods: ["GET"], path: "/orders/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      { name: "writes", methods: ["POST", "PATCH"], path: "/orders/*", auth: { issuers: ["idp"] }, upstream: "echo" },
      { name: "mcp", methods: ["POST", "DELETE"], path: "/mcp", auth: { issuers: ["idp"] }, upstream: "echo" },
      {
        name: "tenant-site",
        methods: ["PUT"],
        host: "shop.example.com",
        path: "/cart",
        auth: "public",
        upstream: "echo",
      },
      { name: "page", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
    ],
  });

describe("a URL routes take for other methods", () => {
  it("is 405 method_not_allowed with every method routed there in Allow, before any credential is asked for", async () => {
    const edge = harness(policy());
    const sent = await sendMarked(edge, "/orders/7", { method: "DELETE", headers: { authorization: "Bearer x" } });
    expect(sent.response.status).toBe(405);
    // Both routes' methods, HEAD wherever GET is, in one order whatever the routes' order.
    expect(sent.response.headers.get("allow")).toBe("GET, HEAD, POST, PATCH");
    expect(sent.body).toMatchObject({ status: 405, reason: "method_not_allowed", title: "Method not allowed" });
    expect(sent.response.headers.get("cache-control")).toBe("no-store");
    // No credential would change the answer: no challenge.
    expect(sent.response.headers.get("www-authenticate")).toBeNull();
    expect(sent.record).toMatchObject({ decision: "deny", reason: "method_not_allowed", route: null, status: 405 });
    expect(sent.seen).toEqual([]);
    await edge.settle();
    expect(edge.dataPoints.at(-1)?.blobs?.[1]).toBe("method_not_allowed");
  });

  it("tells an MCP client opening its event stream with a GET where the server takes none 405, not a lost session", async () => {
    const mcp = policy();
    mcp.routes = mcp.routes.filter((route) => route.name === "mcp");
    const sent = await sendMarked(harness(mcp), "/mcp", {
      method: "GET",
      headers: { accept: "text/event-stream", "mcp-session-id": "s-1" },
    });
    expect(sent.response.status).toBe(405);
    expect(sent.response.headers.get("allow")).toBe("POST, DELETE");
    expect(sent.seen).toEqual([]);
  });

  it("counts a host's routes on that host alone", async () => {
    const edge = harness(policy());
    const onHost = await sendMarked(edge, "https://shop.example.com/cart", { method: "POST" });
    expect(onHost.response.status).toBe(405);
    // The catch-all takes GET everywhere, the host's route PUT on its host.
    expect(onHost.response.headers.get("allow")).toBe("GET, HEAD, PUT");
    const elsewhere = await sendMarked(edge, "https://other.example.com/cart", { method: "POST" });
    expect(elsewhere.response.headers.get("allow")).toBe("GET, HEAD");
    expect([...onHost.seen, ...elsewhere.seen]).toEqual([]);
  });

  it("leaves out a method whose request the route stage would refuse as read as another route's", async () => {
    // `/orders.json` is `/orders` to Rails: a GET there is the catch-all's by the edge's match,
    // the guarded `/orders/**` route's by the origin's reading, and refused as ambiguous.
    const edge = harness(policy());
    const get = await sendMarked(edge, "/orders.json");
    expect(get.record).toMatchObject({ reason: "bad_request", detail: "ambiguous_format" });
    const put = await sendMarked(edge, "/orders.json", { method: "PUT" });
    expect(put.response.status).toBe(404);
    expect(put.body?.reason).toBe("route_not_found");
    expect(put.response.headers.get("allow")).toBeNull();
  });
});

describe("a URL no route takes for any method", () => {
  it("is 404 route_not_found, without Allow", async () => {
    const edge = harness(
      basePolicy({
        routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" }],
      }),
    );
    const sent = await sendMarked(edge, "/private/x", { method: "DELETE" });
    expect(sent.response.status).toBe(404);
    expect(sent.body?.reason).toBe("route_not_found");
    expect(sent.response.headers.get("allow")).toBeNull();
    expect(sent.record).toMatchObject({ decision: "deny", reason: "route_not_found", route: null });
    expect(sent.seen).toEqual([]);
  });
});

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("Allow names no method the route stage refuses at that URL", () => {
  // `:tenant.tenants.example.test` takes one label, so `globex.acme.tenants.example.test` misses
  // the tenant route; a route for any host would take it, and is refused there
  // (`ambiguous_host`: Rails' subdomain reads `globex`). No request to that host goes on under
  // a route for any host, whatever its method: the README's "404 where none would".
  it("on a host with more labels than a `:tenant` host's capture, a method no route takes is 404, not 405 naming methods refused as ambiguous_host", async () => {
    const edge = harness(
      tenantBound(issuer, { name: "tenant-host", path: "/app/**", host: ":tenant.tenants.example.test" }),
    );
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    const url = "https://globex.acme.tenants.example.test/app/orders";
    // Control: each method the routes take there is refused at the route stage.
    for (const method of ["GET", "HEAD"]) {
      const refused = await sendMarked(edge, url, { method, headers: acme });
      expect(refused.response.status, method).toBe(400);
      expect(refused.record, method).toMatchObject({ reason: "bad_request", detail: "ambiguous_host", route: null });
      expect(refused.seen, method).toEqual([]);
    }

    const sent = await sendMarked(edge, url, { method: "POST", headers: acme, body: "{}" });
    expect(sent.seen).toEqual([]);
    expect(sent.response.headers.get("allow")).toBeNull();
    expect(sent.response.status).toBe(404);
    expect(sent.body?.reason).toBe("route_not_found");
    expect(sent.record).toMatchObject({ decision: "deny", reason: "route_not_found", route: null, status: 404 });
  });

  // CodeIgniter routes `/index.php?/admin/users` as `/admin/users`: under a public `/**` behind a
  // guarded `/admin/**`, a GET of that URL is refused (`ambiguous_path_info`). The target
  // resource is the URL with its query: a GET of it does not go on.
  it("for a front controller's URL with a path in its query, a method no route takes is 404, not 405 naming GET refused as ambiguous_path_info", async () => {
    const edge = harness(siteWithAdmin(issuer));
    const url = "/index.php?/admin/users";
    for (const method of ["GET", "HEAD"]) {
      const refused = await sendMarked(edge, url, { method });
      expect(refused.response.status, method).toBe(400);
      expect(refused.record, method).toMatchObject({ reason: "bad_request", detail: "ambiguous_path_info" });
      expect(refused.seen, method).toEqual([]);
    }
    // Control: without the query, GET goes on there, and a POST is told so.
    const plain = await sendMarked(edge, "/index.php", { method: "POST", body: "x" });
    expect(plain.response.status).toBe(405);
    expect(plain.response.headers.get("allow")).toBe("GET, HEAD");

    const sent = await sendMarked(edge, url, { method: "POST", body: "x" });
    expect(sent.seen).toEqual([]);
    expect(sent.response.headers.get("allow")).toBeNull();
    expect(sent.response.status).toBe(404);
    expect(sent.body?.reason).toBe("route_not_found");
    expect(sent.record).toMatchObject({ decision: "deny", reason: "route_not_found", route: null });
  });

  // `/ADMIN/users` is `/admin/users` to an origin routing without regard to case: the public
  // site's GET there is refused (`ambiguous_case`), so nothing goes on at that URL.
  it("leaves out a method refused for letter case, and with none left answers 404", async () => {
    const edge = harness(siteWithAdmin(issuer));
    const get = await sendMarked(edge, "/ADMIN/users");
    expect(get.record).toMatchObject({ reason: "bad_request", detail: "ambiguous_case" });
    const sent = await sendMarked(edge, "/ADMIN/users", { method: "DELETE" });
    expect(sent.response.status).toBe(404);
    expect(sent.response.headers.get("allow")).toBeNull();
    expect(sent.record).toMatchObject({ decision: "deny", reason: "route_not_found", route: null });
    expect([...get.seen, ...sent.seen]).toEqual([]);
  });

  it("names the guarded route's methods as the unguarded ones, no more: what a 401 there tells anyone already", async () => {
    const edge = harness(
      withIdp(issuer, [
        { name: "admin", methods: ["GET", "PUT"], path: "/admin/**", auth: admins(), upstream: "echo" },
        getRoute("site", "/**", "public"),
      ]),
    );
    const sent = await sendMarked(edge, "/admin/users", { method: "PATCH", body: "{}" });
    expect(sent.response.status).toBe(405);
    expect(sent.response.headers.get("allow")).toBe("GET, HEAD, PUT");
    expect(sent.response.headers.get("www-authenticate")).toBeNull();
    expect(sent.body).toMatchObject({ reason: "method_not_allowed", status: 405 });
    expect(sent.record).toMatchObject({ decision: "deny", reason: "method_not_allowed", route: null, tenant_id: null });
    expect(sent.seen).toEqual([]);
    // Each method listed is one the same anonymous caller is answered for without the list.
    const put = await sendMarked(edge, "/admin/users", { method: "PUT", body: "{}" });
    expect(put.record).toMatchObject({ reason: "token_missing", route: "admin" });
  });

  it("answers a HEAD no route takes 405 with Allow and no body, never forwarded", async () => {
    const edge = harness(
      basePolicy({
        routes: [{ name: "writes", methods: ["POST"], path: "/inbox", auth: "public", upstream: "echo" }],
      }),
    );
    const sent = await sendMarked(edge, "/inbox", { method: "HEAD" });
    expect(sent.response.status).toBe(405);
    expect(sent.response.headers.get("allow")).toBe("POST");
    expect(sent.response.headers.get("cache-control")).toBe("no-store");
    expect(sent.text).toBe("");
    expect(sent.record).toMatchObject({ decision: "deny", reason: "method_not_allowed", method: "HEAD" });
    expect(sent.seen).toEqual([]);
  });
});

describe("a browser MCP client is told its server offers no event stream", () => {
  // The MCP Streamable HTTP transport: a client opens the server's event stream with a GET,
  // and "the server MUST either return Content-Type: text/event-stream … or else return HTTP
  // 405". In a browser the GET carries `Authorization` and `Mcp-Session-Id`, so a preflight goes
  // first, and the page reads the 405 only where that passes and the 405 carries
  // `Access-Control-Allow-Origin`: the README's setup routes GET to the server, which answers it.
  const INSPECTOR = "http://localhost:6274";
  const mcpServer = {
    fetch: async (_target: string, init: RequestInit) =>
      init.method === "GET"
        ? new Response(null, { status: 405, headers: { allow: "POST, DELETE" } })
        : new Response("{}"),
  };
  const mcpPolicy = (): PolicyDocument =>
    basePolicy({
      issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
      upstreams: { mcp: { service: "MCP" } },
      routes: [
        {
          name: "mcp",
          methods: ["GET", "POST", "DELETE"],
          path: "/mcp",
          auth: { issuers: ["idp"] },
          upstream: "mcp",
          cors: {
            allow_origins: [INSPECTOR],
            allow_headers: ["authorization", "content-type", "mcp-protocol-version", "mcp-session-id", "last-event-id"],
            expose_headers: ["mcp-session-id", "www-authenticate"],
          },
        },
      ],
    });

  it("with GET routed to the server, the GET's preflight passes and the server's 405 is readable by the page", async () => {
    const edge = harness(mcpPolicy(), {}, { MCP: mcpServer });
    const preflight = await edge.fetch("/mcp", {
      method: "OPTIONS",
      headers: {
        origin: INSPECTOR,
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization,mcp-protocol-version,mcp-session-id",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe(INSPECTOR);

    const get = await edge.fetch("/mcp", {
      headers: {
        origin: INSPECTOR,
        accept: "text/event-stream",
        authorization: `Bearer ${await issuer.sign({})}`,
        "mcp-session-id": "s-1",
        "mcp-protocol-version": "2025-06-18",
      },
    });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST, DELETE");
    expect(get.headers.get("access-control-allow-origin")).toBe(INSPECTOR);
    await edge.settle();
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "mcp", status: 405 });
  });
});
