// HTTP protocol edge cases a hostile client sends, as the runtime hands them to the edge: odd
// methods, a client's request id (repeated, `_`-spelt), Expect: 100-continue, a GET with a
// declared length, conditional and range requests on authenticated routes, coded request
// bodies, a Host that carries a port of 0 or a path, and what a refusal echoes back. Each
// asserts the reason and what reached the origin (the real echo origin records it).
//
// What workerd does at the wire was read off a raw socket against `workerd serve`: it answers
// unknown, lower-case and over-long methods (501), obs-fold, NUL and conflicting Content-Length
// values (400) itself, and they never reach a Worker; it joins repeated fields with ", "; it
// hands a GET its body and its Content-Length; and it builds `request.url` by joining the Host
// header to the request target as they are (`Host: x.test/evil` makes `/evil/a` of `/a`).
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { WireRequest } from "../support/wire-request";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";

let idp: TestIssuer;
let team: TestIssuer;
beforeAll(async () => {
  idp = await makeIssuer("ES256");
  team = await makeIssuer("RS256");
});

/** An origin (service binding) that answers 304 to a request for `"v1"`, 200 otherwise. */
const conditionalOrigin = {
  async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const request = new Request(input, init);
    if (request.headers.get("if-none-match") === '"v1"') {
      return new Response(null, { status: 304, headers: { etag: '"v1"', "x-request-id": "origin-id" } });
    }
    return new Response("body", { headers: { etag: '"v1"', "content-type": "text/plain" } });
  },
};

