// Reading what the edge tells a rate-limited client: the RateLimit fields on an answer, as a
// client would, and the problem+json body of a refusal that names a limit.
import type { Harness } from "./harness";

/** A refusal's body, as far as rate-limit tests read it. */
export interface RateLimitProblem {
  reason: string;
  limit?: { name: string; key: string; limit: number; window_s: number; reset_s: number };
}

/** The items of a RateLimit field: name, remaining and seconds to reset, in order. */
export function rateLimitItems(field: string | null): { name: string; r: number; t: number }[] {
  return (field ?? "").split(", ").map((item) => {
    const match = /^"([^"]+)";r=(\d+);t=(\d+)$/.exec(item);
    if (!match) throw new Error(`not a RateLimit item: ${item}`);
    return { name: match[1]!, r: Number(match[2]), t: Number(match[3]) };
  });
}

/** `[200]` when admitted; else the status, problem reason, audit detail and the limit that refused. */
export async function verdictOf(edge: Harness, response: Response): Promise<unknown[]> {
  if (response.status === 200) {
    await response.body?.cancel();
    return [200];
  }
  const body = (await response.json()) as RateLimitProblem;
  const record = edge.audit.find((r) => r.request_id === response.headers.get("x-request-id"));
  return [response.status, body.reason, record?.detail, body.limit?.name];
}
