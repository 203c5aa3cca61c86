// Where the local stack (`npm start`) listens and the names it signs for: the one definition
// for the scripts that start it and mint its tokens, and for dev/local-policy.ts, which points
// the policy at it. Constants only, no `node:` imports: dev/local-policy.ts is bundled into the
// local Worker, which runs in workerd.

export const EDGE_PORT = 8787;
export const IDP_PORT = 8788;
export const ORIGIN_PORT = 8789;

export const EDGE_URL = `http://127.0.0.1:${EDGE_PORT}`;
/** The development identity provider, also the OIDC issuer it publishes (no trailing slash). */
export const LOCAL_IDP_URL = `http://127.0.0.1:${IDP_PORT}`;
export const LOCAL_ORIGIN_URL = `http://127.0.0.1:${ORIGIN_PORT}`;
/** The Access team domain the provider stands in for, also the `iss` of its Access assertions. */
export const LOCAL_ACCESS_TEAM = `${LOCAL_IDP_URL}/access`;

// What `npm run token` signs for when policy/policy.json names nothing (test/node/token-cli.test.ts
// checks the policy and the local Worker accept them).
export const LOCAL_AUDIENCE = "https://api.example.com";
export const ACCESS_AUD = "demo-access-aud-tag";
