// The origin's answer as a client receives it on the wire, through the edge in workerd
// (`wrangler dev`): an origin that answers in shapes the echo origin cannot (a coded body, a
// part of one, a stream it holds open, `Link` fields) is a real Node server here, and the
// client is Node's `http.request`, which decodes nothing, so the bytes and framing asserted
// are the ones on the wire.
import http from "node:http";
import zlib from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Edge, startEdge } from "./support/edge";

const TEXT = Buffer.from("portcullis ".repeat(400));
const GZIPPED = zlib.gzipSync(TEXT);

/** What the origin was asked, by path, for the answer's effects to be checked against. */
const seen: { method: string; path: string; range?: string }[] = [];
/** Set by the streaming test: the origin holds its event stream open until this resolves. */
let holdStream: Promise<void> = Promise.resolve();

type Shape = (req: http.IncomingMessage, res: http.ServerResponse) => void;

const shapes: Record<string, Shape> = {
  "/public/gzipped": (_req, res) => {
    res.writeHead(200, {
      "content-type": "text/plain",
      "content-encoding": "gzip",
      "content-length": GZIPPED.length,
      etag: '"v1"',
    });
    res.end(GZIPPED);
  },
  // Range counts the bytes of the coded representation (RFC 9110 §14.1.2): a part of a gzip
  // stream is no gzip stream a decoder could read on its own.
  "/public/gzipped-part": (_req, res) => {
    res.writeHead(206, {
      "content-type": "text/plain",
      "content-encoding": "gzip",
      "content-length": 20,
      "content-range": `bytes 0-19/${GZIPPED.length}`,
    });
    res.end(GZIPPED.subarray(0, 20));
  },
  "/public/sized": (req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": TEXT.length });
    res.end(req.method === "HEAD" ? undefined : TEXT);
  },
  "/public/events": (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write("data: first\n\n");
    holdStream.then(() => res.end("data: last\n\n"));
  },
  // Paginated API answers as GitHub's and RFC 8288's: absolute URLs written from the Host the
  // origin was sent, as Django's build_absolute_uri, Express without `trust proxy` and Spring
  // without a forwarded-header filter write them.
  "/public/items": (req, res) => {
    const self = `http://${req.headers.host}`;
    res.writeHead(200, {
      "content-type": "application/json",
      link: `<${self}/public/items?page=2>; rel="next", <${self}/public/items?page=9>; rel="last"`,
      "content-location": `${self}/public/items?page=1`,
    });
    res.end("[]");
  },
};

let origin: http.Server;
let originUrl = "";
let edge: Edge;

beforeAll(async () => {
  origin = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://origin.invalid").pathname;
    const range = req.headers.range;
    seen.push({ method: req.method ?? "", path, ...(range ? { range } : {}) });
    const shape = shapes[path];
    if (shape) shape(req, res);
    else res.end("ready");
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", () => resolve()));
  originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
  edge = await startEdge({
    policy: {
      version: 1,
      upstreams: { origin: { url: originUrl, timeout_ms: 5000 } },
      routes: [{ name: "public", methods: ["GET", "HEAD"], path: "/public/**", auth: "public", upstream: "origin" }],
    },
    probePath: "/public/ready",
  });
}, 120_000);

afterAll(async () => {
  await edge?.stop();
  origin?.closeAllConnections();
  await new Promise<void>((resolve) => origin?.close(() => resolve()));
}, 30_000);

interface WireAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** One request on its own connection; the body as its bytes arrived, decoded by nobody. */
function onTheWire(path: string, method = "GET", headers: Record<string, string> = {}): Promise<WireAnswer> {
  return new Promise((resolve, reject) => {
    const request = http.request(`${edge.url}${path}`, { method, headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", reject);
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          rawHeaders: response.rawHeaders,
          body: Buffer.concat(chunks),
        }),
      );
    });
    request.on("error", reject);
    request.end();
  });
}

