// Routes that match on the request's host, and tenant binding from a host label
// (`:tenant.example.com`), through real requests: what the client gets back, the audit
// record, and what (if anything) reached the echo origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

function hostPolicy(): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    routes: [
      {
        name: "api-host",
        methods: ["GET"],
        path: "/v1/**",
        host: "api.example.test",
        auth: "public",
        upstream: "echo",
      },
      {
        name: "www-host",
        methods: ["GET"],
        path: "/v1/**",
        host: "www.example.test",
        auth: "public",
        upstream: "echo",
      },
      {
        name: "tenant-host",
        methods: ["GET", "POST"],
        path: "/app/**",
        host: ":tenant.tenants.example.test",
        auth: { issuers: ["idp"], scopes: { all_of: ["api:read"] } },
        upstream: "echo",
      },
    ],
  });
}

/** `sendMarked`, and that the request wrote exactly one audit record, as every request here must. */
async function call(edge: Harness, url: string, headers: Record<string, string> = {}) {
  const sent = await sendMarked(edge, url, { headers });
  expect(sent.records).toHaveLength(1);
  return sent;
}

describe("routes with a host", () => {
  it("a route matches its own host and forwards", async () => {
    const edge = harness(hostPolicy());
    const { response, seen, record } = await call(edge, "https://api.example.test/v1/things?q=1");
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ path: "/v1/things", query: "q=1" });
    expect(record).toMatchObject({ decision: "allow", route: "api-host" });
  });

  it("the host picks between routes with the same path", async () => {
    const edge = harness(hostPolicy());
    const www = await call(edge, "https://www.example.test/v1/things");
    expect(www.response.status).toBe(200);
    expect(www.seen).toHaveLength(1);
    expect(www.record).toMatchObject({ decision: "allow", route: "www-host" });
  });

  it.each([
    ["another host", "https://edge.test/v1/things"],
    ["a host that ends with the route's host", "https://evil-api.example.test/v1/things"],
    ["a host that starts with the route's host", "https://api.example.test.evil.test/v1/things"],
    ["a subdomain of the route's host", "https://x.api.example.test/v1/things"],
  ])("%s gets the edge's 404 route_not_found and nothing reaches the origin", async (_label, url) => {
    const edge = harness(hostPolicy());
    const { response, body, seen, record } = await call(edge, url);
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(body?.reason).toBe("route_not_found");
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({ decision: "deny", reason: "route_not_found", status: 404 });
  });

  it.each([
    ["another port", "https://api.example.test:8443/v1/things"],
    ["its fully qualified name", "https://api.example.test./v1/things"],
  ])("a route's host on %s is still that route's host", async (_label, url) => {
    const edge = harness(hostPolicy());
    const { response, seen, record } = await call(edge, url);
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(record).toMatchObject({ decision: "allow", route: "api-host" });
  });

  it.each([
    ["two trailing dots", "https://acme.tenants.example.test../app/orders"],
    ["an empty label before the suffix", "https://acme..tenants.example.test/app/orders"],
    ["two trailing dots and a port", "https://acme.tenants.example.test..:8443/app/orders"],
    ["a leading dot", "https://.acme.tenants.example.test/app/orders"],
    ["an empty label in an exact host", "https://api..example.test/v1/things"],
  ])("a host with %s is refused 400 ambiguous_host, never served by a host-less route", async (_label, url) => {
    // Behind these routes, one for every host: the empty label made the host routes miss, and
    // a globex token reached the origin on acme's host through it.
    const policy = hostPolicy();
    policy.routes.push({ name: "any", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "echo" });
    const edge = harness(policy);
    const token = await issuer.sign({ tenant_id: "globex", scope: "api:read" });
    const { response, body, seen, record } = await call(edge, url, { authorization: `Bearer ${token}` });
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_host", route: null });
  });

  it("host matching ignores case, as DNS does", async () => {
    const edge = harness(hostPolicy());
    const { response, seen, record } = await call(edge, "https://API.Example.TEST/v1/things");
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(record).toMatchObject({ route: "api-host" });
  });
});

describe("tenant binding from a host label", () => {
  it("a token for acme on acme.<host> reaches the origin with the edge's identity headers", async () => {
    const edge = harness(hostPolicy());
    const token = await issuer.sign({ sub: "alice", tenant_id: "acme", scope: "api:read" });
    const { response, seen, record } = await call(edge, "https://acme.tenants.example.test/app/orders", {
      authorization: `Bearer ${token}`,
      "x-tenant": "globex",
      "x-user-sub": "mallory",
    });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    const headers = seen[0]!.headers;
    expect(seen[0]!.path).toBe("/app/orders");
    expect(headers["x-tenant"]).toBe("acme");
    expect(headers["x-user-sub"]).toBe("alice");
    expect(headers["x-user-iss"]).toBe(issuer.url);
    expect(headers["x-user-scope"]).toBe("api:read");
    expect(headers.authorization).toBeUndefined();
    expect(record).toMatchObject({ decision: "allow", route: "tenant-host", tenant_id: "acme", user_sub: "alice" });
  });

  it("the same token on globex.<host> is refused as tenant_mismatch and nothing reaches the origin", async () => {
    const edge = harness(hostPolicy());
    const token = await issuer.sign({ sub: "alice", tenant_id: "acme", scope: "api:read" });
    const { response, body, seen, record } = await call(edge, "https://globex.tenants.example.test/app/orders", {
      authorization: `Bearer ${token}`,
    });
    expect(response.status).toBe(403);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(body).toMatchObject({ reason: "tenant_mismatch", status: 403, title: "Forbidden" });
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({
      decision: "deny",
      reason: "tenant_mismatch",
      detail: "tenant",
      route: "tenant-host",
      status: 403,
    });
  });

  it.each([
    ["another port", "https://globex.tenants.example.test:8443/app/orders"],
    ["its fully qualified name", "https://globex.tenants.example.test./app/orders"],
  ])("a tenant host on %s is still bound to the token's tenant", async (_label, url) => {
    const edge = harness(hostPolicy());
    const token = await issuer.sign({ sub: "alice", tenant_id: "acme", scope: "api:read" });
    const { response, body, seen, record } = await call(edge, url, { authorization: `Bearer ${token}` });
    expect(response.status).toBe(403);
    expect(body?.reason).toBe("tenant_mismatch");
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "tenant-host" });
  });

  it("a token without a tenant matches no host label", async () => {
    const edge = harness(hostPolicy());
    const token = await issuer.sign({ tenant_id: undefined, scope: "api:read" });
    const { response, body, seen, record } = await call(edge, "https://acme.tenants.example.test/app/orders", {
      authorization: `Bearer ${token}`,
    });
    expect(response.status).toBe(403);
    expect(body?.reason).toBe("tenant_mismatch");
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({ reason: "tenant_mismatch", detail: "token_has_no_tenant" });
  });

  it.each([
    ["the bare suffix", "https://tenants.example.test/app/orders"],
    ["two labels before the suffix", "https://acme.globex.tenants.example.test/app/orders"],
    ["a look-alike suffix", "https://acme.tenants.example.test.evil.test/app/orders"],
  ])("%s is not a tenant host: 404 route_not_found, nothing forwarded", async (_label, url) => {
    const edge = harness(hostPolicy());
    const token = await issuer.sign({ tenant_id: "acme", scope: "api:read" });
    const { response, body, seen, record } = await call(edge, url, { authorization: `Bearer ${token}` });
    expect(response.status).toBe(404);
    expect(body?.reason).toBe("route_not_found");
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({ decision: "deny", reason: "route_not_found" });
  });
});
