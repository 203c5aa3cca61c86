import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { createApp } from "../../src/app";
import type { AuditRecord } from "../../src/core/audit";
import type { PolicyDocument } from "../../src/core/policy-types";
import { heldOriginEdge, uploadFromClient } from "../support/forward-scenarios";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer } from "../support/issuers";
import { held, heldLimiter, heldOrigin, sleep } from "../support/waiting";

async function problem(response: Response): Promise<{ reason?: string }> {
  expect(response.headers.get("content-type") ?? "").toContain("application/problem+json");
  return (await response.json()) as { reason?: string };
}

/**
 * A POST of 11 declared bytes, all of them sent at once, whose body the test ends (`feed`)
 * and whose client it can make hang up (`client`).
 */
function declaredUpload(edge: ReturnType<typeof harness>, path: string, headers: Record<string, string> = {}) {
  return uploadFromClient(edge, path, "whole body!", { ...headers, "content-length": "11" });
}

/** An edge whose one route, `/svc/**` (GET, route `svc`), forwards to `binding`, a service binding. */
function svcEdge(binding: unknown) {
  return harness(
    basePolicy({
      upstreams: { svc: { service: "SVC" } },
      routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
    }),
    {},
    { SVC: binding },
  );
}

/**
 * One record, `deny client_closed` for a client that hung up, and nothing under marker `m`
 * reached the origin: the record and the origin agree.
 */
async function expectRefusedAsClosedAndNotForwarded(edge: ReturnType<typeof harness>, m: string) {
  expect(edge.audit).toHaveLength(1);
  expect(edge.audit[0]).toMatchObject({ reason: "client_closed", detail: "client_disconnected", status: 499 });
  expect({ reached: (await originSaw(m)).length, decision: edge.audit[0]?.decision }).toEqual({
    reached: 0,
    decision: "deny",
  });
}

