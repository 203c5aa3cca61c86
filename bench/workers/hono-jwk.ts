// Variants 2 and 3: what a user would pick instead of Portcullis, Hono's own `jwk`
// middleware, configured with inline keys (variant 2) or with the issuer's `jwks_uri`
// (variant 3). Same issuer, audience, algorithms and upstreams as every other variant.
import { Hono } from "hono";
import { jwk } from "hono/jwk";
import { benchResponse, countRequest, isBenchRequest } from "./counters";

type Algorithm = "ES256" | "RS256" | "EdDSA";

interface Env {
  RESPONDER: Fetcher;
  ORIGIN_URL: string;
  /** `inline` (keys in the configuration) or `uri` (fetched from JWKS_URI). */
  HONO_KEYS: "inline" | "uri";
  JWKS: { keys: JsonWebKey[] };
  JWKS_URI: string;
  ISSUER: string;
  AUDIENCE: string;
  [binding: string]: unknown;
}

function build(env: Env): Hono<{ Bindings: Env }> {
  const alg: Algorithm[] = ["ES256", "RS256", "EdDSA"];
  const verification = { iss: env.ISSUER, aud: env.AUDIENCE };
  const app = new Hono<{ Bindings: Env }>();
  app.use(
    env.HONO_KEYS === "uri"
      ? jwk({ jwks_uri: env.JWKS_URI, alg, verification })
      : jwk({ keys: env.JWKS.keys as never, alg, verification }),
  );
  app.all("/direct/*", (c) => c.env.RESPONDER.fetch(c.req.raw));
  app.all("/forward/*", (c) => {
    const url = new URL(c.req.url);
    return fetch(new Request(`${c.env.ORIGIN_URL}${url.pathname}${url.search}`, c.req.raw));
  });
  return app;
}

let app: Hono<{ Bindings: Env }> | undefined;

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response> {
    if (isBenchRequest(request)) return benchResponse(request, env);
    countRequest();
    app ??= build(env);
    return app.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
