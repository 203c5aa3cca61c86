// The compiled policy as plain JSON, so the deployable Worker ships its policy compiled: the
// validator and compiler run at build time (scripts/compile-policy.mjs, which wrangler's build
// step runs first), never in an isolate. Sets and maps become arrays, and objects keyed by
// names a policy chooses (tenants, limit names) become entry lists: bundled as a JavaScript
// object literal, a key `__proto__` would set a prototype instead of adding an entry.

import type { CompiledPolicy, CompiledRoute, ResolvedIssuer } from "./policy";

type Override = { limit: number; window_s?: number };

/** The rule an audit record names a route by: `policy:<route>@v<version>`. */
export function matchedRuleOf(name: string, version: number): string {
  return `policy:${name}@v${version}`;
}

export interface PolicyArtifact {
  policy: Omit<CompiledPolicy, "routes" | "issuers" | "tenantOverrides">;
  /**
   * Without `matchedRule`, which the name and the policy's version make (see `matchedRuleOf`),
   * and `index`, the place in the list.
   */
  routes: (Omit<CompiledRoute, "methods" | "matchedRule" | "index"> & { methods: string[] })[];
  issuers: [string, ResolvedIssuer][];
  tenantOverrides: [string, [string, Override][]][];
}

export function policyArtifact(compiled: CompiledPolicy): PolicyArtifact {
  const { routes, issuers, tenantOverrides, ...policy } = compiled;
  return {
    policy,
    routes: routes.map(({ matchedRule: _, index: __, ...route }) => ({ ...route, methods: [...route.methods] })),
    issuers: [...issuers],
    tenantOverrides: Object.entries(tenantOverrides).map(([tenant, limits]) => [tenant, Object.entries(limits)]),
  };
}

/** Null-prototype records, read by own keys only, as the compiler builds them. */
function record<T>(entries: [string, T][]): Record<string, T> {
  return Object.assign(Object.create(null), Object.fromEntries(entries));
}

export function policyFromArtifact(artifact: PolicyArtifact): CompiledPolicy {
  return {
    ...artifact.policy,
    routes: artifact.routes.map((route, index) => ({
      ...route,
      index,
      methods: new Set(route.methods),
      matchedRule: matchedRuleOf(route.name, artifact.policy.version),
    })),
    issuers: new Map(artifact.issuers),
    tenantOverrides: record(artifact.tenantOverrides.map(([tenant, limits]) => [tenant, record(limits)])),
  };
}
