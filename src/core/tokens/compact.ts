// Bounded pre-parsing of a compact JWS, before jose sees it: cap the size, demand exactly
// three canonical base64url segments, and read the header and payload we need to pick the
// issuer and key. jose parses the header before checking the signature, so an unbounded
// token would be unbounded work.

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Last characters whose unused low bits are zero, by segment length mod 4. */
const CANONICAL_TAIL: Record<number, RegExp> = { 2: /[AQgw]$/, 3: /[AEIMQUYcgkosw048]$/ };
const MAX_KID_LENGTH = 256;

export interface PeekedToken {
  alg: string;
  kid?: string;
  typ?: string;
  /** `iss` read before verification, only to choose the issuer's keys. */
  iss: string;
}

export type PeekResult = { ok: true; token: PeekedToken } | { ok: false; detail: string };

function isCanonicalSegment(segment: string): boolean {
  const rest = segment.length % 4;
  if (rest === 1) return false;
  const tail = CANONICAL_TAIL[rest];
  return tail === undefined || tail.test(segment);
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function decodeSegment(segment: string): unknown {
  const binary = atob(segment.replace(/-/g, "+").replace(/_/g, "/"));
  // Almost every JOSE header and claim set is ASCII: parse it as is. Otherwise decode UTF-8
  // strictly, so invalid byte sequences are refused rather than replaced.
  if (!/[\x80-\xff]/.test(binary)) return JSON.parse(binary);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return JSON.parse(utf8.decode(bytes));
}

export function peekToken(token: string, maxBytes: number): PeekResult {
  if (token.length > maxBytes) return { ok: false, detail: "token_too_large" };
  if (!COMPACT_JWS.test(token)) return { ok: false, detail: "not_compact_jws" };
  const segments = token.split(".");
  if (!segments.every(isCanonicalSegment)) return { ok: false, detail: "non_canonical_base64url" };
  let header: Record<string, unknown>;
  try {
    const decoded = decodeSegment(segments[0] as string);
    if (typeof decoded !== "object" || decoded === null || Array.isArray(decoded)) throw new TypeError("not an object");
    header = decoded as Record<string, unknown>;
  } catch {
    return { ok: false, detail: "bad_header" };
  }
  if (typeof header.alg !== "string") return { ok: false, detail: "alg_missing" };
  if (header.crit !== undefined) return { ok: false, detail: "crit_not_supported" };
  if (header.b64 !== undefined) return { ok: false, detail: "b64_not_supported" };
  if (header.enc !== undefined || header.zip !== undefined) return { ok: false, detail: "jwe_not_accepted" };
  if (
    header.kid !== undefined &&
    (typeof header.kid !== "string" || header.kid.length === 0 || header.kid.length > MAX_KID_LENGTH)
  ) {
    return { ok: false, detail: "kid_invalid" };
  }
  let payload: unknown;
  try {
    payload = decodeSegment(segments[1] as string);
  } catch {
    return { ok: false, detail: "bad_payload" };
  }
  if (typeof payload !== "object" || payload === null || Array.isArray(payload))
    return { ok: false, detail: "bad_payload" };
  const iss = (payload as { iss?: unknown }).iss;
  if (typeof iss !== "string") return { ok: false, detail: "iss_missing" };
  return {
    ok: true,
    token: {
      alg: header.alg,
      ...(typeof header.kid === "string" ? { kid: header.kid } : {}),
      ...(typeof header.typ === "string" ? { typ: header.typ } : {}),
      iss,
    },
  };
}