describe("a coded answer", () => {
  it("a gzip answer reaches the client as the origin's bytes, its Content-Length theirs, still labelled gzip", async () => {
    const before = seen.length;
    const answer = await onTheWire("/public/gzipped", "GET", { "accept-encoding": "gzip" });
    expect(seen.slice(before)).toEqual([{ method: "GET", path: "/public/gzipped" }]);
    expect(answer.status).toBe(200);
    expect(answer.headers["content-encoding"]).toBe("gzip");
    expect(answer.headers["content-length"]).toBe(String(GZIPPED.length));
    expect(answer.headers.etag).toBe('"v1"');
    expect(answer.body.equals(GZIPPED)).toBe(true);
    // The client decodes exactly what the origin meant.
    expect(zlib.gunzipSync(answer.body).equals(TEXT)).toBe(true);
  });

  it("a 206 part of a gzip representation goes on undecoded, with its Content-Range and length", async () => {
    const before = seen.length;
    const answer = await onTheWire("/public/gzipped-part", "GET", {
      "accept-encoding": "gzip",
      range: "bytes=0-19",
    });
    // The origin was asked for the part: the 206 is its answer to the client's Range.
    expect(seen.slice(before)).toEqual([{ method: "GET", path: "/public/gzipped-part", range: "bytes=0-19" }]);
    expect(answer.status).toBe(206);
    expect(answer.headers["content-range"]).toBe(`bytes 0-19/${GZIPPED.length}`);
    expect(answer.headers["content-encoding"]).toBe("gzip");
    expect(answer.headers["content-length"]).toBe("20");
    expect(answer.body.equals(GZIPPED.subarray(0, 20))).toBe(true);
  });
});

describe("an answer without a body", () => {
  it("HEAD reaches the origin as HEAD, and its answer keeps the Content-Length of the GET, with no body", async () => {
    const before = seen.length;
    const answer = await onTheWire("/public/sized", "HEAD");
    expect(answer.status).toBe(200);
    expect(answer.headers["content-length"]).toBe(String(TEXT.length));
    expect(answer.body.length).toBe(0);
    expect(seen.slice(before)).toEqual([{ method: "HEAD", path: "/public/sized" }]);
  });
});

describe("a stream the origin holds open", () => {
  it("an event stream's first event reaches the client while the origin has not ended it", async () => {
    let release: () => void = () => {};
    holdStream = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const chunks: string[] = [];
      let contentType: string | undefined;
      const ended = new Promise<void>((resolve, reject) => {
        const request = http.get(`${edge.url}/public/events`, { agent: false }, (response) => {
          contentType = response.headers["content-type"];
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => {
            chunks.push(chunk);
            // The origin ends its stream only once the client has the first event: an edge
            // that held the answer back until the end would never get here.
            if (chunks.join("").includes("data: first\n\n")) release();
          });
          response.on("end", () => resolve());
          response.on("error", reject);
        });
        request.on("error", reject);
      });
      await ended;
      expect(contentType).toBe("text/event-stream");
      expect(chunks.join("")).toBe("data: first\n\ndata: last\n\n");
    } finally {
      release();
    }
  });
});

describe("a Link field naming the upstream", () => {
  // An origin that writes absolute URLs from the `Host` it was sent names the private upstream
  // in its RFC 8288 `Link` fields as in its Location (GitHub-style pagination, `rel="next"`, as
  // Django's drf-link-header-pagination builds it with build_absolute_uri, or Express's
  // req.hostname without `trust proxy`; `rel=preload`). Octokit-style paginators follow
  // `rel="next"` with the caller's own `Authorization`: passed on as written, the next page's
  // request, bearer token and all, would go straight to the upstream past the edge's checks,
  // and every client would learn the upstream's address.
  it("a paginated answer's next and last links name the edge, as its Content-Location does", async () => {
    const before = seen.length;
    const answer = await onTheWire("/public/items?page=1");
    expect(seen.slice(before)).toEqual([{ method: "GET", path: "/public/items" }]);
    expect(answer.status).toBe(200);
    expect(answer.headers["content-location"]).toBe(`${edge.url}/public/items?page=1`);
    // Each link target made the edge's URL for the same path and query.
    expect(answer.headers.link).toBe(
      `<${edge.url}/public/items?page=2>; rel="next", <${edge.url}/public/items?page=9>; rel="last"`,
    );
    expect(answer.headers.link).not.toContain(originUrl);
  });
});
