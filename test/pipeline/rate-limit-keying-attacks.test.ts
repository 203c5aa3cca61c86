// An attacker's view of rate-limit keying, through the whole pipeline and the real limiter
// objects: a client must not choose its own counter (a fresh one per request, or another
// client's) by the headers it sends, by writing its address another way, or by identities
// that differ only where the counters must not; and a refused request is charged nothing.
//
// README ("Rate limits"): `ip` trusts `CF-Connecting-IP` alone, IPv6 grouped by /64, an
// IPv4-mapped address as its IPv4 one, Workers of other zones by `CF-Worker`; `user` is the
// caller (issuer and subject) within its tenant; `tenant_overrides` resize a tenant's limits.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { LimiterRpc } from "../../src/core/limits/limiter-rpc";
import type { LimitSpec, PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import type { RateLimitProblem as Problem } from "../support/rate-limit-fields";

const unique = () => crypto.randomUUID().slice(0, 8);

/** A cost-0 look at one counter of a real limiter object: charges nothing. */
async function look(
  binding: "TENANT_LIMITER" | "ROUTE_LIMITER",
  objectName: unknown[],
  counterId: unknown[],
  limit: number,
  windowS: number,
) {
  const ns = (env as unknown as Record<string, DurableObjectNamespace>)[binding]!;
  const stub = ns.get(ns.idFromName(JSON.stringify(objectName))) as unknown as LimiterRpc;
  const answer = await stub.acquire([{ id: JSON.stringify(counterId), limit, windowS, cost: 0 }]);
  return answer.counters[0]!;
}

// ─── Public routes: the client address ──────────────────────────────────────────────────

const PER_IP: LimitSpec = { name: "per-ip", key: "ip", limit: 1, window_s: 3600 };

function publicEdge(name: string) {
  const route: RouteConfig = {
    name,
    methods: ["GET"],
    path: `/${name}/**`,
    auth: "public",
    upstream: "echo",
    limits: [PER_IP],
  };
  return harness(basePolicy({ settings: { limiter_timeout_ms: 2000 }, routes: [route] }));
}

/** The reason and refusing limit of an answer: `[200]` when admitted. */
async function verdictOf(response: Response): Promise<unknown[]> {
  if (response.status === 200) {
    await response.body?.cancel();
    return [200];
  }
  const body = (await response.json()) as Problem;
  return [response.status, body.reason, body.limit?.name];
}

const REFUSED_BY_PER_IP = [429, "rate_limited", "per-ip"];

describe("the client address is Cloudflare's, not the client's", () => {
  it("headers a client writes itself (X-Forwarded-For, True-Client-IP, Forwarded, …) give it no fresh ip counter", async () => {
    const name = `spoof-${unique()}`;
    const edge = publicEdge(name);
    const m = marker();
    const from = (headers: Record<string, string>) =>
      edge.fetch(`/${name}/x`, { headers: { "x-test-marker": m, ...headers } });
    const client = "198.51.100.40";
    expect(await verdictOf(await from({ "cf-connecting-ip": client }))).toEqual([200]);
    const spoofs: Record<string, string>[] = [
      { "x-forwarded-for": "203.0.113.1" },
      { "x-forwarded-for": "203.0.113.2, 198.51.100.40" },
      { "true-client-ip": "203.0.113.3" },
      { "x-real-ip": "203.0.113.4" },
      { "x-client-ip": "203.0.113.5" },
      { forwarded: "for=203.0.113.6" },
      { "cf-connecting-ipv6": "2001:db8:6::1" },
      { "cf-pseudo-ipv4": "240.0.0.7" },
      // A zone named from an ordinary address is the client's own claim: ignored.
      { "cf-worker": "spoofed.example" },
    ];
    for (const spoof of spoofs) {
      const verdict = await verdictOf(await from({ "cf-connecting-ip": client, ...spoof }));
      expect([spoof, verdict]).toEqual([spoof, REFUSED_BY_PER_IP]);
    }
    // Only the first request reached the origin.
    expect(await originSaw(m)).toHaveLength(1);
  });

  it("without CF-Connecting-IP, a forwarded-for header is not taken as the address: all such requests share one counter", async () => {
    const name = `noaddr-${unique()}`;
    const edge = publicEdge(name);
    const send = (headers: Record<string, string>) => edge.fetch(`/${name}/x`, { headers });
    expect(await verdictOf(await send({ "x-forwarded-for": "203.0.113.10" }))).toEqual([200]);
    // Another claimed address, still no CF-Connecting-IP: the same shared counter.
    expect(await verdictOf(await send({ "x-forwarded-for": "203.0.113.11" }))).toEqual(REFUSED_BY_PER_IP);
    expect(await verdictOf(await send({ "true-client-ip": "203.0.113.12" }))).toEqual(REFUSED_BY_PER_IP);
    // And the address a client claimed was not spent: its real owner still has its request.
    expect(await verdictOf(await send({ "cf-connecting-ip": "203.0.113.10" }))).toEqual([200]);
  });

  it("one IPv4 address written another way (numeric, hex, short, trailing dot, IPv4-mapped) is the same client", async () => {
    const name = `spell4-${unique()}`;
    const edge = publicEdge(name);
    const from = (address: string) => edge.fetch(`/${name}/x`, { headers: { "cf-connecting-ip": address } });
    expect(await verdictOf(await from("198.51.100.7"))).toEqual([200]);
    const spellings = [
      "3325256711", // 198·2^24 + 51·2^16 + 100·2^8 + 7
      "0xc6.0x33.0x64.0x7",
      "0XC6336407",
      "198.51.25607", // 100·256 + 7 as the last part
      "198.51.100.7.",
      "::ffff:198.51.100.7",
      "::FFFF:C633:6407",
      "0:0:0:0:0:ffff:c633:6407",
      "0000:0000:0000:0000:0000:FFFF:198.51.100.7",
    ];
    for (const spelling of spellings) {
      expect([spelling, await verdictOf(await from(spelling))]).toEqual([spelling, REFUSED_BY_PER_IP]);
    }
    // A neighbouring address is another client (the counter is per address, not per range).
    expect(await verdictOf(await from("198.51.100.8"))).toEqual([200]);
  });

  it("any spelling of any address in one IPv6 /64 is the same client; the next /64 is another", async () => {
    const name = `spell6-${unique()}`;
    const edge = publicEdge(name);
    const from = (address: string) => edge.fetch(`/${name}/x`, { headers: { "cf-connecting-ip": address } });
    expect(await verdictOf(await from("2001:db8:a:b::1"))).toEqual([200]);
    const sameSlash64 = [
      "2001:DB8:A:B:FFFF:FFFF:FFFF:FFFF",
      "2001:0db8:000a:000b:0000:0000:0000:0002",
      "2001:db8:a:b:0:0:0:3",
      "2001:db8:a:b::198.51.100.7", // an IPv4 suffix is only the interface id here
      " 2001:db8:a:b::4 ",
    ];
    for (const spelling of sameSlash64) {
      expect([spelling, await verdictOf(await from(spelling))]).toEqual([spelling, REFUSED_BY_PER_IP]);
    }
    expect(await verdictOf(await from("2001:db8:a:c::1"))).toEqual([200]);
  });

  it("a Worker zone named like an address, or like the shared keys, spends no counter but its own", async () => {
    const name = `zones-${unique()}`;
    const edge = publicEdge(name);
    const send = (headers: Record<string, string>) => edge.fetch(`/${name}/x`, { headers });
    const worker = "2a06:98c0:3600::103";
    // The address and the two shared keys (no header, a header that is no address) are spent first.
    expect(await verdictOf(await send({ "cf-connecting-ip": "198.51.100.9" }))).toEqual([200]);
    expect(await verdictOf(await send({}))).toEqual([200]);
    expect(await verdictOf(await send({ "cf-connecting-ip": "not-an-address" }))).toEqual([200]);
    // Zones spelling those keys each have a counter of their own.
    for (const zone of ["198.51.100.9", "unknown", "invalid", "2a06:98c0:3600:0::/64"]) {
      const verdict = await verdictOf(await send({ "cf-connecting-ip": worker, "cf-worker": zone }));
      expect([zone, verdict]).toEqual([zone, [200]]);
    }
    // And the address itself is still refused: no zone's request gave it back.
    expect(await verdictOf(await send({ "cf-connecting-ip": "198.51.100.9" }))).toEqual(REFUSED_BY_PER_IP);
    // Cloudflare's Worker address without a zone is counted by its /64, apart from the zone
    // named like that key.
    expect(await verdictOf(await send({ "cf-connecting-ip": worker }))).toEqual([200]);
    expect(await verdictOf(await send({ "cf-connecting-ip": worker }))).toEqual(REFUSED_BY_PER_IP);
  });
});

describe("a route ceiling is one per method, however the method is written", () => {
  it("a method in other letter case is the same method: it reaches no fresh ceiling", async () => {
    const name = `case-${unique()}`;
    const route: RouteConfig = {
      name,
      methods: ["GET", "PATCH", "DELETE"],
      path: `/${name}/**`,
      auth: "public",
      upstream: "echo",
      limits: [{ name: "ceiling", key: "route", limit: 1, window_s: 3600 }],
    };
    const edge = harness(basePolicy({ settings: { limiter_timeout_ms: 2000 }, routes: [route] }));
    const send = (method: string) => edge.fetch(`/${name}/x`, { method });
    const refused = [429, "rate_limited", "ceiling"];
    expect(await verdictOf(await send("PATCH"))).toEqual([200]);
    // PATCH is the one method the Fetch standard does not write in upper case for the client.
    for (const method of ["patch", "Patch", "pAtCh"]) {
      expect([method, await verdictOf(await send(method))]).toEqual([method, refused]);
    }
    expect(await verdictOf(await send("delete"))).toEqual([200]);
    expect(await verdictOf(await send("DELETE"))).toEqual(refused);
    expect(await verdictOf(await send("get"))).toEqual([200]);
    // HEAD counts as GET, in any case.
    for (const method of ["GET", "HEAD", "head"]) {
      const response = await send(method);
      expect([method, response.status, edge.audit.at(-1)?.detail]).toEqual([method, 429, "route_limit_exceeded"]);
      await response.body?.cancel();
    }
  });
});

// ─── Authenticated routes: issuer, subject and tenant ───────────────────────────────────

function authEdge(
  issuers: Record<string, TestIssuer>,
  route: string,
  limits: LimitSpec[],
  extra: Partial<PolicyDocument> = {},
) {
  return harness(
    basePolicy({
      settings: { limiter_timeout_ms: 2000 },
      issuers: Object.fromEntries(
        Object.entries(issuers).map(([id, idp]) => [id, { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] }]),
      ),
      routes: [
        {
          name: route,
          methods: ["GET"],
          path: `/${route}/**`,
          auth: { issuers: Object.keys(issuers) },
          upstream: "echo",
          limits,
        },
      ],
      ...extra,
    }),
  );
}

