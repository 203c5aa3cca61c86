// What real users send, against the readings and checks that refuse look-alikes: format and PATH_INFO readings of a path,
// cookieless-session segments, the SSO agents' header prefixes, the auth scheme's end, quotes in
// a tenant, weak RSA keys and the trial import of every kept key, server-timing in a CORS
// expose list, and the audit record's key_source. Each test drives what a real user sends
// (realistic API paths, real key spellings issuers publish, other schemes' Authorization
// values) through the real pipeline or the real key store, against the loopback origin and
// issuer stand-ins and the runtime's KV.
import { exportJWK, generateKeyPair, type JWK } from "jose";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import policy from "../../policy/policy.json";
import type { IssuerConfig, PolicyDocument } from "../../src/core/policy-types";
import { extractCredential } from "../../src/core/tokens/credentials";
import { Clock, signAt, verifierFor } from "../support/clocked-verifier";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import {
  type Alg,
  AUDIENCE,
  b64url,
  COMMA_SCHEMES,
  issuerServer,
  makeIssuer,
  makeKey,
  type TestIssuer,
  type TestKey,
} from "../support/issuers";
import { publicJwk, T0, world } from "../support/key-store-world";
import { problemsOf } from "../support/policy-problems";
import { sendMarked } from "../support/sent";

let idp: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

afterEach(() => {
  vi.restoreAllMocks();
});

const oidc = () => ({ idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } }) as Record<string, IssuerConfig>;

/** One request through an edge for `doc`: the answer, what the origin saw, the audit record. */
async function send(doc: PolicyDocument, path: string, headers: Record<string, string> = {}, init: RequestInit = {}) {
  return sendMarked(harness(doc), path, { ...init, headers });
}

const bearer = async (claims: Record<string, unknown> = {}) => ({
  authorization: `Bearer ${await idp.sign(claims)}`,
});

// ---------------------------------------------------------------------------------------------
// The bundled policy (policy/policy.json, which the local stack serves as is but for its issuer
// and origin): realistic dotted paths still reach the origin.
// ---------------------------------------------------------------------------------------------

function demo() {
  return {
    ...policy,
    issuers: { demo: { ...policy.issuers.demo, issuer: idp.url }, access: policy.issuers.access },
    upstreams: { api: { url: echoOrigin } },
    settings: { ...policy.settings, limiter_timeout_ms: 2000 },
  } as unknown as PolicyDocument;
}
const DEMO_AUD = policy.issuers.demo.audiences[0] as string;
const demoBearer = async (claims: Record<string, unknown> = {}) => bearer({ aud: DEMO_AUD, ...claims });

describe("the bundled policy: dotted API paths", () => {
  it.each([
    ["/v1/files/report.pdf", "api-read"],
    ["/v1/users/me.json", "api-read"],
    ["/v1/exports/2024-01.tar.gz", "api-read"],
    ["/v1/payments.json", "api-read"],
    ["/v1/reports/q1.json", "api-read"],
    ["/v1/tenants/acme/reports/q1.json", "tenant-api"],
  ])("GET %s reaches the origin as sent under %s", async (path, route) => {
    const { response, seen, record } = await send(demo(), path, await demoBearer({ sub: crypto.randomUUID() }));
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route, detail: null });
    expect(seen.map((s) => s.raw_target)).toEqual([path]);
  });

  // The PATH_INFO reading of `/v1/tenants/acme.pl/invoices` is `/v1/tenants/acme.pl`, which the
  // tenant route itself takes (`**` matches nothing): the same route, nothing to mistake.
  it("a tenant named like a Perl script (acme.pl) reaches its own tenant route", async () => {
    const { response, seen, record } = await send(
      demo(),
      "/v1/tenants/acme.pl/invoices",
      await demoBearer({ tenant_id: "acme.pl", sub: crypto.randomUUID() }),
    );
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "tenant-api", tenant_id: "acme.pl" });
    expect(seen[0]?.raw_target).toBe("/v1/tenants/acme.pl/invoices");
  });

  // `/v1/limited` is its own, stricter-limited route: Rails reads `/v1/limited.json` as it.
  it("GET /v1/limited.json is refused rather than counted under api-read's limits", async () => {
    const { response, text, seen, record } = await send(demo(), "/v1/limited.json", await demoBearer());
    expect(response.status).toBe(400);
    expect(JSON.parse(text)).toMatchObject({ reason: "bad_request" });
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_format" });
    expect(seen).toHaveLength(0);
  });

  it("a CORS preflight for a dotted report path is answered for the app's origin", async () => {
    const edge = harness(demo());
    const response = await edge.fetch("/v1/reports/q1.json", {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example.com",
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(response.headers.get("access-control-allow-methods")).toBe("GET, HEAD");
    expect(edge.audit.at(-1)).toMatchObject({ route: "api-read", detail: null });
  });

  it("a CORS preflight for /v1/limited.json is refused as the request itself would be, without CORS grants", async () => {
    const edge = harness(demo());
    const response = await edge.fetch("/v1/limited.json", {
      method: "OPTIONS",
      headers: { origin: "https://app.example.com", "access-control-request-method": "GET" },
    });
    expect(response.status).toBe(400);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", detail: "ambiguous_format" });
  });
});

