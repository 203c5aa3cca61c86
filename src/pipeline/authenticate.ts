// Stage: authenticate. Public routes pass. Every other route needs exactly one credential
// it accepts, verified against its issuers; the result is the request's Identity.

import { crossSiteRefusal } from "../core/cross-site";
import type { CompiledPolicy, CompiledRoute } from "../core/policy";
import { extractCredential } from "../core/tokens/credentials";
import { TokenVerifier } from "../core/tokens/verify";
import { afterResponse } from "./after-response";
import { deny } from "./respond";
import type { Stage } from "./stage";

export interface AuthenticateOptions {
  /** Clock for token checks (ms since the epoch). Default Date.now. */
  now?: () => number;
  /** Outbound fetch for JWKS and discovery. Default the global fetch. */
  fetch?: typeof fetch;
}

interface RouteCredentials {
  accepts: { bearer: boolean; access: boolean };
  bearerIssuers: string[];
  accessIssuers: string[];
}

/**
 * A Bearer header is checked against the route's OIDC issuers only, an Access assertion
 * (header or cookie) against its Access issuers only: otherwise an OIDC access token would
 * also be accepted from the CF_Authorization cookie, which a browser sends by itself (a
 * cross-site request, or a cookie planted from a sibling subdomain, would then carry it).
 */
function routeCredentials(policy: CompiledPolicy, issuerIds: readonly string[]): RouteCredentials {
  const ofKind = (kind: string) => issuerIds.filter((id) => policy.issuers.get(id)?.kind === kind);
  const bearerIssuers = ofKind("oidc");
  const accessIssuers = ofKind("cloudflare_access");
  return {
    accepts: { bearer: bearerIssuers.length > 0, access: accessIssuers.length > 0 },
    bearerIssuers,
    accessIssuers,
  };
}

export function authenticate(policy: CompiledPolicy, options: AuthenticateOptions = {}): Stage {
  // One verifier per isolate: key stores, imported keys and the verified-token cache live here.
  let verifier: TokenVerifier | undefined;
  const now = options.now ?? Date.now;
  // Which credential kinds each route takes, and which of its issuers each kind may come
  // from, worked out once per route per isolate.
  const credentialsByRoute = new WeakMap<CompiledRoute, RouteCredentials>();

  const run: Stage["run"] = async (c) => {
    const auth = c.get("route").auth;
    if (auth === "public") return undefined;
    // On the first request that needs it: the KV binding comes with the request.
    verifier ??= new TokenVerifier(policy, {
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      ...(c.env?.JWKS_CACHE ? { kv: c.env.JWKS_CACHE } : {}),
      now,
    });

    const route = c.get("route");
    let credentials = credentialsByRoute.get(route);
    if (!credentials) {
      credentials = routeCredentials(policy, auth.issuers);
      credentialsByRoute.set(route, credentials);
    }
    const credential = extractCredential(c.req.raw.headers, c.get("url"), credentials.accepts);
    if (!credential.ok) return deny(c, credential.reason, { detail: credential.detail });
    if (credential.kind === "access") {
      // Before the token is checked: a flood of forged cross-site posts costs no verify.
      const crossSite = crossSiteRefusal(
        c.req.method,
        c.req.raw.headers,
        c.get("url").origin,
        route.cors,
        route.methods,
      );
      if (crossSite) return deny(c, "cross_site_request", { detail: crossSite });
    }

    const started = performance.now();
    const defer = (work: Promise<unknown>) => afterResponse(c, work);
    const issuers = credential.kind === "bearer" ? credentials.bearerIssuers : credentials.accessIssuers;
    const result = await verifier.verify(credential.token, issuers, auth.audiences, defer);
    const verifyMs = performance.now() - started;
    c.get("timings").authMs = verifyMs;
    if (!result.ok) {
      if (result.issuerId && result.keySource) {
        c.set("tokenCheck", { issuerId: result.issuerId, verifyMs, keySource: result.keySource });
      }
      // Worth asking again once this isolate asks the issuer (or KV) again: the rest of its cooldown.
      const retry = result.reason === "jwks_unavailable" ? { retryAfterSeconds: result.retryAfterS ?? 30 } : {};
      return deny(c, result.reason, { detail: result.detail, ...retry });
    }
    // Let through on keys kept past their TTL while the issuer's key set cannot be fetched: a
    // choice of availability the record must show, request by request.
    if (result.keySource === "stale" || result.keySource === "token_cache_stale") {
      c.set("outcome", { ...c.get("outcome"), detail: "key_set_stale" });
    }
    c.set("identity", result.identity);
    c.set("tokenCheck", { issuerId: result.identity.issuerId, verifyMs, keySource: result.keySource });
    return undefined;
  };
  return { run };
}
