// Requests of thousands of header fields, as a client may send up to the platform's 128 KB of
// them: the edge refuses a block past `max_header_bytes` having read no more fields than the
// budget can hold, and one within it goes on with exactly the fields it would go on with were
// there a few. The work is counted (fields read), never timed.
import { afterEach, describe, expect, it } from "vitest";
import { edgeWithInIsolateOrigin } from "../support/in-isolate-origin";

const names = (count: number, prefix: string) => Array.from({ length: count }, (_, i) => `${prefix}${i.toString(36)}`);

/** The fields the edge reads of `headers` (by iterating it), counted while a request runs. */
const iterated = { target: undefined as Headers | undefined, reads: 0 };
const HEADERS_ITERATORS = ["entries", "keys", "values", Symbol.iterator] as const;
const originals = new Map(HEADERS_ITERATORS.map((key) => [key, Headers.prototype[key]]));

function countReadsOf(headers: Headers): void {
  iterated.target = headers;
  iterated.reads = 0;
  for (const [key, original] of originals) {
    Object.defineProperty(Headers.prototype, key, {
      configurable: true,
      writable: true,
      value: function* (this: Headers) {
        for (const item of (original as () => Iterable<unknown>).call(this)) {
          if (this === iterated.target) iterated.reads++;
          yield item;
        }
      },
    });
  }
}

afterEach(() => {
  for (const [key, original] of originals)
    Object.defineProperty(Headers.prototype, key, { configurable: true, writable: true, value: original });
  iterated.target = undefined;
});

describe("a request of thousands of header fields", () => {
  it("past max_header_bytes (16,000 fields) is refused headers_too_large having read no more fields than the budget holds", async () => {
    const { edge, reached } = edgeWithInIsolateOrigin();
    const request = new Request("https://edge.test/public/x", { headers: {} });
    for (const name of names(16000, "h")) request.headers.set(name, "1");
    countReadsOf(request.headers);
    const response = await edge.fetch(request);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { reason: string }).reason).toBe("bad_request");
    expect(edge.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "bad_request",
      detail: "headers_too_large",
      path: "/public/x",
    });
    expect(reached).toHaveLength(0);
    // Each field counts at least `n: v\r\n` (5 bytes): the 32,768 budget is spent within 6,554.
    expect(iterated.reads).toBeLessThanOrEqual(Math.ceil(32768 / 5) + 1);
  });

  it("within the budget (2,600 fields, 1,900 named by Connection) goes on without the nominated ones, the rest as sent", async () => {
    const { edge, reached } = edgeWithInIsolateOrigin();
    const kept = names(700, "k");
    const nominated = names(1900, "c");
    const headers = new Headers({ "x-user-sub": "forged", accept: "*/*" });
    for (const name of [...kept, ...nominated]) headers.set(name, "1");
    headers.set("connection", nominated.join(","));
    const response = await edge.fetch("https://edge.test/public/x", { headers });
    expect(response.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "public" });
    expect(reached).toHaveLength(1);
    const got = reached[0] as Headers;
    for (const name of kept) expect(got.get(name)).toBe("1");
    for (const name of nominated) expect(got.has(name)).toBe(false);
    expect(got.has("connection")).toBe(false);
    expect(got.get("x-user-sub")).toBeNull();
    expect(got.get("accept")).toBe("*/*");
  });
});
