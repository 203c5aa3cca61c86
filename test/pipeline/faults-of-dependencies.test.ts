// Fault injection where the other tests inject none (README: Errors, Rate limits' on_error, The
// JWKS cache, Audit log, Metrics; DESIGN.md §2.2 and §3): dependencies that throw where a promise
// is expected, reject with values that are not Errors (undefined, a string, an object with no
// name, a Proxy whose every trap throws), resolve with something malformed, or fail in the work
// done after the response. Each case asserts the answer's reason, the one audit record, what
// reached the origin, and that nothing surfaced as an unhandled rejection.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp } from "../../src/app";
import { type AuditRecord, consoleSink } from "../../src/core/audit";
import type { PolicyDocument } from "../../src/core/policy-types";
import {
  basePolicy,
  echoOrigin,
  type Harness,
  harness,
  marker,
  originSaw,
  serviceEdge,
  unhandledDuring,
} from "../support/harness";
import { AUDIENCE, makeIssuer } from "../support/issuers";
import { realLimiter } from "../support/limiter-objects";

afterEach(() => {
  vi.restoreAllMocks();
});

interface Problem {
  reason?: string;
  request_id?: string;
}

async function problem(response: Response): Promise<Problem> {
  expect(response.headers.get("content-type") ?? "").toContain("application/problem+json");
  return (await response.json()) as Problem;
}

/** A value every look at which throws: its properties, its prototype, its keys. */
function hostileValue(): object {
  const trap = () => {
    throw new Error("trap");
  };
  return new Proxy(
    {},
    {
      get: trap,
      getPrototypeOf: trap,
      has: trap,
      ownKeys: trap,
      getOwnPropertyDescriptor: trap,
    },
  );
}

/** `path` answered 502 origin_unavailable with `detail`: one record, nothing unhandled. */
async function expectOriginFailure(edge: Harness, path: string, detail: string): Promise<void> {
  const unhandled = await unhandledDuring(async () => {
    const response = await edge.fetch(path);
    expect(response.status).toBe(502);
    expect((await problem(response)).reason).toBe("origin_unavailable");
  });
  expect(unhandled).toEqual([]);
  expect(edge.audit.map((r) => [r.decision, r.reason, r.detail])).toEqual([["deny", "origin_unavailable", detail]]);
}

/** Odd things a dependency may throw or reject with, by label. */
const ODD_VALUES: [string, () => unknown][] = [
  ["undefined", () => undefined],
  ["a string", () => "boom"],
  ["an object without a name", () => ({ code: 7 })],
  ["a Proxy whose every trap throws", hostileValue],
];

/** An edge with one public route to the echo origin, and one record per request. */
function publicEdge(bindings: Record<string, unknown> = {}, options = {}): Harness {
  return harness(
    basePolicy({
      routes: [{ name: "public", methods: ["GET", "POST"], path: "/public/**", auth: "public", upstream: "echo" }],
    }),
    options,
    bindings,
  );
}

/** A public route whose only upstream is the service binding SVC. */
function serviceRouteEdge(binding: unknown): Harness {
  return harness(
    basePolicy({
      upstreams: { svc: { service: "SVC" } },
      routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
    }),
    {},
    { SVC: binding },
  );
}

/** A service binding whose `fetch` property throws `value` when read (the route stage reads it). */
function bindingThrowingOnRead(value: () => unknown) {
  return {
    get fetch(): never {
      throw value();
    },
  };
}

describe("a stage that throws something other than a plain Error", () => {
  it.each([
    ["undefined", () => undefined, "undefined"],
    ["a string", () => "boom", "string"],
    ["an object without a name", () => ({ code: 7 }), "object"],
  ])("%s: 500 internal_error problem+json, one record naming only its type", async (_label, value, detail) => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const edge = serviceRouteEdge(bindingThrowingOnRead(value));
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/svc/x");
      expect(response.status).toBe(500);
      const body = await problem(response);
      expect(body.reason).toBe("internal_error");
      expect(JSON.stringify(body)).not.toContain("boom");
    });
    expect(unhandled).toEqual([]);
    expect(edge.audit.map((r) => [r.decision, r.reason, r.detail, r.status, r.route])).toEqual([
      ["deny", "internal_error", detail, 500, "svc"],
    ]);
    expect(errors.mock.calls.map((call) => call.join(" "))).toEqual([`portcullis: unhandled ${detail}`]);
  });
});

