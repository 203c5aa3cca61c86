// How the edge forwards request bodies (README, Upstreams; src/pipeline/upload.ts, forward.ts):
// framing the edge must not change or that is framed twice, a body on OPTIONS, a chunked upload
// an origin answers without reading, and timers left after an upload's answer. No elapsed time is asserted: every
// wait is on an event (the origin's answer, the edge reading on), vitest's timeout the guard.
import { describe, expect, it } from "vitest";
import { bodyOf, largeUploadAnsweredUnread, streamedRequest, thousandByteParts } from "../support/forward-scenarios";
import { basePolicy, harness, marker, originSaw, serviceEdge } from "../support/harness";
import { timersLeftBy } from "../support/timers";
import { held } from "../support/waiting";

const encode = (text: string) => new TextEncoder().encode(text);

/** A POST to the public route of these parts, each sent only when the edge reads on. */
function uploadOf(edge: ReturnType<typeof harness>, parts: string[], headers: Record<string, string>) {
  return edge.fetch(streamedRequest("/public/upload", bodyOf(parts.map(encode)), { headers }));
}

describe("framing the client chose", () => {
  // RFC 9112 §6.3: with both, Transfer-Encoding frames the body and Content-Length is to be
  // ignored (or the message refused). The edge sees the request's Transfer-Encoding (it reads
  // it itself to refuse other codings), so a body framed as chunked may carry both headers.
  // (Built here as a Request: what the runtime hands over from the wire is not checked.)
  // Framed twice is request smuggling's shape: the length would cut the body short at an
  // origin that reads it. Refused before anything is forwarded.
  it("a chunked body that also declares a Content-Length is refused (ambiguous_framing), never forwarded", async () => {
    const edge = harness(basePolicy());
    const m = marker();
    const response = await uploadOf(edge, ["abcd", "efgh"], {
      "transfer-encoding": "chunked",
      "content-length": "4",
      "x-test-marker": m,
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { reason: string }).reason).toBe("bad_request");
    expect(await originSaw(m)).toEqual([]);
    expect(edge.audit.map((r) => [r.decision, r.reason, r.detail])).toEqual([
      ["deny", "bad_request", "ambiguous_framing"],
    ]);
  });

  // The runtime writes its own framing for the origin request: a Content-Length the edge
  // cannot take as one length never reaches the origin beside a chunked body.
  for (const declared of ["4, 8", "4, 4", "0000000000000008", "eight"]) {
    it(`a Content-Length of "${declared}" goes no further: the origin gets the body chunked, all of it`, async () => {
      const edge = harness(basePolicy());
      const m = marker();
      const response = await uploadOf(edge, ["abcd", "efgh"], { "content-length": declared, "x-test-marker": m });
      expect(response.status).toBe(200);
      const [seen, ...more] = await originSaw(m);
      expect(more).toEqual([]);
      expect(seen).toMatchObject({ method: "POST", body_bytes: 8 });
      expect(seen?.headers["content-length"]).toBeUndefined();
      expect(seen?.headers["transfer-encoding"]).toBe("chunked");
      expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: null, status: 200 });
    });
  }

  it("a declared length far beyond the body (15 digits) is 400 body_length_mismatch, never forwarded as whole", async () => {
    const edge = harness(basePolicy());
    const m = marker();
    const response = await uploadOf(edge, ["abcd"], { "content-length": "999999999999999", "x-test-marker": m });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { reason: string }).reason).toBe("bad_request");
    expect(await originSaw(m)).toEqual([]);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "deny", reason: "bad_request", detail: "body_length_mismatch" });
  });
});

describe("a body on a method that seldom carries one", () => {
  it("an OPTIONS (not a preflight) with a body reaches the origin with all of it and its Content-Length", async () => {
    const edge = harness(
      basePolicy({
        routes: [{ name: "public", methods: ["OPTIONS"], path: "/public/**", auth: "public", upstream: "echo" }],
      }),
    );
    const m = marker();
    const response = await edge.fetch("/public/x", {
      method: "OPTIONS",
      body: "12345678",
      headers: { "content-length": "8", "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen).toMatchObject({ method: "OPTIONS", body_bytes: 8 });
    expect(seen?.headers["content-length"]).toBe("8");
    expect(edge.audit[0]).toMatchObject({ decision: "allow", status: 200 });
  });
});

describe("a chunked upload an origin answers without reading", () => {
  it("the answer is passed on at once, the rest of the upload given up, one allowed record, nothing unhandled", async () => {
    // No declared length: the edge streams it chunked. It never ends unless read to the end.
    const record = await largeUploadAnsweredUnread("chunked");
    expect(record).toMatchObject({ decision: "allow", reason: null, detail: null, status: 404 });
  });
});

describe("no timer outlives an upload's answer", () => {
  it("a declared-length upload taken whole and answered 200 leaves no timer set", async () => {
    const edge = harness(basePolicy());
    const m = marker();
    const { result, pending } = await timersLeftBy(async () => {
      const response = await edge.fetch(
        streamedRequest("/public/upload", bodyOf(thousandByteParts(2)), {
          headers: { "content-length": "2000", "x-test-marker": m },
        }),
      );
      return { status: response.status, body: (await response.json()) as { body_bytes: number } };
    });
    expect(result).toEqual({ status: 200, body: expect.objectContaining({ body_bytes: 2000 }) });
    expect(pending).toEqual([]);
  });

  it("a chunked upload the origin never takes (504 origin_upload_stalled) leaves no timer set", async () => {
    const aborted = held<void>();
    const edge = serviceEdge(
      {
        fetch: (_target: string, init: RequestInit) => {
          init.signal?.addEventListener("abort", () => aborted.resolve());
          return new Promise<Response>(() => undefined);
        },
      },
      200,
    );
    const { result, pending } = await timersLeftBy(async () => {
      const response = await edge.fetch(streamedRequest("/held/x", bodyOf([new Uint8Array(10)])));
      return { status: response.status, reason: ((await response.json()) as { reason: string }).reason };
    });
    expect(result).toEqual({ status: 504, reason: "origin_timeout" });
    expect(pending).toEqual([]);
    expect(edge.audit[0]).toMatchObject({
      decision: "deny",
      reason: "origin_timeout",
      detail: "origin_upload_stalled",
    });
    // Torn down, never ended as if whole.
    await aborted.promise;
  });
});
