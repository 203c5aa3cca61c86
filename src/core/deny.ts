// The closed set of reasons the edge refuses a request, and the one place that turns a
// reason into a wire response. Wire messages are deliberately generic; the precise
// reason (and any detail) goes to the audit record only.

export type DenyReason =
  | "bad_request"
  | "route_not_found"
  | "method_not_allowed"
  | "cors_rejected"
  | "token_missing"
  | "token_malformed"
  | "token_invalid"
  | "token_expired"
  | "token_not_yet_valid"
  | "issuer_unknown"
  | "audience_mismatch"
  | "insufficient_scope"
  | "forbidden"
  | "tenant_mismatch"
  | "cross_site_request"
  | "rate_limited"
  | "jwks_unavailable"
  | "limiter_unavailable"
  | "origin_unavailable"
  | "origin_timeout"
  | "misconfigured"
  | "internal_error"
  | "client_closed";

interface WireShape {
  status: number;
  title: string;
  /** RFC 6750 error code for the WWW-Authenticate challenge, when the reason has one. */
  bearerError?: "invalid_request" | "invalid_token" | "insufficient_scope";
}

/**
 * Every token problem is RFC 6750 `invalid_token` in the challenge, which is what clients act
 * on; the problem body's `reason` still names which check failed (a documented, stable
 * contract that makes failures debuggable), and the audit record adds the exact detail.
 */
const INVALID_TOKEN: WireShape = { status: 401, title: "Invalid token", bearerError: "invalid_token" };

/** Exhaustive: adding a reason without a wire shape is a compile error. */
const WIRE: { readonly [R in DenyReason]: WireShape } = {
  bad_request: { status: 400, title: "Bad request" },
  route_not_found: { status: 404, title: "Not found" },
  method_not_allowed: { status: 405, title: "Method not allowed" },
  cors_rejected: { status: 403, title: "Forbidden" },
  token_missing: { status: 401, title: "Unauthorized" },
  token_malformed: { status: 400, title: "Bad request", bearerError: "invalid_request" },
  token_invalid: INVALID_TOKEN,
  token_expired: INVALID_TOKEN,
  token_not_yet_valid: INVALID_TOKEN,
  issuer_unknown: INVALID_TOKEN,
  audience_mismatch: INVALID_TOKEN,
  insufficient_scope: { status: 403, title: "Insufficient scope", bearerError: "insufficient_scope" },
  forbidden: { status: 403, title: "Forbidden" },
  tenant_mismatch: { status: 403, title: "Forbidden" },
  cross_site_request: { status: 403, title: "Forbidden" },
  rate_limited: { status: 429, title: "Too many requests" },
  jwks_unavailable: { status: 503, title: "Service unavailable" },
  limiter_unavailable: { status: 503, title: "Service unavailable" },
  origin_unavailable: { status: 502, title: "Bad gateway" },
  origin_timeout: { status: 504, title: "Gateway timeout" },
  misconfigured: { status: 500, title: "Internal error" },
  internal_error: { status: 500, title: "Internal error" },
  // nginx's 499: the client went away before the request was complete; nobody reads this answer.
  client_closed: { status: 499, title: "Client closed request" },
};

/** Every deny reason, for checks outside the Worker (the ops queries' tests). */
export function denyReasons(): DenyReason[] {
  return Object.keys(WIRE) as DenyReason[];
}

/** The RFC 6750 error code a reason's Bearer challenge carries, if it has one (any string is read safely). */
export function bearerErrorOf(reason: string): WireShape["bearerError"] {
  return Object.hasOwn(WIRE, reason) ? WIRE[reason as DenyReason].bearerError : undefined;
}

/** The Bearer challenge's realm when the policy names none (or is itself invalid). */
export const DEFAULT_REALM = "portcullis";

export interface DenyOptions {
  requestId: string;
  /** Realm for the Bearer challenge on 401/403 token reasons. */
  realm: string;
  /** The route's protected resource metadata URL (RFC 9728 §5.1), for every Bearer challenge. */
  resourceMetadata?: string | undefined;
  /** Space-separated scopes the route needs, for `insufficient_scope` (RFC 6750 §3). */
  requiredScope?: string;
  /** The methods routed at the URL, for `method_not_allowed` (RFC 9110 §15.5.6). */
  allow?: string;
  /** Seconds until a retry may succeed (429, 503). */
  retryAfterSeconds?: number;
  /** Extra, non-sensitive members for the problem body (e.g. which limit was hit). */
  extensions?: Record<string, unknown>;
}

function bearerChallenge(reason: DenyReason, options: DenyOptions): string | undefined {
  const shape = WIRE[reason];
  const isAuthReason = shape.status === 401 || shape.bearerError !== undefined;
  if (!isAuthReason) return undefined;
  // Quoted as they are: the policy refuses a realm or scope with `"` or `\`.
  const params = [`realm="${options.realm}"`];
  if (shape.bearerError) params.push(`error="${shape.bearerError}"`);
  if (reason === "insufficient_scope" && options.requiredScope) params.push(`scope="${options.requiredScope}"`);
  if (options.resourceMetadata) params.push(`resource_metadata="${options.resourceMetadata}"`);
  return `Bearer ${params.join(", ")}`;
}

/** An RFC 9457 problem+json response for a deny reason. */
export function problemResponse(reason: DenyReason, options: DenyOptions): Response {
  const shape = WIRE[reason];
  const body = {
    type: `https://portcullis.dev/problems/${reason.replace(/_/g, "-")}`,
    title: shape.title,
    status: shape.status,
    reason,
    request_id: options.requestId,
    ...options.extensions,
  };
  const headers = new Headers({
    "content-type": "application/problem+json",
    "cache-control": "no-store",
    "x-request-id": options.requestId,
  });
  const challenge = bearerChallenge(reason, options);
  if (challenge) headers.set("www-authenticate", challenge);
  if (options.allow) headers.set("allow", options.allow);
  if (options.retryAfterSeconds !== undefined) {
    headers.set("retry-after", String(Math.max(0, Math.ceil(options.retryAfterSeconds))));
  }
  return new Response(JSON.stringify(body), { status: shape.status, headers });
}
