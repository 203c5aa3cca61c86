// Key rotation under traffic, whole stack: several clients call the edge for about 20 s,
// each getting fresh tokens from the real provider as a real client would, while the
// provider rotates its signing key twice (publish a new key and sign with it; later retire
// the old one). Mixed into the traffic are tokens the edge must refuse. Expected: no valid
// request denied, no invalid one accepted, and a small, bounded number of key-set fetches.
//
// How the provider rotates: `rotate()` replaces the running oidc-provider instance with a
// new one that has the new key set — what restarting the provider with new keys does —
// behind the same listening socket (see support/provider.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Edge, freePort, startEdge } from "./support/edge";
import { e2ePolicy } from "./support/policy";
import {
  decodeJwt,
  type IssuedToken,
  newSigningKey,
  OTHER_RESOURCE,
  type RunningProvider,
  startProvider,
  tamper,
} from "./support/provider";
import { callEdge, type EchoOrigin, sleep, startOrigin } from "./support/stack";

const CLIENTS = 8;
const REQUESTS_PER_CLIENT = 250;
/** Each client sends one request every INTERVAL_MS: 8 × 250 requests over about 20 s. */
const INTERVAL_MS = 80;
/** A client asks for a new token every this many requests, or when its token is near expiry. */
const REQUESTS_PER_TOKEN = 25;
const TOKEN_TTL_S = 60;
const RENEW_BEFORE_EXPIRY_MS = 10_000;
/** Every 10th request of each client carries a token the edge must refuse. */
const INVALID_EVERY = 10;
/** Seconds into the load: publish and sign with a new key; retire the previous one. */
const ROTATIONS = [
  { publishAt: 4_000, retireAt: 8_000 },
  { publishAt: 12_000, retireAt: 16_000 },
];
/**
 * The edge refreshes an issuer's key set for an unknown `kid` at most once per
 * refresh_cooldown_s (default 30 s). Two rotations 8 s apart within a 20 s window need a
 * cooldown well below 8 s to both be picked up on first sight of the new key; 2 s does that
 * with room to spare, and is still long enough that the cooldown is what bounds the fetches
 * (a cooldown of 1 s, the minimum, would also pass).
 */
const REFRESH_COOLDOWN_S = 2;

const LOAD_CLIENTS = Array.from({ length: CLIENTS }, (_, i) => ({
  id: `load-client-${i + 1}`,
  scope: "api:read",
  tenant: "acme",
  tokenTtlS: TOKEN_TTL_S,
}));
const SHORT_LIVED = { id: "short-lived", scope: "api:read", tenant: "acme", tokenTtlS: 1 };

type InvalidKind = "untrusted_issuer" | "other_audience" | "expired" | "tampered";
const EXPECTED_REASON: Record<InvalidKind, string> = {
  untrusted_issuer: "issuer_unknown",
  other_audience: "audience_mismatch",
  expired: "token_expired",
  tampered: "token_invalid",
};
const INVALID_KINDS = Object.keys(EXPECTED_REASON) as InvalidKind[];

let origin: EchoOrigin;
let trusted: RunningProvider;
let untrusted: RunningProvider;
let edge: Edge;

beforeAll(async () => {
  origin = await startOrigin();
  trusted = await startProvider({ clients: [...LOAD_CLIENTS, SHORT_LIVED], keys: [await newSigningKey()] });
  untrusted = await startProvider({ clients: LOAD_CLIENTS, keys: [await newSigningKey()] });
  edge = await startEdge({
    policy: e2ePolicy({
      issuer: trusted.issuer,
      originUrl: origin.url,
      deadOriginUrl: `http://127.0.0.1:${await freePort()}`,
      // A 1 s skew lets tokens that expired 2 s ago count as expired without a long wait.
      issuerSettings: { refresh_cooldown_s: REFRESH_COOLDOWN_S, clock_skew_s: 1 },
    }),
    probePath: "/public/ready",
  });
}, 120_000);

afterAll(async () => {
  await edge?.stop();
  await Promise.all([trusted?.close(), untrusted?.close(), origin?.close()]);
}, 30_000);

interface Outcome {
  client: number;
  valid: boolean;
  kind?: InvalidKind;
  kid: string;
  status: number;
  reason?: string;
  marker: string;
  atMs: number;
}