describe("an error log that throws (its sink failing)", () => {
  it("console.log throwing in the default console sink: served, the other sink still has its one record", async () => {
    vi.spyOn(console, "log").mockImplementation(() => {
      throw new Error("stdout gone");
    });
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const edge = publicEdge({}, { auditSinks: [consoleSink] });
    const m = marker();
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/public/a", { headers: { "x-test-marker": m } });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    });
    expect(unhandled).toEqual([]);
    expect(edge.audit.map((r) => [r.decision, r.status, r.route])).toEqual([["allow", 200, "public"]]);
    expect(errors.mock.calls.map((call) => call.join(" "))).toEqual(["portcullis: audit sink failed (Error)"]);
    expect(await originSaw(m)).toHaveLength(1);
  });

  it.each(ODD_VALUES.slice(0, 3))(
    "writeDataPoint throwing %s: served, one record, the error logged by its type only",
    async (_l, value) => {
      const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
      const metrics = {
        writeDataPoint() {
          throw value();
        },
      };
      const edge = publicEdge({ METRICS: metrics });
      const unhandled = await unhandledDuring(async () => {
        const response = await edge.fetch("/public/a");
        expect(response.status).toBe(200);
        await response.arrayBuffer();
      });
      expect(unhandled).toEqual([]);
      expect(edge.audit.map((r) => [r.decision, r.status])).toEqual([["allow", 200]]);
      expect(errors.mock.calls).toHaveLength(1);
      expect(String(errors.mock.calls[0]?.[0])).toMatch(/^portcullis: metrics write failed \(\w+\)$/);
    },
  );
});

describe("ctx.waitUntil that fails", () => {
  const waitUntils: [string, () => unknown][] = [
    [
      "throws",
      () => () => {
        throw new Error("no more deferred work");
      },
    ],
    ["is not a function", () => 5],
    ["is missing", () => undefined],
  ];

  it.each(waitUntils)("waitUntil %s: served, the record still written once", async (_label, waitUntil) => {
    const records: AuditRecord[] = [];
    const app = createApp(basePolicy(), { auditSinks: [(record) => void records.push(record)] });
    const ctx = { waitUntil: waitUntil(), passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    const m = marker();
    const unhandled = await unhandledDuring(async () => {
      const response = await app.fetch(
        new Request("https://edge.test/public/a", { headers: { "x-test-marker": m } }),
        env,
        ctx,
      );
      expect(response.status).toBe(200);
      await response.arrayBuffer();
      await vi.waitFor(() => expect(records).toHaveLength(1));
    });
    expect(unhandled).toEqual([]);
    expect(records.map((r) => [r.decision, r.status, r.route])).toEqual([["allow", 200, "public"]]);
    expect(await originSaw(m)).toHaveLength(1);
  });
});

describe("request.cf of odd types, and a request without a signal", () => {
  it("cf fields of the wrong types are recorded as null, never as what they hold", async () => {
    const edge = publicEdge();
    const response = await edge.fetch(
      new Request("https://edge.test/public/a", {
        cf: { colo: { toString: () => "AMS" }, asn: "64500", country: 44 },
      } as RequestInit),
    );
    expect(response.status).toBe(200);
    expect(edge.audit.map((r) => [r.edge_pop, r.client_asn, r.client_country, r.decision])).toEqual([
      [null, null, null, "allow"],
    ]);
    expect(edge.dataPoints).toHaveLength(1);
  });

  it("cf that is a string rather than an object: recorded as absent", async () => {
    const edge = publicEdge();
    const request = new Request("https://edge.test/public/a");
    Object.defineProperty(request, "cf", { value: "AMS" });
    const response = await edge.fetch(request);
    expect(response.status).toBe(200);
    expect(edge.audit.map((r) => [r.edge_pop, r.client_asn, r.client_country])).toEqual([[null, null, null]]);
  });
});

describe("the origin's fetch failing in odd ways", () => {
  it.each(ODD_VALUES)(
    "global fetch throwing %s synchronously: 502 origin_unreachable, one record",
    async (_l, value) => {
      const edge = publicEdge();
      const real = globalThis.fetch;
      vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
        if (String(input instanceof Request ? input.url : input).startsWith(echoOrigin)) throw value();
        return real(input, init);
      });
      await expectOriginFailure(edge, "/public/a", "origin_unreachable");
    },
  );

  it.each(ODD_VALUES)("global fetch rejecting with %s: 502 origin_unreachable, one record", async (_l, value) => {
    const edge = publicEdge();
    const real = globalThis.fetch;
    vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
      if (String(input instanceof Request ? input.url : input).startsWith(echoOrigin)) return Promise.reject(value());
      return real(input, init);
    });
    await expectOriginFailure(edge, "/public/a", "origin_unreachable");
  });
});

