// Uploads against origins that do not behave: one that never reads the body or never answers
// (the budget still ends the wait), one that answers before reading it (passed on at once),
// one that cannot be reached while the client's upload stalls (502 at once); once an origin
// has answered, it takes the rest of the upload at its own pace, whatever either side does next.
//
// The edge answers 504 origin_timeout for two causes, told apart by the record's detail: the
// origin took no part of the upload within the budget (origin_upload_stalled), or it took the
// whole request and then gave no answer within the budget (origin_timeout). The tests check
// both against what the origin got and how far the edge read the client's body.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  earlyAnsweringEdge,
  largeUploadAnsweredUnread,
  readToEnd,
  streamedRequest,
} from "../support/forward-scenarios";
import {
  basePolicy,
  type EchoRecord,
  echoOrigin,
  type Harness,
  harness,
  marker,
  originSaw,
  serviceEdge,
  unhandledDuring,
} from "../support/harness";
import { held, sleep } from "../support/waiting";

const issuerServer = (env as unknown as { ISSUER_SERVER: string }).ISSUER_SERVER;

/**
 * A client body of `total` zero bytes in parts of `partBytes`, which the edge gets only as it
 * reads (no read-ahead), so the test knows how far the edge took it: `ended` once the edge
 * read its end, which it does only when the origin has taken everything before it.
 */
function trackedBody(total: number, partBytes = total) {
  const progress = { sent: 0, ended: false };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (progress.sent >= total) {
          progress.ended = true;
          return controller.close();
        }
        const size = Math.min(partBytes, total - progress.sent);
        progress.sent += size;
        controller.enqueue(new Uint8Array(size));
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, progress };
}

/**
 * A service-binding origin that never answers on its own. It records the request it was
 * sent and whether the edge aborted it; with `readsBody` it first takes the whole upload;
 * with `honoursAbort` its answer fails when the edge aborts the request, as fetch's does.
 * `lateAnswer` releases an answer after the edge has given up: its body reports being
 * cancelled through `discarded`.
 */
function silentOrigin(options: { readsBody?: boolean; honoursAbort?: boolean } = {}) {
  const requests: { method: string; hasBody: boolean }[] = [];
  const aborted = held<void>();
  const bodyBytes = held<number>();
  const answer = held<Response>();
  const discarded = held<void>();
  const binding = {
    fetch: async (_input: string, init: RequestInit) => {
      requests.push({ method: init.method ?? "GET", hasBody: init.body != null });
      const signal = init.signal;
      signal?.addEventListener("abort", () => aborted.resolve());
      const failed = new Promise<never>((_, reject) => {
        if (options.honoursAbort) signal?.addEventListener("abort", () => reject(new Error("aborted")));
      });
      if (options.readsBody) bodyBytes.resolve((await new Response(init.body).arrayBuffer()).byteLength);
      return Promise.race([answer.promise, failed]);
    },
  };
  const lateAnswer = () =>
    answer.resolve(
      new Response(
        new ReadableStream({
          cancel() {
            discarded.resolve();
          },
        }),
      ),
    );
  return { binding, requests, aborted: aborted.promise, bodyBytes: bodyBytes.promise, lateAnswer, discarded };
}

/**
 * The 504 and its record: origin_timeout in the problem body and in the audit record, both,
 * with the detail that says which wait ran out: the origin's answer, or its taking the upload.
 */
async function expectOriginTimeout(
  edge: Harness,
  answered: Response,
  method: string,
  detail: "origin_timeout" | "origin_upload_stalled" = "origin_timeout",
) {
  expect(answered.status).toBe(504);
  expect(answered.headers.get("content-type")).toBe("application/problem+json");
  const problem = (await answered.json()) as { reason: string; request_id: string };
  expect(problem.reason).toBe("origin_timeout");
  expect(edge.audit).toHaveLength(1);
  expect(edge.audit[0]).toMatchObject({
    request_id: problem.request_id,
    method,
    decision: "deny",
    reason: "origin_timeout",
    detail,
    status: 504,
  });
}

