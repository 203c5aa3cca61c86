// The local stack's policy: the bundled demo policy with its issuers and origin pointed at
// the development identity provider and echo origin on loopback. Only the local Worker
// entry (wrangler env "local") imports this; the deployable Worker never trusts these.

import policy from "../policy/policy.json";

export const LOCAL_IDP_URL = "http://127.0.0.1:8788";
export const LOCAL_ORIGIN_URL = "http://127.0.0.1:8789";
export const LOCAL_ACCESS_TEAM = `${LOCAL_IDP_URL}/access`;
export const LOCAL_AUDIENCE = "https://api.example.com";

export function localPolicy(): typeof policy {
  return {
    ...policy,
    issuers: {
      demo: { ...policy.issuers.demo, issuer: LOCAL_IDP_URL },
      access: { ...policy.issuers.access, team_domain: LOCAL_ACCESS_TEAM },
    },
    upstreams: { api: { ...policy.upstreams.api, url: LOCAL_ORIGIN_URL } },
  };
}