describe("a service binding whose fetch returns no promise, or no Response", () => {
  it("a Response returned synchronously (no promise) to a GET is passed on", async () => {
    const edge = serviceEdge({ fetch: () => new Response("sync answer") }, 1000);
    const response = await edge.fetch("/held/x");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("sync answer");
    expect(edge.audit.map((r) => [r.decision, r.status])).toEqual([["allow", 200]]);
  });

  // A plain object carrying a valid status is no Response: never an empty 200 recorded as allowed.
  it("a plain object with status 200 (no Response): 502 origin_bad_status, never an empty 200", async () => {
    const edge = serviceEdge({ fetch: async () => ({ status: 200 }) }, 1000);
    await expectOriginFailure(edge, "/held/x", "origin_bad_status");
  });

  // An answer whose fields cannot be read is the origin's fault (502 origin_bad_status), not an
  // edge error. (It has no `then`: a resolution with a value whose `then` throws is a rejection,
  // origin_unreachable, above.)
  it("an answer whose every field but then throws: 502 origin_bad_status", async () => {
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    const answer = new Proxy(
      {},
      {
        get(_target, name) {
          if (name === "then") return undefined;
          throw new Error("field unreadable");
        },
      },
    );
    const edge = serviceEdge({ fetch: async () => answer }, 1000);
    await expectOriginFailure(edge, "/held/x", "origin_bad_status");
  });

  it.each(ODD_VALUES)("rejecting with %s: 502 origin_unreachable, one record", async (_l, value) => {
    const edge = serviceEdge({ fetch: () => Promise.reject(value()) }, 1000);
    await expectOriginFailure(edge, "/held/x", "origin_unreachable");
  });
});

/** A public route with one route ceiling of the given on_error, to the echo origin. */
function limitedEdge(onError: "deny" | "allow", routeLimiter: unknown): Harness {
  const policy: PolicyDocument = basePolicy({
    routes: [
      {
        name: "limited",
        methods: ["GET"],
        path: "/limited/**",
        auth: "public",
        upstream: "echo",
        limits: [{ name: "ceiling", key: "route", limit: 1000, window_s: 60, on_error: onError }],
      },
    ],
  });
  return harness(policy, {}, { ROUTE_LIMITER: routeLimiter });
}

