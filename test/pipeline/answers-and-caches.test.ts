// How the edge's answers can be stored and replayed by caches. A shared cache in
// front of the edge (a TLS-intercepting corporate proxy, a CDN chained in front of the
// Worker's hostname) keys a stored answer by URL and by the request fields its `Vary` names,
// nothing else: an answer it may reuse reaches the next caller of that URL without the edge
// being asked, so the edge's refusal of that caller never happens. Each test runs the real
// pipeline, then asks a small RFC 9111 model of such a cache whether a second caller would be
// served the first caller's answer.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw, serviceEdge, unreachableOrigin } from "../support/harness";
import { AUDIENCE, accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";

const APP = "https://app.example.com";
const OTHER_PAGE = "https://other.example.com";

let idp: TestIssuer;
let team: TestIssuer;
beforeAll(async () => {
  [idp, team] = await Promise.all([makeIssuer("ES256"), makeIssuer("RS256")]);
});

// ---------------------------------------------------------------------------------------------
// A model of a shared cache (RFC 9111), just enough to say whether an answer stored for one
// request is handed, without asking the edge, to the next request for the same URL.

/** Cache-Control-style directives: lower-cased names, unquoted values; commas in quotes kept. */
function directives(field: string | null): Map<string, string | true> {
  const found = new Map<string, string | true>();
  for (const part of field?.match(/(?:[^,"]|"(?:[^"\\]|\\.)*"?)+/g) ?? []) {
    const directive = /^\s*([^=\s]+)\s*(?:=\s*(.*?))?\s*$/s.exec(part);
    if (!directive) continue;
    const name = (directive[1] as string).toLowerCase();
    if (!found.has(name)) found.set(name, directive[2] === undefined ? true : directive[2].replace(/^"(.*)"$/s, "$1"));
  }
  return found;
}

/** Statuses a cache may store without explicit freshness (RFC 9110 §15.1). */
const HEURISTICALLY_CACHEABLE = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

interface SharedCache {
  /**
   * RFC 9213 target list: a CDN uses the first of these fields with a value *instead of*
   * Cache-Control and Expires (§2.1). Empty for a plain RFC 9111 proxy.
   */
  targets: string[];
}

const PROXY: SharedCache = { targets: [] };
/** A CDN as RFC 9213 describes one (Cloudflare, Fastly and Akamai implement CDN-Cache-Control). */
const CDN: SharedCache = { targets: ["cdn-cache-control"] };
/** A surrogate (Varnish/Fastly/Akamai ESI convention): `Surrogate-Control` overrides Cache-Control. */
const SURROGATE: SharedCache = { targets: ["surrogate-control"] };

/**
 * Whether `cache`, having seen `response` to a GET carrying `first`, hands that stored answer
 * to a later GET for the same URL carrying `next`, without forwarding it (so without the edge
 * deciding on it).
 */
function servesStoredAnswer(cache: SharedCache, first: Headers, response: Response, next: Headers): boolean {
  const headers = response.headers;
  const targeted = cache.targets.map((name) => headers.get(name)).find((value) => value?.trim());
  const cc = directives(targeted ?? headers.get("cache-control"));
  // §3: never stored.
  if (cc.has("no-store") || cc.get("private") === true) return false;
  // §3.5: an answer to a request with Authorization serves no later request unless one of these says so.
  if (first.has("authorization") && !["public", "s-maxage", "must-revalidate"].some((d) => cc.has(d))) return false;
  // §5.2.2.4: stored, but never used without asking again.
  if (cc.get("no-cache") === true) return false;
  // §4.2.1: a shared cache's freshness lifetime, s-maxage first; §4.2.2 heuristics as
  // caches implement them (a tenth of the time since Last-Modified).
  let lifetime = 0;
  const seconds = (value: string | true | undefined) => (typeof value === "string" ? Number(value) : 0);
  if (cc.has("s-maxage")) lifetime = seconds(cc.get("s-maxage"));
  else if (cc.has("max-age")) lifetime = seconds(cc.get("max-age"));
  else if (!targeted && headers.has("expires"))
    lifetime = (Date.parse(headers.get("expires") ?? "") - Date.now()) / 1000;
  else if ((HEURISTICALLY_CACHEABLE.has(response.status) || cc.has("public")) && headers.has("last-modified")) {
    lifetime = (Date.now() - Date.parse(headers.get("last-modified") ?? "")) / 10_000;
  }
  if (!(lifetime > 0)) return false;
  // §4.1: every field Vary names must match; `*` never does.
  for (const name of (headers.get("vary") ?? "").split(",").map((n) => n.trim().toLowerCase())) {
    if (!name) continue;
    if (name === "*" || first.get(name) !== next.get(name)) return false;
  }
  return true;
}

describe("the shared-cache model", () => {
  // The tests below rest on this model: it must tell a reusable answer from one kept from
  // other callers, by each of the means a fix could use.
  it("keeps an answer from another caller for private, no-store, no-cache, Vary on the credential or a targeted no-store", () => {
    const alice = new Headers({ cookie: "CF_Authorization=a" });
    const bob = new Headers({ cookie: "CF_Authorization=b" });
    const answer = (fields: Record<string, string>) => new Response("x", { headers: fields });
    expect(servesStoredAnswer(PROXY, alice, answer({ "cache-control": "max-age=600" }), bob)).toBe(true);
    expect(servesStoredAnswer(PROXY, alice, answer({ "cache-control": "private, max-age=600" }), bob)).toBe(false);
    expect(servesStoredAnswer(PROXY, alice, answer({ "cache-control": "no-store" }), bob)).toBe(false);
    expect(servesStoredAnswer(PROXY, alice, answer({ "cache-control": "no-cache, max-age=600" }), bob)).toBe(false);
    expect(servesStoredAnswer(PROXY, alice, answer({ "cache-control": "max-age=600", vary: "Cookie" }), bob)).toBe(
      false,
    );
    expect(servesStoredAnswer(PROXY, alice, answer({ "cache-control": "max-age=600", vary: "Cookie" }), alice)).toBe(
      true,
    );
    const targeted = { "cache-control": "private", "cdn-cache-control": "max-age=600" };
    expect(servesStoredAnswer(CDN, alice, answer(targeted), bob)).toBe(true);
    expect(servesStoredAnswer(CDN, alice, answer({ ...targeted, "cdn-cache-control": "private" }), bob)).toBe(false);
    const bearer = new Headers({ authorization: "Bearer a" });
    expect(servesStoredAnswer(PROXY, bearer, answer({ "cache-control": "max-age=600" }), new Headers())).toBe(false);
    expect(servesStoredAnswer(PROXY, bearer, answer({ "cache-control": "public, max-age=600" }), new Headers())).toBe(
      true,
    );
    const varied = answer({ "cache-control": "public, max-age=600", vary: "Authorization" });
    expect(servesStoredAnswer(PROXY, bearer, varied, new Headers())).toBe(false);
  });
});

/** An `x-respond-with` value for the ECHO_SERVICE binding: the origin answers with these fields. */
const respondWith = (fields: [string, string][]) => JSON.stringify(fields);

// ---------------------------------------------------------------------------------------------

function policy(): PolicyDocument {
  return basePolicy({
    issuers: {
      idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
      access: { kind: "cloudflare_access", team_domain: team.url },
    },
    upstreams: { echo: basePolicy().upstreams!.echo!, svc: { service: "ECHO_SERVICE" } },
    routes: [
      { name: "api", methods: ["GET"], path: "/api/**", auth: { issuers: ["idp"] }, upstream: "svc" },
      {
        name: "admin",
        methods: ["GET"],
        path: "/admin/**",
        auth: { issuers: ["idp"], scopes: { all_of: ["admin"] } },
        upstream: "svc",
      },
      {
        name: "app",
        methods: ["GET"],
        path: "/app/**",
        auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
        upstream: "svc",
      },
      { name: "echo-api", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      {
        name: "pages",
        methods: ["GET"],
        path: "/pages/**",
        auth: "public",
        upstream: "svc",
        cors: { allow_origins: [APP] },
      },
      {
        name: "cors-api",
        methods: ["GET"],
        path: "/capi/**",
        auth: { issuers: ["idp"] },
        upstream: "svc",
        cors: { allow_origins: [APP], allow_credentials: true },
      },
    ],
  });
}

/** The credential a caller presents, in each transport the edge accepts. */
type Transport = "bearer" | "access-cookie" | "access-header";

async function credentialFor(transport: Transport, sub: string): Promise<Record<string, string>> {
  if (transport === "bearer") return { authorization: `Bearer ${await idp.sign({ sub })}` };
  const token = await accessAssertion(team, ACCESS_AUD_TAG, { sub, email: `${sub}@example.com` });
  return transport === "access-cookie" ? { cookie: `CF_Authorization=${token}` } : { "cf-access-jwt-assertion": token };
}

const pathFor = (transport: Transport) => (transport === "bearer" ? "/api/report" : "/app/report");

/**
 * Alice's allowed answer to `path` (the origin answering with `fields`), and what the edge
 * says to a caller with no credential at all for the same URL.
 */
async function aliceThenStranger(transport: Transport, fields: [string, string][]) {
  const edge = harness(policy());
  const alice = new Headers({ ...(await credentialFor(transport, "alice")), "x-respond-with": respondWith(fields) });
  const answer = await edge.fetch(pathFor(transport), { headers: alice });
  expect(answer.status).toBe(200);
  // The origin really answered Alice (it saw her identity, not her credential).
  expect((await answer.clone().json()) as { headers: Record<string, string> }).toMatchObject({
    headers: { "x-user-sub": "alice" },
  });
  const strangerHeaders = new Headers({ "x-respond-with": respondWith(fields) });
  const refused = await edge.fetch(pathFor(transport), { headers: strangerHeaders });
  return { edge, alice, answer, strangerHeaders, refused };
}

describe("an authenticated answer the origin marked as shareable", () => {
  // An allowed answer that the origin marked `public` (or `s-maxage`, or `must-revalidate`
  // with a lifetime): RFC 9111 §3.5 lets a shared cache reuse it even though Alice's request
  // carried Authorization, and §4.1 only checks the fields `Vary` names, so without a `Vary` on
  // the credential the next request for the URL, with another token or none, would be served
  // Alice's answer from the cache, though the edge refuses it (401 token_missing, asserted
  // below). For Access transports the request carried no Authorization at all.
  it.each([
    ["bearer", "public, max-age=600"],
    ["bearer", "s-maxage=600"],
    ["bearer", "max-age=600, must-revalidate"],
    ["access-cookie", "public, max-age=600"],
    ["access-cookie", "max-age=600, must-revalidate"],
    ["access-header", "s-maxage=600"],
  ] as const)("%s, origin says %s: no shared cache hands it to a caller the edge refuses", async (transport, cc) => {
    const { answer, alice, strangerHeaders, refused, edge } = await aliceThenStranger(transport, [
      ["cache-control", cc],
    ]);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { reason: string }).reason).toBe("token_missing");
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "token_missing" });
    const sent = { cacheControl: answer.headers.get("cache-control"), vary: answer.headers.get("vary") };
    expect(servesStoredAnswer(PROXY, alice, answer, strangerHeaders), JSON.stringify(sent)).toBe(false);
  });

  // The origin's `Set-Cookie` on such an answer would be stored with it and replayed to every
  // later caller (RFC 9111 §7.3: Set-Cookie does not inhibit caching): Bob's browser given
  // Alice's session cookie.
  it("an origin's Set-Cookie on a Bearer answer marked public is not replayed to another caller", async () => {
    const edge = harness(policy());
    const alice = new Headers({
      ...(await credentialFor("bearer", "alice")),
      "x-respond-with": respondWith([
        ["cache-control", "public, max-age=600"],
        ["set-cookie", "app_session=alice-secret; Path=/; Secure; HttpOnly"],
      ]),
    });
    const answer = await edge.fetch("/api/report", { headers: alice });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("set-cookie")).toContain("app_session=alice-secret");
    const bob = new Headers(await credentialFor("bearer", "bob"));
    const cc = directives(answer.headers.get("cache-control"));
    const replayed =
      servesStoredAnswer(PROXY, alice, answer, bob) &&
      !/\bset-cookie\b/i.test(String(cc.get("private") ?? "")) &&
      !/\bset-cookie\b/i.test(String(cc.get("no-cache") ?? ""));
    expect(replayed, `${answer.headers.get("cache-control")} / vary ${answer.headers.get("vary")}`).toBe(false);
  });
});

