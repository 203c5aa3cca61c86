// `claims.audience` through the whole pipeline: what reaches the
// origin, and the audit record, when an issuer reads its tokens' audience from `client_id`
// (AWS Cognito's access tokens) beside one that reads `aud`. Tokens are signed by real keys
// the loopback issuer publishes.
import { beforeAll, describe, expect, it } from "vitest";
import type { IssuerConfig, PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

/** A Cognito app client id, as Cognito writes one in an access token's `client_id`. */
const CLIENT = "3n4b5urk1ft4fl3mg5e62d9ado";
const API = "https://api.example.com";

let cognito: TestIssuer;
let corp: TestIssuer;

beforeAll(async () => {
  [cognito, corp] = await Promise.all([makeIssuer("RS256"), makeIssuer("RS256")]);
});

/** `cognito` reads its audience from client_id; `corp`, when a route takes it too, from aud. */
function policy(routeAudiences?: string[]): PolicyDocument {
  return basePolicy({
    issuers: {
      cognito: { kind: "oidc", issuer: cognito.url, audiences: [CLIENT], claims: { audience: "client_id" } },
      corp: { kind: "oidc", issuer: corp.url, audiences: [API] },
    } as Record<string, IssuerConfig>,
    routes: [
      {
        name: "both",
        methods: ["GET"],
        path: "/v1/both/**",
        auth: { issuers: ["cognito", "corp"], ...(routeAudiences ? { audiences: routeAudiences } : {}) },
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["cognito"] }, upstream: "echo" },
    ],
  });
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

/** A Cognito access token of the app client: no `aud` unless the claims given add one. */
const accessToken = (claims: Record<string, unknown> = {}) =>
  cognito.sign({ aud: undefined, client_id: CLIENT, token_use: "access", scope: "things/read", ...claims });

describe("a token whose aud names another API is refused though its client_id is listed", () => {
  // RFC 7519 §4.1.3: a JWT whose `aud` does not name the recipient MUST be rejected. Cognito's
  // resource binding (RFC 8707 `resource`, Essentials and Plus tiers) issues access tokens
  // with `aud` set to the resource asked for, beside the same `client_id`; API Gateway's JWT
  // authorizer, which the README cites for this setting, evaluates `aud` whenever a token has
  // one. Were `aud` not read, a token the app client got for another API (whose operator, logs
  // or compromise now hold it) would be replayed here and forwarded as the user.
  it("refused as audience_mismatch (detail aud), and nothing forwarded; the same token without aud goes through", async () => {
    const edge = harness(policy());
    const control = await sendMarked(edge, "/v1/things", bearer(await accessToken()));
    expect(control.record).toMatchObject({ decision: "allow", route: "any" });
    expect(control.seen).toHaveLength(1);

    const forBilling = await accessToken({ aud: "https://billing.example.com", scope: "billing/read" });
    const { response, body, record, seen } = await sendMarked(edge, "/v1/things", bearer(forBilling));
    expect(seen).toHaveLength(0);
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("audience_mismatch");
    expect(record).toMatchObject({ decision: "deny", reason: "audience_mismatch", detail: "aud" });
  });

  // A token bound to this API by a resource indicator carries both: it is taken where the
  // route's audiences list the API beside the app client.
  it("a token whose aud names this API and whose client_id the app client is taken where both are listed", async () => {
    const edge = harness(policy([CLIENT, API]));
    const bound = await accessToken({ aud: API });
    const taken = await sendMarked(edge, "/v1/both/things", bearer(bound));
    expect(taken.record).toMatchObject({ decision: "allow", route: "both" });
    expect(taken.seen).toHaveLength(1);
    // Listing the app client alone does not take it: its aud names no audience listed.
    const clientOnly = await sendMarked(edge, "/v1/things", bearer(bound));
    expect(clientOnly.record).toMatchObject({ decision: "deny", reason: "audience_mismatch", detail: "aud" });
  });
});

describe("a route taking two issuers reads each token's audience from its own issuer's claim", () => {
  // The route's own list replaces both issuers' lists, but not the claim each is read from: a
  // corp token naming the app client in `client_id` (as Keycloak's service-account tokens carry
  // one) is not for this API, and a Cognito token naming the API in `aud` is no access token
  // of the app client.
  it("a corp token with client_id the app client, and a Cognito token with aud the API, are refused", async () => {
    const edge = harness(policy([CLIENT, API]));
    const corpByClient = await corp.sign({ aud: "https://elsewhere.example.com", client_id: CLIENT });
    const refusedCorp = await sendMarked(edge, "/v1/both/x", bearer(corpByClient));
    expect(refusedCorp.seen).toHaveLength(0);
    expect(refusedCorp.record).toMatchObject({ decision: "deny", reason: "audience_mismatch", detail: "aud" });

    const cognitoByAud = await cognito.sign({ aud: API, token_use: "id" });
    const refusedCognito = await sendMarked(edge, "/v1/both/x", bearer(cognitoByAud));
    expect(refusedCognito.seen).toHaveLength(0);
    expect(refusedCognito.record).toMatchObject({
      decision: "deny",
      reason: "audience_mismatch",
      detail: "client_id",
    });

    // Each issuer's own kind of token is taken, so the refusals above are the claims' doing.
    for (const token of [await corp.sign({ aud: API }), await accessToken()]) {
      const taken = await sendMarked(edge, "/v1/both/x", bearer(token));
      expect(taken.record).toMatchObject({ decision: "allow", route: "both" });
      expect(taken.seen).toHaveLength(1);
    }
  });
});
