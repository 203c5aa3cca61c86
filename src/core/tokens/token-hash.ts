// The token's correlation hash for audit records: the first 16 hex characters of a SHA-256 of
// its signed part (header and payload). Not of the whole token: an ECDSA signature (r, s) has
// a twin (r, n − s) that verifies too, so one stolen ES256 token could be replayed as a second
// string with a second hash; every valid signature of one signed part is the same token. It is
// only ever read after the response, so it is computed lazily, at most once per verified token
// (the memo lives with the verified-token cache entry).

const TOKEN_HASH_CHARS = 16;
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));
const encoder = new TextEncoder();

export async function tokenHash(token: string): Promise<string> {
  const signedPart = token.slice(0, token.lastIndexOf("."));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(signedPart)));
  let hex = "";
  for (const byte of digest.subarray(0, TOKEN_HASH_CHARS / 2)) hex += HEX[byte];
  return hex;
}

/** A memoised `tokenHash(token)`: nothing is hashed until the first call. */
export function lazyTokenHash(token: string): () => Promise<string> {
  let hash: Promise<string> | undefined;
  return () => {
    hash ??= tokenHash(token);
    return hash;
  };
}