describe("an authenticated answer the origin did not mark as shareable", () => {
  it("Bearer: left as the origin sent it; RFC 9111 §3.5 keeps shared caches from reusing it", async () => {
    for (const fields of [
      [["cache-control", "max-age=600"]],
      // Heuristically cacheable (a 200 with Last-Modified and no Cache-Control).
      [["last-modified", new Date(Date.now() - 86_400_000).toUTCString()]],
      [["expires", new Date(Date.now() + 600_000).toUTCString()]],
    ] as [string, string][][]) {
      const { answer, alice, strangerHeaders, refused } = await aliceThenStranger("bearer", fields);
      expect(refused.status).toBe(401);
      // Passed on unchanged: the client's own Authorization rules the shared caches.
      for (const [name, value] of fields) expect(answer.headers.get(name)).toBe(value);
      expect(servesStoredAnswer(PROXY, alice, answer, strangerHeaders)).toBe(false);
      // Without the Authorization the model would store it: the test can tell the two apart.
      const noAuth = new Headers(alice);
      noAuth.delete("authorization");
      expect(servesStoredAnswer(PROXY, noAuth, answer, strangerHeaders)).toBe(true);
    }
  });

  it.each(["access-cookie", "access-header"] as const)(
    "%s: a lifetime, Expires or Last-Modified alone gets `private`, and the origin's Set-Cookie goes with it",
    async (transport) => {
      for (const fields of [
        [["cache-control", "max-age=600"]],
        [["last-modified", new Date(Date.now() - 86_400_000).toUTCString()]],
        [["expires", new Date(Date.now() + 600_000).toUTCString()]],
      ] as [string, string][][]) {
        const withCookie: [string, string][] = [...fields, ["set-cookie", "app_session=alice-secret; Path=/"]];
        const { answer, alice, strangerHeaders, refused } = await aliceThenStranger(transport, withCookie);
        expect(refused.status).toBe(401);
        expect(directives(answer.headers.get("cache-control")).get("private")).toBe(true);
        expect(answer.headers.get("set-cookie")).toBe("app_session=alice-secret; Path=/");
        expect(servesStoredAnswer(PROXY, alice, answer, strangerHeaders)).toBe(false);
      }
    },
  );
});

