// The metrics data point: one Workers Analytics Engine row per request, built from the audit
// record and the token check. The column positions are a storage format that SQL queries
// (ops/queries) depend on: append new columns at the end, never reorder or reuse one.

import type { AuditRecord } from "./audit";
import { bearerErrorOf } from "./deny";
import { MAX_COUNTERS_PER_CALL } from "./limits/limiter-rpc";
import { MAX_NAME_CHARS } from "./limits/counter-ids";
import type { CheckSource } from "./tokens/verify";

/** Bumped when a column's meaning changes; stored in every row (`double7`). */
const METRICS_LAYOUT_VERSION = 1;

/** blob1 … blob17, in order. */
export const BLOB_COLUMNS = [
  "decision",
  "reason",
  "route",
  "method",
  "user_sub",
  "issuer_id",
  "key_source",
  "upstream",
  "edge_pop",
  "client_country",
  "client_asn",
  "client_ip",
  "limit",
  "failed_open",
  "detail",
  "matched_rule",
  "request_id",
] as const;

/** double1 … double7, in order. Durations are milliseconds; -1 means "not measured". */
export const DOUBLE_COLUMNS = [
  "status",
  "latency_ms",
  "token_verify_ms",
  "upstream_ms",
  "authz_ms",
  "limit_ms",
  "layout_version",
] as const;

export type BlobColumn = (typeof BLOB_COLUMNS)[number];
export type DoubleColumn = (typeof DOUBLE_COLUMNS)[number];

/** Analytics Engine limits: one index of at most 96 bytes; blobs share 16 KB per row. */
export const MAX_INDEX_BYTES = 96;
/** Per blob, so 17 blobs stay far below the 16 KB row limit whatever a token carries. */
export const MAX_BLOB_BYTES = 256;
/**
 * `failed_open` lists the limit names of both limiter objects, which may both fail open, with
 * commas: whole, it stays far below the row limit too.
 */
const MAX_FAILED_OPEN_BYTES = 2 * MAX_COUNTERS_PER_CALL * (MAX_NAME_CHARS + 1);

/** Structurally an `AnalyticsEngineDataPoint`, without depending on Workers types. */
export interface DataPoint {
  indexes: [string];
  blobs: string[];
  doubles: number[];
}

/** How the token was verified, for metrics (`edge.token.validate.duration_ms`, key cache hit rate). */
export interface TokenCheck {
  issuerId: string;
  /** Time spent verifying the token, ms. */
  verifyMs: number;
  /** Where the verification key came from (see `CheckSource`). */
  keySource: CheckSource;
}

export interface DataPointInput {
  record: AuditRecord;
  tokenCheck?: TokenCheck;
  /**
   * The client's IP address (`CF-Connecting-IP`). Stored only on invalid-token refusals: it
   * is personal data, and the abuse queries (credential stuffing) need it only there.
   */
  clientIp?: string | null;
}

const IP_ADDRESS = /^[0-9A-Fa-f:.]{2,45}$/;

const encoder = new TextEncoder();

/** Cuts a string to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUtf8(value: string, maxBytes: number): string {
  if (value.length * 3 <= maxBytes || encoder.encode(value).length <= maxBytes) return value;
  let bytes = 0;
  let end = 0;
  for (const ch of value) {
    const size = encoder.encode(ch).length;
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += ch.length;
  }
  return value.slice(0, end);
}

function measured(ms: number | null | undefined): number {
  return typeof ms === "number" && Number.isFinite(ms) && ms >= 0 ? ms : -1;
}

/**
 * The refusals the credential-stuffing queries look for: the ones RFC 6750 answers with
 * `invalid_token` or `invalid_request`. Only these store the client's IP address.
 */
function refusesPresentedToken(record: AuditRecord): boolean {
  if (record.decision !== "deny") return false;
  const error = bearerErrorOf(record.reason ?? "");
  return error === "invalid_token" || error === "invalid_request";
}

const FAILED_OPEN_BLOB = BLOB_COLUMNS.indexOf("failed_open");

/** The row for one request. Pure: same input, same row. */
export function metricsDataPoint({ record, tokenCheck, clientIp }: DataPointInput): DataPoint {
  const guessing = refusesPresentedToken(record);
  const ip = guessing && clientIp && IP_ADDRESS.test(clientIp) ? clientIp : "";
  // In BLOB_COLUMNS and DOUBLE_COLUMNS order (the tests hold the two together): the
  // column names stay out of the Worker's bundle.
  const blobs: string[] = [
    record.decision,
    record.reason ?? "",
    record.route ?? "",
    record.method,
    record.user_sub ?? "",
    tokenCheck?.issuerId ?? "",
    tokenCheck?.keySource ?? "",
    record.upstream ?? "",
    record.edge_pop ?? "",
    record.client_country ?? "",
    record.client_asn === null ? "" : String(record.client_asn),
    ip,
    record.limit ?? "",
    record.failed_open?.join(",") ?? "",
    record.detail ?? "",
    record.matched_rule ?? "",
    record.request_id,
  ];
  return {
    indexes: [truncateUtf8(record.tenant_id ?? "", MAX_INDEX_BYTES)],
    blobs: blobs.map((blob, i) => truncateUtf8(blob, i === FAILED_OPEN_BLOB ? MAX_FAILED_OPEN_BYTES : MAX_BLOB_BYTES)),
    doubles: [
      record.status,
      measured(record.latency_ms),
      measured(tokenCheck?.verifyMs),
      measured(record.upstream_ms),
      measured(record.authz_ms),
      measured(record.limit_ms),
      METRICS_LAYOUT_VERSION,
    ],
  };
}

/** `blob5`, `double3`, `index1`: the SQL column holding a field. */
export function columnOf(name: BlobColumn | DoubleColumn | "tenant_id"): string {
  if (name === "tenant_id") return "index1";
  const blob = BLOB_COLUMNS.indexOf(name as BlobColumn);
  if (blob >= 0) return `blob${blob + 1}`;
  return `double${DOUBLE_COLUMNS.indexOf(name as DoubleColumn) + 1}`;
}
