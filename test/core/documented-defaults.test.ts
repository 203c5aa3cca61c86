// What the README's Settings table and Rate limits section promise of policy compilation and
// limit planning: the defaults a policy gets, the realm's characters, the per-route limit cap;
// and the bounds of the verified-token cache, which no policy sets.
import { describe, expect, it } from "vitest";
import { compilePolicy } from "../../src/core/policy";
import { planLimits } from "../../src/core/limits/plan";
import { TokenVerifier } from "../../src/core/tokens/verify";
import { problemsOf } from "../support/policy-problems";

const minimal = () => ({
  version: 3,
  upstreams: { api: { url: "https://origin.example.com" } },
  issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
  routes: [{ name: "r", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "api" }] as any[],
});

describe("documented defaults", () => {
  it("a policy that sets nothing gets the defaults the README lists", () => {
    const compiled = compilePolicy(minimal());
    expect(compiled.maxUrlBytes).toBe(8192);
    expect(compiled.maxHeaderBytes).toBe(32768);
    expect(compiled.maxTokenBytes).toBe(8192);
    expect(compiled.limiterTimeoutMs).toBe(50);
    expect(compiled.serverTiming).toBe(false);
    expect(compiled.realm).toBe("portcullis");
    expect(compiled.identityHeaders).toEqual({
      subject: "x-user-sub",
      tenant: "x-tenant",
      scopes: "x-user-scope",
      groups: "x-user-groups",
      email: "x-user-email",
      issuer: "x-user-iss",
    });
    const issuer = compiled.issuers.get("idp")!;
    // The issuer's algorithms and key-set cache (max_stale_s: a day after the TTL).
    expect(issuer.algorithms).toEqual(["RS256", "PS256", "ES256", "EdDSA"]);
    expect(issuer.cacheTtlS).toBe(600);
    expect(issuer.refreshCooldownS).toBe(30);
    expect(issuer.rotationGraceS).toBe(3600);
    expect(issuer.fetchTimeoutMs).toBe(2000);
    expect(issuer.maxJwksBytes).toBe(65536);
    expect(issuer.maxStaleS).toBe(86400);
    expect(issuer.clockSkewS).toBe(60);
  });

  it('a realm is 1 to 128 printable ASCII characters, without " or \\', () => {
    const withRealm = (realm: string) => {
      const doc: any = minimal();
      doc.settings = { realm };
      return problemsOf(doc);
    };
    expect(withRealm("r".repeat(128))).toEqual([]);
    expect(withRealm("with space")).toEqual([]);
    expect(withRealm("r".repeat(129))).toHaveLength(1);
    expect(withRealm('a"b')).toHaveLength(1);
    expect(withRealm("a\\b")).toHaveLength(1);
    expect(withRealm("café")).toHaveLength(1);
  });
});

describe("at most 16 tenant and user limits apply to one route", () => {
  // A route limit with the same name as a default replaces it on that route: with 16 user
  // defaults and one replaced, 16 apply (one limiter call of 16 counters), not 17.
  it("a route limit replacing a default does not count twice against the cap", () => {
    const doc: any = minimal();
    doc.limits = {
      defaults: Array.from({ length: 16 }, (_, i) => ({ name: `d${i}`, key: "user", limit: 100, window_s: 60 })),
    };
    // Stricter on this route: replaces d0 here only.
    doc.routes[0].limits = [{ name: "d0", key: "user", limit: 5, window_s: 60 }];
    expect(problemsOf(doc)).toEqual([]);
    // A seventeenth that replaces nothing is one too many.
    doc.routes[0].limits.push({ name: "extra", key: "user", limit: 5, window_s: 60 });
    expect(problemsOf(doc)).toEqual(["routes[0].limits: at most 16 tenant and user limits apply to one route (17 do)"]);
  });

  it("the planner sends one counter per limit that applies", () => {
    const doc: any = minimal();
    doc.limits = {
      defaults: Array.from({ length: 16 }, (_, i) => ({ name: `d${i}`, key: "user", limit: 100, window_s: 60 })),
    };
    doc.routes[0].limits = [{ name: "d0", key: "user", limit: 5, window_s: 60 }];
    const planned = planLimits({
      routeName: "r",
      method: "GET",
      limits: compilePolicy(doc).routes[0]!.limits,
      identity: { issuerId: "idp", subject: "u", tenant: "t" },
      tenantOverrides: {},
    });
    expect(planned.ok).toBe(true);
    if (planned.ok) {
      expect(planned.plan.limits).toHaveLength(16);
      expect(planned.plan.limits.find((limit) => limit.name === "d0")?.limit).toBe(5);
    }
  });
});

