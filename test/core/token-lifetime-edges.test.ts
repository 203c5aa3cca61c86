// An issuer's `max_lifetime_s` at its edges: where the lifetime check stands among the claim
// checks (a token that fails another check is refused for that), fractional and future `iat`,
// the verified-token cache (a token refused for its lifetime is never kept, and one counted
// from now is checked afresh when the clock steps back), and the compiled policy the deployed
// Worker revives carrying the bound.
import { beforeAll, describe, expect, it } from "vitest";
import { compilePolicy, type ResolvedIssuer } from "../../src/core/policy";
import { policyArtifact, policyFromArtifact } from "../../src/core/policy-artifact";
import { checkRegisteredClaims } from "../../src/core/tokens/registered-claims";
import { TokenVerifier } from "../../src/core/tokens/verify";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { fixedNow, verifierFor } from "./token-fixtures";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);
const SKEW = 60;
const HOUR = 3600;
const YEAR = 365 * 86400;

describe("the lifetime check among the claim checks", () => {
  const issuer = { issuer: "https://idp.test", clockSkewS: SKEW, maxLifetimeS: HOUR } as ResolvedIssuer;
  const check = (claims: Record<string, unknown>) =>
    checkRegisteredClaims({}, { iss: issuer.issuer, ...claims }, issuer, NOW);

  it("a year-long token whose iat is no number is refused for its iat (claim_iat_invalid), as without a bound", () => {
    for (const iat of ["1700000000", null, true, [S]]) {
      expect(check({ iat, exp: S + YEAR }), JSON.stringify(iat)).toEqual({
        ok: false,
        reason: "token_invalid",
        detail: "claim_iat_invalid",
      });
    }
  });

  it("a year-long token issued beyond the skew in the future is refused as such (iat_in_future)", () => {
    expect(check({ iat: S + SKEW + 1, exp: S + YEAR })).toEqual({
      ok: false,
      reason: "token_invalid",
      detail: "iat_in_future",
    });
  });

  it("a year-long token whose nbf is not reached, or that expired, is refused for that", () => {
    expect(check({ iat: S, nbf: S + SKEW + 1, exp: S + YEAR })).toMatchObject({ reason: "token_not_yet_valid" });
    expect(check({ iat: S - YEAR - HOUR, exp: S - HOUR })).toMatchObject({ reason: "token_expired" });
  });

  it("a year-long sender-constrained token is refused for its lifetime, the check the README lists first", () => {
    expect(check({ iat: S, exp: S + YEAR, cnf: { jkt: "x" } })).toMatchObject({ detail: "lifetime_too_long" });
    expect(check({ iat: S, exp: S + HOUR, cnf: { jkt: "x" } })).toMatchObject({ detail: "sender_constrained" });
  });

  it("fractional iat and exp are compared as they are: half a second past the bound and its skew is past it", () => {
    expect(check({ iat: S - 0.25, exp: S - 0.25 + HOUR + SKEW })).toEqual({
      ok: true,
      exp: S - 0.25 + HOUR + SKEW,
    });
    expect(check({ iat: S - 0.5, exp: S + HOUR + SKEW })).toMatchObject({ detail: "lifetime_too_long" });
  });

  it("an iat within the skew in the future is where the lifetime is counted from", () => {
    // Issued by a clock a minute ahead: good for the bound and its skew from then on.
    expect(check({ iat: S + SKEW, exp: S + SKEW + HOUR + SKEW })).toMatchObject({ ok: true });
    expect(check({ iat: S + SKEW, exp: S + SKEW + HOUR + SKEW + 1 })).toMatchObject({ detail: "lifetime_too_long" });
  });

  it("an iat of 0 (the epoch) counts from 1970, not from now", () => {
    expect(check({ iat: 0, exp: S + 600 })).toMatchObject({ detail: "lifetime_too_long" });
  });

  it("an exp JSON reads as Infinity is refused, with or without iat", () => {
    expect(check({ iat: S, exp: Number.POSITIVE_INFINITY })).toMatchObject({ detail: "lifetime_too_long" });
    expect(check({ exp: Number.POSITIVE_INFINITY })).toMatchObject({ detail: "lifetime_too_long" });
  });
});

