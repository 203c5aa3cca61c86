// Legitimate traffic on authenticated routes that the edge must let through unaltered: tokens
// shaped as workload identity providers issue them (GitHub Actions OIDC, Kubernetes service
// accounts, SPIFFE JWT-SVIDs from SPIRE's OIDC discovery provider), a client's retry carrying
// an `Idempotency-Key`, and an Entra ID token near Entra's own groups bound, which is over the
// default `max_token_bytes` (README, Settings) and is let in once the cap is raised. Each token
// is signed by a real key the loopback issuer publishes; what reached the origin is read back
// from the echo origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let idp: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("RS256");
});

/** One issuer accepting `audience`, and a catch-all route for its tokens. */
function policy(audience: string, extra: Partial<PolicyDocument> = {}): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [audience] } },
    routes: [{ name: "api", methods: ["GET", "POST"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
    ...extra,
  });
}

const bearer = (token: string, headers: Record<string, string> = {}) => ({
  headers: { authorization: `Bearer ${token}`, ...headers },
});

describe("workload identity tokens, in the shapes their issuers write", () => {
  it("a GitHub Actions OIDC token (x5t header, sub with ':' '/' '@', string claims) reaches the origin as its repo", async () => {
    // token.actions.githubusercontent.com signs RS256 with `x5t` and `kid` in the header and
    // writes every claim as a string (`run_attempt: "1"`, `ref_protected: "true"`); its `sub`
    // joins the repository and the environment with ':'. None of that is a reason to refuse it.
    const AUD = "https://github.com/octo-org";
    const edge = harness(policy(AUD));
    const sub = "repo:octo-org/octo-repo:environment:prod";
    const token = await idp.sign(
      {
        aud: AUD,
        sub,
        tenant_id: undefined,
        scope: undefined,
        ref: "refs/heads/main",
        ref_type: "branch",
        ref_protected: "true",
        repository: "octo-org/octo-repo",
        repository_owner: "octo-org",
        repository_owner_id: "65",
        run_id: "12345678901",
        run_attempt: "1",
        job_workflow_ref: "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
        environment: "prod",
        runner_environment: "github-hosted",
        nbf: Math.floor(Date.now() / 1000) - 5,
      },
      { header: { x5t: "Ypb-6Pz7dH5gCgo0Nz9TeWe1Cz8" } },
    );
    const { response, body, record, got, seen } = await sendMarked(edge, "/v1/deployments", {
      method: "POST",
      body: "{}",
      ...bearer(token, { "content-type": "application/json" }),
    });
    expect(body?.reason).toBeUndefined();
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "api" });
    expect(seen).toHaveLength(1);
    expect(got["x-user-sub"]).toBe(sub);
    expect(got["x-user-scope"]).toBe("");
    expect(got).not.toHaveProperty("x-tenant");
    expect(got).not.toHaveProperty("authorization");
  });

  it("a Kubernetes projected service-account token (aud array, nested kubernetes.io claim) is let through", async () => {
    // The API server's tokens carry `aud` as an array, `sub` as system:serviceaccount:<ns>:<name>
    // and the pod binding in a nested `kubernetes.io` object the mapping never reads.
    const AUD = "https://api.example.com";
    const edge = harness(policy(AUD));
    const sub = "system:serviceaccount:payments:ledger-writer";
    const token = await idp.sign({
      aud: [AUD, "https://kubernetes.default.svc.cluster.local"],
      sub,
      tenant_id: undefined,
      scope: undefined,
      nbf: Math.floor(Date.now() / 1000) - 1,
      "kubernetes.io": {
        namespace: "payments",
        pod: { name: "ledger-writer-7d9c", uid: "c8e3f2a1-0b4d-4e5f-8a9b-1c2d3e4f5a6b" },
        serviceaccount: { name: "ledger-writer", uid: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d" },
      },
    });
    const { response, record, got } = await sendMarked(edge, "/v1/ledger", bearer(token));
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "api" });
    expect(got["x-user-sub"]).toBe(sub);
  });

  it("a SPIFFE JWT-SVID (typ JOSE, sub a spiffe:// ID, fractional NumericDates) is let through", async () => {
    // JWT-SVID §3 lets `typ` be JWT or JOSE; SPIRE's OIDC discovery provider publishes its keys
    // without `use` unless set_key_use is on. Fractional `iat`/`exp` are valid NumericDates
    // (RFC 7519 §2), as some issuers write them.
    const AUD = "spiffe://example.org/api";
    const edge = harness(policy(AUD));
    const sub = "spiffe://example.org/ns/prod/sa/billing";
    const now = Date.now() / 1000;
    const token = await idp.sign(
      { aud: [AUD], sub, tenant_id: undefined, scope: undefined, iat: now - 0.25, exp: now + 300.5 },
      { header: { typ: "JOSE" } },
    );
    const { response, record, got } = await sendMarked(edge, "/v1/invoices", bearer(token));
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "api" });
    expect(got["x-user-sub"]).toBe(sub);
  });
});