/** What the echo origin recorded for `m`, once it has recorded it (it does so at the body's end). */
async function originRecorded(m: string): Promise<EchoRecord[]> {
  for (;;) {
    const seen = await originSaw(m);
    if (seen.length > 0) return seen;
    await sleep(20);
  }
}

// No elapsed time is asserted: an edge that waited on the origin for ever would leave the
// test to vitest's own timeout, the guard against hanging.
describe("origin budget with a request body", () => {
  /** The headers of a 4-byte upload so framed: its declared length, or none (chunked). */
  const framed = (framing: "length" | "chunked"): Record<string, string> =>
    framing === "length" ? { "content-length": "4" } : {};

  // Control: no upload, so the only wait is for the answer.
  it("a GET to an origin that never answers is 504 origin_timeout, and its late answer is discarded unread", async () => {
    const origin = silentOrigin();
    const edge = serviceEdge(origin.binding, 200);
    await expectOriginTimeout(edge, await edge.fetch("/held/x"), "GET");
    expect(origin.requests).toEqual([{ method: "GET", hasBody: false }]);
    // The wait for the answer timed out: whatever the origin answers now is cancelled unread.
    origin.lateAnswer();
    await origin.discarded.promise;
  });

  for (const framing of ["length", "chunked"] as const) {
    for (const honoursAbort of [true, false]) {
      it(`a POST whose upload an origin never takes, nor answers, is 504 origin_timeout: the upload stalled (${framing}; the origin ${honoursAbort ? "honours" : "ignores"} the abort)`, async () => {
        const origin = silentOrigin({ honoursAbort });
        const edge = serviceEdge(origin.binding, 200);
        const body = trackedBody(4);
        const answered = await edge.fetch(streamedRequest("/held/x", body.stream, { headers: framed(framing) }));
        await expectOriginTimeout(edge, answered, "POST", "origin_upload_stalled");
        expect(origin.requests).toEqual([{ method: "POST", hasBody: true }]);
        // The edge read the client's 4 bytes but never the body's end: the origin did not take
        // them, so the upload was never handed on whole...
        expect(body.progress).toEqual({ sent: 4, ended: false });
        // ...and the origin's request is torn down, never ended as if it were complete.
        await origin.aborted;
      });
    }

    it(`a POST an origin takes whole but never answers is 504 origin_timeout: the wait for its answer timed out (${framing})`, async () => {
      const origin = silentOrigin({ readsBody: true });
      const edge = serviceEdge(origin.binding, 200);
      const body = trackedBody(4);
      const answered = await edge.fetch(streamedRequest("/held/x", body.stream, { headers: framed(framing) }));
      await expectOriginTimeout(edge, answered, "POST");
      // The origin had the whole upload, its end included...
      expect(await origin.bodyBytes).toBe(4);
      expect(body.progress).toEqual({ sent: 4, ended: true });
      // ...then the edge stopped waiting: the request is torn down, a late answer discarded.
      await origin.aborted;
      origin.lateAnswer();
      await origin.discarded.promise;
    });
  }
});

