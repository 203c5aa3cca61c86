// Cloudflare Access assertions: from the Cf-Access-Jwt-Assertion header or the
// CF_Authorization cookie, per-application AUD tags, and service tokens.
import { beforeAll, describe, expect, it } from "vitest";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { accessAssertion, COMMA_SCHEMES, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";

let team: TestIssuer;

beforeAll(async () => {
  team = await makeIssuer("RS256");
});

function accessPolicy() {
  return basePolicy({
    issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
    routes: [
      {
        name: "app",
        methods: ["GET"],
        path: "/access/**",
        auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
        upstream: "echo",
      },
    ],
  });
}

function assertion(claims: Record<string, unknown> = {}) {
  return accessAssertion(team, ACCESS_AUD_TAG, claims);
}

async function call(headers: Record<string, string>) {
  const edge = harness(accessPolicy());
  const m = marker();
  const response = await edge.fetch("/access/dashboard", { headers: { "x-test-marker": m, ...headers } });
  const body = (await response.json()) as Record<string, unknown>;
  return { response, body, seen: await originSaw(m), record: edge.audit.at(-1) };
}

describe("Cloudflare Access", () => {
  it("accepts the assertion header, maps email, strips the assertion and spoofed Access headers", async () => {
    const { response, seen } = await call({
      "cf-access-jwt-assertion": await assertion(),
      "cf-access-authenticated-user-email": "ceo@example.com",
    });
    expect(response.status).toBe(200);
    const h = seen[0]!.headers;
    expect(h["x-user-email"]).toBe("user@example.com");
    expect(h["x-user-sub"]).toBe("7335d417-61da-459d-899c-0a01c76a2f94");
    expect(h["cf-access-jwt-assertion"]).toBeUndefined();
    expect(h["cf-access-authenticated-user-email"]).toBeUndefined();
  });

  it("falls back to the CF_Authorization cookie and removes it before forwarding", async () => {
    const token = await assertion();
    const { response, seen } = await call({ cookie: `a=1; CF_Authorization=${token}; b=2` });
    expect(response.status).toBe(200);
    expect(seen[0]!.headers.cookie).toBe("a=1; b=2");
    expect(JSON.stringify(seen[0])).not.toContain(token.split(".")[2]);
  });

  it("reads the assertion only from the cookie named exactly CF_Authorization: other spellings are removed, never read", async () => {
    const token = await assertion();
    for (const name of ["cf_authorization", "CF.Authorization", "CF%5FAuthorization", "CF_Authorization[0]"]) {
      const { response, body, seen } = await call({ cookie: `${name}=${token}` });
      expect({ name, status: response.status, reason: body.reason }).toEqual({
        name,
        status: 401,
        reason: "token_missing",
      });
      expect(seen).toHaveLength(0);
    }
  });

  it("supports service-token assertions (no email, common_name as subject)", async () => {
    const { response, seen } = await call({
      "cf-access-jwt-assertion": await assertion({ sub: "", email: undefined, common_name: "ci-bot.access" }),
    });
    expect(response.status).toBe(200);
    expect(seen[0]!.headers["x-user-sub"]).toBe("ci-bot.access");
    expect(seen[0]!.headers["x-user-email"]).toBeUndefined();
  });

  it("refuses a token Access did not issue for an application: the global session token (type org), or no type", async () => {
    // Access signs application tokens and the team's session token with the same keys and iss.
    for (const type of ["org", "", undefined]) {
      const { response, body, seen, record } = await call({ "cf-access-jwt-assertion": await assertion({ type }) });
      expect({ type, status: response.status, reason: body.reason, detail: record?.detail }).toEqual({
        type,
        status: 401,
        reason: "token_invalid",
        detail: "access_type_not_app",
      });
      expect(seen).toHaveLength(0);
    }
  });

  it("rejects an assertion for another Access application", async () => {
    const { response, body, seen } = await call({
      "cf-access-jwt-assertion": await assertion({ aud: ["another-app-aud-tag"] }),
    });
    expect(response.status).toBe(401);
    expect(body.reason).toBe("audience_mismatch");
    expect(seen).toHaveLength(0);
  });

  it("rejects a missing assertion and two CF_Authorization cookies", async () => {
    const missing = await call({});
    expect(missing.body.reason).toBe("token_missing");
    expect(missing.response.status).toBe(401);
    // HTTP requires a challenge on a 401; no scheme is registered for Access assertions.
    expect(missing.response.headers.get("www-authenticate")).toBe('Bearer realm="portcullis"');
    // Two cookies are refused as such, never checked as a token: neither is picked, even
    // when both are the same good assertion.
    const token = await assertion();
    const other = await assertion({ sub: "another-user" });
    for (const [which, cookie] of [
      ["the same assertion twice", `CF_Authorization=${token}; CF_Authorization=${token}`],
      ["two assertions", `CF_Authorization=${token}; a=1; CF_Authorization=${other}`],
    ] as const) {
      const twice = await call({ cookie });
      expect(twice.response.status, which).toBe(400);
      expect(twice.body.reason, which).toBe("token_malformed");
      expect(twice.record, which).toMatchObject({
        reason: "token_malformed",
        detail: "multiple_credentials",
        issuer: null,
      });
      expect(twice.seen, which).toHaveLength(0);
    }
  });

  it("refuses two assertion headers and an empty one; the header, when present, is the assertion", async () => {
    const token = await assertion();
    const headers = new Headers([
      ["cf-access-jwt-assertion", token],
      ["cf-access-jwt-assertion", token],
    ]);
    const edge = harness(accessPolicy());
    const twice = await edge.fetch(new Request("https://edge.test/access/dashboard", { headers }));
    expect(twice.status).toBe(400);
    expect(twice.headers.get("www-authenticate")).toContain('error="invalid_request"');
    expect(edge.audit.at(-1)?.detail).toBe("multiple_credentials");
    const empty = await call({ "cf-access-jwt-assertion": "", cookie: `CF_Authorization=${token}` });
    expect({ status: empty.response.status, detail: empty.record?.detail }).toEqual({
      status: 400,
      detail: "empty_token",
    });
    // An empty cookie is refused the same way, not checked as a token (which would count it
    // among forged tokens, with the client's address, in the metrics).
    for (const cookie of ["CF_Authorization=", "CF_Authorization", "a=1; CF_Authorization=; b=2"]) {
      const emptyCookie = await call({ cookie });
      expect({ status: emptyCookie.response.status, detail: emptyCookie.record?.detail }, cookie).toEqual({
        status: 400,
        detail: "empty_token",
      });
      expect(emptyCookie.seen).toHaveLength(0);
    }
    // A bad header is not rescued by a good cookie: the cookie is never a second chance. The
    // header's assertion is well formed, its signature altered.
    const [signed, signature] = [token.slice(0, token.lastIndexOf(".")), token.slice(token.lastIndexOf(".") + 1)];
    const forgedToken = `${signed}.${signature.startsWith("A") ? "B" : "A"}${signature.slice(1)}`;
    const forged = await call({ "cf-access-jwt-assertion": forgedToken, cookie: `CF_Authorization=${token}` });
    expect(forged.response.status).toBe(401);
    expect(forged.body.reason).toBe("token_invalid");
    // The header's assertion was checked, and failed on its signature; the cookie was not taken.
    expect(forged.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "signature" });
    expect(forged.seen).toHaveLength(0);
  });

  it("does not take a bearer token on an Access-only route", async () => {
    const { body, seen } = await call({ authorization: `Bearer ${await assertion()}` });
    expect(body.reason).toBe("token_missing");
    expect(seen).toHaveLength(0);
  });

  it("refuses an assertion that comes with a token in the query, so that token never reaches the origin", async () => {
    const edge = harness(accessPolicy());
    const m = marker();
    const response = await edge.fetch("/access/dashboard?access_token=UNVERIFIED.x.y", {
      headers: { "x-test-marker": m, cookie: `CF_Authorization=${await assertion()}` },
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { reason: string }).reason).toBe("token_malformed");
    expect(edge.audit.at(-1)?.detail).toBe("multiple_methods");
    expect(await originSaw(m)).toHaveLength(0);
  });
});

