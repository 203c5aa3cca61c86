// A body framed by both Transfer-Encoding and Content-Length is refused (ambiguous_framing):
// what a Worker actually receives through a service binding from the ways callers send
// bodies, none of which is taken for it, and the one that is.
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";

const _unique = () => crypto.randomUUID().slice(0, 8);
const encode = (text: string) => new TextEncoder().encode(text);

/** A body of unknown length, as a Worker forwarding an upload passes it on. */
function streamed(): ReadableStream<Uint8Array> {
  const parts = [encode("abcd"), encode("efgh")];
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = parts.shift();
      if (part) controller.enqueue(part);
      else controller.close();
    },
  });
}

describe("framing as a Worker calling the edge through a service binding hands it over", () => {
  // SELF is the deployed Worker (policy/policy.json) behind a real service binding: its
  // `POST /v1/payments` needs a token, so a request the framing check lets through is refused
  // by authentication (401 token_missing), and one it refuses is 400 bad_request before that.
  // What common callers send: a stream with the length the caller knows (undici and workerd
  // send it as Content-Length, not chunked), a stream of unknown length, a buffered body with
  // the incoming request's `transfer-encoding: chunked` copied along (the runtime shows that
  // header for a chunked upload, and drops a Content-Length beside it on the wire).
  const passes: [string, () => RequestInit][] = [
    ["a stream with its Content-Length", () => ({ body: streamed(), headers: { "content-length": "8" } })],
    ["a stream of unknown length", () => ({ body: streamed() })],
    [
      "a stream with Transfer-Encoding: chunked",
      () => ({ body: streamed(), headers: { "transfer-encoding": "chunked" } }),
    ],
    [
      "a buffered body with the incoming chunked header copied",
      () => ({
        body: "abcdefgh",
        headers: { "transfer-encoding": "chunked" },
      }),
    ],
  ];
  for (const [name, init] of passes) {
    it(`${name} is not taken for ambiguous framing`, async () => {
      const response = await SELF.fetch("https://edge.test/v1/payments", {
        method: "POST",
        duplex: "half",
        ...init(),
      } as RequestInit);
      expect([response.status, ((await response.json()) as { reason: string }).reason]).toEqual([401, "token_missing"]);
    });
  }

  it("only a caller that sets both headers itself is refused, before authentication", async () => {
    const response = await SELF.fetch("https://edge.test/v1/payments", {
      method: "POST",
      duplex: "half",
      body: streamed(),
      headers: { "transfer-encoding": "chunked", "content-length": "8" },
    } as RequestInit);
    expect([response.status, ((await response.json()) as { reason: string }).reason]).toEqual([400, "bad_request"]);
  });
});
