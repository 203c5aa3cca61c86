// An Access issuer's `max_lifetime_s` on the request path: Access writes `nbf` = `iat` = the
// moment it issues an application token and `exp` at the end of the application's session, so
// an application whose session is longer than the bound has every assertion refused, and one
// within it goes on; a cached assertion answers only for what it was checked for.
import { beforeAll, describe, expect, it } from "vitest";
import { basePolicy, harness } from "../support/harness";
import { accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";
import { sendMarked } from "../support/sent";

const DAY = 86400;

let team: TestIssuer;
beforeAll(async () => {
  team = await makeIssuer("RS256");
});

const accessEdge = (maxLifetimeS?: number) =>
  harness(
    basePolicy({
      issuers: {
        access: {
          kind: "cloudflare_access",
          team_domain: team.url,
          ...(maxLifetimeS === undefined ? {} : { max_lifetime_s: maxLifetimeS }),
        },
      },
      routes: [
        {
          name: "internal",
          methods: ["GET"],
          path: "/internal/**",
          auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
          upstream: "echo",
        },
      ],
    }),
  );

describe("an Access issuer bounding its assertions' lifetime to a day", () => {
  it("refuses a week-long session's assertion 401 token_invalid (lifetime_too_long), from the header or the cookie, never forwarded", async () => {
    const edge = accessEdge(DAY);
    const now = Math.floor(Date.now() / 1000);
    const week = await accessAssertion(team, ACCESS_AUD_TAG, { iat: now, nbf: now, exp: now + 7 * DAY });
    const transports: Record<string, string>[] = [
      { "cf-access-jwt-assertion": week },
      { cookie: `CF_Authorization=${week}` },
    ];
    for (const headers of transports) {
      const sent = await sendMarked(edge, "/internal/reports", { headers });
      // Checked afresh each time: a refused assertion is never kept.
      expect(sent.record?.key_source).not.toBe("token_cache");
      expect(sent.response.status).toBe(401);
      expect(sent.body?.reason).toBe("token_invalid");
      expect(sent.record).toMatchObject({
        decision: "deny",
        reason: "token_invalid",
        detail: "lifetime_too_long",
        route: "internal",
      });
      expect(sent.seen).toEqual([]);
    }
  });

  it("lets a day-long session's assertion go on with its identity, and again from the cache", async () => {
    const edge = accessEdge(DAY);
    const now = Math.floor(Date.now() / 1000);
    const day = await accessAssertion(team, ACCESS_AUD_TAG, { iat: now, nbf: now, exp: now + DAY });
    for (const cached of [false, true]) {
      const sent = await sendMarked(edge, "/internal/reports", { headers: { "cf-access-jwt-assertion": day } });
      expect(sent.response.status).toBe(200);
      expect(sent.record).toMatchObject({ decision: "allow", route: "internal" });
      expect(sent.record?.key_source === "token_cache").toBe(cached);
      expect(sent.got["x-user-email"]).toBe("user@example.com");
      expect(sent.got["cf-access-jwt-assertion"]).toBeUndefined();
    }
  });

  it("without the bound, the week-long assertion goes on: the bound is the issuer's, not a default", async () => {
    const now = Math.floor(Date.now() / 1000);
    const week = await accessAssertion(team, ACCESS_AUD_TAG, { iat: now, nbf: now, exp: now + 7 * DAY });
    const sent = await sendMarked(accessEdge(), "/internal/reports", { headers: { "cf-access-jwt-assertion": week } });
    expect(sent.record).toMatchObject({ decision: "allow", route: "internal" });
    expect(sent.seen).toHaveLength(1);
  });
});
