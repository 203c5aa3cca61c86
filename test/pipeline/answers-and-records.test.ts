// The error model, the audit log and what README.md promises of them (Errors, Audit log,
// Metrics, Authorisation, Security model). Each test drives the real pipeline and asserts what
// the client got, what the record and the data point say, and that they agree.
import { beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../src/core/audit";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { heldOrigin } from "../support/waiting";

const unique = () => crypto.randomUUID().slice(0, 8);

let issuer: TestIssuer;
beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

type Route = PolicyDocument["routes"][number];

function withIssuer(routes: Route[], settings: PolicyDocument["settings"] = {}): PolicyDocument {
  return basePolicy({
    settings: { limiter_timeout_ms: 2000, ...settings },
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    routes,
  });
}

function only(edge: { audit: AuditRecord[] }): AuditRecord {
  expect(edge.audit).toHaveLength(1);
  return edge.audit[0] as AuditRecord;
}

describe("a token let through on a stale key set is logged, whatever happens next (README: Security model)", () => {
  // README: a stale key set serving on is counted (key source `stale` in the metrics) and
  // recorded (`key_source: "stale"` in the audit record of each request it lets through), as
  // every fail-open is counted and logged. The limiter's fail-open has a field of its own
  // (`failed_open`) that later stages leave alone; so has the key set's, beside `detail`,
  // which the next stage to say anything overwrites.

  /** An edge whose `/v1/**` takes the issuer's tokens and forwards to `upstream`, on a clock the test moves. */
  async function staleEdge(upstreams: PolicyDocument["upstreams"], bindings: Record<string, unknown> = {}) {
    const stale = await makeIssuer("ES256");
    let clock = Date.now();
    const edge = harness(
      basePolicy({
        issuers: { main: { kind: "oidc", issuer: stale.url, audiences: [AUDIENCE], cache_ttl_s: 300 } },
        upstreams,
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "origin" }],
      }),
      { authentication: { now: () => clock } },
      bindings,
    );
    const exp = Math.floor(clock / 1000) + 7200;
    // The first token fetches the set; then the issuer goes down and the set passes its TTL.
    const warm = await edge.fetch("/v1/warm", {
      headers: { authorization: `Bearer ${await stale.sign({ sub: "warm", exp })}` },
    });
    await warm.arrayBuffer();
    await stale.setMode("down");
    clock += 301_000;
    const token = await stale.sign({ sub: `late-${unique()}`, exp });
    return { edge, token, issuer: stale };
  }

  it("records the stale key set of a request whose origin cannot be reached", async () => {
    // The token was accepted on a key set past its TTL; the origin's failure replaces the detail.
    const { edge, token, issuer: stale } = await staleEdge({ origin: { url: "http://127.0.0.1:9", timeout_ms: 2000 } });
    try {
      const response = await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(502);
      const record = edge.audit.at(-1) as AuditRecord;
      expect(record).toMatchObject({ decision: "deny", reason: "origin_unavailable", user_sub: expect.any(String) });
      // The metrics saw the stale key set: the record is the one that lost it.
      expect(edge.dataPoints.at(-1)?.blobs?.[6]).toBe("stale");
      expect(record.key_source).toBe("stale");
    } finally {
      await stale.setMode("ok");
    }
  });

  it("records the stale key set of a forwarded request whose client hung up before its answer", async () => {
    // The origin acted on a request whose token only a stale key set vouched for; the
    // disconnect replaces the detail.
    // The warm-up request goes straight to the echo origin; the one under test is held.
    const origin = heldOrigin(echoOrigin);
    const binding = {
      fetch: (target: string, init?: RequestInit) =>
        new Headers(init?.headers).has("x-test-marker")
          ? origin.binding.fetch(target, init)
          : fetch(`${echoOrigin}${new URL(target).pathname}`, init),
    };
    const {
      edge,
      token,
      issuer: stale,
    } = await staleEdge({ origin: { service: "HELD_ORIGIN", timeout_ms: 5000 } }, { HELD_ORIGIN: binding });
    try {
      const m = marker();
      const client = new AbortController();
      const answered = edge.fetch(
        new Request("https://edge.test/v1/slow", {
          signal: client.signal,
          headers: { authorization: `Bearer ${token}`, "x-test-marker": m },
        }),
      );
      expect(await origin.settled.promise).toBe("answered");
      client.abort();
      origin.release.resolve();
      await (await answered).arrayBuffer();
      expect(await originSaw(m)).toHaveLength(1);
      const record = edge.audit.at(-1) as AuditRecord;
      expect(record).toMatchObject({ decision: "allow", reason: "client_closed", status: 499 });
      expect(edge.dataPoints.at(-1)?.blobs?.[6]).toBe("stale");
      expect(record.key_source).toBe("stale");
    } finally {
      await stale.setMode("ok");
    }
  });

  it("by contrast keeps a limit's fail-open in the record of a request whose origin cannot be reached", async () => {
    // The same, for the limiter's fail-open.
    const failing = {
      idFromName: (name: string) => name,
      get: () => ({
        acquire() {
          throw new Error("down");
        },
        release() {},
      }),
    };
    const edge = harness(
      basePolicy({
        upstreams: { echo: { url: "http://127.0.0.1:9", timeout_ms: 2000 } },
        routes: [
          {
            name: "public",
            methods: ["GET"],
            path: "/public/**",
            auth: "public",
            upstream: "echo",
            limits: [{ name: "per-ip", key: "ip", limit: 100, window_s: 60, on_error: "allow" }],
          },
        ],
      }),
      {},
      { ROUTE_LIMITER: failing, TENANT_LIMITER: failing },
    );
    const response = await edge.fetch("/public/x");
    expect(response.status).toBe(502);
    expect(only(edge)).toMatchObject({ reason: "origin_unavailable", failed_open: ["per-ip"] });
  });
});

