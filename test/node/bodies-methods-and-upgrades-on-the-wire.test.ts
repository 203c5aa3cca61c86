// Bodies, methods and upgrades on the wire: raw HTTP/1.1 bytes to the edge as workerd serves
// it (the deployable build of the pipeline, `workerd serve` on loopback), in front of a Node
// origin that records every request it completes (headers as sent, trailer fields, body) and a
// service-binding origin that hands every request under /ws/ a WebSocket. What the runtime takes
// off before the edge sees a request (methods it does not know, trailer fields, a Content-Length
// beside a transfer coding), what it does with a body the edge never reads, and whether any
// upgrade opens a connection past the edge. Each test judges the bytes the client got, what
// the origin received and the audit line the edge printed.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error -- plain JS module: the deployable Worker's build step
import { bundleWorker } from "../../scripts/build-worker.mjs";
import { freePort } from "./e2e/support/edge";

const ROOT = join(import.meta.dirname, "..", "..");
const WORKERD = join(ROOT, "node_modules", ".bin", "workerd");

/** A request the Node origin completed: a torn-down upload never makes one. */
interface Completed {
  method: string;
  url: string;
  /** Names as sent, lower-cased, with their values. */
  headers: [string, string][];
  trailers: string[];
  body: string;
}

interface AuditLine {
  request_id: string;
  method: string;
  decision: string;
  reason: string | null;
  detail: string | null;
  status: number;
  route: string | null;
}

let dir: string;
let workerd: ChildProcess | undefined;
let edgePort: number;
let nodeOrigin: http.Server;
let silentOrigin: net.Server;
const completed: Completed[] = [];
const silentOriginSaw: string[] = [];
const printed: string[] = [];

const listening = (server: net.Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)),
  );

