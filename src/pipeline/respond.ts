// Ends a request at the edge: records the outcome for the audit stage and returns the one
// problem+json shape every stage uses.

import { DEFAULT_REALM, type DenyOptions, type DenyReason, problemResponse } from "../core/deny";
import type { AuthRequirement } from "../core/policy-types";
import { type PipelineContext, withResponseHeaders } from "./context";

export interface DenyExtras extends Omit<DenyOptions, "requestId" | "realm" | "resourceMetadata"> {
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
  const requestId = c.get("requestId");
  // No policy when the policy itself is invalid (the policy_invalid answer).
  const realm = c.get("policy")?.realm ?? DEFAULT_REALM;
  // Before routing, or on a public route, there is none.
  const resourceMetadata = (c.get("route")?.auth as AuthRequirement | undefined)?.resource_metadata;
  return withResponseHeaders(c, problemResponse(reason, { ...options, requestId, realm, resourceMetadata }));
}
