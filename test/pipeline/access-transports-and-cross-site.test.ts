// Cloudflare Access: which transport the assertion is read from when several are sent, the
// cross-site judgement (also on routes that take Bearer tokens, and by Referer where a browser
// sends neither Origin nor Sec-Fetch-Site), AUD tags bound per route (from the verified-token
// cache too), service-token subjects, `private` on every answer status, and the cookies an
// Access route forwards around the cut assertion, byte for byte.
import { beforeAll, describe, expect, it } from "vitest";
import { basePolicy, harness } from "../support/harness";
import { accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";
import { sendMarked } from "../support/sent";

const OTHER_APP_TAG = "0b7c1f1e5a4a4c0e9d7a3b2f6e8d9c1a0b7c1f1e5a4a4c0e9d7a3b2f6e8d9c1a";
const EVIL = "https://evil.example";

/** A string as the Node echo origin shows it: the UTF-8 bytes on the wire, read as Latin-1. */
const onWire = (text: string) => String.fromCharCode(...new TextEncoder().encode(text));

let team: TestIssuer;
let idp: TestIssuer;
beforeAll(async () => {
  team = await makeIssuer("RS256");
  idp = await makeIssuer("ES256");
});

/**
 * Two Access applications on routes of their own, a route taking OIDC tokens and Access
 * assertions, and an Access route on `ORIGIN`, a service binding the test may supply.
 */
function edge(bindings: Record<string, unknown> = {}) {
  const access = (tag: string) => ({ issuers: ["access"], audiences: [tag] });
  return harness(
    basePolicy({
      issuers: {
        access: { kind: "cloudflare_access", team_domain: team.url },
        idp: { kind: "oidc", issuer: idp.url, audiences: ["api"] },
      },
      upstreams: { echo: basePolicy().upstreams!.echo!, svc: { service: "ORIGIN" } },
      routes: [
        { name: "app", methods: ["GET", "POST"], path: "/app/**", auth: access(ACCESS_AUD_TAG), upstream: "echo" },
        { name: "other-app", methods: ["GET"], path: "/other-app/**", auth: access(OTHER_APP_TAG), upstream: "echo" },
        {
          name: "mixed",
          methods: ["GET", "POST"],
          path: "/mixed/**",
          auth: { issuers: ["idp", "access"], audiences: ["api", ACCESS_AUD_TAG] },
          upstream: "echo",
        },
        { name: "svc", methods: ["GET"], path: "/svc/**", auth: access(ACCESS_AUD_TAG), upstream: "svc" },
      ],
    }),
    {},
    bindings,
  );
}

/** `token` with its signature altered: well formed, and checked only to fail on the signature. */
function forged(token: string): string {
  const dot = token.lastIndexOf(".");
  const signature = token.slice(dot + 1);
  return `${token.slice(0, dot)}.${signature.startsWith("A") ? "B" : "A"}${signature.slice(1)}`;
}

describe("which transport carries the Access assertion", () => {
  it("the header's assertion is the credential when the cookie holds another user's: only the header's identity, and neither assertion, reaches the origin", async () => {
    const header = await accessAssertion(team, ACCESS_AUD_TAG, { sub: "header-user", email: "header@example.com" });
    const cookie = await accessAssertion(team, ACCESS_AUD_TAG, { sub: "cookie-user", email: "cookie@example.com" });
    const r = await sendMarked(edge(), "/app/x", {
      headers: { "cf-access-jwt-assertion": header, cookie: `theme=dark; CF_Authorization=${cookie}; lang=en` },
    });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", user_sub: "header-user" });
    const h = r.seen[0]!.headers;
    expect({ sub: h["x-user-sub"], email: h["x-user-email"], cookie: h.cookie }).toEqual({
      sub: "header-user",
      email: "header@example.com",
      cookie: "theme=dark; lang=en",
    });
    expect(h["cf-access-jwt-assertion"]).toBeUndefined();
    const seen = JSON.stringify(r.seen[0]);
    for (const token of [header, cookie]) expect(seen).not.toContain(token.slice(token.lastIndexOf(".") + 1));
  });

  it("on an Access-only route a Bearer token next to the cookie is no credential: the assertion decides, and Authorization never reaches the origin", async () => {
    const bearer = await idp.sign({ sub: "bearer-user", aud: "api" });
    const r = await sendMarked(edge(), "/app/x", {
      headers: {
        authorization: `Bearer ${bearer}`,
        cookie: `CF_Authorization=${await accessAssertion(team, ACCESS_AUD_TAG)}`,
      },
    });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", issuer: team.url });
    expect(r.seen[0]!.headers["x-user-sub"]).toBe("7335d417-61da-459d-899c-0a01c76a2f94");
    expect(r.seen[0]!.headers.authorization).toBeUndefined();
    expect(JSON.stringify(r.seen[0])).not.toContain(bearer.slice(bearer.lastIndexOf(".") + 1));
  });

  it.each(["cf_access_jwt_assertion", "cf.access.jwt.assertion"])(
    "an assertion under %s is never read: 401 token_missing, nothing forwarded",
    async (name) => {
      const r = await sendMarked(edge(), "/app/x", {
        headers: { [name]: await accessAssertion(team, ACCESS_AUD_TAG) },
      });
      expect({ status: r.response.status, reason: r.body?.reason, detail: r.record?.detail }).toEqual({
        status: 401,
        reason: "token_missing",
        detail: "no_credentials",
      });
      expect(r.seen).toHaveLength(0);
    },
  );
});

describe("cross-site posts on a route taking OIDC tokens and Access assertions", () => {
  const crossSite = { origin: EVIL, "sec-fetch-site": "cross-site" };

  it("a Basic Authorization (which a browser also sends by itself) leaves the cookie as the credential, judged as such: 403 cross_site_request", async () => {
    const r = await sendMarked(edge(), "/mixed/transfer", {
      method: "POST",
      body: "to=attacker",
      headers: {
        authorization: "Basic dXNlcjpwYXNz",
        cookie: `CF_Authorization=${await accessAssertion(team, ACCESS_AUD_TAG)}`,
        ...crossSite,
      },
    });
    expect(r.response.status).toBe(403);
    expect(r.body?.reason).toBe("cross_site_request");
    expect(r.record).toMatchObject({ reason: "cross_site_request", detail: "cross_site_origin", token_hash: null });
    expect(r.seen).toHaveLength(0);
  });

  it("a forged Bearer token is the credential, checked and refused: the cookie is never a fallback", async () => {
    const r = await sendMarked(edge(), "/mixed/transfer", {
      method: "POST",
      body: "to=attacker",
      headers: {
        authorization: `Bearer ${forged(await idp.sign({ sub: "bearer-user", aud: "api" }))}`,
        cookie: `CF_Authorization=${await accessAssertion(team, ACCESS_AUD_TAG)}`,
        ...crossSite,
      },
    });
    expect(r.response.status).toBe(401);
    expect(r.body?.reason).toBe("token_invalid");
    // The cookie's assertion is good: a signature refusal says the Bearer token was the one checked.
    expect(r.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "signature" });
    expect(r.seen).toHaveLength(0);
  });
});

