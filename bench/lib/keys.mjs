// Signing keys, the key set every variant trusts, and the token workloads. Generated fresh
// for every run: nothing secret is stored, and every token is valid for the whole run.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";

export const ISSUER = "https://issuer.bench.example";
export const AUDIENCE = "https://api.bench.example";
export const ALGORITHMS = ["ES256", "RS256", "EdDSA"];
export const TENANTS = 10;

/** One key pair per algorithm; kids are stable names so a result file is readable. */
export async function makeKeys() {
  const keys = {};
  for (const alg of ALGORITHMS) {
    const { privateKey, publicKey } = await generateKeyPair(alg, alg === "EdDSA" ? { crv: "Ed25519" } : {});
    const jwk = { ...(await exportJWK(publicKey)), kid: `bench-${alg.toLowerCase()}`, alg, use: "sig" };
    keys[alg] = { privateKey, jwk };
  }
  return { keys, jwks: { keys: ALGORITHMS.map((alg) => keys[alg].jwk) } };
}

/** Claims the full-pipeline policy authorises: scope, group and a tenant per user. */
function claimsFor(index, nowS, ttlS) {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: `user-${index}`,
    tenant_id: `tenant-${index % TENANTS}`,
    scope: "api:read profile",
    groups: ["bench-readers"],
    iat: nowS - 5,
    exp: nowS + ttlS,
  };
}

export async function signTokens(keys, alg, count, { ttlS = 6 * 3600, offset = 0 } = {}) {
  const nowS = Math.floor(Date.now() / 1000);
  const { privateKey, jwk } = keys[alg];
  const tokens = [];
  for (let i = 0; i < count; i += 1) {
    tokens.push(
      await new SignJWT(claimsFor(offset + i, nowS, ttlS))
        .setProtectedHeader({ alg, kid: jwk.kid, typ: "JWT" })
        .sign(privateKey),
    );
  }
  return tokens;
}

/**
 * Token workloads, one file of tokens each (one per line) for the wrk script:
 *   es256   `count` distinct ES256 tokens, rotated: every request needs a verification
 *   warm    one ES256 token: after the first request, a verified-token cache answers
 *   rs256 / eddsa   `count` distinct tokens of that algorithm, rotated
 */
export async function makeWorkloads(keys, dir, count, names = ["es256", "warm", "rs256", "eddsa"]) {
  const make = {
    es256: () => signTokens(keys, "ES256", count),
    warm: () => signTokens(keys, "ES256", 1, { offset: count }),
    rs256: () => signTokens(keys, "RS256", count),
    eddsa: () => signTokens(keys, "EdDSA", count),
  };
  const workloads = {};
  for (const name of names) {
    const tokens = await make[name]();
    const file = join(dir, `tokens-${name}.txt`);
    writeFileSync(file, `${tokens.join("\n")}\n`);
    workloads[name] = { name, file, count: tokens.length, first: tokens[0], bytes: tokens[0].length };
  }
  return workloads;
}
