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
  });

  it("GET /v1/limited: the 6th request in a minute is refused with the limit named", async () => {
    const edge = demo();
    const bearer = { authorization: `Bearer ${await token({ sub: `limited-${crypto.randomUUID()}` })}` };
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
    });
  });

  it("POST /v1/payments needs payments:write and the payments-writer group", async () => {
    const edge = demo();
    const weak = await edge.fetch("/v1/payments", {
      method: "POST",
      headers: { authorization: `Bearer ${await token()}` },
    });
    expect(weak.status).toBe(403);
    const strong = await edge.fetch("/v1/payments", {
      method: "POST",
      body: "{}",
      headers: { authorization: `Bearer ${await token({ scope: "payments:write", groups: ["payments-writer"] })}` },
    });
    expect(strong.status).toBe(200);
  });

  it("GET and HEAD /v1/** need api:read", async () => {
    const edge = demo();
    expect(
      (await edge.fetch("/v1/things", { headers: { authorization: `Bearer ${await token({ scope: "other" })}` } }))
        .status,
    ).toBe(403);
    expect(
      (await edge.fetch("/v1/things", { method: "HEAD", headers: { authorization: `Bearer ${await token()}` } }))
        .status,
    ).toBe(200);
  });

  it("GET /access/** takes a Cloudflare Access assertion for the demo application", async () => {
    const edge = demo();
    const assertion = await team.sign({
      aud: ["demo-access-aud-tag"],
      email: "user@example.com",
      tenant_id: undefined,
      scope: undefined,
    });
    const response = await edge.fetch("/access/x", { headers: { "cf-access-jwt-assertion": assertion } });
    expect(response.status).toBe(200);
    const echoed = (await response.json()) as { headers: Record<string, string> };
    expect(echoed.headers["x-user-email"]).toBe("user@example.com");
  });
});
