// The Access cookie is the edge's to read and Access's to set: an origin behind the edge can
// neither set, replace nor clear it, and the other cookies pass both ways as sent.
import { parse as parseCookies } from "hono/utils/cookie";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { withoutCredentialSetCookies } from "../../src/core/origin-response";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";

let team: TestIssuer;
beforeAll(async () => {
  team = await makeIssuer("RS256");
});

async function accessAssertion(): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return team.sign({
    aud: [ACCESS_AUD_TAG],
    email: "alice@example.com",
    sub: "alice",
    type: "app",
    iat: now,
    exp: now + 600,
  });
}

/** A public route and an Access route on the service binding (which answers with the headers
 * `x-respond-with` asks for), and an Access route on the HTTP echo origin. */
function edge() {
  const access = { issuers: ["access"], audiences: [ACCESS_AUD_TAG] };
  return harness(
    basePolicy({
      issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
      upstreams: { svc: { service: "ECHO_SERVICE" }, echo: { url: echoOrigin, timeout_ms: 2000 } },
      routes: [
        { name: "files", methods: ["GET"], path: "/files/**", auth: "public", upstream: "svc" },
        { name: "app", methods: ["GET"], path: "/app/**", auth: access, upstream: "svc" },
        { name: "echo-app", methods: ["GET"], path: "/echo-app/**", auth: access, upstream: "echo" },
      ],
    }),
  );
}

const respondWith = (pairs: [string, string][]) => ({ "x-respond-with": JSON.stringify(pairs) });

describe("Set-Cookie from the origin", () => {
  it.each([
    ["plants another assertion", "CF_Authorization=OTHER.ASSERTION.SIG; Path=/; Secure; HttpOnly; SameSite=None"],
    ["adds a second one on a narrower path", "CF_Authorization=OTHER.ASSERTION.SIG; Path=/app; Secure"],
    ["clears it", "CF_Authorization=; Max-Age=0; Path=/"],
    ["spells it as a lenient parser reads it", "cf_authorization=x; Path=/"],
    ["escapes it", "CF%5FAuthorization=x"],
    ["sends it as a nameless cookie", "CF_Authorization; Path=/"],
    ["pads the name", " CF_Authorization =x"],
    // A pair with an empty name goes back as its value alone: `CF_Authorization=x`.
    ["hides it behind an empty name", "=CF_Authorization=x; Path=/"],
    ["hides it behind empty names and whitespace", " = = CF_Authorization=x"],
    ["hides the bare name behind an empty name", "=CF_Authorization; Path=/"],
    // Sent back, the request side cuts it at `,x=` into an empty CF_Authorization and `x=1`.
    ["puts it before a comma and another name", "CF_Authorization,x=1; Path=/; Max-Age=31536000"],
    ["puts it behind an empty name before a comma", "=CF_Authorization,x=1; Path=/"],
    // Sent back, these are refused as credential_cookie_in_value: every request locked out.
    ["hides it in another cookie's value after '='", "pref=CF_Authorization=1; Path=/; Max-Age=31536000"],
    ["hides it in another cookie's value after a space", 'pref="a CF_Authorization=1"; Path=/'],
  ])("a line that %s is dropped; the others are kept in order", async (_what, line) => {
    const response = await edge().fetch("/files/report.html", {
      headers: respondWith([
        ["set-cookie", "theme=dark; Path=/"],
        ["set-cookie", line],
        ["set-cookie", "lang=en, fr; Path=/"],
      ]),
    });
    expect(response.status).toBe(200);
    expect(response.headers.getSetCookie()).toEqual(["theme=dark; Path=/", "lang=en, fr; Path=/"]);
  });

  it("is dropped from an Access route's answer too, which keeps the request's own assertion working", async () => {
    const e = edge();
    const cookie = `CF_Authorization=${await accessAssertion()}`;
    const response = await e.fetch("/app/home", {
      headers: { cookie, ...respondWith([["set-cookie", "CF_Authorization=OTHER.ASSERTION.SIG; Path=/app"]]) },
    });
    expect(response.status).toBe(200);
    expect(response.headers.getSetCookie()).toEqual([]);
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", user_sub: "alice" });
  });

  it("past 2,000 `=` in their cookie-pairs, lines are dropped unread: an origin cannot make the edge decode without bound", async () => {
    const unescapes = vi.spyOn(globalThis, "unescape");
    try {
      const response = await edge().fetch("/files/x", {
        headers: respondWith([
          ["set-cookie", "a=1; Path=/"],
          // Each `=` followed by an escape is a name read leniently, as on the request side.
          ["set-cookie", `b=${"=%41".repeat(2100)}; Path=/`],
          ["set-cookie", "c=3; Path=/"],
        ]),
      });
      expect(response.status).toBe(200);
      expect(response.headers.getSetCookie()).toEqual(["a=1; Path=/"]);
      expect(unescapes.mock.calls.length).toBeLessThanOrEqual(10);
    } finally {
      unescapes.mockRestore();
    }
  });

  it("counts a line without `=` too, as the request side counts a cookie without `=`", () => {
    const unescapes = vi.spyOn(globalThis, "unescape");
    try {
      const headers = new Headers();
      for (let i = 0; i < 2500; i++) headers.append("set-cookie", "%41%42; Path=/");
      withoutCredentialSetCookies(headers);
      // 2,000 kept (each one name to read), the rest dropped unread.
      expect(headers.getSetCookie()).toHaveLength(2000);
      expect(unescapes.mock.calls.length).toBeLessThanOrEqual(2 * 2000);
    } finally {
      unescapes.mockRestore();
    }
  });

  it("a cookie whose name only contains the Access cookie's is the origin's own", async () => {
    const response = await edge().fetch("/files/x", {
      headers: respondWith([["set-cookie", "my_CF_Authorization=1"]]),
    });
    expect(response.headers.getSetCookie()).toEqual(["my_CF_Authorization=1"]);
  });
});

describe("the Cookie header an Access route forwards", () => {
  it.each([
    ["x=1; =CF_Authorization=", "x=1"],
    ["=CF_Authorization=", "; x=1"],
    ["x=1; ==CF_Authorization=", ""],
    ["x=1; = CF_Authorization=", ""],
  ])("never carries an assertion behind an empty name: %s…%s", async (before, after) => {
    const other = await accessAssertion();
    const m = marker();
    const response = await edge().fetch("/echo-app/x", {
      headers: {
        "x-test-marker": m,
        "cf-access-jwt-assertion": await accessAssertion(),
        cookie: `${before}${other}${after}`,
      },
    });
    expect(response.status).toBe(200);
    expect((await originSaw(m))[0]?.headers.cookie).toBe("x=1");
  });

  it.each([
    // A strict parser (Hono's keeps the first of two names) must read what the browser sent.
    ["note=x,session=attacker; session=real", "real"],
    ["filter=a,b=c; theme=dark", undefined],
  ])("keeps %s as sent once the assertion is cut out", async (others, session) => {
    const m = marker();
    const response = await edge().fetch("/echo-app/list", {
      headers: { "x-test-marker": m, cookie: `${others}; CF_Authorization=${await accessAssertion()}` },
    });
    expect(response.status).toBe(200);
    const seen = (await originSaw(m))[0]?.headers.cookie;
    expect(seen).toBe(others);
    expect(parseCookies(seen ?? "").session).toBe(session);
  });
});
