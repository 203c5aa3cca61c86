// Uploads and origins for the tests of how a forwarded request ends: a request whose body
// streams as its client sends it, bodies sent part by part as the edge reads on, an upload whose
// client the test makes hang up, and the edges those tests forward through (an origin the test
// holds, one that answers at once without reading). The pipeline's forward and upload test files
// had each written their own copies of these.
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { AuditRecord } from "../../src/core/audit";
import { basePolicy, type Harness, harness, unhandledDuring } from "./harness";
import { largeBody } from "./large-body";
import { held } from "./waiting";

const issuerServer = (env as unknown as { ISSUER_SERVER: string }).ISSUER_SERVER;

/**
 * A request to the edge at `path` whose body streams as its client sends it (`duplex: "half"`,
 * which a stream body needs): a POST unless `init` names another method.
 */
export function streamedRequest(
  path: string,
  body: ReadableStream<Uint8Array>,
  init: Omit<RequestInit, "body" | "duplex"> = {},
): Request {
  return new Request(`https://edge.test${path}`, { method: "POST", ...init, body, duplex: "half" } as RequestInit);
}

/** A body sent in these parts, each only when the edge reads on (no read-ahead). */
export function bodyOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const part = parts[i++];
        if (part) controller.enqueue(part);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
}

/** `count` parts of 1,000 zero bytes, for `bodyOf`. */
export const thousandByteParts = (count: number): Uint8Array[] =>
  Array.from({ length: count }, () => new Uint8Array(1000));

/**
 * An edge whose one route, `/up/**` (POST, route `up`), forwards within 5 s to `binding`, the
 * service binding `HELD_ORIGIN`: a `heldOrigin`'s, which tells how the origin's request ended.
 */
export function heldOriginEdge(binding: unknown): Harness {
  return harness(
    basePolicy({
      upstreams: { held: { service: "HELD_ORIGIN", timeout_ms: 5000 } },
      routes: [{ name: "up", methods: ["POST"], path: "/up/**", auth: "public", upstream: "held" }],
    }),
    {},
    { HELD_ORIGIN: binding },
  );
}

/**
 * A POST to `path` from a client the test can make hang up (`client`): its body starts with
 * `first`, sent at once, and goes on as the test feeds it (`feed`). `firstPartTaken` settles
 * when the edge asks for more than that first part (the queue holds one part at most, so it has
 * taken it); `answered` settles however the request ends, a client's hang-up included.
 */
export function uploadFromClient(edge: Harness, path: string, first: string, headers: Record<string, string> = {}) {
  const client = new AbortController();
  const firstPartTaken = held<void>();
  let feed!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      feed = controller;
      controller.enqueue(new TextEncoder().encode(first));
    },
    pull() {
      firstPartTaken.resolve();
    },
  });
  const answered = edge.fetch(streamedRequest(path, body, { signal: client.signal, headers }));
  return {
    client,
    feed,
    firstPartTaken: firstPartTaken.promise,
    answered: answered.catch(() => undefined),
  };
}

/**
 * An edge whose route `/no-such/**` (POST, route `early`) forwards within 300 ms to the issuer
 * server, which answers 404 at once to a path it does not serve, reading none of the body.
 */
export function earlyAnsweringEdge(): Harness {
  return harness(
    basePolicy({
      upstreams: { early: { url: issuerServer, timeout_ms: 300 } },
      routes: [{ name: "early", methods: ["POST"], path: "/no-such/**", auth: "public", upstream: "early" }],
    }),
  );
}

/**
 * An 8 MiB upload, of declared length or chunked, to an origin that answers 404 at once
 * without reading it (`earlyAnsweringEdge`): the answer is passed on at once, the rest of the
 * upload given up (the origin, having answered, closes its end), nothing left unhandled. The one
 * audit record it wrote, for the test to judge.
 */
export async function largeUploadAnsweredUnread(framing: "length" | "chunked"): Promise<AuditRecord | undefined> {
  const edge = earlyAnsweringEdge();
  const total = 8 << 20;
  const { body, givenUp, sent } = largeBody(total);
  const headers: Record<string, string> = framing === "length" ? { "content-length": String(total) } : {};
  const unhandled = await unhandledDuring(async () => {
    const answered = await edge.fetch(streamedRequest("/no-such/upload", body, { headers }));
    expect(answered.status).toBe(404);
    expect(await answered.json()).toEqual({ error: "not_found" });
    await givenUp;
  });
  expect(unhandled).toEqual([]);
  expect(sent()).toBeLessThan(total);
  expect(edge.audit).toHaveLength(1);
  return edge.audit[0];
}

/**
 * How an origin's read of the whole upload ends: `clean end after N` bytes, or `error` when the
 * body broke off (a clean end of a cut upload would pass it off as whole).
 */
export async function readToEnd(upload: ReadableStream<Uint8Array>): Promise<string> {
  let bytes = 0;
  try {
    const reader = upload.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
    }
    return `clean end after ${bytes}`;
  } catch {
    return "error";
  }
}
