// Response fields that tell a client where it stands against its rate limits:
// - `RateLimit-Policy` and `RateLimit` from draft-ietf-httpapi-ratelimit-headers (-10/-11),
//   Structured Field lists (RFC 9651): `"name";q=<quota>;w=<window s>` and
//   `"name";r=<remaining>;t=<seconds until reset>`, one item per applicable limit, most
//   restrictive first;
// - the widespread `X-RateLimit-Limit`, `-Remaining`, `-Reset` (delta seconds) for the most
//   restrictive limit alone.
// "Reset" is when the limit is back to its full burst (GCRA refills smoothly, one request
// per window/limit, so some capacity returns well before that).

import { boundedMemo } from "./bounded-memo";
import { ceilSeconds, type LimitStatus } from "./limits/verdict";

/** An RFC 9651 sf-string: printable ASCII, with `"` and `\` escaped; anything else dropped. */
export function sfString(value: string): string {
  const printable = value.replace(/[^\x20-\x7e]/g, "");
  return `"${printable.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`;
}

/** Limit names come from the policy, so there are few: each is encoded once per isolate. */
const limitName = boundedMemo(1_000, sfString);

/** Header name → value, for statuses already ordered most restrictive first. */
export function rateLimitHeaders(statuses: readonly LimitStatus[]): Record<string, string> {
  const first = statuses[0];
  if (!first) return {};
  return {
    "ratelimit-policy": statuses.map((s) => `${limitName(s.name)};q=${s.limit};w=${s.windowS}`).join(", "),
    ratelimit: statuses.map((s) => `${limitName(s.name)};r=${s.remaining};t=${ceilSeconds(s.resetMs)}`).join(", "),
    "x-ratelimit-limit": String(first.limit),
    "x-ratelimit-remaining": String(first.remaining),
    "x-ratelimit-reset": String(ceilSeconds(first.resetMs)),
  };
}
