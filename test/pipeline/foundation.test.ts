import { describe, expect, it } from "vitest";
import { heldOriginEdge, streamedRequest } from "../support/forward-scenarios";
import { basePolicy, echoOrigin, harness, marker, originSaw, unreachableOrigin } from "../support/harness";
import { heldOrigin } from "../support/waiting";

describe("public route end to end", () => {
  it("forwards to the origin with an edge request id and writes an audit record", async () => {
    const edge = harness(basePolicy());
    const m = marker();
    const response = await edge.fetch("/public/hello?x=1&y=2", {
      headers: { "x-test-marker": m, "x-request-id": "client-chosen" },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { path: string; query: string; headers: Record<string, string> };
    expect(body.path).toBe("/public/hello");
    expect(body.query).toBe("x=1&y=2");
    const id = response.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(id).not.toBe("client-chosen");
    expect(body.headers["x-request-id"]).toBe(id);
    const [record] = edge.audit;
    expect(record).toMatchObject({
      request_id: id,
      decision: "allow",
      route: "public",
      matched_rule: "policy:public@v7",
      status: 200,
      path: "/public/hello",
      method: "GET",
    });
    expect(await originSaw(m)).toHaveLength(1);
  });

  it("answers 404 problem+json for a path no route matches and forwards nothing", async () => {
    const edge = harness(basePolicy());
    const m = marker();
    const response = await edge.fetch("/private/x", { headers: { "x-test-marker": m } });
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    const body = (await response.json()) as { reason: string };
    expect(body.reason).toBe("route_not_found");
    expect(edge.audit[0]).toMatchObject({ decision: "deny", reason: "route_not_found", status: 404 });
    expect(await originSaw(m)).toHaveLength(0);
  });

  it("answers 502 origin_unavailable when the origin cannot be reached", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: unreachableOrigin } } }));
    const response = await edge.fetch("/public/x", { headers: { authorization: "Bearer secret-token-value" } });
    expect(response.status).toBe(502);
    const text = await response.text();
    expect(text).not.toContain("secret-token-value");
    expect(JSON.parse(text).reason).toBe("origin_unavailable");
    expect(edge.audit[0]).toMatchObject({
      decision: "deny",
      reason: "origin_unavailable",
      detail: "origin_unreachable",
      status: 502,
      route: "public",
    });
  });

  it("answers 504 origin_timeout when the origin is slower than its budget", async () => {
    const edge = harness(
      basePolicy({ upstreams: { echo: { url: (await import("../support/harness")).echoOrigin, timeout_ms: 150 } } }),
    );
    const m = marker();
    const response = await edge.fetch("/public/slow", { headers: { "x-echo-delay-ms": "1500", "x-test-marker": m } });
    expect(response.status).toBe(504);
    expect(((await response.json()) as { reason: string }).reason).toBe("origin_timeout");
    expect(edge.audit[0]).toMatchObject({
      decision: "deny",
      reason: "origin_timeout",
      detail: "origin_timeout",
      status: 504,
      route: "public",
    });
    // The request did reach the origin: it was the origin's answer that came too late.
    expect(await originSaw(m)).toHaveLength(1);
  });

  it("answers 500 misconfigured to everything when the policy is invalid", async () => {
    const edge = harness({ version: 1, routes: [] });
    const m = marker();
    const response = await edge.fetch("/public/x", { headers: { "x-test-marker": m } });
    expect(response.status).toBe(500);
    expect(((await response.json()) as { reason: string }).reason).toBe("misconfigured");
    expect(edge.audit[0]).toMatchObject({
      decision: "deny",
      reason: "misconfigured",
      detail: "policy_invalid",
      status: 500,
      route: null,
    });
    expect(await originSaw(m)).toHaveLength(0);
  });
});