describe("an AUD tag binds an assertion to its application's routes", () => {
  it("an assertion accepted on its application's route is refused on another's, also once it is in the verified-token cache", async () => {
    const e = edge();
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const first = await sendMarked(e, "/app/x", { headers: { cookie: `CF_Authorization=${token}` } });
    expect(first.response.status).toBe(200);
    const transports: Record<string, string>[] = [
      { cookie: `CF_Authorization=${token}` },
      { "cf-access-jwt-assertion": token },
    ];
    for (const transport of transports) {
      const other = await sendMarked(e, "/other-app/x", { headers: transport });
      expect({ status: other.response.status, reason: other.body?.reason, detail: other.record?.detail }).toEqual({
        status: 401,
        reason: "audience_mismatch",
        detail: "aud",
      });
      expect(other.seen).toHaveLength(0);
    }
    // The refusal elsewhere takes nothing from the assertion where it belongs.
    const again = await sendMarked(e, "/app/x", { headers: { "cf-access-jwt-assertion": token } });
    expect(again.response.status).toBe(200);
    expect(again.seen[0]!.headers["x-user-email"]).toBe("user@example.com");
  });

  it("the other application's assertion is refused on this one's route", async () => {
    const e = edge();
    const theirs = await accessAssertion(team, OTHER_APP_TAG);
    expect(
      (await sendMarked(e, "/other-app/x", { headers: { "cf-access-jwt-assertion": theirs } })).response.status,
    ).toBe(200);
    const r = await sendMarked(e, "/app/x", { headers: { cookie: `CF_Authorization=${theirs}` } });
    expect({ status: r.response.status, reason: r.body?.reason, detail: r.record?.detail }).toEqual({
      status: 401,
      reason: "audience_mismatch",
      detail: "aud",
    });
    expect(r.seen).toHaveLength(0);
  });
});

