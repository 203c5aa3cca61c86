// The two loopback servers next to the Workers under test: the origin (forward mode's
// destination: a small fixed JSON answer, so the origin costs as little as possible) and
// the issuer's JWKS endpoint. Both count what they serve; the harness reads the counters
// around every measured window.
import http from "node:http";
import { closeServer, listen } from "../../dev/server-lifecycle.mjs";

export const ORIGIN_BODY = '{"ok":true}';

export async function startOrigin() {
  const counts = { requests: 0 };
  const server = http.createServer((req, res) => {
    counts.requests += 1;
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": ORIGIN_BODY.length });
      res.end(ORIGIN_BODY);
    });
  });
  server.keepAliveTimeout = 60_000;
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, counts, close: () => closeServer(server) };
}

/** Serves `jwks` at /jwks.json (and an OpenID discovery document pointing to it). */
export async function startJwksServer(jwks, issuer) {
  const counts = { jwks: 0, discovery: 0 };
  const body = JSON.stringify(jwks);
  let url = "";
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/jwks.json") {
      counts.jwks += 1;
      res.writeHead(200, { "content-type": "application/json", "cache-control": "public, max-age=600" });
      res.end(body);
      return;
    }
    if (path === "/.well-known/openid-configuration") {
      counts.discovery += 1;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ issuer, jwks_uri: `${url}/jwks.json` }));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  server.keepAliveTimeout = 60_000;
  const port = await listen(server);
  url = `http://127.0.0.1:${port}`;
  return { url, jwksUri: `${url}/jwks.json`, counts, close: () => closeServer(server) };
}