// ---------------------------------------------------------------------------------------------
// Max-Forwards: 0 lists only the methods the edge would route at the URL.
// ---------------------------------------------------------------------------------------------

describe("OPTIONS with Max-Forwards: 0 at dotted paths", () => {
  const doc = () =>
    basePolicy({
      issuers: oidc(),
      routes: [
        { name: "admin", methods: ["GET"], path: "/v1/admin", auth: { issuers: ["idp"] }, upstream: "echo" },
        { name: "api", methods: ["GET", "OPTIONS"], path: "/v1/**", auth: "public", upstream: "echo" },
      ],
    });

  /** The OPTIONS at `path`, answered by the edge for route `api` and never forwarded: the methods its Allow lists. */
  async function allowedAt(path: string) {
    const { response, seen, record } = await send(doc(), path, { "max-forwards": "0" }, { method: "OPTIONS" });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "api", detail: "max_forwards_zero" });
    expect(seen).toHaveLength(0);
    return response.headers.get("allow");
  }

  it("at a path no other route reads as its own, every method of the route is listed", async () => {
    expect(await allowedAt("/v1/reports/q1.json")).toBe("GET, HEAD, OPTIONS");
  });

  it("at /v1/admin.json the OPTIONS is answered, and GET (read as /v1/admin) is not listed", async () => {
    expect(await allowedAt("/v1/admin.json")).toBe("OPTIONS");
  });
});

// ---------------------------------------------------------------------------------------------
// Routes the policy names by a dotted literal, and dotted values mid-path.
// ---------------------------------------------------------------------------------------------