describe("a client's retry with an Idempotency-Key", () => {
  it("the key reaches the origin on the first try and on the retry with the same token, unaltered", async () => {
    // Stripe-style clients (and the IETF httpapi Idempotency-Key draft) resend a POST with the
    // same key so the origin can answer the retry from its record: the edge must pass the key on
    // each time, and admit the same token twice (the second from its verified-token cache).
    const AUD = "https://api.example.com";
    const edge = harness(policy(AUD));
    const token = await idp.sign({ aud: AUD, sub: "client-7" });
    const KEY = "8e03978e-40d5-43e8-bc93-6894a57f9324";
    const send = () =>
      sendMarked(edge, "/v1/payments", {
        method: "POST",
        body: '{"amount":100}',
        ...bearer(token, { "idempotency-key": KEY, "content-type": "application/json" }),
      });
    const first = await send();
    const retry = await send();
    for (const sent of [first, retry]) {
      expect(sent.response.status).toBe(200);
      expect(sent.record).toMatchObject({ decision: "allow", route: "api" });
      expect(sent.got["idempotency-key"]).toBe(KEY);
      expect(sent.got["x-user-sub"]).toBe("client-7");
      expect(sent.seen[0]?.body_bytes).toBe(14);
    }
  });
});

describe("an Entra ID token near Entra's own groups bound, against max_token_bytes", () => {
  // Entra puts up to 200 group object ids in a JWT before it switches to the overage claim
  // (Microsoft's "groups overage" limit): with the rest of a v2 token that is about 12 KB,
  // over the default max_token_bytes of 8192 (README, Settings). The cap is a documented
  // setting; this pins what a deployment for such users gets with and without raising it.
  const CLIENT = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
  const groups = Array.from(
    { length: 200 },
    (_, i) => `${i.toString(16).padStart(8, "0")}-86f1-41af-91ab-2d7cd011db47`,
  );

  async function entraToken(): Promise<string> {
    return idp.sign({
      aud: CLIENT,
      sub: "wLRDMKCpNvnCDBWl3S5BPHbUyJjTJD2Fwn6aaRhy1Ds",
      oid: "690222be-ff1a-4d56-abd1-7e4f7d38e474",
      tid: "72f988bf-86f1-41af-91ab-2d7cd011db47",
      tenant_id: undefined,
      scope: undefined,
      scp: "access_as_user",
      groups,
      ver: "2.0",
    });
  }

  it("is refused before any parsing under the default cap, and nothing is forwarded", async () => {
    const token = await entraToken();
    expect(token.length).toBeGreaterThan(8192);
    const { response, body, record, seen } = await sendMarked(harness(policy(CLIENT)), "/v1/me", bearer(token));
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_invalid");
    expect(record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "token_too_large" });
    expect(seen).toHaveLength(0);
  });

  it("with max_token_bytes raised for it, is let through with every group", async () => {
    const token = await entraToken();
    const edge = harness(policy(CLIENT, { settings: { limiter_timeout_ms: 2000, max_token_bytes: 16384 } }));
    const { response, record, got } = await sendMarked(edge, "/v1/me", bearer(token));
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "api" });
    expect(got["x-user-groups"]?.split(",")).toEqual(groups);
    expect(got["x-user-scope"]).toBe("access_as_user");
  });
});
