// A remote MCP server behind the edge (the Streamable HTTP transport of the MCP specification,
// 2025-03-26 and later): one endpoint, `/mcp`, taking a POST of JSON-RPC (a single message or a
// batch) answered with JSON or an event stream, a GET opening the server's event stream
// (`Last-Event-ID` to resume it) and a DELETE ending the session, each carrying
// `Mcp-Session-Id` and `MCP-Protocol-Version`. What the official SDKs' clients send must reach
// the origin as sent, less the credential; an event stream must reach the client event by event,
// and a client that hangs up must end the origin's stream (the TypeScript SDK's server allows one
// GET stream per session and answers a second `409 Conflict` until the first one closes, so a
// client resuming with `Last-Event-ID` is locked out while an abandoned stream stays open). The
// origin is the loopback echo origin, or a service binding the test holds for the streams; no
// elapsed time is asserted: a stream that never arrives or never ends is left to vitest's timeout.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";
import { held } from "../support/waiting";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** The MCP Inspector's page, as a browser sends its origin. */
const INSPECTOR = "http://localhost:6274";

/** The `/mcp` endpoint any signed-in caller may use, open to the Inspector's page, forwarded to `upstream`. */
function mcpServer(upstream: "echo" | "held" = "echo"): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    upstreams: {
      echo: { url: echoOrigin, timeout_ms: 2000 },
      held: { service: "MCP_ORIGIN", timeout_ms: 2000 },
    },
    routes: [
      {
        name: "mcp",
        methods: ["GET", "POST", "DELETE"],
        path: "/mcp",
        auth: { issuers: ["idp"] },
        upstream,
        cors: {
          allow_origins: [INSPECTOR],
          allow_headers: ["authorization", "content-type", "mcp-protocol-version", "mcp-session-id", "last-event-id"],
          expose_headers: ["mcp-session-id", "www-authenticate"],
        },
      },
    ],
  });
}

/** A session id as the specification suggests one may be written: a JWT, which is no credential here. */
const SESSION = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiIxIn0.c2Vzc2lvbg";

describe("a Streamable HTTP client's requests reach the origin as sent, less the credential", () => {
  const batch = JSON.stringify([
    { jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "search", arguments: { q: "x" } } },
    { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 1 } },
  ]);

  it.each<[string, Record<string, string>, string | undefined]>([
    // The client's POST of a JSON-RPC batch: it must accept both answers, or the server refuses it (406).
    ["POST", { accept: "application/json, text/event-stream", "content-type": "application/json" }, batch],
    // The GET that opens (or, with Last-Event-ID, resumes) the server's own event stream.
    ["GET", { accept: "text/event-stream", "last-event-id": "stream-1:42" }, undefined],
    // The DELETE that ends the session, with no body.
    ["DELETE", {}, undefined],
  ])("%s /mcp with the session headers", async (method, headers, body) => {
    const edge = harness(mcpServer());
    const sent = await sendMarked(edge, "/mcp", {
      method,
      headers: {
        authorization: `Bearer ${await issuer.sign({})}`,
        "mcp-session-id": SESSION,
        "mcp-protocol-version": "2025-06-18",
        ...headers,
      },
      body,
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "mcp", reason: null, detail: null, status: 200 });
    expect(sent.seen.map((s) => `${s.method} ${s.raw_target}`)).toEqual([`${method} /mcp`]);
    // Every header the transport reads arrives as the client wrote it; the token does not.
    expect(sent.got).toMatchObject({ "mcp-session-id": SESSION, "mcp-protocol-version": "2025-06-18", ...headers });
    expect(sent.got.authorization).toBeUndefined();
    expect(sent.got["x-user-sub"]).toBe("user-1");
    expect(sent.seen[0]?.body_bytes).toBe(body === undefined ? 0 : new TextEncoder().encode(body).byteLength);
  });
});