describe("a limiter object failing in odd ways", () => {
  it.each(ODD_VALUES)(
    "acquire rejecting with %s: fails closed 503 limiter_unavailable; open when allowed",
    async (_l, value) => {
      const rejecting = () => realLimiter("ROUTE_LIMITER", () => ({ acquire: () => Promise.reject(value()) }));
      const closed = limitedEdge("deny", rejecting());
      const open = limitedEdge("allow", rejecting());
      const m = marker();
      const unhandled = await unhandledDuring(async () => {
        const refused = await closed.fetch("/limited/a", { headers: { "x-test-marker": m } });
        expect(refused.status).toBe(503);
        expect(refused.headers.get("retry-after")).toBe("1");
        expect((await problem(refused)).reason).toBe("limiter_unavailable");
        const admitted = await open.fetch("/limited/b", { headers: { "x-test-marker": m } });
        expect(admitted.status).toBe(200);
        await admitted.arrayBuffer();
      });
      expect(unhandled).toEqual([]);
      expect(closed.audit.map((r) => [r.reason, r.detail, r.limit])).toEqual([
        ["limiter_unavailable", "limiter_route_error", "ceiling"],
      ]);
      expect(open.audit.map((r) => [r.decision, r.failed_open])).toEqual([["allow", ["ceiling"]]]);
      expect((await originSaw(m)).map((seen) => seen.path)).toEqual(["/limited/b"]);
    },
  );

  it.each(ODD_VALUES)("idFromName throwing %s: the limit's on_error decides", async (_l, value) => {
    const throwing = () => ({
      idFromName: () => {
        throw value();
      },
      get: () => {
        throw value();
      },
    });
    const closed = limitedEdge("deny", throwing());
    const open = limitedEdge("allow", throwing());
    const unhandled = await unhandledDuring(async () => {
      expect((await problem(await closed.fetch("/limited/a"))).reason).toBe("limiter_unavailable");
      const admitted = await open.fetch("/limited/b");
      expect(admitted.status).toBe(200);
      await admitted.arrayBuffer();
    });
    expect(unhandled).toEqual([]);
    expect(closed.audit.map((r) => r.detail)).toEqual(["limiter_route_error"]);
    expect(open.audit.map((r) => r.failed_open)).toEqual([["ceiling"]]);
  });

  it("acquire returning a thenable whose then throws: the limit's on_error decides", async () => {
    const thenable = () =>
      realLimiter("ROUTE_LIMITER", () => ({
        acquire: () =>
          ({
            // biome-ignore lint/suspicious/noThenProperty: a thenable whose then cannot be read is the fault
            get then() {
              throw new Error("then unreadable");
            },
          }) as never,
      }));
    const closed = limitedEdge("deny", thenable());
    const open = limitedEdge("allow", thenable());
    expect((await problem(await closed.fetch("/limited/a"))).reason).toBe("limiter_unavailable");
    const admitted = await open.fetch("/limited/b");
    expect(admitted.status).toBe(200);
    expect(open.audit.map((r) => r.failed_open)).toEqual([["ceiling"]]);
  });

  // An answer that is not an AcquireResult (null, a string: an object of another version,
  // mid-deploy) is no answer: the limit goes by its on_error (README, Rate limits).
  it.each([
    ["null", null],
    ["a string", "allowed"],
  ])("acquire resolving with %s: 503 limiter_unavailable when closed, admitted when open", async (_l, value) => {
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    const malformed = () => realLimiter("ROUTE_LIMITER", () => ({ acquire: async () => value as never }));
    const closed = limitedEdge("deny", malformed());
    const open = limitedEdge("allow", malformed());
    const m = marker();
    const refused = await closed.fetch("/limited/a", { headers: { "x-test-marker": m } });
    const admitted = await open.fetch("/limited/b", { headers: { "x-test-marker": m } });
    expect({ closed: refused.status, open: admitted.status }).toEqual({ closed: 503, open: 200 });
    expect(closed.audit.map((r) => [r.reason, r.detail])).toEqual([["limiter_unavailable", "limiter_route_error"]]);
    expect(open.audit.map((r) => [r.decision, r.failed_open])).toEqual([["allow", ["ceiling"]]]);
    expect((await originSaw(m)).map((seen) => seen.path)).toEqual(["/limited/b"]);
  });

  // An object whose verdict its counters do not bear out (no counter statuses, or a refusal
  // whose every counter admitted, so none was charged) is no answer the edge can read: never
  // taken as admitting, nor as a rate limit it never counted, but the limit's on_error.
  it.each([
    ["allowed: false with no counters", { allowed: false, counters: [] }],
    [
      "allowed: false over a counter that admitted",
      { allowed: false, counters: [{ allowed: true, remaining: 999, resetMs: 60_000, retryAfterMs: 0 }] },
    ],
    ["allowed: false over a counter that is null", { allowed: false, counters: [null] }],
  ])("acquire answering %s: 503 limiter_unavailable when closed, never forwarded", async (_l, answer) => {
    const refusingBlank = realLimiter("ROUTE_LIMITER", () => ({ acquire: async () => answer as never }));
    const edge = limitedEdge("deny", refusingBlank);
    const m = marker();
    const response = await edge.fetch("/limited/a", { headers: { "x-test-marker": m } });
    expect(response.status).toBe(503);
    expect((await problem(response)).reason).toBe("limiter_unavailable");
    expect(edge.audit.map((r) => [r.decision, r.reason, r.detail])).toEqual([
      ["deny", "limiter_unavailable", "limiter_route_error"],
    ]);
    expect(await originSaw(m)).toEqual([]);
  });

  it.each(ODD_VALUES)(
    "release rejecting with %s after a refusal: still 429, no unhandled rejection",
    async (_l, value) => {
      // Two objects: the tenant object admits and holds, the route object refuses; the hold is
      // given back after the response, and that give-back fails.
      const issuer = await makeIssuer();
      const token = await issuer.sign({ sub: "u", tenant_id: `t-${crypto.randomUUID()}` });
      let releases = 0;
      const edge = harness(
        basePolicy({
          issuers: { main: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
          routes: [
            {
              name: "both",
              methods: ["GET"],
              path: "/both/**",
              auth: { issuers: ["main"] },
              upstream: "echo",
              limits: [
                { name: "per-user", key: "user", limit: 100, window_s: 60 },
                { name: "closed-ceiling", key: "route", limit: 1, window_s: 3600 },
              ],
            },
          ],
        }),
        {},
        {
          TENANT_LIMITER: realLimiter("TENANT_LIMITER", () => ({
            release: () => {
              releases += 1;
              return Promise.reject(value());
            },
          })),
          ROUTE_LIMITER: realLimiter("ROUTE_LIMITER", () => ({
            acquire: async () => ({
              allowed: false,
              counters: [{ allowed: false, remaining: 0, resetMs: 60_000, retryAfterMs: 60_000 }],
            }),
          })),
        },
      );
      const m = marker();
      const unhandled = await unhandledDuring(async () => {
        const response = await edge.fetch("/both/x", {
          headers: { authorization: `Bearer ${token}`, "x-test-marker": m },
        });
        expect(response.status).toBe(429);
        expect((await problem(response)).reason).toBe("rate_limited");
      });
      expect(unhandled).toEqual([]);
      expect(releases).toBe(1);
      expect(edge.audit.map((r) => [r.reason, r.limit])).toEqual([["rate_limited", "closed-ceiling"]]);
      expect(await originSaw(m)).toEqual([]);
    },
  );
});

/** A KV namespace whose every call goes through `fault` (the real KV behind it otherwise). */
function faultyKv(fault: { get?: (key: string) => unknown; put?: () => unknown }) {
  const real = (env as unknown as { JWKS_CACHE: KVNamespace }).JWKS_CACHE;
  const calls = { gets: 0, puts: 0 };
  return {
    calls,
    kv: {
      get: (key: string) => {
        calls.gets += 1;
        return fault.get ? fault.get(key) : real.get(key);
      },
      put: (key: string, value: string, options?: KVNamespacePutOptions) => {
        calls.puts += 1;
        return fault.put ? fault.put() : real.put(key, value, options);
      },
    },
  };
}

function authenticatedEdge(issuerUrl: string, kv: unknown, options = {}): Harness {
  return harness(
    basePolicy({
      issuers: { main: { kind: "oidc", issuer: issuerUrl, audiences: [AUDIENCE] } },
      routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["main"] }, upstream: "echo" }],
    }),
    options,
    { JWKS_CACHE: kv },
  );
}

