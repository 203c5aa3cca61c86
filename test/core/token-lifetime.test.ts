// An issuer's `max_lifetime_s`: a token good for longer than it allows, counted from its `iat`
// (else its `nbf`, else now), is refused `token_invalid` (`lifetime_too_long`), on
// the request path as in the check itself; unset, a token may be good for any time.
import { beforeAll, describe, expect, it } from "vitest";
import type { ResolvedIssuer } from "../../src/core/policy";
import { checkRegisteredClaims } from "../../src/core/tokens/registered-claims";
import { getRoute, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { problemsOf } from "../support/policy-problems";
import { sendMarked } from "../support/sent";
import { fixedNow } from "./token-fixtures";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);
const SKEW = 60;
const HOUR = 3600;

describe("the check", () => {
  const issuer = { issuer: "https://idp.test", clockSkewS: SKEW, maxLifetimeS: HOUR } as ResolvedIssuer;
  const check = (claims: Record<string, number>, on = issuer) =>
    checkRegisteredClaims({}, { iss: on.issuer, ...claims }, on, NOW);
  const tooLong = { ok: false, reason: "token_invalid", detail: "lifetime_too_long" };

  it("counts from iat to exp: up to the bound and its skew, not beyond", () => {
    expect(check({ iat: S, exp: S + HOUR + SKEW })).toEqual({ ok: true, exp: S + HOUR + SKEW });
    expect(check({ iat: S, exp: S + HOUR + SKEW + 1 })).toEqual(tooLong);
  });

  it("counts from iat however long ago it was: a year-long token near its end is still refused", () => {
    expect(check({ iat: S - 365 * 86400, exp: S + 600 })).toEqual(tooLong);
  });

  it("counts from nbf where the token carries no iat: a year-long window is refused to its end", () => {
    expect(check({ nbf: S - 365 * 86400, exp: S + 600 })).toEqual(tooLong);
    expect(check({ nbf: S - 600, exp: S + HOUR - 600 })).toEqual({ ok: true, exp: S + HOUR - 600 });
  });

  it("counts from now where the token carries neither iat nor nbf: refused while it stays good for longer", () => {
    expect(check({ exp: S + HOUR + SKEW })).toEqual({ ok: true, exp: S + HOUR + SKEW });
    expect(check({ exp: S + HOUR + SKEW + 1 })).toEqual(tooLong);
  });

  it("bounds nothing where the issuer sets none", () => {
    const unbounded = { ...issuer, maxLifetimeS: 0 };
    expect(check({ iat: S, exp: S + 10 * 365 * 86400 }, unbounded)).toEqual({ ok: true, exp: S + 10 * 365 * 86400 });
  });

  it("comes after the checks a token fails whatever its lifetime: an expired one is expired", () => {
    expect(check({ iat: S - 2 * 86400, exp: S - 86400 })).toEqual({
      ok: false,
      reason: "token_expired",
      detail: "exp",
    });
  });
});

describe("the policy", () => {
  const withLifetime = (value: unknown, kind: "oidc" | "cloudflare_access" = "oidc") => ({
    version: 1,
    issuers: {
      idp:
        kind === "oidc"
          ? { kind, issuer: "https://idp.example.com", audiences: ["api"], max_lifetime_s: value }
          : { kind, team_domain: "acme.cloudflareaccess.com", max_lifetime_s: value },
    },
    upstreams: { api: { url: "https://origin.example.com" } },
    routes: [
      {
        name: "r",
        methods: ["GET"],
        path: "/x",
        auth: { issuers: ["idp"], ...(kind === "oidc" ? {} : { audiences: ["aud-tag"] }) },
        upstream: "api",
      },
    ],
  });

  it("takes a bound on OIDC and Access issuers alike", () => {
    expect(problemsOf(withLifetime(HOUR))).toEqual([]);
    expect(problemsOf(withLifetime(86400, "cloudflare_access"))).toEqual([]);
  });

  it.each([0, 59, 31622401, 1.5, "3600"])("refuses %j", (value) => {
    expect(problemsOf(withLifetime(value))).toEqual([expect.stringMatching(/^issuers\.idp\.max_lifetime_s: /)]);
  });
});

describe("on the request path", () => {
  let idp: TestIssuer;
  beforeAll(async () => {
    idp = await makeIssuer("ES256");
  });

  const edge = () => {
    const policy = withIdp(idp, [getRoute("api", "/v1/**", { issuers: ["idp"] })]);
    (policy.issuers!.idp as { max_lifetime_s?: number }).max_lifetime_s = HOUR;
    return harness(policy);
  };

  it("refuses a day-long token 401 token_invalid (lifetime_too_long), recorded, never forwarded; a short one goes on", async () => {
    const e = edge();
    const now = Math.floor(Date.now() / 1000);
    const dayLong = await idp.sign({ iat: now, exp: now + 86400 });
    const refused = await sendMarked(e, "/v1/orders", { headers: { authorization: `Bearer ${dayLong}` } });
    expect(refused.response.status).toBe(401);
    expect(refused.body?.reason).toBe("token_invalid");
    expect(refused.response.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(refused.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "lifetime_too_long" });
    expect(refused.seen).toEqual([]);

    const short = await idp.sign({ iat: now, exp: now + 600 });
    const allowed = await sendMarked(e, "/v1/orders", { headers: { authorization: `Bearer ${short}` } });
    expect(allowed.response.status).toBe(200);
    expect(allowed.got["x-user-sub"]).toBe("user-1");
  });

  it("refuses a token without iat that stays good for longer than the bound", async () => {
    const now = Math.floor(Date.now() / 1000);
    // An undefined member is left out of the token's JSON.
    const token = await idp.sign({ iat: undefined, exp: now + 2 * HOUR });
    const refused = await sendMarked(edge(), "/v1/orders", { headers: { authorization: `Bearer ${token}` } });
    expect(refused.record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "lifetime_too_long" });
    expect(refused.seen).toEqual([]);
  });
});
