// How a forwarded request ends when the origin or the client does something odd (README,
// Upstreams and Errors): an origin that stops reading an upload and answers, answers the edge
// discards, a declared-length upload's budget, a body not of its declared length, an answer
// the edge refuses mid-upload, an origin that stops taking an upload and never answers, a body
// whose end fails after its last declared byte, and no timer left behind. Origins are service bindings the test
// controls; no elapsed time is asserted: a wait that never ends is left to vitest's own timeout.
import { env } from "cloudflare:workers";
import { describe, expect, it, onTestFinished } from "vitest";
import { bodyOf, readToEnd, streamedRequest, thousandByteParts } from "../support/forward-scenarios";
import { basePolicy, echoOrigin, harness, marker, originSaw, serviceEdge, unhandledDuring } from "../support/harness";
import { largeBody } from "../support/large-body";
import { timersLeftBy } from "../support/timers";
import { held, sleep } from "../support/waiting";

/** A body already errored (an origin connection that broke), telling when the edge cancels it. */
function brokenBody() {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.error(new Error("origin connection broke"));
    },
  });
  const cancelled = held<void>();
  const cancel = body.cancel.bind(body);
  // Told before the real cancel runs: a handler on its result would handle its rejection.
  (body as { cancel: (reason?: unknown) => Promise<void> }).cancel = (reason?: unknown) => {
    cancelled.resolve();
    return cancel(reason);
  };
  return { body, cancelled: cancelled.promise };
}

/**
 * How many bytes an origin has once it reads the upload until it has `declared` of them (or
 * the upload ends): it reads no further, the body's end left unread.
 */
async function readUpTo(upload: ReadableStream<Uint8Array>, declared: number): Promise<number> {
  const reader = upload.getReader();
  let bytes = 0;
  while (bytes < declared) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
  }
  return bytes;
}

describe("an origin that stops taking the upload, then answers", () => {
  /**
   * 100 parts of 1,000 bytes, each sent only as the edge reads on; `cancelled` once the edge
   * gives the rest up (as it does when the origin stops taking it).
   */
  function uploadOf100Parts() {
    const cancelled = held<void>();
    let parts = 0;
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (parts++ < 100) controller.enqueue(new Uint8Array(1000));
          else controller.close();
        },
        cancel() {
          cancelled.resolve();
        },
      },
      { highWaterMark: 0 },
    );
    return { body, cancelled: cancelled.promise };
  }

  /**
   * An origin that reads `firstParts` parts of the upload, cancels the rest and, once the edge
   * has given the client's body up, answers 413 (unless its request was torn down: it honours
   * the abort, as fetch and real service bindings do).
   */
  function refusingOrigin(firstParts: number, clientGaveUp: () => Promise<void>) {
    return {
      fetch: async (_target: string, init: RequestInit) => {
        const reader = (init.body as ReadableStream<Uint8Array>).getReader();
        for (let i = 0; i < firstParts; i++) await reader.read();
        await reader.cancel();
        await clientGaveUp();
        // One task later, as an origin that logs or checks something first would.
        await sleep(0);
        if (init.signal?.aborted) throw new DOMException("The operation was aborted.", "AbortError");
        return new Response("too large", { status: 413 });
      },
    };
  }

  /** The upload sent as `init` says to a `refusingOrigin` that reads `firstParts` parts first: the answer, and the edge for its record. */
  async function refusedUpload(firstParts: number, init: Omit<RequestInit, "body" | "duplex"> = {}) {
    const upload = uploadOf100Parts();
    const edge = serviceEdge(
      refusingOrigin(firstParts, () => upload.cancelled),
      2000,
    );
    const response = await edge.fetch(streamedRequest("/held/x", upload.body, init));
    return { edge, response };
  }

  it("an origin that cancels the body, then answers 413, is passed on (the origin honours the abort)", async () => {
    const { edge, response } = await refusedUpload(0);
    expect({ status: response.status, text: await response.text() }).toEqual({ status: 413, text: "too large" });
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, status: 413 });
  });

  it("the same with a declared length, the origin having looked at the first part", async () => {
    const { edge, response } = await refusedUpload(1, { method: "PUT", headers: { "content-length": "100000" } });
    expect({ status: response.status, text: await response.text() }).toEqual({ status: 413, text: "too large" });
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, status: 413 });
  });
});

