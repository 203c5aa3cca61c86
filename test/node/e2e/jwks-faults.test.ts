// Whole stack with the provider's key-set endpoint failing: the edge reaches the provider
// through a fault proxy (the provider's issuer is the proxy's URL, so discovery sends the
// edge to the proxy's /jwks), and the proxy is switched into each way such an endpoint fails.
// Tokens always come from the provider itself, as clients get them.
//
// The tests run in order and share one edge, whose key cache carries over from one to the
// next, as it would in production. Cache ages are minutes (cache_ttl_s has a 300 s floor),
// so the max-stale test moves the edge's clock with the test-only entry's clock offset
// (fixtures/edge-worker.js) instead of waiting; everything else runs in real time.
import type { JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Edge, freePort, startEdge } from "./support/edge";
import { type FaultProxy, type JwksFault, startFaultProxy } from "./support/fault-proxy";
import { e2ePolicy } from "./support/policy";
import { decodeJwt, newSigningKey, type RunningProvider, startProvider } from "./support/provider";
import { callEdge, type EchoOrigin, sleep, startOrigin } from "./support/stack";

const CACHE_TTL_S = 300;
const MAX_STALE_S = 60;
const REFRESH_COOLDOWN_S = 1;
/** Waiting this long (real time) lets the next refresh attempt through the cooldown. */
const PAST_COOLDOWN_MS = REFRESH_COOLDOWN_S * 1000 + 200;
const FETCH_TIMEOUT_MS = 500;
const SLOW_ENDPOINT_DELAY_MS = 5_000;
const MAX_JWKS_BYTES = 16 * 1024;

let origin: EchoOrigin;
let proxy: FaultProxy;
let provider: RunningProvider;
let edge: Edge;
let clockOffsetMs = 0;

beforeAll(async () => {
  origin = await startOrigin();
  proxy = await startFaultProxy();
  provider = await startProvider({
    issuer: proxy.url,
    clients: [{ id: "billing-service", scope: "api:read", tenant: "acme", tokenTtlS: 3600 }],
    keys: [await newSigningKey()],
  });
  proxy.setTarget(provider.url);
  edge = await startEdge({
    policy: e2ePolicy({
      issuer: provider.issuer,
      originUrl: origin.url,
      deadOriginUrl: `http://127.0.0.1:${await freePort()}`,
      issuerSettings: {
        cache_ttl_s: CACHE_TTL_S,
        max_stale_s: MAX_STALE_S,
        refresh_cooldown_s: REFRESH_COOLDOWN_S,
        fetch_timeout_ms: FETCH_TIMEOUT_MS,
        max_jwks_bytes: MAX_JWKS_BYTES,
      },
    }),
    probePath: "/public/ready",
  });
}, 120_000);

afterAll(async () => {
  await edge?.stop();
  await Promise.all([provider?.close(), proxy?.close(), origin?.close()]);
}, 30_000);

/** A fresh token (fresh tokens are never in the edge's verified-token cache). */
const freshToken = async () => (await provider.token("billing-service")).token;

async function call(token: string) {
  return callEdge(edge.url, "/v1/things", { token });
}

async function expectAllowed(token: string) {
  const answer = await call(token);
  expect(answer.status, answer.text).toBe(200);
  expect(origin.sawMarker(answer.marker)).toHaveLength(1);
  return answer;
}

async function expectRefused(token: string, status: number, reason: string, detail?: string) {
  const answer = await call(token);
  expect(answer.status, answer.text).toBe(status);
  expect(answer.headers.get("content-type")).toBe("application/problem+json");
  expect(answer.body.reason).toBe(reason);
  expect(origin.sawMarker(answer.marker)).toEqual([]);
  if (detail) expect((await edge.auditRecord(answer.requestId as string)).detail).toBe(detail);
  return answer;
}

/** Publish a new key next to the current ones and sign with it; returns a token it signed. */
async function rotateProvider(): Promise<{ kid: string; token: string }> {
  const next: JWK = await newSigningKey();
  provider.rotate([next, ...provider.currentKeys()], next.kid as string);
  const token = await freshToken();
  expect(decodeJwt(token).header.kid).toBe(next.kid);
  return { kid: next.kid as string, token };
}

async function advanceEdgeClock(ms: number) {
  clockOffsetMs += ms;
  await edge.setClockOffset(clockOffsetMs);
}

