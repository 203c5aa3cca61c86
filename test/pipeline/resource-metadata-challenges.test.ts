// `auth.resource_metadata` (RFC 9728 §5.1): the route's protected
// resource metadata URL rides in every Bearer challenge the route answers with, and in no other
// answer. MCP clients (the 2025-06-18 authorization specification) read it from the 401's
// `WWW-Authenticate` to find the authorisation server; a challenge that names another route's
// metadata sends them to sign in for the wrong resource, and one a refusal carries that no token
// could cure sends them round the sign-in loop. mcp-traffic.test.ts covers the plain 401s and the
// scope 403; these are the refusals beside them, the browser client that reads the 401, and the
// public metadata route README's MCP paragraph has an operator add. Origin: the loopback echo.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** The MCP Inspector's page, as a browser sends its origin. */
const INSPECTOR = "http://localhost:6274";
const METADATA = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
const ADMIN_METADATA = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp/admin";

/**
 * An MCP server as README's MCP paragraph writes one: `/mcp` (GET, POST, DELETE) naming its
 * metadata, open to the Inspector's page; `/mcp/admin` for one group, bound to a tenant, with
 * metadata of its own; the public metadata route; and, last, a signed-in catch-all naming none.
 */
function mcpPolicy(): PolicyDocument {
  const cors = {
    allow_origins: [INSPECTOR],
    allow_headers: ["authorization", "content-type", "mcp-protocol-version", "mcp-session-id", "last-event-id"],
    expose_headers: ["mcp-session-id", "www-authenticate"],
  };
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    routes: [
      {
        name: "mcp",
        methods: ["GET", "POST", "DELETE"],
        path: "/mcp",
        auth: { issuers: ["idp"], resource_metadata: METADATA },
        upstream: "echo",
        cors,
      },
      {
        name: "mcp-admin",
        methods: ["POST"],
        path: "/t/:tenant/mcp/admin",
        auth: { issuers: ["idp"], groups: { any_of: ["mcp-admins"] }, resource_metadata: ADMIN_METADATA },
        upstream: "echo",
      },
      {
        name: "resource-metadata",
        methods: ["GET"],
        path: "/.well-known/oauth-protected-resource/**",
        auth: "public",
        upstream: "echo",
        cors: { allow_origins: [INSPECTOR] },
      },
      { name: "signed-in", methods: ["GET", "POST"], path: "/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ],
  });
}

