// README statements that no other test asserted in their own terms: the local stack's choice
// of issuers (key order, algorithms), -0 where 0 is allowed and where it is not, and which
// header the cross-site check reads when a browser sends Sec-Fetch-Site but no Origin. Each
// test names the statement it backs.
import { beforeAll, describe, expect, it } from "vitest";
import { localPolicy } from "../../dev/local-policy";
import { LOCAL_ACCESS_TEAM, LOCAL_IDP_URL } from "../../dev/local-stack.mjs";
import policy from "../../policy/policy.json";
import { compilePolicy } from "../../src/core/policy";
import type { PolicyDocument } from "../../src/core/policy-types";
import { marker, originSaw } from "../support/harness";
import { accessAppEdge } from "../support/guarded-sites";
import { ACCESS_AUD_TAG } from "../support/issuers";
import { accessAssertion, makeIssuer, type TestIssuer } from "../support/issuers";
import { problemsOf } from "../support/policy-problems";

const AUD_TAG = "9a1d3f1d2b6c7e8f0b5c3f4e6a574a7e9a1d3f1d2b6c7e8f0b5c3f4e6a574a7e";

describe("Local stack: which issuers the local edge points at the development provider", () => {
  /** The bundled policy with these issuers, and a route naming every one, so it compiles. */
  function withIssuers(issuers: PolicyDocument["issuers"]): PolicyDocument {
    const doc = structuredClone(policy) as unknown as PolicyDocument;
    doc.issuers = issuers;
    doc.routes = [
      {
        name: "r",
        methods: ["GET"],
        path: "/v1/**",
        auth: { issuers: ["corp"], audiences: [AUD_TAG] },
        upstream: "api",
      },
    ];
    return doc;
  }

  // README (Local stack table): "its first OIDC issuer, its first Access issuer (first in
  // JavaScript's key order: ids that are whole numbers, such as "1", come before the others,
  // which follow in file order) ... and those two issuers' `algorithms` left to the provider's own".
  it('an id that is a whole number ("1", "2") comes first, whatever its place in the file; the others keep theirs', () => {
    const doc = withIssuers({
      corp: {
        kind: "oidc",
        issuer: "https://corp.example.com",
        audiences: ["https://api.example.com"],
        algorithms: ["RS256"],
      },
      team: { kind: "cloudflare_access", team_domain: "team.cloudflareaccess.com", algorithms: ["RS256"] },
      "1": {
        kind: "oidc",
        issuer: "https://one.example.com",
        audiences: ["https://api.example.com"],
        algorithms: ["RS256"],
      },
      "2": { kind: "cloudflare_access", team_domain: "two.cloudflareaccess.com", algorithms: ["RS256"] },
    });
    expect(() => compilePolicy(doc)).not.toThrow();
    const local = localPolicy(doc);
    expect(local.issuers?.["1"]).toEqual({
      kind: "oidc",
      issuer: LOCAL_IDP_URL,
      audiences: ["https://api.example.com"],
    });
    expect(local.issuers?.["2"]).toEqual({ kind: "cloudflare_access", team_domain: LOCAL_ACCESS_TEAM });
    // The issuers written first are left as written, their algorithms included.
    expect(local.issuers?.corp).toEqual(doc.issuers?.corp);
    expect(local.issuers?.team).toEqual(doc.issuers?.team);
    const compiled = compilePolicy(local);
    expect([...compiled.issuers.values()].map((issuer) => [issuer.id, issuer.issuer])).toEqual([
      ["1", LOCAL_IDP_URL],
      ["2", LOCAL_ACCESS_TEAM],
      ["corp", "https://corp.example.com"],
      ["team", "https://team.cloudflareaccess.com"],
    ]);
  });

  it("with no whole-number ids, the first of each kind in file order is the provider's", () => {
    const doc = withIssuers({
      corp: {
        kind: "oidc",
        issuer: "https://corp.example.com",
        audiences: ["https://api.example.com"],
        algorithms: ["RS256"],
      },
      partner: { kind: "oidc", issuer: "https://partner.example.com", audiences: ["https://api.example.com"] },
    });
    const local = localPolicy(doc);
    expect(local.issuers?.corp).toEqual({
      kind: "oidc",
      issuer: LOCAL_IDP_URL,
      audiences: ["https://api.example.com"],
    });
    expect(local.issuers?.partner).toEqual(doc.issuers?.partner);
  });
});

