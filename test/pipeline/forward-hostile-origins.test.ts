// Forwarding endings the other forward tests leave open (README, Upstreams and Errors): an
// origin's answer streamed with no deadline on its body, a body that breaks mid-stream, an error
// answer's headers filtered as any answer's are, a HEAD answered with a body, a service binding
// that throws rather than rejects or resolves with no Response, an empty chunked upload, and a chunked upload whose client
// hangs up once the origin has it whole. Each ending is checked against its one audit record.
// No elapsed time is asserted: waits are on events the test controls, and an edge that hung
// would meet vitest's own timeout.
import { describe, expect, it } from "vitest";
import { heldOriginEdge, streamedRequest, uploadFromClient } from "../support/forward-scenarios";
import { basePolicy, echoOrigin, harness, marker, originSaw, serviceEdge, unhandledDuring } from "../support/harness";
import { timersLeftBy } from "../support/timers";
import { heldOrigin, sleep } from "../support/waiting";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

/** An answer whose body the test feeds (`feed`) after the edge has passed the headers on. */
function streamingOrigin() {
  let feed!: ReadableStreamDefaultController<Uint8Array>;
  const binding = {
    fetch: async () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            feed = controller;
            controller.enqueue(encode("first;"));
          },
        }),
      ),
  };
  return { binding, feed: () => feed };
}

describe("an answer's body streams with no deadline", () => {
  it("once the headers are passed on, no edge timer is left, and parts sent after the budget still arrive", async () => {
    const origin = streamingOrigin();
    const edge = serviceEdge(origin.binding, 100);
    const { result: response, pending } = await timersLeftBy(() => edge.fetch("/held/x"));
    // Nothing left running that could cut the body: the budget covered the headers only.
    expect(pending).toEqual([]);
    expect(response.status).toBe(200);
    // Recorded once, as allowed, when the headers went on: not held until the stream ends.
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, detail: null, status: 200 });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(decode((await reader.read()).value)).toBe("first;");
    // Well past the 100 ms budget (a wait, not an assertion on time): the stream goes on.
    await sleep(300);
    origin.feed().enqueue(encode("second"));
    expect(decode((await reader.read()).value)).toBe("second");
    origin.feed().close();
    expect((await reader.read()).done).toBe(true);
    await edge.settle();
    expect(edge.audit).toHaveLength(1);
  });

  it("a body that breaks mid-stream fails the client's read; one record, the answer's own, and no unhandled rejection", async () => {
    const origin = streamingOrigin();
    const edge = serviceEdge(origin.binding, 1000);
    let failure = "";
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/held/x");
      expect(response.status).toBe(200);
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      expect(decode((await reader.read()).value)).toBe("first;");
      origin.feed().error(new Error("origin connection broke"));
      // The client sees the break, never a clean end it could take for the whole body.
      failure = await reader.read().then(
        (part) => `read on: ${JSON.stringify(part)}`,
        (error) => String(error),
      );
    });
    expect(failure).toBe("Error: origin connection broke");
    expect(unhandled).toEqual([]);
    await edge.settle();
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, status: 200 });
  });
});

describe("an origin's error answer", () => {
  it("is passed on with its status, its headers filtered as any answer's: no Access cookie, CORS or hop-by-hop field", async () => {
    const edge = serviceEdge(
      {
        fetch: async () =>
          new Response("down for maintenance", {
            status: 503,
            headers: [
              ["set-cookie", "CF_Authorization=forged; Path=/"],
              ["set-cookie", "pref=dark; Path=/"],
              ["access-control-allow-origin", "*"],
              ["access-control-allow-credentials", "true"],
              ["connection", "x-internal"],
              ["x-internal", "backend-7"],
              ["keep-alive", "timeout=5"],
              ["retry-after", "7"],
            ],
          }),
      },
      1000,
    );
    const response = await edge.fetch("/held/x");
    expect({ status: response.status, text: await response.text() }).toEqual({
      status: 503,
      text: "down for maintenance",
    });
    expect(response.headers.getSetCookie()).toEqual(["pref=dark; Path=/"]);
    for (const name of [
      "access-control-allow-origin",
      "access-control-allow-credentials",
      "connection",
      "x-internal",
      "keep-alive",
    ]) {
      expect(response.headers.get(name), name).toBeNull();
    }
    // The origin's own: the edge has no opinion on when to come back.
    expect(response.headers.get("retry-after")).toBe("7");
    // The origin answered: the edge let the request through, whatever the origin made of it.
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, detail: null, status: 503 });
  });
});