/** The reason, audit detail and refusing limit of the last answer: `[200]` when admitted. */
async function identityVerdict(edge: ReturnType<typeof harness>, response: Response): Promise<unknown[]> {
  if (response.status === 200) {
    await response.body?.cancel();
    return [200];
  }
  const body = (await response.json()) as Problem;
  return [response.status, body.reason, edge.audit.at(-1)?.detail, body.limit?.name];
}

describe("user counters are the caller's own: issuer and subject, within its tenant", () => {
  it("one subject under two issuers in one tenant has two user counters and one tenant total", async () => {
    const [one, two] = await Promise.all([makeIssuer(), makeIssuer()]);
    const route = `iss-${unique()}`;
    const tenant = `t-${unique()}`;
    const edge = authEdge({ one, two }, route, [
      { name: "per-user", key: "user", limit: 1, window_s: 3600 },
      { name: "tenant-total", key: "tenant", limit: 3, window_s: 3600 },
    ]);
    const call = async (idp: TestIssuer, sub: string) => {
      const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub })}`;
      return identityVerdict(edge, await edge.fetch(`/${route}/x`, { headers: { authorization: token } }));
    };
    expect(await call(one, "alice")).toEqual([200]);
    // The other issuer's "alice" is somebody else: not refused for the first one's request.
    expect(await call(two, "alice")).toEqual([200]);
    expect(await call(one, "alice")).toEqual([429, "rate_limited", "user_limit_exceeded", "per-user"]);
    expect(await call(two, "bob")).toEqual([200]);
    // Three admitted in the tenant: its total refuses the next caller, whichever issuer.
    expect(await call(one, "carol")).toEqual([429, "rate_limited", "tenant_limit_exceeded", "tenant-total"]);
  });

  it("one subject in two tenants has a user counter in each, and a tenant-less token of it a third", async () => {
    const idp = await makeIssuer();
    const route = `ten-${unique()}`;
    const edge = authEdge({ a: idp }, route, [{ name: "per-user", key: "user", limit: 1, window_s: 3600 }]);
    const call = async (tenant: string | undefined) => {
      const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub: "alice" })}`;
      return edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    };
    const [first, second] = [`t1-${unique()}`, `t2-${unique()}`];
    expect(await identityVerdict(edge, await call(first))).toEqual([200]);
    expect(await identityVerdict(edge, await call(first))).toEqual([
      429,
      "rate_limited",
      "user_limit_exceeded",
      "per-user",
    ]);
    expect(await identityVerdict(edge, await call(second))).toEqual([200]);
    // Tenant-less: counted in an object of its own (issuer and subject), with no tenant total.
    const tenantless = await call(undefined);
    expect(tenantless.headers.get("ratelimit-policy")).toBe('"per-user";q=1;w=3600');
    expect(await identityVerdict(edge, tenantless)).toEqual([200]);
    expect(await identityVerdict(edge, await call(undefined))).toEqual([
      429,
      "rate_limited",
      "user_limit_exceeded",
      "per-user",
    ]);
  });

  it("a subject or tenant that is no string is refused before any counter: its string form's counter is untouched", async () => {
    const idp = await makeIssuer();
    const route = `types-${unique()}`;
    const tenant = `t-${unique()}`;
    const edge = authEdge({ a: idp }, route, [{ name: "per-user", key: "user", limit: 2, window_s: 3600 }]);
    const call = async (claims: Record<string, unknown>) => {
      const token = `Bearer ${await idp.sign(claims)}`;
      return edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    };
    const refusals: [Record<string, unknown>, string][] = [
      [{ tenant_id: tenant, sub: 42 }, "subject_missing_or_unsafe"],
      [{ tenant_id: tenant, sub: ["42"] }, "subject_missing_or_unsafe"],
      [{ tenant_id: [tenant], sub: "42" }, "tenant_unsafe"],
      [{ tenant_id: { id: tenant }, sub: "42" }, "tenant_unsafe"],
    ];
    for (const [claims, detail] of refusals) {
      const response = await call(claims);
      expect([claims, response.status, edge.audit.at(-1)?.detail, response.headers.get("ratelimit")]).toEqual([
        claims,
        401,
        detail,
        null,
      ]);
      await response.body?.cancel();
    }
    // The string subject's counter in that tenant was never charged: both its requests remain.
    const first = await call({ tenant_id: tenant, sub: "42" });
    expect(first.status).toBe(200);
    expect(first.headers.get("ratelimit")).toMatch(/^"per-user";r=1;t=\d+$/);
  });

  it("the longest subject and tenant, every character escaped in the counter name, still fit the object's bound: a fail-open limit still counts", async () => {
    // Counter names are JSON: a `\` in a subject doubles (a tenant holds neither `"` nor `\`,
    // so its longest spelling is its length). Were a name past the object's bound (2048
    // characters), its call would be refused as malformed and an `on_error: "allow"` limit
    // would let every request through, recorded as a fail-open.
    const idp = await makeIssuer();
    const route = `long-${unique()}`;
    const issuerId = `i${"x".repeat(63)}`;
    const limitName = `n${"-".repeat(63)}`;
    const edge = authEdge({ [issuerId]: idp }, route, [
      { name: limitName, key: "user", limit: 1, window_s: 2_678_400, on_error: "allow" },
      { name: `t${".".repeat(63)}`, key: "tenant", limit: 1_000_000_000, window_s: 60, on_error: "allow" },
    ]);
    const tenant = `${unique()}${"~".repeat(247)}`;
    const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub: "\\".repeat(255) })}`;
    const call = () => edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    expect(await identityVerdict(edge, await call())).toEqual([200]);
    expect(edge.audit.at(-1)?.failed_open ?? []).toEqual([]);
    expect(await identityVerdict(edge, await call())).toEqual([429, "rate_limited", "user_limit_exceeded", limitName]);
  });
});

describe("tenant overrides are a tenant's own", () => {
  it("a tenant that differs from a premium one only in letter case, or by a suffix, gets the declared limit", async () => {
    const idp = await makeIssuer();
    const route = `tier-${unique()}`;
    const gold = `gold-${unique()}`;
    const edge = authEdge({ a: idp }, route, [], {
      limits: {
        defaults: [{ name: "user-limit", key: "user", limit: 1, window_s: 3600 }],
        tenant_overrides: { [gold]: { "user-limit": { limit: 1000 } } },
      },
    });
    const call = async (tenant: string) => {
      const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub: `u-${unique()}` })}`;
      return edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    };
    const premium = await call(gold);
    expect(premium.headers.get("ratelimit-policy")).toBe('"user-limit";q=1000;w=3600');
    // (`"gold"` and `gold\` are no tenants at all: such a token is refused, tenant_unsafe.)
    for (const lookalike of [gold.toUpperCase(), `${gold}.`, `${gold}-`, `_${gold}`]) {
      const response = await call(lookalike);
      expect([lookalike, response.status, response.headers.get("ratelimit-policy")]).toEqual([
        lookalike,
        200,
        '"user-limit";q=1;w=3600',
      ]);
    }
  });
});