describe("origin budget with a request body, over the network", () => {
  async function jwksFetches(name: string): Promise<number> {
    const state = (await (await fetch(`${issuerServer}/__control/issuers/${name}`)).json()) as { jwks_fetches: number };
    return state.jwks_fetches;
  }

  it("a 64 MiB upload the client sends at once, to an origin that hangs without reading it, is 504 origin_timeout: the upload stalled", async () => {
    const name = `hung-${crypto.randomUUID().slice(0, 8)}`;
    // Answers after 6 s, reading nothing of the body meanwhile.
    await fetch(`${issuerServer}/__control/issuers/${name}`, {
      method: "POST",
      body: JSON.stringify({ mode: "slow", delayMs: 6000 }),
    });
    const edge = harness(
      basePolicy({
        upstreams: { slow: { url: issuerServer, timeout_ms: 300 } },
        routes: [{ name: "slow", methods: ["GET", "POST"], path: `/${name}/jwks`, auth: "public", upstream: "slow" }],
      }),
    );
    // Control: the same origin with no body is 504 origin_timeout, having had the request.
    await expectOriginTimeout(edge, await edge.fetch(`/${name}/jwks`), "GET");
    expect(await jwksFetches(name)).toBe(1);
    edge.audit.length = 0;

    // Far more than the connection's buffers hold: the origin, reading nothing, stops taking it.
    const total = 64 << 20;
    const body = trackedBody(total, 1 << 16);
    const answered = await edge.fetch(
      streamedRequest(`/${name}/jwks`, body.stream, { headers: { "content-length": String(total) } }),
    );
    await expectOriginTimeout(edge, answered, "POST", "origin_upload_stalled");
    // The request reached the origin; the edge stopped reading the upload once it stalled.
    expect(await jwksFetches(name)).toBe(2);
    expect(body.progress.ended).toBe(false);
    expect(body.progress.sent).toBeLessThan(total);
  });

  it("an 8 MiB upload an origin takes whole, then does not answer within the budget, is 504 origin_timeout: the origin has all of it", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 1000 } } }));
    const m = marker();
    const total = 8 << 20;
    const body = trackedBody(total, 1 << 16);
    const answered = await edge.fetch(
      streamedRequest("/public/upload", body.stream, {
        // The echo origin reads the whole body, then holds its answer for 10 s.
        headers: { "content-length": String(total), "x-test-marker": m, "x-echo-delay-ms": "10000" },
      }),
    );
    await expectOriginTimeout(edge, answered, "POST");
    expect(body.progress).toEqual({ sent: total, ended: true });
    expect(await originRecorded(m)).toEqual([expect.objectContaining({ method: "POST", body_bytes: total })]);
  });
});

describe("the pump when the origin does not wait for the body", () => {
  /**
   * 1,000 bytes and never another, never closed; `askedForMore` once the edge reads on after
   * the first part (the runtime pulls only for a read that finds nothing queued), which it does
   * only when the origin has taken that part.
   */
  function stalledBody() {
    const askedForMore = held<void>();
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(1000));
      },
      pull() {
        askedForMore.resolve();
      },
    });
    return { stream, askedForMore: askedForMore.promise };
  }

  // An origin that answers before reading the body (the issuer server's
  // 404 for an unknown path) is passed on at once, even while the client's upload is stalled.
  it("an origin answering at once is passed on while the client's upload stalls", async () => {
    const edge = earlyAnsweringEdge();
    const body = stalledBody();
    const unhandled = await unhandledDuring(async () => {
      // The upload never ends: an edge that waited for it before passing the answer on would
      // never answer.
      const answered = await edge.fetch(
        streamedRequest("/no-such/upload", body.stream, { headers: { "content-length": "100000" } }),
      );
      expect(answered.status).toBe(404);
      expect(await answered.json()).toEqual({ error: "not_found" });
      // The origin took the first part and the edge waits for the next, which never comes:
      // nothing more happens to this request.
      await body.askedForMore;
    });
    expect(unhandled).toEqual([]);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, detail: null, status: 404 });
  });

  // An unreachable origin with a stalled upload is 502 at once.
  it("an unreachable origin with a stalled upload is 502 origin_unavailable at once", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: "http://127.0.0.1:9" } } }));
    // The upload never ends: an edge that waited for it would never answer.
    const answered = await edge.fetch(streamedRequest("/public/upload", stalledBody().stream));
    expect(answered.status).toBe(502);
    expect(((await answered.json()) as { reason: string }).reason).toBe("origin_unavailable");
    expect(edge.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "origin_unavailable",
      detail: "origin_unreachable",
      status: 502,
    });
  });

  // An 8 MiB upload to an origin that answers 404 at once without reading it.
  it("a large upload to an origin that answers at once without reading it", async () => {
    const record = await largeUploadAnsweredUnread("length");
    expect(record).toMatchObject({ decision: "allow", reason: null, status: 404 });
  });
});

