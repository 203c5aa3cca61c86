import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { PipelineEnv } from "../../src/pipeline/context";
import { formatServerTiming, serverTiming } from "../../src/pipeline/server-timing";
import { runStages, type Stage } from "../../src/pipeline/stage";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer } from "../support/issuers";

const SERVER_TIMING = /^(auth|limit|upstream);dur=\d+(\.\d)?(, (auth|limit|upstream);dur=\d+(\.\d)?)*$/;

/** `auth;dur=1.2, upstream;dur=12` → { auth: 1.2, upstream: 12 } */
function entries(header: string | null): Record<string, number> {
  return Object.fromEntries(
    (header ?? "").split(", ").map((entry) => {
      const [name, dur] = entry.split(";dur=");
      return [name, Number(dur)];
    }),
  );
}

describe("Server-Timing", () => {
  it("is absent by default", async () => {
    const edge = harness(basePolicy());
    const response = await edge.fetch("/public/x");
    expect(response.status).toBe(200);
    expect(response.headers.has("server-timing")).toBe(false);
  });

  it("carries the limiter's stage on a limited route, and on a 429 that stage alone (the origin was never asked)", async () => {
    const name = `timed-${crypto.randomUUID().slice(0, 8)}`;
    const edge = harness(
      basePolicy({
        settings: { limiter_timeout_ms: 2000, server_timing: true },
        routes: [
          {
            name,
            methods: ["GET"],
            path: `/${name}/**`,
            auth: "public",
            upstream: "echo",
            limits: [{ name: "ceiling", key: "route", limit: 1, window_s: 3600 }],
          },
        ],
      }),
    );
    const admitted = await edge.fetch(`/${name}/a`);
    expect(admitted.status).toBe(200);
    expect(Object.keys(entries(admitted.headers.get("server-timing")))).toEqual(["limit", "upstream"]);
    const refused = await edge.fetch(`/${name}/a`);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("server-timing")).toMatch(SERVER_TIMING);
    expect(Object.keys(entries(refused.headers.get("server-timing")))).toEqual(["limit"]);
  });

  it("carries the upstream duration when the policy turns it on", async () => {
    const edge = harness(basePolicy({ settings: { server_timing: true } }));
    const response = await edge.fetch("/public/x");
    const header = response.headers.get("server-timing");
    expect(header).toMatch(SERVER_TIMING);
    expect(entries(header)).toEqual({ upstream: edge.audit[0]?.upstream_ms });
  });

  it("carries the auth duration of a verified token, and nothing about who it was", async () => {
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        settings: { server_timing: true },
        issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" }],
      }),
    );
    const token = await issuer.sign({ sub: "alice", tenant_id: "acme" });
    const response = await edge.fetch("/v1/things", { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    const header = response.headers.get("server-timing") as string;
    expect(header).toMatch(SERVER_TIMING);
    const record = edge.audit[0];
    expect(entries(header)).toEqual({
      auth: Math.round((record?.authz_ms as number) * 10) / 10,
      upstream: record?.upstream_ms,
    });
    for (const identity of ["alice", "acme", record?.token_hash as string, issuer.url]) {
      expect(header).not.toContain(identity);
    }
  });

  it("is on deny responses too, with only the stages that ran", async () => {
    const edge = harness(
      basePolicy({ settings: { server_timing: true }, upstreams: { echo: { url: "http://127.0.0.1:9" } } }),
    );
    const response = await edge.fetch("/public/x");
    expect(response.status).toBe(502);
    expect(entries(response.headers.get("server-timing"))).toEqual({ upstream: edge.audit[0]?.upstream_ms });
    const notFound = await edge.fetch("/nowhere");
    expect(notFound.status).toBe(404);
    expect(notFound.headers.has("server-timing")).toBe(false);
  });

  it("formats auth, limit and upstream in that order, rounded to 0.1 ms", () => {
    expect(formatServerTiming({ upstreamMs: 12, authMs: 1.23, limitMs: 0.26 })).toBe(
      "auth;dur=1.2, limit;dur=0.3, upstream;dur=12",
    );
    expect(formatServerTiming({ authMs: 0 })).toBe("auth;dur=0");
    expect(formatServerTiming({})).toBeUndefined();
    expect(formatServerTiming({ authMs: Number.NaN, limitMs: -1 })).toBeUndefined();
  });

  it("never carries identity, whatever else the stages left on the context", async () => {
    const app = new Hono<PipelineEnv>();
    const setup: Stage["run"] = (c) => {
      c.set("policy", { serverTiming: true } as PipelineEnv["Variables"]["policy"]);
      c.set("timings", { authMs: 1.25, limitMs: 0.3, upstreamMs: 12 });
      c.set("identity", {
        issuerId: "main",
        issuer: "https://idp.example/",
        kind: "oidc",
        subject: "u_1234",
        tenant: "t_42",
        scopes: ["orders:read"],
        groups: [],
        claims: {},
        tokenHash: async () => "9f86d081884c7d65",
      });
      return new Response("ok");
    };
    app.get("*", runStages([serverTiming(), { run: setup }]));
    const response = await app.request("/x");
    const header = response.headers.get("server-timing") as string;
    expect(header).toBe("auth;dur=1.3, limit;dur=0.3, upstream;dur=12");
    for (const identity of ["u_1234", "t_42", "idp.example", "9f86d081884c7d65", "orders"]) {
      expect(header).not.toContain(identity);
    }
  });

  it("keeps the origin's own metrics, and drops the origin's Timing-Allow-Origin", async () => {
    const edge = harness(
      basePolicy({
        settings: { server_timing: true },
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
    );
    const originFields = [
      ["server-timing", "db;dur=53"],
      ["timing-allow-origin", "*"],
    ];
    const response = await edge.fetch("/svc/x", { headers: { "x-respond-with": JSON.stringify(originFields) } });
    expect(response.status).toBe(200);
    // A list field: the origin's entry stays next to the edge's.
    const header = response.headers.get("server-timing") ?? "";
    expect(header).toMatch(/^db;dur=53, upstream;dur=\d/);
    // The edge's timings tell whether a token came from the cache: no page of another origin
    // may read them, whatever the origin allows.
    expect(response.headers.get("timing-allow-origin")).toBeNull();
  });
});
