// Whole stack against a real OpenID provider: oidc-provider issues JWT access tokens by the
// client credentials grant with a resource indicator; the edge (workerd, `wrangler dev`,
// the real createApp pipeline) finds the provider's keys through OpenID discovery and maps
// its claims through the policy's `claims` mapping. A second oidc-provider that the policy
// does not name plays the untrusted issuer. No token here is made by hand.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Edge, freePort, startEdge } from "./support/edge";
import { e2ePolicy } from "./support/policy";
import {
  API_RESOURCE,
  decodeJwt,
  newSigningKey,
  OTHER_RESOURCE,
  type RunningProvider,
  startProvider,
  tamper,
} from "./support/provider";
import { callEdge, type EchoOrigin, startOrigin } from "./support/stack";

const CLIENTS = [
  { id: "reports-reader", scope: "api:read", tenant: "acme" },
  { id: "ledger-writer", scope: "api:read api:write", tenant: "acme" },
];

let origin: EchoOrigin;
let trusted: RunningProvider;
let untrusted: RunningProvider;
let edge: Edge;

beforeAll(async () => {
  origin = await startOrigin();
  trusted = await startProvider({ clients: CLIENTS, keys: [await newSigningKey()] });
  // Same software, same client ids and resource, its own keys: only the policy tells them apart.
  untrusted = await startProvider({ clients: CLIENTS, keys: [await newSigningKey()] });
  edge = await startEdge({
    policy: e2ePolicy({
      issuer: trusted.issuer,
      originUrl: origin.url,
      deadOriginUrl: `http://127.0.0.1:${await freePort()}`,
    }),
    probePath: "/public/ready",
  });
}, 120_000);

afterAll(async () => {
  await edge?.stop();
  await Promise.all([trusted?.close(), untrusted?.close(), origin?.close()]);
}, 30_000);

/** Asserts a refusal: status, problem+json reason, and that the origin saw nothing of it. */
function expectRefused(answer: Awaited<ReturnType<typeof callEdge>>, status: number, reason: string) {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.headers.get("content-type")).toBe("application/problem+json");
  expect(answer.body.reason).toBe(reason);
  expect(origin.sawMarker(answer.marker)).toEqual([]);
}

describe("a real OpenID provider (oidc-provider) in front of the edge", () => {
  it("issues an RFC 9068 access token the edge accepts after discovering the provider's keys", async () => {
    const issued = await trusted.token("reports-reader");
    const { header, payload } = decodeJwt(issued.token);
    expect(header).toMatchObject({ typ: "at+jwt", alg: "ES256" });
    expect(payload).toMatchObject({
      iss: trusted.issuer,
      aud: API_RESOURCE,
      client_id: "reports-reader",
      org_id: "acme",
    });

    const answer = await callEdge(edge.url, "/v1/things", {
      token: issued.token,
      headers: { "x-user-sub": "admin", "x-tenant": "globex" },
    });
    expect(answer.status, answer.text).toBe(200);
    // Discovery once, then the key set once: both from the provider, through the issuer URL.
    expect(trusted.stats).toMatchObject({ discovery: 1, jwks: 1 });
    const [seen] = origin.sawMarker(answer.marker);
    // Identity mapped through the policy's `claims`: client_id → subject, org_id → tenant.
    expect(seen?.headers).toMatchObject({
      "x-user-sub": "reports-reader",
      "x-tenant": "acme",
      "x-user-scope": "api:read",
      "x-user-iss": trusted.issuer,
    });
    expect(seen?.headers.authorization).toBeUndefined();
    expect(JSON.stringify(seen?.headers)).not.toContain(issued.token);

    const audit = await edge.auditRecord(answer.requestId as string);
    expect(audit).toMatchObject({
      decision: "allow",
      route: "things-read",
      user_sub: "reports-reader",
      tenant_id: "acme",
    });
    expect(edge.linesContaining(issued.token.split(".")[2] as string)).toEqual([]);
  });

  it("keeps verifying fresh tokens from the cached key set, without refetching", async () => {
    for (let i = 0; i < 5; i += 1) {
      const answer = await callEdge(edge.url, "/v1/things", { token: (await trusted.token("reports-reader")).token });
      expect(answer.status, answer.text).toBe(200);
    }
    expect(trusted.stats).toMatchObject({ discovery: 1, jwks: 1 });
  });

  it("binds the tenant from the client's registration to the path", async () => {
    const { token } = await trusted.token("reports-reader");
    const own = await callEdge(edge.url, "/v1/tenants/acme/orders", { token });
    expect(own.status, own.text).toBe(200);
    expect(origin.sawMarker(own.marker)[0]?.headers["x-tenant"]).toBe("acme");
    expectRefused(await callEdge(edge.url, "/v1/tenants/globex/orders", { token }), 403, "tenant_mismatch");
  });

  it("authorises on the scopes the provider granted", async () => {
    const reader = await trusted.token("reports-reader");
    const refused = await callEdge(edge.url, "/v1/things", { token: reader.token, method: "POST", body: "{}" });
    expectRefused(refused, 403, "insufficient_scope");
    expect(refused.headers.get("www-authenticate")).toContain('scope="api:write"');

    const writer = await trusted.token("ledger-writer", { scope: "api:read api:write" });
    const allowed = await callEdge(edge.url, "/v1/things", { token: writer.token, method: "POST", body: '{"n":1}' });
    expect(allowed.status, allowed.text).toBe(200);
    expect(origin.sawMarker(allowed.marker)[0]).toMatchObject({ method: "POST", body_bytes: 7 });
    expect(origin.sawMarker(allowed.marker)[0]?.headers["x-user-scope"]).toBe("api:read api:write");
  });

  it("refuses a token from a provider the policy does not name (issuer_unknown) and never contacts it", async () => {
    const { token } = await untrusted.token("reports-reader");
    expect(decodeJwt(token).payload).toMatchObject({ aud: API_RESOURCE, client_id: "reports-reader" });
    const answer = await callEdge(edge.url, "/v1/things", { token });
    expectRefused(answer, 401, "issuer_unknown");
    expect(answer.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(untrusted.stats).toMatchObject({ discovery: 0, jwks: 0 });
    expect(await edge.auditRecord(answer.requestId as string)).toMatchObject({
      decision: "deny",
      reason: "issuer_unknown",
    });
  });

  it("refuses the trusted provider's token for another resource (audience_mismatch)", async () => {
    const { token } = await trusted.token("reports-reader", { resource: OTHER_RESOURCE });
    expect(decodeJwt(token).payload.aud).toBe(OTHER_RESOURCE);
    expectRefused(await callEdge(edge.url, "/v1/things", { token }), 401, "audience_mismatch");
  });

  it("refuses a real token whose claims were edited (token_invalid)", async () => {
    const { token } = await trusted.token("reports-reader");
    const forged = tamper(token, { org_id: "globex", scope: "api:read api:write" });
    expectRefused(await callEdge(edge.url, "/v1/tenants/globex/orders", { token: forged }), 401, "token_invalid");
    expect(trusted.stats.jwks).toBe(1);
  });
});
