// Request bodies, methods and connection-level features as a hostile client sends them through
// the edge: WebSocket and h2c upgrades on protected and public routes, method overrides (headers,
// query parameters and a form body) on routes that take fewer methods than the override names,
// Camel's internal message headers, CORS preflights beside real OPTIONS requests on a protected
// route, a HEAD answered with a body, and a Content-Length that does not frame the body a
// service-binding origin is handed. Each test judges the client's answer (status and
// problem+json `reason`), what reached the origin and the audit record.
// What the runtime does with these on the wire (upgrades, trailers, Expect, methods it never
// hands over) is in test/node/bodies-methods-and-upgrades-on-the-wire.test.ts.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let idp: TestIssuer;
beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

const APP = "https://app.example.com";

/** What a service-binding origin received: method, URL, every header, and the whole body. */
interface Received {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * A service-binding origin that records every request, and answers as a Worker written after
 * Cloudflare's WebSocket examples does: `426` unless the request asks for `Upgrade: websocket`,
 * which the edge never forwards. A HEAD is answered with a body, as a careless origin would.
 */
function recordingOrigin() {
  const received: Received[] = [];
  const origin = {
    async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
      const request = new Request(input, init);
      const body = request.body ? await request.text() : "";
      received.push({ method: request.method, url: request.url, headers: Object.fromEntries(request.headers), body });
      if (new URL(request.url).pathname.startsWith("/ws/") && request.headers.get("upgrade") !== "websocket") {
        return new Response("Expected Upgrade: websocket", { status: 426 });
      }
      if (request.method === "HEAD") {
        return new Response("a body no HEAD answer may carry", { headers: { "content-length": "31" } });
      }
      return new Response("ok", { headers: { "content-type": "text/plain" } });
    },
  };
  return { origin, received };
}

function policy(): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
    upstreams: { echo: { url: echoOrigin, timeout_ms: 3000 }, svc: { service: "SVC" } },
    routes: [
      { name: "socket", methods: ["GET"], path: "/ws/**", auth: { issuers: ["idp"] }, upstream: "svc" },
      {
        name: "api",
        methods: ["GET", "POST"],
        path: "/v1/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
        cors: { allow_origins: [APP], allow_headers: ["authorization", "content-type"] },
      },
      // Without CORS: OPTIONS is the origin's to answer, for signed-in callers only.
      { name: "admin", methods: ["GET", "OPTIONS"], path: "/admin/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      // A GET-only public route: nothing a client sends may make the origin run another method.
      { name: "reports", methods: ["GET"], path: "/reports/**", auth: "public", upstream: "echo" },
      { name: "forms", methods: ["GET", "POST"], path: "/forms/**", auth: "public", upstream: "echo" },
      { name: "svc", methods: ["GET", "POST"], path: "/svc/**", auth: "public", upstream: "svc" },
    ],
  });
}

function edge() {
  const { origin, received } = recordingOrigin();
  return { edge: harness(policy(), {}, { SVC: origin }), received };
}

const bearer = async (sub = "alice") => `Bearer ${await idp.sign({ sub })}`;

