// A controllable identity-provider stand-in for tests, run in Node on loopback: it serves
// OpenID discovery and a JWKS per named issuer, can be told to fail in specific ways, and
// counts every fetch. An "attacker" path counts hits so tests can prove nothing fetched it.
import http from "node:http";

export function startIssuerServer() {
  /** name -> { jwks, mode, delayMs, discoveryFetches, jwksFetches } */
  const issuers = new Map();
  let attackerHits = 0;
  let base = "";

  const issuer = (name) => {
    if (!issuers.has(name))
      issuers.set(name, { jwks: { keys: [] }, mode: "ok", delayMs: 0, discoveryFetches: 0, jwksFetches: 0 });
    return issuers.get(name);
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const send = (status, body, type = "application/json") => {
      res.writeHead(status, { "content-type": type });
      res.end(typeof body === "string" ? body : JSON.stringify(body));
    };
    if (url.pathname.startsWith("/attacker")) {
      attackerHits += 1;
      return send(200, { keys: [] });
    }
    if (url.pathname === "/__control/attacker") return send(200, { hits: attackerHits });
    const control = /^\/__control\/issuers\/([\w-]+)$/.exec(url.pathname);
    if (control) {
      const state = issuer(control[1]);
      if (req.method === "GET") {
        return send(200, {
          discovery_fetches: state.discoveryFetches,
          jwks_fetches: state.jwksFetches,
          mode: state.mode,
        });
      }
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const update = JSON.parse(body || "{}");
        if (update.jwks !== undefined) state.jwks = update.jwks;
        if (update.mode !== undefined) state.mode = update.mode;
        if (update.delayMs !== undefined) state.delayMs = update.delayMs;
        if (update.resetCounters) {
          state.discoveryFetches = 0;
          state.jwksFetches = 0;
        }
        send(200, { ok: true });
      });
      return;
    }
    const served = /^\/([\w-]+)\/(\.well-known\/openid-configuration|jwks|cdn-cgi\/access\/certs)$/.exec(url.pathname);
    if (!served) return send(404, { error: "not_found" });
    const state = issuer(served[1]);
    const isDiscovery = served[2].startsWith(".well-known");
    if (isDiscovery) state.discoveryFetches += 1;
    else state.jwksFetches += 1;
    const answer = () => {
      if (isDiscovery) {
        const iss = `${base}/${served[1]}`;
        return send(200, {
          issuer: iss,
          jwks_uri: `${iss}/jwks`,
          id_token_signing_alg_values_supported: ["ES256", "RS256"],
        });
      }
      switch (state.mode) {
        case "down":
          return req.socket.destroy();
        case "status500":
          return send(500, { error: "boom" });
        case "garbage":
          return send(200, "\u0000\u0001not json at all", "application/octet-stream");
        case "html":
          return send(200, "<html><body>Sign in</body></html>", "text/html");
        case "huge":
          return send(200, { keys: state.jwks.keys, padding: "x".repeat(2_000_000) });
        case "no_keys":
          return send(200, { keys: [] });
        default:
          return send(200, state.jwks);
      }
    };
    if (state.mode === "slow") setTimeout(answer, state.delayMs || 5000);
    else answer();
  });

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      base = `http://127.0.0.1:${address.port}`;
      resolve({ server, base });
    });
  });
}