// ─── Refusals ───────────────────────────────────────────────────────────────────────────

describe("a refusal is charged nothing, and says when to come back", () => {
  it("429s from a user limit leave the counter as the admitted requests left it, and each names a wait the object agrees with", async () => {
    const idp = await makeIssuer();
    const route = `refuse-${unique()}`;
    const tenant = `t-${unique()}`;
    const spec: LimitSpec = { name: "per-user", key: "user", limit: 2, window_s: 3600 };
    const edge = authEdge({ a: idp }, route, [spec]);
    const token = `Bearer ${await idp.sign({ tenant_id: tenant, sub: "dave" })}`;
    const call = () => edge.fetch(`/${route}/x`, { headers: { authorization: token } });
    const m = marker();
    for (let i = 0; i < 2; i++) {
      const admitted = await edge.fetch(`/${route}/x`, { headers: { authorization: token, "x-test-marker": m } });
      expect(admitted.status).toBe(200);
    }
    for (let i = 0; i < 5; i++) {
      const refused = await call();
      expect(refused.status).toBe(429);
      const retryAfter = Number(refused.headers.get("retry-after"));
      const reset = Number(refused.headers.get("x-ratelimit-reset"));
      // Two of 2 an hour spent: the next one is one request's share (30 minutes) after the
      // first, and the counter full again an hour after it, never later.
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(1800);
      expect(reset).toBeLessThanOrEqual(3600);
      expect(reset).toBeGreaterThanOrEqual(retryAfter);
      expect(refused.headers.get("x-ratelimit-remaining")).toBe("0");
      expect(refused.headers.get("ratelimit")).toBe(`"per-user";r=0;t=${reset}`);
      expect(((await refused.json()) as Problem).limit).toMatchObject({ name: "per-user", reset_s: reset });
    }
    expect(await originSaw(m)).toHaveLength(2);
    // The object's own view: still the two charges and no more (a charged refusal would have
    // put the counter half an hour further ahead each), and it admits no sooner than it said.
    const counter = await look(
      "TENANT_LIMITER",
      ["tenant", tenant],
      ["user", "per-user", 2, 3600, "a", "dave"],
      spec.limit,
      spec.window_s,
    );
    expect(counter.remaining).toBe(0);
    expect(counter.resetMs).toBeLessThanOrEqual(3_600_000);
    expect(counter.resetMs).toBeGreaterThan(1_800_000);
  });
});
