// What the README's Settings table and Rate limits section promise of policy compilation and
// limit planning: the defaults a policy gets, the realm's characters, the per-route limit cap.
import { describe, expect, it } from "vitest";
import { compilePolicy } from "../../src/core/policy";
import { planLimits } from "../../src/core/limits";
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
    const defaults = Array.from({ length: 16 }, (_, i) => ({
      name: `d${i}`,
      key: "user" as const,
      limit: 100,
      window_s: 60,
    }));
    const planned = planLimits({
      routeName: "r",
      method: "GET",
      limits: [...defaults, { name: "d0", key: "user", limit: 5, window_s: 60 }],
      identity: { issuerId: "idp", subject: "u", tenant: "t" },
      tenantOverrides: {},
    });
    expect(planned.ok).toBe(true);
    if (planned.ok) expect(planned.plan.limits).toHaveLength(16);
  });
});
