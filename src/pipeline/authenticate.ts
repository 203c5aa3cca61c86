// Stage: authenticate. Public routes pass. Every other route needs exactly one credential
// it accepts, verified against its issuers; the result is the request's Identity.

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

export function authenticate(policy: CompiledPolicy | undefined, options: AuthenticateOptions = {}): Stage {
  // One verifier per isolate: key stores, imported keys and the verified-token cache live here.
  let verifier: TokenVerifier | undefined;
  const now = options.now ?? Date.now;
  // Which credential kinds each route takes, worked out once per route per isolate.
  const acceptsByRoute = new WeakMap<CompiledRoute, { bearer: boolean; access: boolean }>();

  const run: Stage["run"] = async (c) => {
    const auth = c.get("route").auth;
    if (auth === "public") return undefined;
    if (!verifier && policy) {
      verifier = new TokenVerifier(policy, {
        fetch: options.fetch ?? ((input, init) => fetch(input, init)),
        ...(c.env?.JWKS_CACHE ? { kv: c.env.JWKS_CACHE } : {}),
        now,
      });
    }
    if (!verifier) return deny(c, "misconfigured", { detail: "no_policy" });

    const route = c.get("route");
    let accepts = acceptsByRoute.get(route);
    if (!accepts) {
      const kinds = auth.issuers.map((id) => policy?.issuers.get(id)?.kind);
      accepts = { bearer: kinds.includes("oidc"), access: kinds.includes("cloudflare_access") };
      acceptsByRoute.set(route, accepts);
    }
    const credential = extractCredential(c.req.raw.headers, c.get("url"), accepts);
    if (!credential.ok) return deny(c, credential.reason, { detail: credential.detail });

    const started = performance.now();
    const defer = (work: Promise<unknown>) => afterResponse(c, work);
    const result = await verifier.verify(credential.token, auth.issuers, auth.audiences, defer);
    const verifyMs = performance.now() - started;
    c.get("timings").authMs = verifyMs;
    if (!result.ok) {
      if (result.issuerId && result.keySource) {
        c.set("tokenCheck", { issuerId: result.issuerId, verifyMs, keySource: result.keySource });
      }
      const retry = result.reason === "jwks_unavailable" ? { retryAfterSeconds: 30 } : {};
      return deny(c, result.reason, { detail: result.detail, ...retry });
    }
    c.set("identity", result.identity);
    c.set("tokenCheck", { issuerId: result.identity.issuerId, verifyMs, keySource: result.keySource });
    return undefined;
  };
  return { run };
}