describe("service-token assertions", () => {
  it("without a sub claim at all, common_name is the subject", async () => {
    const r = await sendMarked(edge(), "/app/x", {
      headers: {
        "cf-access-jwt-assertion": await accessAssertion(team, ACCESS_AUD_TAG, {
          sub: undefined,
          email: undefined,
          common_name: "88bf3b6d86161464f6509f7219099e57.access",
        }),
      },
    });
    expect(r.response.status).toBe(200);
    expect(r.seen[0]!.headers["x-user-sub"]).toBe("88bf3b6d86161464f6509f7219099e57.access");
    expect(r.seen[0]!.headers["x-user-email"]).toBeUndefined();
  });

  it("a user's assertion that also carries common_name keeps its own sub", async () => {
    const r = await sendMarked(edge(), "/app/x", {
      headers: {
        "cf-access-jwt-assertion": await accessAssertion(team, ACCESS_AUD_TAG, { common_name: "ci-bot.access" }),
      },
    });
    expect(r.response.status).toBe(200);
    expect(r.seen[0]!.headers["x-user-sub"]).toBe("7335d417-61da-459d-899c-0a01c76a2f94");
    expect(r.seen[0]!.headers["x-user-email"]).toBe("user@example.com");
  });

  it.each([
    [
      "a common_name with a space",
      { sub: "", email: undefined, common_name: "ci bot.access" },
      "subject_missing_or_unsafe",
    ],
    ["neither sub nor common_name", { sub: "", email: undefined }, "subject_missing_or_unsafe"],
    [
      "a global session token (type org)",
      { sub: "", email: undefined, common_name: "ci-bot.access", type: "org" },
      "access_type_not_app",
    ],
  ])("%s is refused 401 token_invalid, never forwarded", async (_label, claims, detail) => {
    const r = await sendMarked(edge(), "/app/x", {
      headers: { "cf-access-jwt-assertion": await accessAssertion(team, ACCESS_AUD_TAG, claims) },
    });
    expect({ status: r.response.status, reason: r.body?.reason, detail: r.record?.detail }).toEqual({
      status: 401,
      reason: "token_invalid",
      detail,
    });
    expect(r.seen).toHaveLength(0);
  });
});

describe("an Access answer is kept from shared caches whatever its status", () => {
  it.each([
    [302, "max-age=60"],
    [304, "max-age=60"],
    [404, "max-age=60"],
    [500, undefined],
  ])("a %i from the origin (Cache-Control %s) is marked private", async (status, cacheControl) => {
    // An origin answering with this status and these headers.
    const origin = {
      fetch: async () =>
        new Response(status === 304 ? null : "answer", {
          status,
          headers: [
            ["location", "/app/next"],
            ["etag", '"v1"'],
            ...(cacheControl ? [["cache-control", cacheControl] as [string, string]] : []),
          ],
        }),
    };
    const e = edge({ ORIGIN: origin });
    const response = await e.fetch("/svc/report", {
      headers: { cookie: `CF_Authorization=${await accessAssertion(team, ACCESS_AUD_TAG)}` },
    });
    await response.arrayBuffer();
    expect(response.status).toBe(status);
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", route: "svc" });
    expect(response.headers.get("cache-control")).toBe(cacheControl ? `private, ${cacheControl}` : "private");
  });
});

