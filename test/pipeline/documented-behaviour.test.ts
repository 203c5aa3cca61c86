// README and ops/README claims, by the section that makes them, each through the whole
// pipeline (workerd, real KV and Durable Objects, the loopback echo origin and issuer): the
// reason and detail of each answer, what reached the origin, and what was recorded.
import { exportJWK, generateKeyPair } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness, marker, originSaw, unreachableOrigin } from "../support/harness";
import {
  AUDIENCE,
  accessAssertion,
  makeIssuer,
  type TestIssuer,
  type TestKey,
  ACCESS_AUD_TAG,
} from "../support/issuers";
import { edgeWithInIsolateOrigin } from "../support/in-isolate-origin";
import { problemsOf } from "../support/policy-problems";
import { sendMarked } from "../support/sent";
import { heldOrigin } from "../support/waiting";

const SELF = "https://edge.test";
const EVIL = "https://evil.example";
const unique = () => crypto.randomUUID().slice(0, 8);

let idp: TestIssuer;
let team: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
  team = await makeIssuer("RS256");
});

type Edge = ReturnType<typeof harness>;

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
/** A request carrying only this Bearer token. */
const withToken = (token: string) => ({ headers: bearer(token) });

function oidcPolicy(routes: PolicyDocument["routes"], extra: Partial<PolicyDocument> = {}): PolicyDocument {
  return basePolicy({
    settings: { limiter_timeout_ms: 2000 },
    issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
    routes,
    ...extra,
  });
}

describe("How a request flows: the canonical path is judged before the route", () => {
  // README: "client ─▶ request id ─▶ canonical path ─▶ route ─▶ …"
  it("a bad path no route serves is 400 for its encoding, not 404", async () => {
    const edge = harness(basePolicy());
    const { response, body, seen, record } = await sendMarked(edge, "/nowhere/a%2Fb");
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "encoded_slash", route: null });
    expect(seen).toHaveLength(0);
  });
});

describe("Paths (Security model)", () => {
  // README: "a character a best-fit conversion to a Windows code page reads as `\` or `/`
  // (`¥`, `₩`, `∕`, `⁄`, `∖`)" — U+2216 SET MINUS, escaped as the URL parser sends it.
  it("refuses ∖ (U+2216), which a best-fit conversion reads as `\\`", async () => {
    const edge = harness(basePolicy());
    for (const path of ["/public/..%E2%88%96admin/x", "/public/..∖admin/x"]) {
      const { response, seen, record } = await sendMarked(edge, path);
      expect({ path, status: response.status }).toEqual({ path, status: 400 });
      expect(record).toMatchObject({ reason: "bad_request", detail: "ambiguous_segment", path: null });
      expect(seen).toHaveLength(0);
    }
  });

  // README: "Windows 8.3 short names (`ADMINI~1` for `administrator`) are not refused".
  it("does not refuse a Windows 8.3 short name: it is forwarded as sent", async () => {
    const edge = harness(basePolicy());
    const { response, seen, record } = await sendMarked(edge, "/public/ADMINI~1/x");
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", path: "/public/ADMINI~1/x" });
    expect(seen[0]?.raw_target).toBe("/public/ADMINI~1/x");
  });
});

describe("Routes: cors.allow_methods", () => {
  // README: "`allow_methods` … names only the route's own methods, in upper case, `HEAD` where it
  // takes `GET`".
  it("may name HEAD on a route that takes GET, not on one that does not", () => {
    const withCors = (methods: string[], allow: string[]) =>
      problemsOf(
        basePolicy({
          routes: [
            {
              name: "r",
              methods: methods as never,
              path: "/r/**",
              auth: "public",
              upstream: "echo",
              cors: { allow_origins: ["https://app.example.com"], allow_methods: allow as never },
            },
          ],
        }),
      );
    expect(withCors(["GET"], ["GET", "HEAD"])).toEqual([]);
    expect(withCors(["GET"], ["HEAD"])).toEqual([]);
    expect(withCors(["POST"], ["POST", "HEAD"])).toEqual([
      'routes[0].cors.allow_methods: "HEAD" is not one of the route\'s methods',
    ]);
  });
});

