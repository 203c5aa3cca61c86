// Development identity provider for the local stack: OpenID discovery and a JWKS for the
// "demo" issuer, and a Cloudflare Access-style certs endpoint for the "access" issuer.
// It publishes public keys only; tokens are minted by `npm run token` with the same keys.
// Loopback only, for development; nothing here is fit to vouch for real users.
//
//   GET /.well-known/openid-configuration   discovery document (issuer has no trailing slash)
//   GET /jwks                               the ES256 key that signs OIDC tokens
//   GET /access/cdn-cgi/access/certs        the RS256 key that signs Access assertions
//   GET /__idp/stats                        how often each document was fetched (tests use
//                                           this to prove the edge caches key sets)
import http from "node:http";
import { loadPrivateJwks, publicJwk } from "./keys.mjs";
import { IDP_PORT } from "./local-stack.mjs";
import { isMainModule } from "./main-module.mjs";
import { closeServer, listen } from "./server-lifecycle.mjs";

export async function startIdp({ port = IDP_PORT, host = "127.0.0.1", keysFile } = {}) {
  const jwks = await loadPrivateJwks({
    file: keysFile,
    onCreate: (file) => console.error(`idp: generated development signing keys in ${file}`),
  });
  const oidcKey = publicJwk(jwks.oidc);
  const accessKey = publicJwk(jwks.access);
  const stats = { jwks_fetches: 0, access_certs_fetches: 0, discovery_fetches: 0 };
  // Filled in once the port is known (port 0 picks a free one).
  let issuer = "";

  const documents = {
    "/.well-known/openid-configuration": () => {
      stats.discovery_fetches += 1;
      return {
        issuer,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ["code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: [oidcKey.alg],
        claims_supported: ["sub", "iss", "aud", "exp", "iat", "nbf", "jti", "scope", "tenant_id", "groups", "email"],
      };
    },
    "/jwks": () => {
      stats.jwks_fetches += 1;
      return { keys: [oidcKey] };
    },
    // Cloudflare Access's shape: `keys` is the JWKS; `public_cert(s)` name the same keys
    // (Access adds a PEM certificate there, which verifiers do not need).
    "/access/cdn-cgi/access/certs": () => {
      stats.access_certs_fetches += 1;
      return { keys: [accessKey], public_cert: { kid: accessKey.kid }, public_certs: [{ kid: accessKey.kid }] };
    },
    "/__idp/stats": () => ({ ...stats }),
  };

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://idp.invalid").pathname;
    const document = documents[path];
    const send = (status, body, headers = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(req.method === "HEAD" ? undefined : JSON.stringify(body));
    };
    if (!document) return send(404, { error: "not_found" });
    if (req.method !== "GET" && req.method !== "HEAD") {
      return send(405, { error: "method_not_allowed" }, { allow: "GET, HEAD" });
    }
    send(200, document());
  });

  const boundPort = await listen(server, { port, host });
  issuer = `http://127.0.0.1:${boundPort}`;
  return {
    server,
    port: boundPort,
    issuer,
    stats,
    close: () => closeServer(server),
  };
}

if (isMainModule(import.meta.url)) {
  const { issuer } = await startIdp({ port: Number(process.env.PORT ?? IDP_PORT) });
  console.log(`development identity provider on ${issuer}`);
}
