// Properties the code rests on: a GCRA charge's start (`startingTat`) checks liveness before
// rescaling, which is only right because rescaling never changes liveness; a cached
// token at a route that does not take its issuer is refused before its keys are looked at, as a
// fresh check refuses it; one host-label check serves matching and coverage; the normalised
// reading goes through the tRPC batch and page-data readings too, once, and NFKC never brings
// the `/` or `%` that re-encoding it would have to keep apart.
import { describe, expect, it } from "vitest";
import { compiledRoutes as routes } from "../support/policy-compile-step";
import { gcra, isLive, rescale, startingTat, type Tat } from "../../src/core/limits/gcra";
import { canonicalPath } from "../../src/core/path";
import type { CompiledRoute } from "../../src/core/policy";
import { readAsAnotherRoute } from "../../src/core/route-readings";
import { compileHostPattern, coversHost, findRoute, type HostPattern, matchHost } from "../../src/core/routes";
import { Clock, signAt, verifierFor } from "../support/clocked-verifier";
import { makeIssuer, makeKey } from "../support/issuers";

describe("a GCRA charge's start: liveness checked before rescaling is liveness after it", () => {
  // `startingTat` asks whether the stored TAT is live before rescaling it to the limit in force
  // (a limit changed by a tenant override, either way): the same as asking after only if
  // rescaling (rounding up, within one ms) never carries a TAT across `now`.
  const NOW = 1_700_000_000_123;
  const dens = [1, 2, 3, 7, 1000, 999_999_999, 1_000_000_000];
  const nows = [0, NOW, Number.MAX_SAFE_INTEGER - 4];
  const cases: [Tat, number, number][] = [];
  for (const now of nows)
    for (const den of dens)
      for (const frac of new Set([0, 1, Math.floor(den / 2), den - 1]))
        for (const offset of [-2, -1, 0, 1, 2])
          for (const limit of dens) if (frac < den) cases.push([{ ms: now + offset, frac, den }, now, limit]);

  it("rescaling never changes whether a TAT is live, over every denominator both ways", () => {
    const changed = cases.filter(([tat, now, limit]) => isLive(rescale(tat, limit), now) !== isLive(tat, now));
    expect(cases.length).toBeGreaterThan(1000);
    expect(changed).toEqual([]);
  });

  it("startingTat is the start the earlier rescale-then-check gave, and so is gcra's decision", () => {
    const earlier = (stored: Tat | undefined, now: number, limit: number): Tat => {
      const current = stored ? rescale(stored, limit) : undefined;
      return current && isLive(current, now) ? current : { ms: now, frac: 0, den: limit };
    };
    const differing = cases.filter(
      ([tat, now, limit]) => JSON.stringify(startingTat(tat, now, limit)) !== JSON.stringify(earlier(tat, now, limit)),
    );
    expect(differing).toEqual([]);
    expect(startingTat(undefined, NOW, 5)).toEqual({ ms: NOW, frac: 0, den: 5 });
  });

  it("a fraction that rounds up to a whole millisecond: live at now stays live, drained stays drained", () => {
    // 2/3 ms over halves is 4/3 halves, rounded up to 2/2: the next millisecond, frac 0.
    expect(rescale({ ms: NOW, frac: 2, den: 3 }, 2)).toEqual({ ms: NOW + 1, frac: 0, den: 2 });
    expect(startingTat({ ms: NOW, frac: 2, den: 3 }, NOW, 2)).toEqual({ ms: NOW + 1, frac: 0, den: 2 });
    // One ms earlier it lands exactly on `now`: not live, before or after.
    expect(rescale({ ms: NOW - 1, frac: 2, den: 3 }, 2)).toEqual({ ms: NOW, frac: 0, den: 2 });
    expect(startingTat({ ms: NOW - 1, frac: 2, den: 3 }, NOW, 2)).toEqual({ ms: NOW, frac: 0, den: 2 });
    // A limit of 1 per 3 s after one of 3: a counter one request in (1 s ahead) admits nothing
    // more, as a counter rescaled first would have said.
    const rate = { limit: 1, windowMs: 3000 };
    const stored = { ms: NOW + 1000, frac: 0, den: 3 };
    expect(gcra(stored, NOW, rate)).toMatchObject({
      allowed: false,
      retryAfterMs: 1000,
      tat: { ms: NOW + 1000, den: 1 },
    });
  });
});