describe("the cookies an Access route forwards around the cut assertion", () => {
  it.each([
    ["a=1;\tCF_Authorization=T;\tb=2", "a=1;\tb=2"],
    ["a=1;CF_Authorization=T;b=2", "a=1;b=2"],
    ["a=1 ;  CF_Authorization=T ;  b=2", "a=1 ;  b=2"],
    ['CF_Authorization=T;a=1;b="x y"', 'a=1;b="x y"'],
    ["a=1; b=2;CF_Authorization=T", "a=1; b=2"],
    ["a=%41; b=%3B; CF_Authorization=T; c=\u00e9", "a=%41; b=%3B; c=\u00e9"],
    // Only spaces and tabs are trimmed, as browsers trim: a no-break or ideographic space is
    // part of the cookie as sent (String#trim took them).
    ["note=x\u00a0; CF_Authorization=T", "note=x\u00a0"],
    ["a=1; CF_Authorization=T; note=\u540d\u3000", "a=1; note=\u540d\u3000"],
    ["CF_Authorization=T; \u3000x=1", "\u3000x=1"],
  ])("%j reaches the origin as %j", async (sent, kept) => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const r = await sendMarked(edge(), "/app/x", { headers: { cookie: sent.replace("T", token) } });
    expect(r.response.status).toBe(200);
    expect(r.seen[0]!.headers.cookie).toBe(onWire(kept));
  });
});

describe("a cookie whose name is CF_Authorization only after a Unicode space is trimmed", () => {
  it.each(["\ufeffCF_Authorization", "\u00a0CF_Authorization", "CF_Authorization\u3000"])(
    "%j is no assertion (401 token_missing), and is not forwarded",
    async (name) => {
      const token = await accessAssertion(team, ACCESS_AUD_TAG);
      const r = await sendMarked(edge(), "/app/x", { headers: { cookie: `${name}=${token}; a=1` } });
      expect(r.response.status).toBe(401);
      expect(r.record).toMatchObject({ reason: "token_missing", detail: "no_credentials" });
      expect(r.seen).toHaveLength(0);
    },
  );

  it("beside the real one, the real one is the assertion, and neither reaches the origin", async () => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const r = await sendMarked(edge(), "/app/x", {
      headers: { cookie: `\u00a0CF_Authorization=${token}; CF_Authorization=${token}; a=1` },
    });
    expect(r.response.status).toBe(200);
    expect(r.seen[0]!.headers.cookie).toBe("a=1");
  });
});

describe("a cookie-authenticated post from a browser that sends neither Origin nor Sec-Fetch-Site", () => {
  // Firefox before 70 sent no Origin on a form post; the page it came from is still in Referer.
  it("is refused when Referer names another site's page", async () => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const r = await sendMarked(edge(), "/app/x", {
      method: "POST",
      body: "a=1",
      headers: { cookie: `CF_Authorization=${token}`, referer: `${EVIL}/form.html` },
    });
    expect(r.response.status).toBe(403);
    expect(r.record).toMatchObject({ reason: "cross_site_request", detail: "cross_site_origin", token_hash: null });
    expect(r.seen).toHaveLength(0);
  });

  it.each([
    ["its own page in Referer", { referer: "https://edge.test/app/form" }],
    ["no Referer (a referrer policy withholds it, or no browser sent it)", {}],
  ])("passes with %s", async (_label, headers: Record<string, string>) => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const r = await sendMarked(edge(), "/app/x", {
      method: "POST",
      body: "a=1",
      headers: { cookie: `CF_Authorization=${token}`, ...headers },
    });
    expect(r.response.status).toBe(200);
    expect(r.seen).toHaveLength(1);
  });
});
