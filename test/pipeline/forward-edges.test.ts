// Checks of the forward stage and the stages around it at their edges: how an upload's end
// is told apart (torn down, whole), which origin statuses go on, and that only a real
// preflight is routed by the method it asks about. Origins are service bindings the test
// controls or the echo origin; no elapsed time is asserted.
import { describe, expect, it } from "vitest";
import { basePolicy, harness, serviceEdge } from "../support/harness";
import { sendMarked } from "../support/sent";
import { held } from "../support/waiting";

/** A client body sent in these parts, each only when the edge reads on, then held open until `end`. */
function bodyOf(parts: Uint8Array[], end: Promise<void> = Promise.resolve()) {
  let i = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const part = parts[i++];
        if (part) return controller.enqueue(part);
        await end;
        controller.close();
      },
    },
    { highWaterMark: 0 },
  );
}

describe("an upload shorter than it declared", () => {
  it("tears the origin request down (its signal aborts), not only its body", async () => {
    const origin = held<{ signal: AbortSignal | undefined; read: string }>();
    const edge = serviceEdge(
      {
        fetch: async (_target: string, init: RequestInit) => {
          let read: string;
          try {
            await new Response(init.body).arrayBuffer();
            read = "clean end";
          } catch {
            read = "error";
          }
          origin.resolve({ signal: init.signal ?? undefined, read });
          return new Promise<Response>(() => undefined); // never answers
        },
      },
      2000,
    );
    const response = await edge.fetch(
      new Request("https://edge.test/held/x", {
        method: "POST",
        body: bodyOf([new Uint8Array(5)]),
        headers: { "content-length": "10" },
        duplex: "half",
      } as RequestInit),
    );
    expect(response.status).toBe(400);
    expect(edge.audit.map((r) => [r.decision, r.reason, r.detail])).toEqual([
      ["deny", "bad_request", "body_length_mismatch"],
    ]);
    const got = await origin.promise;
    expect(got.read).toBe("error");
    // An origin that ignores its body's failure still learns the request is over.
    expect(got.signal?.aborted).toBe(true);
  });
});

describe("an origin that has every declared byte, then stops taking the body's end", () => {
  it("and never answers is 504 origin_timeout: it had the whole request, its upload did not stall", async () => {
    const originCancelled = held<void>();
    const edge = serviceEdge(
      {
        fetch: async (_target: string, init: RequestInit) => {
          const reader = (init.body as ReadableStream<Uint8Array>).getReader();
          let bytes = 0;
          while (bytes < 4) {
            const { done, value } = await reader.read();
            if (done) break;
            bytes += value.byteLength;
          }
          // Every declared byte taken; the end of the body is refused.
          await reader.cancel();
          originCancelled.resolve();
          return new Promise<Response>(() => undefined); // never answers
        },
      },
      200,
    );
    const response = await edge.fetch(
      new Request("https://edge.test/held/x", {
        method: "POST",
        // The client's end comes only once the origin has stopped taking the body.
        body: bodyOf([new TextEncoder().encode("abcd")], originCancelled.promise),
        headers: { "content-length": "4" },
        duplex: "half",
      } as RequestInit),
    );
    expect(response.status).toBe(504);
    expect(edge.audit.map((r) => [r.decision, r.reason, r.detail])).toEqual([
      ["deny", "origin_timeout", "origin_timeout"],
    ]);
  });
});

describe("an origin's Response whose status no answer can carry", () => {
  /**
   * A real Response whose status reads as the runtime's fetch hands over such an answer (no
   * constructor makes one): the range check, not the type check, must refuse it.
   */
  const answering = (status: number) => ({
    fetch: async () => Object.defineProperty(new Response("from origin", { status: 200 }), "status", { value: status }),
  });

  it.each([101, 199, 600, 999])("%s is 502 origin_bad_status, never a 500", async (status) => {
    const edge = serviceEdge(answering(status), 2000);
    const response = await edge.fetch("/held/x");
    expect(response.status).toBe(502);
    expect(((await response.json()) as { reason: string }).reason).toBe("origin_unavailable");
    expect(edge.audit.map((r) => [r.decision, r.reason, r.detail])).toEqual([
      ["deny", "origin_unavailable", "origin_bad_status"],
    ]);
  });

  it.each([200, 599])("%s is passed on", async (status) => {
    const edge = serviceEdge(answering(status), 2000);
    const response = await edge.fetch("/held/x");
    expect(response.status).toBe(status);
    expect(await response.text()).toBe("from origin");
    expect(edge.audit.map((r) => [r.decision, r.status])).toEqual([["allow", status]]);
  });
});

describe("an OPTIONS that names a method but carries no Origin", () => {
  // Only a preflight (Origin and Access-Control-Request-Method) is routed by the method it asks
  // about: any other OPTIONS is an OPTIONS, and a route that takes only POST never serves it.
  it("is routed as OPTIONS: a POST-only route does not take it, and nothing is forwarded", async () => {
    const e = harness(
      basePolicy({
        routes: [{ name: "writes", methods: ["POST"], path: "/public/**", auth: "public", upstream: "echo" }],
      }),
    );
    const { response, body, record, seen } = await sendMarked(e, "/public/a", {
      method: "OPTIONS",
      headers: { "access-control-request-method": "POST" },
    });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST");
    expect(body?.reason).toBe("method_not_allowed");
    expect(record).toMatchObject({ decision: "deny", reason: "method_not_allowed", route: null });
    expect(seen).toEqual([]);
  });
});
