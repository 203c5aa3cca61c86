// The deployable Worker ships its policy compiled at build time (scripts/compile-policy.mjs):
// the compiled form must come back exactly as the compiler built it, and the committed one must
// be the bundled policy's.
import { env } from "cloudflare:workers";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import compiledArtifact from "../../policy/policy.compiled.json";
import policy from "../../policy/policy.json";
import { compilePolicy } from "../../src/core/policy";
import { type PolicyArtifact, policyArtifact, policyFromArtifact } from "../../src/core/policy-artifact";
import worker from "../../src/index";
import { basePolicy } from "../support/harness";

/** Through JSON, as the artifact is written and bundled. */
const roundTrip = (compiled: ReturnType<typeof compilePolicy>) =>
  policyFromArtifact(JSON.parse(JSON.stringify(policyArtifact(compiled))) as PolicyArtifact);

const richPolicy = basePolicy({
  settings: {
    server_timing: true,
    limiter_timeout_ms: 80,
    realm: "rich",
    identity_headers: { subject: "x-id-sub" },
  },
  issuers: {
    corp: {
      kind: "oidc",
      issuer: "https://idp.example.com",
      jwks_uri: "https://idp.example.com/keys",
      audiences: ["https://api.example.com"],
      algorithms: ["ES256"],
      typ: "at+jwt",
      claims: { tenant: "org", scopes: "scp" },
      cache_ttl_s: 900,
    },
    team: { kind: "cloudflare_access", team_domain: "team.cloudflareaccess.com" },
  },
  upstreams: { echo: { url: "https://origin.example.com", timeout_ms: 2000 }, svc: { service: "ECHO_SERVICE" } },
  limits: {
    defaults: [
      { name: "tenant-total", key: "tenant", limit: 100, window_s: 60 },
      // A name an object literal would take for its prototype.
      { name: "__proto__", key: "user", limit: 10, window_s: 60, on_error: "allow" },
    ],
    // Parsed, as a policy file is: in an object literal `__proto__` would set the prototype.
    tenant_overrides: JSON.parse(
      '{"acme": {"tenant-total": {"limit": 1000}, "__proto__": {"limit": 20, "window_s": 30}},' +
        ' "hasOwnProperty": {"tenant-total": {"limit": 5}}}',
    ),
  },
  routes: [
    {
      name: "public",
      methods: ["GET", "POST"],
      host: "api.example.com:8443",
      path: "/public/**",
      auth: "public",
      upstream: "echo",
      inherit_default_limits: false,
      limits: [{ name: "per-ip", key: "ip", limit: 50, window_s: 60 }],
    },
    {
      name: "tenant-host",
      methods: ["GET", "HEAD"],
      host: ":tenant.example.com",
      path: "/v1/*/**",
      auth: {
        issuers: ["corp", "team"],
        audiences: ["https://api.example.com", "aud-tag"],
        scopes: { all_of: ["read"], any_of: ["eu", "us"] },
        groups: { any_of: ["staff"] },
        claims: [
          { claim: "amr", one_of: ["mfa"] },
          { claim: "email_verified", equals: true },
        ],
      },
      upstream: "svc",
      cors: { allow_origins: ["https://app.example.com"], allow_credentials: true, expose_headers: ["x-request-id"] },
      limits: [{ name: "ceiling", key: "route", limit: 500, window_s: 10 }],
    },
  ],
});

describe("the compiled policy artifact", () => {
  it("comes back exactly as the compiler built it: sets, maps and null-prototype records included", () => {
    for (const doc of [policy, richPolicy]) {
      const compiled = compilePolicy(doc);
      expect(roundTrip(compiled)).toStrictEqual(compiled);
    }
    const revived = roundTrip(compilePolicy(richPolicy));
    // `__proto__` as a limit name stays an entry, and the records have no prototype to look up.
    expect(Object.getPrototypeOf(revived.tenantOverrides)).toBeNull();
    expect(Object.getPrototypeOf(revived.tenantOverrides.acme)).toBeNull();
    expect(Object.keys(revived.tenantOverrides.acme!)).toEqual(["tenant-total", "__proto__"]);
    expect(Object.getOwnPropertyDescriptor(revived.tenantOverrides.acme, "__proto__")?.value).toEqual({
      limit: 20,
      window_s: 30,
    });
    expect(revived.tenantOverrides.globex).toBeUndefined();
    expect(revived.routes[1]!.methods).toEqual(new Set(["GET", "HEAD"]));
  });

  it("committed in policy/policy.compiled.json is the bundled policy's (npm run policy rewrites it)", () => {
    expect(compiledArtifact).toStrictEqual(JSON.parse(JSON.stringify(policyArtifact(compilePolicy(policy)))));
  });

  it("is what the deployable entry runs", async () => {
    const ctx = createExecutionContext();
    const request = new Request("https://api.example.com/v1/payments", { method: "POST" });
    const response = await worker.fetch(request, env as never, ctx);
    await waitOnExecutionContext(ctx);
    // The demo policy's route and realm, without any compile at start-up.
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ reason: "token_missing" });
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="portcullis-demo"');
    const unrouted = await worker.fetch(
      new Request("https://api.example.com/nowhere"),
      env as never,
      createExecutionContext(),
    );
    expect(await unrouted.json()).toMatchObject({ reason: "route_not_found" });
  });
});