describe("Settings: -0", () => {
  /** A policy with one Access-free OIDC route, CORS and a route limit, for the numbers below. */
  function doc(): any {
    return {
      version: 1,
      issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["https://api.example.com"] } },
      upstreams: { api: { url: "https://origin.example.com" } },
      routes: [
        {
          name: "r",
          methods: ["GET"],
          path: "/v1/**",
          auth: { issuers: ["idp"] },
          upstream: "api",
          cors: { allow_origins: ["https://app.example.com"], max_age_s: 60 },
          limits: [{ name: "per-user", key: "user", limit: 5, window_s: 60 }],
        },
      ],
    };
  }

  it("the document above compiles", () => {
    expect(problemsOf(doc())).toEqual([]);
  });

  // README: "`-0` is refused where `0` is allowed (write `0`): JSON would write the compiled
  // policy back with `0`."
  it.each<[string, (d: any) => void, string]>([
    [
      "a route's cors.max_age_s (0–86400)",
      (d) => (d.routes[0].cors.max_age_s = -0),
      "routes[0].cors.max_age_s: is -0: write 0",
    ],
    [
      "an issuer's rotation_grace_s (0 disables)",
      (d) => (d.issuers.idp.rotation_grace_s = -0),
      "issuers.idp.rotation_grace_s: is -0: write 0",
    ],
  ])("in %s is refused: write 0", (_label, change, problem) => {
    const d = doc();
    change(d);
    expect(problemsOf(d)).toEqual([problem]);
  });

  // Where 0 is out of range, the range is the advice, not "write 0" (which would be refused too).
  it("in a limit's `limit` (1–10⁹) is refused with the range", () => {
    const d = doc();
    d.routes[0].limits[0].limit = -0;
    expect(problemsOf(d)).toEqual(["routes[0].limits[0].limit: must be an integer from 1 to 1000000000"]);
  });
});

describe("Cloudflare Access: the Referer is read only when a browser sends neither Origin nor Sec-Fetch-Site", () => {
  let team: TestIssuer;
  beforeAll(async () => {
    team = await makeIssuer("RS256");
  });

  const edge = () => accessAppEdge(team);

  async function post(headers: Record<string, string>) {
    const e = edge();
    const m = marker();
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const response = await e.fetch("/app/x", {
      method: "POST",
      body: "a=1",
      headers: { cookie: `CF_Authorization=${token}`, "x-test-marker": m, ...headers },
    });
    return { status: response.status, record: e.audit.at(-1), seen: await originSaw(m) };
  }

  // README (Errors, cross_site_request): "said by the browser (`Sec-Fetch-Site`) to come from
  // another origin, yet without an `Origin` (`cross_site_without_origin`)"; and (Cloudflare
  // Access) "A request with neither header that carries the Access cookie ... is judged by the
  // page its `Referer` names": with Sec-Fetch-Site sent, the Referer does not stand in for Origin.
  it("Sec-Fetch-Site: same-site without Origin is refused, though its Referer names the request's own page", async () => {
    const r = await post({ "sec-fetch-site": "same-site", referer: "https://edge.test/app/form" });
    expect(r.status).toBe(403);
    expect(r.record).toMatchObject({
      reason: "cross_site_request",
      detail: "cross_site_without_origin",
      token_hash: null,
    });
    expect(r.seen).toEqual([]);
  });

  // README (Cloudflare Access): "`Sec-Fetch-Site` (`same-origin`, or `none` ...) lets it
  // through": whatever a Referer says.
  it("Sec-Fetch-Site: same-origin passes, though its Referer names another site's page", async () => {
    const r = await post({ "sec-fetch-site": "same-origin", referer: "https://evil.example/form.html" });
    expect(r.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow" });
    expect(r.seen).toHaveLength(1);
  });
});
