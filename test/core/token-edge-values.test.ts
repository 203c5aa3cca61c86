// Token checking at its edges (RFC 7515 / 7519 / 8725 / 6750): members named `__proto__` or
// after Object.prototype members, in the header, the claims or as kid / alg / iss; NumericDates
// JSON reads as ±Infinity, and how long the verified-token cache keeps a token that never
// expires; header members whose presence, whatever their value, refuses the token; headers
// that are no credential; a Bearer scheme ended by other whitespace than a space; and tenants
// an origin reading x-tenant as a list would unquote.
import { beforeAll, describe, expect, it } from "vitest";
import type { VerifyResult } from "../../src/core/tokens/verify";
import { basePolicy, type Harness, harness, marker, originSaw } from "../support/harness";
import {
  accessAssertion,
  AUDIENCE,
  b64url,
  makeIssuer,
  type TestIssuer,
  type TestKey,
  ACCESS_AUD_TAG,
} from "../support/issuers";
import { fixedNow, signText, verifierFor } from "./token-fixtures";
import { sendMarked } from "../support/sent";

const NOW = fixedNow();
const S = Math.floor(NOW / 1000);
const SKEW = 60;

let idp: TestIssuer;
let team: TestIssuer;
let verify: (token: string) => Promise<VerifyResult>;

beforeAll(async () => {
  [idp, team] = await Promise.all([makeIssuer(), makeIssuer("RS256")]);
  ({ verify } = verifierFor({
    issuers: { idp: { issuer: idp, clock_skew_s: SKEW } },
    deps: { now: () => NOW, tokenCacheEntries: 0 },
  }));
});

/** Claims text of `idp`, valid at NOW; `extra` is spliced in as written (JSON members). */
function claimsText(extra = "", { iat = String(S) } = {}): string {
  return `{"iss":${JSON.stringify(idp.url)},"aud":"${AUDIENCE}","sub":"u1","iat":${iat}${extra}}`;
}

const EXP = `,"exp":${S + 600}`;

/** Signed over exactly this header (alg and kid of idp's key unless overridden) and claims text. */
function signed(header: Record<string, unknown>, payload: string): Promise<string> {
  return signText(idp.keys[0] as TestKey, header, payload);
}

/** A token over exactly this header text and these claims, with a signature of the right length. */
function unsigned(headerText: string, payload: string): string {
  return `${b64url(headerText)}.${b64url(payload)}.${"A".repeat(86)}`;
}

describe("members named __proto__ are plain members: they lend the token nothing", () => {
  // JSON.parse makes `__proto__` an own member, never the prototype; the checks read own
  // members only, so a claim or header member nested under it is not the token's.
  it.each([
    ["an exp under __proto__ is no exp", () => claimsText(`,"__proto__":{"exp":${S + 600}}`), "claim_exp_missing"],
    [
      "a sub under __proto__ is no subject",
      () => claimsText(`${EXP},"__proto__":{"sub":"admin"}`).replace('"sub":"u1",', ""),
      "subject_missing_or_unsafe",
    ],
  ])("%s", async (_label, payload, detail) => {
    expect(await verify(await signed({}, payload()))).toMatchObject({ ok: false, reason: "token_invalid", detail });
  });

  it("an alg under __proto__ is no alg; a crit under it is no crit", async () => {
    expect(await verify(unsigned('{"__proto__":{"alg":"ES256"}}', claimsText(EXP)))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "alg_missing",
    });
    // An unknown member named `__proto__` is ignored like any other: the token verifies.
    const token = await signed({ ["__proto__"]: { crit: ["exp"] } }, claimsText(EXP));
    // The member is in the signed header as sent (a literal `__proto__:` would have set a prototype instead).
    expect(atob((token.split(".")[0] as string).replace(/-/g, "+").replace(/_/g, "/"))).toContain(
      '"__proto__":{"crit":["exp"]}',
    );
    expect(await verify(token)).toMatchObject({ ok: true, identity: { subject: "u1" } });
  });

  it("a claim condition is not met by a value nested under __proto__", async () => {
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
        routes: [
          {
            name: "mfa",
            methods: ["GET"],
            path: "/mfa/**",
            auth: { issuers: ["idp"], claims: [{ claim: "amr", one_of: ["mfa"] }] },
            upstream: "echo",
          },
        ],
      }),
    );
    const now = Math.floor(Date.now() / 1000);
    const payload = `{"iss":${JSON.stringify(idp.url)},"aud":"${AUDIENCE}","sub":"u1","iat":${now},"exp":${now + 600},"__proto__":{"amr":["mfa"]}}`;
    const m = marker();
    const response = await edge.fetch("/mfa/x", {
      headers: { authorization: `Bearer ${await signed({}, payload)}`, "x-test-marker": m },
    });
    expect(response.status).toBe(403);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "forbidden", detail: "claim:amr" });
    expect(await originSaw(m)).toHaveLength(0);
  });
});

