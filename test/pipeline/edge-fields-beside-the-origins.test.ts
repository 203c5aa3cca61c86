// The fields the edge writes beside an origin's own: Vary joined to the origin's, and a
// WebSocket answer's fields.
import { beforeAll, describe, expect, it } from "vitest";
import type { LimitSpec, PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";

const APP = "https://app.example.com";
const unique = () => crypto.randomUUID().slice(0, 8);

let issuer: TestIssuer;
beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** An `x-respond-with` value for the ECHO_SERVICE binding: the origin answers with these fields. */
const respondWith = (fields: [string, string][]) => JSON.stringify(fields);

/** An authenticated GET route on the ECHO_SERVICE binding, counted by `limits` alone. */
function authPolicy(name: string, limits: LimitSpec[], extra: Record<string, unknown> = {}): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    upstreams: { svc: { service: "ECHO_SERVICE" } },
    routes: [
      {
        name,
        methods: ["GET"],
        path: `/${name}/**`,
        auth: { issuers: ["idp"] },
        upstream: "svc",
        inherit_default_limits: false,
        limits,
        ...extra,
      },
    ],
  });
}

describe("Vary on an answer the origin already varied", () => {
  // RFC 9110 §12.5.5: Vary is a set of request fields. The edge joins its own members (the
  // credential, the CORS Origin) to the origin's list only where it lacks them: an origin that
  // already names them (frameworks' CORS middleware adds `Origin`; APIs add `Authorization`)
  // would get each twice, and every further layer that did the same would grow the list again.
  it("names each request field once, however many of them the origin named itself", async () => {
    const name = `vary-${unique()}`;
    const edge = harness(authPolicy(name, [], { cors: { allow_origins: [APP] } }));
    const token = await issuer.sign({ sub: "alice" });
    const response = await edge.fetch(`/${name}/x`, {
      headers: {
        origin: APP,
        authorization: `Bearer ${token}`,
        "x-respond-with": respondWith([["vary", "Origin, Authorization"]]),
      },
    });
    expect(response.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: name, status: 200 });
    const members = (response.headers.get("vary") ?? "").split(",").map((m) => m.trim().toLowerCase());
    // Both still named: the answer varies by the page and by the credential.
    expect(members).toEqual(expect.arrayContaining(["origin", "authorization"]));
    expect(members, response.headers.get("vary") ?? "").toEqual([...new Set(members)]);
  });
});

describe("a WebSocket answer", () => {
  // The runtime hands the 101 over with its socket; its fields are re-wrapped like any other
  // answer's, and must come through with the edge's own written over the origin's.
  it("keeps the origin's subprotocol, and carries the edge's request id, rate-limit fields and Vary", async () => {
    const name = `ws-${unique()}`;
    const origin = {
      async fetch() {
        const [client, server] = Object.values(new WebSocketPair());
        server?.accept();
        return new Response(null, {
          status: 101,
          webSocket: client,
          headers: {
            "sec-websocket-protocol": "chat.v2",
            "x-request-id": "origin-chosen",
            ratelimit: '"origin-quota";r=7;t=30',
          },
        });
      },
    };
    const policy = authPolicy(name, [{ name: "per-user", key: "user", limit: 10, window_s: 3600 }]);
    policy.upstreams = { sock: { service: "SOCK" } };
    (policy.routes[0] as { upstream: string }).upstream = "sock";
    const edge = harness(policy, {}, { SOCK: origin });
    const token = await issuer.sign({ sub: "alice" });
    const response = await edge.fetch(`/${name}/x`, {
      headers: { authorization: `Bearer ${token}`, upgrade: "websocket", "x-request-id": "client-chosen" },
    });
    expect(response.status).toBe(101);
    expect(response.webSocket).not.toBeNull();
    const record = edge.audit.at(-1);
    expect(record).toMatchObject({ decision: "allow", status: 101, route: name });
    expect(response.headers.get("sec-websocket-protocol")).toBe("chat.v2");
    expect(response.headers.get("x-request-id")).toBe(record?.request_id);
    expect(response.headers.get("ratelimit")).toMatch(/^"per-user";r=9;t=\d+$/);
    expect(response.headers.get("ratelimit-policy")).toBe('"per-user";q=10;w=3600');
    expect(response.headers.get("vary")).toBe("Authorization");
    // Hop-by-hop, whatever the status: the runtime writes its own for the upgrade.
    expect(response.headers.get("upgrade")).toBeNull();
  });
});
