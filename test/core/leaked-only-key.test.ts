// An issuer that republishes its only key with its private part has answered: the key leaked.
// That set is not a failed fetch, which would keep the last good set (the leaked key in it)
// serving for up to max_stale_s; the key is withdrawn, and rotation_grace_s applies.
import { env } from "cloudflare:workers";
import { exportJWK } from "jose";
import { describe, expect, it } from "vitest";
import type { KeyValueStore } from "../../src/core/jwks/key-store";
import { compilePolicy } from "../../src/core/policy";
import type { OidcIssuerConfig } from "../../src/core/policy-types";
import { TokenVerifier } from "../../src/core/tokens/verify";
import { AUDIENCE, issuerServer, makeIssuer, type TestIssuer, type TestKey } from "../support/issuers";
import { settleDeferred } from "../support/waiting";

const kv = (env as unknown as { JWKS_CACHE: KeyValueStore }).JWKS_CACHE;

/** A verifier with the token cache on, the runtime's KV, and a clock the test moves. */
function verifierFor(issuer: TestIssuer, settings: Partial<OidcIssuerConfig>) {
  const clock = { ms: Date.now() };
  const policy = compilePolicy({
    version: 1,
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], ...settings } },
    upstreams: { o: { url: "https://origin.test" } },
    routes: [{ name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" }],
  });
  const verifier = new TokenVerifier(policy, {
    fetch: (input, init) => fetch(input, init),
    kv,
    now: () => clock.ms,
    tokenCacheEntries: 100,
  });
  const pending: Promise<unknown>[] = [];
  return {
    advance: (seconds: number) => {
      clock.ms += seconds * 1000;
    },
    sign: (key: TestKey, claims: Record<string, unknown> = {}) => {
      const now = Math.floor(clock.ms / 1000);
      return issuer.sign({ iat: now, exp: now + 3600, ...claims }, { key });
    },
    verify: (token: string) => verifier.verify(token, ["idp"], undefined, (work) => pending.push(work)),
    /** The deferred work, and what it deferred in turn (a refresh's KV writes), as waitUntil waits. */
    settle: () => settleDeferred(pending),
  };
}

async function publishWithPrivatePart(issuer: TestIssuer, key: TestKey) {
  const jwk = { ...(await exportJWK(key.privateKey)), kid: key.kid, alg: key.alg, use: "sig" };
  const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
    method: "POST",
    body: JSON.stringify({ jwks: { keys: [jwk] } }),
  });
  expect(response.ok).toBe(true);
}

/**
 * A token verified and cached 250 s into a 300 s TTL; then the issuer republishes its only key
 * with its private part, and the clock moves past the TTL, so the next use refreshes first.
 */
async function cachedThenLeaked(graceS: number) {
  const issuer = await makeIssuer();
  const key = issuer.keys[0] as TestKey;
  const edge = verifierFor(issuer, { jwks_uri: `${issuer.url}/jwks`, cache_ttl_s: 300, rotation_grace_s: graceS });
  expect(await edge.verify(await edge.sign(key))).toMatchObject({ ok: true, keySource: "fetch" });
  await edge.settle();
  edge.advance(250);
  const token = await edge.sign(key);
  expect(await edge.verify(token)).toMatchObject({ ok: true, keySource: "memory" });
  expect(await edge.verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
  await publishWithPrivatePart(issuer, key);
  edge.advance(60);
  return { key, token, ...edge };
}

describe("an issuer's only key republished with its private part", () => {
  it("with rotation_grace_s 0, a cached token of that key stops at the refresh that sees the leak", async () => {
    const { token, verify } = await cachedThenLeaked(0);
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "kid_unknown" });
  });

  it("with rotation_grace_s 0, a token anyone signs with the published private key is refused", async () => {
    const { key, token, verify, settle, sign } = await cachedThenLeaked(0);
    await verify(token);
    await settle();
    expect(await verify(await sign(key, { sub: "chosen-by-the-reader" }))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
  });

  it("with rotation_grace_s 60, the key's tokens stop once the grace window from the leak has run", async () => {
    const { token, verify, settle, advance } = await cachedThenLeaked(60);
    // Within the window: the token was signed before the leak was seen.
    expect(await verify(token)).toMatchObject({ ok: true });
    await settle();
    // Refreshes after the leak find the same set: the window is not moved on.
    advance(40);
    await verify(token);
    await settle();
    advance(150);
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid" });
  });
});
