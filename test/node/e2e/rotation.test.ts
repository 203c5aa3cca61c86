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
/**
 * A client asks for a new token every this many requests, or when its token is near expiry.
 * Half the clients renew often; the other half keep a token for about 9 s, so tokens signed
 * by a key are still in use after the provider has retired that key.
 */
const requestsPerToken = (client: number) => (client % 2 === 0 ? 25 : 110);
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
    /** Each signing key's name in the report (key 1 is the one before the load), and when it was retired. */
    const keyNames = new Map(trusted.currentKeys().map((key) => [key.kid as string, "key 1"]));
    const retiredAtMs = new Map<string, number>();

    const rotate = async () => {
      for (const { publishAt, retireAt } of ROTATIONS) {
        const next = await newSigningKey();
        const kid = next.kid as string;
        keyNames.set(kid, `key ${keyNames.size + 1}`);
        const previous = trusted.currentKeys();
        await sleep(Math.max(0, started + publishAt - Date.now()));
        trusted.rotate([next, ...previous], kid);
        rotationLog.push(`${Date.now() - started} ms: publish ${keyNames.get(kid)} and sign with it`);
        await sleep(Math.max(0, started + retireAt - Date.now()));
        trusted.rotate([next], kid);
        for (const key of previous) retiredAtMs.set(key.kid as string, Date.now() - started);
        rotationLog.push(
          `${Date.now() - started} ms: retire ${previous.map((key) => keyNames.get(key.kid as string)).join(", ")}`,
        );
      }
    };

    const runClient = async (index: number) => {
      const client = LOAD_CLIENTS[index]!;
      let current: IssuedToken | undefined;
      let used = 0;
      for (let i = 0; i < REQUESTS_PER_CLIENT; i += 1) {
        await sleep(Math.max(0, started + index * 10 + i * INTERVAL_MS - Date.now()));
        if (!current || used >= requestsPerToken(index) || current.expiresAt - Date.now() < RENEW_BEFORE_EXPIRY_MS) {
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
    const allowed = outcomes.filter((o) => o.status === 200);
    const validDenied = valid.filter((o) => o.status !== 200);
    const invalidAccepted = invalid.filter((o) => o.status === 200);
    const wrongReason = invalid.filter((o) => o.kind && o.reason !== EXPECTED_REASON[o.kind]);
    const count = (names: string[]) => {
      const counts: Record<string, number> = {};
      for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
      return counts;
    };
    const deniedByReason = count(outcomes.filter((o) => o.status !== 200).map((o) => o.reason ?? `status ${o.status}`));
    const allowedByKey = count(allowed.map((o) => keyNames.get(o.kid) ?? "unknown key"));
    // Sent after the provider had retired the key that signed them (still valid tokens).
    const allowedAfterRetirement = allowed.filter((o) => o.atMs > (retiredAtMs.get(o.kid) ?? Infinity)).length;
    const fetched = {
      discovery: trusted.stats.discovery - fetchesBefore.discovery,
      jwks: trusted.stats.jwks - fetchesBefore.jwks,
    };
    const reachedOrigin = new Set(origin.seen.map((r) => r.headers["x-test-marker"]));

    console.log(
      [
        `key rotation under load: ${outcomes.length} requests in ${elapsedS.toFixed(1)} s from ${CLIENTS} clients (${tokensFetched} tokens fetched from the provider)`,
        ...rotationLog.map((line) => `  rotation at ${line}`),
        `  allowed ${allowed.length} by signing key ${JSON.stringify(allowedByKey)}; ${allowedAfterRetirement} of them after their key was retired`,
        `  denied ${outcomes.length - allowed.length} by reason ${JSON.stringify(deniedByReason)}`,
        `  valid denied: ${validDenied.length}, invalid accepted: ${invalidAccepted.length}`,
        `  provider fetches during the load: discovery ${fetched.discovery}, jwks ${fetched.jwks} (warm-up before it: discovery ${fetchesBefore.discovery}, jwks ${fetchesBefore.jwks})`,
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
    // Tokens signed by all three keys were accepted: both rotations were followed, and
    // tokens signed by a retired key (still unexpired) kept working.
    expect(Object.keys(allowedByKey).sort()).toEqual(["key 1", "key 2", "key 3"]);
    expect(allowedAfterRetirement).toBeGreaterThan(0);
    // One key-set fetch per new signing key (two), never one per request: the cooldown and
    // single-flight refresh bound them. Discovery is not repeated (jwks_uri is kept).
    expect(fetched.jwks).toBeGreaterThanOrEqual(2);
    expect(fetched.jwks).toBeLessThanOrEqual(4);
    expect(fetched.discovery).toBe(0);
    expect(untrusted.stats).toMatchObject({ discovery: 0, jwks: 0 });
  }, 120_000);
});