describe("an event stream answer to a browser MCP client", () => {
  /**
   * A service binding answering as an MCP server's event stream does: headers and a priming
   * event at once, then each later event only when the test sends it; `cancelled` settles with
   * the reason when the stream is given up. `request` settles with the headers the origin got.
   */
  function streamingServer() {
    const encode = (text: string) => new TextEncoder().encode(text);
    const cancelled = held<string>();
    const request = held<Headers>();
    let events!: ReadableStreamDefaultController<Uint8Array>;
    const binding = {
      fetch: async (_target: string, init: RequestInit) => {
        request.resolve(new Headers(init.headers));
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            events = controller;
            controller.enqueue(encode("id: stream-1:43\ndata: \n\n"));
          },
          cancel(reason) {
            cancelled.resolve(String(reason));
          },
        });
        return new Response(body, {
          headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "mcp-session-id": "s-2" },
        });
      },
    };
    const send = (text: string) => events.enqueue(encode(text));
    return { binding, send, cancelled: cancelled.promise, request: request.promise };
  }

  it("GET with Last-Event-ID: each event reaches the page as sent, the session id is readable, and hanging up ends the origin's stream", async () => {
    const server = streamingServer();
    const edge = harness(mcpServer("held"), {}, { MCP_ORIGIN: server.binding });
    const response = await edge.fetch("/mcp", {
      headers: {
        origin: INSPECTOR,
        authorization: `Bearer ${await issuer.sign({})}`,
        accept: "text/event-stream",
        "mcp-session-id": "s-2",
        "last-event-id": "stream-1:42",
      },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    // The page can read the session id only if the edge exposes it: the origin's own
    // Access-Control-* headers never reach it.
    expect(response.headers.get("mcp-session-id")).toBe("s-2");
    expect(response.headers.get("access-control-allow-origin")).toBe(INSPECTOR);
    expect(response.headers.get("access-control-expose-headers")).toBe("mcp-session-id, www-authenticate");
    expect(response.headers.get("vary")).toBe("Authorization, Origin");
    const got = await server.request;
    expect(got.get("last-event-id")).toBe("stream-1:42");
    expect(got.get("mcp-session-id")).toBe("s-2");
    expect(got.has("authorization")).toBe(false);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", route: "mcp", status: 200, reason: null, detail: null });

    // Read while the origin holds its stream open: the priming event, then a notification the
    // origin sends only after the client has the first (nothing waits for the stream's end).
    const reader = (response.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
    expect((await reader.read()).value).toBe("id: stream-1:43\ndata: \n\n");
    const notification = 'id: stream-1:44\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n';
    server.send(notification);
    expect((await reader.read()).value).toBe(notification);

    // The client goes away: the origin's stream is given up with it, not left open.
    await reader.cancel("client gone");
    expect(await server.cancelled).toBe("client gone");
  });
});

describe("a route's protected resource metadata is named in its challenges (RFC 9728 §5.1)", () => {
  // MCP clients (2025-06-18) find the authorisation server from the `resource_metadata` of the
  // 401's challenge: the origin, never asked without a token, cannot write it, so the edge does,
  // for the route that names one, on every Bearer challenge (a step-up's 403 included).
  const METADATA = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
  function withMetadata(): PolicyDocument {
    const doc = mcpServer();
    const [mcp] = doc.routes;
    return {
      ...doc,
      routes: [
        { ...mcp!, auth: { issuers: ["idp"], resource_metadata: METADATA } },
        {
          ...mcp!,
          name: "admin-tools",
          path: "/mcp/admin",
          auth: { issuers: ["idp"], scopes: { all_of: ["mcp:admin"] }, resource_metadata: METADATA },
        },
        { ...mcp!, name: "other", path: "/other", auth: { issuers: ["idp"] } },
      ],
    };
  }

  it("a 401 without a token, and one with a bad token, name it beside the realm; a route naming none does not", async () => {
    const edge = harness(withMetadata());
    const missing = await sendMarked(edge, "/mcp", { method: "POST", body: "{}" });
    expect(missing.record).toMatchObject({ decision: "deny", reason: "token_missing" });
    expect(missing.response.headers.get("www-authenticate")).toBe(
      `Bearer realm="portcullis", resource_metadata="${METADATA}"`,
    );
    const expired = await sendMarked(edge, "/mcp", {
      headers: { authorization: `Bearer ${await issuer.sign({ exp: Math.floor(Date.now() / 1000) - 600 })}` },
    });
    expect(expired.record).toMatchObject({ decision: "deny", reason: "token_expired" });
    expect(expired.response.headers.get("www-authenticate")).toBe(
      `Bearer realm="portcullis", error="invalid_token", resource_metadata="${METADATA}"`,
    );
    const other = await sendMarked(edge, "/other", {});
    expect(other.response.headers.get("www-authenticate")).toBe('Bearer realm="portcullis"');
    expect(missing.seen.length + expired.seen.length + other.seen.length).toBe(0);
  });

  it("a 403 for a missing scope names the scope and the metadata", async () => {
    const edge = harness(withMetadata());
    const sent = await sendMarked(edge, "/mcp/admin", {
      headers: { authorization: `Bearer ${await issuer.sign({ scope: "mcp:read" })}` },
    });
    expect(sent.record).toMatchObject({ decision: "deny", reason: "insufficient_scope" });
    expect(sent.response.headers.get("www-authenticate")).toBe(
      `Bearer realm="portcullis", error="insufficient_scope", scope="mcp:admin", resource_metadata="${METADATA}"`,
    );
    expect(sent.seen).toHaveLength(0);
  });
});