/** A service-binding origin that answers every request under /ws/ with a WebSocket, asked or not. */
const SOCKET_ORIGIN = `export default {
  async fetch(request) {
    if (new URL(request.url).pathname.startsWith("/ws/")) {
      const pair = new WebSocketPair();
      pair[1].accept();
      pair[1].addEventListener("message", (event) => pair[1].send("origin got " + event.data));
      return new Response(null, { status: 101, webSocket: pair[0] });
    }
    return new Response("ok");
  },
};
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "portcullis-wire-"));
  nodeOrigin = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const headers: [string, string][] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        headers.push([(req.rawHeaders[i] as string).toLowerCase(), req.rawHeaders[i + 1] as string]);
      }
      const body = Buffer.concat(chunks).toString("latin1");
      completed.push({ method: req.method ?? "", url: req.url ?? "", headers, trailers: req.rawTrailers, body });
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(req.method === "HEAD" ? undefined : "origin answered");
    });
  });
  // Answers once it has the whole declared body, and never sends 100 Continue.
  silentOrigin = net.createServer((socket) => {
    let got = "";
    socket.on("data", (data) => {
      got += data.toString("latin1");
      const end = got.indexOf("\r\n\r\n");
      const length = /content-length:\s*(\d+)/i.exec(got);
      if (end < 0 || !length || got.length - end - 4 < Number(length[1])) return;
      silentOriginSaw.push(got);
      socket.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    });
    socket.on("error", () => undefined);
  });
  const [nodePort, silentPort] = [await listening(nodeOrigin), await listening(silentOrigin)];
  edgePort = await freePort();

  const policy = {
    version: 1,
    issuers: { idp: { kind: "oidc", issuer: "http://127.0.0.1:9/idp", audiences: ["https://api.test"] } },
    upstreams: {
      node: { url: `http://127.0.0.1:${nodePort}`, timeout_ms: 3000 },
      silent: { url: `http://127.0.0.1:${silentPort}`, timeout_ms: 3000 },
      sockets: { service: "SOCKETS" },
    },
    routes: [
      { name: "v1", methods: ["GET", "POST"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "node" },
      { name: "ws", methods: ["GET"], path: "/ws/**", auth: "public", upstream: "sockets" },
      { name: "silent", methods: ["POST"], path: "/silent/**", auth: "public", upstream: "silent" },
      {
        name: "public",
        methods: ["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        path: "/public/**",
        auth: "public",
        upstream: "node",
      },
    ],
  };
  const entry = join(dir, "edge-entry.ts");
  writeFileSync(
    entry,
    `import { createApp } from ${JSON.stringify(join(ROOT, "src", "app.ts"))};
let app;
export default {
  fetch(request, env, ctx) {
    app ??= createApp(JSON.parse(env.POLICY));
    return app.fetch(request, env, ctx);
  },
};
`,
  );
  await bundleWorker(entry, join(dir, "edge.js"));
  writeFileSync(join(dir, "sockets.js"), SOCKET_ORIGIN);
  const compat = `compatibilityDate = "2026-11-01", compatibilityFlags = ["no_nodejs_global_timers", "enable_request_signal"]`;
  writeFileSync(
    join(dir, "config.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "edge", worker = (modules = [(name = "edge.js", esModule = embed "edge.js")], ${compat},
      bindings = [(name = "POLICY", text = ${JSON.stringify(JSON.stringify(policy))}), (name = "SOCKETS", service = "sockets")])),
    (name = "sockets", worker = (modules = [(name = "sockets.js", esModule = embed "sockets.js")], ${compat})),
    (name = "internet", network = (allow = ["local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${edgePort}", http = (), service = "edge")],
);
`,
  );
  workerd = spawn(WORKERD, ["serve", join(dir, "config.capnp")], { stdio: ["ignore", "pipe", "pipe"] });
  let buffered = "";
  workerd.stdout?.setEncoding("utf8");
  workerd.stdout?.on("data", (data: string) => {
    buffered += data;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    printed.push(...lines);
  });
  workerd.stderr?.resume();
  for (let i = 0; i < 400; i++) {
    try {
      await (await fetch(`http://127.0.0.1:${edgePort}/ready`)).arrayBuffer();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error("workerd did not answer");
}, 120_000);

afterAll(async () => {
  if (workerd && workerd.exitCode === null) {
    const exited = new Promise((resolve) => workerd?.once("exit", resolve));
    workerd.kill("SIGTERM");
    await exited;
  }
  await new Promise((resolve) => nodeOrigin?.close(resolve));
  await new Promise((resolve) => silentOrigin?.close(resolve));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Writes `request` on one connection to the edge, then `later` (if any) once the client has
 * read `after` in the answer, and resolves with every byte the client got once the connection
 * closes or `ms` have passed.
 */
function onTheWire(request: string, options: { later?: Buffer | string; after?: string; ms?: number } = {}) {
  return new Promise<string>((resolve) => {
    const socket = net.connect(edgePort, "127.0.0.1");
    let got = "";
    let laterSent = false;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(finish, options.ms ?? 1500);
    const sendLater = () => {
      if (laterSent || options.later === undefined) return;
      if (options.after !== undefined && !got.includes(options.after)) return;
      laterSent = true;
      socket.write(options.later);
    };
    socket.on("connect", () => {
      socket.write(request);
      if (options.after === undefined) setTimeout(sendLater, 200);
    });
    socket.on("data", (data) => {
      got += data.toString("latin1");
      sendLater();
    });
    socket.on("error", () => undefined);
    socket.on("close", finish);
  });
}

/** The status lines of every answer in what the client got, in order. */
const statusLines = (got: string) => got.match(/^HTTP\/1\.1 \d{3}[^\r\n]*/gm) ?? [];
const requestIdOf = (got: string) => /^x-request-id: (\S+)/im.exec(got)?.[1];
/** The first answer's problem+json (flat: its first `}` ends it). */
const problemOf = (got: string) => JSON.parse(got.slice(got.indexOf("{"), got.indexOf("}") + 1)) as { reason: string };

/** The audit line the edge printed for `requestId`, waiting for it: it is written after the answer. */
async function auditLine(requestId: string | undefined): Promise<AuditLine | undefined> {
  for (let i = 0; i < 40; i++) {
    for (const line of printed) {
      if (!line.startsWith("{")) continue;
      const record = JSON.parse(line) as AuditLine;
      if (record.request_id === requestId) return record;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

/** Audit lines of requests for `path`. */
const auditLinesFor = (path: string) =>
  printed.filter((line) => line.startsWith("{") && (JSON.parse(line) as { path: string }).path === path);

const completedAt = (url: string) => completed.filter((request) => request.url === url);

describe("methods on the wire", () => {
  it.each(["get", "Get", "TRACK"])(
    "%s, which the runtime does not take, is its 501: the edge never sees it, nothing is forwarded",
    async (method) => {
      const path = `/public/method-${method}`;
      const got = await onTheWire(`${method} ${path} HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n`);
      expect(statusLines(got)).toEqual(["HTTP/1.1 501 Not Implemented"]);
      expect(completedAt(path)).toEqual([]);
      expect(auditLinesFor(path)).toEqual([]);
    },
  );

  it("TRACE is 405 method_not_allowed and reflects nothing of the request", async () => {
    const got = await onTheWire(
      "TRACE /public/trace HTTP/1.1\r\nHost: edge.test\r\nCookie: session=s3cret\r\nX-Probe: zq7probe\r\nConnection: close\r\n\r\n",
    );
    expect(statusLines(got)).toEqual(["HTTP/1.1 405 Method Not Allowed"]);
    expect(problemOf(got).reason).toBe("method_not_allowed");
    expect(got).not.toContain("s3cret");
    expect(got).not.toContain("zq7probe");
    expect(completedAt("/public/trace")).toEqual([]);
    expect(await auditLine(requestIdOf(got))).toMatchObject({
      method: "TRACE",
      decision: "deny",
      reason: "method_not_allowed",
    });
  });

  it("CONNECT opens no tunnel: the runtime refuses it before the pipeline, nothing is forwarded", async () => {
    const before = completed.length;
    const printedBefore = printed.length;
    const got = await onTheWire(`CONNECT 127.0.0.1:${edgePort} HTTP/1.1\r\nHost: 127.0.0.1:${edgePort}\r\n\r\n`);
    const [status] = statusLines(got);
    expect(status).toBeDefined();
    expect(status).not.toMatch(/^HTTP\/1\.1 2/);
    expect(completed.length).toBe(before);
    expect(printed.slice(printedBefore).filter((line) => line.startsWith("{"))).toEqual([]);
  });
});

describe("upgrades on the wire", () => {
  it("a WebSocket upgrade to a URL origin reaches it as a plain GET and is answered as one: no 101", async () => {
    const got = await onTheWire(
      "GET /public/socket HTTP/1.1\r\nHost: edge.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      { ms: 1000 },
    );
    expect(statusLines(got)).toEqual(["HTTP/1.1 200 OK"]);
    const [seen] = completedAt("/public/socket");
    expect(seen?.method).toBe("GET");
    const names = seen?.headers.map(([name]) => name);
    expect(names).not.toContain("upgrade");
    expect(names).not.toContain("connection");
    expect(await auditLine(requestIdOf(got))).toMatchObject({ decision: "allow", status: 200 });
  });

  it("an h2c upgrade reaches the origin as a plain request: no 101, no Upgrade or HTTP2-Settings there", async () => {
    const got = await onTheWire(
      "GET /public/h2c HTTP/1.1\r\nHost: edge.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
      { ms: 1000 },
    );
    expect(statusLines(got)).toEqual(["HTTP/1.1 200 OK"]);
    const names = completedAt("/public/h2c")[0]?.headers.map(([name]) => name);
    expect(names).toBeDefined();
    for (const name of ["upgrade", "connection", "http2-settings"]) expect(names).not.toContain(name);
  });

  it("a service-binding origin that hands every request a WebSocket gets no tunnel through: 502 origin_unavailable, never 101", async () => {
    // A masked text frame ("hi"), sent once the answer is in: no socket carries it anywhere.
    const frame = Buffer.from([0x81, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2]);
    const got = await onTheWire(
      "GET /ws/chat HTTP/1.1\r\nHost: edge.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      { later: frame, after: "\r\n\r\n{", ms: 1500 },
    );
    // The frame's bytes, on a connection that never switched, are no request the runtime can read.
    const [first] = statusLines(got);
    expect(first).toBe("HTTP/1.1 502 Bad Gateway");
    expect(got).not.toContain("101 Switching Protocols");
    expect(got).not.toContain("origin got");
    expect(problemOf(got).reason).toBe("origin_unavailable");
    expect(await auditLine(requestIdOf(got))).toMatchObject({
      decision: "deny",
      reason: "origin_unavailable",
      status: 502,
      route: "ws",
    });
  });
});

describe("framing and trailer fields on the wire", () => {
  it("a chunked upload's trailer fields (x-user-sub, authorization) never reach the origin; its body does, whole", async () => {
    const got = await onTheWire(
      "POST /public/trailers HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\nTrailer: x-user-sub, authorization\r\nConnection: close\r\n\r\n" +
        "5\r\nhello\r\n0\r\nx-user-sub: admin\r\nauthorization: Bearer forged\r\n\r\n",
    );
    expect(statusLines(got)).toEqual(["HTTP/1.1 200 OK"]);
    const [seen] = completedAt("/public/trailers");
    expect(seen?.body).toBe("hello");
    expect(seen?.trailers).toEqual([]);
    expect(seen?.headers.map(([name]) => name)).not.toContain("trailer");
    expect(JSON.stringify(seen)).not.toContain("admin");
    expect(JSON.stringify(seen)).not.toContain("forged");
    expect(await auditLine(requestIdOf(got))).toMatchObject({ decision: "allow", status: 200 });
  });

  // README (Upstreams, Errors) says a body framed by both is refused 400 ambiguous_framing. On
  // the wire the runtime frames it by the coding (RFC 9112 §6.3) and takes the length off
  // before the edge sees the request, which then goes on as an ordinary chunked upload: the
  // origin gets exactly the chunked body, no Content-Length beside it to read it otherwise.
  it("Content-Length beside Transfer-Encoding: chunked is framed by the coding before the edge sees it; the origin gets the chunked body alone", async () => {
    const got = await onTheWire(
      "POST /public/framed-twice HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
        "5\r\nhello\r\n0\r\n\r\n",
    );
    expect(statusLines(got)).toEqual(["HTTP/1.1 200 OK"]);
    const [seen] = completedAt("/public/framed-twice");
    expect(seen?.body).toBe("hello");
    expect(seen?.headers.filter(([name]) => name === "content-length" || name === "transfer-encoding")).toEqual([
      ["transfer-encoding", "chunked"],
    ]);
    expect(await auditLine(requestIdOf(got))).toMatchObject({ decision: "allow", reason: null, status: 200 });
  });

  it("a body shorter than its Content-Length whose client hangs up: 499 client_body_aborted, the origin never completes it", async () => {
    await onTheWire("POST /public/short HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 10\r\n\r\nhello", {
      ms: 600,
    });
    let lines: string[] = [];
    for (let i = 0; i < 40 && lines.length === 0; i++) {
      lines = auditLinesFor("/public/short");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(lines.map((line) => JSON.parse(line) as AuditLine)).toMatchObject([
      { decision: "deny", reason: "client_closed", detail: "client_body_aborted", status: 499 },
    ]);
    expect(completedAt("/public/short")).toEqual([]);
  });
});

describe("a body the edge never reads", () => {
  // Each body is itself a request for a public path: read as the next request on the
  // connection, it would reach the origin past the refusal.
  const smuggled = (path: string) => `GET ${path} HTTP/1.1\r\nHost: edge.test\r\nX-Pad: 123\r\n\r\n`;

  it.each([
    ["401 token_missing", "/v1/orders", "Content-Length", 401, "token_missing"],
    ["401 token_missing", "/v1/orders", "chunked", 401, "token_missing"],
    ["404 route_not_found", "/nowhere", "Content-Length", 404, "route_not_found"],
  ] as const)(
    "after %s (%s, %s) is drained, never read as a next request on the connection",
    async (_, path, framing, status, reason) => {
      const inner = `/public/smuggled-${status}-${framing.length}`;
      const body = smuggled(inner);
      const framed =
        framing === "chunked"
          ? `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
          : `Content-Length: ${body.length}\r\n\r\n${body}`;
      const got = await onTheWire(`POST ${path} HTTP/1.1\r\nHost: edge.test\r\n${framed}`, { ms: 1000 });
      expect(statusLines(got)).toHaveLength(1);
      expect(statusLines(got)[0]).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(problemOf(got).reason).toBe(reason);
      expect(completedAt(inner)).toEqual([]);
      expect(auditLinesFor(inner)).toEqual([]);
      expect(await auditLine(requestIdOf(got))).toMatchObject({ decision: "deny", reason, status });
    },
  );

  it("Expect: 100-continue on a protected route without a token: 401 at once, no 100 Continue, nothing forwarded", async () => {
    const got = await onTheWire(
      "POST /v1/upload HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
      { ms: 800 },
    );
    expect(statusLines(got)).toEqual(["HTTP/1.1 401 Unauthorized"]);
    expect(problemOf(got).reason).toBe("token_missing");
    expect(completedAt("/v1/upload")).toEqual([]);
    expect(await auditLine(requestIdOf(got))).toMatchObject({ decision: "deny", reason: "token_missing" });
  });
});

describe("Expect: 100-continue to an origin that never sends 100 Continue", () => {
  it("the client is told to go on, the origin gets the whole body with the expectation, and its answer comes back", async () => {
    const got = await onTheWire(
      "POST /silent/upload HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
      { later: "hello", after: "100 Continue", ms: 3000 },
    );
    expect(statusLines(got)).toEqual(["HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"]);
    expect(got.endsWith("ok")).toBe(true);
    const seen = silentOriginSaw.find((request) => request.startsWith("POST /silent/upload "));
    expect(seen?.endsWith("\r\n\r\nhello")).toBe(true);
    expect(await auditLine(requestIdOf(got))).toMatchObject({ decision: "allow", status: 200, route: "silent" });
  });
});
