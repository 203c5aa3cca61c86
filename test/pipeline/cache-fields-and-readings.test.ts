// Vary on authenticated answers and `no-cache, no-store` on their origin requests, targeted
// cache fields going with an Access answer's `private`, shorter readings of a path that another
// route takes (and not the path as written), Bearer among other schemes' parameters, and the
// compiled policy's matched rule and index made on load.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import compiledDemo from "../../policy/policy.compiled.json";
import demoPolicy from "../../policy/policy.json";
import type { AuditRecord } from "../../src/core/audit";
import { compilePolicy } from "../../src/core/policy";
import { type PolicyArtifact, policyArtifact, policyFromArtifact } from "../../src/core/policy-artifact";
import { policyProblems } from "../../src/core/policy-lint";
import type { PolicyDocument } from "../../src/core/policy-types";
import { createPipelineApp } from "../../src/pipeline-app";
import { basePolicy, harness, marker, originSaw, recordingDataset } from "../support/harness";
import { AUDIENCE, accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";
import { sendMarked } from "../support/sent";

const APP = "https://app.example.com";

let idp: TestIssuer;
let team: TestIssuer;
beforeAll(async () => {
  [idp, team] = await Promise.all([makeIssuer("ES256"), makeIssuer("RS256")]);
});

/** An `x-respond-with` value for the ECHO_SERVICE binding: the origin answers with these fields. */
const respondWith = (fields: [string, string][]) => JSON.stringify(fields);

/** A `Vary` value's members, as a cache reads them: split at commas, trimmed, lower-cased. */
const varyMembers = (response: Response) =>
  (response.headers.get("vary") ?? "")
    .split(",")
    .map((member) => member.trim().toLowerCase())
    .filter(Boolean);

/** A field name (RFC 9110 token) or `*`: what each member of a well-formed `Vary` is. */
const VARY_MEMBER = /^(?:\*|[!#$%&'*+.^_`|~0-9a-z-]+)$/;

/** What a service-binding origin the test writes saw, request by request. */
interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
}

/**
 * An origin answering by path: `/custom/not-modified` 304, `/custom/moved` 302,
 * `/custom/ws` 101 with a WebSocket, anything else 200; each with a shareable lifetime.
 */
function scriptedOrigin(seen: Seen[]) {
  return {
    async fetch(input: RequestInfo, init?: RequestInit) {
      const request = new Request(input, init);
      const url = new URL(request.url);
      seen.push({ method: request.method, path: url.pathname, headers: Object.fromEntries(request.headers) });
      const shared = { "cache-control": "public, max-age=600", etag: '"v1"' };
      if (url.pathname === "/custom/not-modified") return new Response(null, { status: 304, headers: shared });
      if (url.pathname === "/custom/moved")
        return new Response(null, { status: 302, headers: { ...shared, location: "/custom/elsewhere" } });
      if (url.pathname === "/custom/ws") {
        const pair = new WebSocketPair();
        pair[1].accept();
        return new Response(null, { status: 101, webSocket: pair[0] });
      }
      return new Response("hello", { status: 200, headers: shared });
    },
  };
}

function policy(): PolicyDocument {
  const base = basePolicy();
  return basePolicy({
    issuers: {
      idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
      access: { kind: "cloudflare_access", team_domain: team.url },
    },
    upstreams: {
      echo: base.upstreams!.echo!,
      svc: { service: "ECHO_SERVICE" },
      scripted: { service: "SCRIPTED" },
    },
    routes: [
      { name: "api", methods: ["GET"], path: "/api/**", auth: { issuers: ["idp"] }, upstream: "svc" },
      {
        name: "capi",
        methods: ["GET"],
        path: "/capi/**",
        auth: { issuers: ["idp"] },
        upstream: "svc",
        cors: { allow_origins: [APP], allow_credentials: true },
      },
      {
        name: "app",
        methods: ["GET"],
        path: "/app/**",
        auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
        upstream: "svc",
      },
      {
        name: "echo-api",
        methods: ["GET", "POST", "OPTIONS"],
        path: "/v1/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
      },
      {
        name: "echo-app",
        methods: ["GET"],
        path: "/va/**",
        auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
        upstream: "echo",
      },
      {
        name: "either",
        methods: ["GET"],
        path: "/either/**",
        auth: { issuers: ["idp", "access"], audiences: [AUDIENCE, ACCESS_AUD_TAG] },
        upstream: "echo",
      },
      { name: "scripted", methods: ["GET"], path: "/custom/**", auth: { issuers: ["idp"] }, upstream: "scripted" },
      {
        name: "pages",
        methods: ["GET"],
        path: "/pages/**",
        auth: "public",
        upstream: "svc",
        cors: { allow_origins: [APP] },
      },
      { name: "plain", methods: ["GET"], path: "/plain/**", auth: "public", upstream: "svc" },
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
    ],
  });
}

function edge(seen: Seen[] = []) {
  return harness(policy(), {}, { SCRIPTED: scriptedOrigin(seen) });
}

const bearerFor = async (sub: string) => ({ authorization: `Bearer ${await idp.sign({ sub })}` });
const accessCookieFor = async (sub: string) => ({
  cookie: `CF_Authorization=${await accessAssertion(team, ACCESS_AUD_TAG, { sub, email: `${sub}@example.com` })}`,
});

describe("Vary on an authenticated answer, beside the origin's own and the edge's CORS", () => {
  it("the origin's Vary is kept and the edge's members join it, one list of well-formed members", async () => {
    const e = edge();
    const answer = await e.fetch("/capi/me", {
      headers: {
        ...(await bearerFor("alice")),
        origin: APP,
        "x-respond-with": respondWith([
          ["cache-control", "max-age=60"],
          ["vary", "Accept-Encoding"],
        ]),
      },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("vary")).toBe("Accept-Encoding, Authorization, Origin");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", route: "capi" });
  });

  it("an origin's `Vary: *` stays, so no cache reuses the answer, and the list stays well formed", async () => {
    const e = edge();
    const answer = await e.fetch("/capi/me", {
      headers: { ...(await bearerFor("alice")), origin: APP, "x-respond-with": respondWith([["vary", "*"]]) },
    });
    expect(answer.status).toBe(200);
    const members = varyMembers(answer);
    expect(members).toContain("*");
    for (const member of members) expect(member, answer.headers.get("vary") ?? "").toMatch(VARY_MEMBER);
    // The edge's own members are still there for a cache that reads past the `*`.
    expect(members).toEqual(expect.arrayContaining(["authorization", "origin"]));
  });

  it("public routes never vary by a credential, even when the client sends one", async () => {
    const e = edge();
    const bearer = await bearerFor("alice");
    const cookie = await accessCookieFor("alice");
    const plain = await e.fetch("/plain/doc", {
      headers: { ...bearer, ...cookie, "x-respond-with": respondWith([["cache-control", "public, max-age=60"]]) },
    });
    expect(plain.status).toBe(200);
    expect(plain.headers.get("vary")).toBeNull();
    expect(plain.headers.get("cache-control")).toBe("public, max-age=60");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", route: "plain", user_sub: null });
    const pages = await e.fetch("/pages/doc", { headers: { ...bearer, origin: APP } });
    expect(pages.status).toBe(200);
    expect(pages.headers.get("vary")).toBe("Origin");
  });

  it("an Access answer varies by the cookie and the assertion header; a Bearer one by Authorization alone", async () => {
    const e = edge();
    const access = await e.fetch("/app/me", { headers: await accessCookieFor("alice") });
    expect(access.status).toBe(200);
    expect(access.headers.get("vary")).toBe("Cookie, Cf-Access-Jwt-Assertion");
    expect(access.headers.get("cache-control")).toBe("private");
    const bearer = await e.fetch("/api/me", { headers: await bearerFor("alice") });
    expect(bearer.status).toBe(200);
    expect(bearer.headers.get("vary")).toBe("Authorization");
    // A Bearer answer is left as the origin sent it: Authorization keeps it from shared caches.
    expect(bearer.headers.get("cache-control")).toBeNull();
  });
});

describe("answers the origin did not make, and odd ones it did, on an authenticated request", () => {
  it("Max-Forwards: 0 OPTIONS is answered at the edge, never forwarded, and varies by the credential", async () => {
    const e = edge();
    const m = marker();
    const answer = await e.fetch("/v1/things", {
      method: "OPTIONS",
      headers: { ...(await bearerFor("alice")), "max-forwards": "0", "x-test-marker": m },
    });
    expect(answer.status).toBe(200);
    // HEAD wherever GET is.
    expect(answer.headers.get("allow")).toBe("GET, HEAD, POST, OPTIONS");
    expect(answer.headers.get("vary")).toBe("Authorization");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", route: "echo-api", detail: "max_forwards_zero" });
    expect(await originSaw(m)).toHaveLength(0);
  });

  it.each([
    ["a 304", "GET", "/custom/not-modified", 304],
    ["a redirect passed on", "GET", "/custom/moved", 302],
    ["a HEAD", "HEAD", "/custom/page", 200],
  ] as const)("%s keeps the origin's validators and varies by Authorization", async (_label, method, path, status) => {
    const seen: Seen[] = [];
    const e = edge(seen);
    const answer = await e.fetch(path, { method, headers: { ...(await bearerFor("alice")), "if-none-match": '"v1"' } });
    expect(answer.status).toBe(status);
    expect(answer.headers.get("etag")).toBe('"v1"');
    expect(answer.headers.get("vary")).toBe("Authorization");
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method, path });
    expect(seen[0]?.headers["cache-control"]).toBe("no-cache, no-store");
    expect(seen[0]?.headers.authorization).toBeUndefined();
    if (status === 302) expect(answer.headers.get("location")).toBe("/custom/elsewhere");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", route: "scripted", status });
  });

  it("a 101 with a WebSocket from a service binding is passed on with its socket, varying by Authorization", async () => {
    const seen: Seen[] = [];
    const e = edge(seen);
    const answer = await e.fetch("/custom/ws", { headers: await bearerFor("alice") });
    expect(answer.status).toBe(101);
    expect(answer.webSocket).not.toBeNull();
    expect(answer.headers.get("vary")).toBe("Authorization");
    answer.webSocket?.accept();
    answer.webSocket?.close();
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", route: "scripted", status: 101 });
  });
});

describe("the Cache-Control an authenticated request's origin request carries", () => {
  async function sentToOrigin(path: string, headers: Record<string, string>) {
    const e = edge();
    const m = marker();
    const answer = await e.fetch(path, { headers: { ...headers, "x-test-marker": m } });
    expect(answer.status).toBe(200);
    const seen = await originSaw(m);
    expect(seen).toHaveLength(1);
    return { seen: seen[0]!.headers, record: e.audit.at(-1) };
  }

  it.each([["max-stale=600, only-if-cached"], ["max-age=0"], ["min-fresh=60"]])(
    "Bearer, client says %s: the origin's caches are told no-cache, no-store and nothing else",
    async (cc) => {
      const { seen, record } = await sentToOrigin("/v1/report", {
        ...(await bearerFor("alice")),
        "cache-control": cc,
        pragma: "no-cache",
      });
      expect(seen["cache-control"]).toBe("no-cache, no-store");
      expect(seen["x-user-sub"]).toBe("alice");
      expect(record).toMatchObject({ decision: "allow", route: "echo-api", user_sub: "alice" });
    },
  );

  it("Access, no directives from the client: no-cache, no-store all the same", async () => {
    const { seen } = await sentToOrigin("/va/report", await accessCookieFor("alice"));
    expect(seen["cache-control"]).toBe("no-cache, no-store");
    expect(seen.cookie ?? "").not.toContain("CF_Authorization");
  });

  it("a public route passes the client's directives on as sent", async () => {
    const { seen, record } = await sentToOrigin("/public/report", { "cache-control": "max-stale=600" });
    expect(seen["cache-control"]).toBe("max-stale=600");
    expect(record).toMatchObject({ decision: "allow", route: "public" });
  });

  // A client's `no-store` is kept: every authenticated origin request says it (RFC 9111
  // §5.2.1.5: a cache before the origin stores no part of the answer).
  it("Bearer, client says no-store: the origin request still forbids storing the answer", async () => {
    const { seen } = await sentToOrigin("/v1/report", { ...(await bearerFor("alice")), "cache-control": "no-store" });
    const directives = (seen["cache-control"] ?? "").split(",").map((d) => d.trim().toLowerCase());
    expect(directives, seen["cache-control"]).toContain("no-cache");
    expect(directives, seen["cache-control"]).toContain("no-store");
  });
});

describe("targeted cache fields on an Access answer", () => {
  const targeted: [string, string][] = [
    ["cdn-cache-control", "max-age=600"],
    ["cloudflare-cdn-cache-control", "max-age=600"],
    ["surrogate-control", "max-age=600"],
  ];

  it("all three go when the edge marks the answer private", async () => {
    const e = edge();
    const answer = await e.fetch("/app/report", {
      headers: { ...(await accessCookieFor("alice")), "x-respond-with": respondWith(targeted) },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("cache-control")).toBe("private");
    for (const [name] of targeted) expect(answer.headers.get(name), name).toBeNull();
  });

  it("they stay where the edge marks nothing: a Bearer answer, a public one, and an Access one the origin ruled", async () => {
    const e = edge();
    const bearer = await e.fetch("/api/report", {
      headers: { ...(await bearerFor("alice")), "x-respond-with": respondWith(targeted) },
    });
    const plain = await e.fetch("/plain/report", { headers: { "x-respond-with": respondWith(targeted) } });
    const ruled = await e.fetch("/app/report", {
      headers: {
        ...(await accessCookieFor("alice")),
        "x-respond-with": respondWith([...targeted, ["cache-control", "public, max-age=60"]]),
      },
    });
    for (const answer of [bearer, plain, ruled]) {
      expect(answer.status).toBe(200);
      for (const [name, value] of targeted) expect(answer.headers.get(name), name).toBe(value);
    }
    expect(ruled.headers.get("cache-control")).toBe("public, max-age=60");
  });
});

describe("Bearer among other schemes' parameters", () => {
  async function call(headers: Record<string, string>) {
    return sendMarked(edge(), "/either/me", { headers });
  }

  it.each([
    ['Digest username="a", uri="/tags=a,bearer", response="x"'],
    ['Digest username="a", uri="/x", bearer=1'],
    ["Basic YTpi, bearers"],
  ])("%s is another scheme: the Access assertion decides", async (authorization) => {
    const { response, record, seen } = await call({ authorization, ...(await accessCookieFor("alice")) });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "either", user_sub: "alice" });
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });

  // A Bearer ended by a vertical tab is still one (lenient readers split at any whitespace).
  it.each([
    ["Basic YTpi, Bearer abc"],
    ["Basic YTpi,bearer"],
    ["Basic YTpi,\tBearer ,x"],
    ["Bearer abc, Basic YTpi"],
    ["Basic YTpi, Bearer\u000babc"],
  ])("%j holds a Bearer beside another credential: refused as multiple_credentials", async (authorization) => {
    const { response, body, record, seen } = await call({ authorization, ...(await accessCookieFor("alice")) });
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("token_malformed");
    expect(record).toMatchObject({ decision: "deny", reason: "token_malformed", detail: "multiple_credentials" });
    expect(seen).toHaveLength(0);
  });
});