describe("targeted cache fields (RFC 9213) on an Access answer", () => {
  // The edge marks an Access answer `Cache-Control: private` because the Access cookie, unlike
  // Authorization, does not stop a shared cache from storing it. A CDN that honours RFC 9213
  // uses the origin's `CDN-Cache-Control` (or `Surrogate-Control`) *instead of* Cache-Control
  // (§2.1: it MUST ignore Cache-Control and Expires): the `private` would never be read there.
  // The origin's `CDN-Cache-Control: max-age=600` says no more about sharing across users
  // than a `Cache-Control: max-age=600`, which the edge marks private: it goes.
  it.each([
    ["cdn-cache-control", CDN],
    ["surrogate-control", SURROGATE],
  ] as const)("a cache reading %s: max-age=600 does not hand Alice's answer to Bob", async (field, cache) => {
    const edge = harness(policy());
    const alice = new Headers({
      ...(await credentialFor("access-cookie", "alice")),
      "x-respond-with": respondWith([[field, "max-age=600"]]),
    });
    const answer = await edge.fetch("/app/report", { headers: alice });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("cache-control")).toBe("private");
    // A plain proxy reads the `private`: the difference is the targeted field alone.
    const bob = new Headers(await credentialFor("access-cookie", "bob"));
    expect(servesStoredAnswer(PROXY, alice, answer, bob)).toBe(false);
    const sent = { [field]: answer.headers.get(field), vary: answer.headers.get("vary") };
    expect(servesStoredAnswer(cache, alice, answer, bob), JSON.stringify(sent)).toBe(false);
  });
});