describe("a discarded answer whose body cannot be cancelled cleanly", () => {
  it("a late answer (after 504 origin_timeout) with a broken body leaves no unhandled rejection", async () => {
    const answer = held<Response>();
    const edge = serviceEdge({ fetch: () => answer.promise }, 100);
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/held/x");
      expect(response.status).toBe(504);
      const late = brokenBody();
      answer.resolve(new Response(late.body));
      // Discarded: the edge cancels it.
      await late.cancelled;
    });
    expect(unhandled).toEqual([]);
  });

  it("an answer with a status no response can carry (600), with a broken body, leaves no unhandled rejection", async () => {
    const late = brokenBody();
    const edge = serviceEdge(
      {
        fetch: async () => ({ status: 600, statusText: "", headers: new Headers(), body: late.body, webSocket: null }),
      },
      1000,
    );
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/held/x");
      expect(response.status).toBe(502);
      await late.cancelled;
    });
    expect(unhandled).toEqual([]);
  });
});

describe("the budget of a declared-length upload starts with its last byte", () => {
  it("an origin that has all declared bytes and never answers is 504 origin_timeout, even while the body's end is still to come", async () => {
    const originHasAll = held<number>();
    const edge = serviceEdge(
      {
        fetch: async (_target: string, init: RequestInit) => {
          originHasAll.resolve(await readUpTo(init.body as ReadableStream<Uint8Array>, 11));
          return new Promise<Response>(() => undefined); // never answers
        },
      },
      200,
    );
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        feed = controller;
        controller.enqueue(new TextEncoder().encode("whole body!"));
      },
    });
    // Let the abandoned request end once the test is over, whatever it found.
    onTestFinished(() => {
      try {
        feed.close();
      } catch {}
    });
    const answered = edge.fetch(streamedRequest("/held/x", body, { headers: { "content-length": "11" } }));
    expect(await originHasAll.promise).toBe(11);
    // The body's end is not sent: a budget that starts with the last declared byte still ends
    // the wait; one that waits for the end never does (vitest's timeout).
    const response = await answered;
    expect(response.status).toBe(504);
    expect(edge.audit[0]).toMatchObject({ decision: "deny", reason: "origin_timeout", detail: "origin_timeout" });
  });
});

describe("a body not of the length its client declared", () => {
  const edgeToEcho = () => harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 2000 } } }));

  it("longer than declared (4 declared, 8 sent): the declared bytes are the body, as HTTP frames it", async () => {
    const edge = edgeToEcho();
    const m = marker();
    const response = await edge.fetch(
      streamedRequest("/public/upload", bodyOf([new TextEncoder().encode("abcd"), new TextEncoder().encode("efgh")]), {
        headers: { "content-length": "4", "x-test-marker": m },
      }),
    );
    expect(response.status).toBe(200);
    expect(await originSaw(m)).toEqual([expect.objectContaining({ method: "POST", body_bytes: 4 })]);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", status: 200 });
  });

  it("shorter than declared (10 declared, 5 sent): 400 body_length_mismatch, never forwarded as whole", async () => {
    const edge = edgeToEcho();
    const m = marker();
    const response = await edge.fetch(
      streamedRequest("/public/upload", bodyOf([new Uint8Array(5)]), {
        headers: { "content-length": "10", "x-test-marker": m },
      }),
    );
    // The origin never took it as a complete request.
    expect(await originSaw(m)).toEqual([]);
    expect(response.status).toBe(400);
    expect(edge.audit[0]).toMatchObject({ decision: "deny", reason: "bad_request", detail: "body_length_mismatch" });
  });
});