describe("kid, alg and iss named after Object.prototype members", () => {
  // Each selects from configuration (a Map or an array), never from an object's prototype:
  // the refusal is the one any unknown value gets, not a 500.
  it.each(["__proto__", "constructor", "toString", "hasOwnProperty"])("%s", async (name) => {
    expect(await verify(await signed({ kid: name }, claimsText(EXP)))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "kid_unknown",
    });
    expect(await verify(await signed({ alg: name }, claimsText(EXP)))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "alg_not_allowed",
    });
    const asIss = claimsText(EXP).replace(JSON.stringify(idp.url), JSON.stringify(name));
    expect(await verify(await signed({}, asIss))).toMatchObject({
      ok: false,
      reason: "issuer_unknown",
      detail: "issuer_not_configured",
    });
  });
});

describe("header members refused whatever their value", () => {
  // RFC 7515 §4.1.11 / RFC 7797: a `crit` or `b64` member is refused by its presence, so a
  // null or false one (which a check of `crit.length` or `b64 === false` would pass) is too.
  it.each([
    ["crit null", { crit: null }, "crit_not_supported"],
    ["crit a string", { crit: "exp" }, "crit_not_supported"],
    ["b64 false", { b64: false }, "b64_not_supported"],
    ["b64 null", { b64: null }, "b64_not_supported"],
    ["enc null", { enc: null }, "jwe_not_accepted"],
  ])("%s", async (_label, header, detail) => {
    expect(await verify(await signed(header, claimsText(EXP)))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail,
    });
  });

  it("the last of two alg members is the one checked (none after ES256 is refused)", async () => {
    expect(await verify(unsigned('{"alg":"ES256","alg":"none"}', claimsText(EXP)))).toMatchObject({
      ok: false,
      reason: "token_invalid",
      detail: "alg_not_allowed",
    });
  });
});

describe("NumericDates JSON reads as ±Infinity (1e999)", () => {
  // JSON numbers past the double range parse as ±Infinity: each comparison must still go the
  // right way.
  it.each([
    ["exp -1e999", () => claimsText(',"exp":-1e999'), { ok: false, reason: "token_expired", detail: "exp" }],
    ["exp -0", () => claimsText(',"exp":-0'), { ok: false, reason: "token_expired", detail: "exp" }],
    ["nbf 1e999", () => claimsText(`${EXP},"nbf":1e999`), { ok: false, reason: "token_not_yet_valid", detail: "nbf" }],
    [
      "iat 1e999",
      () => claimsText(EXP, { iat: "1e999" }),
      { ok: false, reason: "token_invalid", detail: "iat_in_future" },
    ],
    ["nbf -1e999", () => claimsText(`${EXP},"nbf":-1e999`), { ok: true }],
    ["iat -1e999", () => claimsText(EXP, { iat: "-1e999" }), { ok: true }],
    ["exp in exponent form", () => claimsText(`,"exp":${(S + 600) / 1e9}e9`), { ok: true }],
  ])("%s", async (_label, payload, expected) => {
    expect(await verify(await signed({}, payload()))).toMatchObject(expected);
  });

  it("a token whose exp is +Infinity is cached no longer than the 5-minute bound", async () => {
    let now = NOW;
    const { verify: verifyAt, verifier } = verifierFor({
      issuers: { idp: { issuer: idp, clock_skew_s: SKEW } },
      deps: { now: () => now },
    });
    const token = await signed({}, claimsText(',"exp":1e999'));
    expect(await verifyAt(token)).toMatchObject({ ok: true });
    now = NOW + 5 * 60 * 1000 - 1;
    expect(await verifyAt(token)).toMatchObject({ ok: true, keySource: "token_cache" });
    now = NOW + 5 * 60 * 1000;
    // Checked afresh (the key from memory), and cached again.
    expect(await verifyAt(token)).toMatchObject({ ok: true, keySource: "memory" });
    expect(verifier.tokenCache.size).toBe(1);
  });
});

