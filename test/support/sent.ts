// One request through the edge, and everything a pipeline test judges it by: the answer, its
// problem+json, the audit record it wrote, and what reached the echo origin. Many test files had
// each written their own copy of this, and the copies had drifted (which content types were
// parsed, what a HEAD or a 200 gave as the body, `{}` or `undefined` when nothing was forwarded),
// so `body.reason` or `got[...]` meant slightly different things from file to file. This is the
// one reading they share.
import { expect } from "vitest";
import type { AuditRecord } from "../../src/core/audit";
import { type EchoRecord, echoOrigin, type Harness, marker, originSaw } from "./harness";

/** An RFC 9457 problem+json body as the edge writes one (`problemResponse`). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  reason: string;
  request_id: string;
  [k: string]: unknown;
}

export interface Sent {
  response: Response;
  /** The answer's body, read whole. */
  text: string;
  /** The problem+json refusal, or undefined for any other answer (a HEAD or empty body included). */
  body: Problem | undefined;
  /** The last audit record this request wrote (undefined when it wrote none). */
  record: AuditRecord | undefined;
  /** The audit records this request added (for a test that wants exactly one). */
  records: AuditRecord[];
  /** What the echo origin received under this request's marker: empty when nothing was forwarded. */
  seen: EchoRecord[];
  /** The headers of the first forwarded request; `{}` when nothing was forwarded. */
  got: Record<string, string>;
}

/**
 * Sends `path` (a path, or a full URL for host routes) through `edge` with a fresh
 * `x-test-marker`, so the origin's records for this request alone can be asked for.
 */
export async function sendMarked(edge: Harness, path: string, init: RequestInit = {}): Promise<Sent> {
  const m = marker();
  const headers = new Headers(init.headers);
  headers.set("x-test-marker", m);
  const before = edge.audit.length;
  const response = await edge.fetch(path, { ...init, headers });
  const text = await response.text();
  // A HEAD answer has no body, refusals included.
  const problem = response.headers.get("content-type") === "application/problem+json" && text !== "";
  const body = problem ? (JSON.parse(text) as Problem) : undefined;
  const seen = await originSaw(m);
  const records = edge.audit.slice(before);
  return { response, text, body, record: records.at(-1), records, seen, got: seen[0]?.headers ?? {} };
}

/**
 * The headers the echo origin receives when the runtime's own fetch sends these straight to
 * it, edge bypassed: the control that shows a header's absence behind the edge is the edge's doing.
 */
export async function sentStraightToOrigin(headers: Record<string, string>): Promise<Record<string, string>> {
  const m = marker();
  await (await fetch(`${echoOrigin}/public/a`, { headers: { ...headers, "x-test-marker": m } })).arrayBuffer();
  return (await originSaw(m))[0]!.headers;
}

/** Refused `400 bad_request` as an `ambiguous_*` reading of the request, and nothing forwarded. */
export function expectAmbiguous(sent: Sent): void {
  expect(sent.seen.map((s) => s.raw_target)).toEqual([]);
  expect(sent.response.status).toBe(400);
  expect(sent.body?.reason).toBe("bad_request");
  expect(sent.record).toMatchObject({ decision: "deny", reason: "bad_request" });
  expect(sent.record?.detail).toMatch(/^ambiguous_/);
}
