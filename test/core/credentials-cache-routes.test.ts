// A token served from the verified-token cache is held to the route it is presented on, as a
// fresh one is: issuer and audience per route, and expiry (with the issuer's skew) per token.
import { describe, expect, it } from "vitest";
import { makeIssuer } from "../support/issuers";
import { verifierFor } from "./token-fixtures";

const T0 = 1_800_000_000_000;
const S = T0 / 1000;

describe("a cached token on another route", () => {
  it("is refused where the route takes another audience or another issuer, and still accepted where it was", async () => {
    const [a, b] = [await makeIssuer(), await makeIssuer()];
    const { verifier } = verifierFor({ issuers: { a: { issuer: a }, b: { issuer: b } } });
    const token = await a.sign({ aud: "route-a" });
    const check = (issuers: string[], audiences?: string[]) => verifier.verify(token, issuers, audiences, () => {});
    expect(await check(["a"], ["route-a"])).toMatchObject({ ok: true });
    expect(await check(["a"], ["route-a"])).toMatchObject({ ok: true, keySource: "token_cache" });
    // A stricter audience on the next route, the issuer's own audiences, another issuer only.
    expect(await check(["a"], ["route-b"])).toMatchObject({ ok: false, reason: "audience_mismatch" });
    expect(await check(["a"])).toMatchObject({ ok: false, reason: "audience_mismatch" });
    expect(await check(["b"], ["route-a"])).toMatchObject({ ok: false, reason: "issuer_unknown" });
    expect(await check(["a"], ["route-a"])).toMatchObject({ ok: true, keySource: "token_cache" });
  });

  it("a token first refused by a route is not cached, and is then accepted where it belongs", async () => {
    const a = await makeIssuer();
    const { verifier } = verifierFor({ issuers: { a: { issuer: a } } });
    const token = await a.sign({ aud: "route-a" });
    expect(await verifier.verify(token, ["a"], ["route-b"], () => {})).toMatchObject({ reason: "audience_mismatch" });
    expect(verifier.tokenCache.size).toBe(0);
    expect(await verifier.verify(token, ["a"], ["route-a"], () => {})).toMatchObject({ ok: true });
  });
});

describe("expiry at its boundaries, cached or not", () => {
  it("the cache entry ends at exp; the token then passes afresh within the skew, and not beyond it", async () => {
    const a = await makeIssuer();
    let now = T0;
    const { verify } = verifierFor({ issuers: { a: { issuer: a, clock_skew_s: 60 } }, deps: { now: () => now } });
    const token = await a.sign({ iat: S, exp: S + 10 });
    expect(await verify(token)).toMatchObject({ ok: true });
    now = T0 + 9_999;
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    now = T0 + 10_000;
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "memory" });
    now = T0 + 69_999;
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "memory" });
    now = T0 + 70_000;
    expect(await verify(token)).toMatchObject({ ok: false, reason: "token_expired", detail: "exp" });
  });
});
