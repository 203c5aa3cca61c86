// The local stack's signing keys, shared by the development identity provider (dev/idp.mjs)
// and the token CLI (dev/token.mjs) so both always agree. The names it signs for are in
// dev/local-stack.mjs.
//
// Keys are generated on first use and kept in .dev/keys.json (git-ignored): private JWKs
// for development only, never for anything real. Delete the file to rotate them.
import { randomBytes } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { exportJWK, generateKeyPair, importJWK } from "jose";

/** Where the keys live: .dev/keys.json in the repository, or $PORTCULLIS_DEV_KEYS. */
export const KEYS_FILE =
  process.env.PORTCULLIS_DEV_KEYS || join(dirname(fileURLToPath(import.meta.url)), "..", ".dev", "keys.json");

/** Which key signs what: OIDC access tokens (ES256) and Access assertions (RS256). */
const KEY_SPECS = { oidc: "ES256", access: "RS256" };

/** A short random key id, like the opaque ids real providers use. */
function newKid() {
  return randomBytes(6).toString("base64url");
}

async function generateKeys() {
  const keys = {};
  for (const [use, alg] of Object.entries(KEY_SPECS)) {
    const { privateKey } = await generateKeyPair(alg, { extractable: true });
    keys[use] = { ...(await exportJWK(privateKey)), kid: newKid(), alg, use: "sig" };
  }
  return { created: new Date().toISOString(), keys };
}

function readKeysFile(file) {
  const text = readFileSync(file, "utf8");
  let stored;
  try {
    stored = JSON.parse(text);
  } catch {
    throw new Error(`${file} is not valid JSON; delete the file to generate new keys`);
  }
  for (const [use, alg] of Object.entries(KEY_SPECS)) {
    const jwk = stored?.keys?.[use];
    if (!jwk || jwk.alg !== alg || typeof jwk.kid !== "string" || typeof jwk.d !== "string") {
      throw new Error(`${file}: no private ${alg} key for "${use}"; delete the file to generate new keys`);
    }
  }
  return stored;
}

/**
 * Writes the key file only if none exists yet. The IdP and the token CLI may start at the
 * same moment; linking a finished temporary file into place is atomic, so the loser of the
 * race reads the winner's keys instead of overwriting them or reading half a file.
 */
function publishKeysFile(file, stored) {
  mkdirSync(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.${newKid()}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
  try {
    linkSync(temporary, file);
    return true;
  } catch (error) {
    if (error.code === "EEXIST") return false;
    throw error;
  } finally {
    rmSync(temporary, { force: true });
  }
}

/**
 * The stored private JWKs, generated on first use. `onCreate` is called with the file path
 * when this call created the keys (callers report it on stderr, never stdout).
 */
export async function loadPrivateJwks({ file = KEYS_FILE, onCreate } = {}) {
  try {
    return readKeysFile(file).keys;
  } catch (error) {
    if (error.code !== "ENOENT") throw error;
  }
  if (publishKeysFile(file, await generateKeys())) onCreate?.(file);
  return readKeysFile(file).keys;
}

/** The public half of a private JWK: what a key set may publish. */
export function publicJwk(jwk) {
  const { kty, crv, x, y, n, e, kid, alg, use } = jwk;
  const fields = { kty, crv, x, y, n, e, kid, alg, use };
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

/** A signing key for jose: `{ key, kid, alg }`. */
export async function signingKey(jwk) {
  return { key: await importJWK(jwk, jwk.alg), kid: jwk.kid, alg: jwk.alg };
}