describe("a KV namespace failing in odd ways (the JWKS cache's second tier)", () => {
  const kvFaults: [string, { get?: () => unknown; put?: () => unknown }][] = [
    [
      "get throwing synchronously",
      {
        get: () => {
          throw new Error("kv down");
        },
      },
    ],
    [
      "get throwing undefined synchronously",
      {
        get: () => {
          throw undefined;
        },
      },
    ],
    ["get rejecting with undefined", { get: () => Promise.reject(undefined) }],
    ["get rejecting with a Proxy", { get: () => Promise.reject(hostileValue()) }],
    ["get resolving with an object", { get: async () => ({ keys: [] }) }],
    ["get resolving with a number", { get: async () => 42 }],
    ["get returning a string synchronously", { get: () => "not json" }],
    [
      "put throwing synchronously",
      {
        put: () => {
          throw new Error("kv read-only");
        },
      },
    ],
    ["put rejecting with undefined", { put: () => Promise.reject(undefined) }],
    ["put rejecting with a Proxy", { put: () => Promise.reject(hostileValue()) }],
  ];

  it.each(kvFaults)(
    "%s: the token still verifies from the issuer, one record, nothing unhandled",
    async (_l, fault) => {
      const issuer = await makeIssuer();
      const token = await issuer.sign({ sub: "kv-user" });
      const { kv, calls } = faultyKv(fault);
      const edge = authenticatedEdge(issuer.url, kv);
      const m = marker();
      const unhandled = await unhandledDuring(async () => {
        const response = await edge.fetch("/v1/a", {
          headers: { authorization: `Bearer ${token}`, "x-test-marker": m },
        });
        expect(response.status).toBe(200);
        await response.arrayBuffer();
        await edge.settle();
      });
      expect(unhandled).toEqual([]);
      expect(edge.audit.map((r) => [r.decision, r.user_sub, r.key_source])).toEqual([["allow", "kv-user", "fetch"]]);
      expect(calls.gets).toBeGreaterThan(0);
      expect(calls.puts).toBeGreaterThan(0);
      expect(await originSaw(m)).toHaveLength(1);
    },
  );
});

