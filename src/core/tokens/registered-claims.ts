// The JWT checks that follow a valid signature (RFC 7519 §4.1, RFC 8725 §3.11): header `typ`,
// `iss`, and the NumericDate claims against the issuer's clock skew. The order, reasons and
// `claim_<name>_<reason>` details are those of jose's `jwtVerify` with `requiredClaims:
// ["exp"]` (test/core/token-differential.test.ts compares the two); refusing `iat` in the
// future, a sender-constrained token (`cnf`) and a lifetime past the issuer's bound are ours.

import type { DenyReason } from "../deny";
import type { ResolvedIssuer } from "../policy";
import type { JsonObject } from "./compact";

export type ClaimCheck = { ok: true; exp: number } | { ok: false; reason: DenyReason; detail: string };

/**
 * A media type compared as jose does (RFC 7515 §4.1.9): case-insensitively, and `at+jwt`
 * equal to `application/at+jwt`.
 */
function normalizeTyp(typ: string): string {
  const lower = typ.toLowerCase();
  return typ.includes("/") ? lower : `application/${lower}`;
}

function invalid(claim: string, why: "missing" | "invalid" | "check_failed"): ClaimCheck {
  return { ok: false, reason: "token_invalid", detail: `claim_${claim}_${why}` };
}

/** A NumericDate claim: absent, or a JSON number (anything else is refused). */
function numericDate(payload: JsonObject, claim: string): number | undefined | null {
  const value = payload[claim];
  if (value === undefined) return undefined;
  return typeof value === "number" ? value : null;
}

/**
 * @param nowMs milliseconds since the epoch; like jose, the claims are compared with the
 *   current second (rounded down), except `iat`, compared with the exact time (plus the skew).
 */
export function checkRegisteredClaims(
  header: JsonObject,
  payload: JsonObject,
  issuer: ResolvedIssuer,
  nowMs: number,
): ClaimCheck {
  if (issuer.typ !== undefined) {
    if (typeof header.typ !== "string" || normalizeTyp(header.typ) !== normalizeTyp(issuer.typ))
      return invalid("typ", "check_failed");
  }
  if (!Object.hasOwn(payload, "exp")) return invalid("exp", "missing");
  // The issuer was chosen by this exact `iss`; compared again so this check stands on its own.
  if (payload.iss !== issuer.issuer) return { ok: false, reason: "issuer_unknown", detail: "iss" };

  const now = Math.floor(nowMs / 1000);
  const skew = issuer.clockSkewS;
  const iat = numericDate(payload, "iat");
  if (iat === null) return invalid("iat", "invalid");
  const nbf = numericDate(payload, "nbf");
  // A non-numeric `nbf` is refused as one not yet reached: that is how every `nbf` failure
  // was reported before, and audit records keep reading the same.
  if (nbf === null || (nbf !== undefined && nbf > now + skew))
    return { ok: false, reason: "token_not_yet_valid", detail: "nbf" };
  const exp = numericDate(payload, "exp");
  if (typeof exp !== "number") return invalid("exp", "invalid");
  if (exp <= now - skew) return { ok: false, reason: "token_expired", detail: "exp" };
  // jose only bounds `iat` with maxTokenAge (which would also require it); a token issued
  // in the future is refused here.
  if (iat !== undefined && iat > nowMs / 1000 + skew)
    return { ok: false, reason: "token_invalid", detail: "iat_in_future" };
  // A token good for longer than the policy allows (a client or issuer misconfigured to mint
  // year-long tokens, whose theft would last as long), counted from its `iat`, else from its
  // `nbf`, or from now where it says neither (then refused only while what is left of it is
  // longer than the bound).
  if (issuer.maxLifetimeS && exp - (iat ?? nbf ?? now) > issuer.maxLifetimeS + skew)
    return { ok: false, reason: "token_invalid", detail: "lifetime_too_long" };
  // A token bound to a key (`cnf`: DPoP, RFC 9449; mutual TLS, RFC 8705) is good only with
  // proof of that key, which the edge does not check: taken as a bearer token, a stolen one
  // would work anywhere, so it is refused rather than downgraded.
  if (payload.cnf !== undefined) return { ok: false, reason: "token_invalid", detail: "sender_constrained" };
  return { ok: true, exp };
}