describe("disconnects: the record matches what the origin received", () => {
  it("a client that hangs up while the limiter is asked, the limiter then admitting: never forwarded after a deny record", async () => {
    // After the abort listener records `deny client_closed`, the pipeline runs on (Cloudflare
    // would cancel it): the limiter's late admission must not let the request through to an
    // origin that would act on a request the audit log files among the refused ones.
    const {
      namespace: limiter,
      called: limiterCalled,
      go: limiterGoes,
      answered: limiterAnswered,
    } = heldLimiter((env as unknown as { ROUTE_LIMITER: DurableObjectNamespace }).ROUTE_LIMITER);
    // The real route object, one slot for this address: it admits the held request.
    const policy = basePolicy({
      settings: { limiter_timeout_ms: 2000 },
      routes: [
        {
          name: `limited-${crypto.randomUUID().slice(0, 8)}`,
          methods: ["GET"],
          path: "/limited/**",
          auth: "public",
          upstream: "echo",
          limits: [{ name: "per-ip", key: "ip", limit: 1, window_s: 3600 }],
        },
      ],
    });
    const edge = harness(policy, {}, { ROUTE_LIMITER: limiter });
    const m = marker();
    const client = new AbortController();
    const answered = edge.fetch(
      new Request("https://edge.test/limited/x", {
        signal: client.signal,
        headers: { "x-test-marker": m, "cf-connecting-ip": "192.0.2.41" },
      }),
    );
    await limiterCalled.promise;
    client.abort();
    limiterGoes.resolve();
    // The harness waits for the request's waitUntil work too: the record, and any late forward.
    await answered.catch(() => undefined);
    // The object admitted the request after its client had gone.
    expect(await limiterAnswered.promise).toMatchObject({ allowed: true });
    await expectRefusedAsClosedAndNotForwarded(edge, m);
    // Never forwarded, so never counted: the address still has its one request (README, Rate limits).
    const next = marker();
    const again = await harness(policy).fetch("/limited/x", {
      headers: { "x-test-marker": next, "cf-connecting-ip": "192.0.2.41" },
    });
    expect(again.status).toBe(200);
    expect(await originSaw(next)).toHaveLength(1);
  });

  it("a client that hangs up while its token is being checked: never forwarded after a deny record", async () => {
    // Same as above, with the key-set fetch held: authentication completes after the
    // disconnect, and the request must not go on to the origin.
    const issuer = await makeIssuer();
    const token = await issuer.sign();
    const fetchCalled = held<void>();
    const release = held<void>();
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [
          { name: "private", methods: ["GET"], path: "/private/**", auth: { issuers: ["idp"] }, upstream: "echo" },
        ],
      }),
      {
        authentication: {
          fetch: async (input, init) => {
            fetchCalled.resolve();
            await release.promise;
            return fetch(input, init);
          },
        },
      },
    );
    const m = marker();
    const client = new AbortController();
    const answered = edge.fetch(
      new Request("https://edge.test/private/x", {
        signal: client.signal,
        headers: { "x-test-marker": m, authorization: `Bearer ${token}` },
      }),
    );
    await fetchCalled.promise;
    client.abort();
    release.resolve();
    await answered.catch(() => undefined);
    await expectRefusedAsClosedAndNotForwarded(edge, m);
  });

  it("a client that hangs up mid-upload, the rest of its body then read: never completed to the origin after a deny record", async () => {
    // The record says refused as soon as the client is gone before its upload is whole; body
    // bytes the runtime had received by then must not complete the origin request after it.
    const origin = heldOrigin(echoOrigin);
    const edge = heldOriginEdge(origin.binding);
    const m = marker();
    const { client, feed, firstPartTaken, answered } = uploadFromClient(edge, "/up/upload", "first part;", {
      "x-test-marker": m,
    });
    await firstPartTaken;
    client.abort();
    feed.enqueue(new TextEncoder().encode("second part"));
    feed.close();
    await answered;
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "deny", reason: "client_closed", status: 499 });
    // Torn down, not ended: the origin request failed, and the origin recorded no request.
    expect(await origin.settled.promise).toBe("failed");
    expect(await originSaw(m)).toEqual([]);
  });

  it("a client that hangs up once the origin has its whole declared body, before the answer: recorded as allowed", async () => {
    // With Content-Length, the origin has the whole request with the last declared byte, before
    // the edge reads the body's end: hanging up after that hides nothing from the record.
    const origin = heldOrigin(echoOrigin);
    const edge = heldOriginEdge(origin.binding);
    const m = marker();
    const { answered, client, feed } = declaredUpload(edge, "/up/upload", { "x-test-marker": m });
    // The origin has answered (so it read all 11 bytes) while the client's body is still open;
    // its answer is held back, as an origin's that works on the request a while.
    expect(await origin.settled.promise).toBe("answered");
    expect((await originSaw(m)).map((s) => s.body_bytes)).toEqual([11]);
    client.abort();
    origin.release.resolve();
    feed.close();
    await answered;
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: "client_closed", status: 499 });
  });

  it("a client that hangs up while its last declared part is handed on: never completed to the origin after a deny record", async () => {
    // The origin takes the body only when told: the edge's write of the last part waits while
    // the client goes away, and the record says refused at once.
    const called = held<void>();
    const go = held<void>();
    const tookPart = held<void>();
    const originGot = held<{ bytes: number; whole: boolean }>();
    const edge = harness(
      basePolicy({
        upstreams: { slow: { service: "SLOW_ORIGIN", timeout_ms: 5000 } },
        routes: [{ name: "up", methods: ["POST"], path: "/up/**", auth: "public", upstream: "slow" }],
      }),
      {},
      {
        SLOW_ORIGIN: {
          fetch: async (_target: string, init: RequestInit) => {
            const reader = (init.body as ReadableStream<Uint8Array>).getReader();
            called.resolve();
            await go.promise;
            let bytes = 0;
            try {
              for (;;) {
                const { done, value } = await reader.read();
                if (done) break;
                bytes += value.byteLength;
                tookPart.resolve();
              }
            } catch {
              originGot.resolve({ bytes, whole: false });
              throw new Error("body broke off");
            }
            originGot.resolve({ bytes, whole: true });
            return new Response("stored");
          },
        },
      },
    );
    const { answered, client, feed } = declaredUpload(edge, "/up/x");
    await called.promise;
    // The edge asked the origin once its pump had begun reading the client's body, whose one
    // part was already queued: that read settles, and the write of the part begins, within
    // this turn of the event loop. The write then waits for the origin, which reads nothing yet.
    await sleep(0);
    client.abort();
    go.resolve();
    // The origin takes the last declared part after the client has gone (had the edge not been
    // writing it yet, it would never hand it on: the origin would read 0 bytes); then the body ends.
    await Promise.race([tookPart.promise, originGot.promise]);
    feed.close();
    await answered;
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "deny", reason: "client_closed", status: 499 });
    expect(await originGot.promise).toEqual({ bytes: 11, whole: false });
  });

  it("a client that hangs up after the answer's headers, mid-body: one record, the answer's own", async () => {
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const edge = svcEdge({
      fetch: async () =>
        new Response(
          new ReadableStream<Uint8Array>({
            start(controller) {
              feed = controller;
              controller.enqueue(new TextEncoder().encode("first"));
            },
          }),
        ),
    });
    const client = new AbortController();
    const response = await edge.fetch(new Request("https://edge.test/svc/x", { signal: client.signal }));
    expect(response.status).toBe(200);
    client.abort();
    feed.close();
    // A second record would be written as deferred work, from the abort: wait for all of it.
    await edge.settle();
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", status: 200, reason: null });
  });

  it("a request whose signal is already aborted when it arrives: 499 client_closed, exactly one record, nothing forwarded", async () => {
    const edge = harness(basePolicy());
    const m = marker();
    const response = await edge.fetch(
      new Request("https://edge.test/public/x", { signal: AbortSignal.abort(), headers: { "x-test-marker": m } }),
    );
    expect(response.status).toBe(499);
    expect((await problem(response)).reason).toBe("client_closed");
    // The harness has waited for the request's deferred work, and an aborted signal fires no
    // abort later: this is every record there will be.
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({
      decision: "deny",
      reason: "client_closed",
      detail: "client_disconnected",
      status: 499,
    });
    // Had the edge forwarded it, it would have waited for the origin's answer, recorded by then.
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("bindings that fail", () => {
  it("a service binding whose fetch property throws when read: clean problem+json and one record", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const edge = svcEdge({
      get fetch(): never {
        throw new TypeError("binding gone");
      },
    });
    const response = await edge.fetch("/svc/x");
    const errorLines = errors.mock.calls.map((call) => call.map(String).join(" "));
    errors.mockRestore();
    // Read when the route stage checks that the binding exists: an unexpected error, answered
    // by the pipeline's catch-all, whose record has the error's class name only (README, Errors).
    expect(response.status).toBe(500);
    const body = await problem(response);
    expect(body.reason).toBe("internal_error");
    expect(JSON.stringify(body)).not.toContain("binding gone");
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({
      decision: "deny",
      reason: "internal_error",
      detail: "TypeError",
      status: 500,
      route: "svc",
      upstream_ms: null,
    });
    // The error is reported by its class alone: its message may carry anything.
    expect(errorLines).toEqual(["portcullis: unhandled TypeError"]);
  });

  it("a service binding that has no fetch by the time the request is forwarded: 502, never the request's own URL", async () => {
    // The route stage finds the binding; when the forward stage reads it again, it has none.
    let reads = 0;
    const binding = {
      get fetch() {
        reads++;
        return reads === 1 ? async () => new Response("from the binding") : undefined;
      },
    };
    const edge = svcEdge(binding);
    const m = marker();
    // The request's own URL is a server that records what reaches it.
    const response = await edge.fetch(`${echoOrigin}/svc/x`, { headers: { "x-test-marker": m } });
    expect(response.status).toBe(502);
    expect((await problem(response)).reason).toBe("origin_unavailable");
    expect(edge.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "origin_unavailable",
      detail: "origin_unreachable",
      route: "svc",
    });
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("no execution context, no env", () => {
  it("serves and audits without an execution context: public and authenticated", async () => {
    const issuer = await makeIssuer();
    const records: AuditRecord[] = [];
    const app = createApp(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [
          { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
          { name: "private", methods: ["GET"], path: "/private/**", auth: { issuers: ["idp"] }, upstream: "echo" },
        ],
      }),
      { auditSinks: [(record) => void records.push(record)] },
    );
    const pub = await app.fetch(new Request("https://edge.test/public/a"), env);
    expect(pub.status).toBe(200);
    const priv = await app.fetch(
      new Request("https://edge.test/private/a", { headers: { authorization: `Bearer ${await issuer.sign()}` } }),
      env,
    );
    expect(priv.status).toBe(200);
    // No env at all: Hono's own test helper.
    const bare = await app.request("/public/b");
    expect(bare.status).toBe(200);
    await vi.waitFor(() => expect(records).toHaveLength(3));
  });

  it("a limited route without env: 500 misconfigured with a record", async () => {
    const records: AuditRecord[] = [];
    const app = createApp(
      basePolicy({
        routes: [
          {
            name: "limited",
            methods: ["GET"],
            path: "/limited/**",
            auth: "public",
            upstream: "echo",
            limits: [{ name: "per-ip", key: "ip", limit: 1, window_s: 60 }],
          },
        ],
      }),
      { auditSinks: [(record) => void records.push(record)] },
    );
    const response = await app.request("/limited/x");
    expect(response.status).toBe(500);
    expect((await problem(response)).reason).toBe("misconfigured");
    await vi.waitFor(() => expect(records).toHaveLength(1));
  });
});

describe("odd URLs and methods", () => {
  it("absolute-form with the default port and a doubled slash; IPv6 host; userinfo: routed on the canonical path, no userinfo forwarded", async () => {
    const edge = harness(
      basePolicy({
        upstreams: { echo: { url: echoOrigin }, svc: { service: "ECHO_SERVICE" } },
        routes: [
          { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
          { name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" },
        ],
      }),
    );
    for (const url of [
      "http://edge.test:80//public//x",
      "http://[::1]:8443/public/x",
      "http://[::ffff:127.0.0.1]/public/x",
    ]) {
      const m = marker();
      const response = await edge.fetch(new Request(url, { headers: { "x-test-marker": m } }));
      expect(response.status, url).toBe(200);
      const seen = await originSaw(m);
      expect(seen[0]?.path, url).toBe("/public/x");
    }
    // The runtime takes a URL with userinfo (were it to refuse one, this part would have to
    // say so instead): the edge routes it, and the credentials go nowhere.
    const withUser = new Request("https://user:secret@edge.test/svc/x");
    expect(withUser.url).toBe("https://user:secret@edge.test/svc/x");
    const response = await edge.fetch(withUser);
    expect(response.status).toBe(200);
    const text = await response.text();
    // The service binding answers with the URL it was sent.
    expect(JSON.parse(text)).toMatchObject({ via: "service-binding", url: "https://edge.test/svc/x" });
    expect(text).not.toContain("secret");
    expect(edge.logs.join("\n")).not.toContain("secret");
  });

  it("custom, lower-case and HEAD methods: default deny for the unlisted, HEAD as GET, one record each", async () => {
    const edge = harness(basePolicy());
    const cases: [string, number][] = [
      ["PURGE", 405],
      // workerd upper-cases every method name (beyond the six the Fetch standard names).
      ["patch", 405],
      ["PROPFIND", 405],
      ["HEAD", 200],
      ["OPTIONS", 405],
    ];
    for (const [method, status] of cases) {
      const response = await edge.fetch("/public/x", { method });
      expect(response.status, method).toBe(status);
      if (method === "HEAD") expect(await response.text()).toBe("");
      expect(response.headers.get("x-request-id"), method).toMatch(/^[0-9a-f-]{36}$/);
    }
    await edge.settle();
    expect(edge.audit.map((r) => [r.method, r.status])).toEqual(cases.map(([m, s]) => [m.toUpperCase(), s]));
  });

  it("an invalid policy answers every method, preflight and odd URL with 500 misconfigured and one record each", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const edge = harness({ version: 1, routes: [{ name: "x" }] } as unknown as PolicyDocument);
    errors.mockRestore();
    const requests = [
      new Request("https://edge.test/public/x"),
      new Request("https://edge.test/public/x", { method: "HEAD" }),
      new Request("https://edge.test/public/x", {
        method: "OPTIONS",
        headers: { origin: "https://app.test", "access-control-request-method": "GET" },
      }),
      new Request("https://edge.test/%2e%2e/%2f", { method: "PURGE" }),
      new Request(`https://edge.test/${"a".repeat(70_000)}`),
    ];
    for (const request of requests) {
      const response = await edge.fetch(request);
      expect(response.status).toBe(500);
      if (request.method !== "HEAD") expect((await problem(response)).reason).toBe("misconfigured");
    }
    await edge.settle();
    expect(edge.audit).toHaveLength(requests.length);
    for (const record of edge.audit) expect(record).toMatchObject({ reason: "misconfigured", status: 500 });
  });
});