describe("uploads, the origin and the client at their own pace", () => {
  // A slow client is not the origin's fault: the budget does not cut it.
  it("a client that pauses 700 ms mid-upload, with a 300 ms budget, gets the origin's answer", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 300 } } }));
    const m = marker();
    let step = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        step++;
        if (step === 1) controller.enqueue(new Uint8Array(1000));
        else if (step === 2) {
          await sleep(700);
          controller.enqueue(new Uint8Array(1000));
        } else controller.close();
      },
    });
    const response = await edge.fetch(
      streamedRequest("/public/slow-client", body, { headers: { "content-length": "2000", "x-test-marker": m } }),
    );
    expect(response.status).toBe(200);
    expect(((await response.json()) as { body_bytes: number }).body_bytes).toBe(2000);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
  });

  // An empty body is whole at once: audited as allowed.
  it("a 0-byte POST body reaches the origin and is audited as allowed", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 300 } } }));
    const m = marker();
    const response = await edge.fetch("/public/empty", {
      method: "POST",
      body: "",
      headers: { "content-length": "0", "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen?.body_bytes).toBe(0);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
  });

  /**
   * An edge with a 200 ms budget whose origin answers before taking the upload and streams its
   * answer for 800 ms (the echo origin's `/stream`).
   */
  const earlyStreamingEdge = () =>
    serviceEdge(
      {
        fetch: (_input: string, init: RequestInit) =>
          fetch(`${echoOrigin}/stream`, { headers: { "x-echo-stream-ms": "800" }, signal: init.signal }),
      },
      200,
    );

  // The origin answers before taking the upload and streams its answer for longer than the
  // budget: the answer is passed on whole, however long the unread upload waits.
  it("an answer already passed on is not cut when the unread upload later 'stalls'", async () => {
    const edge = earlyStreamingEdge();
    const response = await edge.fetch("/held/x", { method: "POST", body: "hello" });
    expect(response.status).toBe(200);
    let text = "";
    let failure: unknown;
    try {
      text = await response.text();
    } catch (error) {
      failure = error;
    }
    expect(String(failure ?? "")).toBe("");
    expect(JSON.parse(text)).toMatchObject({ path: "/stream" });
  });

  // The same origin with an empty upload (the body is whole at once).
  it("the same early streamed answer with a 0-byte upload arrives whole", async () => {
    const edge = earlyStreamingEdge();
    const response = await edge.fetch("/held/x", { method: "POST", body: "" });
    expect(JSON.parse(await response.text())).toMatchObject({ path: "/stream" });
  });

  // An origin that answers at once and then takes the body at its own pace (a streaming
  // transform): once it has answered, its taking the body is held to no budget.
  it("an origin that answered, then takes the body later than timeout_ms, gets the whole body", async () => {
    const origin = {
      fetch: (_input: string, init: RequestInit) => {
        const upload = init.body as ReadableStream<Uint8Array>;
        const out = new ReadableStream<Uint8Array>({
          async start(controller) {
            await sleep(600); // slower than the 200 ms budget to take the first part
            let bytes = 0;
            const reader = upload.getReader();
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              bytes += value.byteLength;
            }
            controller.enqueue(new TextEncoder().encode(JSON.stringify({ bytes })));
            controller.close();
          },
        });
        return Promise.resolve(new Response(out, { status: 200 }));
      },
    };
    const edge = serviceEdge(origin, 200);
    const response = await edge.fetch(
      new Request("https://edge.test/held/x", {
        method: "POST",
        body: "hello",
        headers: { "content-length": "5" },
      }),
    );
    expect(response.status).toBe(200);
    const text = await response.text().catch((error) => `failed: ${error}`);
    expect(text).toBe(JSON.stringify({ bytes: 5 }));
  });

  it("an origin refusing the body (cancel, then 413) is passed on", async () => {
    const got: { method: string; hasBody: boolean }[] = [];
    const origin = {
      fetch: async (_input: string, init: RequestInit) => {
        got.push({ method: init.method ?? "GET", hasBody: init.body != null });
        await (init.body as ReadableStream).cancel();
        await sleep(20);
        return new Response("too large", { status: 413 });
      },
    };
    const edge = serviceEdge(origin, 200);
    const response = await edge.fetch(
      new Request("https://edge.test/held/x", { method: "POST", body: "x".repeat(1000) }),
    );
    expect({ status: response.status, text: await response.text() }).toEqual({ status: 413, text: "too large" });
    expect(got).toEqual([{ method: "POST", hasBody: true }]);
    // The origin answered: the request was let through, whatever it thought of the body.
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, detail: null, status: 413 });
  });
});

