// A page's data path under a route that asks less of a caller than the page's (route-readings.ts, `exposesPageData`), a Refresh
// URL after the delay and whitespace alone (origin-response.ts, `REFRESH_URL`), and the host
// checks of the policy (routes.ts: `hostsOverlap`, the IDN host's refusal). Pipeline tests drive
// the real edge against the loopback echo origin and issuer stand-in, and assert the audit
// record's reason and detail and what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import { upstreamUrlsOnEdge } from "../../src/core/origin-response";
import { admins, bearerOf, getRoute as route, signedIn, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { compileStepProblems } from "../support/policy-compile-step";
import { problemsOf } from "../support/policy-problems";
import { expectAmbiguous, sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

// ---------------------------------------------------------------------------------------------
// Findings: these assert the correct behaviour and fail against the current code.
// ---------------------------------------------------------------------------------------------

// Next.js answers `/_next/data/<build>/<page>.json` by running that page's getServerSideProps:
// the data path *is* the page. So it is refused wherever the build folder's route asks less of
// a caller than the page's, not only where it is public. Two shapes where an operator has a
// reason to split `/_next/**` out of `/**`:
// - the app's pages need a group (an internal tool on an IdP its customers sign in to as well),
//   and the build output is for any signed-in caller;
// - the pages are bound to the tenant the host names (`:tenant.app.example.test`), and the
//   build output, the same for every tenant, is written host-less so that it is cached and
//   counted once: a host-less route binds no tenant, so globex's user would read acme's pages'
//   data from `acme.app.example.test`, as any origin that picks its tenant from the host serves it.
describe("a page's data path under a signed-in /_next/** before a stricter /**", () => {
  it("a non-admin's `/_next/data/b1/dashboard.json` is refused as the admins-only /dashboard page's", async () => {
    const routes = [route("next", "/_next/**", signedIn()), route("app", "/**", admins())];
    const edge = harness(withIdp(issuer, routes));
    const user = await bearerOf(issuer, { sub: "bob", groups: ["staff"] });
    // Control: the page itself refuses this caller, and the build's assets are his to load.
    const page = await sendMarked(edge, "/dashboard", { headers: user });
    expect(page.record).toMatchObject({ decision: "deny", reason: "forbidden", route: "app" });
    expect(page.seen).toHaveLength(0);
    const chunk = await sendMarked(edge, "/_next/static/chunks/pages/dashboard-3f9a1c.js", { headers: user });
    expect(chunk.record).toMatchObject({ decision: "allow", route: "next" });

    const data = await sendMarked(edge, "/_next/data/b1/dashboard.json", { headers: user });
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });

  it("globex's user is refused acme's `/_next/data/b1/invoices.json` on acme's host", async () => {
    const routes = [
      route("next", "/_next/**", signedIn()),
      route("app", "/**", signedIn(), { host: ":tenant.app.example.test" }),
    ];
    // The compile step as deployed has nothing to say of this policy (written for a deployed
    // issuer and origin: the loopback ones here are refused as local by design).
    const deployable = {
      version: 1,
      upstreams: { echo: { url: "https://origin.example.com" } },
      issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["app"] } },
      routes,
    };
    expect(compileStepProblems(deployable)).toEqual([]);
    const edge = harness(withIdp(issuer, routes));
    const globex = await bearerOf(issuer, { sub: "gina", tenant_id: "globex" });
    // Control: acme's page refuses globex's token.
    const page = await sendMarked(edge, "https://acme.app.example.test/invoices", { headers: globex });
    expect(page.record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "app" });
    expect(page.seen).toHaveLength(0);

    const data = await sendMarked(edge, "https://acme.app.example.test/_next/data/b1/invoices.json", {
      headers: globex,
    });
    expectAmbiguous(data);
    expect(data.record?.detail).toBe("ambiguous_format");
  });
});

// An operator who wrote `bücher.example:8443` (a route for that port alone) and copies the hint
// must get a host for that port: one without would match its host on every port, 443 included.
describe("an IDN host's hint keeps the port it was written with", () => {
  const doc = (host: string) => withIdp(issuer, [route("r", "/v1/**", signedIn(), { host })]);

  it('`bücher.example:8443` is refused naming "xn--bcher-kva.example:8443"', () => {
    expect(problemsOf(doc("xn--bcher-kva.example:8443"))).toEqual([]);
    expect(problemsOf(doc("bücher.example:8443"))).toEqual([
      'routes[0].host: not a host name as requests carry it: write "xn--bcher-kva.example:8443"',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Verified right, and untested until now.
// ---------------------------------------------------------------------------------------------

// The whole-site shapes the data-path rule leaves alone: a fully public Next.js site whose build folder
// has a route of its own, and an app behind sign-in that exempts `/_next/static/**` only (the
// README's advice), where the data path goes to the page's own route for every caller.
describe("page data paths where the build folder's route asks no less than the page's", () => {
  it("a fully public site with a public /_next/**: a page's data goes on under /_next/**", async () => {
    const edge = harness(withIdp(issuer, [route("next", "/_next/**", "public"), route("site", "/**", "public")]));
    for (const path of [
      "/_next/data/b1/pricing.json",
      "/_next/data/b1/index.json",
      "/_next/data/b1/en/blog/hello.json",
    ]) {
      const sent = await sendMarked(edge, path);
      expect(sent.record).toMatchObject({ decision: "allow", route: "next", detail: null });
      expect(sent.seen.map((s) => s.raw_target)).toEqual([path]);
    }
  });

  it("a public /_next/static/** before a signed-in /**: the data path is the app's, a caller's goes on", async () => {
    const edge = harness(
      withIdp(issuer, [route("next", "/_next/static/**", "public"), route("app", "/**", signedIn())]),
    );
    const anonymous = await sendMarked(edge, "/_next/data/b1/dashboard.json");
    expect(anonymous.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "app" });
    expect(anonymous.seen).toHaveLength(0);
    const caller = await sendMarked(edge, "/_next/data/b1/dashboard.json", { headers: await bearerOf(issuer, {}) });
    expect(caller.record).toMatchObject({ decision: "allow", route: "app", detail: null });
    expect(caller.seen.map((s) => s.raw_target)).toEqual(["/_next/data/b1/dashboard.json"]);
  });
});

// A Refresh URL is read after the delay and whitespace alone; the HTML standard's declarative
// refresh also skips whitespace before the `;` or `,` and between the delay and `url=`, so each
// of these names the upstream to a browser and must be the edge's own.
describe("a Refresh naming the upstream, spelt with whitespace around the separator", () => {
  const EDGE = "https://edge.example.com";
  const refreshed = (value: string) => {
    const headers = new Headers({ refresh: value });
    upstreamUrlsOnEdge(headers, "http://origin.internal:8080/base/", EDGE);
    return headers.get("refresh");
  };

  it.each([
    ["5 ; url=http://origin.internal:8080/base/next", `5 ; url=${EDGE}/next`],
    ["5 ,url=http://origin.internal:8080/base/next", `5 ,url=${EDGE}/next`],
    ["5 url=http://origin.internal:8080/base/next", `5 url=${EDGE}/next`],
    ["5\tURL = 'http://origin.internal:8080/base/next?x=1'", `5\tURL = '${EDGE}/next?x=1'`],
    [".5 http://origin.internal:8080/base/next", `.5 ${EDGE}/next`],
  ])("%j is sent as %j", (value, expected) => {
    expect(refreshed(value)).toBe(expected);
  });
});