/**
 * RFC 9110 §11.2 challenge: `Bearer` then auth-params, each `token=token` or `token="quoted"`,
 * comma-separated. Returns the params, or undefined where the grammar is not met (a second
 * challenge, a bare word, an unterminated quote).
 */
function bearerParams(header: string | null): Record<string, string> | undefined {
  if (header === null || !header.startsWith("Bearer ")) return undefined;
  const params: Record<string, string> = {};
  const param =
    /^[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([!#$%&'*+.^_`|~0-9A-Za-z-]+))[ \t]*(,|$)/;
  let rest = header.slice("Bearer ".length);
  while (rest.length > 0) {
    const match = param.exec(rest);
    if (!match) return undefined;
    const name = (match[1] as string).toLowerCase();
    if (name in params) return undefined; // RFC 6750 §3: each attribute at most once.
    params[name] = match[2] !== undefined ? match[2].replace(/\\(.)/g, "$1") : (match[3] as string);
    rest = rest.slice(match[0].length);
    if (match[4] === "" && rest.length > 0) return undefined;
  }
  return params;
}

describe("WWW-Authenticate is one well-formed Bearer challenge (RFC 6750 §3, RFC 9110 §11.2)", () => {
  // A realm the policy accepts may hold `,`, `=` and a space: quoted, it stays one parameter,
  // and a parser never reads an `error` the edge did not write.
  const REALM = "api, error=invalid_token scope=admin 'x'";

  function scopedEdge() {
    return harness(
      withIssuer(
        [
          {
            name: "pay",
            methods: ["GET"],
            path: "/pay/**",
            auth: { issuers: ["idp"], scopes: { all_of: ["pay:read", "pay:write"], any_of: ["pay:eu", "pay:us"] } },
            upstream: "echo",
          },
          {
            name: "any",
            methods: ["GET"],
            path: "/any/**",
            auth: { issuers: ["idp"], scopes: { any_of: ["ops:a", "ops:b"] } },
            upstream: "echo",
          },
        ],
        { realm: REALM },
      ),
    );
  }

  it.each<[string, string, Record<string, string>, number, string]>([
    ["no credential", "", { realm: REALM }, 401, "token_missing"],
    ["another scheme's credential", "Basic dXNlcjpwYXNz", { realm: REALM }, 401, "token_missing"],
    ["a bad Bearer syntax", "Bearer a b", { realm: REALM, error: "invalid_request" }, 400, "token_malformed"],
    ["a token that does not verify", "Bearer a.b.c", { realm: REALM, error: "invalid_token" }, 401, "token_invalid"],
  ])("%s: %s", async (_label, authorization, params, status, reason) => {
    const edge = scopedEdge();
    const m = marker();
    const headers: Record<string, string> = { "x-test-marker": m };
    if (authorization) headers.authorization = authorization;
    const response = await edge.fetch("/pay/x", { headers });
    expect(response.status).toBe(status);
    expect(bearerParams(response.headers.get("www-authenticate"))).toEqual(params);
    expect(((await response.json()) as { reason: string }).reason).toBe(reason);
    expect(only(edge)).toMatchObject({ decision: "deny", reason, status });
    expect(await originSaw(m)).toEqual([]);
  });

  it.each<[string, string, string, string]>([
    // README Errors: "its all_of scopes, and the first of its any_of scopes when the token has none of them".
    ["all_of met, none of any_of", "/pay/x", "pay:read pay:write", "pay:read pay:write pay:eu"],
    ["any_of met, part of all_of", "/pay/x", "pay:read pay:us", "pay:read pay:write"],
    ["nothing met", "/pay/x", "other", "pay:read pay:write pay:eu"],
    ["any_of alone, none met", "/any/x", "other", "ops:a"],
  ])("insufficient_scope, %s: scope names what the route needs", async (_label, path, held, needed) => {
    const edge = scopedEdge();
    const token = await issuer.sign({ sub: `u-${unique()}`, scope: held });
    const response = await edge.fetch(path, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(403);
    expect(bearerParams(response.headers.get("www-authenticate"))).toEqual({
      realm: REALM,
      error: "insufficient_scope",
      scope: needed,
    });
    expect(only(edge)).toMatchObject({ reason: "insufficient_scope", detail: "scope", user_sub: expect.any(String) });
  });
});

describe("credentials of other schemes reach no log line, data point or answer", () => {
  // The secrets review in audit.test.ts sends Bearer tokens; a client may send Basic, Digest or
  // an AWS signature to a Bearer route (token_missing), or to a public one (stripped).
  const BASIC = `Basic ${btoa(`svc-${unique()}:pw-${unique()}`)}`;
  const DIGEST = `Digest username="ada", realm="api", nonce="n-${unique()}", uri="/x", response="r-${unique()}"`;

  it.each([
    ["Basic on a Bearer route", "/pay/x", BASIC],
    ["Digest on a Bearer route", "/pay/x", DIGEST],
    ["Basic on a public route", "/public/x", BASIC],
  ])("%s", async (_label, path, authorization) => {
    const edge = harness(
      basePolicy({
        settings: { limiter_timeout_ms: 2000, server_timing: true },
        issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [
          ...basePolicy().routes,
          { name: "pay", methods: ["GET"], path: "/pay/**", auth: { issuers: ["idp"] }, upstream: "echo" },
        ],
      }),
    );
    const m = marker();
    const response = await edge.fetch(path, { headers: { authorization, "x-test-marker": m } });
    const body = await response.text();
    const record = only(edge);
    expect(edge.dataPoints).toHaveLength(1);
    if (path.startsWith("/pay")) {
      expect(response.status).toBe(401);
      expect(record).toMatchObject({ reason: "token_missing", detail: "unsupported_scheme" });
      expect(await originSaw(m)).toEqual([]);
    } else {
      expect(response.status).toBe(200);
      const [seen] = await originSaw(m);
      expect(seen?.headers.authorization).toBeUndefined();
    }
    const credential = authorization.slice(authorization.indexOf(" ") + 1);
    const lines = [
      ...edge.logs,
      ...edge.dataPoints.map((point) => JSON.stringify(point)),
      ...[...response.headers].map(([name, value]) => `${name}: ${value}`),
      body,
    ];
    for (const piece of [credential, ...credential.split(/[ ,="]+/).filter((part) => part.length > 8)]) {
      expect(lines.find((line) => line.includes(piece))).toBeUndefined();
    }
  });
});

describe("a JWT in the path is recorded as [jwt] after every character a path may hold literally", () => {
  // audit.test.ts covers `/`, `-`, `_`, `.`, a space and `%3D`; these are the sub-delims and
  // other characters the canonical path keeps unescaped.
  const jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
  it.each(["!", "$", "&", "'", "(", "*", "+", ",", "=", ":", "@", "~"])("after %s", async (before) => {
    const edge = harness(basePolicy());
    const response = await edge.fetch(`/public/cb${before}${jws}/x`);
    await response.arrayBuffer();
    const record = only(edge);
    expect(record.path).not.toBeNull();
    expect(record.path).not.toContain("eyJ");
    expect(record.path).toMatch(/\[jwt\]\/x$/);
    expect(JSON.stringify(edge.dataPoints)).not.toContain("c2lnbmF0dXJl");
  });
});