describe("a WebSocket upgrade on a protected route", () => {
  it("without a token is refused 401 token_missing before anything reaches the origin", async () => {
    const { edge: e, received } = edge();
    const response = await e.fetch("/ws/chat", {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
      },
    });
    expect(response.status).toBe(401);
    expect(response.webSocket).toBeNull();
    expect(((await response.json()) as { reason: string }).reason).toBe("token_missing");
    expect(received).toEqual([]);
    expect(e.audit.at(-1)).toMatchObject({ decision: "deny", reason: "token_missing", route: "socket" });
  });

  it("with a token reaches the origin as a plain GET carrying the edge's identity, and no tunnel opens", async () => {
    const { edge: e, received } = edge();
    const response = await e.fetch("/ws/chat", {
      headers: {
        authorization: await bearer(),
        upgrade: "websocket",
        connection: "Upgrade, x-user-sub",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
        "x-user-sub": "admin",
      },
    });
    // The origin, never asked for an upgrade, refuses one: its answer goes on as it is.
    expect(response.status).toBe(426);
    expect(response.webSocket).toBeNull();
    expect(await response.text()).toBe("Expected Upgrade: websocket");
    expect(received).toHaveLength(1);
    const [got] = received;
    expect(got?.method).toBe("GET");
    expect(got?.headers.upgrade).toBeUndefined();
    expect(got?.headers.connection).toBeUndefined();
    expect(got?.headers.authorization).toBeUndefined();
    expect(got?.headers["x-user-sub"]).toBe("alice");
    expect(got?.headers["x-tenant"]).toBe("acme");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 426, route: "socket", user_sub: "alice" });
  });

  it("an h2c upgrade with HTTP2-Settings reaches the origin as a plain request, its settings left behind", async () => {
    const sent = await sendMarked(harness(policy(), {}, { SVC: recordingOrigin().origin }), "/v1/stream", {
      headers: {
        authorization: await bearer(),
        upgrade: "h2c",
        connection: "Upgrade, HTTP2-Settings",
        "http2-settings": "AAMAAABkAARAAAAAAAIAAAAA",
      },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.seen).toHaveLength(1);
    expect(sent.got.upgrade).toBeUndefined();
    expect(sent.got["http2-settings"]).toBeUndefined();
    expect(sent.got.connection ?? "").not.toMatch(/upgrade/i);
    expect(sent.got["x-user-sub"]).toBe("alice");
    expect(sent.record).toMatchObject({ decision: "allow", route: "api" });
  });
});

