// The policy compile step as scripts/compile-policy.mjs runs it (for `npm test` and `wrangler
// deploy`): the validator, then the lint as deployed.
import { expect } from "vitest";
import { type CompiledRoute, compilePolicy, PolicyError } from "../../src/core/policy";
import type { RouteConfig } from "../../src/core/policy-types";
import { policyProblems } from "../../src/core/policy-lint";

/** One OIDC issuer, one upstream, one authenticated route. */
export const minimalPolicy = (): any => ({
  version: 1,
  upstreams: { api: { url: "https://origin.example.com" } },
  issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
  routes: [{ name: "r", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "api" }],
});

/** What the compile step says of a document: the validator's problems, else the lint's as deployed. None: it deploys. */
export function compileStepProblems(doc: unknown): string[] {
  try {
    return policyProblems(compilePolicy(doc), { deployed: true });
  } catch (error) {
    if (error instanceof PolicyError) return error.problems;
    throw error;
  }
}

/** Matches a problem about `field` itself (`routes[0].path: …`), whatever it says of it. */
export const about = (field: string) => expect.stringMatching(new RegExp(`^${field.replace(/[.[\]]/g, "\\$&")}: `));

/** These routes compiled (each to one https upstream, the issuer `idp` defined), as the route stage matches them. */
export function compiledRoutes(list: Omit<RouteConfig, "upstream">[]): CompiledRoute[] {
  return compilePolicy({
    version: 1,
    upstreams: { api: { url: "https://origin.example.com" } },
    issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
    routes: list.map((route) => ({ ...route, upstream: "api" })),
  }).routes;
}