describe("an answer the edge refuses while the upload goes on", () => {
  it("after 502 origin_bad_status the origin request is torn down, not completed", async () => {
    const go = held<void>();
    const originGot = held<{ aborted: boolean; read: string }>();
    const edge = serviceEdge(
      {
        fetch: async (_target: string, init: RequestInit) => {
          const upload = init.body as ReadableStream<Uint8Array>;
          (async () => {
            await go.promise;
            const read = await readToEnd(upload);
            originGot.resolve({ aborted: init.signal?.aborted ?? false, read });
          })();
          // Answers at once, before taking the body, with a status the edge refuses.
          return { status: 600, statusText: "", headers: new Headers(), body: null, webSocket: null };
        },
      },
      2000,
    );
    const response = await edge.fetch(
      new Request("https://edge.test/held/x", {
        method: "POST",
        body: "hello world",
        headers: { "content-length": "11" },
      }),
    );
    expect(response.status).toBe(502);
    expect(edge.audit[0]).toMatchObject({
      decision: "deny",
      reason: "origin_unavailable",
      detail: "origin_bad_status",
    });
    // Only now does the origin read: the edge has refused its answer already.
    go.resolve();
    const got = await originGot.promise;
    expect(got, "the origin request must be torn down (signal aborted or body failed)").not.toEqual({
      aborted: false,
      read: "clean end after 11",
    });
  });
});

describe("no timer outlives the answer", () => {
  async function pendingTimersAfter(run: () => Promise<Response>): Promise<{ status: number; pending: number[] }> {
    const { result, pending } = await timersLeftBy(run);
    return { status: result.status, pending };
  }

  it("a GET to an unreachable origin (502) leaves no timer set", async () => {
    const edge = serviceEdge({ fetch: () => Promise.reject(new Error("connection refused")) }, 2000);
    expect(await pendingTimersAfter(() => edge.fetch("/held/x"))).toEqual({ status: 502, pending: [] });
  });

  it("an upload the client breaks off (499) leaves no timer set", async () => {
    const edge = serviceEdge(
      {
        fetch: async (_target: string, init: RequestInit) => {
          const failed = new Promise<never>((_, reject) =>
            init.signal?.addEventListener("abort", () => reject(new Error("aborted"))),
          );
          failed.catch(() => undefined); // the edge may tear the request down before it is returned
          await new Response(init.body).arrayBuffer().catch(() => undefined);
          return failed;
        },
      },
      2000,
    );
    let sent = false;
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (!sent) {
            sent = true;
            controller.enqueue(new Uint8Array(100));
          } else controller.error(new Error("client gone"));
        },
      },
      { highWaterMark: 0 },
    );
    const result = await pendingTimersAfter(() => edge.fetch(streamedRequest("/held/x", body)));
    expect(result).toEqual({ status: 499, pending: [] });
  });
});

const issuerServer = (env as unknown as { ISSUER_SERVER: string }).ISSUER_SERVER;

describe("an origin that stops taking the upload and never answers", () => {
  /**
   * Reads `firstParts` parts, cancels the rest of the upload, and never answers; its request
   * fails once the edge tears it down (as fetch's and real service bindings' do).
   */
  function refusingSilentOrigin(firstParts: number) {
    const aborted = held<void>();
    return {
      aborted: aborted.promise,
      binding: {
        fetch: async (_target: string, init: RequestInit) => {
          const reader = (init.body as ReadableStream<Uint8Array>).getReader();
          for (let i = 0; i < firstParts; i++) await reader.read();
          await reader.cancel();
          return new Promise<Response>((_, reject) =>
            init.signal?.addEventListener("abort", () => {
              aborted.resolve();
              reject(new Error("aborted"));
            }),
          );
        },
      },
    };
  }

  // Given the budget to answer (it might refuse the upload, 413), it never does: its record must
  // not say origin_timeout, the detail of an origin that took the whole request and then gave
  // no answer.
  for (const framing of ["chunked", "length"] as const) {
    it(`is 504 with detail origin_upload_stalled, not origin_timeout: it never had the whole request (${framing})`, async () => {
      const origin = refusingSilentOrigin(framing === "length" ? 1 : 0);
      const edge = serviceEdge(origin.binding, 200);
      const response = await edge.fetch(
        streamedRequest("/held/x", bodyOf(thousandByteParts(100)), {
          headers: framing === "length" ? { "content-length": "100000" } : {},
        }),
      );
      expect(response.status).toBe(504);
      expect(edge.audit).toHaveLength(1);
      expect(edge.audit[0]).toMatchObject({
        decision: "deny",
        reason: "origin_timeout",
        detail: "origin_upload_stalled",
        status: 504,
      });
      // Torn down once the edge stopped waiting.
      await origin.aborted;
    });
  }
});

