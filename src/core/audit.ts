// The audit record: one JSON line per request. Built from decisions, verified identity and
// Cloudflare's own request metadata only, so a credential has no way in (an invariant: secrets never reach logs):
// no header value, no query string, no cookie, and never the client's IP address.

import type { DenyReason } from "./deny";
import type { Identity } from "./identity";
import type { CheckSource } from "./tokens/verify";

export interface AuditRecord {
  ts: string;
  request_id: string;
  /** Cloudflare data centre that served the request (`request.cf.colo`). */
  edge_pop: string | null;
  tenant_id: string | null;
  user_sub: string | null;
  /** `iss` of the token that was verified. */
  issuer: string | null;
  /** Short SHA-256 prefix of the verified token's signed part (see token-hash.ts), for correlation only. */
  token_hash: string | null;
  method: string;
  /** The canonical path (never the query string; a JWT in it as `[jwt]`); null when the path was rejected. */
  path: string | null;
  route: string | null;
  decision: "allow" | "deny";
  reason: DenyReason | null;
  /** Precise cause of a deny, an edge-chosen code such as `encoded_slash`. */
  detail: string | null;
  /** `policy:<route>@v<version>`. */
  matched_rule: string | null;
  status: number;
  upstream: string | null;
  latency_ms: number;
  /** Time the token check took (the authenticate stage), ms; the authorise stage is not timed. */
  authz_ms: number | null;
  limit_ms: number | null;
  upstream_ms: number | null;
  /** The limit that was hit. */
  limit: string | null;
  /** Limits that could not be checked and were let through because the policy says so. */
  failed_open: string[] | null;
  /** The client's autonomous system (`request.cf.asn`), for abuse analysis without the IP. */
  client_asn: number | null;
  /** The client's country (`request.cf.country`). */
  client_country: string | null;
  /**
   * Where the token's key came from, once an issuer was chosen (`stale` or
   * `token_cache_stale`: from a set past its TTL): kept whatever later stages decide, as
   * `detail` is not.
   */
  key_source: CheckSource | null;
}

/** What the edge decided, filled in by the stage that decided it; read by the audit stage. */
export interface Outcome {
  decision: "allow" | "deny";
  reason?: DenyReason;
  /** Precise cause for the audit record, e.g. `encoded_slash` or a jose error code. */
  detail?: string;
  /** The limit that was hit, or that failed open. */
  limit?: string;
  failedOpen?: string[];
  /** The request went to the origin: a disconnect after that is recorded as allowed. */
  forwarded?: true;
}

/** How long the edge's own waits took, ms: the token check, the limiter, the origin's headers. */
export interface Timings {
  authMs?: number;
  limitMs?: number;
  upstreamMs?: number;
}

/** Everything the audit record is built from: plain values, gathered by the pipeline. */
export interface AuditInput {
  now: number;
  requestId: string;
  startedAt: number;
  method: string;
  canonicalPath?: string;
  route?: { name: string; matchedRule: string; upstreamName: string };
  /** The verified caller, its token hash already resolved (see `auditIdentity`). */
  identity?: AuditIdentity;
  outcome: Outcome;
  status: number;
  timings: Timings;
  /** `request.cf`, when the request came through Cloudflare. */
  cf?: { colo?: unknown; asn?: unknown; country?: unknown };
  /** Where the token's key came from. */
  keySource?: CheckSource;
}

export interface AuditIdentity {
  subject: string;
  tenant?: string;
  issuer: string;
  tokenHash: string;
}

/**
 * What the record keeps of an identity. Awaits the token hash, which verification leaves
 * lazy so that no request pays for a SHA-256 that only the audit record reads.
 */
export async function auditIdentity(identity: Identity | undefined): Promise<AuditIdentity | undefined> {
  if (!identity) return undefined;
  const { subject, tenant, issuer, tokenHash } = identity;
  return {
    subject,
    ...(tenant !== undefined ? { tenant } : {}),
    issuer,
    tokenHash: await tokenHash(),
  };
}

function stringOrNull(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 ? value : null;
}

