// A reverse proxy in front of the OpenID provider, between it and the edge, that can be
// switched into the ways a key-set endpoint fails in practice: down (connection refused),
// slow, garbage, an HTML login page, an oversized body, an error status, or a key set that
// lags behind the signing key (a cache or CDN serving yesterday's JWKS). The provider's
// issuer is the proxy's URL, so discovery points the edge at the proxy's /jwks; clients get
// their tokens from the provider directly, so faults only hit what the edge fetches.
import http from "node:http";
import type { Socket } from "node:net";

export type JwksFault =
  | { mode: "pass" }
  | { mode: "slow"; delayMs: number }
  | { mode: "garbage" }
  | { mode: "html" }
  /** The real key set padded to `bytes`, sent chunked. */
  | { mode: "oversized"; bytes: number }
  | { mode: "status"; status: number }
  /** The provider's key set without one key: a JWKS that lags behind the signing key. */
  | { mode: "without_kid"; kid: string };

export interface FaultProxy {
  url: string;
  /** Requests that reached the proxy, by document. */
  stats: { discovery: number; jwks: number };
  setTarget(url: string): void;
  setJwksFault(fault: JwksFault): void;
  /** Stops listening and drops open connections: the endpoint refuses connections. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startFaultProxy(): Promise<FaultProxy> {
  let target = "";
  let fault: JwksFault = { mode: "pass" };
  const stats = { discovery: 0, jwks: 0 };
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const forward = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const upstream = http.request(
      `${target}${req.url ?? "/"}`,
      // The Host header is kept: the provider builds its discovery URLs (jwks_uri) from it,
      // so they keep pointing at the proxy.
      { method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  };

  /** The provider's JWKS, fetched through, minus one key. */
  const withoutKid = async (res: http.ServerResponse, kid: string) => {
    const answer = await fetch(`${target}/jwks`, { signal: AbortSignal.timeout(5000) });
    const jwks = (await answer.json()) as { keys: { kid?: string }[] };
    const body = JSON.stringify({ keys: jwks.keys.filter((key) => key.kid !== kid) });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  };

  /**
   * The provider's real key set, padded past any sane size and sent chunked with no
   * content-length to refuse it by: an edge that read it whole would find the keys in it.
   */
  const oversized = async (res: http.ServerResponse, bytes: number) => {
    const answer = await fetch(`${target}/jwks`, { signal: AbortSignal.timeout(5000) });
    const jwks = (await answer.json()) as { keys: unknown[] };
    res.writeHead(200, { "content-type": "application/json" });
    res.write(`{"keys":${JSON.stringify(jwks.keys)},"padding":"`);
    const chunk = "x".repeat(16 * 1024);
    for (let sent = 0; sent < bytes; sent += chunk.length) res.write(chunk);
    res.end('"}');
  };

  const serveJwks = (req: http.IncomingMessage, res: http.ServerResponse) => {
    switch (fault.mode) {
      case "pass":
        return forward(req, res);
      case "slow": {
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!res.destroyed) forward(req, res);
        }, fault.delayMs);
        timers.add(timer);
        return;
      }
      case "garbage":
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(Buffer.from([0x00, 0xff, 0x7b, 0x22, 0x6b, 0x65, 0x79, 0x73, 0x22, 0x3a, 0x5b, 0x01, 0x02]));
      case "html":
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        return res.end("<!doctype html><html><body><form action=/login>Sign in</form></body></html>");
      case "oversized":
        return void oversized(res, fault.bytes).catch(() => res.destroy());
      case "status":
        res.writeHead(fault.status, { "content-type": "application/json" });
        return res.end('{"error":"unavailable"}');
      case "without_kid":
        return void withoutKid(res, fault.kid).catch(() => res.destroy());
    }
  };

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://proxy.invalid").pathname;
    if (path === "/jwks") {
      stats.jwks += 1;
      return serveJwks(req, res);
    }
    if (path === "/.well-known/openid-configuration") stats.discovery += 1;
    forward(req, res);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    });

  await listen(0);
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    setTarget: (url) => {
      target = url;
    },
    setJwksFault: (next) => {
      fault = next;
    },
    down: stopListening,
    up: () => listen(port),
    close: stopListening,
  };
}
