// Policies the page-data rule and the `$batch` lint compare: routes' audiences as written, and
// limits, which the batch lint does not weigh. The page-data tests run the real edge, the
// loopback echo origin and issuer stand-in; the `$batch` lint tests run the compile step as
// deploys run it.
import { beforeAll, describe, expect, it } from "vitest";
import type { LimitSpec, RouteConfig } from "../../src/core/policy-types";
import { bearerOf, signedIn, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { compileStepProblems } from "../support/policy-compile-step";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

const route = (
  name: string,
  path: string,
  auth: RouteConfig["auth"],
  extra: Partial<RouteConfig> = {},
): RouteConfig => ({ name, methods: ["GET"], path, auth, upstream: "echo", ...extra });

// The page-data rule compares audiences as written (it has no issuers to read a missing list
// from): a build folder without a list and pages writing out their issuer's own audience are
// taken as different, and every page's data is refused there; written alike, both lists
// missing or both the same, the data goes on under `/_next/**` (README, Security model).
describe("page data between routes whose audiences are written otherwise", () => {
  it("one list written, the other the issuer's: refused; both written alike: goes on", async () => {
    const routes = [
      route("next", "/_next/**", signedIn()),
      route("app", "/**", { ...signedIn(), audiences: [AUDIENCE] }),
    ];
    const edge = harness(withIdp(issuer, routes));
    const user = await bearerOf(issuer, { sub: "alice" });
    // Control: the page itself admits the caller.
    const page = await sendMarked(edge, "/dashboard", { headers: user });
    expect(page.record).toMatchObject({ decision: "allow", route: "app" });
    expect(page.seen).toHaveLength(1);

    const data = await sendMarked(edge, "/_next/data/b1/dashboard.json", { headers: user });
    expect(data.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_format" });
    expect(data.seen).toHaveLength(0);

    const alike = harness(
      withIdp(issuer, [route("next", "/_next/**", { ...signedIn(), audiences: [AUDIENCE] }), routes[1]!]),
    );
    const written = await sendMarked(alike, "/_next/data/b1/dashboard.json", { headers: user });
    expect(written.record).toMatchObject({ decision: "allow", route: "next" });
    expect(written.seen.map((s) => s.raw_target)).toEqual(["/_next/data/b1/dashboard.json"]);
  });
});

// The `$batch` lint weighs what routes demand and their tenant binding, not their limits: a
// batch is counted once on each counter whatever its body holds, and a `route` or `ip` limit is
// never another route's counter, so a service whose routes all take such a default deploys.
describe("the $batch lint and routes taking the same default limits", () => {
  const service = (auth: RouteConfig["auth"], defaults: LimitSpec[]) => ({
    version: 1,
    upstreams: { erp: { url: "https://erp.example.com" } },
    issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["erp"] } },
    limits: { defaults },
    routes: [
      { name: "batch", methods: ["POST"], path: "/odata/$batch", auth, upstream: "erp" },
      { name: "odata", methods: ["GET"], path: "/odata/**", auth, upstream: "erp" },
    ],
  });

  it("a public catalogue, every route taking the default per-address limit, deploys", () => {
    const perAddress: LimitSpec = { name: "per-address", key: "ip", limit: 600, window_s: 60 };
    // Control: without the default, the lint has nothing to say.
    expect(compileStepProblems(service("public", []))).toEqual([]);
    expect(compileStepProblems(service("public", [perAddress]))).toEqual([]);
  });

  it("a signed-in service, every route taking the default route ceiling, deploys", () => {
    const ceiling: LimitSpec = { name: "origin-ceiling", key: "route", limit: 5000, window_s: 60 };
    expect(compileStepProblems(service({ issuers: ["idp"] }, []))).toEqual([]);
    expect(compileStepProblems(service({ issuers: ["idp"] }, [ceiling]))).toEqual([]);
  });
});
