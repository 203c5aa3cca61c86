// Route lists written as operators write them, in the two forms the lint tests use: a deployable
// document (an https upstream, as the deployed lint wants) for the compile step, and the same
// routes on an edge whose upstream is the echo origin, to show what they do with requests.
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, echoOrigin } from "./harness";

/** The one OIDC issuer, `idp`, the routes name. */
const idp = { kind: "oidc", issuer: "https://idp.example.com", audiences: ["https://api.example.com"] };

type Route = Record<string, unknown>;

/** A deployable document for these routes (each to upstream `api` unless it names one). */
export const deployable = (routes: Route[]): any => ({
  version: 1,
  upstreams: { api: { url: "https://origin.example.com" } },
  issuers: { idp },
  routes: routes.map((route) => ({ upstream: "api", ...route })),
});

/** The same routes on an edge whose upstream `api` is the echo origin. */
export const onEcho = (routes: Route[]): PolicyDocument =>
  basePolicy({
    issuers: { idp } as PolicyDocument["issuers"],
    upstreams: { api: { url: echoOrigin, timeout_ms: 2000 } },
    routes: routes.map((route) => ({ upstream: "api", ...route })) as PolicyDocument["routes"],
  });
