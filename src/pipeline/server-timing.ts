// Opt-in debugging aid: a `Server-Timing` response header with the edge's own stage
// durations (policy `settings.server_timing`). It carries metric names and numbers only,
// never identity, so a browser's developer tools can show where the time went.

import type { Timings } from "../core/audit";
import type { Stage } from "./stage";

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

/** In the pipeline only when the policy turns it on. */
export function serverTiming(): Stage {
  return {
    finish(c, response) {
      const value = formatServerTiming(c.get("timings") ?? {});
      if (!value) return response;
      // Every response here is the edge's own or a re-wrapped one: its headers can change.
      // The edge's timings tell whether a token came from the cache: no page of another
      // origin may read them, whatever the origin allows for its own.
      response.headers.delete("timing-allow-origin");
      // A list field: the origin's own metrics stay next to the edge's.
      response.headers.append("server-timing", value);
      return response;
    },
  };
}