function policy(): PolicyDocument {
  return basePolicy({
    issuers: {
      idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
      access: { kind: "cloudflare_access", team_domain: team.url },
    },
    upstreams: { echo: { url: echoOrigin, timeout_ms: 5000 }, cond: { service: "COND" } },
    routes: [
      {
        name: "public",
        methods: ["GET", "POST", "DELETE", "OPTIONS"],
        path: "/public/**",
        auth: "public",
        upstream: "echo",
      },
      {
        name: "admin",
        methods: ["GET"],
        host: "admin.example.com",
        path: "/admin/**",
        auth: "public",
        upstream: "echo",
      },
      { name: "v1", methods: ["GET", "POST", "OPTIONS"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      {
        name: "app",
        methods: ["GET"],
        path: "/app/**",
        auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
        upstream: "cond",
      },
    ],
  });
}

const edge = () => harness(policy(), {}, { COND: conditionalOrigin });
const bearer = async (claims = {}) => ({ authorization: `Bearer ${await idp.sign({ sub: "alice", ...claims })}` });

describe("methods no route can take", () => {
  it("TRACE (with Max-Forwards: 0), QUERY, SEARCH and BAN, which the runtime lets through, are 405 method_not_allowed and never forwarded", async () => {
    const e = edge();
    for (const method of ["TRACE", "QUERY", "SEARCH", "BAN"]) {
      const m = marker();
      const response = await e.fetch("/public/x", {
        method,
        headers: { "x-test-marker": m, "max-forwards": "0", cookie: "session=s3cret" },
      });
      expect(response.status, method).toBe(405);
      const text = await response.text();
      // A TRACE answered by anyone would reflect the request: nothing of it comes back.
      expect(JSON.parse(text).reason, method).toBe("method_not_allowed");
      expect(text, method).not.toContain("s3cret");
      expect(response.headers.get("allow"), method).toBe("GET, HEAD, POST, DELETE, OPTIONS");
      expect(await originSaw(m), method).toEqual([]);
      expect(e.audit.at(-1), method).toMatchObject({
        method,
        decision: "deny",
        reason: "method_not_allowed",
        route: null,
      });
    }
  });

  it("methods the runtime does not know, over-long ones included, cannot be made into a request at all", () => {
    // So the audit record's `method` is always one of the runtime's few dozen names, never a
    // client's string of any length.
    for (const method of ["M-SEARCH", "LINK", "X".repeat(300)]) {
      expect(() => new Request("https://edge.test/public/x", { method }), method.slice(0, 10)).toThrow(TypeError);
    }
    expect(new Request("https://edge.test/public/x", { method: "get" }).method).toBe("GET");
  });
});

describe("a client's X-Request-Id", () => {
  it("repeated (joined as the runtime joins them) and `_`-spelt, never reaches the origin, the answer or the log", async () => {
    const e = edge();
    const m = marker();
    const response = await e.fetch("/public/x", {
      headers: {
        "x-test-marker": m,
        "x-request-id": "client-one, client-two",
        x_request_id: "client-three",
        "X.Request.Id": "client-four",
      },
    });
    expect(response.status).toBe(200);
    const id = response.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const [seen] = await originSaw(m);
    expect(seen?.headers["x-request-id"]).toBe(id);
    expect(JSON.stringify(seen)).not.toContain("client-");
    expect(e.audit.at(-1)).toMatchObject({ request_id: id, decision: "allow" });
    expect(e.logs.join("\n")).not.toContain("client-");
  });
});

describe("Expect: 100-continue", () => {
  it("a refused upload is answered without its body: a client waiting for the go-ahead is not left waiting", async () => {
    const e = edge();
    const m = marker();
    // A body that never comes: the refusal must not wait on it (the test's timeout would end it).
    const body = new ReadableStream<Uint8Array>({ pull: () => new Promise<void>(() => {}) });
    const response = await e.fetch("/v1/upload", {
      method: "POST",
      body,
      duplex: "half",
      headers: { expect: "100-continue", "content-length": "1048576", "x-test-marker": m },
    } as RequestInit);
    expect(response.status).toBe(401);
    expect(((await response.json()) as { reason: string }).reason).toBe("token_missing");
    expect(await originSaw(m)).toEqual([]);
    expect(e.audit.at(-1)).toMatchObject({ decision: "deny", reason: "token_missing" });
  });

  it("an allowed upload reaches the origin whole, with its Content-Length", async () => {
    const m = marker();
    const response = await edge().fetch("/v1/upload", {
      method: "POST",
      body: "x".repeat(70_000),
      headers: { ...(await bearer()), expect: "100-continue", "content-length": "70000", "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen).toMatchObject({ method: "POST", body_bytes: 70_000 });
    expect(seen?.headers["content-length"]).toBe("70000");
    expect(seen?.headers["x-user-sub"]).toBe("alice");
  });
});

describe("bodies where a method carries none", () => {
  it.each([
    ["a length", { "content-length": "5" }],
    ["a chunked body", { "transfer-encoding": "chunked" }],
  ])(
    "a GET or HEAD declaring %s (workerd hands it its body; fetch can send none) is refused, nothing forwarded",
    async (_, framing) => {
      // Forwarded without its body, the origin would run another request than the client's
      // (a search whose query was in the body, as a search for everything).
      for (const method of ["GET", "HEAD"]) {
        const e = edge();
        const m = marker();
        const response = await e.fetch("/public/x", { method, headers: { ...framing, "x-test-marker": m } });
        expect(response.status).toBe(400);
        expect(e.audit.at(-1)).toMatchObject({
          decision: "deny",
          reason: "bad_request",
          detail: "body_on_get_or_head",
        });
        expect(await originSaw(m)).toEqual([]);
      }
    },
  );

  it("a GET declaring a length of zero goes on, without it", async () => {
    const e = edge();
    const m = marker();
    const response = await e.fetch("/public/x", { headers: { "content-length": "0", "x-test-marker": m } });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen).toMatchObject({ method: "GET", body_bytes: 0 });
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
  });

  it("a DELETE's body is forwarded whole", async () => {
    const m = marker();
    const response = await edge().fetch("/public/x", {
      method: "DELETE",
      body: "ids=1,2,3",
      headers: { "content-length": "9", "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen).toMatchObject({ method: "DELETE", body_bytes: 9 });
    expect(seen?.headers["content-length"]).toBe("9");
  });
});

describe("conditional and range requests on authenticated routes", () => {
  it("reach the origin with every validator and the Range, though the origin request bypasses the cache", async () => {
    const m = marker();
    const validators = {
      "if-none-match": '"v1"',
      "if-modified-since": "Wed, 21 Oct 2015 07:28:00 GMT",
      "if-match": '"v2"',
      "if-unmodified-since": "Wed, 21 Oct 2015 07:28:00 GMT",
      "if-range": '"v3"',
      range: "bytes=0-3",
    };
    const response = await edge().fetch("/v1/report", {
      headers: { ...(await bearer()), ...validators, "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen?.headers).toMatchObject(validators);
    expect(seen?.headers["cache-control"]).toBe("no-cache, no-store");
  });

  it("an origin's 304 to an Access-authenticated request keeps its ETag, is marked private and carries the edge's id", async () => {
    const e = edge();
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const response = await e.fetch("/app/report", {
      headers: { cookie: `CF_Authorization=${token}`, "if-none-match": '"v1"' },
    });
    expect(response.status).toBe(304);
    expect(response.headers.get("etag")).toBe('"v1"');
    expect(response.headers.get("cache-control")).toBe("private");
    expect(response.headers.get("x-request-id")).toBe(e.audit.at(-1)?.request_id);
    expect(await response.text()).toBe("");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 304, route: "app" });
  });
});

describe("coded request bodies", () => {
  it("a gzip body goes to the origin as sent, with its Content-Encoding; Accept-Encoding passes as sent", async () => {
    // The edge neither inflates nor reads a body: an origin that inflates bounds that itself.
    const gzip = new Uint8Array([31, 139, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const m = marker();
    const response = await edge().fetch("/public/x", {
      method: "POST",
      body: gzip,
      headers: { "content-encoding": "gzip", "accept-encoding": "gzip, br", "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen).toMatchObject({ body_bytes: gzip.byteLength });
    expect(seen?.headers["content-encoding"]).toBe("gzip");
    expect(seen?.headers["accept-encoding"]).toBe("gzip, br");
  });
});

describe("a body in a transfer coding other than chunked", () => {
  it("is refused 400 unsupported_transfer_coding: the runtime takes off chunked alone, and the origin would take the coded bytes for the body", async () => {
    const gzip = new Uint8Array([31, 139, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const e = edge();
    const m = marker();
    const response = await e.fetch("/public/x", {
      method: "POST",
      body: gzip,
      headers: { "transfer-encoding": "gzip, chunked", "x-test-marker": m },
    });
    expect(response.status).toBe(400);
    expect(e.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "unsupported_transfer_coding" });
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("the Host", () => {
  it.each([
    "http://x.test:abc/public/a",
    "http://ex<am>ple/public/a",
    "http://1.2.3.4.5/public/a",
    "http://[::1/public/a",
  ])(
    "%s, which the runtime joins to the target unchecked and no URL can carry, is 400 bad_url, not a 500",
    async (url) => {
      const e = edge();
      const response = await e.fetch(new WireRequest(url));
      expect(response.status).toBe(400);
      expect(e.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "bad_url", path: null });
      expect(e.logs.join("\n")).not.toContain("unhandled");
    },
  );

  it("with a port of 0 is matched by the route written for its host, and forwarded as parsed", async () => {
    const e = edge();
    const m = marker();
    const response = await e.fetch(
      new Request("https://admin.example.com:0/admin/x", { headers: { "x-test-marker": m } }),
    );
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen).toMatchObject({ path: "/admin/x" });
    expect(seen?.headers["x-forwarded-host"]).toBe("admin.example.com:0");
    expect(e.audit.at(-1)).toMatchObject({ route: "admin", decision: "allow" });
  });

  it("with a path in it (which workerd joins to the target) cannot move a request under a public route: one canonical path is judged and sent", async () => {
    const e = edge();
    // `Host: edge.test/public/..` and `GET /v1/x`: the edge's URL is `/public/../v1/x`.
    const m1 = marker();
    const smuggled = await e.fetch(
      new WireRequest("https://edge.test/public/../v1/x", { headers: { "x-test-marker": m1 } }),
    );
    expect(smuggled.status).toBe(401);
    expect(((await smuggled.json()) as { reason: string }).reason).toBe("token_missing");
    expect(await originSaw(m1)).toEqual([]);
    expect(e.audit.at(-1)).toMatchObject({ path: "/v1/x", route: "v1", reason: "token_missing" });
    // `Host: edge.test/public` and `GET /x`: served as `/public/x`, and that is what the origin gets.
    const m2 = marker();
    const joined = await e.fetch(new WireRequest("https://edge.test/public/x", { headers: { "x-test-marker": m2 } }));
    expect(joined.status).toBe(200);
    const [seen] = await originSaw(m2);
    expect(seen).toMatchObject({ path: "/public/x", raw_target: "/public/x" });
    expect(seen?.headers["x-forwarded-host"]).toBe("edge.test");
  });
});

describe("what a refusal says back", () => {
  it("the problem body has only its five members and no response header echoes the request", async () => {
    const e = edge();
    const tag = "zq7echo";
    const requests: [string, RequestInit, number, string][] = [
      [`/${tag}%2F<script>?${tag}=1`, {}, 400, "bad_request"],
      [
        `/nowhere/${tag}?q=${tag}`,
        { headers: { "x-probe": tag, origin: `https://${tag}.example` } },
        404,
        "route_not_found",
      ],
      [
        `/v1/${tag}?${tag}=1`,
        { headers: { authorization: `Bearer ${tag} ${tag}`, "x-probe": tag } },
        400,
        "token_malformed",
      ],
      [`/v1/${tag}`, { method: "POST", body: tag, headers: { "content-type": `text/${tag}` } }, 401, "token_missing"],
    ];
    for (const [path, init, status, reason] of requests) {
      const response = await e.fetch(path, init);
      expect(response.status, path).toBe(status);
      expect(response.headers.get("content-type"), path).toBe("application/problem+json");
      expect(response.headers.get("cache-control"), path).toBe("no-store");
      const text = await response.text();
      const body = JSON.parse(text) as Record<string, unknown>;
      expect(Object.keys(body).sort(), path).toEqual(["reason", "request_id", "status", "title", "type"]);
      expect(body, path).toMatchObject({ status, reason, request_id: response.headers.get("x-request-id") });
      expect(text, path).not.toContain(tag);
      for (const [name, value] of response.headers) expect(`${name}: ${value}`, path).not.toContain(tag);
    }
  });
});
