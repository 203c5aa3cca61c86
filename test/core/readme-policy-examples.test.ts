/// <reference types="vite/client" />
// The README's policy examples compile, and the local stack's policy keeps taking the
// development provider's tokens whatever algorithms the real issuer is written with.
import { describe, expect, it } from "vitest";
import { localPolicy } from "../../dev/local-policy";
import policy from "../../policy/policy.json";
import { compilePolicy } from "../../src/core/policy";
import type { PolicyDocument } from "../../src/core/policy-types";
import README from "../../README.md?raw";
import { problemsOf } from "../support/policy-problems";

/** The README's ```json blocks, in order, each wrapped into an object so it parses. */
function readmeJsonBlocks(): Record<string, any>[] {
  const blocks = [...README.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");
  return blocks.map((text) => JSON.parse(text.trim().startsWith("{") ? text : `{${text}}`));
}

describe("README policy snippets", () => {
  it("every ```json policy block and inline fragment compiles in a minimal policy", () => {
    const blocks = readmeJsonBlocks();
    const corp = blocks.find((b) => b.issuers?.corp)?.issuers.corp;
    const accessBlock = blocks.find((b) => b.issuers?.access);
    const authBlock = blocks.find((b) => b.auth)?.auth;
    const limitsBlock = blocks.find((b) => b.limits)?.limits;
    expect([corp, accessBlock, authBlock, limitsBlock].every(Boolean)).toBe(true);

    // Inline fragments quoted from the README text.
    const routeLimit = JSON.parse(
      /`"limits": (\[\{ "name": "limited-user-per-minute"[^`]*\])`/.exec(README)?.[1] ?? "null",
    );
    const ceiling = JSON.parse(/`(\{ "name": "limited-route-per-minute"[^`]*\})`/.exec(README)?.[1] ?? "null");
    const upstream = JSON.parse(
      /`(\{ "url": "https:\/\/origin\.example\.com", "timeout_ms": 30000 \})`/.exec(README)?.[1] ?? "null",
    );
    const settings = JSON.parse(`{${/`("settings": \{ "server_timing": true \})`/.exec(README)?.[1] ?? ""}}`);
    expect([routeLimit, ceiling, upstream, settings.settings].every(Boolean)).toBe(true);

    const doc = {
      version: 1,
      settings: settings.settings,
      issuers: { corp, ...accessBlock?.issuers },
      upstreams: { api: upstream, svc: { service: "BINDING_NAME" } },
      limits: limitsBlock,
      routes: [
        ...(accessBlock?.routes ?? []),
        { name: "pay", methods: ["POST"], path: "/v1/payments", auth: authBlock, upstream: "api" },
        {
          name: "limited",
          methods: ["GET"],
          path: "/v1/limited",
          auth: { issuers: ["corp"] },
          upstream: "api",
          limits: [...routeLimit, ceiling],
        },
        {
          name: "entra-roles",
          methods: ["GET"],
          path: "/v1/roles",
          auth: { issuers: ["corp"], groups: { any_of: ["admin"] } },
          upstream: "svc",
          cors: {
            allow_origins: ["https://app.example.com"],
            expose_headers: ["retry-after", "www-authenticate", "ratelimit", "ratelimit-policy", "x-request-id"],
          },
        },
        { name: "h8443", methods: ["GET"], host: "api.example.com:8443", path: "/**", auth: "public", upstream: "api" },
        {
          name: "tenant-host",
          methods: ["GET"],
          host: ":tenant.example.com",
          path: "/**",
          auth: { issuers: ["corp"] },
          upstream: "api",
        },
      ],
    };
    expect(problemsOf(doc)).toEqual([]);
    // The Entra row's mapping, on the issuer.
    expect(problemsOf({ ...doc, issuers: { ...doc.issuers, corp: { ...corp, claims: { groups: "roles" } } } })).toEqual(
      [],
    );
  });
});

describe("local policy derived from an edited policy/policy.json", () => {
  // The token CLI signs OIDC tokens with ES256: an issuer written for the real provider as
  // RS256 only (Auth0, Okta, Entra) must still take the local stack's tokens.
  it("the first issuer of each kind takes the development provider's tokens, whatever algorithms it was written with", () => {
    const edited = structuredClone(policy) as unknown as PolicyDocument;
    (edited.issuers as any).demo.algorithms = ["RS256"];
    (edited.issuers as any).access.algorithms = ["ES256"];
    expect(problemsOf(edited)).toEqual([]);
    const local = compilePolicy(localPolicy(edited));
    // The provider signs OIDC tokens with ES256 and Access assertions with RS256.
    expect(local.issuers.get("demo")?.algorithms).toContain("ES256");
    expect(local.issuers.get("access")?.algorithms).toContain("RS256");
  });
});