describe("CORS answers and shared caches", () => {
  it("a public CORS route's shareable answer for one page is never handed to another page, nor to a request without Origin", async () => {
    const edge = harness(policy());
    const fields = respondWith([
      ["cache-control", "public, max-age=600"],
      ["access-control-allow-origin", "*"],
      ["vary", "Accept-Encoding"],
    ]);
    const fromApp = new Headers({ origin: APP, "x-respond-with": fields });
    const answer = await edge.fetch("/pages/doc", { headers: fromApp });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("access-control-allow-origin")).toBe(APP);
    // The origin's Vary is kept, the edge's Origin joins it.
    expect(answer.headers.get("vary")).toBe("Accept-Encoding, Origin");
    // Same page again: reused, as the origin asked (the model is not refusing everything).
    expect(servesStoredAnswer(PROXY, fromApp, answer, new Headers({ origin: APP }))).toBe(true);
    expect(servesStoredAnswer(PROXY, fromApp, answer, new Headers({ origin: OTHER_PAGE }))).toBe(false);
    expect(servesStoredAnswer(PROXY, fromApp, answer, new Headers())).toBe(false);

    // The other way round: the answer to a page the route does not allow (no ACAO) is not
    // handed to the page it does allow, which would then be unable to read it.
    const fromOther = new Headers({ origin: OTHER_PAGE, "x-respond-with": fields });
    const refusedRead = await edge.fetch("/pages/doc", { headers: fromOther });
    expect(refusedRead.status).toBe(200);
    expect(refusedRead.headers.get("access-control-allow-origin")).toBeNull();
    expect(servesStoredAnswer(PROXY, fromOther, refusedRead, new Headers({ origin: APP }))).toBe(false);
  });

  it("a credentialed CORS answer (Bearer, allow_credentials) varies by the caller's credential and by page", async () => {
    const edge = harness(policy());
    const alice = new Headers({
      ...(await credentialFor("bearer", "alice")),
      origin: APP,
      "x-respond-with": respondWith([["cache-control", "max-age=600"]]),
    });
    const answer = await edge.fetch("/capi/me", { headers: alice });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("access-control-allow-credentials")).toBe("true");
    expect(answer.headers.get("vary")).toBe("Authorization, Origin");
    const bob = new Headers({ ...(await credentialFor("bearer", "bob")), origin: APP });
    expect(servesStoredAnswer(PROXY, alice, answer, bob)).toBe(false);
  });
});

