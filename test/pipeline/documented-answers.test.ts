// README claims through the whole pipeline (workerd, real KV and Durable Objects, loopback
// echo origin and issuer): the jwks_unavailable answer, the size defaults at their boundary,
// and which responses carry rate-limit fields.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, b64url, makeIssuer, type TestIssuer } from "../support/issuers";

const unique = () => crypto.randomUUID().slice(0, 8);

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

function authPolicy(idpUrl: string, extra: Partial<PolicyDocument> = {}): PolicyDocument {
  return basePolicy({
    settings: { limiter_timeout_ms: 2000 },
    issuers: { idp: { kind: "oidc", issuer: idpUrl, audiences: [AUDIENCE] } },
    routes: [
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
      {
        name: "scoped",
        methods: ["GET"],
        path: "/scoped/**",
        auth: { issuers: ["idp"], scopes: { all_of: ["api:write"] } },
        upstream: "echo",
        limits: [{ name: `u-${unique()}`, key: "user", limit: 100, window_s: 60 }],
      },
      {
        name: "read",
        methods: ["GET"],
        path: "/v1/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
        limits: [{ name: `u-${unique()}`, key: "user", limit: 100, window_s: 60 }],
      },
    ],
    ...extra,
  });
}

describe("jwks_unavailable", () => {
  it("a key set that cannot be had is 503 problem+json with Retry-After, nothing forwarded", async () => {
    const down = await makeIssuer("ES256");
    await down.setMode("down");
    try {
      const edge = harness(authPolicy(down.url));
      const m = marker();
      const response = await edge.fetch("/v1/x", {
        headers: { authorization: `Bearer ${await down.sign()}`, "x-test-marker": m },
      });
      expect(response.status).toBe(503);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      const body = (await response.json()) as { reason: string; status: number; request_id: string };
      expect(body).toMatchObject({ reason: "jwks_unavailable", status: 503 });
      expect(body.request_id).toBe(response.headers.get("x-request-id"));
      expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await originSaw(m)).toHaveLength(0);
      expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "jwks_unavailable", status: 503 });
    } finally {
      await down.setMode("ok");
    }
  });
});

describe("size defaults at their boundary", () => {
  it("max_url_bytes defaults to 8192: a URL of 8192 is served, 8193 is 400", async () => {
    const edge = harness(basePolicy());
    const prefix = "https://edge.test/public/";
    const at = prefix + "a".repeat(8192 - prefix.length);
    expect(at.length).toBe(8192);
    expect((await edge.fetch(at)).status).toBe(200);
    const over = await edge.fetch(`${at}b`);
    expect(over.status).toBe(400);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "url_too_long" });
  });

  it("max_token_bytes defaults to 8192: an 8193-character token is refused unparsed, 8192 is parsed", async () => {
    const edge = harness(authPolicy(issuer.url));
    const header = b64url(JSON.stringify({ alg: "ES256", kid: "nope" }));
    const shape = (length: number) => {
      const payload = b64url(JSON.stringify({ iss: issuer.url, pad: "" }));
      const fill = length - header.length - payload.length - 2;
      return `${header}.${payload}.${"A".repeat(fill)}`;
    };
    const at = shape(8192);
    expect(at.length).toBe(8192);
    await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${at}` } });
    expect(edge.audit.at(-1)?.detail).not.toBe("token_too_large");
    await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${shape(8193)}` } });
    expect(edge.audit.at(-1)).toMatchObject({ reason: "token_invalid", detail: "token_too_large" });
  });
});

describe("rate-limit response fields", () => {
  it("a 401 or 403 on a limited route carries no rate-limit fields; an admitted request does", async () => {
    const edge = harness(authPolicy(issuer.url));
    const sub = `u-${unique()}`;
    const fields = ["ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"];
    const missing = await edge.fetch("/scoped/x");
    expect(missing.status).toBe(401);
    for (const name of fields) expect(missing.headers.get(name)).toBeNull();
    const scope = await edge.fetch("/scoped/x", {
      headers: { authorization: `Bearer ${await issuer.sign({ sub, scope: "api:read" })}` },
    });
    expect(scope.status).toBe(403);
    for (const name of fields) expect(scope.headers.get(name)).toBeNull();
    const ok = await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${await issuer.sign({ sub })}` } });
    expect(ok.status).toBe(200);
    for (const name of fields) expect(ok.headers.get(name)).not.toBeNull();
    expect(ok.headers.get("x-ratelimit-limit")).toBe("100");
    expect(ok.headers.get("x-ratelimit-remaining")).toBe("99");
  });
});
