// Review of what the edge forwards and logs: names in a Connection header that are no field
// names, a Connection naming what the edge writes, and a JWT in the path of a refused request.
// Each test asserts what reached the origin or the client, and the audit record.
import { beforeAll, describe, expect, it } from "vitest";
import type { IssuerConfig } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

const policy = () =>
  basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } } as Record<string, IssuerConfig>,
    upstreams: { echo: { url: echoOrigin, timeout_ms: 2000 }, svc: { service: "ECHO_SERVICE" } },
    routes: [
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
      { name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ],
  });

async function send(path: string, headers: Record<string, string> = {}) {
  const edge = harness(policy());
  const m = marker();
  const response = await edge.fetch(path, { headers: { "x-test-marker": m, ...headers } });
  const text = await response.text();
  const seen = await originSaw(m);
  return { response, text, seen, got: seen[0]?.headers ?? {}, record: edge.audit.at(-1), logs: edge.logs };
}

/** What the client gets from the ECHO_SERVICE binding told to answer with these headers. */
async function answeredWith(respondWith: [string, string][]) {
  const edge = harness(policy());
  const response = await edge.fetch("/svc/x", { headers: { "x-respond-with": JSON.stringify(respondWith) } });
  await response.arrayBuffer();
  return { response, record: edge.audit.at(-1), logs: edge.logs };
}

describe("a client's Connection header", () => {
  it("naming things that are no field names (quoted, spaced, empty) neither fails the request nor spares a spoofed identity", async () => {
    // The request side reads Connection members as origins read names, never deleting by the
    // raw member: a member that is no valid header name must not make Headers throw.
    const token = await issuer.sign({ sub: "alice", tenant_id: "acme" });
    const { response, got, record, logs } = await send("/v1/x", {
      authorization: `Bearer ${token}`,
      connection: '"x-user-sub", x b, , x@y;q=1, X_Tenant',
      "x-user-sub": "admin",
      "x-tenant": "globex",
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", user_sub: "alice", tenant_id: "acme" });
    expect(got).toMatchObject({ "x-user-sub": "alice", "x-tenant": "acme" });
    expect(got.connection).toBeUndefined();
    expect(got.authorization).toBeUndefined();
    expect(JSON.stringify(got)).not.toMatch(/admin|globex/);
    expect(logs.join("\n")).not.toContain("unhandled");
  });
});

describe("an origin's Connection header", () => {
  it("naming the request id and Set-Cookie removes the origin's own, never the id the edge writes", async () => {
    const { response, record } = await answeredWith([
      ["connection", "X-Request-Id, set-cookie"],
      ["x-request-id", "origin-chosen"],
      ["set-cookie", "session=origin"],
      ["x-kept", "yes"],
    ]);
    expect(response.status).toBe(200);
    expect(response.headers.get("x-request-id")).toBe(record?.request_id);
    expect(response.headers.get("x-request-id")).not.toBe("origin-chosen");
    expect(response.headers.get("set-cookie")).toBeNull();
    expect(response.headers.get("connection")).toBeNull();
    expect(response.headers.get("x-kept")).toBe("yes");
    expect(record).toMatchObject({ decision: "allow", reason: null, status: 200 });
  });
});

describe("a JWT in the path of a refused request", () => {
  it("is recorded as [jwt] on every refusal path, and its signature reaches no log line", async () => {
    const jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
    const edge = harness(policy());
    const sends: [string, RequestInit?][] = [
      [`/nowhere/${jws}`],
      [`/v1/cb/${jws}`],
      [`/v1/cb/${jws}`, { headers: { authorization: "Bearer x.y.z" } }],
      [`/public/cb/${jws}`, { headers: { cookie: "a=b CF_Authorization=x" } }],
      [`/public/cb/${jws}`, { method: "DELETE" }],
    ];
    for (const [path, init] of sends) await (await edge.fetch(path, init)).arrayBuffer();
    expect(edge.audit.map((r) => [r.path, r.reason, r.detail])).toEqual([
      ["/nowhere/[jwt]", "route_not_found", null],
      ["/v1/cb/[jwt]", "token_missing", "no_credentials"],
      ["/v1/cb/[jwt]", "token_invalid", "non_canonical_base64url"],
      ["/public/cb/[jwt]", "bad_request", "credential_cookie_in_value"],
      ["/public/cb/[jwt]", "route_not_found", null],
    ]);
    const everything = [...edge.logs, ...edge.dataPoints.map((point) => JSON.stringify(point))].join("\n");
    expect(everything).not.toContain("c2lnbmF0dXJl");
    expect(everything).not.toContain("eyJzdWIiOiJhIn0");
  });
});
