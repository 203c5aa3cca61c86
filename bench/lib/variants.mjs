// What is measured: the Workers (variants), the benchmark policies the Portcullis variants
// run, and the cells (variant × token workload) that make up one round.
import { ALGORITHMS, AUDIENCE, ISSUER } from "./keys.mjs";

/** Very large limits: the full pipeline does all its rate-limit work but never refuses. */
const HUGE = 1_000_000_000;

/**
 * The benchmark policy. Two routes, one per mode: /direct/** goes to the in-process
 * responder through a service binding, /forward/** to the loopback origin.
 *   jwt   one issuer, token verification only: no scope or group rules, no limits
 *   full  the same plus authorisation (scope and group) and the shipped policy's default
 *         limits (tenant and user: one Durable Object call), sized so nothing is ever refused
 */
export function benchPolicy({ kind, jwksUri, originUrl }) {
  const full = kind === "full";
  const auth = full
    ? { issuers: ["bench"], scopes: { all_of: ["api:read"] }, groups: { any_of: ["bench-readers"] } }
    : { issuers: ["bench"] };
  const route = (name, upstream) => ({ name, methods: ["GET"], path: `/${name}/**`, auth, upstream });
  return {
    version: 1,
    settings: { realm: "portcullis-bench", server_timing: false },
    issuers: {
      bench: {
        kind: "oidc",
        issuer: ISSUER,
        jwks_uri: jwksUri,
        audiences: [AUDIENCE],
        algorithms: ALGORITHMS,
        claims: { tenant: "tenant_id", groups: "groups" },
      },
    },
    upstreams: {
      responder: { service: "RESPONDER" },
      origin: { url: originUrl },
    },
    ...(full
      ? {
          limits: {
            defaults: [
              { name: "tenant-per-minute", key: "tenant", limit: HUGE, window_s: 60 },
              { name: "user-per-minute", key: "user", limit: HUGE, window_s: 60 },
            ],
          },
        }
      : {}),
    routes: [route("direct", "responder"), route("forward", "origin")],
  };
}

export const LIMITER_CLASSES = { TENANT_LIMITER: "TenantLimiter", ROUTE_LIMITER: "RouteLimiter" };

/**
 * A variant's Durable Object bindings and the classes its Worker hosts for them; none when
 * its bundle does not export every class (the Portcullis variants before the limiters existed).
 */
export function durableObjectsOf(variant, bundleExports) {
  const classes = Object.values(variant.durableObjects ?? {});
  if (classes.length === 0 || !classes.every((c) => bundleExports.includes(c))) return { bindings: [], classes: [] };
  return {
    bindings: Object.entries(variant.durableObjects).map(([name, className]) => [name, "durableObject", className]),
    classes,
  };
}

/**
 * hono/jwk's bindings (bench/workers/hono-jwk.ts): both key sources are bound, and HONO_KEYS
 * says which one the middleware is given, `inline` or `uri`.
 */
const honoJwkBindings = (keys) => (ctx) => [
  ["HONO_KEYS", "text", keys],
  ["JWKS", "json", ctx.jwks],
  ["JWKS_URI", "text", ctx.jwksUri],
  ["ISSUER", "text", ISSUER],
  ["AUDIENCE", "text", AUDIENCE],
];

/**
 * The variants, in the order they run within a round. `bundle` names the bench/workers
 * entry; `bindings(ctx)` lists the bindings beyond the common ones; `durableObjects` maps
 * binding names to the Durable Object classes the Worker hosts.
 */
export const VARIANTS = [
  {
    id: "bare",
    label: "1 bare pass-through",
    bundle: "bare",
    bindings: () => [],
  },
  {
    id: "bare-do",
    label: "1b bare + one Durable Object call",
    bundle: "bare-do",
    bindings: () => [],
    durableObjects: { NOOP: "NoopObject" },
  },
  {
    id: "hono-inline",
    label: "2 hono/jwk, inline keys",
    bundle: "hono-jwk",
    bindings: honoJwkBindings("inline"),
  },
  {
    id: "hono-uri",
    label: "3 hono/jwk, jwks_uri",
    bundle: "hono-jwk",
    bindings: honoJwkBindings("uri"),
  },
  {
    id: "pc-jwt",
    label: "4 Portcullis, JWT only",
    bundle: "portcullis",
    portcullis: true,
    durableObjects: LIMITER_CLASSES,
    bindings: (ctx) => [
      ["BENCH_POLICY", "json", benchPolicy({ kind: "jwt", jwksUri: ctx.jwksUri, originUrl: ctx.originUrl })],
      ["BENCH_AUDIT", "text", "none"],
    ],
  },
  {
    id: "pc-full",
    label: "5 Portcullis, full pipeline",
    bundle: "portcullis",
    portcullis: true,
    requiresLimiters: true,
    durableObjects: LIMITER_CLASSES,
    bindings: (ctx) => [
      ["BENCH_POLICY", "json", benchPolicy({ kind: "full", jwksUri: ctx.jwksUri, originUrl: ctx.originUrl })],
      ["BENCH_AUDIT", "text", "console"],
    ],
  },
];

/** One round: every cell once, in this order, in each mode. */
export const CELLS = [
  { variant: "bare", workload: "es256" },
  { variant: "bare-do", workload: "es256" },
  { variant: "hono-inline", workload: "es256" },
  { variant: "hono-uri", workload: "es256" },
  { variant: "pc-jwt", workload: "es256" },
  { variant: "pc-jwt", workload: "warm" },
  { variant: "pc-full", workload: "es256" },
  { variant: "pc-full", workload: "warm" },
  { variant: "pc-full", workload: "rs256" },
  { variant: "pc-full", workload: "eddsa" },
];

export const MODES = ["direct", "forward"];

export const cellId = (cell, mode) => `${mode}/${cell.variant}/${cell.workload}`;
