// The audit record: one JSON line per request. Built from decisions and verified identity
// only, so a credential has no way in (DESIGN invariant 5).

export interface AuditRecord {
  ts: string;
  request_id: string;
  edge_pop: string | null;
  tenant_id: string | null;
  user_sub: string | null;
  issuer: string | null;
  token_hash: string | null;
  method: string;
  /** The canonical path (never the query string); null when the path was rejected. */
  path: string | null;
  route: string | null;
  decision: "allow" | "deny";
  reason: string | null;
  detail: string | null;
  matched_rule: string | null;
  upstream: string | null;
  status: number;
  limit: string | null;
  failed_open: string[] | null;
  latency_ms: number;
  authz_ms: number | null;
  limit_ms: number | null;
  upstream_ms: number | null;
}

export type AuditSink = (record: AuditRecord) => void | Promise<void>;

/** Default sink: one line on stdout, which Workers Logs and Logpush collect. */
export const consoleSink: AuditSink = (record) => {
  console.log(JSON.stringify(record));
};