describe("a cached token at a route that does not take its issuer", () => {
  const REFUSED = { ok: false, reason: "issuer_unknown", detail: "issuer_not_accepted_by_route" };

  it("is refused exactly as a fresh check refuses it, with no issuer or key source for the metrics, its key trusted or withdrawn, and nothing fetched", async () => {
    // Refused before its keys are looked at, as a fresh check refuses it: an operator sees one
    // refusal, counted against no issuer (no `tokenCheck`), whatever became of its key.
    const issuer = await makeIssuer();
    const clock = new Clock();
    const old = issuer.keys[0]!;
    const settings = { jwks_uri: `${issuer.url}/jwks`, refresh_cooldown_s: 30, rotation_grace_s: 0 };
    const { verifier, verify, store, settle } = verifierFor(issuer, clock, settings, false, undefined, 100);
    const atOther = (token: string) => verifier.verify(token, ["other"], undefined, () => undefined);
    const token = await signAt(issuer, clock, old);
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "fetch" });
    expect(await verify(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    expect(await atOther(token)).toEqual(REFUSED);

    // The issuer rotates; a token of the new key makes this isolate fetch the set, which
    // withdraws the old key with no grace.
    const next = await makeKey();
    await issuer.publish([next]);
    clock.advance(31);
    expect(await verify(await signAt(issuer, clock, next))).toMatchObject({ ok: true, keySource: "fetch" });
    await settle();
    const fetches = store.stats.fetches;
    expect(await atOther(token)).toEqual(REFUSED);
    expect(store.stats.fetches).toBe(fetches);
    // At its own route the withdrawn key refuses it, as it would a token never cached.
    const withdrawn = { ok: false, reason: "token_invalid", detail: "kid_unknown" };
    expect(await verify(token)).toMatchObject(withdrawn);
    expect(await verify(token)).toMatchObject(withdrawn);
  });
});

describe("one host-label check for matching and for coverage", () => {
  const tenant = compileHostPattern(":tenant.example.com") as HostPattern;
  const ported = compileHostPattern(":tenant.example.com:8443") as HostPattern;
  const exact = (host: string) => compileHostPattern(host) as HostPattern;

  it.each([
    ["acme.example.com", { tenant: "acme" }],
    ["ACME.Example.COM", { tenant: "acme" }],
    ["acme.example.com.:8443", { tenant: "acme" }],
    ["xn--caf-dma.example.com", { tenant: "xn--caf-dma" }],
    // The suffix's own name, an empty label, two labels, a character no label takes.
    ["example.com", null],
    [".example.com", null],
    ["globex.acme.example.com", null],
    ["a_b.example.com", null],
    ["acmeexample.com", null],
  ])("%s under :tenant.example.com -> %j", (host, expected) => {
    expect(matchHost(tenant, host)).toEqual(expected);
  });

  it("a capture covers the one-label hosts under its suffix, on its port, and no other", () => {
    expect(coversHost(tenant, exact("acme.example.com"))).toBe(true);
    expect(coversHost(tenant, exact("acme.example.com:8443"))).toBe(true);
    expect(coversHost(tenant, exact("example.com"))).toBe(false);
    expect(coversHost(tenant, exact("globex.acme.example.com"))).toBe(false);
    expect(coversHost(tenant, exact("acme.example.org"))).toBe(false);
    expect(coversHost(ported, exact("acme.example.com"))).toBe(false);
    expect(coversHost(ported, exact("acme.example.com:8443"))).toBe(true);
    expect(coversHost(tenant, compileHostPattern(":tenant.acme.example.com") as HostPattern)).toBe(false);
    expect(coversHost(exact("acme.example.com"), tenant)).toBe(false);
  });
});