/** A policy with one OIDC issuer and one Access team, on routes taking each and both. */
function twoKindPolicy() {
  return basePolicy({
    issuers: {
      idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
      access: { kind: "cloudflare_access", team_domain: team.url },
    },
    routes: [
      {
        name: "both",
        methods: ["GET"],
        path: "/both/**",
        auth: { issuers: ["idp", "access"], audiences: [AUDIENCE, ACCESS_AUD_TAG] },
        upstream: "echo",
      },
      { name: "tenant", methods: ["GET"], path: "/t/:tenant/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      { name: "bearer", methods: ["GET"], path: "/b/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ],
  });
}

/**
 * `path` with `headers` is refused as `refused` (status, problem reason, audit detail), and
 * nothing is forwarded; `label` names the case among several.
 */
async function expectRefused(
  edge: Harness,
  label: Record<string, unknown>,
  path: string,
  headers: Record<string, string>,
  refused: { status: number; reason: string; detail: string },
) {
  const { response, body, record, seen } = await sendMarked(edge, path, { headers });
  expect({ ...label, status: response.status, reason: body?.reason, detail: record?.detail }).toEqual({
    ...label,
    ...refused,
  });
  expect(seen).toHaveLength(0);
}

describe("where a Bearer token is looked for", () => {
  it("the scheme in any case is Bearer", async () => {
    const edge = harness(twoKindPolicy());
    for (const scheme of ["BEARER", "bEaReR"]) {
      const { response, seen } = await sendMarked(edge, "/b/x", {
        headers: { authorization: `${scheme} ${await idp.sign({})}` },
      });
      expect({ scheme, status: response.status }).toEqual({ scheme, status: 200 });
      expect(seen[0]?.headers["x-user-sub"]).toBe("user-1");
    }
  });

  it("X-Authorization and Proxy-Authorization are no credential: 401 token_missing, nothing forwarded", async () => {
    const edge = harness(twoKindPolicy());
    const token = await idp.sign({});
    for (const name of ["x-authorization", "proxy-authorization", "x-serverless-authorization"])
      await expectRefused(
        edge,
        { name },
        "/b/x",
        { [name]: `Bearer ${token}` },
        { status: 401, reason: "token_missing", detail: "no_credentials" },
      );
  });

  it("an Access assertion with a Bearer prefix in its header is a malformed token, not a Bearer token", async () => {
    const edge = harness(twoKindPolicy());
    const assertion = await accessAssertion(team, ACCESS_AUD_TAG);
    await expectRefused(
      edge,
      {},
      "/both/x",
      { "cf-access-jwt-assertion": `Bearer ${assertion}` },
      { status: 401, reason: "token_invalid", detail: "not_compact_jws" },
    );
  });

  // Lenient readers (Python str.split, Go strings.Fields, Lua %s, Java \s) read `Bearer`, then
  // a vertical tab or a form feed, as a Bearer token: a malformed one, never another scheme.
  it("Bearer followed by a vertical tab or form feed is a malformed Bearer credential, as with a tab", async () => {
    const edge = harness(twoKindPolicy());
    const token = await idp.sign({});
    for (const [label, gap] of [
      ["tab", "\t"],
      ["vertical tab", "\u000b"],
      ["form feed", "\u000c"],
    ])
      await expectRefused(
        edge,
        { label },
        "/b/x",
        { authorization: `Bearer${gap}${token}` },
        { status: 400, reason: "token_malformed", detail: "bad_bearer_syntax" },
      );
  });

  // On a route taking both kinds, such a Bearer credential is not passed over for the Access
  // assertion (two credentials, one picked).
  it("Bearer<VT>token next to an Access assertion is refused, not passed over for the assertion", async () => {
    const edge = harness(twoKindPolicy());
    const assertion = await accessAssertion(team, ACCESS_AUD_TAG);
    const token = await idp.sign({});
    for (const gap of ["\t", "\u000b"]) {
      const headers = { authorization: `Bearer${gap}${token}`, "cf-access-jwt-assertion": assertion };
      await expectRefused(edge, { gap }, "/both/x", headers, {
        status: 400,
        reason: "token_malformed",
        detail: "bad_bearer_syntax",
      });
    }
  });
});

describe("a tenant an origin reading x-tenant as an HTTP list would read otherwise", () => {
  // Werkzeug's parse_list_header and Python's parse_http_list unquote list members: `"acme"`
  // reads as `acme`, another tenant. (A tenant-bound path with a backslash is refused before
  // any token is read.)
  it.each([
    ["quoted", '"acme"'],
    ["a backslash", "ac\\me"],
  ])("a tenant %s rejects the token (tenant_unsafe), and nothing is forwarded", async (_label, tenant) => {
    const edge = harness(twoKindPolicy());
    const token = await idp.sign({ tenant_id: tenant });
    for (const path of ["/b/x", ...(tenant.includes("\\") ? [] : [`/t/${encodeURIComponent(tenant)}/x`])])
      await expectRefused(
        edge,
        { path },
        path,
        { authorization: `Bearer ${token}` },
        { status: 401, reason: "token_invalid", detail: "tenant_unsafe" },
      );
  });
});
