// In-isolate counters shared by every benchmarked Worker, so the harness can prove what a
// measured request cost: signature verifications, key imports, outbound fetches and Durable
// Object stubs. Each counter is one increment around the real call (nanoseconds against the
// microseconds being measured), and every variant carries the same instrumentation.
//
// Import this module first: it wraps `crypto.subtle` and `fetch` before any library runs.

export interface BenchCounters {
  requests: number;
  importKey: number;
  verify: number;
  fetch: number;
  durableObjectStubs: number;
}

const counters: BenchCounters = { requests: 0, importKey: 0, verify: 0, fetch: 0, durableObjectStubs: 0 };

// Fixed-arity wrappers (no rest/spread), so the count is all they add to a call.
const subtle = crypto.subtle;
const importKey = subtle.importKey;
const verify = subtle.verify;
subtle.importKey = function countedImportKey(format, keyData, algorithm, extractable, usages) {
  counters.importKey += 1;
  return importKey.call(subtle, format as never, keyData as never, algorithm, extractable, usages);
} as SubtleCrypto["importKey"];
subtle.verify = function countedVerify(algorithm, key, signature, data) {
  counters.verify += 1;
  return verify.call(subtle, algorithm, key, signature, data);
} as SubtleCrypto["verify"];

const globalFetch = globalThis.fetch;
globalThis.fetch = function countedFetch(input: RequestInfo | URL, init?: RequestInit) {
  counters.fetch += 1;
  return globalFetch(input, init);
} as typeof fetch;

/** The path prefix the harness uses to talk to the benchmark wrapper, never to the Worker. */
export const BENCH_PREFIX = "/__bench/";

export function isBenchRequest(request: Request): boolean {
  // A string search, not a URL parse: this runs on every measured request of every variant.
  return request.url.includes(BENCH_PREFIX);
}

/** Counts every measured request that reaches the Worker. */
export function countRequest(): void {
  counters.requests += 1;
}

interface KvStatsBinding {
  fetch(input: string, init?: RequestInit): Promise<Response>;
}

/** Answers `/__bench/counters` with the isolate's counters and the KV service's. */
export async function benchResponse(request: Request, env: Record<string, unknown>): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (path === `${BENCH_PREFIX}counters`) {
    const kvStats = env.BENCH_KV_STATS as KvStatsBinding | undefined;
    const kv = kvStats
      ? await kvStats.fetch("http://kv/", { headers: { "x-bench-counters": "1" } }).then((r) => r.json())
      : null;
    return Response.json({ ...counters, kv });
  }
  return new Response("unknown bench endpoint", { status: 404 });
}

/**
 * Returns `env` with every Durable Object namespace wrapped so that obtaining a stub is
 * counted. Everything else, and the stubs themselves, are the runtime's own objects.
 */
export function instrumentEnv<E extends Record<string, unknown>>(env: E, namespaces: readonly string[]): E {
  const wrapped: Record<string, unknown> = { ...env };
  for (const name of namespaces) {
    const namespace = env[name] as object | undefined;
    if (!namespace) continue;
    wrapped[name] = new Proxy(namespace, {
      get(target, property) {
        const value = Reflect.get(target, property) as unknown;
        if (typeof value !== "function") return value;
        const bound = (value as (...args: unknown[]) => unknown).bind(target);
        if (property !== "get" && property !== "getByName") return bound;
        return (...args: unknown[]) => {
          counters.durableObjectStubs += 1;
          return bound(...args);
        };
      },
    });
  }
  return wrapped as E;
}