describe("a browser MCP client reads the edge's own 401", () => {
  // The TypeScript SDK's client reads `WWW-Authenticate` of the 401 with `fetch`: in a page it
  // can, only if the answer allows its origin and exposes the header (Fetch, CORS-safelisted
  // response headers). The origin never sees a request without a token, so only the edge's
  // CORS headers on its own refusal can let the page find the authorisation server.
  it("a POST without a token: 401 token_missing, the challenge naming the metadata, readable by the Inspector's page", async () => {
    const edge = harness(mcpPolicy());
    const sent = await sendMarked(edge, "/mcp", {
      method: "POST",
      headers: { origin: INSPECTOR, "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: {} }),
    });
    expect(sent.response.status).toBe(401);
    expect(sent.body?.reason).toBe("token_missing");
    expect(sent.record).toMatchObject({
      decision: "deny",
      route: "mcp",
      reason: "token_missing",
      detail: "no_credentials",
    });
    expect(sent.response.headers.get("www-authenticate")).toBe(
      `Bearer realm="portcullis", resource_metadata="${METADATA}"`,
    );
    expect(sent.response.headers.get("access-control-allow-origin")).toBe(INSPECTOR);
    expect(sent.response.headers.get("access-control-expose-headers")).toBe("mcp-session-id, www-authenticate");
    expect(sent.seen).toEqual([]);
  });
});

describe("every Bearer challenge of the route names its metadata, and only its own", () => {
  it("two Authorization headers: 400 token_malformed multiple_credentials, invalid_request naming the metadata", async () => {
    const edge = harness(mcpPolicy());
    const token = await issuer.sign({});
    const headers = new Headers();
    headers.append("authorization", `Bearer ${token}`);
    headers.append("authorization", `Bearer ${token}`);
    const sent = await sendMarked(edge, "/mcp", { method: "POST", headers, body: "{}" });
    expect(sent.response.status).toBe(400);
    expect(sent.body?.reason).toBe("token_malformed");
    expect(sent.record).toMatchObject({ route: "mcp", reason: "token_malformed", detail: "multiple_credentials" });
    expect(sent.response.headers.get("www-authenticate")).toBe(
      `Bearer realm="portcullis", error="invalid_request", resource_metadata="${METADATA}"`,
    );
    expect(sent.seen).toEqual([]);
  });

  it("a token in the query: 401 token_missing query_token_not_accepted, naming the metadata, and the token never forwarded", async () => {
    const edge = harness(mcpPolicy());
    const sent = await sendMarked(edge, `/mcp?access_token=${await issuer.sign({})}`, {
      headers: { accept: "text/event-stream" },
    });
    expect(sent.response.status).toBe(401);
    expect(sent.record).toMatchObject({ route: "mcp", reason: "token_missing", detail: "query_token_not_accepted" });
    expect(sent.response.headers.get("www-authenticate")).toBe(
      `Bearer realm="portcullis", resource_metadata="${METADATA}"`,
    );
    expect(sent.seen).toEqual([]);
  });

  it("another route's 401 names that route's metadata, and the catch-all's names none", async () => {
    const edge = harness(mcpPolicy());
    const admin = await sendMarked(edge, "/t/acme/mcp/admin", {
      method: "POST",
      headers: { authorization: `Bearer ${await issuer.sign({ aud: "https://elsewhere.test" })}` },
      body: "{}",
    });
    expect(admin.record).toMatchObject({ route: "mcp-admin", reason: "audience_mismatch", detail: "aud" });
    expect(admin.response.headers.get("www-authenticate")).toBe(
      `Bearer realm="portcullis", error="invalid_token", resource_metadata="${ADMIN_METADATA}"`,
    );
    const other = await sendMarked(edge, "/tools", {});
    expect(other.record).toMatchObject({ route: "signed-in", reason: "token_missing" });
    expect(other.response.headers.get("www-authenticate")).toBe('Bearer realm="portcullis"');
    expect(admin.seen.length + other.seen.length).toBe(0);
  });

  // A token cannot cure these: a challenge on them would send an MCP client to sign in again,
  // round and round. Each refusal is checked by its reason, so none passes for the wrong one.
  it("refusals no token cures carry no challenge (a group, a tenant, a method left out); a suffix read as /mcp is the catch-all's", async () => {
    const edge = harness(mcpPolicy());
    const group = await sendMarked(edge, "/t/acme/mcp/admin", {
      method: "POST",
      headers: { authorization: `Bearer ${await issuer.sign({ groups: ["users"] })}` },
      body: "{}",
    });
    expect(group.record).toMatchObject({ route: "mcp-admin", reason: "forbidden", detail: "group" });
    const tenant = await sendMarked(edge, "/t/globex/mcp/admin", {
      method: "POST",
      headers: { authorization: `Bearer ${await issuer.sign({ groups: ["mcp-admins"] })}` },
      body: "{}",
    });
    expect(tenant.record).toMatchObject({ route: "mcp-admin", reason: "tenant_mismatch", detail: "tenant" });
    // README's MCP paragraph: a method the route leaves out is the edge's 405 method_not_allowed,
    // with the methods routes take there.
    const method = await sendMarked(edge, "/mcp", { method: "PUT", body: "{}" });
    expect(method.record).toMatchObject({ decision: "deny", route: null, reason: "method_not_allowed" });
    expect(method.body?.reason).toBe("method_not_allowed");
    expect(method.response.headers.get("allow")).toBe("GET, HEAD, POST, DELETE");
    // Matched by the catch-all, read by Rails as `/mcp` (a format suffix), whose rules the
    // catch-all's are as strict as: the catch-all's request, and its challenge names no metadata.
    const suffix = await sendMarked(edge, "/mcp.json", {});
    expect(suffix.record).toMatchObject({ decision: "deny", route: "signed-in", reason: "token_missing" });
    expect(
      [group, tenant, method, suffix].map((s) => [s.response.status, s.response.headers.get("www-authenticate")]),
    ).toEqual([
      [403, null],
      [403, null],
      [405, null],
      [401, 'Bearer realm="portcullis"'],
    ]);
    expect(group.seen.length + tenant.seen.length + method.seen.length + suffix.seen.length).toBe(0);
  });
});

describe("the public metadata route README's MCP paragraph adds", () => {
  // The client fetches the document the challenge names; a catch-all written after it must
  // not take it, and a token the client sends along must not reach the origin.
  it("GET /.well-known/oauth-protected-resource/mcp reaches the origin as sent, without Authorization, readable by the page", async () => {
    const edge = harness(mcpPolicy());
    const sent = await sendMarked(edge, new URL(METADATA).pathname, {
      headers: { origin: INSPECTOR, authorization: `Bearer ${await issuer.sign({})}`, accept: "application/json" },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.record).toMatchObject({ decision: "allow", route: "resource-metadata", reason: null, detail: null });
    expect(sent.seen.map((s) => `${s.method} ${s.raw_target}`)).toEqual([
      "GET /.well-known/oauth-protected-resource/mcp",
    ]);
    expect(sent.got.authorization).toBeUndefined();
    expect(sent.got.accept).toBe("application/json");
    expect(sent.response.headers.get("access-control-allow-origin")).toBe(INSPECTOR);
    expect(sent.response.headers.get("www-authenticate")).toBeNull();
  });
});