describe("service-binding upstream", () => {
  it("forwards the canonical path to a service binding with the same header hygiene", async () => {
    const edge = harness(
      basePolicy({
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
    );
    const response = await edge.fetch("/svc//a/./b?x=1", {
      headers: { "x-user-sub": "spoofed", authorization: "Bearer a.b.c" },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { via: string; url: string; headers: Record<string, string> };
    expect(body.via).toBe("service-binding");
    expect(new URL(body.url).pathname + new URL(body.url).search).toBe("/svc/a/b?x=1");
    expect(body.headers["x-user-sub"]).toBeUndefined();
    expect(body.headers.authorization).toBeUndefined();
  });

  it("answers 500 misconfigured when the named binding does not exist, before authentication or limits", async () => {
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
        upstreams: { svc: { service: "NO_SUCH_BINDING" } },
        routes: [
          { name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" },
          { name: "private", methods: ["GET"], path: "/private/**", auth: { issuers: ["idp"] }, upstream: "svc" },
        ],
      }),
    );
    const response = await edge.fetch("/svc/a");
    expect(response.status).toBe(500);
    expect(((await response.json()) as { reason: string }).reason).toBe("misconfigured");
    expect(edge.audit[0]).toMatchObject({ reason: "misconfigured", detail: "service_binding_missing:NO_SUCH_BINDING" });
    // Without a token this would be 401 token_missing, were the binding checked after authentication.
    const unauthenticated = await edge.fetch("/private/a");
    expect(unauthenticated.status).toBe(500);
    expect(((await unauthenticated.json()) as { reason: string }).reason).toBe("misconfigured");
    expect(edge.audit[1]).toMatchObject({ reason: "misconfigured", detail: "service_binding_missing:NO_SUCH_BINDING" });
  });

  it("answers 502 origin_unavailable when the binding throws instead of answering", async () => {
    const throwing = {
      fetch: () => {
        throw new TypeError("binding broke");
      },
    };
    const edge = harness(
      basePolicy({
        upstreams: { svc: { service: "THROWING_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
      {},
      { THROWING_SERVICE: throwing },
    );
    const response = await edge.fetch("/svc/a");
    expect(response.status).toBe(502);
    expect(await response.json()).toMatchObject({ reason: "origin_unavailable" });
    expect(edge.audit[0]).toMatchObject({ reason: "origin_unavailable", detail: "origin_unreachable" });
  });
});

describe("origin timeout budget", () => {
  it("covers the wait for response headers only: a slow body streams through whole", async () => {
    const { echoOrigin } = await import("../support/harness");
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 200 } } }));
    const response = await edge.fetch("/public/stream", { headers: { "x-echo-stream-ms": "600" } });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { path: string };
    expect(body.path).toBe("/public/stream");
  });
});

describe("uploads", () => {
  it.each([
    ["with a declared length", () => ({ body: "x".repeat(100_000), headers: { "content-length": "100000" } })],
    [
      "streamed",
      () => ({
        body: new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new Uint8Array(70_000));
            controller.close();
          },
        }),
        duplex: "half",
      }),
    ],
  ])(
    "a whole upload %s to an unreachable origin is 502 origin_unavailable, not a client's break-off",
    async (_l, init) => {
      const edge = harness(basePolicy({ upstreams: { echo: { url: unreachableOrigin } } }));
      const response = await edge.fetch(
        new Request("https://edge.test/public/submit", { method: "POST", ...init() } as RequestInit),
      );
      expect(response.status).toBe(502);
      expect(edge.audit.at(-1)).toMatchObject({ reason: "origin_unavailable", detail: "origin_unreachable" });
    },
  );

  it("an upload that takes longer than timeout_ms reaches the origin whole: the budget starts when it has been sent", async () => {
    const { echoOrigin } = await import("../support/harness");
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 300 } } }));
    const m = marker();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 8) return controller.close();
        sent++;
        await new Promise((resolve) => setTimeout(resolve, 100));
        controller.enqueue(new Uint8Array(1000));
      },
    });
    const response = await edge.fetch(
      new Request("https://edge.test/public/upload", {
        method: "POST",
        body,
        headers: { "x-test-marker": m, "content-length": "8000" },
        duplex: "half",
      } as RequestInit),
    );
    await response.arrayBuffer();
    expect(response.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
    expect(await originSaw(m)).toEqual([expect.objectContaining({ method: "POST", body_bytes: 8000 })]);
  });

  it("the budget still bounds the wait once the upload is done", async () => {
    const { echoOrigin } = await import("../support/harness");
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 200 } } }));
    const response = await edge.fetch(
      new Request("https://edge.test/public/upload", {
        method: "POST",
        body: "done",
        headers: { "x-echo-delay-ms": "1000" },
      }),
    );
    expect(response.status).toBe(504);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "origin_timeout" });
  });
});

describe("client aborts", () => {
  it("a client that breaks off mid-upload is audited as client_closed, not as an origin failure", async () => {
    // The echo origin behind a binding that tells how the origin's request ended.
    const origin = heldOrigin(echoOrigin);
    const edge = heldOriginEdge(origin.binding);
    const m = marker();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ === 0) controller.enqueue(new TextEncoder().encode("partial upload"));
        else controller.error(new Error("client went away"));
      },
    });
    const response = await edge.fetch(streamedRequest("/up/upload", body, { headers: { "x-test-marker": m } }));
    expect(response.status).toBe(499);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({
      decision: "deny",
      reason: "client_closed",
      detail: "client_body_aborted",
      status: 499,
    });
    // The origin request was torn down, not ended: the origin never saw a complete request.
    expect(await origin.settled.promise).toBe("failed");
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("the origin's response", () => {
  it("reaches the client without hop-by-hop headers, with every Set-Cookie kept", async () => {
    const edge = harness(
      basePolicy({
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
    );
    const respondWith = [
      ["connection", "x-internal-hop"],
      ["x-internal-hop", "secret"],
      ["keep-alive", "timeout=5"],
      ["set-cookie", "a=1; Path=/"],
      ["set-cookie", "b=2; Path=/"],
      ["x-app", "kept"],
    ];
    const response = await edge.fetch("/svc/x", { headers: { "x-respond-with": JSON.stringify(respondWith) } });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-internal-hop")).toBeNull();
    expect(response.headers.get("keep-alive")).toBeNull();
    expect(response.headers.get("connection")).toBeNull();
    expect(response.headers.getSetCookie()).toEqual(["a=1; Path=/", "b=2; Path=/"]);
    expect(response.headers.get("x-app")).toBe("kept");
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });
});
