// One Analytics Engine data point per request, written by the audit stage. miniflare binds a
// local dataset (from wrangler.toml) that accepts writes but cannot be read back, so these
// tests bind a recording dataset in its place and assert the exact rows.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { describe, expect, it, vi } from "vitest";
import type { AuditRecord } from "../../src/core/audit";
import { audit } from "../../src/pipeline/audit";
import type { PipelineEnv } from "../../src/pipeline/context";
import { requestId } from "../../src/pipeline/request-id";
import { runStages, type Stage } from "../../src/pipeline/stage";
import { basePolicy, harness, marker, originSaw, recordingDataset } from "../support/harness";
import { AUDIENCE, makeIssuer, makeKey } from "../support/issuers";

describe("metrics data points", () => {
  it("writes one row per request for an allowed request", async () => {
    const edge = harness(basePolicy());
    const request = new Request("https://edge.test/public/hello", {
      headers: { "cf-connecting-ip": "203.0.113.9" },
      cf: { colo: "AMS", asn: 64501, country: "NL" },
    });
    const response = await edge.fetch(request);
    expect(response.status).toBe(200);
    const record = edge.audit[0] as AuditRecord;
    expect(edge.dataPoints).toEqual([
      {
        indexes: [""],
        blobs: [
          "allow",
          "",
          "public",
          "GET",
          "",
          "",
          "",
          "echo",
          "AMS",
          "NL",
          "64501",
          "",
          "",
          "",
          "",
          "policy:public@v7",
          record.request_id,
        ],
        doubles: [200, record.latency_ms, -1, record.upstream_ms, -1, -1, 1],
      },
    ]);
    expect(record.upstream_ms).toBeGreaterThanOrEqual(0);
  });

  it("writes the reason of a denied request, and no client IP for a refusal that is not an invalid token", async () => {
    const edge = harness(basePolicy());
    const response = await edge.fetch("/admin/users", { headers: { "cf-connecting-ip": "2001:db8::7" } });
    expect(response.status).toBe(404);
    const record = edge.audit[0] as AuditRecord;
    expect(edge.dataPoints).toEqual([
      {
        indexes: [""],
        blobs: [
          "deny",
          "route_not_found",
          "",
          "GET",
          "",
          "",
          "",
          "",
          "",
          "",
          "",
          "",
          "",
          "",
          "",
          "",
          record.request_id,
        ],
        doubles: [404, record.latency_ms, -1, -1, -1, -1, 1],
      },
    ]);
  });

  it("writes the tenant, issuer, key source and verification time of an authenticated request", async () => {
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" }],
      }),
    );
    const first = await issuer.sign({ sub: "alice", tenant_id: "acme" });
    const second = await issuer.sign({ sub: "bob", tenant_id: "acme" });
    for (const token of [first, first, second]) {
      const response = await edge.fetch("/v1/things", { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(200);
    }
    const [point] = edge.dataPoints;
    const record = edge.audit[0] as AuditRecord;
    expect(record).toMatchObject({ tenant_id: "acme", user_sub: "alice", issuer: issuer.url });
    expect(record.token_hash).toMatch(/^[0-9a-f]{8,}$/);
    expect(point).toEqual({
      indexes: ["acme"],
      blobs: [
        "allow",
        "",
        "v1",
        "GET",
        "alice",
        "main",
        "fetch",
        "echo",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "policy:v1@v7",
        record.request_id,
      ],
      doubles: [200, record.latency_ms, expect.any(Number), record.upstream_ms, record.authz_ms, -1, 1],
    });
    // Verification is part of the auth stage; the key cache serves everything after the first fetch.
    expect(point?.doubles?.[2]).toBeGreaterThanOrEqual(0);
    expect(point?.doubles?.[2]).toBeLessThanOrEqual(record.authz_ms as number);
    expect(edge.dataPoints.map((p) => p.blobs?.[6])).toEqual(["fetch", "token_cache", "memory"]);
    expect(edge.dataPoints.map((p) => p.blobs?.[4])).toEqual(["alice", "alice", "bob"]);
  });

  it("counts a token whose unknown kid cost a key fetch as a key-cache miss", async () => {
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], jwks_uri: `${issuer.url}/jwks` } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" }],
      }),
      { authentication: { now: () => clock } },
    );
    let clock = Date.now();
    const stranger = await makeKey("ES256");
    const good = await issuer.sign({ sub: "alice" });
    const forged = await issuer.sign({ sub: "mallory" }, { key: stranger });
    const send = async (token: string) =>
      (await edge.fetch("/v1/things", { headers: { authorization: `Bearer ${token}` } })).arrayBuffer();
    await send(good);
    clock += 31_000; // past the refresh cooldown
    await send(forged);
    await send(forged);
    // First request: cold fetch. Second: unknown kid, one refresh (a miss). Third: within the
    // refresh cooldown, no fetch — the key cache answered, so it counts as a hit.
    expect(edge.dataPoints.map((p) => [p.blobs?.[0], p.blobs?.[5], p.blobs?.[6]])).toEqual([
      ["allow", "main", "fetch"],
      ["deny", "main", "fetch"],
      ["deny", "main", "memory"],
    ]);
  });

  it("counts every request refused for an unavailable key set as a key-cache miss", async () => {
    const issuer = await makeIssuer("ES256");
    await issuer.setMode("down");
    const edge = harness(
      basePolicy({
        issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" }],
      }),
    );
    const token = await issuer.sign({ sub: "alice" });
    for (let i = 0; i < 3; i++) {
      await (await edge.fetch("/v1/things", { headers: { authorization: `Bearer ${token}` } })).arrayBuffer();
    }
    // Only the first made a fetch; the others fell in the refresh cooldown. All three missed.
    expect(edge.dataPoints.map((p) => [p.blobs?.[1], p.blobs?.[6]])).toEqual([
      ["jwks_unavailable", "fetch"],
      ["jwks_unavailable", "fetch"],
      ["jwks_unavailable", "fetch"],
    ]);
  });

  it("names the issuer and key source of a verified token whose identity claims are refused", async () => {
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" }],
      }),
    );
    const unsafe = await issuer.sign({ sub: "alice\r\nx-user-sub: admin" });
    const headers = { authorization: `Bearer ${unsafe}`, "cf-connecting-ip": "203.0.113.9" };
    await (await edge.fetch("/v1/things", { headers })).arrayBuffer();
    expect(edge.audit[0]).toMatchObject({ reason: "token_invalid", detail: "subject_missing_or_unsafe" });
    expect(edge.dataPoints.map((p) => [p.blobs?.[0], p.blobs?.[5], p.blobs?.[6]])).toEqual([["deny", "main", "fetch"]]);
    // An invalid token is what the credential-stuffing queries count: its client IP is kept.
    expect(edge.dataPoints[0]?.blobs?.[11]).toBe("203.0.113.9");
  });

  it("names the issuer and key source of a verified token the route refuses for its audience", async () => {
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [
          {
            name: "strict",
            methods: ["GET"],
            path: "/strict/**",
            auth: { issuers: ["main"], audiences: ["https://other.test"] },
            upstream: "echo",
          },
          { name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" },
        ],
      }),
    );
    const headers = { authorization: `Bearer ${await issuer.sign({ sub: "alice" })}` };
    await (await edge.fetch("/strict/x", { headers })).arrayBuffer();
    expect(edge.audit[0]).toMatchObject({ reason: "audience_mismatch" });
    // The check fetched the key set and verified the signature: the key-cache and
    // verification-time queries count it (blob6, blob7).
    expect(edge.dataPoints.map((p) => [p.blobs?.[0], p.blobs?.[5], p.blobs?.[6]])).toEqual([["deny", "main", "fetch"]]);
    // The same token verified on another route, then refused here from the verified-token
    // cache: counted the same way, with its key source.
    await (await edge.fetch("/v1/x", { headers })).arrayBuffer();
    await (await edge.fetch("/strict/x", { headers })).arrayBuffer();
    expect(edge.dataPoints.map((p) => [p.blobs?.[1], p.blobs?.[5], p.blobs?.[6], (p.doubles?.[2] ?? -1) >= 0])).toEqual(
      [
        ["audience_mismatch", "main", "fetch", true],
        ["", "main", "memory", true],
        ["audience_mismatch", "main", "token_cache", true],
      ],
    );
  });

  it("counts a verified-token cache hit as token_cache, after the set past its TTL is refreshed; a lookup the stale set answers says stale", async () => {
    const issuer = await makeIssuer("ES256");
    let clock = Date.now();
    const edge = harness(
      basePolicy({
        issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], cache_ttl_s: 300 } },
        routes: [
          { name: "v1", methods: ["GET", "OPTIONS"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" },
        ],
      }),
      { authentication: { now: () => clock } },
    );
    const exp = Math.floor(clock / 1000) + 7200;
    const first = await issuer.sign({ sub: "a", exp });
    const second = await issuer.sign({ sub: "b", exp });
    const send = async (token: string) =>
      (await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${token}` } })).status;
    expect(await send(first)).toBe(200); // fetches the set
    clock += 200_000;
    expect(await send(second)).toBe(200); // verified, and cached
    clock += 150_000; // the set is past cache_ttl_s; the cached entry is 150 s old
    await issuer.resetCounters();
    // From the verified-token cache, once the set is refreshed (the issuer may have withdrawn
    // the key): no key lookup.
    expect(await send(second)).toBe(200);
    expect((await issuer.stats()).jwks_fetches).toBe(1);
    // Past its TTL again, with the issuer down: the refresh fails and the set serves on, stale.
    await issuer.setMode("down");
    clock += 301_000;
    expect(await send(await issuer.sign({ sub: "c", exp }))).toBe(200);
    // A client reusing one token through the outage shows too: stale-key-sets.sql counts it.
    // (Its entry, older than the cache's five minutes, is checked afresh once, against the
    // stale set, then answered from the cache again.)
    for (let i = 0; i < 3; i++) expect(await send(second)).toBe(200);
    // Answered by the edge itself meanwhile (Max-Forwards: 0): the record still says stale.
    const atEdge = await edge.fetch("/v1/x", {
      method: "OPTIONS",
      headers: { authorization: `Bearer ${second}`, "max-forwards": "0" },
    });
    expect(atEdge.status).toBe(200);
    expect(edge.audit.at(-1)?.detail).toBe("key_set_stale");
    edge.audit.pop();
    edge.dataPoints.pop();
    expect(edge.dataPoints.map((p) => p.blobs?.[6])).toEqual([
      "fetch",
      "memory",
      "token_cache",
      "stale",
      "stale",
      "token_cache_stale",
      "token_cache_stale",
    ]);
    // And each such request's record says so: a fail-open is recorded, not only counted.
    expect(edge.audit.map((record) => [record.decision, record.detail])).toEqual([
      ["allow", null],
      ["allow", null],
      ["allow", null],
      ["allow", "key_set_stale"],
      ["allow", "key_set_stale"],
      ["allow", "key_set_stale"],
      ["allow", "key_set_stale"],
    ]);
    expect(edge.dataPoints.map((p) => p.blobs?.[14])).toEqual(["", "", "", ...Array(4).fill("key_set_stale")]);
    await issuer.setMode("ok");
  });

  it("times token verification in double5 and double3: -1 when none ran; double3 also -1 before the key lookup", async () => {
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" }],
      }),
    );
    const send = async (headers: Record<string, string> = {}) => (await edge.fetch("/v1/x", { headers })).arrayBuffer();
    await send(); // no credential: refused before verification
    const stranger = await makeIssuer("ES256"); // an issuer this policy does not know
    await send({ authorization: `Bearer ${await stranger.sign({})}` });
    await send({ authorization: `Bearer ${await issuer.sign({})}` });
    const [missing, unknown, allowed] = edge.dataPoints.map((p) => [p.blobs?.[1], p.doubles?.[2], p.doubles?.[4]]);
    expect(missing).toEqual(["token_missing", -1, -1]);
    expect(unknown?.slice(0, 2)).toEqual(["issuer_unknown", -1]);
    expect(unknown?.[2]).toBeGreaterThanOrEqual(0);
    expect(allowed?.[1]).toBe(allowed?.[2]);
    expect(allowed?.[1]).toBeGreaterThanOrEqual(0);
  });

  it("writes the limit that was hit, and the limits that failed open", async () => {
    const failing = {
      idFromName: (name: string) => name,
      get: () => ({
        acquire() {
          throw new Error("limiter down");
        },
        release() {},
      }),
    };
    const limited = (limit: Record<string, unknown>) =>
      basePolicy({
        routes: [
          {
            name: "public",
            methods: ["GET"],
            path: "/public/**",
            auth: "public",
            upstream: "echo",
            limits: [{ name: "per-ip", key: "ip", limit: 1, window_s: 60, ...limit }],
          },
        ],
      });
    const open = harness(limited({ on_error: "allow" }), {}, { ROUTE_LIMITER: failing });
    expect((await open.fetch("/public/x")).status).toBe(200);
    expect(open.audit[0]).toMatchObject({ decision: "allow", failed_open: ["per-ip"] });
    expect(open.dataPoints[0]?.blobs?.slice(12, 14)).toEqual(["", "per-ip"]);
    expect(open.dataPoints[0]?.doubles?.[5]).toBeGreaterThanOrEqual(0);

    const edge = harness(limited({}));
    const headers = { "cf-connecting-ip": "198.51.100.23" };
    await (await edge.fetch("/public/x", { headers })).arrayBuffer();
    expect((await edge.fetch("/public/x", { headers })).status).toBe(429);
    const [, refused] = edge.dataPoints;
    expect(refused?.blobs?.slice(0, 2)).toEqual(["deny", "rate_limited"]);
    expect(refused?.blobs?.slice(11, 15)).toEqual(["", "per-ip", "", "ip_limit_exceeded"]);
    expect(refused?.doubles?.[0]).toBe(429);
  });

  it("writes exactly one row per request, matching the audit records", async () => {
    const edge = harness(basePolicy());
    await edge.fetch("/public/a");
    await edge.fetch("/nowhere");
    await edge.fetch("/public/%2F");
    expect(edge.dataPoints).toHaveLength(3);
    expect(edge.dataPoints.map((p) => p.blobs?.[16])).toEqual(edge.audit.map((r) => r.request_id));
    expect(edge.dataPoints.map((p) => p.blobs?.[1])).toEqual(["", "route_not_found", "bad_request"]);
  });

  it("reads the identity, token check and stage timings the earlier stages left on the context", async () => {
    const dataset = recordingDataset();
    const app = new Hono<PipelineEnv>();
    const setup: Stage["run"] = (c) => {
      c.set("route", {
        name: "orders",
        matchedRule: "policy:orders@v3",
        upstreamName: "orders-svc",
      } as PipelineEnv["Variables"]["route"]);
      c.set("identity", {
        issuerId: "main",
        issuer: "https://idp.example/",
        kind: "oidc",
        subject: "u_1234",
        tenant: "t_42",
        scopes: [],
        groups: [],
        claims: {},
        tokenHash: async () => "9f86d081884c7d65",
      });
      c.set("tokenCheck", { issuerId: "main", verifyMs: 0.8, keySource: "fetch" });
      Object.assign(c.get("timings"), { authMs: 1.1, limitMs: 0.4 });
      c.set("outcome", { decision: "deny", reason: "rate_limited", limit: "tenant-per-minute", failedOpen: ["user"] });
      return new Response(null, { status: 429 });
    };
    app.get("*", runStages([requestId(), audit([]), { run: setup }]));
    const ctx = createExecutionContext();
    const response = await app.fetch(new Request("https://edge.test/orders/1"), { METRICS: dataset }, ctx);
    await waitOnExecutionContext(ctx);
    expect(response.status).toBe(429);
    const [point] = dataset.points;
    expect(point?.indexes).toEqual(["t_42"]);
    expect(point?.blobs?.slice(0, 8)).toEqual([
      "deny",
      "rate_limited",
      "orders",
      "GET",
      "u_1234",
      "main",
      "fetch",
      "orders-svc",
    ]);
    expect(point?.blobs?.slice(12, 16)).toEqual(["tenant-per-minute", "user", "", "policy:orders@v3"]);
    expect(point?.doubles).toEqual([429, expect.any(Number), 0.8, -1, 1.1, 0.4, 1]);
  });

  it("runs and logs as before without a METRICS binding", async () => {
    const errors = vi.spyOn(console, "error");
    try {
      const edge = harness(basePolicy(), {}, { METRICS: undefined });
      const response = await edge.fetch("/public/x");
      expect(response.status).toBe(200);
      expect(edge.audit).toHaveLength(1);
      expect(edge.dataPoints).toHaveLength(0);
      expect(errors).not.toHaveBeenCalled();
    } finally {
      errors.mockRestore();
    }
  });

  it("keeps serving and auditing when the dataset rejects a write", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      const failing = {
        writeDataPoint() {
          throw new TypeError("blob too large: t_42 Bearer abc");
        },
      };
      const edge = harness(basePolicy(), {}, { METRICS: failing });
      const response = await edge.fetch("/public/x");
      expect(response.status).toBe(200);
      expect(edge.audit).toHaveLength(1);
      const lines = errors.mock.calls.map((call) => call.join(" "));
      expect(lines).toEqual(["portcullis: metrics write failed (TypeError)"]);
    } finally {
      errors.mockRestore();
    }
  });

  it("keeps serving and auditing when the METRICS binding throws when read", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      const unreadable = {
        get writeDataPoint(): never {
          throw new TypeError("binding gone");
        },
      };
      const edge = harness(basePolicy(), {}, { METRICS: unreadable });
      const m = marker();
      const response = await edge.fetch("/public/x", { headers: { "x-test-marker": m } });
      expect(response.status).toBe(200);
      expect(await originSaw(m)).toHaveLength(1);
      expect(edge.audit).toHaveLength(1);
      expect(edge.audit[0]).toMatchObject({ decision: "allow", status: 200 });
      // Read once per request, so logged once: an outage must not double the error log.
      expect(errors.mock.calls.map((call) => call.join(" "))).toEqual([
        "portcullis: metrics binding unreadable (TypeError)",
      ]);
    } finally {
      errors.mockRestore();
    }
  });

  it("works with the local Analytics Engine binding from wrangler.toml", async () => {
    const local = (env as { METRICS?: AnalyticsEngineDataset }).METRICS;
    expect(typeof local?.writeDataPoint).toBe("function");
    const errors = vi.spyOn(console, "error");
    try {
      const edge = harness(basePolicy(), {}, { METRICS: local });
      const response = await edge.fetch("/public/x", { headers: { "cf-connecting-ip": "192.0.2.1" } });
      expect(response.status).toBe(200);
      expect(edge.audit).toHaveLength(1);
      expect(errors).not.toHaveBeenCalled();
    } finally {
      errors.mockRestore();
    }
  });
});
