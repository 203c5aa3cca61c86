// Opt-in debugging aid: a `Server-Timing` response header with the edge's own stage
// durations (policy `settings.server_timing`). It carries metric names and numbers only,
// never identity, so a browser's developer tools can show where the time went.

import type { MiddlewareHandler } from "hono";
import type { PipelineEnv, Timings } from "./context";

const METRICS: ReadonlyArray<[name: string, key: keyof Timings]> = [
  ["auth", "authMs"],
  ["limit", "limitMs"],
  ["upstream", "upstreamMs"],
];

/** `auth;dur=1.2, limit;dur=0.3, upstream;dur=12`; stages that did not run are left out. */
export function formatServerTiming(timings: Timings): string | undefined {
  const parts: string[] = [];
  for (const [name, key] of METRICS) {
    const ms = timings[key];
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) continue;
    parts.push(`${name};dur=${Math.round(ms * 10) / 10}`);
  }
  return parts.length > 0 ? parts.join(", ") : undefined;
}

export function serverTiming(): MiddlewareHandler<PipelineEnv> {
  return async (c, next) => {
    await next();
    if (c.get("policy")?.serverTiming !== true) return;
    const value = formatServerTiming(c.get("timings") ?? {});
    if (!value) return;
    try {
      c.res.headers.set("server-timing", value);
    } catch {
      // Immutable headers (a response passed through as is): copy it once.
      c.res = new Response(c.res.body, c.res);
      c.res.headers.set("server-timing", value);
    }
  };
}