/** The route the edge matches for `rawPath`, and whether it refuses it as another route's reading. */
function reading(list: CompiledRoute[], rawPath: string) {
  const canonical = canonicalPath(new URL(rawPath, "https://api.example.com").pathname);
  if (!canonical.ok) throw new Error(`not canonical: ${rawPath} (${canonical.detail})`);
  const match = findRoute(list, "GET", "api.example.com", canonical.path);
  if (!match) return { route: undefined, ambiguity: undefined };
  return {
    route: match.route.name,
    ambiguity: readAsAnotherRoute(list, "GET", "api.example.com", canonical.path, match.route),
  };
}

/** A guarded route for `path`, then the public site. */
const guarding = (path: string) =>
  routes([
    { name: "guarded", methods: ["GET"], path, auth: { issuers: ["idp"], groups: { any_of: ["admins"] } } },
    { name: "site", methods: ["GET"], path: "/**", auth: "public" },
  ]);

describe("a path's normalised reading, read as any path is", () => {
  // An origin that normalises the path (an NFKC filter before its router) and batches tRPC
  // procedures, or serves a page's data at a path of its own, runs the guarded procedure or
  // loader for the halfwidth spelling, as for the written one.
  it("a tRPC batch naming a guarded procedure in halfwidth katakana is refused as the written one is", () => {
    const list = guarding("/trpc/カフェ");
    expect(reading(list, "/trpc/カフェ,x")).toEqual({ route: "site", ambiguity: "ambiguous_batch" });
    expect(reading(list, "/trpc/ｶﾌｪ,x")).toEqual({ route: "site", ambiguity: "ambiguous_batch" });
    // Nothing guarded named: it goes on.
    expect(reading(list, "/trpc/ｶﾌｪx,y")).toEqual({ route: "site", ambiguity: undefined });
  });

  it("a page's data path under a halfwidth spelling of a guarded page is refused as the written one is", () => {
    const list = guarding("/カフェ");
    expect(reading(list, "/カフェ/__data.json")).toEqual({ route: "site", ambiguity: "ambiguous_format" });
    expect(reading(list, "/ｶﾌｪ/__data.json")).toEqual({ route: "site", ambiguity: "ambiguous_format" });
    expect(reading(list, "/ｶﾌｪ/_next/data/b1/x.json")).toEqual({ route: "site", ambiguity: undefined });
  });

  it("a batch of thousands of distinct halfwidth parts is read through once, its last part the guarded one", () => {
    // Each reading is linear in the path and the normalised one is read once (NFKC is
    // idempotent): this answers within the test's own timeout, whatever the machine's load.
    const list = guarding("/trpc/カフェ");
    const parts = Array.from({ length: 3000 }, (_, i) => `ｶ${i}`);
    expect(reading(list, `/trpc/${[...parts, "ｶﾌｪ"].join(",")}`)).toEqual({
      route: "site",
      ambiguity: "ambiguous_batch",
    });
    expect(reading(list, `/trpc/${parts.join(",")}`)).toEqual({ route: "site", ambiguity: undefined });
  });

  it.each([
    // `℀` is `a/c` to NFKC, `％` and `﹪` are `%`: each beside a letter NFKC keeps beyond ASCII.
    ["/x/%C3%A9%E2%84%80"],
    ["/x/%C3%A9%EF%BC%8541"],
    ["/x/%C3%A9%EF%B9%AA41"],
    // A `%` already there does not let NFKC bring a second one.
    ["/x/%25%C3%A9%EF%BC%85"],
    ["/x/%C3%A9%EF%BC%85%25"],
  ])("%s: NFKC would bring a `/` or `%` into the segment, refused before routing", (raw) => {
    // The normalised reading is re-encoded segment by segment (encodeURIComponent) and split
    // again: a `/` NFKC made would be a segment boundary the edge never saw.
    expect(canonicalPath(new URL(raw, "https://x.test").pathname)).toEqual({
      ok: false,
      detail: "ambiguous_segment",
    });
  });
});