describe("Errors: refusals carry Cache-Control: no-store", () => {
  // README: "Every refusal is an RFC 9457 `application/problem+json` body … Refusals carry
  // `Cache-Control: no-store`, so no cache keeps one for the next client."
  async function expectStoredNowhere(edge: Edge, response: Response, status: number, reason: string) {
    expect(response.status).toBe(status);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason, status });
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const body = (await response.json()) as { reason: string; request_id: string };
    expect(body.reason).toBe(reason);
    expect(body.request_id).toBe(response.headers.get("x-request-id"));
  }

  it("502 origin_unavailable, 504 origin_timeout and 503 jwks_unavailable included", async () => {
    const unreachable = harness(basePolicy({ upstreams: { echo: { url: unreachableOrigin, timeout_ms: 2000 } } }));
    await expectStoredNowhere(unreachable, await unreachable.fetch("/public/x"), 502, "origin_unavailable");
    expect(unreachable.audit.at(-1)?.detail).toBe("origin_unreachable");

    const silent = { fetch: () => new Promise<Response>(() => {}) };
    const slow = harness(
      basePolicy({
        upstreams: { silent: { service: "SILENT", timeout_ms: 100 } },
        routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "silent" }],
      }),
      {},
      { SILENT: silent },
    );
    await expectStoredNowhere(slow, await slow.fetch("/public/x"), 504, "origin_timeout");
    expect(slow.audit.at(-1)?.detail).toBe("origin_timeout");

    const down = await makeIssuer("ES256");
    await down.setMode("down");
    try {
      const edge = harness(
        basePolicy({
          issuers: { idp: { kind: "oidc", issuer: down.url, audiences: [AUDIENCE] } },
          routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
        }),
      );
      const response = await edge.fetch("/v1/x", { headers: bearer(await down.sign()) });
      await expectStoredNowhere(edge, response, 503, "jwks_unavailable");
    } finally {
      await down.setMode("ok");
    }
  });
});

describe("Upstreams: the forwarded path", () => {
  // README: "The origin receives the canonical path appended to the upstream URL (as parsed,
  // trailing slashes dropped, so `https://origin.example.com//` cannot start the forwarded path
  // with `//` …) and the original query string".
  it("is the upstream URL's own path, trailing slashes dropped, then the canonical path and the query", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: `${echoOrigin}/base//`, timeout_ms: 2000 } } }));
    const { response, seen } = await sendMarked(edge, "/public/a/./b?x=1&y=%20");
    expect(response.status).toBe(200);
    expect(seen[0]?.raw_target).toBe("/base/public/a/b?x=1&y=%20");
    const bare = harness(basePolicy({ upstreams: { echo: { url: `${echoOrigin}//`, timeout_ms: 2000 } } }));
    expect((await sendMarked(bare, "/public/c")).seen[0]?.raw_target).toBe("/public/c");
  });
});

describe("Settings: max_header_bytes", () => {
  // README: "`max_header_bytes` | 32768 | larger header blocks are refused (400)".
  it("defaults to 32768: a header block of 32768 is served, one of 32769 is 400 headers_too_large", async () => {
    const { edge, reached } = edgeWithInIsolateOrigin();
    const request = (padding: number) =>
      new Request("https://edge.test/public/x", { headers: { "x-pad": "p".repeat(padding) } });
    // `name: value\r\n` per field, as the edge counts it.
    const blockOf = (padding: number) => {
      let bytes = 0;
      for (const [name, value] of request(padding).headers) bytes += name.length + value.length + 4;
      return bytes;
    };
    const padding = 1000 + (32768 - blockOf(1000));
    expect(blockOf(padding)).toBe(32768);
    const at = await edge.fetch(request(padding));
    expect(at.status).toBe(200);
    expect(reached).toHaveLength(1);
    expect(reached[0]?.get("x-pad")).toHaveLength(padding);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "public" });
    const over = await edge.fetch(request(padding + 1));
    expect(over.status).toBe(400);
    expect(((await over.json()) as { reason: string }).reason).toBe("bad_request");
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "bad_request", detail: "headers_too_large" });
    expect(reached).toHaveLength(1);
  });
});

