// The local stack's policy follows the bundled one, whatever its issuers and upstreams are
// called: editing policy/policy.json as the README's Deployment section says must not break
// `npm start`.
import { describe, expect, it } from "vitest";
import { localPolicy } from "../../dev/local-policy";
import { LOCAL_ACCESS_TEAM, LOCAL_IDP_URL, LOCAL_ORIGIN_URL } from "../../dev/local-stack.mjs";
import policy from "../../policy/policy.json";
import { compilePolicy } from "../../src/core/policy";
import type { PolicyDocument } from "../../src/core/policy-types";

describe("the local stack's policy", () => {
  it("points the bundled policy's issuers and url upstreams at loopback", () => {
    const compiled = compilePolicy(localPolicy());
    for (const issuer of compiled.issuers.values()) {
      expect(issuer.issuer.startsWith(LOCAL_IDP_URL), issuer.id).toBe(true);
    }
    for (const route of compiled.routes) {
      if ("url" in route.upstream) expect(route.upstream.url).toBe(LOCAL_ORIGIN_URL);
    }
  });

  it("follows renamed, added and removed issuers and upstreams", () => {
    const edited = structuredClone(policy) as unknown as PolicyDocument;
    const issuers = edited.issuers as NonNullable<PolicyDocument["issuers"]>;
    edited.issuers = {
      corp: { ...issuers.demo, jwks_uri: "https://idp.example.com/keys" } as never,
      partner: { kind: "oidc", issuer: "https://partner.example.com", audiences: ["https://api.example.com"] },
    };
    edited.upstreams = { backend: { url: "https://backend.example.com" } };
    edited.routes = [
      { name: "r", methods: ["GET"], path: "/v1/**", auth: { issuers: ["corp", "partner"] }, upstream: "backend" },
    ];
    expect(() => compilePolicy(edited)).not.toThrow();
    const local = localPolicy(edited);
    const compiled = compilePolicy(local);
    // The first OIDC issuer is the development provider's (one provider is one issuer).
    expect([...compiled.issuers.values()].map((i) => [i.id, i.issuer, i.jwksUri ?? "discovery"])).toEqual([
      ["corp", LOCAL_IDP_URL, "discovery"],
      ["partner", "https://partner.example.com", "discovery"],
    ]);
    expect(compiled.routes[0]?.upstream).toEqual({ url: LOCAL_ORIGIN_URL });
  });

  it("points an Access issuer at the development provider's Access endpoints", () => {
    const local = localPolicy();
    const access = Object.values(local.issuers ?? {}).find((issuer) => issuer.kind === "cloudflare_access");
    expect(access).toMatchObject({ team_domain: LOCAL_ACCESS_TEAM });
  });
});
