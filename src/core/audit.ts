// The audit record: one JSON line per request. Built from decisions, verified identity and
// Cloudflare's own request metadata only, so a credential has no way in (an invariant: secrets never reach logs):
// no header value, no query string, no cookie, and never the client's IP address.

import type { DenyReason } from "./deny";
import type { Identity } from "./identity";

export interface AuditRecord {
  ts: string;
  request_id: string;
  /** Cloudflare data centre that served the request (`request.cf.colo`). */
  edge_pop: string | null;
  tenant_id: string | null;
  user_sub: string | null;
  /** `iss` of the token that was verified. */
  issuer: string | null;
  /** Short SHA-256 prefix of the verified token, for correlation only. */
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
  outcome: { decision: "allow" | "deny"; reason?: DenyReason; detail?: string; limit?: string; failedOpen?: string[] };
  status: number;
  timings: { authMs?: number; limitMs?: number; upstreamMs?: number };
  /** `request.cf`, when the request came through Cloudflare. */
  cf?: { colo?: unknown; asn?: unknown; country?: unknown };
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
 * A JWT put in a path segment, as some callback and link schemes do, is a credential all the
 * same. In compact form its header is base64url JSON, so begins `eyJ`: a JWS has three parts,
 * its payload JSON too (`eyJ`), a JWE five. It starts a segment or follows a character that is
 * not base64url (not `heyJude.live.mp3`), or an escape (`token%3DeyJ…`, which the canonical
 * path keeps escaped). Linear: each run of the pattern's character classes
 * is followed by a character outside them, so no attempt backtracks further than its own run.
 */
const JWT_IN_PATH =
  /(?:(?<![\w-])|(?<=%[\dA-Fa-f]{2}))eyJ[\w-]+\.(?:eyJ[\w-]*\.[\w-]*|[\w-]*\.[\w-]+\.[\w-]+\.[\w-]+)/g;

/** The canonical path as recorded: any JWT in it replaced by `[jwt]`. */
function recordedPath(path: string | undefined): string | null {
  if (path === undefined) return null;
  return path.includes("eyJ") ? path.replace(JWT_IN_PATH, "[jwt]") : path;
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
  };
}

export type AuditSink = (record: AuditRecord) => void | Promise<void>;

/** Default sink: one line on stdout, which Workers Logs and Logpush collect. */
export const consoleSink: AuditSink = (record) => {
  console.log(JSON.stringify(record));
};
