// Cloudflare Access mode as Access issues its tokens: the cookies a browser
// holds when an application uses Access's Cookie Path Attribute, and an assertion's lifetime by
// the edge's own clock (Access writes `nbf` = `iat` = the moment it issues, and `exp` at the end
// of the session).
import { beforeAll, describe, expect, it } from "vitest";
import { basePolicy, harness } from "../support/harness";
import { accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";
import { sendMarked } from "../support/sent";

const ROOT_APP_TAG = "0b7c1f1e5a4a4c0e9d7a3b2f6e8d9c1a0b7c1f1e5a4a4c0e9d7a3b2f6e8d9c1a";

let team: TestIssuer;
beforeAll(async () => {
  team = await makeIssuer("RS256");
});

function accessEdge(now?: () => number) {
  return harness(
    basePolicy({
      issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
      routes: [
        {
          name: "admin",
          methods: ["GET"],
          path: "/admin/**",
          auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
          upstream: "echo",
        },
      ],
    }),
    now ? { authentication: { now } } : {},
  );
}

/** The part of a token only its signer could write: what must never reach the origin. */
const signatureOf = (token: string) => token.slice(token.lastIndexOf(".") + 1);

describe("behind Access with its Cookie Path Attribute: two CF_Authorization cookies and the header Access adds", () => {
  // With the attribute on, an application on `/` and another on `/admin` each set their own
  // CF_Authorization cookie, scoped by path, so a browser sends both to `/admin/…` (the more
  // specific path first, RFC 6265 §5.4). Access validates the request for the `/admin`
  // application and adds its assertion as Cf-Access-Jwt-Assertion: the header is the
  // credential, and the two cookies are no ambiguity that should refuse the request.
  it("the header's assertion decides (no multiple_credentials), and neither cookie nor the header reaches the origin", async () => {
    const admin = await accessAssertion(team, ACCESS_AUD_TAG, { sub: "admin-app-user", email: "ada@example.com" });
    const root = await accessAssertion(team, ROOT_APP_TAG, { sub: "root-app-user", email: "ada@example.com" });
    const r = await sendMarked(accessEdge(), "/admin/reports", {
      headers: {
        "cf-access-jwt-assertion": admin,
        cookie: `CF_Authorization=${admin}; theme=dark; CF_Authorization=${root}`,
      },
    });
    expect({ status: r.response.status, decision: r.record?.decision, sub: r.record?.user_sub }).toEqual({
      status: 200,
      decision: "allow",
      sub: "admin-app-user",
    });
    expect({ sub: r.got["x-user-sub"], email: r.got["x-user-email"], cookie: r.got.cookie }).toEqual({
      sub: "admin-app-user",
      email: "ada@example.com",
      cookie: "theme=dark",
    });
    expect(r.got["cf-access-jwt-assertion"]).toBeUndefined();
    const seen = JSON.stringify(r.seen[0]);
    for (const token of [admin, root]) expect(seen).not.toContain(signatureOf(token));
  });
});

describe("an Access assertion at the ends of its lifetime, by the edge's clock (clock_skew_s 60 by default)", () => {
  // A fixed clock for the edge, so the bounds are exact and no test leans on how long it ran.
  const NOW_S = Math.floor(Date.now() / 1000);
  const now = () => NOW_S * 1000;

  it("an assertion whose exp passed 59 s ago is within the skew: accepted, with its identity", async () => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG, { iat: NOW_S - 600, nbf: NOW_S - 600, exp: NOW_S - 59 });
    const r = await sendMarked(accessEdge(now), "/admin/x", { headers: { "cf-access-jwt-assertion": token } });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", route: "admin" });
    expect(r.seen.map((s) => s.path)).toEqual(["/admin/x"]);
    expect(r.got["x-user-email"]).toBe("user@example.com");
  });

  it.each([
    ["whose exp passed 60 s ago", { iat: NOW_S - 600, nbf: NOW_S - 600, exp: NOW_S - 60 }, "token_expired", "exp"],
    // Access writes nbf = iat = the moment it issues; one 61 s ahead of the edge is beyond the skew.
    ["whose nbf is 61 s ahead", { iat: NOW_S, nbf: NOW_S + 61, exp: NOW_S + 600 }, "token_not_yet_valid", "nbf"],
  ])("an assertion %s is refused 401 %s, never forwarded", async (_label, times, reason, detail) => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG, times);
    const r = await sendMarked(accessEdge(now), "/admin/x", { headers: { "cf-access-jwt-assertion": token } });
    expect({ status: r.response.status, reason: r.body?.reason, detail: r.record?.detail }).toEqual({
      status: 401,
      reason,
      detail,
    });
    expect(r.record).toMatchObject({ decision: "deny", reason, route: "admin" });
    expect(r.response.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(r.seen).toHaveLength(0);
  });
});