describe("a route that accepts bearer tokens and Access assertions", () => {
  let idp: TestIssuer;
  beforeAll(async () => {
    idp = await makeIssuer();
  });

  function mixedEdge() {
    return harness(
      basePolicy({
        issuers: {
          access: { kind: "cloudflare_access", team_domain: team.url },
          idp: { kind: "oidc", issuer: idp.url, audiences: ["api"] },
        },
        routes: [
          {
            name: "mixed",
            methods: ["GET"],
            path: "/mixed/**",
            auth: { issuers: ["idp", "access"], audiences: ["api", ACCESS_AUD_TAG] },
            upstream: "echo",
          },
        ],
      }),
    );
  }

  it("leaves a non-Bearer Authorization header to the Access assertion, and strips both", async () => {
    const edge = mixedEdge();
    const m = marker();
    const response = await edge.fetch("/mixed/x", {
      headers: {
        "x-test-marker": m,
        authorization: "Basic dXNlcjpwYXNz",
        cookie: `CF_Authorization=${await assertion()}`,
      },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen?.headers["x-user-email"]).toBe("user@example.com");
    expect(seen?.headers.authorization).toBeUndefined();
    expect(seen?.headers.cookie).toBeUndefined();
  });

  it("leaves another scheme's credential to the Access assertion when it holds commas (Digest, OAuth 1.0, AWS SigV4)", async () => {
    const edge = mixedEdge();
    for (const authorization of COMMA_SCHEMES) {
      const m = marker();
      const response = await edge.fetch("/mixed/x", {
        headers: { "x-test-marker": m, authorization, cookie: `CF_Authorization=${await assertion()}` },
      });
      expect(response.status, authorization).toBe(200);
      const [seen] = await originSaw(m);
      expect(seen?.headers["x-user-email"]).toBe("user@example.com");
      expect(seen?.headers.authorization).toBeUndefined();
    }
  });

  it("reads a Bearer Authorization header first", async () => {
    const edge = mixedEdge();
    const m = marker();
    const response = await edge.fetch("/mixed/x", {
      headers: {
        "x-test-marker": m,
        authorization: `Bearer ${await idp.sign({ sub: "bearer-user", aud: "api" })}`,
        "cf-access-jwt-assertion": await assertion(),
      },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen?.headers["x-user-sub"]).toBe("bearer-user");
  });

  it("takes an OIDC token only from Authorization, and an Access assertion only as one", async () => {
    const edge = mixedEdge();
    const oidc = await idp.sign({ sub: "bearer-user", aud: "api" });
    const cases: [string, Record<string, string>][] = [
      // A cookie the browser sends by itself must not carry an OIDC access token.
      ["oidc token in the CF_Authorization cookie", { cookie: `CF_Authorization=${oidc}` }],
      ["oidc token in the assertion header", { "cf-access-jwt-assertion": oidc }],
      ["access assertion as a bearer token", { authorization: `Bearer ${await assertion()}` }],
    ];
    for (const [name, headers] of cases) {
      const m = marker();
      // Twice: the second answer could come from the verified-token cache.
      for (let i = 0; i < 2; i++) {
        const response = await edge.fetch("/mixed/x", { headers: { "x-test-marker": m, ...headers } });
        const body = (await response.json()) as { reason: string };
        expect({ name, status: response.status, reason: body.reason, detail: edge.audit.at(-1)?.detail }).toEqual({
          name,
          status: 401,
          reason: "issuer_unknown",
          detail: "issuer_not_accepted_by_route",
        });
      }
      expect(await originSaw(m)).toHaveLength(0);
    }
    // Each is fine where it belongs, through the same (warm) edge.
    const bearer = await edge.fetch("/mixed/x", { headers: { authorization: `Bearer ${oidc}` } });
    expect(bearer.status).toBe(200);
  });

  it("still refuses another scheme when no Access assertion is present", async () => {
    const edge = mixedEdge();
    const response = await edge.fetch("/mixed/x", { headers: { authorization: "Basic dXNlcjpwYXNz" } });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { reason: string }).reason).toBe("token_missing");
    expect(edge.audit.at(-1)?.detail).toBe("unsupported_scheme");
  });

  // Each token is first accepted where it belongs, so the second presentation finds it in the
  // verified-token cache: the transport must still pick the issuers it may come from.
  it.each([
    ["an OIDC token, then in the CF_Authorization cookie", "oidc", "cookie"],
    ["an OIDC token, then in the assertion header", "oidc", "header"],
    ["an Access assertion, then as a Bearer token", "access", "bearer"],
  ] as const)("%s: 401 issuer_unknown, never forwarded", async (_label, kind, replay) => {
    const edge = mixedEdge();
    const token = kind === "oidc" ? await idp.sign({ sub: "bearer-user", aud: "api" }) : await assertion();
    const first = marker();
    const own: Record<string, string> =
      kind === "oidc" ? { authorization: `Bearer ${token}` } : { "cf-access-jwt-assertion": token };
    expect((await edge.fetch("/mixed/x", { headers: { "x-test-marker": first, ...own } })).status).toBe(200);
    expect(await originSaw(first)).toHaveLength(1);

    const second = marker();
    const other: Record<string, string> = {
      cookie: { cookie: `CF_Authorization=${token}` },
      header: { "cf-access-jwt-assertion": token },
      bearer: { authorization: `Bearer ${token}` },
    }[replay];
    const response = await edge.fetch("/mixed/x", { headers: { "x-test-marker": second, ...other } });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { reason: string }).reason).toBe("issuer_unknown");
    expect(edge.audit.at(-1)).toMatchObject({ reason: "issuer_unknown", detail: "issuer_not_accepted_by_route" });
    expect(await originSaw(second)).toHaveLength(0);
  });
});

