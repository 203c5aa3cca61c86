// The bundled demo policy, end to end: its issuer pointed at a test identity provider and
// its upstream at the echo origin, everything else exactly as shipped.
import { beforeAll, describe, expect, it } from "vitest";
import policy from "../../policy/policy.json";
import { echoOrigin, harness, marker, originSaw } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";

let idp: TestIssuer;
let team: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
  team = await makeIssuer("RS256");
});

function demo() {
  return harness({
    ...policy,
    issuers: {
      demo: { ...policy.issuers.demo, issuer: idp.url },
      access: { ...policy.issuers.access, team_domain: team.url },
    },
    upstreams: { api: { url: echoOrigin } },
    // Local Durable Objects can be cold on first call; the 50 ms production budget is for warm ones.
    settings: { ...policy.settings, limiter_timeout_ms: 2000 },
  });
}

const AUD = policy.issuers.demo.audiences[0] as string;
const token = (claims: Record<string, unknown> = {}) => idp.sign({ aud: AUD, ...claims });

describe("demo policy", () => {
  it("GET /public/** is public and forwarded", async () => {
    const edge = demo();
    const m = marker();
    const response = await edge.fetch("/public/hello", { headers: { "x-test-marker": m } });
    expect(response.status).toBe(200);
    expect(await originSaw(m)).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", route: "public", user_sub: null, status: 200 });
  });

  it("GET /v1/limited: the 6th request in a minute is refused with the limit named", async () => {
    const edge = demo();
    const m = marker();
    const bearer = {
      authorization: `Bearer ${await token({ sub: `limited-${crypto.randomUUID()}` })}`,
      "x-test-marker": m,
    };
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 6; i++) {
      last = await edge.fetch("/v1/limited", { headers: bearer });
      statuses.push(last.status);
      if (i < 5) {
        expect(last.headers.get("x-ratelimit-limit")).toBe("5");
        expect(last.headers.get("x-ratelimit-remaining")).toBe(String(4 - i));
        await last.arrayBuffer();
      }
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    const body = (await last!.json()) as {
      reason: string;
      limit: { name: string; key: string; limit: number; window_s: number };
    };
    expect(body.reason).toBe("rate_limited");
    expect(body.limit).toMatchObject({ name: "limited-user-per-minute", key: "user", limit: 5, window_s: 60 });
    expect(Number(last!.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(last!.headers.get("ratelimit-policy")).toContain('"limited-user-per-minute";q=5;w=60');
    expect(edge.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "rate_limited",
      limit: "limited-user-per-minute",
      route: "limited",
      status: 429,
    });
    // Only the five admitted requests reached the origin.
    expect(await originSaw(m)).toHaveLength(5);
  });

  it("POST /v1/payments needs payments:write and the payments-writer group", async () => {
    const edge = demo();
    const m = marker();
    const post = async (claims: Record<string, unknown>) =>
      edge.fetch("/v1/payments", {
        method: "POST",
        body: "{}",
        headers: { authorization: `Bearer ${await token(claims)}`, "x-test-marker": m },
      });
    const weak = await post({});
    expect(weak.status).toBe(403);
    expect(weak.headers.get("www-authenticate")).toContain('scope="payments:write"');
    expect(((await weak.json()) as { reason: string }).reason).toBe("insufficient_scope");
    expect(edge.audit.at(-1)).toMatchObject({
      route: "payments-create",
      reason: "insufficient_scope",
      detail: "scope",
    });
    // The scope alone is not enough: the group is checked too.
    const scopeOnly = await post({ scope: "payments:write", groups: ["eng"] });
    expect(scopeOnly.status).toBe(403);
    expect(((await scopeOnly.json()) as { reason: string }).reason).toBe("forbidden");
    expect(edge.audit.at(-1)).toMatchObject({ route: "payments-create", reason: "forbidden", detail: "group" });
    // And the group alone is not enough either.
    const groupOnly = await post({ groups: ["payments-writer"] });
    expect(groupOnly.status).toBe(403);
    expect(((await groupOnly.json()) as { reason: string }).reason).toBe("insufficient_scope");
    expect(await originSaw(m)).toHaveLength(0);
    const strong = await post({ scope: "payments:write", groups: ["payments-writer"] });
    expect(strong.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ route: "payments-create", decision: "allow", reason: null });
    const seen = await originSaw(m);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: "POST", path: "/v1/payments", body_bytes: 2 });
  });

  it("GET and HEAD /v1/** need api:read", async () => {
    const edge = demo();
    const m = marker();
    const refused = await edge.fetch("/v1/things", {
      headers: { authorization: `Bearer ${await token({ scope: "other" })}`, "x-test-marker": m },
    });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { reason: string }).reason).toBe("insufficient_scope");
    expect(refused.headers.get("www-authenticate")).toContain('scope="api:read"');
    expect(edge.audit.at(-1)).toMatchObject({ route: "api-read", reason: "insufficient_scope", detail: "scope" });
    expect(await originSaw(m)).toHaveLength(0);
    const head = await edge.fetch("/v1/things", {
      method: "HEAD",
      headers: { authorization: `Bearer ${await token()}`, "x-test-marker": m },
    });
    expect(head.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ route: "api-read", decision: "allow", method: "HEAD" });
    expect((await originSaw(m)).map((seen) => seen.method)).toEqual(["HEAD"]);
  });

  it("GET /access/** takes a Cloudflare Access assertion for the demo application", async () => {
    const edge = demo();
    const assertion = await team.sign({
      aud: ["demo-access-aud-tag"],
      type: "app",
      email: "user@example.com",
      tenant_id: undefined,
      scope: undefined,
    });
    const response = await edge.fetch("/access/x", { headers: { "cf-access-jwt-assertion": assertion } });
    expect(response.status).toBe(200);
    const echoed = (await response.json()) as { headers: Record<string, string> };
    expect(echoed.headers["x-user-email"]).toBe("user@example.com");
    // The assertion itself stops at the edge.
    expect(echoed.headers["cf-access-jwt-assertion"]).toBeUndefined();
    expect(edge.audit[0]).toMatchObject({ decision: "allow", route: "access-app", issuer: team.url });
  });
});