describe("key-set endpoint faults", () => {
  it("cold and down: 503 jwks_unavailable with Retry-After; back up: recovers without a restart", async () => {
    await proxy.down();
    const token = await freshToken();
    const refused = await expectRefused(token, 503, "jwks_unavailable", "jwks_fetch_failed");
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);

    await proxy.up();
    await sleep(PAST_COOLDOWN_MS);
    await expectAllowed(token);
    expect(proxy.stats).toMatchObject({ discovery: 1, jwks: 1 });
  });

  it("warm and down: serves the last good key set up to the max-stale bound, then 503; recovers when back", async () => {
    await proxy.down();
    // Fresh key set: verified from memory, no fetch needed.
    await expectAllowed(await freshToken());
    // Past cache_ttl_s: stale, still served; the refresh after each response fails.
    await advanceEdgeClock((CACHE_TTL_S + 1) * 1000);
    await expectAllowed(await freshToken());
    await advanceEdgeClock((REFRESH_COOLDOWN_S + 1) * 1000);
    await expectAllowed(await freshToken());
    // Past cache_ttl_s + max_stale_s since the last good fetch: no usable key set.
    await advanceEdgeClock(MAX_STALE_S * 1000);
    const refused = await expectRefused(await freshToken(), 503, "jwks_unavailable", "jwks_fetch_failed");
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);

    const jwksFetches = proxy.stats.jwks;
    await proxy.up();
    await advanceEdgeClock((REFRESH_COOLDOWN_S + 1) * 1000);
    await expectAllowed(await freshToken());
    expect(proxy.stats.jwks).toBe(jwksFetches + 1);
  });

  it("slow (beyond fetch_timeout_ms): the edge gives up on the fetch (jwks_timeout), the last good set kept", async () => {
    const rotated = await rotateProvider();
    proxy.setJwksFault({ mode: "slow", delayMs: SLOW_ENDPOINT_DELAY_MS });
    await sleep(PAST_COOLDOWN_MS);
    const before = proxy.stats.jwks;
    // The issuer could not be asked about the new kid: 503, never a verdict against the token.
    // The endpoint would have served the new key after SLOW_ENDPOINT_DELAY_MS: an edge that
    // waited it out would have let the token through, so jwks_timeout shows it gave up on the
    // fetch (after fetch_timeout_ms) rather than waiting.
    await expectRefused(rotated.token, 503, "jwks_unavailable", "jwks_timeout");
    expect(proxy.stats.jwks).toBe(before + 1);
    // Meanwhile a known key verifies from the kept set, without asking the slow endpoint again.
    await expectAllowed(await freshTokenFromKnownKey(rotated.kid));
    expect(proxy.stats.jwks).toBe(before + 1);

    proxy.setJwksFault({ mode: "pass" });
    await sleep(PAST_COOLDOWN_MS);
    await expectAllowed(rotated.token);
  });

  const badAnswers: [string, JwksFault, string][] = [
    ["garbage", { mode: "garbage" }, "jwks_not_json"],
    ["an HTML login page", { mode: "html" }, "jwks_not_json"],
    ["an oversized body (sent chunked, no content-length)", { mode: "oversized", bytes: 256 * 1024 }, "jwks_too_large"],
    ["an error status", { mode: "status", status: 500 }, "jwks_http_status"],
  ];

  it("garbage, HTML, oversized, error status: each refused, the last good set kept, nothing cached", async () => {
    const rotated = await rotateProvider();
    for (const [what, fault, detail] of badAnswers) {
      proxy.setJwksFault(fault);
      await sleep(PAST_COOLDOWN_MS);
      const before = proxy.stats.jwks;
      // The new key cannot be had: its token is refused as undecidable, not as invalid...
      await expectRefused(rotated.token, 503, "jwks_unavailable", detail);
      expect(proxy.stats.jwks, `${what}: one attempt`).toBe(before + 1);
      // ...and the keys from the last good set still verify.
      await expectAllowed(await freshTokenFromKnownKey(rotated.kid));
    }
    // Nothing bad was cached: the first good answer is adopted.
    proxy.setJwksFault({ mode: "pass" });
    await sleep(PAST_COOLDOWN_MS);
    await expectAllowed(rotated.token);
  });

  it("a key set without the needed kid (lagging behind the signing key): refused, known keys kept, next good set adopted", async () => {
    const rotated = await rotateProvider();
    proxy.setJwksFault({ mode: "without_kid", kid: rotated.kid });
    await sleep(PAST_COOLDOWN_MS);
    const before = proxy.stats.jwks;
    await expectRefused(rotated.token, 401, "token_invalid", "kid_unknown");
    expect(proxy.stats.jwks).toBe(before + 1);
    await expectAllowed(await freshTokenFromKnownKey(rotated.kid));

    proxy.setJwksFault({ mode: "pass" });
    await sleep(PAST_COOLDOWN_MS);
    await expectAllowed(rotated.token);
  });
});

/**
 * A fresh token signed by the key published before `newKid`, which the edge already has.
 * The provider is switched back to signing with it for one token (it is still published),
 * as providers do while a rotation overlaps.
 */
async function freshTokenFromKnownKey(newKid: string): Promise<string> {
  const keys = provider.currentKeys();
  const known = keys.find((key) => key.kid !== newKid)?.kid as string;
  provider.rotate(keys, known);
  try {
    const token = await freshToken();
    expect(decodeJwt(token).header.kid).toBe(known);
    return token;
  } finally {
    provider.rotate(keys, newKid);
  }
}