describe("a route written for a dotted name, in front of a broader route", () => {
  // The shape of nearly every API behind a gateway: a public spec, key set or robots file in
  // front of an authenticated catch-all. The compiler accepts it.
  const publicFileFirst = (path: string) =>
    basePolicy({
      issuers: oidc(),
      routes: [
        { name: "file", methods: ["GET"], path, auth: "public", upstream: "echo" },
        { name: "api", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      ],
    });

  it("the compiler accepts such policies", () => {
    for (const path of ["/openapi.json", "/.well-known/jwks.json", "/robots.txt", "/v1/openapi.yaml"]) {
      expect(problemsOf(publicFileFirst(path)), path).toEqual([]);
    }
  });

  // A route written for a file is reachable though a later, broader route takes the name
  // without its suffix: `/**` takes `/openapi` as any path, it names no such segment, and the
  // Rails reading runs the same action the policy author made public by name.
  it.each(["/openapi.json", "/.well-known/jwks.json", "/robots.txt", "/v1/openapi.yaml"])(
    "GET %s reaches the origin under its own public route",
    async (path) => {
      const { response, seen, record } = await send(publicFileFirst(path), path);
      expect({ status: response.status, route: record?.route, detail: record?.detail }).toEqual({
        status: 200,
        route: "file",
        detail: null,
      });
      expect(seen.map((s) => s.raw_target)).toEqual([path]);
    },
  );

  // The same with the script route origin-framework-readings.test.ts guards: the admin route
  // `/admin.php` before a public `/**` is reached by an admin (`/admin`, which the site route
  // takes, is named by no route).
  it("an admin reaches /admin.php, the route written for it", async () => {
    const doc = basePolicy({
      issuers: oidc(),
      routes: [
        {
          name: "admin",
          methods: ["GET"],
          path: "/admin.php",
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "echo",
        },
        { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
      ],
    });
    const { response, seen, record } = await send(doc, "/admin.php", await bearer({ groups: ["admins"] }));
    expect({ status: response.status, route: record?.route, detail: record?.detail }).toEqual({
      status: 200,
      route: "admin",
      detail: null,
    });
    expect(seen).toHaveLength(1);
  });
});

describe("a dotted value mid-path under a specific route before a broader one", () => {
  const dns = () =>
    basePolicy({
      issuers: oidc(),
      routes: [
        {
          name: "records",
          methods: ["GET"],
          path: "/v1/domains/*/records",
          auth: { issuers: ["idp"] },
          upstream: "echo",
        },
        { name: "roles", methods: ["GET"], path: "/v1/users/*/roles", auth: { issuers: ["idp"] }, upstream: "echo" },
        { name: "api", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      ],
    });

  it("control: a .com domain and a .de address reach the specific route", async () => {
    for (const path of ["/v1/domains/example.com/records", "/v1/users/anna@firma.de/roles"]) {
      const { response, seen, record } = await send(dns(), path, await bearer());
      expect(response.status, path).toBe(200);
      expect(record?.route, path).toMatch(/^(records|roles)$/);
      expect(seen, path).toHaveLength(1);
    }
  });

  // `.pl` is Perl's, and every Polish domain name or address: `/v1/domains/example.pl/records`
  // read as `/v1/domains/example.pl` is taken by `/v1/**` only as any path, which names no
  // such script, so the request goes on through its own route.
  it.each([
    ["/v1/domains/example.pl/records", "records"],
    ["/v1/users/jan.kowalski@firma.pl/roles", "roles"],
  ])("GET %s reaches %s", async (path, route) => {
    const { response, seen, record } = await send(dns(), path, await bearer());
    expect({ status: response.status, route: record?.route, detail: record?.detail }).toEqual({
      status: 200,
      route,
      detail: null,
    });
    expect(seen.map((s) => s.raw_target)).toEqual([path]);
  });
});

describe("parenthesised segments", () => {
  const site = () =>
    basePolicy({ routes: [{ name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" }] });

  it.each(["/files/report(1).pdf", "/wiki/C_(programming_language)", "/search/(a)", "/math/(x)(y)"])(
    "%s goes on as sent",
    async (path) => {
      const { response, seen } = await send(site(), path);
      expect(response.status).toBe(200);
      expect(seen.map((s) => s.raw_target)).toEqual([path]);
    },
  );

  it("a lower-case cookieless segment is refused as the upper-case one is", async () => {
    const { response, seen, record } = await send(site(), "/(s(abc))/x");
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ reason: "bad_request", detail: "ambiguous_segment" });
    expect(seen).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Header prefixes: nothing a real client sends is lost.
// ---------------------------------------------------------------------------------------------

describe("headers near the new identity prefixes", () => {
  const KEPT: Record<string, string> = {
    "Sec-WebSocket-Protocol": "graphql-ws",
    "X-WS-Session": "s1",
    "Smartsheet-Change-Agent": "bot",
    "X-IV": "AAECAwQFBgcICQoLDA0ODw",
    "X-Amz-Meta-Iv": "AAECAwQFBgcICQoLDA0ODw",
    Ivr: "menu-1",
    "X-SM-Trace": "t1",
    "X-OAM-Trace": "t2",
    "X-JWT": "not-an-assertion",
    "Smtp-Relay": "mx1",
    Wsdl: "1",
  };

  it("reach the origin on a public route", async () => {
    const { response, got } = await send(basePolicy(), "/public/a", KEPT);
    expect(response.status).toBe(200);
    const expected = Object.fromEntries(Object.entries(KEPT).map(([name, value]) => [name.toLowerCase(), value]));
    expect(got).toMatchObject(expected);
  });

  it("the new families are stripped in the spellings CGI-style origins read alike", async () => {
    const spoofed = {
      "sm.user": "admin",
      "iv~user": "admin",
      "oam.remote.user": "admin",
      x_jwt_assertion: "e30",
      _wsra: "10.0.0.1",
    };
    // Control: sent straight to the origin, every one arrives, so one missing below is the edge's doing.
    const direct = marker();
    await (await fetch(`${echoOrigin}/public/a`, { headers: { ...spoofed, "x-test-marker": direct } })).arrayBuffer();
    expect((await originSaw(direct))[0]?.headers).toMatchObject(spoofed);
    const { response, got } = await send(basePolicy(), "/public/a", { ...spoofed, "x-kept": "yes" });
    expect(response.status).toBe(200);
    expect(got["x-kept"]).toBe("yes");
    expect(Object.keys(spoofed).filter((name) => got[name] !== undefined)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Authorization: where the scheme's name ends.
// ---------------------------------------------------------------------------------------------

describe("Authorization values of other schemes", () => {
  const url = new URL("https://edge.test/x");
  const read = (value: string, accepts = { bearer: true, access: false }) =>
    extractCredential(new Headers({ authorization: value }), url, accepts);

  it.each(["Bearer-Token abc", "BearerX abc", "Bearer.abc", "Bearer_abc def", "Bearer+x y", "Bearers abc"])(
    "%s is another scheme (401 token_missing), never a malformed Bearer",
    (value) => {
      expect(read(value)).toEqual({ ok: false, reason: "token_missing", detail: "unsupported_scheme" });
    },
  );

  it.each(["Bearer\u000babc", "Bearer\u000cabc", "Bearer:abc", "Bearer\u00a0abc"])(
    "%j is a Bearer credential spelt wrong (400 token_malformed)",
    (value) => {
      expect(read(value)).toMatchObject({ ok: false, reason: "token_malformed" });
    },
  );

  it.each(COMMA_SCHEMES)("the comma-holding scheme %s is still another scheme", (value) => {
    expect(read(value)).toEqual({ ok: false, reason: "token_missing", detail: "unsupported_scheme" });
  });

  // A Digest credential's `uri` parameter is the request target, commas in its query
  // unescaped: one ending in `,bearer` before the closing quote (or `,bearer/` in a path) is no
  // joined Bearer credential (only whitespace, a comma or the end ends the word there).
  it.each([
    'Digest username="ada", realm="api", nonce="n0", uri="/search?tags=token,bearer", response="6629fae4"',
    'Digest username="ada", realm="api", nonce="n0", uri="/docs/auth,bearer/intro", response="6629fae4"',
  ])("%s is another scheme, not two credentials", (value) => {
    expect(read(value)).toEqual({ ok: false, reason: "token_missing", detail: "unsupported_scheme" });
  });

  // The same value on a route that takes Bearer tokens and Access assertions: another scheme
  // leaves the Access assertion to decide.
  it("such a Digest value beside an Access cookie leaves the Access assertion to decide", () => {
    const headers = new Headers({
      authorization:
        'Digest username="ada", realm="api", nonce="n0", uri="/search?tags=token,bearer", response="6629fae4"',
      cookie: "CF_Authorization=eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
    });
    expect(extractCredential(headers, url, { bearer: true, access: true })).toEqual({
      ok: true,
      token: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
      kind: "access",
    });
  });

  it("end to end: Bearer-Token is a 401 with a Bearer challenge, and the origin sees nothing", async () => {
    const doc = basePolicy({
      issuers: oidc(),
      routes: [{ name: "api", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
    });
    const token = await idp.sign();
    const { response, text, seen, record } = await send(doc, "/v1/a", { authorization: `Bearer-Token ${token}` });
    expect(response.status).toBe(401);
    expect(JSON.parse(text)).toMatchObject({ reason: "token_missing" });
    expect(record).toMatchObject({ decision: "deny", reason: "token_missing", key_source: null });
    expect(seen).toHaveLength(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Tenants with quotes, and tenant overrides.
// ---------------------------------------------------------------------------------------------

describe("tenants", () => {
  const doc = (overrides?: Record<string, Record<string, { limit: number }>>) =>
    basePolicy({
      issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE], claims: { tenant: "tenant_id" } } },
      limits: {
        defaults: [{ name: "tenant-per-minute", key: "tenant", limit: 1000, window_s: 60 }],
        ...(overrides ? { tenant_overrides: overrides } : {}),
      },
      routes: [{ name: "api", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
    });

  it.each(["acme-corp", "acme.eu", "o'reilly", "acme_1", "ACME:EU", "acme/eu", "acme+beta"])(
    "tenant %s goes on to the origin verbatim",
    async (tenant) => {
      const { response, got } = await send(doc(), "/v1/a", await bearer({ tenant_id: tenant }));
      expect(response.status).toBe(200);
      expect(got["x-tenant"]).toBe(tenant);
    },
  );

  it.each(['acme"x', "acme\\x", "acme|globex"])(
    "tenant %s is refused (tenant_unsafe), and so is an override naming it",
    async (tenant) => {
      const { response, seen, record } = await send(doc(), "/v1/a", await bearer({ tenant_id: tenant }));
      expect(response.status).toBe(401);
      expect(record).toMatchObject({ reason: "token_invalid", detail: "tenant_unsafe" });
      expect(seen).toHaveLength(0);
      // Every problem of an override names `tenant`: the refusal must be this one, and the only one.
      expect(problemsOf(doc({ [tenant]: { "tenant-per-minute": { limit: 5 } } }))).toEqual([
        `limits.tenant_overrides.${tenant}: a tenant is 1 to 255 printable ASCII characters, without spaces, commas, |, " or \\`,
      ]);
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Server-Timing and CORS.
// ---------------------------------------------------------------------------------------------

describe("server-timing in a CORS expose list", () => {
  const doc = (serverTiming: boolean, expose: string[]) =>
    basePolicy({
      settings: { limiter_timeout_ms: 2000, server_timing: serverTiming },
      routes: [
        {
          name: "public",
          methods: ["GET"],
          path: "/public/**",
          auth: "public",
          upstream: "echo",
          cors: { allow_origins: ["https://app.test"], expose_headers: expose },
        },
      ],
    });

  it("is refused in any letter case while the edge writes its timings, and allowed otherwise", () => {
    expect(problemsOf(doc(true, ["Server-Timing"])).join("\n")).toMatch(/server-timing/);
    expect(problemsOf(doc(true, ["x-request-id"]))).toEqual([]);
    expect(problemsOf(doc(false, ["Server-Timing"]))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Keys as real issuers publish them.
// ---------------------------------------------------------------------------------------------

function bytesOf(segment: string): Uint8Array {
  return Uint8Array.from(atob(segment.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
}

/** `segment` with `zeros` leading zero bytes, as some issuers (.NET, older Java) write n and e. */
function withLeadingZeros(segment: string, zeros: number): string {
  const bytes = bytesOf(segment);
  const out = new Uint8Array(bytes.length + zeros);
  out.set(bytes, zeros);
  return b64url(out);
}

/** A key of any algorithm jose generates, as a TestKey the stand-in issuer can sign with. */
async function anyKey(alg: string, kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, {
    extractable: true,
    crv: alg === "EdDSA" ? "Ed25519" : undefined,
  });
  return { kid, alg: alg as Alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** Publish raw JWKs on the stand-in, exactly as given. */
async function publishRaw(issuer: TestIssuer, keys: unknown[]): Promise<void> {
  const response = await fetch(`${issuerServer}/__control/issuers/${issuer.name}`, {
    method: "POST",
    body: JSON.stringify({ jwks: { keys } }),
  });
  expect(response.ok).toBe(true);
}

/** A point of no curve: two random coordinates. */
const offCurve = (extra: Record<string, unknown> = {}) => {
  const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
  return { kty: "EC", crv: "P-256", x: random(), y: random(), ...extra };
};

const ALL_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

describe("real keys in the spellings issuers publish", () => {
  const variants: [string, () => Promise<{ key: TestKey; jwk: JWK }>][] = [
    [
      "RSA-2048 whose n has a leading 0x00 byte",
      async () => {
        const key = await makeKey("RS256", "lead0");
        return { key, jwk: { ...key.publicJwk, n: withLeadingZeros(key.publicJwk.n as string, 1) } };
      },
    ],
    [
      "RSA-2048 with e = 65537 written as AAEAAQ",
      async () => {
        const key = await makeKey("RS256", "e4");
        return { key, jwk: { ...key.publicJwk, e: withLeadingZeros(key.publicJwk.e as string, 1) } };
      },
    ],
    [
      "RSA-2048 with e = 65537 written with three leading zero bytes",
      async () => {
        const key = await makeKey("RS256", "e6");
        return { key, jwk: { ...key.publicJwk, e: withLeadingZeros(key.publicJwk.e as string, 3) } };
      },
    ],
    [
      "RSA-2048 published for PS256",
      async () => ((key) => ({ key, jwk: key.publicJwk }))(await makeKey("PS256", "ps")),
    ],
    ["RSA-4096 for RS512", async () => ((key) => ({ key, jwk: key.publicJwk }))(await anyKey("RS512", "rsa4k"))],
    ["EC P-384 for ES384", async () => ((key) => ({ key, jwk: key.publicJwk }))(await anyKey("ES384", "p384"))],
    ["EC P-521 for ES512", async () => ((key) => ({ key, jwk: key.publicJwk }))(await anyKey("ES512", "p521"))],
    ["Ed25519 for EdDSA", async () => ((key) => ({ key, jwk: key.publicJwk }))(await anyKey("EdDSA", "ed"))],
    [
      "RSA-2048 without alg or use",
      async () => {
        const key = await makeKey("RS256", "bare");
        const { alg: _alg, use: _use, ...jwk } = key.publicJwk;
        return { key, jwk };
      },
    ],
  ];

  it.each(variants)("%s, alone in its set, verifies a token", async (_name, make) => {
    const issuer = await makeIssuer("ES256");
    const { key, jwk } = await make();
    await publishRaw(issuer, [jwk]);
    const clock = new Clock();
    const { verify } = verifierFor(issuer, clock, { algorithms: ALL_ALGS }, false);
    expect(await verify(await signAt(issuer, clock, key))).toMatchObject({ ok: true, keySource: "fetch" });
  });

  it("RSA-4096 with n written with a leading zero byte, in a set with every other kind, verifies", async () => {
    const issuer = await makeIssuer("ES256");
    const rsa = await anyKey("RS256", "big");
    const others = await Promise.all([anyKey("ES384", "a"), anyKey("EdDSA", "b"), makeKey("PS256", "c")]);
    await publishRaw(issuer, [
      ...others.map((k) => k.publicJwk),
      { ...rsa.publicJwk, n: withLeadingZeros(rsa.publicJwk.n as string, 1) },
    ]);
    const clock = new Clock();
    const { verify } = verifierFor(issuer, clock, { algorithms: ALL_ALGS }, false);
    for (const key of [rsa, ...others]) {
      expect(await verify(await signAt(issuer, clock, key)), key.kid).toMatchObject({ ok: true });
    }
  });

  it("a kid-less set: the off-curve entry is dropped by the trial import, the real kid-less key verifies", async () => {
    const issuer = await makeIssuer("ES256");
    const real = await makeKey("ES256", "unused");
    const { kid: _kid, ...kidless } = real.publicJwk;
    await publishRaw(issuer, [offCurve({ use: "sig" }), kidless]);
    const clock = new Clock();
    // A KV of its own, to read the set as kept: a lookup skips a key it cannot import anyway,
    // so only the kept set shows the trial import's doing.
    const written = new Map<string, string>();
    const ownKv = {
      get: async (key: string) => written.get(key) ?? null,
      put: async (key: string, value: string) => void written.set(key, value),
    };
    const { verify, settle } = verifierFor(issuer, clock, {}, ownKv);
    const now = Math.floor(clock.ms / 1000);
    const token = await issuer.sign({ iat: now, exp: now + 600 }, { key: real, header: { kid: undefined } });
    expect(JSON.parse(atob(token.split(".")[0] as string))).not.toHaveProperty("kid");
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    const kept = JSON.parse(written.get(`jwks:v1:${issuer.url}`) ?? "null") as { keys: JWK[] } | null;
    expect(kept?.keys.map((key) => key.x)).toEqual([kidless.x]);
  });
});

describe("KV records holding keys no fetched set keeps (written by an older edge)", () => {
  /** A 1024-bit RSA public key, which jose will not generate. */
  async function weakRsaJwk(kid: string): Promise<JWK> {
    const params = { name: "RSASSA-PKCS1-v1_5", modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]) };
    const pair = (await crypto.subtle.generateKey({ ...params, hash: "SHA-256" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const { kty, n, e } = (await crypto.subtle.exportKey("jwk", pair.publicKey)) as JsonWebKey;
    return { kty, n, e, kid, alg: "RS256", use: "sig" };
  }

  const said = (r: { ok: boolean; reason?: string; detail?: string; source?: string }) =>
    r.ok ? `ok/${r.source}` : `${r.reason}/${r.detail}`;

  it("a fresh record holding a weak RSA key beside a good one: the good key serves from KV, no fetch", async () => {
    const w = world({});
    const good = await publicJwk("good");
    await w.putRecord(T0, [await weakRsaJwk("weak"), good]);
    w.issuer.keys = [good];
    const edge = w.isolate();
    expect(said(await edge.lookup("good"))).toBe("ok/kv");
    expect(w.issuer.fetches).toBe(0);
  });

  it("a fresh record holding an off-curve point beside a good one: the good key serves from KV", async () => {
    const w = world({});
    const good = await publicJwk("good");
    await w.putRecord(T0, [offCurve({ kid: "bent" }), good]);
    const edge = w.isolate();
    expect(said(await edge.lookup("good"))).toBe("ok/kv");
    expect(w.issuer.fetches).toBe(0);
  });

  it("a fresh record holding only a weak RSA key is a miss: the issuer's set is fetched and serves", async () => {
    const w = world({});
    const good = await publicJwk("good");
    await w.putRecord(T0, [await weakRsaJwk("weak")]);
    w.issuer.keys = [good];
    const edge = w.isolate();
    expect(said(await edge.lookup("good"))).toBe("ok/fetch");
    expect(w.issuer.fetches).toBe(1);
  });
});

describe("the trial import's cost is the issuer's set, once per fetch", () => {
  it("150 listed keys: at most 100 imports for the fetch, none for made-up kids within the cooldown", async () => {
    const w = world({ refresh_cooldown_s: 30 });
    w.issuer.keys = await Promise.all(Array.from({ length: 150 }, (_, i) => publicJwk(`k${i}`)));
    const importKey = vi.spyOn(crypto.subtle, "importKey");
    const edge = w.isolate();
    expect((await edge.lookup("k0")).ok).toBe(true);
    // 100 trial imports of the kept keys, and the lookup's own for ES256.
    expect(importKey.mock.calls.length).toBeLessThanOrEqual(101);
    expect(importKey.mock.calls.length).toBeGreaterThanOrEqual(100);
    const afterFetch = importKey.mock.calls.length;
    for (let i = 0; i < 20; i++) await edge.lookup(`made-up-${i}`);
    expect(w.issuer.fetches).toBe(1);
    expect(importKey.mock.calls.length).toBe(afterFetch);
    // A listed key past the cap was never a key of the set.
    expect((await edge.lookup("k120")).ok).toBe(false);
  });

  // The largest set an issuer can have read (max_jwks_bytes at its 1 MiB ceiling): 99 moduli
  // of 16,384 bits, each just under the member cap, before the one real key.
  it("99 RSA-16384-sized moduli (made up: an import checks no primes) cost one import each, once", async () => {
    const w = world({ refresh_cooldown_s: 30, max_jwks_bytes: 1048576 });
    const huge = () => {
      const n = crypto.getRandomValues(new Uint8Array(2048));
      n[0] = 0xc0;
      n[2047] = (n[2047] as number) | 1;
      return b64url(n);
    };
    const good = await publicJwk("good");
    w.issuer.keys = [
      ...Array.from({ length: 99 }, (_, i) => ({ kty: "RSA", kid: `big-${i}`, n: huge(), e: "AQAB" })),
      good,
    ];
    const importKey = vi.spyOn(crypto.subtle, "importKey");
    const edge = w.isolate();
    expect((await edge.lookup("good")).ok).toBe(true);
    expect(importKey.mock.calls.length).toBeLessThanOrEqual(101);
    const afterFetch = importKey.mock.calls.length;
    for (let i = 0; i < 20; i++) {
      expect((await edge.store.lookup(`big-${i}`, "RS256", () => {})).ok).toBe(true);
    }
    // Each lookup of a big key imports it once for RS256 (a lookup's own import), no more.
    expect(importKey.mock.calls.length).toBeLessThanOrEqual(afterFetch + 20);
    expect(w.issuer.fetches).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// key_source in the audit record.
// ---------------------------------------------------------------------------------------------

describe("key_source", () => {
  it("says fetch, then token_cache, for one edge's requests; null on a public route", async () => {
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { own: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [
          { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
          { name: "api", methods: ["GET"], path: "/v1/**", auth: { issuers: ["own"] }, upstream: "echo" },
        ],
      }),
    );
    const headers = { authorization: `Bearer ${await issuer.sign()}` };
    for (const path of ["/v1/a", "/v1/b", "/public/c"]) await (await edge.fetch(path, { headers })).arrayBuffer();
    expect(edge.audit.map((r) => [r.path, r.status, r.key_source])).toEqual([
      ["/v1/a", 200, "fetch"],
      ["/v1/b", 200, "token_cache"],
      ["/public/c", 200, null],
    ]);
  });
});