describe("a declared-length body that breaks off after its last declared byte", () => {
  /**
   * 11 declared bytes sent whole, then the body's end fails (a break-off after the last byte);
   * the origin takes the 11 bytes and, once the edge has read that failure, answers 200 — unless
   * its request was torn down by then (it honours the abort).
   */
  function scenario() {
    const endFailed = held<void>();
    const origin = {
      fetch: async (_target: string, init: RequestInit) => {
        const bytes = await readUpTo(init.body as ReadableStream<Uint8Array>, 11);
        await endFailed.promise;
        // Two task turns: the edge has acted on the failed read by now.
        await sleep(0);
        await sleep(0);
        if (init.signal?.aborted) throw new DOMException("The operation was aborted.", "AbortError");
        return new Response(`took ${bytes}`, { status: 200 });
      },
    };
    let step = 0;
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (step++ === 0) controller.enqueue(new TextEncoder().encode("whole body!"));
          else {
            endFailed.resolve();
            controller.error(new Error("client reset after the last byte"));
          }
        },
      },
      { highWaterMark: 0 },
    );
    const request = streamedRequest("/held/x", body, { headers: { "content-length": "11" } });
    return { edge: serviceEdge(origin, 2000), request };
  }

  // README (Upstreams): a body of declared length is whole with its last byte; a client whose
  // body's end fails after that is recorded as allowed.
  it("is recorded as allowed: the origin had the whole request", async () => {
    const { edge, request } = scenario();
    await edge.fetch(request);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow" });
  });

  // The origin has the whole request and its budget is running: its answer goes on.
  it("the origin request is not torn down: its answer goes on", async () => {
    const { edge, request } = scenario();
    const response = await edge.fetch(request);
    expect({ status: response.status, text: await response.text() }).toEqual({ status: 200, text: "took 11" });
  });
});

describe("a body cut at its declared length, and a connection that breaks", () => {
  it("longer than declared, the extra bytes in the same part as the last declared ones: cut at the declared length", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 2000 } } }));
    for (const parts of [["abcdefgh"], ["ab", "cdefgh"]]) {
      const m = marker();
      const body = bodyOf(parts.map((part) => new TextEncoder().encode(part)));
      const response = await edge.fetch(
        streamedRequest("/public/upload", body, { headers: { "content-length": "4", "x-test-marker": m } }),
      );
      expect(response.status).toBe(200);
      expect(await originSaw(m)).toEqual([expect.objectContaining({ body_bytes: 4 })]);
      expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
    }
  });

  it("an origin whose connection breaks mid-upload is 502 origin_unreachable (not held for the budget)", async () => {
    for (const declared of [false, true]) {
      const name = `down-${crypto.randomUUID().slice(0, 8)}`;
      await fetch(`${issuerServer}/__control/issuers/${name}`, {
        method: "POST",
        body: JSON.stringify({ mode: "down" }),
      });
      const edge = harness(
        basePolicy({
          // The default 30 s budget: an edge that waited it out would meet vitest's timeout.
          upstreams: { down: { url: issuerServer } },
          routes: [{ name: "down", methods: ["POST"], path: `/${name}/jwks`, auth: "public", upstream: "down" }],
        }),
      );
      const total = 8 << 20;
      const response = await edge.fetch(
        streamedRequest(`/${name}/jwks`, largeBody(total).body, {
          headers: declared ? { "content-length": String(total) } : {},
        }),
      );
      expect(response.status).toBe(502);
      expect(edge.audit.at(-1)).toMatchObject({ reason: "origin_unavailable", detail: "origin_unreachable" });
    }
  });
});
