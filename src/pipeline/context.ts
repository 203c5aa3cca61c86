// Typed Hono context shared by the pipeline stages: the Worker's bindings, the values one stage
// hands to the next, and the helpers that read and write them (response headers, bindings).

import type { Context } from "hono";
import type { Identity } from "../core/identity";
import type { Outcome, Timings } from "../core/audit";
import type { TokenCheck } from "../core/metrics";
import type { CompiledPolicy, CompiledRoute } from "../core/policy";

export interface Bindings {
  /** KV namespace: second tier of the JWKS cache and the shared refresh cooldowns. */
  JWKS_CACHE?: KVNamespace;
  /** Durable Object namespace: one object per tenant (tenant + user counters). */
  TENANT_LIMITER?: DurableObjectNamespace;
  /** Durable Object namespace: one object per route ceiling / public-IP key. */
  ROUTE_LIMITER?: DurableObjectNamespace;
  /** Workers Analytics Engine dataset for metrics (optional). */
  METRICS?: AnalyticsEngineDataset;
  /** Service bindings named by `upstreams.*.service` are looked up here by name. */
  [binding: string]: unknown;
}

export interface Variables {
  policy: CompiledPolicy;
  requestId: string;
  startedAt: number;
  /** The request URL, parsed once (by the canonical-path stage) for every later stage. */
  url: URL;
  canonicalPath: string;
  route: CompiledRoute;
  routeParams: Record<string, string>;
  /** Headers that will go to the origin: the client's, minus everything the edge strips. */
  forwardHeaders: Headers;
  identity: Identity;
  tokenCheck: TokenCheck;
  outcome: Outcome;
  timings: Timings;
  /** Response headers a stage wants on the final response (rate-limit fields, CORS); see `responseHeaders`. */
  responseHeaders: Headers | undefined;
}

export interface PipelineEnv {
  Bindings: Bindings;
  Variables: Variables;
}

export type PipelineContext = Context<PipelineEnv>;

/**
 * The headers a stage wants on the final response, created on first use: most requests add
 * none, and then no Headers object is made or walked.
 */
export function responseHeaders(c: PipelineContext): Headers {
  let headers = c.get("responseHeaders");
  if (!headers) {
    headers = new Headers();
    c.set("responseHeaders", headers);
  }
  return headers;
}

/** The service binding a `service` upstream names, if the Worker has one by that name. */
export function serviceBinding(c: PipelineContext, name: string): Pick<Fetcher, "fetch"> | undefined {
  const binding = c.env?.[name] as Partial<Fetcher> | undefined;
  return typeof binding?.fetch === "function" ? (binding as Fetcher) : undefined;
}

/**
 * `response` with the headers stages asked for: each replaces the response's own, but `Vary`,
 * which joins it (the origin's answer may vary by more than the edge's CORS does).
 */
export function withResponseHeaders(c: PipelineContext, response: Response): Response {
  const extra = c.get("responseHeaders");
  if (!extra) return response;
  for (const [name, value] of extra) {
    if (name === "vary") addVary(response.headers, value);
    else response.headers.set(name, value);
  }
  return response;
}

/**
 * Adds the request fields `names` (`A, B`) to `Vary`, each once: Vary is a set (RFC 9110
 * §12.5.5), which the origin's own may already hold. Also after a `*`, for a cache that reads
 * past it.
 */
export function addVary(headers: Headers, names: string): void {
  const listed = (headers.get("vary") ?? "")
    .toLowerCase()
    .split(",")
    .map((name) => name.trim());
  const missing = names.split(", ").filter((name) => !listed.includes(name.toLowerCase()));
  if (missing.length > 0) headers.append("vary", missing.join(", "));
}
