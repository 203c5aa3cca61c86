// Ends a request at the edge: records the outcome for the audit stage and returns the one
// problem+json shape every stage uses.

import { type DenyOptions, type DenyReason, problemResponse } from "../core/deny";
import type { PipelineContext } from "./context";

export interface DenyExtras extends Omit<DenyOptions, "requestId" | "realm"> {
  /** Precise cause, for the audit record only. */
  detail?: string;
  limit?: string;
}

export function deny(c: PipelineContext, reason: DenyReason, extras: DenyExtras = {}): Response {
  const { detail, limit, ...options } = extras;
  const outcome = c.get("outcome");
  c.set("outcome", {
    ...outcome,
    decision: "deny",
    reason,
    ...(detail !== undefined ? { detail } : {}),
    ...(limit !== undefined ? { limit } : {}),
  });
  const requestId = c.get("requestId") ?? crypto.randomUUID();
  const policy = c.get("policy");
  const response = problemResponse(reason, { ...options, requestId, realm: policy?.realm ?? "portcullis" });
  const extra = c.get("responseHeaders");
  if (extra) for (const [name, value] of extra) response.headers.set(name, value);
  return response;
}
