// Policies of the shapes web apps have, for the tests of how origins read a request otherwise
// than the edge matches it: a public site with a guarded area (or page, or home page), and a
// tenant-bound area beside a broader one any signed-in caller may use. Each takes the test
// issuer (`makeIssuer`), named `idp` in the policy.
import type { IssuerConfig, PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { ACCESS_AUD_TAG, AUDIENCE, makeIssuer, type TestIssuer } from "./issuers";
import { basePolicy, harness } from "./harness";

/** A GET route to the echo origin, with whatever else `extra` says (a host, other methods, limits). */
export const getRoute = (
  name: string,
  path: string,
  auth: RouteConfig["auth"],
  extra: Partial<RouteConfig> = {},
): RouteConfig => ({ name, methods: ["GET"], path, auth, upstream: "echo", ...extra });

/** The routes, with the test issuer as `idp`. */
export function withIdp(issuer: TestIssuer, routes: RouteConfig[]): PolicyDocument {
  const issuers: Record<string, IssuerConfig> = { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } };
  return basePolicy({ issuers, routes });
}

/** A guarded route for `path` (the `admins` group), then the public site, `/**`. */
function siteGuarding(issuer: TestIssuer, path: string): PolicyDocument {
  return withIdp(issuer, [
    {
      name: "admin",
      methods: ["GET"],
      path,
      auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
      upstream: "echo",
    },
    { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
  ]);
}

/** A public site whose admin area, `/admin/**`, is guarded by a group: the shape most web apps have. */
export const siteWithAdmin = (issuer: TestIssuer) => siteGuarding(issuer, "/admin/**");

/**
 * A public site with one guarded page, written for that page alone (as the README's own
 * `/v1/admin` before `/v1/**`): a file-routed app's page is one path, `/admin` (and `/admin/`,
 * which the edge matches alike).
 */
export const siteWithAdminPage = (issuer: TestIssuer) => siteGuarding(issuer, "/admin");

/** A signed-in home page (the dashboard at `/`) on an otherwise public site. */
export const siteWithSignedInHome = (issuer: TestIssuer) =>
  withIdp(issuer, [
    { name: "home", methods: ["GET"], path: "/", auth: { issuers: ["idp"] }, upstream: "echo" },
    { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
  ]);

/** A route bound to the token's tenant (by a `:tenant` path segment or host), then `/**` for any signed-in caller (route `any`). */
export const tenantBound = (issuer: TestIssuer, route: { name: string; path: string; host?: string }) =>
  withIdp(issuer, [
    { ...route, methods: ["GET"], auth: { issuers: ["idp"] }, upstream: "echo" },
    { name: "any", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "echo" },
  ]);

/** Request headers carrying a fresh token of the issuer with these claims. */
export const bearerOf = async (issuer: TestIssuer, claims: Record<string, unknown>) => ({
  authorization: `Bearer ${await issuer.sign(claims)}`,
});

/** What a route asks of an `admins` member, and of any signed-in caller, with the issuer `idp`. */
export const admins = () => ({ issuers: ["idp"], groups: { any_of: ["admins"] } });
export const signedIn = () => ({ issuers: ["idp"] });

/** An edge whose one route, `/v1/**` (GET, route `v1`), any signed-in caller of a fresh issuer may use, and a valid token (subject `user-1` of tenant `acme`). */
export async function authenticatedEdge() {
  const issuer = await makeIssuer("ES256");
  const edge = harness(
    withIdp(issuer, [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: signedIn(), upstream: "echo" }]),
  );
  return { edge, token: await issuer.sign({}) };
}

/**
 * One Access route taking GET and POST at `/app/**` for the team `team` (the test issuer as
 * `access`), with `overrides` laid over the route.
 */
export function accessAppEdge(team: TestIssuer, overrides: Partial<RouteConfig> = {}) {
  return harness(
    basePolicy({
      issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
      routes: [
        {
          name: "app",
          methods: ["GET", "POST"],
          path: "/app/**",
          auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
          upstream: "echo",
          ...overrides,
        },
      ],
    }),
  );
}