describe("at most 16 route and ip limits apply to one route", () => {
  // Route ceilings and per-address counters go to one RouteLimiter call together, and a call
  // carries at most 16 counters.
  const publicRoute = (routeLimits: number, ipLimits: number) => {
    const doc: any = minimal();
    doc.routes[0].auth = "public";
    doc.routes[0].limits = [
      ...Array.from({ length: routeLimits }, (_, i) => ({ name: `r${i}`, key: "route", limit: 100, window_s: 60 })),
      ...Array.from({ length: ipLimits }, (_, i) => ({ name: `ip${i}`, key: "ip", limit: 100, window_s: 60 })),
    ];
    return doc;
  };

  it("16 are accepted and 17 refused, route and ip limits counted together", () => {
    expect(problemsOf(publicRoute(8, 8))).toEqual([]);
    expect(problemsOf(publicRoute(16, 0))).toEqual([]);
    for (const [routeLimits, ipLimits] of [
      [8, 9],
      [17, 0],
      [0, 17],
    ] as const) {
      expect(problemsOf(publicRoute(routeLimits, ipLimits))).toEqual([
        "routes[0].limits: at most 16 route and ip limits apply to one route (17 do)",
      ]);
    }
  });

  it("a route limit replacing a default does not count twice against the cap", () => {
    const doc = publicRoute(0, 0);
    doc.limits = {
      defaults: Array.from({ length: 16 }, (_, i) => ({ name: `d${i}`, key: "ip", limit: 100, window_s: 60 })),
    };
    doc.routes[0].limits = [{ name: "d0", key: "route", limit: 1000, window_s: 60 }];
    expect(problemsOf(doc)).toEqual([]);
    doc.routes[0].limits.push({ name: "extra", key: "route", limit: 1000, window_s: 60 });
    expect(problemsOf(doc)).toEqual(["routes[0].limits: at most 16 route and ip limits apply to one route (17 do)"]);
  });
});

describe("the verified-token cache's bounds", () => {
  const T0 = 1_800_000_000_000;
  const exp = T0 / 1000 + 3600;
  // The verifier sets the cache up; its entries are filled directly, with stand-in
  // identities, so the bounds are reached without signing thousands of tokens.
  const entry = { identity: {}, key: {} } as Parameters<TokenVerifier["tokenCache"]["set"]>[1];
  const defaultCache = () =>
    new TokenVerifier(compilePolicy(minimal()), { fetch: () => Promise.reject(new Error("no fetch")), now: () => T0 })
      .tokenCache;

  it("holds 10,000 tokens by default, the oldest going first", () => {
    const cache = defaultCache();
    for (let i = 0; i < 10_000; i++) cache.set(`t${i}`, entry, exp, T0);
    expect(cache.size).toBe(10_000);
    expect(cache.get("t0", T0)).toBeDefined();
    cache.set("t10000", entry, exp, T0);
    expect(cache.size).toBe(10_000);
    expect(cache.get("t0", T0)).toBeUndefined();
    expect(cache.get("t1", T0)).toBeDefined();
  });

  it("holds 4 Mi characters of tokens by default", () => {
    const budget = 4 * 1024 * 1024;
    const cache = defaultCache();
    cache.set("x".repeat(budget + 1), entry, exp, T0);
    expect(cache.size).toBe(0);
    cache.set("y".repeat(budget), entry, exp, T0);
    expect(cache.keyChars).toBe(budget);
    // One more character makes the first token go.
    cache.set("z", entry, exp, T0);
    expect(cache.size).toBe(1);
    expect(cache.keyChars).toBe(1);
  });

  it("keeps an entry 5 minutes by default, for a token valid longer", () => {
    const cache = defaultCache();
    cache.set("t", entry, exp, T0);
    expect(cache.get("t", T0 + 299_999)).toBeDefined();
    expect(cache.get("t", T0 + 300_000)).toBeUndefined();
  });
});
