// The one strict parse of a compact JWS (RFC 7515 §7.1), of a token the verifier has already
// capped in size: demand exactly three
// canonical base64url segments, decode the header and payload once, and hand back everything
// signature and claim checks need — the decoded objects, the signing input and the signature
// bytes — so nothing on the request path decodes the token a second time.

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Last characters whose unused low bits are zero, by segment length mod 4. */
const CANONICAL_TAIL: Record<number, RegExp> = { 2: /[AQgw]$/, 3: /[AEIMQUYcgkosw048]$/ };
/** The longest `kid` a token may name (and so the longest a kept key may have). */
export const MAX_KID_LENGTH = 256;

/** A decoded JOSE header or JWT claims set: always a plain JSON object. */
export type JsonObject = Record<string, unknown>;

export interface ParsedToken {
  /** The protected header, as decoded. `alg` and `kid` below are its checked members. */
  header: JsonObject;
  /** The claims set, as decoded, before any check but "it is a JSON object". */
  payload: JsonObject;
  alg: string;
  kid?: string;
  /** `iss` read before verification, only to choose the issuer's keys. */
  iss: string;
  /** ASCII bytes of `header.payload`, what the signature covers (RFC 7515 §5.2). */
  signingInput: Uint8Array;
  signature: Uint8Array;
}

export type ParseResult = { ok: true; token: ParsedToken } | { ok: false; detail: string };

function isCanonicalSegment(segment: string): boolean {
  const rest = segment.length % 4;
  if (rest === 1) return false;
  const tail = CANONICAL_TAIL[rest];
  return tail === undefined || tail.test(segment);
}

/** base64url → one char per byte (`atob`'s binary string); throws on characters outside it. */
export function binaryOf(segment: string): string {
  return atob(segment.replace(/-/g, "+").replace(/_/g, "/"));
}

function bytesOf(binary: string): Uint8Array {
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** A segment that must hold a JSON object; undefined when it does not. */
function decodeObject(segment: string): JsonObject | undefined {
  let decoded: unknown;
  try {
    const binary = binaryOf(segment);
    // Almost every JOSE header and claim set is ASCII: parse it as is. Otherwise decode UTF-8
    // strictly, so invalid byte sequences are refused rather than replaced.
    decoded = JSON.parse(/[\x80-\xff]/.test(binary) ? utf8.decode(bytesOf(binary)) : binary);
  } catch {
    return undefined;
  }
  if (typeof decoded !== "object" || decoded === null || Array.isArray(decoded)) return undefined;
  return decoded as JsonObject;
}

const ascii = new TextEncoder();

export function parseToken(token: string): ParseResult {
  if (!COMPACT_JWS.test(token)) return { ok: false, detail: "not_compact_jws" };
  const segments = token.split(".") as [string, string, string];
  if (!segments.every(isCanonicalSegment)) return { ok: false, detail: "non_canonical_base64url" };
  const header = decodeObject(segments[0]);
  if (!header) return { ok: false, detail: "bad_header" };
  if (typeof header.alg !== "string") return { ok: false, detail: "alg_missing" };
  // No extension is understood, so any `crit` (RFC 7515 §4.1.11) and the unencoded-payload
  // option (RFC 7797) are refused outright, as are JWE members.
  if (header.crit !== undefined) return { ok: false, detail: "crit_not_supported" };
  if (header.b64 !== undefined) return { ok: false, detail: "b64_not_supported" };
  if (header.enc !== undefined || header.zip !== undefined) return { ok: false, detail: "jwe_not_accepted" };
  if (
    header.kid !== undefined &&
    (typeof header.kid !== "string" || header.kid.length === 0 || header.kid.length > MAX_KID_LENGTH)
  ) {
    return { ok: false, detail: "kid_invalid" };
  }
  const payload = decodeObject(segments[1]);
  if (!payload) return { ok: false, detail: "bad_payload" };
  if (typeof payload.iss !== "string") return { ok: false, detail: "iss_missing" };
  return {
    ok: true,
    token: {
      header,
      payload,
      alg: header.alg,
      ...(typeof header.kid === "string" ? { kid: header.kid } : {}),
      iss: payload.iss,
      // The compact form is ASCII, so encoding `header.payload` gives exactly its bytes.
      signingInput: ascii.encode(token.slice(0, segments[0].length + 1 + segments[1].length)),
      signature: bytesOf(binaryOf(segments[2])),
    },
  };
}