describe("the edge's own refusals", () => {
  /** Nothing in a refusal lets any cache, browser or CDN, store it. */
  function expectUncacheable(response: Response, label: string) {
    expect(response.headers.get("content-type"), label).toBe("application/problem+json");
    const cc = directives(response.headers.get("cache-control"));
    expect(cc.has("no-store"), `${label}: ${response.headers.get("cache-control")}`).toBe(true);
    for (const conflicting of ["public", "max-age", "s-maxage", "immutable", "stale-while-revalidate"]) {
      expect(cc.has(conflicting), `${label}: ${conflicting}`).toBe(false);
    }
    // No targeted field would overrule the no-store at a CDN, and nothing from the origin leaked in.
    for (const field of ["cdn-cache-control", "cloudflare-cdn-cache-control", "surrogate-control", "expires"]) {
      expect(response.headers.get(field), `${label}: ${field}`).toBeNull();
    }
    const anyone = new Headers();
    for (const cache of [PROXY, CDN, SURROGATE])
      expect(servesStoredAnswer(cache, anyone, response, anyone)).toBe(false);
  }

  it("every refusal, 404 route_not_found and 405 method_not_allowed included (heuristically cacheable by default), is no-store", async () => {
    const edge = harness(policy());
    const bearer = await credentialFor("bearer", "alice");
    const cases: [string, string, RequestInit, number, string][] = [
      ["no route", "/nowhere", {}, 404, "route_not_found"],
      ["no route, HEAD", "/nowhere", { method: "HEAD" }, 404, "route_not_found"],
      ["no route for the method", "/api/report", { method: "DELETE" }, 405, "method_not_allowed"],
      ["ambiguous path", "/api/a%2Fb", {}, 400, "bad_request"],
      ["no token", "/api/report", {}, 401, "token_missing"],
      ["bad token", "/api/report", { headers: { authorization: "Bearer abc.def.ghi" } }, 401, "token_invalid"],
      ["scope", "/admin/x", { headers: bearer }, 403, "insufficient_scope"],
      [
        "CORS route, refused",
        "/capi/me",
        { headers: { origin: APP, "x-respond-with": respondWith([["cache-control", "public, max-age=600"]]) } },
        401,
        "token_missing",
      ],
      [
        "preflight from a page not allowed",
        "/capi/me",
        { method: "OPTIONS", headers: { origin: OTHER_PAGE, "access-control-request-method": "GET" } },
        403,
        "cors_rejected",
      ],
    ];
    for (const [label, path, init, status, reason] of cases) {
      const response = await edge.fetch(path, init);
      expect(response.status, label).toBe(status);
      expectUncacheable(response, label);
      if (init.method !== "HEAD") expect(((await response.json()) as { reason: string }).reason, label).toBe(reason);
      expect(edge.audit.at(-1), label).toMatchObject({ decision: "deny", reason });
    }
  });

  it("429, 502, 504 and 500 are no-store too", async () => {
    const limited = harness(
      basePolicy({
        routes: [
          {
            name: "limited",
            methods: ["GET"],
            path: "/limited/**",
            auth: "public",
            upstream: "echo",
            inherit_default_limits: false,
            limits: [{ name: `once-${marker().slice(0, 8)}`, key: "route", limit: 1, window_s: 3600 }],
          },
        ],
      }),
    );
    expect((await limited.fetch("/limited/x")).status).toBe(200);
    const tooMany = await limited.fetch("/limited/x");
    expect(tooMany.status).toBe(429);
    expect(tooMany.headers.get("retry-after")).toMatch(/^\d+$/);
    expectUncacheable(tooMany, "429");
    expect(limited.audit.at(-1)).toMatchObject({ decision: "deny", reason: "rate_limited" });

    const down = harness(
      basePolicy({
        upstreams: { down: { url: unreachableOrigin, timeout_ms: 2000 } },
        routes: [{ name: "down", methods: ["GET"], path: "/down/**", auth: "public", upstream: "down" }],
      }),
    );
    const badGateway = await down.fetch("/down/x");
    expect(badGateway.status).toBe(502);
    expectUncacheable(badGateway, "502");
    expect(down.audit.at(-1)).toMatchObject({ reason: "origin_unavailable", detail: "origin_unreachable" });

    // An origin that never answers: the edge stops waiting after its budget (no time is asserted).
    const silent = serviceEdge({ fetch: () => new Promise<Response>(() => undefined) }, 100);
    const timedOut = await silent.fetch("/held/x");
    expect(timedOut.status).toBe(504);
    expectUncacheable(timedOut, "504");
    expect(silent.audit.at(-1)).toMatchObject({ reason: "origin_timeout", detail: "origin_timeout" });

    const broken = harness({ version: 7, routes: "not a list" });
    const misconfigured = await broken.fetch("/anything");
    expect(misconfigured.status).toBe(500);
    expectUncacheable(misconfigured, "500");
    expect(broken.audit.at(-1)).toMatchObject({ reason: "misconfigured", detail: "policy_invalid" });
  });
});