describe("the verified-token cache under a lifetime bound", () => {
  let idp: TestIssuer;
  beforeAll(async () => {
    idp = await makeIssuer();
  });

  it("a token refused for its lifetime is never kept: presented again it is checked afresh and refused again", async () => {
    let now = Date.now();
    const { verifier, verify } = verifierFor({
      issuers: { idp: { issuer: idp, max_lifetime_s: HOUR } },
      deps: { now: () => now },
    });
    const s = Math.floor(now / 1000);
    const token = await idp.sign({ iat: s, exp: s + 86400 });
    for (let i = 0; i < 3; i++) {
      const result = await verify(token);
      expect(result).toMatchObject({ ok: false, reason: "token_invalid", detail: "lifetime_too_long" });
      expect(result).not.toMatchObject({ keySource: "token_cache" });
      now += 1000;
    }
    expect(verifier.tokenCache.size).toBe(0);
  });

  it("a token without iat taken once it is good for no longer than the bound is checked afresh when the clock steps back, and refused", async () => {
    let now = Date.now();
    const { verify } = verifierFor({
      issuers: { idp: { issuer: idp, max_lifetime_s: HOUR } },
      deps: { now: () => now },
    });
    const s = Math.floor(now / 1000);
    const token = await idp.sign({ iat: undefined, exp: s + HOUR + SKEW });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    now += 1000;
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    // Ten minutes back: from then, the token is good for longer than the bound and its skew.
    now -= 600_000;
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_invalid", detail: "lifetime_too_long" });
  });

  it("the same token is taken by a verifier of a policy without the bound, and refused by one with it: nothing is shared", async () => {
    const s = Math.floor(Date.now() / 1000);
    const token = await idp.sign({ iat: s, exp: s + 86400 });
    const unbounded = verifierFor({ issuers: { idp: { issuer: idp } } });
    expect(await unbounded.verify(token)).toMatchObject({ ok: true });
    const bounded = verifierFor({ issuers: { idp: { issuer: idp, max_lifetime_s: HOUR } } });
    expect(await bounded.verify(token)).toMatchObject({ ok: false, detail: "lifetime_too_long" });
  });
});

describe("the compiled policy the deployed Worker revives", () => {
  it("carries the bound, and a verifier over the revived policy refuses a token past it", async () => {
    const idp = await makeIssuer();
    const compiled = compilePolicy({
      version: 1,
      issuers: {
        idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE], max_lifetime_s: HOUR },
        access: { kind: "cloudflare_access", team_domain: "acme.cloudflareaccess.com", max_lifetime_s: 86400 },
      },
      upstreams: { o: { url: "https://origin.test" } },
      routes: [
        { name: "r", methods: ["GET"], path: "/**", auth: { issuers: ["idp"] }, upstream: "o" },
        {
          name: "a",
          methods: ["GET"],
          path: "/access/**",
          auth: { issuers: ["access"], audiences: ["aud-tag"] },
          upstream: "o",
        },
      ],
    });
    const revived = policyFromArtifact(JSON.parse(JSON.stringify(policyArtifact(compiled))));
    expect(revived.issuers.get("idp")?.maxLifetimeS).toBe(HOUR);
    expect(revived.issuers.get("access")?.maxLifetimeS).toBe(86400);
    expect(revived).toEqual(compiled);
    const verifier = new TokenVerifier(revived, { fetch: (input, init) => fetch(input, init), now: Date.now });
    const s = Math.floor(Date.now() / 1000);
    const result = await verifier.verify(await idp.sign({ iat: s, exp: s + 2 * HOUR }), ["idp"], undefined, () => {});
    expect(result).toMatchObject({ ok: false, reason: "token_invalid", detail: "lifetime_too_long" });
  });
});
