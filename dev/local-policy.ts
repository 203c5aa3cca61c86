// The local stack's policy: the bundled policy with its issuers and origins pointed at the
// development identity provider and echo origin on loopback, whatever the policy names them.
// Only the local Worker entry (wrangler env "local") imports this; the deployable Worker never
// trusts these.

import policy from "../policy/policy.json";
import type { IssuerConfig, PolicyDocument, UpstreamConfig } from "../src/core/policy-types";
import { LOCAL_ACCESS_TEAM, LOCAL_IDP_URL, LOCAL_ORIGIN_URL } from "./local-stack.mjs";

/** Each entry of `record` replaced by `local(entry)`, names kept. */
function mapEntries<T>(record: Record<string, T> | undefined, local: (entry: T) => T): Record<string, T> {
  return Object.fromEntries(Object.entries(record ?? {}).map(([name, entry]) => [name, local(entry)]));
}

/**
 * The first issuer of each kind now trusts the development provider (one provider can be one
 * issuer only: two with the same `iss` are refused); any others stay as written, unreachable
 * from the local stack but harmless.
 */
function localIssuers(): (issuer: IssuerConfig) => IssuerConfig {
  const taken = new Set<string>();
  return (issuer) => {
    if (taken.has(issuer.kind)) return issuer;
    taken.add(issuer.kind);
    // The development provider signs with its own algorithms (ES256, Access-style RS256): a
    // list written for the real issuer (RS256 only, say) would refuse every local token.
    const { algorithms: _theirs, ...kept } = issuer;
    if (kept.kind === "cloudflare_access") return { ...kept, team_domain: LOCAL_ACCESS_TEAM };
    // Discovery on the development provider finds its own keys.
    const { jwks_uri: _unused, ...rest } = kept;
    return { ...rest, issuer: LOCAL_IDP_URL };
  };
}

function localUpstream(upstream: UpstreamConfig): UpstreamConfig {
  return "url" in upstream ? { ...upstream, url: LOCAL_ORIGIN_URL } : upstream;
}

export function localPolicy(document = policy as unknown as PolicyDocument): PolicyDocument {
  return {
    ...document,
    issuers: mapEntries(document.issuers, localIssuers()),
    upstreams: mapEntries(document.upstreams, localUpstream),
  };
}