describe("caches the origin sits behind", () => {
  // The edge strips the credential, so a cache in front of the origin (Squid, Apache mod_cache
  // or Traffic Server as the origin's reverse proxy) sees requests without Authorization: RFC
  // 9111 §3.5 no longer keeps it from storing Alice's answer. What keeps it from handing that
  // answer to Bob is the request's `Cache-Control: no-cache` (§5.2.1.4: revalidate first); a
  // client's own directives (`max-stale`, `only-if-cached`) must not take it away (§5.2.1.2,
  // §5.2.1.7).
  it("the origin request of an authenticated request always says no-cache, whatever the client sent", async () => {
    const edge = harness(policy());
    const bob = await credentialFor("bearer", "bob");
    for (const clientSays of ["max-stale=86400", "only-if-cached", "max-age=600"]) {
      const m = marker();
      const response = await edge.fetch("/v1/me/export.csv", {
        headers: { ...bob, "cache-control": clientSays, "x-test-marker": m },
      });
      expect(response.status).toBe(200);
      const [seen] = await originSaw(m);
      expect(seen?.headers["x-user-sub"]).toBe("bob");
      expect(seen?.headers.authorization).toBeUndefined();
      const forwarded = directives(seen?.headers["cache-control"] ?? null);
      expect(forwarded.get("no-cache"), `client said ${clientSays}; origin got ${seen?.headers["cache-control"]}`).toBe(
        true,
      );
    }
  });
});