function numberOrNull(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/**
 * How a JWT's JSON parts begin in base64url: `{` then `"` (`eyJ`), or then the whitespace JSON
 * allows (RFC 8259 §2) that pretty-printing encoders write: a space (`eyA`), a tab (`ewk`), a
 * line feed (`ewo`) or a carriage return (`ew0`). No two such starts overlap.
 */
const JSON_OBJECT_START = /e(?:y[JA]|w[ko0])/g;

/**
 * A JWT put in a path, as some callback and link schemes do (`/magic-link-eyJ…`,
 * `/cb/id_token_eyJ…`), is a credential all the same. In compact form its header is base64url
 * JSON, so begins `eyJ` (or as below): a JWS has three dot-separated parts, its payload JSON
 * too, a JWE five. What comes before it does not matter: a word, a digit, an escape (`token%3DeyJ…`,
 * which the canonical path keeps escaped); what follows must have a JWT's shape (so not
 * `heyJude.live.mp3`). Read part by part rather than by one pattern: a pattern that may start a match
 * after every `-` or `_` rescans the rest of the run from each, quadratic in the path.
 */
function redactedRun(run: string): string {
  const parts = run.split(".");
  const kept: string[] = [];
  for (let i = 0; i < parts.length; ) {
    const part = parts[i] as string;
    const start = jwtStart(part);
    let end = start === -1 ? i : i + jwtParts(parts, i);
    // A JWT that begins inside these parts goes too: after a base64url JSON value (an OAuth
    // `state`), these would be that value, the header and the payload, and the signature kept.
    // Read as the first is (glued on too): a JWS's payload looks like a JWE's header, so two
    // JWTs joined by a dot may be recorded as one `[jwt]`, never with a part of either left.
    for (let k = i + 1; k < end; k++)
      if (jwtStart(parts[k] as string) !== -1) end = Math.max(end, k + jwtParts(parts, k));
    if (end === i) {
      kept.push(part);
      i += 1;
    } else {
      kept.push(`${part.slice(0, start)}[jwt]`);
      i = end;
    }
  }
  return kept.join(".");
}

/**
 * How many parts a JWT whose first part is `parts[i]` takes, or 0. A JWS: the payload is JSON
 * too; the signature may be empty (an unsecured JWT). A JWE: four more parts, the last three
 * not empty.
 */
function jwtParts(parts: string[], i: number): number {
  if (i + 2 < parts.length && (parts[i + 1] as string).search(JSON_OBJECT_START) === 0) return 3;
  return i + 4 < parts.length && parts[i + 2] && parts[i + 3] && parts[i + 4] ? 5 : 0;
}

/**
 * Where a JWT's first part begins in `part` (letters, digits, `-`, `_`), or -1: the first
 * JSON start that begins the part or follows `-` or `_`, else the first glued to a letter or
 * digit (`/cb/1eyJ…`), so that a word before the token stays readable where it can
 * (`heyJude_eyJ…`).
 */
function jwtStart(part: string): number {
  let glued = -1;
  for (const { 0: start, index: at } of part.matchAll(JSON_OBJECT_START)) {
    if (part.length <= at + 3) break;
    const before = at === 0 ? "" : (part[at - 1] as string);
    if (before === "" || before === "-" || before === "_") return at;
    // Glued on only as compact JSON begins: `eyA` or `ewk` inside a word (`keyAuth`, `brewkit`)
    // starts no token.
    if (glued === -1 && start === "eyJ") glued = at;
  }
  return glued;
}

/** The canonical path as recorded: any JWT in it replaced by `[jwt]`. */
function recordedPath(path: string | undefined): string | null {
  if (path === undefined) return null;
  if (path.search(JSON_OBJECT_START) < 0) return path;
  // Runs of base64url characters and dots, with what lies between them kept as it is.
  const pieces = path.split(/([^\w.-]+)/);
  for (let i = 0; i < pieces.length; i += 2) {
    const piece = pieces[i] as string;
    if (piece.search(JSON_OBJECT_START) < 0) continue;
    // After an escape (`%3D`), its two hex digits begin the run, and a JWT may follow them.
    const escaped = i > 0 && (pieces[i - 1] as string).endsWith("%") && /^[\dA-Fa-f]{2}/.test(piece) ? 2 : 0;
    pieces[i] = piece.slice(0, escaped) + redactedRun(piece.slice(escaped));
  }
  return pieces.join("");
}

/** Builds the record. Every field is always present; absent values are `null`. */
export function auditRecord(input: AuditInput): AuditRecord {
  const { outcome, route, identity, timings, cf } = input;
  return {
    ts: new Date(input.now).toISOString(),
    request_id: input.requestId,
    edge_pop: stringOrNull(cf?.colo),
    tenant_id: identity?.tenant ?? null,
    user_sub: identity?.subject ?? null,
    issuer: identity?.issuer ?? null,
    token_hash: identity?.tokenHash ?? null,
    method: input.method,
    path: recordedPath(input.canonicalPath),
    route: route?.name ?? null,
    decision: outcome.decision,
    reason: outcome.reason ?? null,
    detail: outcome.detail ?? null,
    matched_rule: route?.matchedRule ?? null,
    status: input.status,
    upstream: route?.upstreamName ?? null,
    latency_ms: Math.max(0, input.now - input.startedAt),
    authz_ms: numberOrNull(timings.authMs),
    limit_ms: numberOrNull(timings.limitMs),
    upstream_ms: numberOrNull(timings.upstreamMs),
    limit: outcome.limit ?? null,
    failed_open: outcome.failedOpen?.length ? [...outcome.failedOpen] : null,
    client_asn: numberOrNull(cf?.asn),
    client_country: stringOrNull(cf?.country),
    key_source: input.keySource ?? null,
  };
}

export type AuditSink = (record: AuditRecord) => void | Promise<void>;

/** Default sink: one line on stdout, which Workers Logs and Logpush collect. */
export const consoleSink: AuditSink = (record) => {
  console.log(JSON.stringify(record));
};
