// Whole requests at three edges of what the edge decides: a header block of many fields at its
// bound, a Connection field that nominates fields in every spelling, and an origin's redirect
// naming the upstream's host with its trailing dot. Each test asserts the answer, the audit
// record and what reached the origin.
import { describe, expect, it } from "vitest";
import { basePolicy, echoOrigin, harness } from "../support/harness";
import { edgeWithInIsolateOrigin } from "../support/in-isolate-origin";
import { sendMarked } from "../support/sent";

/** `name: value\r\n` per field, as the edge counts a header block. */
function blockBytes(headers: Headers): number {
  let bytes = 0;
  for (const [name, value] of headers) bytes += name.length + value.length + 4;
  return bytes;
}

describe("a header block of many fields at max_header_bytes", () => {
  // 300 fields and a last one padded so the block is exactly 8,192 bytes: the bound is met only
  // with the last field counted, so a count that stopped early or late would decide otherwise.
  const request = (extra: number) => {
    const headers = new Headers();
    for (let i = 0; i < 300; i++) headers.set(`h${i.toString(36)}`, "v");
    headers.set("zz-last", "");
    const padding = 8192 - blockBytes(headers) + extra;
    headers.set("zz-last", "p".repeat(padding));
    return new Request("https://edge.test/public/x", { headers });
  };

  it("of exactly 8,192 bytes is served with every field", async () => {
    const { edge, reached } = edgeWithInIsolateOrigin({ max_header_bytes: 8192 });
    const at = request(0);
    expect(blockBytes(at.headers)).toBe(8192);
    const response = await edge.fetch(at);
    expect(response.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "public", status: 200 });
    expect(reached).toHaveLength(1);
    expect(reached[0]?.get("h0")).toBe("v");
    expect(reached[0]?.get("h8b")).toBe("v");
    expect(reached[0]?.get("zz-last")).toBe(at.headers.get("zz-last"));
  });

  it("one byte more, in its last field, is refused headers_too_large and reaches no origin", async () => {
    const { edge, reached } = edgeWithInIsolateOrigin({ max_header_bytes: 8192 });
    const over = request(1);
    expect(blockBytes(over.headers)).toBe(8193);
    const response = await edge.fetch(over);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { reason: string }).reason).toBe("bad_request");
    expect(edge.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "bad_request",
      detail: "headers_too_large",
      path: "/public/x",
    });
    expect(reached).toHaveLength(0);
  });
});

describe("a Connection field nominating fields in every spelling", () => {
  it("strips each nominated field, in each spelling an origin reads alike, however often and however cased it is named, and passes the rest as sent", async () => {
    const { edge, reached } = edgeWithInIsolateOrigin();
    const headers = new Headers({
      "x-a": "1",
      x_a: "2",
      "x.b": "3",
      "x-b": "4",
      "x-kept": "5",
      accept: "*/*",
      connection: "X-A, x-a,, ,\tX_B , keep-alive, x-a,TE",
    });
    const response = await edge.fetch("https://edge.test/public/x", { headers });
    expect(response.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "public", status: 200 });
    expect(reached).toHaveLength(1);
    const got = Object.fromEntries(reached[0] as Headers);
    for (const name of ["x-a", "x_a", "x.b", "x-b", "connection", "keep-alive", "te"])
      expect(got).not.toHaveProperty(name);
    expect(got["x-kept"]).toBe("5");
    expect(got.accept).toBe("*/*");
  });
});

describe("an origin's redirect naming the upstream's host with a trailing dot", () => {
  // `localhost.` is `localhost` to DNS: the client is sent to the upstream past the edge, and
  // learns its address, as with the host written without the dot.
  const upstream = echoOrigin.replace("127.0.0.1", "localhost");

  it("is sent as the edge's own URL, the origin asked once", async () => {
    const edge = harness(
      basePolicy({
        upstreams: { echo: { url: upstream, timeout_ms: 2000 } },
        routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" }],
      }),
    );
    const dotted = upstream.replace("localhost", "localhost.");
    const { response, seen, record } = await sendMarked(edge, "/public/docs", {
      headers: { "x-echo-redirect": `${dotted}/public/docs/?from=dir` },
    });
    expect(response.status).toBe(302);
    expect(record).toMatchObject({ decision: "allow", route: "public", status: 302, reason: null });
    expect(seen.map((s) => s.path)).toEqual(["/public/docs"]);
    const location = response.headers.get("location") ?? "";
    expect(location).not.toContain("localhost");
    expect(new URL(location, "https://edge.test/public/docs").href).toBe("https://edge.test/public/docs/?from=dir");
  });
});