describe("readings of a path, counted where another route names the segment read", () => {
  const idpOnly = () => ({ idp: { kind: "oidc" as const, issuer: idp.url, audiences: [AUDIENCE] } });

  async function send(doc: PolicyDocument, path: string, headers: Record<string, string> = {}) {
    return sendMarked(harness(doc), path, { headers });
  }

  // Apache/php-fpm run `/app/admin.php/assets/x` as the script `/app/admin.php` (PATH_INFO
  // `/assets/x`), which the `scripts` route guards; the edge matches the public `assets` route.
  // `scripts` takes the read path by `*` but not the path as written: the reading counts.
  it("`/app/admin.php/assets/x` with `/app/*` guarded before `/app/*/assets/**` public is refused", async () => {
    const doc = basePolicy({
      issuers: idpOnly(),
      routes: [
        {
          name: "scripts",
          methods: ["GET"],
          path: "/app/*",
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "echo",
        },
        { name: "assets", methods: ["GET"], path: "/app/*/assets/**", auth: "public", upstream: "echo" },
      ],
    });
    // The script itself is guarded.
    const direct = await send(doc, "/app/admin.php");
    expect(direct.response.status).toBe(401);
    expect(direct.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "scripts" });
    const { response, record, seen } = await send(doc, "/app/admin.php/assets/x");
    expect({
      status: response.status,
      record: { reason: record?.reason, detail: record?.detail },
      forwarded: seen.length,
    }).toEqual({
      status: 400,
      record: { reason: "bad_request", detail: "ambiguous_path_info" },
      forwarded: 0,
    });
  });

  it("`/openapi.json` written for itself before `/**` is served; `/v1/admin.json` beside a capitalised `/V1/Admin` is not", async () => {
    const doc = basePolicy({
      issuers: idpOnly(),
      routes: [
        { name: "openapi", methods: ["GET"], path: "/openapi.json", auth: "public", upstream: "echo" },
        {
          name: "admin",
          methods: ["GET"],
          path: "/V1/Admin",
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "echo",
        },
        { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
      ],
    });
    const openapi = await send(doc, "/openapi.json");
    expect(openapi.response.status).toBe(200);
    expect(openapi.record).toMatchObject({ decision: "allow", route: "openapi" });
    expect(openapi.seen[0]?.path).toBe("/openapi.json");
    for (const path of ["/v1/admin.json", "/V1/Admin.json", "/v1/ADMIN.b.json"]) {
      const read = await send(doc, path);
      expect(read.response.status, path).toBe(400);
      expect(read.record, path).toMatchObject({ reason: "bad_request", detail: "ambiguous_format" });
      expect(read.seen, path).toHaveLength(0);
    }
    // Its own spelling is the guarded route; another case of it is the admin route to a case-blind origin.
    expect((await send(doc, "/V1/Admin")).record).toMatchObject({ reason: "token_missing", route: "admin" });
    expect((await send(doc, "/v1/admin")).record).toMatchObject({ reason: "bad_request", detail: "ambiguous_case" });
  });

  it("a tenant captured beside capitalised literals is bound as written, never folded", async () => {
    const doc = basePolicy({
      issuers: idpOnly(),
      routes: [
        { name: "orgs", methods: ["GET"], path: "/Orgs/:tenant/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      ],
    });
    const token = { authorization: `Bearer ${await idp.sign({ sub: "alice", tenant_id: "AcMe" })}` };
    const own = await send(doc, "/Orgs/AcMe/x", token);
    expect(own.response.status).toBe(200);
    expect(own.seen[0]?.headers["x-tenant"]).toBe("AcMe");
    expect(own.record).toMatchObject({ decision: "allow", tenant_id: "AcMe" });
    const folded = await send(doc, "/Orgs/acme/x", token);
    expect(folded.response.status).toBe(403);
    expect(folded.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", detail: "tenant" });
    expect(folded.seen).toHaveLength(0);
  });
});

describe("a compiled policy's matched rule and index, made on load", () => {
  /** The artifact as the Worker gets it: written as JSON, read back. */
  const shipped = (doc: PolicyDocument) =>
    policyFromArtifact(JSON.parse(JSON.stringify(policyArtifact(compilePolicy(doc)))) as PolicyArtifact);

  async function run(
    policy: ReturnType<typeof policyFromArtifact>,
    path: string,
    headers: Record<string, string> = {},
  ) {
    const records: AuditRecord[] = [];
    const app = createPipelineApp(policy, {
      auditSinks: [
        (record) => {
          records.push(record);
        },
      ],
    });
    const ctx = createExecutionContext();
    const response = await app.fetch(
      new Request(`https://edge.test${path}`, { headers }),
      { ...env, METRICS: recordingDataset() },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    await response.arrayBuffer();
    return { response, record: records.at(-1) };
  }

  function versioned(version: number): PolicyDocument {
    return basePolicy({
      version,
      issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
      routes: [
        { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
        {
          name: "admin",
          methods: ["GET"],
          path: "/admin/**",
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "echo",
        },
        { name: "api", methods: ["GET"], path: "/api/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      ],
    });
  }

  it("a version > 1 round-trips unchanged, every route named `policy:<name>@v<version>` at its place", () => {
    const doc = versioned(42);
    const loaded = shipped(doc);
    expect(loaded).toEqual(compilePolicy(doc));
    expect(loaded.routes.map((r) => [r.index, r.matchedRule])).toEqual([
      [0, "policy:public@v42"],
      [1, "policy:admin@v42"],
      [2, "policy:api@v42"],
    ]);
    const artifact = JSON.parse(JSON.stringify(policyArtifact(compilePolicy(doc))));
    for (const route of artifact.routes) {
      expect(route).not.toHaveProperty("matchedRule");
      expect(route).not.toHaveProperty("index");
    }
  });

  it("every decision after routing names the rule with the policy's version; none before it", async () => {
    const loaded = shipped(versioned(42));
    const allow = await run(loaded, "/public/x");
    expect(allow.response.status).toBe(200);
    expect(allow.record).toMatchObject({ decision: "allow", route: "public", matched_rule: "policy:public@v42" });
    const missing = await run(loaded, "/api/x");
    expect(missing.record).toMatchObject({ reason: "token_missing", matched_rule: "policy:api@v42" });
    const scope = await run(loaded, "/admin/x", { authorization: `Bearer ${await idp.sign({ groups: ["staff"] })}` });
    expect(scope.response.status).toBe(403);
    expect(scope.record).toMatchObject({ route: "admin", matched_rule: "policy:admin@v42" });
    const nowhere = await run(loaded, "/nowhere");
    expect(nowhere.record).toMatchObject({ reason: "route_not_found", matched_rule: null });
  });

  it("lint messages name routes by the index made on load as by the compiler's", () => {
    const doc = basePolicy({
      version: 9,
      routes: [
        { name: "all", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
        { name: "public", methods: ["GET"], path: "/public/:tenant/**", auth: "public", upstream: "echo" },
      ],
    });
    const problems = policyProblems(shipped(doc));
    expect(problems).toEqual(policyProblems(compilePolicy(doc)));
    expect(problems.some((p) => p.includes("routes[1] (public)") && p.includes("routes[0] (all)"))).toBe(true);
    expect(problems).toContain("routes[1]: :tenant on a public route binds nothing: write * for the segment");
  });

  it("the shipped policy/policy.compiled.json carries neither, and loads as policy/policy.json compiles", () => {
    const artifact = compiledDemo as unknown as PolicyArtifact;
    for (const route of artifact.routes) {
      expect(route).not.toHaveProperty("matchedRule");
      expect(route).not.toHaveProperty("index");
    }
    const loaded = policyFromArtifact(artifact);
    expect(loaded).toEqual(compilePolicy(demoPolicy));
    expect(
      loaded.routes.every((r, i) => r.index === i && r.matchedRule === `policy:${r.name}@v${loaded.version}`),
    ).toBe(true);
  });
});