describe("signing-key rotation under traffic", () => {
  it("denies no valid request, accepts no invalid one, and fetches the key set a bounded number of times", async () => {
    // The refused kinds that need preparing. Expired: real tokens that lived 1 s.
    const pool = {
      untrusted_issuer: await Promise.all(LOAD_CLIENTS.map((c) => untrusted.token(c.id))),
      other_audience: await Promise.all(LOAD_CLIENTS.map((c) => trusted.token(c.id, { resource: OTHER_RESOURCE }))),
      expired: await Promise.all([1, 2, 3, 4].map(() => trusted.token(SHORT_LIVED.id))),
    };
    // Warm the edge as normal traffic would (one discovery, one key-set fetch), and let the
    // short-lived tokens expire beyond the 1 s skew.
    const warm = await callEdge(edge.url, "/v1/things", { token: (await trusted.token(LOAD_CLIENTS[0]!.id)).token });
    expect(warm.status, warm.text).toBe(200);
    await sleep(Math.max(0, Math.max(...pool.expired.map((t) => t.expiresAt)) + 2_100 - Date.now()));
    const fetchesBefore = { ...trusted.stats };

    const started = Date.now();
    const outcomes: Outcome[] = [];
    let tokensFetched = 0;
    const rotationLog: string[] = [];

    const rotate = async () => {
      for (const { publishAt, retireAt } of ROTATIONS) {
        const next = await newSigningKey();
        const kid = next.kid as string;
        const previous = trusted.currentKeys();
        await sleep(Math.max(0, started + publishAt - Date.now()));
        trusted.rotate([next, ...previous], kid);
        rotationLog.push(`${Date.now() - started} ms: publish ${kid} and sign with it`);
        await sleep(Math.max(0, started + retireAt - Date.now()));
        trusted.rotate([next], kid);
        rotationLog.push(`${Date.now() - started} ms: retire ${previous.map((k) => k.kid).join(", ")}`);
      }
    };

    const runClient = async (index: number) => {
      const client = LOAD_CLIENTS[index]!;
      let current: IssuedToken | undefined;
      let used = 0;
      for (let i = 0; i < REQUESTS_PER_CLIENT; i += 1) {
        await sleep(Math.max(0, started + index * 10 + i * INTERVAL_MS - Date.now()));
        if (!current || used >= REQUESTS_PER_TOKEN || current.expiresAt - Date.now() < RENEW_BEFORE_EXPIRY_MS) {
          current = await trusted.token(client.id);
          tokensFetched += 1;
          used = 0;
        }
        let token = current.token;
        let kind: InvalidKind | undefined;
        if (i % INVALID_EVERY === INVALID_EVERY - 1) {
          kind = INVALID_KINDS[(Math.floor(i / INVALID_EVERY) + index) % INVALID_KINDS.length] as InvalidKind;
          if (kind === "tampered") token = tamper(current.token, { org_id: "globex" });
          else token = (pool[kind][(i + index) % pool[kind].length] as IssuedToken).token;
        } else {
          used += 1;
        }
        const answer = await callEdge(edge.url, "/v1/things", { token });
        outcomes.push({
          client: index,
          valid: kind === undefined,
          ...(kind ? { kind } : {}),
          kid: decodeJwt(token).header.kid as string,
          status: answer.status,
          ...(answer.status === 200 ? {} : { reason: answer.body?.reason }),
          marker: answer.marker,
          atMs: Date.now() - started,
        });
      }
    };

    await Promise.all([rotate(), ...LOAD_CLIENTS.map((_, i) => runClient(i))]);
    const elapsedS = (Date.now() - started) / 1000;

    const valid = outcomes.filter((o) => o.valid);
    const invalid = outcomes.filter((o) => !o.valid);
    const validDenied = valid.filter((o) => o.status !== 200);
    const invalidAccepted = invalid.filter((o) => o.status === 200);
    const wrongReason = invalid.filter((o) => o.kind && o.reason !== EXPECTED_REASON[o.kind]);
    const deniedByReason: Record<string, number> = {};
    for (const o of outcomes)
      if (o.status !== 200)
        deniedByReason[o.reason ?? `status ${o.status}`] = (deniedByReason[o.reason ?? `status ${o.status}`] ?? 0) + 1;
    const allowedByKid: Record<string, number> = {};
    for (const o of valid) if (o.status === 200) allowedByKid[o.kid] = (allowedByKid[o.kid] ?? 0) + 1;
    const fetched = {
      discovery: trusted.stats.discovery - fetchesBefore.discovery,
      jwks: trusted.stats.jwks - fetchesBefore.jwks,
    };
    const reachedOrigin = new Set(origin.seen.map((r) => r.headers["x-test-marker"]));

    console.log(
      [
        `key rotation under load: ${outcomes.length} requests in ${elapsedS.toFixed(1)} s from ${CLIENTS} clients (${tokensFetched} tokens fetched from the provider)`,
        ...rotationLog.map((line) => `  rotation: ${line}`),
        `  allowed ${valid.length - validDenied.length} (by signing key: ${JSON.stringify(allowedByKid)})`,
        `  denied ${outcomes.length - (valid.length - validDenied.length) - invalidAccepted.length} by reason: ${JSON.stringify(deniedByReason)}`,
        `  valid denied: ${validDenied.length}, invalid accepted: ${invalidAccepted.length}`,
        `  key-set fetches during the load: discovery ${fetched.discovery}, jwks ${fetched.jwks} (before it: discovery ${fetchesBefore.discovery}, jwks ${fetchesBefore.jwks})`,
      ].join("\n"),
    );

    expect(outcomes).toHaveLength(CLIENTS * REQUESTS_PER_CLIENT);
    expect(validDenied.slice(0, 5)).toEqual([]);
    expect(invalidAccepted.slice(0, 5)).toEqual([]);
    expect(wrongReason.slice(0, 5)).toEqual([]);
    // Every kind of invalid token was tried, and none of them reached the origin.
    for (const kind of INVALID_KINDS) expect(invalid.filter((o) => o.kind === kind).length).toBeGreaterThan(10);
    expect(invalid.filter((o) => reachedOrigin.has(o.marker))).toEqual([]);
    expect(valid.filter((o) => !reachedOrigin.has(o.marker))).toEqual([]);
    // Tokens signed by all three keys were accepted: both rotations were followed.
    expect(Object.keys(allowedByKid)).toHaveLength(3);
    // One key-set fetch per new signing key (two), never one per request: the cooldown and
    // single-flight refresh bound them. Discovery is not repeated (jwks_uri is kept).
    expect(fetched.jwks).toBeGreaterThanOrEqual(2);
    expect(fetched.jwks).toBeLessThanOrEqual(4);
    expect(fetched.discovery).toBe(0);
    expect(untrusted.stats).toMatchObject({ discovery: 0, jwks: 0 });
  }, 120_000);
});