describe("the JWKS fetch failing in odd ways", () => {
  it.each(ODD_VALUES)("rejecting with %s: 503 jwks_unavailable with Retry-After, one record", async (_l, value) => {
    const issuer = await makeIssuer();
    const token = await issuer.sign();
    const edge = authenticatedEdge(issuer.url, undefined, {
      authentication: { fetch: () => Promise.reject(value()) },
    });
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/v1/a", { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(503);
      expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect((await problem(response)).reason).toBe("jwks_unavailable");
      await edge.settle();
    });
    expect(unhandled).toEqual([]);
    expect(edge.audit.map((r) => [r.reason, r.detail])).toEqual([["jwks_unavailable", "jwks_fetch_failed"]]);
  });

  it.each([
    ["undefined", undefined],
    ["an object with no status", {}],
    ["a Proxy whose every trap throws", hostileValue()],
  ])("resolving with %s: 503 jwks_unavailable, one record", async (_l, value) => {
    const issuer = await makeIssuer();
    const token = await issuer.sign();
    const edge = authenticatedEdge(issuer.url, undefined, {
      authentication: { fetch: async () => value as never },
    });
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/v1/a", { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(503);
      expect((await problem(response)).reason).toBe("jwks_unavailable");
      await edge.settle();
    });
    expect(unhandled).toEqual([]);
    expect(edge.audit.map((r) => r.reason)).toEqual(["jwks_unavailable"]);
  });
});

describe("WebCrypto failing", () => {
  it("verify rejecting: 401 token_invalid (signature), one record, never forwarded", async () => {
    const issuer = await makeIssuer();
    const token = await issuer.sign({ sub: "v" });
    const edge = authenticatedEdge(issuer.url, undefined);
    vi.spyOn(crypto.subtle, "verify").mockRejectedValue("not an Error");
    const m = marker();
    const unhandled = await unhandledDuring(async () => {
      const response = await edge.fetch("/v1/a", { headers: { authorization: `Bearer ${token}`, "x-test-marker": m } });
      expect(response.status).toBe(401);
      expect((await problem(response)).reason).toBe("token_invalid");
    });
    expect(unhandled).toEqual([]);
    expect(edge.audit.map((r) => [r.reason, r.detail])).toEqual([["token_invalid", "signature"]]);
    expect(await originSaw(m)).toEqual([]);
  });
});