describe("OPTIONS with Max-Forwards: 0", () => {
  // README: "`Max-Forwards: 0` is answered by the edge itself, once the request has passed
  // every check and limit".
  const policy = (limit: string) =>
    oidcPolicy([
      {
        name: "opts",
        methods: ["GET", "OPTIONS"],
        path: "/v1/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
        inherit_default_limits: false,
        limits: [{ name: limit, key: "user", limit: 1, window_s: 3600 }],
      },
    ]);

  it("is answered only after authentication: without a token it is 401 token_missing", async () => {
    const edge = harness(policy(`u-${unique()}`));
    const { response, body, seen, record } = await sendMarked(edge, "/v1/x", {
      method: "OPTIONS",
      headers: { "max-forwards": "0" },
    });
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_missing");
    expect(response.headers.get("allow")).toBeNull();
    expect(record).toMatchObject({ decision: "deny", reason: "token_missing" });
    expect(seen).toHaveLength(0);
  });

  it("is counted by the route's limits, and refused once they are spent", async () => {
    const edge = harness(policy(`u-${unique()}`));
    const token = await idp.sign({ sub: `u-${unique()}` });
    const first = await sendMarked(edge, "/v1/x", {
      method: "OPTIONS",
      headers: { ...bearer(token), "max-forwards": "0" },
    });
    expect(first.response.status).toBe(200);
    expect(first.response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    expect(first.response.headers.get("x-ratelimit-remaining")).toBe("0");
    expect(first.record).toMatchObject({ decision: "allow", detail: "max_forwards_zero" });
    // ops/README: blob15 holds `max_forwards_zero` on such an allowed request.
    expect(edge.dataPoints.at(-1)?.blobs?.[14]).toBe("max_forwards_zero");
    expect(first.seen).toHaveLength(0);
    const second = await sendMarked(edge, "/v1/x", {
      method: "OPTIONS",
      headers: { ...bearer(token), "max-forwards": "0" },
    });
    expect(second.response.status).toBe(429);
    expect(second.body?.reason).toBe("rate_limited");
    expect(second.response.headers.get("allow")).toBeNull();
    expect(second.seen).toHaveLength(0);
  });
});

describe("Cross-site requests with the Access cookie (Cloudflare Access)", () => {
  function accessEdge() {
    return harness(
      basePolicy({
        issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
        routes: [
          {
            name: "internal",
            methods: ["GET", "POST", "OPTIONS"],
            path: "/internal/**",
            auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
            upstream: "echo",
          },
        ],
      }),
    );
  }

  /** The Access cookie and the header Access adds from it, with what the browser says of the page. */
  async function fromBrowser(method: string, from: Record<string, string>) {
    const edge = accessEdge();
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    return sendMarked(edge, "/internal/x", {
      method,
      ...(method === "POST" ? { body: "to=attacker" } : {}),
      headers: { cookie: `CF_Authorization=${token}`, "cf-access-jwt-assertion": token, ...from },
    });
  }

  // README: "`Sec-Fetch-Site` (`same-origin`, or `none` for one the user started) lets it through".
  it("a request the user started (Sec-Fetch-Site: none) goes through", async () => {
    const { response, seen, record } = await fromBrowser("POST", { "sec-fetch-site": "none" });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", detail: null });
    expect(seen[0]?.headers["x-user-email"]).toBe("user@example.com");
  });

  // README: "otherwise its `Origin` must be the request's own origin or such a page".
  it("an older browser's post from the request's own origin (Origin alone) goes through", async () => {
    const { response, seen } = await fromBrowser("POST", { origin: SELF });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
  });

  // README: "(`Origin: null`, which sandboxed pages send, and older browsers without
  // `Sec-Fetch-Site` under a `no-referrer` policy, is refused too)".
  it("an older browser's post with Origin: null and no Sec-Fetch-Site is 403 cross_site_request", async () => {
    const { response, body, seen, record } = await fromBrowser("POST", { origin: "null" });
    expect(response.status).toBe(403);
    expect(body?.reason).toBe("cross_site_request");
    expect(record).toMatchObject({ reason: "cross_site_request", detail: "cross_site_origin", token_hash: null });
    expect(seen).toHaveLength(0);
  });

  // README: "`GET`, `HEAD` and `OPTIONS` must be safe at the origin: they are not judged."
  it.each([
    ["HEAD", {}],
    ["OPTIONS", {}],
  ])("a cross-site %s is not judged: it is forwarded", async (method) => {
    const { response, seen, record } = await fromBrowser(method, { origin: EVIL, "sec-fetch-site": "cross-site" });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", method });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.method).toBe(method);
  });
});

describe("A route taking OIDC tokens and Access assertions", () => {
  // README: "its `audiences` then apply to both kinds, so it lists the API's audience and the
  // AUD tag, and a token of either kind is accepted with either."
  it("accepts an OIDC token carrying the AUD tag, and an Access assertion carrying the API's audience", async () => {
    const edge = harness(
      basePolicy({
        issuers: {
          idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
          access: { kind: "cloudflare_access", team_domain: team.url },
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
    const oidc = await sendMarked(
      edge,
      "/mixed/x",
      withToken(await idp.sign({ sub: "oidc-user", aud: ACCESS_AUD_TAG })),
    );
    expect(oidc.response.status).toBe(200);
    expect(oidc.seen[0]?.headers["x-user-sub"]).toBe("oidc-user");
    expect(oidc.seen[0]?.headers["x-user-iss"]).toBe(idp.url);
    const access = await sendMarked(edge, "/mixed/x", {
      headers: { "cf-access-jwt-assertion": await accessAssertion(team, "api", { sub: "access-user" }) },
    });
    expect(access.response.status).toBe(200);
    expect(access.seen[0]?.headers["x-user-sub"]).toBe("access-user");
    expect(access.seen[0]?.headers["x-user-iss"]).toBe(team.url);
  });
});

describe("Issuers: EC keys on P-521", () => {
  // README: "Only public signature keys are kept (`RSA`, `EC` on P-256, P-384 or P-521 …)".
  it("an ES512 token signed with a published P-521 key verifies and reaches the origin", async () => {
    const issuer = await makeIssuer("ES256");
    const { privateKey, publicKey } = await generateKeyPair("ES512", { extractable: true });
    const kid = `p521-${unique()}`;
    const key = {
      kid,
      alg: "ES512",
      privateKey,
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "ES512", use: "sig" },
    } as unknown as TestKey;
    await issuer.publish([key]);
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], algorithms: ["ES512"] } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const { response, seen, record } = await sendMarked(
      edge,
      "/v1/x",
      withToken(await issuer.sign({ sub: "p521" }, { key })),
    );
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", user_sub: "p521" });
    expect(seen[0]?.headers["x-user-sub"]).toBe("p521");
  });
});

describe("Identity headers", () => {
  const edge = () =>
    harness(
      oidcPolicy([{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }]),
    );

  // README: "`x-user-sub` and `x-user-email` are single values that may hold a comma (an
  // X.500 subject, a quoted local part): read them whole".
  it("a subject and an email with a comma are accepted and forwarded whole", async () => {
    const token = await idp.sign({ sub: "CN=ada,O=acme", email: '"ada,lovelace"@example.com' });
    const { response, seen, record } = await sendMarked(edge(), "/v1/x", withToken(token));
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", user_sub: "CN=ada,O=acme" });
    expect(seen[0]?.headers["x-user-sub"]).toBe("CN=ada,O=acme");
    expect(seen[0]?.headers["x-user-email"]).toBe('"ada,lovelace"@example.com');
  });

  // README (How a token is checked, 5): "spaces in a subject … rejects the token"; "subject,
  // tenant and email must be strings".
  it.each<[string, Record<string, unknown>]>([
    ["a space in the subject", { sub: "ada lovelace" }],
    ["a numeric subject", { sub: 42 }],
  ])("%s rejects the token (token_invalid, subject_missing_or_unsafe)", async (_label, claims) => {
    const { response, body, seen, record } = await sendMarked(edge(), "/v1/x", withToken(await idp.sign(claims)));
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_invalid");
    expect(record).toMatchObject({ reason: "token_invalid", detail: "subject_missing_or_unsafe" });
    expect(seen).toHaveLength(0);
  });

  // README: "`x-tenant` (when the token has one) … `x-user-groups` (…, when present) and
  // `x-user-email` (when present …)".
  it("writes no x-tenant, x-user-groups or x-user-email for a token without them, whatever the client sent", async () => {
    const token = await idp.sign({ sub: "bare", tenant_id: undefined, scope: "api:read" });
    const { response, seen } = await sendMarked(edge(), "/v1/x", {
      headers: { ...bearer(token), "x-tenant": "evil", "x-user-groups": "admins", "x-user-email": "ceo@example.com" },
    });
    expect(response.status).toBe(200);
    const got = seen[0]!.headers;
    expect(got).toMatchObject({ "x-user-sub": "bare", "x-user-iss": idp.url, "x-user-scope": "api:read" });
    expect(got["x-tenant"]).toBeUndefined();
    expect(got["x-user-groups"]).toBeUndefined();
    expect(got["x-user-email"]).toBeUndefined();
  });
});

describe("Authorisation: claim conditions compare strictly by type", () => {
  // README: "Values compare strictly by type (`1` is not `"1"`, …)"; "for an array claim, any
  // element may satisfy it".
  it('a condition on 1 is not met by "1", and is met by 1 or an array holding 1', async () => {
    const edge = harness(
      oidcPolicy([
        {
          name: "tier",
          methods: ["GET"],
          path: "/v1/**",
          auth: { issuers: ["idp"], claims: [{ claim: "tier", equals: 1 }] },
          upstream: "echo",
        },
      ]),
    );
    const text = await sendMarked(edge, "/v1/x", withToken(await idp.sign({ tier: "1" })));
    expect(text.response.status).toBe(403);
    expect(text.body?.reason).toBe("forbidden");
    expect(text.record).toMatchObject({ reason: "forbidden", detail: "claim:tier" });
    expect(text.seen).toHaveLength(0);
    for (const tier of [1, [2, 1]]) {
      const { response, seen } = await sendMarked(edge, "/v1/x", withToken(await idp.sign({ tier })));
      expect({ tier, status: response.status }).toEqual({ tier, status: 200 });
      expect(seen).toHaveLength(1);
    }
  });
});

describe("Credentials stop at the edge; method override (Security model)", () => {
  // README: "Other query parameters go to the origin as sent: an API that takes keys in its
  // query string (`?api_key=`) should move them to a header." and "method-override headers are
  // stripped, and so is a `_method` parameter in the query … A `_method` field in a form body
  // is not read … and reaches the origin as sent".
  it("an api_key query parameter and a _method form field reach the origin as sent, a _method query parameter does not; the real method is authorised", async () => {
    const edge = harness(
      oidcPolicy([
        {
          name: "delete",
          methods: ["DELETE"],
          path: "/v1/items/**",
          auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
          upstream: "echo",
        },
        { name: "write", methods: ["POST"], path: "/v1/items/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      ]),
    );
    const token = await idp.sign({ sub: "writer" });
    const { response, seen, record } = await sendMarked(edge, "/v1/items/7?_method=DELETE&api_key=k3y", {
      method: "POST",
      body: "_method=DELETE",
      headers: { ...bearer(token), "content-type": "application/x-www-form-urlencoded" },
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "write", method: "POST" });
    expect(seen[0]).toMatchObject({ method: "POST", query: "api_key=k3y", body_bytes: 14 });
  });
});

describe("Audit log and metrics", () => {
  // ops/README: "`path` is `null` when … the request was refused before its path was read (an
  // invalid policy)".
  it("records a null path for a request refused because the policy is invalid", async () => {
    const edge = harness({ version: 1, routes: [] });
    const { response, record } = await sendMarked(edge, "/public/x");
    expect(response.status).toBe(500);
    expect(record).toMatchObject({ reason: "misconfigured", detail: "policy_invalid", path: null, method: "GET" });
  });

  // ops/README: "`user_sub` is a pseudonymous identifier and `token_hash` cannot be turned back
  // into the token. Neither appears in response headers."
  it("puts neither user_sub nor token_hash in any response header, allowed or refused", async () => {
    const edge = harness(
      oidcPolicy([
        {
          name: "scoped",
          methods: ["GET"],
          path: "/v1/scoped/**",
          auth: { issuers: ["idp"], scopes: { all_of: ["api:write"] } },
          upstream: "echo",
        },
        { name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      ]),
    );
    const sub = `sub-${unique()}`;
    const token = await idp.sign({ sub, tenant_id: `t-${unique()}` });
    for (const [path, status] of [
      ["/v1/x", 200],
      ["/v1/scoped/x", 403],
    ] as const) {
      const { response, record } = await sendMarked(edge, path, withToken(token));
      expect(response.status).toBe(status);
      expect(record?.user_sub).toBe(sub);
      expect(record?.token_hash).toMatch(/^[0-9a-f]{16}$/);
      for (const [name, value] of response.headers) {
        expect(value, name).not.toContain(sub);
        expect(value, name).not.toContain(record?.token_hash as string);
      }
    }
  });

  // ops/README: "`index1` … At most 96 bytes … a longer tenant is cut there … (the audit record
  // keeps the whole tenant)".
  it("cuts a long tenant to 96 bytes in the metrics index, and keeps it whole in the audit record", async () => {
    const edge = harness(
      oidcPolicy([{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }]),
    );
    const tenant = `t${"x".repeat(199)}`;
    const { response, seen, record } = await sendMarked(
      edge,
      "/v1/x",
      withToken(await idp.sign({ tenant_id: tenant })),
    );
    expect(response.status).toBe(200);
    expect(seen[0]?.headers["x-tenant"]).toBe(tenant);
    expect(record?.tenant_id).toBe(tenant);
    expect(edge.dataPoints.at(-1)?.indexes).toEqual([tenant.slice(0, 96)]);
  });

  // ops/README: "The IP is in the metrics data point only for invalid-token refusals (`blob12`):
  // `token_malformed`, `token_invalid`, `token_expired`, `token_not_yet_valid`, …".
  it("keeps the client IP of a token_not_yet_valid refusal", async () => {
    const edge = harness(
      oidcPolicy([{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }]),
    );
    const early = await idp.sign({ nbf: Math.floor(Date.now() / 1000) + 3600 });
    const { response, body, seen } = await sendMarked(edge, "/v1/x", {
      headers: { ...bearer(early), "cf-connecting-ip": "198.51.100.61" },
    });
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_not_yet_valid");
    expect(seen).toHaveLength(0);
    const point = edge.dataPoints.at(-1);
    expect(point?.blobs?.[1]).toBe("token_not_yet_valid");
    expect(point?.blobs?.[11]).toBe("198.51.100.61");
  });

  // ops/README: blob2 "empty on allow, but for `client_closed` on a request the origin had whole
  // before its client hung up (recorded `allow`)"; blob15 "`client_disconnected` on an allowed
  // `client_closed`".
  it("writes client_closed and client_disconnected in the row of an allowed request whose client hung up", async () => {
    const origin = heldOrigin(echoOrigin);
    const edge = harness(
      basePolicy({
        upstreams: { held: { service: "HELD_ORIGIN", timeout_ms: 5000 } },
        routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "held" }],
      }),
      {},
      { HELD_ORIGIN: origin.binding },
    );
    const m = marker();
    const client = new AbortController();
    const answered = edge.fetch(
      new Request("https://edge.test/public/slow", { signal: client.signal, headers: { "x-test-marker": m } }),
    );
    expect(await origin.settled.promise).toBe("answered");
    client.abort();
    origin.release.resolve();
    await answered;
    expect(await originSaw(m)).toHaveLength(1);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", reason: "client_closed", detail: "client_disconnected" });
    expect(edge.dataPoints).toHaveLength(1);
    const blobs = edge.dataPoints[0]?.blobs ?? [];
    expect([blobs[0], blobs[1], blobs[14]]).toEqual(["allow", "client_closed", "client_disconnected"]);
    expect(edge.dataPoints[0]?.doubles?.[0]).toBe(499);
  });
});