describe("a route that accepts bearer tokens only", () => {
  // The assertion's transports are not read there: a valid assertion is no credential, and
  // the cookie and header are stripped like any other credential.
  it("answers a request with only an Access assertion 401 token_missing, and forwards neither", async () => {
    const idp = await makeIssuer();
    const edge = harness(
      basePolicy({
        issuers: {
          access: { kind: "cloudflare_access", team_domain: team.url },
          idp: { kind: "oidc", issuer: idp.url, audiences: ["api"] },
        },
        routes: [{ name: "api", methods: ["GET"], path: "/api/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const token = await assertion();
    const transports: Record<string, string>[] = [
      { "cf-access-jwt-assertion": token },
      { cookie: `CF_Authorization=${token}` },
    ];
    for (const headers of transports) {
      const m = marker();
      const response = await edge.fetch("/api/x", { headers: { "x-test-marker": m, ...headers } });
      expect(response.status).toBe(401);
      expect(((await response.json()) as { reason: string }).reason).toBe("token_missing");
      expect(await originSaw(m)).toHaveLength(0);
    }
  });
});

describe("answers to Access-authenticated requests and shared caches", () => {
  let idp: TestIssuer;
  beforeAll(async () => {
    idp = await makeIssuer();
  });

  /** The origin answers with `cacheControl` (none when undefined), through a service binding. */
  async function answer(credentials: Record<string, string>, cacheControl: string | undefined) {
    const edge = harness(
      basePolicy({
        issuers: {
          access: { kind: "cloudflare_access", team_domain: team.url },
          idp: { kind: "oidc", issuer: idp.url, audiences: ["api"] },
        },
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [
          {
            name: "mixed",
            methods: ["GET"],
            path: "/mixed/**",
            auth: { issuers: ["idp", "access"], audiences: ["api", ACCESS_AUD_TAG] },
            upstream: "svc",
          },
        ],
      }),
    );
    const respondWith = cacheControl === undefined ? [] : [["cache-control", cacheControl]];
    const response = await edge.fetch("/mixed/report", {
      headers: { ...credentials, "x-respond-with": JSON.stringify(respondWith) },
    });
    expect(response.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow" });
    return response.headers.get("cache-control");
  }

  it("marks the origin's answer private: the edge removed the cookie or header the answer depends on", async () => {
    // Unlike Authorization (RFC 9111 §3.5), neither the cookie nor the assertion header stops
    // a shared cache from storing the answer and handing it to the next client.
    const cookie = { cookie: `CF_Authorization=${await assertion()}` };
    expect(await answer(cookie, "max-age=300")).toBe("private, max-age=300");
    expect(await answer(cookie, undefined)).toBe("private");
    expect(await answer({ "cf-access-jwt-assertion": await assertion() }, "max-age=60, no-transform")).toBe(
      "private, max-age=60, no-transform",
    );
    // Private with field names keeps only those fields from shared caches (RFC 9111 §5.2.2.7).
    expect(await answer(cookie, 'max-age=60, private="set-cookie"')).toBe('private, max-age=60, private="set-cookie"');
    // Only whole directives count: not a longer name, nor a word inside a quoted value.
    for (const unruled of [
      "max-age=600, public-read",
      "max-age=600, no-store-hint",
      'max-age=600, no-cache="x,no-store"',
      'max-age=600, ext="a, s-maxage=5"',
      'max-age=600, ext="a,public"',
    ]) {
      expect(await answer(cookie, unruled)).toBe(`private, ${unruled}`);
    }
  });

  it("leaves the origin's word when it rules on shared caches itself, and Bearer answers as they are", async () => {
    const cookie = { cookie: `CF_Authorization=${await assertion()}` };
    for (const ruled of ["public, max-age=60", "s-maxage=30", "max-age=0, must-revalidate", "no-store", "Private"]) {
      expect(await answer(cookie, ruled)).toBe(ruled);
    }
    // A request with Authorization is already one no shared cache may answer from (RFC 9111 §3.5).
    const bearer = { authorization: `Bearer ${await idp.sign({ sub: "bearer-user", aud: "api" })}` };
    expect(await answer(bearer, "max-age=300")).toBe("max-age=300");
  });
});

describe("requests another site's page makes the browser send with the Access cookie", () => {
  const APP = "https://app.example.com";
  const EVIL = "https://evil.example";
  const SELF = "https://edge.test";

  function postEdge() {
    return harness(
      basePolicy({
        issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
        routes: [
          {
            name: "spa-api",
            methods: ["GET", "POST"],
            path: "/api/**",
            auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
            upstream: "echo",
            cors: { allow_origins: [APP], allow_credentials: true },
          },
          {
            name: "read-only-cors",
            methods: ["POST"],
            path: "/reports/**",
            auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
            upstream: "echo",
            cors: { allow_origins: [APP] },
          },
          {
            name: "granted-get-only",
            methods: ["GET", "POST"],
            path: "/profile/**",
            auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
            upstream: "echo",
            cors: { allow_origins: [APP], allow_credentials: true, allow_methods: ["GET"] },
          },
          {
            name: "internal",
            methods: ["GET", "POST", "DELETE"],
            path: "/internal/**",
            auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
            upstream: "echo",
          },
        ],
      }),
    );
  }

  /** The Access cookie, and the header Cloudflare Access adds from it, with what the browser says of the page. */
  async function send(path: string, method: string, from: Record<string, string>) {
    const edge = postEdge();
    const m = marker();
    const token = await assertion();
    const response = await edge.fetch(path, {
      method,
      ...(method === "GET" || method === "HEAD" ? {} : { body: "to=attacker" }),
      headers: { "x-test-marker": m, cookie: `CF_Authorization=${token}`, "cf-access-jwt-assertion": token, ...from },
    });
    return { response, seen: await originSaw(m), record: edge.audit.at(-1) };
  }

  it.each([
    [
      "a cross-site form post",
      "/api/transfer",
      "POST",
      { origin: EVIL, "sec-fetch-site": "cross-site" },
      "cross_site_origin",
    ],
    [
      "a cross-site DELETE",
      "/internal/users/42",
      "DELETE",
      { origin: EVIL, "sec-fetch-site": "cross-site" },
      "cross_site_origin",
    ],
    // A sibling subdomain is the same site: SameSite cookies go along.
    [
      "a same-site page of another origin",
      "/internal/x",
      "POST",
      { origin: "https://user-content.edge.test", "sec-fetch-site": "same-site" },
      "cross_site_origin",
    ],
    [
      "a sandboxed page (Origin: null)",
      "/internal/x",
      "POST",
      { origin: "null", "sec-fetch-site": "cross-site" },
      "cross_site_origin",
    ],
    [
      "a cross-site request without Origin",
      "/internal/x",
      "POST",
      { "sec-fetch-site": "cross-site" },
      "cross_site_without_origin",
    ],
    [
      "an older browser's cross-origin post (Origin alone)",
      "/internal/x",
      "POST",
      { origin: EVIL },
      "cross_site_origin",
    ],
    // A page the route's CORS allows, but not to send credentials: its credentialed post is not its to make.
    [
      "a CORS page not allowed credentials",
      "/reports/run",
      "POST",
      { origin: APP, "sec-fetch-site": "cross-site" },
      "cross_site_origin",
    ],
    // A simple POST is sent without a preflight: allow_methods is kept here too.
    [
      "a CORS page granted GET alone, posting",
      "/profile/x",
      "POST",
      { origin: APP, "sec-fetch-site": "same-site" },
      "cross_site_method",
    ],
  ])(
    "%s is refused 403 cross_site_request before the assertion is checked, and never forwarded",
    async (_label, path, method, from, detail) => {
      const { response, seen, record } = await send(path, method, from);
      expect(response.status).toBe(403);
      expect(((await response.json()) as { reason: string }).reason).toBe("cross_site_request");
      expect(record).toMatchObject({ decision: "deny", reason: "cross_site_request", detail, token_hash: null });
      expect(seen).toHaveLength(0);
    },
  );

  it.each([
    ["the page's own post", "/internal/x", "POST", { origin: SELF, "sec-fetch-site": "same-origin" }],
    [
      "a same-origin post whose Origin the browser left out",
      "/internal/x",
      "POST",
      { "sec-fetch-site": "same-origin" },
    ],
    ["the CORS page allowed credentials", "/api/transfer", "POST", { origin: APP, "sec-fetch-site": "cross-site" }],
    ["the CORS page granted GET, reading", "/profile/x", "GET", { origin: APP, "sec-fetch-site": "same-site" }],
    ["a client that is no browser (neither header)", "/internal/x", "DELETE", {}],
    ["a cross-site link (GET, which must change nothing)", "/internal/x", "GET", { "sec-fetch-site": "cross-site" }],
  ])("%s goes through", async (_label, path, method, from) => {
    const { response, seen } = await send(path, method, from);
    expect(response.status).toBe(200);
    expect(seen[0]?.headers["x-user-email"]).toBe("user@example.com");
  });

  it("a Bearer token is never sent by a browser on its own: a cross-site post with one is not judged by its origin", async () => {
    const idp = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: ["api"] } },
        routes: [{ name: "api", methods: ["POST"], path: "/api/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const response = await edge.fetch("/api/x", {
      method: "POST",
      body: "{}",
      headers: {
        authorization: `Bearer ${await idp.sign({ aud: "api" })}`,
        origin: EVIL,
        "sec-fetch-site": "cross-site",
      },
    });
    expect(response.status).toBe(200);
  });
});