describe("a HEAD request answered with a body", () => {
  it("reaches the client without the body, the origin's Content-Length kept, recorded as allowed", async () => {
    const seen: string[] = [];
    const edge = serviceEdge(
      {
        fetch: async (_target: string, init: RequestInit) => {
          seen.push(`${init.method} body:${init.body != null}`);
          // An origin that does not special-case HEAD answers as it would a GET.
          return new Response("body!", { headers: { "content-length": "5" } });
        },
      },
      1000,
    );
    const response = await edge.fetch("/held/x", { method: "HEAD" });
    expect(seen).toEqual(["HEAD body:false"]);
    expect(response.status).toBe(200);
    expect(response.body).toBeNull();
    expect(response.headers.get("content-length")).toBe("5");
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ method: "HEAD", decision: "allow", reason: null, status: 200 });
  });
});

describe("a service binding that throws rather than rejects", () => {
  // forward.ts: "A binding may throw rather than reject: the same unreachable origin either way."
  it.each(["GET", "POST"])("%s: 502 origin_unreachable, one record, never a 500", async (method) => {
    const edge = serviceEdge(
      {
        fetch: () => {
          throw new TypeError("binding broke");
        },
      },
      1000,
    );
    const response = await edge.fetch("/held/x", method === "POST" ? { method, body: "payload" } : { method });
    expect(response.status).toBe(502);
    const body = (await response.json()) as { reason: string };
    expect(body.reason).toBe("origin_unavailable");
    expect(JSON.stringify(body)).not.toContain("binding broke");
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({
      method,
      decision: "deny",
      reason: "origin_unavailable",
      detail: "origin_unreachable",
      status: 502,
    });
  });
});

describe("a service binding that resolves with no Response", () => {
  /**
   * A GET to a binding that resolves with `value`: answered 502 with nothing left unhandled;
   * the decision, reason and detail of each record it wrote.
   */
  async function recordsOfA502For(value: unknown) {
    const edge = serviceEdge({ fetch: async () => value }, 1000);
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/held/x");
      expect(response.status).toBe(502);
      await response.arrayBuffer();
    });
    expect(unhandled).toEqual([]);
    return edge.audit.map((r) => [r.decision, r.reason, r.detail]);
  }

  it.each([undefined, null])("%s: 502 origin_unreachable, and no unhandled rejection", async (value) => {
    expect(await recordsOfA502For(value)).toEqual([["deny", "origin_unavailable", "origin_unreachable"]]);
  });

  it.each([
    ["a string", "x"],
    ["a number", 5],
    ["an object without a status", {}],
  ])("%s: 502 origin_bad_status, never an empty 200 recorded as allowed", async (_label, value) => {
    expect(await recordsOfA502For(value)).toEqual([["deny", "origin_unavailable", "origin_bad_status"]]);
  });
});

describe("uploads of no declared length", () => {
  const edgeToEcho = () =>
    harness(
      basePolicy({
        routes: [{ name: "public", methods: ["POST", "PUT"], path: "/public/**", auth: "public", upstream: "echo" }],
      }),
    );

  it("an empty chunked body goes on chunked with no bytes; a PUT with no body at all goes with Content-Length: 0", async () => {
    const edge = edgeToEcho();
    const m = marker();
    const empty = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.close();
      },
    });
    const chunked = await edge.fetch(streamedRequest("/public/chunked", empty, { headers: { "x-test-marker": m } }));
    const none = await edge.fetch("/public/none", { method: "PUT", headers: { "x-test-marker": m } });
    expect([chunked.status, none.status]).toEqual([200, 200]);
    const seen = (await originSaw(m)).map((s) => ({
      path: s.path,
      length: s.headers["content-length"] ?? null,
      coding: s.headers["transfer-encoding"] ?? null,
      bytes: s.body_bytes,
    }));
    expect(seen).toEqual([
      { path: "/public/chunked", length: null, coding: "chunked", bytes: 0 },
      { path: "/public/none", length: "0", coding: null, bytes: 0 },
    ]);
    expect(edge.audit.map((r) => [r.decision, r.reason, r.status])).toEqual([
      ["allow", null, 200],
      ["allow", null, 200],
    ]);
  });

  it("a client that hangs up once the origin has its whole chunked body (its end), before the answer: recorded as allowed", async () => {
    // README, Errors: `allow` once the origin had the whole request, an upload "with its last
    // declared byte, or its end". Without a declared length, that is its end.
    const origin = heldOrigin(echoOrigin);
    const edge = heldOriginEdge(origin.binding);
    const m = marker();
    const { client, feed, answered } = uploadFromClient(edge, "/up/upload", "whole body!", { "x-test-marker": m });
    // Sent whole, its end included, before the edge reads any of it.
    feed.close();
    // The echo origin answers only once it has read the body's end; its answer is held back.
    expect(await origin.settled.promise).toBe("answered");
    expect((await originSaw(m)).map((s) => [s.body_bytes, s.headers["transfer-encoding"]])).toEqual([[11, "chunked"]]);
    client.abort();
    origin.release.resolve();
    await answered;
    await edge.settle();
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({
      decision: "allow",
      reason: "client_closed",
      detail: "client_disconnected",
      status: 499,
    });
  });
});