/**
 * A client body: `parts` chunks of 1000 bytes, then (optionally) an error; `givenUp` once the
 * edge cancels it.
 */
function clientBody(parts: number, thenError: boolean, gapMs = 0) {
  let n = 0;
  const givenUp = held<void>();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (gapMs) await sleep(gapMs);
      if (n++ < parts) return controller.enqueue(new Uint8Array(1000));
      if (thenError) controller.error(new Error("client gone"));
      else controller.close();
    },
    cancel() {
      givenUp.resolve();
    },
  });
  return { stream, givenUp: givenUp.promise };
}

describe("an origin that answered, then the body", () => {
  // Answered at once, then cancels the body after the budget.
  it("origin answers, then cancels the upload later than timeout_ms: answer whole, no unhandled rejection", async () => {
    const origin = {
      fetch: (_input: string, init: RequestInit) => {
        setTimeout(() => (init.body as ReadableStream).cancel().catch(() => undefined), 500);
        return Promise.resolve(new Response("done", { status: 202 }));
      },
    };
    const edge = serviceEdge(origin, 200);
    const body = clientBody(50, false);
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch(
        streamedRequest("/held/x", body.stream, { headers: { "content-length": "50000" } }),
      );
      expect(response.status).toBe(202);
      expect(await response.text()).toBe("done");
      // The origin's cancel reaches the edge's write, and the edge gives the client's body up.
      await body.givenUp;
    });
    expect(unhandled).toEqual([]);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, status: 202 });
  });

  // The client breaks off after the answer; the origin, reading late,
  // must see a failure, never a clean (truncated) end.
  for (const declared of [true, false]) {
    it(`client breaks off after the answer; the late-reading origin sees an error (${declared ? "length" : "chunked"})`, async () => {
      const seen = held<string>();
      const origin = {
        fetch: (_input: string, init: RequestInit) => {
          const upload = init.body as ReadableStream<Uint8Array>;
          (async () => {
            await sleep(500);
            seen.resolve(await readToEnd(upload));
          })();
          return Promise.resolve(new Response("ok", { status: 200 }));
        },
      };
      const edge = serviceEdge(origin, 200);
      const headers: Record<string, string> = declared ? { "content-length": "10000" } : {};
      const unhandled = await unhandledDuring(async () => {
        const response = await edge.fetch(streamedRequest("/held/x", clientBody(3, true, 50).stream, { headers }));
        expect(await response.text()).toBe("ok");
        // The end of the scenario: the origin's read of the broken-off upload failed.
        expect(await seen.promise).toBe("error");
      });
      expect(unhandled).toEqual([]);
    });
  }

  // An origin that answers and never touches the body: answer whole.
  it("origin answers and never touches the body: the answer still arrives whole", async () => {
    const budgetMs = 150;
    const origin = { fetch: () => Promise.resolve(new Response("x".repeat(10000), { status: 200 })) };
    const edge = serviceEdge(origin, budgetMs);
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch(
        streamedRequest("/held/x", clientBody(200, false).stream, {
          method: "PUT",
          headers: { "content-length": "200000" },
        }),
      );
      expect(response.status).toBe(200);
      expect(await response.text()).toHaveLength(10000);
      // The edge's write of the first part, which the origin never takes, runs out of budget
      // and then waits on: the scenario has no end of its own after that. Timers fire in the
      // order they fall due, so one set for the budget now fires after the edge's, set when
      // that write began.
      await sleep(budgetMs);
    });
    expect(unhandled).toEqual([]);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, status: 200 });
  });

  // A GET with a body reaching the origin without it is tested through the whole stack
  // (test/node/e2e/request-faults.test.ts): a Request built here cannot carry a GET body.
});
