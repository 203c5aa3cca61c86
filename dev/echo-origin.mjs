// Echo origin: answers every request with JSON {method, path, query, headers}, so a user
// (or a test) sees exactly what reached the origin. Loopback only.
//
// Test hooks (never routed through the edge in the demo policy):
//   x-echo-delay-ms: N      wait N ms before answering (origin-timeout tests)
//   x-echo-stream-ms: N     send the headers and half the body at once, the rest N ms later
//   x-echo-redirect: L      answer a redirect to L (status x-echo-redirect-status, default 302)
//                           unless the request is already for L's path, so a client that
//                           follows it lands on an ordinary echo (a second recorded request)
//   GET /__echo/requests?marker=M   requests seen whose x-test-marker header was M
import http from "node:http";
import { ORIGIN_PORT } from "./local-stack.mjs";
import { isMainModule } from "./main-module.mjs";
import { closeServer, listen } from "./server-lifecycle.mjs";

const MAX_LOG = 5000;

export async function startEchoOrigin({ port = ORIGIN_PORT, host = "127.0.0.1" } = {}) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://origin.invalid");
    if (url.pathname === "/__echo/requests") {
      const marker = url.searchParams.get("marker");
      const matches = seen.filter((entry) => marker !== null && entry.headers["x-test-marker"] === marker);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(matches));
      return;
    }
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size <= 1 << 20) chunks.push(chunk);
    });
    req.on("error", () => res.destroy());
    req.on("end", () => {
      // From the raw headers: Node's parsed ones keep only the first of a repeated
      // Authorization, Host or User-Agent. Repeats are joined as HTTP joins them (Cookie with "; ").
      const headers = Object.create(null);
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i].toLowerCase();
        const value = req.rawHeaders[i + 1];
        headers[name] = name in headers ? `${headers[name]}${name === "cookie" ? "; " : ", "}${value}` : value;
      }
      const record = {
        method: req.method,
        path: url.pathname,
        query: url.search.replace(/^\?/, ""),
        headers,
        body_bytes: size,
      };
      // The raw request target, before any URL parsing, proves exactly which path arrived.
      record.raw_target = req.url;
      seen.push(record);
      if (seen.length > MAX_LOG) seen.shift();
      const redirectTo = headers["x-echo-redirect"];
      if (redirectTo !== undefined && new URL(redirectTo, "http://origin.invalid").pathname !== url.pathname) {
        const asked = Number(headers["x-echo-redirect-status"] ?? 302);
        const status = [301, 302, 303, 307, 308].includes(asked) ? asked : 302;
        res.writeHead(status, { location: redirectTo, "x-echo": "1" });
        res.end();
        return;
      }
      const delay = Number(headers["x-echo-delay-ms"] ?? 0);
      const streamGap = Math.min(Number(headers["x-echo-stream-ms"] ?? 0), 30_000);
      if (streamGap > 0) {
        const text = JSON.stringify(record);
        const half = Math.floor(text.length / 2);
        res.writeHead(200, { "content-type": "application/json", "x-echo": "1" });
        res.write(text.slice(0, half));
        setTimeout(() => res.destroyed || res.end(text.slice(half)), streamGap);
        return;
      }
      const reply = () => {
        if (res.destroyed) return;
        res.writeHead(200, { "content-type": "application/json", "x-echo": "1" });
        res.end(req.method === "HEAD" ? undefined : JSON.stringify(record));
      };
      if (delay > 0) setTimeout(reply, Math.min(delay, 30_000));
      else reply();
    });
  });
  const boundPort = await listen(server, { port, host });
  return { server, port: boundPort, seen, close: () => closeServer(server) };
}

if (isMainModule(import.meta.url)) {
  const { port } = await startEchoOrigin({ port: Number(process.env.PORT ?? ORIGIN_PORT) });
  console.log(`echo origin on http://127.0.0.1:${port}`);
}
