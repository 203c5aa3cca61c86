// README claims about the readings that refuse a request, the headers and query parameters
// that stop at the edge, the provider notes and the benchmark figures quoted, checked against
// the running pipeline at their edges (claims other test files prove are left to them).
import { beforeAll, describe, expect, it } from "vitest";
import benchmarks from "../../BENCHMARKS.md?raw";
import run from "../../bench/results/history/25b21c1.json";
import readme from "../../README.md?raw";
import type { PolicyDocument } from "../../src/core/policy-types";
import { bearerOf, siteWithSignedInHome, withIdp } from "../support/guarded-sites";
import { basePolicy, harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** One authenticated route, `/v1/**`, with these identity header names. */
const signedInApi = (identityHeaders?: Record<string, string>): PolicyDocument => {
  const policy = withIdp(issuer, [
    { name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
  ]);
  return identityHeaders ? { ...policy, settings: { ...policy.settings, identity_headers: identityHeaders } } : policy;
};

describe("the front controller alone is read as its directory's page", () => {
  // README: a front controller "routes as the path without the script (Laravel, Symfony and
  // CodeIgniter run `/index.php/admin/users` as `/admin/users`)", and a request whose path so
  // read is another route's is refused. The path without the script in `/index.php` is `/`:
  // Symfony's Request (Laravel's too) takes SCRIPT_NAME `/index.php` as the base URL when the
  // request URI begins with it (prepareBaseUrl), and preparePathInfo turns the empty rest into
  // `/`; CodeIgniter's URI::_parse_request_uri strips SCRIPT_NAME the same way and runs the
  // default controller. nginx's stock Laravel config (`location ~ \.php$`) and Apache (the file
  // exists) both hand `/index.php` to the front controller. So with the home page signed-in
  // before a public `/**` (the shape of `siteWithSignedInHome`), `GET /index.php` runs the
  // signed-in dashboard's controller under the public route's rules, with no identity checked:
  // it is refused `ambiguous_path_info`, as CodeIgniter's `/index.php?/` is (the control below)
  // and `/index.php/admin/users` where `/admin/**` is guarded.
  it("`/index.php` is not forwarded as the public site where the home page `/` is signed-in", async () => {
    const edge = harness(siteWithSignedInHome(issuer));
    // Control: the home page itself takes a token.
    const home = await sendMarked(edge, "/");
    expect(home.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "home" });
    // Control: CodeIgniter's query path `/` under the script is read as the home page and refused.
    const queryPath = await sendMarked(edge, "/index.php?/");
    expect(queryPath.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    expect(queryPath.seen).toHaveLength(0);

    const { response, record, seen } = await sendMarked(edge, "/index.php");
    expect(seen.map((s) => s.raw_target)).toEqual([]);
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
  });
});

describe("a host with several labels under a `:tenant` host's suffix where no route for any host takes it", () => {
  // README: "`400 bad_request` (`ambiguous_host`) where a route for any host would take it …;
  // `404` where none would": the refusal is the route stage's default deny, not a new reason.
  it("is `404 route_not_found`, never forwarded", async () => {
    const edge = harness(
      withIdp(issuer, [
        {
          name: "tenant-host",
          methods: ["GET"],
          path: "/app/**",
          host: ":tenant.tenants.example.test",
          auth: { issuers: ["idp"] },
          upstream: "echo",
        },
      ]),
    );
    const { response, record, seen } = await sendMarked(edge, "https://globex.acme.tenants.example.test/app/orders");
    expect(seen).toHaveLength(0);
    expect(response.status).toBe(404);
    expect(record).toMatchObject({ decision: "deny", reason: "route_not_found", detail: null, route: null });
  });
});

describe("`__tenant` in the query is taken out on a public route too", () => {
  // README: "removed before forwarding on every route"; the other tests send it to a
  // tenant-bound, authenticated route.
  it("the rest of the query reaches the origin as sent", async () => {
    const edge = harness(basePolicy());
    const { record, seen } = await sendMarked(edge, "/public/a?__Tenant=globex&view=full");
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    expect(seen.map((s) => s.query)).toEqual(["view=full"]);
  });
});

describe("Hasura's admin secret stops at the edge", () => {
  // README: "Hasura's session variables (every `X-Hasura-*`, the admin secret included: a client
  // never sends one through the edge)". The header test of Hasura leaves the secret out.
  it("a client's X-Hasura-Admin-Secret, in a CGI spelling too, never reaches the origin", async () => {
    const edge = harness(signedInApi());
    const { record, got } = await sendMarked(edge, "/v1/graphql", {
      headers: {
        ...(await bearerOf(issuer, {})),
        "X-Hasura-Admin-Secret": "guessed",
        X_Hasura_Admin_Secret: "guessed",
        "x-kept": "yes",
      },
    });
    expect(record).toMatchObject({ decision: "allow", route: "v1" });
    expect(got["x-kept"]).toBe("yes");
    expect(Object.keys(got).filter((name) => /hasura/i.test(name))).toEqual([]);
  });
});

describe("`X-Trino-User` named as the subject identity header", () => {
  // README: "Trino's and Presto's user (`X-Trino-User`, `X-Presto-User`: name one as
  // `identity_headers.subject` to have the edge write the verified subject there)". The policy
  // takes the name (it starts with `x-` and is no header the edge writes otherwise), and the
  // client's own value gives way to the verified subject.
  it("carries the verified subject, whatever the client sent under that name", async () => {
    const edge = harness(signedInApi({ subject: "X-Trino-User" }));
    const { record, got } = await sendMarked(edge, "/v1/statement", {
      headers: { ...(await bearerOf(issuer, { sub: "alice" })), "X-Trino-User": "admin", X_Trino_User: "admin" },
    });
    expect(record).toMatchObject({ decision: "allow", route: "v1", user_sub: "alice" });
    expect(Object.entries(got).filter(([name]) => /trino/.test(name))).toEqual([["x-trino-user", "alice"]]);
    expect(got["x-user-sub"]).toBeUndefined();
  });
});

describe("an Entra v1 token where the v2 issuer is configured", () => {
  // README (Entra ID): without `requestedAccessTokenVersion` 2 the API "is sent v1 tokens, whose
  // `iss` is `https://sts.windows.net/<tenant id>/` (refused as `issuer_unknown`)". The configured
  // issuer here stands for `https://login.microsoftonline.com/<tenant id>/v2.0`; the token is
  // signed by its own key, so only its `iss` is in question.
  it("is refused issuer_unknown, and nothing reaches the origin", async () => {
    const edge = harness(signedInApi());
    const tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    // Control: the same token with the configured issuer goes on.
    const v2 = await sendMarked(edge, "/v1/x", { headers: await bearerOf(issuer, { tid }) });
    expect(v2.record).toMatchObject({ decision: "allow", route: "v1" });

    const { response, record, seen } = await sendMarked(edge, "/v1/x", {
      headers: await bearerOf(issuer, { tid, iss: `https://sts.windows.net/${tid}/` }),
    });
    expect(seen).toHaveLength(0);
    expect(response.status).toBe(401);
    expect(record).toMatchObject({ decision: "deny", reason: "issuer_unknown" });
  });
});

describe("the figures README and BENCHMARKS.md quote from the run at 25b21c1", () => {
  // The run's own file, bench/results/history/25b21c1.json, is the source: each figure quoted
  // is recomputed from it and rounded as the text rounds it.
  type Cell = { rps: number; cpuUsPerRequest: number };
  type Round = { cells: Record<string, { rps: number }> };
  const cells = run.summary.cells as unknown as Record<string, Cell>;
  const rounds = run.rounds as unknown as Round[];
  const fwd = (cell: string) => `forward/${cell}`;
  const perRound = (a: string, b: string) =>
    rounds.map((r) => ((r.cells[fwd(a)]?.rps as number) / (r.cells[fwd(b)]?.rps as number)).toFixed(2)).join(" ");
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
  const target = (name: string) => run.summary.targets.find((t) => t.name.startsWith(name))?.measured as number;
  const paragraph = benchmarks.slice(
    benchmarks.indexOf("**The last run (`25b21c1`"),
    benchmarks.indexOf("**The run `c5d4aad`"),
  );

  it("BENCHMARKS.md's paragraph on the last run", () => {
    expect(paragraph.length).toBeGreaterThan(500);
    const text = paragraph.replace(/\s+/g, " ");
    expect(text).toContain(`inline ${target("JWT-only, cold token cache ÷ hono/jwk inline").toFixed(2)}×`);
    expect(text).toContain(`(rounds ${perRound("pc-jwt/es256", "hono-inline/es256")})`);
    expect(text).toContain(`\`jwks_uri\` ${target("JWT-only, cold token cache ÷ hono/jwk jwks_uri").toFixed(2)}×`);
    expect(text).toContain(`time added ${target("time added").toFixed(2)}× the raw verify`);
    expect(text).toContain(`warm ÷ bare ${target("JWT-only, warm token cache").toFixed(2)}×`);
    expect(text).toContain(`(rounds ${perRound("pc-jwt/warm", "bare/es256")})`);
    expect(text).toContain(`full ÷ JWT-only ${target("full pipeline").toFixed(2)}×`);
    // The warm figure is the median of the rounds' ratios, as the run's own note gives it.
    const warmFull = median(rounds.map((r) => r.cells[fwd("pc-full/warm")]!.rps / r.cells[fwd("pc-jwt/warm")]!.rps));
    expect(text).toContain(`(warm ${warmFull.toFixed(2)}×; rounds ${perRound("pc-full/es256", "pc-jwt/es256")};`);
    const raw = run.verify.summary.ES256.raw;
    const honoAdded = (1 / cells[fwd("hono-inline/es256")]!.rps - 1 / cells[fwd("bare/es256")]!.rps) * 1e6;
    expect(text).toContain(
      `\`hono/jwk\` inline itself adds ${Math.round(honoAdded)} µs, ${(honoAdded / raw).toFixed(2)}×`,
    );
    expect(text).toContain(`against a ${Math.round(raw)} µs raw verify`);
    const cpu = (cell: string) => Math.round(cells[fwd(cell)]!.cpuUsPerRequest);
    expect(text).toContain(`the bare Worker ${cpu("bare/es256")} µs`);
    expect(text).toContain(`JWT-only cold ${cpu("pc-jwt/es256")} against`);
    expect(text).toContain(`\`hono/jwk\` inline ${cpu("hono-inline/es256")} against`);
    expect(text).toContain(`the full pipeline ${cpu("pc-full/es256")} against`);
    const { gzipBytes, bytes } = run.bundle.deployable;
    expect(text).toContain(`${gzipBytes.toLocaleString("en")} bytes gzipped (${(gzipBytes / 1024).toFixed(2)} KiB`);
    expect(text).toContain(
      `${bytes.toLocaleString("en")} minified), ${(30 * 1024 - gzipBytes).toLocaleString("en")} bytes under`,
    );
    expect(text).toContain(
      `Start-up: ${run.startup.deployable.cpuMs.toFixed(1)} ms of CPU against ${run.startup.empty.cpuMs.toFixed(1)} ms`,
    );
  });

  it("README's bundle size for the latest run", () => {
    const { gzipBytes } = run.bundle.deployable;
    const text = readme.replace(/\s+/g, " ");
    expect(text).toContain(
      `${gzipBytes.toLocaleString("en")} bytes, ${(gzipBytes / 1024).toFixed(2)} KiB, in the latest run (\`25b21c1\`)`,
    );
  });
});