describe("method overrides on a route that takes GET alone", () => {
  it("the DELETE itself is 405 method_not_allowed, never forwarded", async () => {
    const { edge: e } = edge();
    const sent = await sendMarked(e, "/reports/42", { method: "DELETE" });
    expect(sent.response.status).toBe(405);
    expect(sent.body?.reason).toBe("method_not_allowed");
    expect(sent.response.headers.get("allow")).toBe("GET, HEAD");
    expect(sent.seen).toEqual([]);
    expect(sent.record).toMatchObject({ decision: "deny", reason: "method_not_allowed", method: "DELETE" });
  });

  it("a GET carrying every common override header and query parameter reaches the origin as a GET with none of them", async () => {
    const { edge: e } = edge();
    const sent = await sendMarked(e, "/reports/42?_method=DELETE&X-HTTP-Method-Override=DELETE&keep=1", {
      headers: {
        "X-HTTP-Method-Override": "DELETE",
        "X-HTTP-Method": "DELETE",
        "X-Method-Override": "DELETE",
        "X-Original-Method": "DELETE",
        X_HTTP_Method_Override: "DELETE",
      },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.seen).toHaveLength(1);
    expect(sent.seen[0]).toMatchObject({ method: "GET", query: "keep=1" });
    expect(JSON.stringify(sent.got)).not.toContain("DELETE");
    expect(sent.record).toMatchObject({ decision: "allow", method: "GET", route: "reports" });
  });

  // Apache Camel copies a request's headers, and its query parameters, into the exchange's
  // message headers; its HTTP producer then takes the method (CamelHttpMethod), the path
  // (CamelHttpPath, CamelHttpUri) and the query (CamelHttpQuery) of the request it sends on
  // from them. Camel's own filter compared the `Camel` prefix case-sensitively before
  // CVE-2025-27636 and CVE-2025-29891 (3.22.4, 4.8.5, 4.10.2), so `CAmelHttpMethod` went
  // through, and a Camel proxy behind the edge would run the GET the edge authorised as a
  // DELETE, on another path. None of Camel's names, in any case, as a header or as a query
  // parameter, reaches the origin, as with the other override headers and `_method`.
  it("Camel's message headers and parameters (CamelHttpMethod, CamelHttpPath, any case) never reach the origin", async () => {
    const { edge: e } = edge();
    const sent = await sendMarked(e, "/reports/42?CAmelHttpMethod=DELETE&camelHttpPath=/admin/users&keep=1", {
      headers: {
        CAmelHttpMethod: "DELETE",
        CamelHttpPath: "/admin/users",
        camelhttpuri: "/admin/users",
        CAMELHTTPQUERY: "force=true",
      },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.record).toMatchObject({ decision: "allow", method: "GET", route: "reports" });
    expect(sent.seen).toHaveLength(1);
    expect(sent.seen[0]?.method).toBe("GET");
    const camel = Object.keys(sent.got).filter((name) => name.startsWith("camel"));
    expect({ headers: camel, query: sent.seen[0]?.query }, "Camel's names at the origin").toEqual({
      headers: [],
      query: "keep=1",
    });
  });

  it("a `_method` field in a form POST's body reaches the origin as sent: the edge reads no body (README, Method override)", async () => {
    const { edge: e } = edge();
    const form = "_method=DELETE&id=42";
    const sent = await sendMarked(e, "/forms/item", {
      method: "POST",
      body: form,
      headers: { "content-type": "application/x-www-form-urlencoded", "content-length": String(form.length) },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.seen[0]).toMatchObject({ method: "POST", body_bytes: form.length });
    expect(sent.got["content-length"]).toBe(String(form.length));
    expect(sent.record).toMatchObject({ decision: "allow", method: "POST", route: "forms" });
  });
});

describe("OPTIONS on protected routes: preflights and real requests", () => {
  it("a preflight is answered at the edge without a token and never forwarded", async () => {
    const { edge: e } = edge();
    const sent = await sendMarked(e, "/v1/orders", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization",
      },
    });
    expect(sent.response.status).toBe(204);
    expect(sent.response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(sent.response.headers.get("access-control-allow-methods")).toBe("GET, POST");
    expect(sent.seen).toEqual([]);
    expect(sent.record).toMatchObject({ method: "OPTIONS", route: "api", status: 204, decision: "allow" });
  });

  it("a preflight from a page the route does not name is 403 cors_rejected, never forwarded", async () => {
    const { edge: e } = edge();
    const sent = await sendMarked(e, "/v1/orders", {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(sent.response.status).toBe(403);
    expect(sent.body?.reason).toBe("cors_rejected");
    expect(sent.seen).toEqual([]);
    expect(sent.record).toMatchObject({ decision: "deny", reason: "cors_rejected", detail: "origin_not_allowed" });
  });

  it("a real OPTIONS (no Access-Control-Request-Method) on the CORS route, which takes none, is 405 before any token is asked for", async () => {
    const { edge: e } = edge();
    const sent = await sendMarked(e, "/v1/orders", { method: "OPTIONS", headers: { origin: APP } });
    expect(sent.response.status).toBe(405);
    expect(sent.body?.reason).toBe("method_not_allowed");
    expect(sent.response.headers.get("allow")).toBe("GET, HEAD, POST");
    expect(sent.seen).toEqual([]);
    expect(sent.record).toMatchObject({ decision: "deny", reason: "method_not_allowed", method: "OPTIONS" });
  });

  it("a preflight shape on a protected route without CORS is 403 cors_rejected, never forwarded unauthenticated", async () => {
    const { edge: e } = edge();
    const sent = await sendMarked(e, "/admin/users", {
      method: "OPTIONS",
      headers: { origin: APP, "access-control-request-method": "GET" },
    });
    expect(sent.response.status).toBe(403);
    expect(sent.body?.reason).toBe("cors_rejected");
    expect(sent.seen).toEqual([]);
    expect(sent.record).toMatchObject({ decision: "deny", reason: "cors_rejected", detail: "route_has_no_cors" });
  });

  it("a real OPTIONS on a protected route needs a token; with one it reaches the origin with the identity", async () => {
    const { edge: e } = edge();
    const anonymous = await sendMarked(e, "/admin/users", { method: "OPTIONS" });
    expect(anonymous.response.status).toBe(401);
    expect(anonymous.body?.reason).toBe("token_missing");
    expect(anonymous.seen).toEqual([]);
    expect(anonymous.record).toMatchObject({ decision: "deny", reason: "token_missing", method: "OPTIONS" });

    const signed = await sendMarked(e, "/admin/users", {
      method: "OPTIONS",
      headers: { authorization: await bearer() },
    });
    expect(signed.response.status).toBe(200);
    expect(signed.seen).toHaveLength(1);
    expect(signed.seen[0]?.method).toBe("OPTIONS");
    expect(signed.got["x-user-sub"]).toBe("alice");
    expect(signed.got.authorization).toBeUndefined();
    expect(signed.record).toMatchObject({ decision: "allow", method: "OPTIONS", user_sub: "alice" });
  });

  it("Max-Forwards: 0 is answered at the edge only once the token is checked", async () => {
    const { edge: e } = edge();
    const anonymous = await sendMarked(e, "/admin/users", { method: "OPTIONS", headers: { "max-forwards": "0" } });
    expect(anonymous.response.status).toBe(401);
    expect(anonymous.response.headers.get("allow")).toBeNull();
    expect(anonymous.body?.reason).toBe("token_missing");
    expect(anonymous.seen).toEqual([]);

    const signed = await sendMarked(e, "/admin/users", {
      method: "OPTIONS",
      headers: { "max-forwards": "0", authorization: await bearer() },
    });
    expect(signed.response.status).toBe(200);
    expect(signed.response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    expect(signed.seen).toEqual([]);
    expect(signed.record).toMatchObject({ decision: "allow", detail: "max_forwards_zero", user_sub: "alice" });
  });
});

describe("a HEAD the origin answers with a body", () => {
  it("reaches the client without it, the origin's Content-Length kept, and is recorded as allowed", async () => {
    const { edge: e, received } = edge();
    const response = await e.fetch("/svc/file", { method: "HEAD" });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("");
    expect(response.headers.get("content-length")).toBe("31");
    expect(received.map((r) => r.method)).toEqual(["HEAD"]);
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", method: "HEAD", status: 200 });
  });
});

describe("a Content-Length that frames no body, to a service-binding origin", () => {
  /** A body of 8 bytes in two parts, sent with `declared` as its Content-Length. */
  function upload(declared: string): Request {
    const parts = ["abcd", "efgh"].map((part) => new TextEncoder().encode(part));
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const part = parts.shift();
        if (part) controller.enqueue(part);
        else controller.close();
      },
    });
    return new Request("https://edge.test/svc/upload", {
      method: "POST",
      body,
      duplex: "half",
      headers: { "content-length": declared },
    } as RequestInit);
  }

  it("a length the edge takes (8) reaches the origin with exactly that length", async () => {
    const { edge: e, received } = edge();
    const response = await e.fetch(upload("8"));
    expect(response.status).toBe(200);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ body: "abcdefgh" });
    expect(received[0]?.headers["content-length"]).toBe("8");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
  });

  // The edge takes none of these as the body's length and streams all 8 bytes on (as a URL
  // upstream gets them: chunked, the runtime writing its own framing, without this header;
  // uploads-framing-and-endings.test.ts). A service binding is handed the edge's headers as
  // they are, so the origin Worker reads `4, 8` (parseInt: 4), `eight` or a length of 10^17
  // beside a body of 8 bytes, and a size check on the header would pass a body larger than it
  // says. The origin is never handed a Content-Length other than the length of the body it gets
  // (none, for a body the edge streams chunked).
  it.each(["4, 8", "eight", "99999999999999999"])(
    "a Content-Length of %s is not passed on beside the 8 bytes the origin is handed",
    async (declared) => {
      const { edge: e, received } = edge();
      const response = await e.fetch(upload(declared));
      expect(response.status).toBe(200);
      expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
      expect(received).toHaveLength(1);
      expect(received[0]?.body).toBe("abcdefgh");
      expect(received[0]?.headers["content-length"], "the Content-Length the origin is handed").toBeUndefined();
    },
  );
});
