// The batch readings at their edges (`readAsAnotherRoute`: a tRPC batch's comma-separated
// procedures, OData's `$batch`, a front controller alone as its directory's page): batches
// no other route could take a sub-request of, a path of many commas read in linear time, and
// ordinary requests that go on. Each test asserts the edge's decision (audit reason and
// detail) and what reached the real echo origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { RouteConfig } from "../../src/core/policy-types";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { admins, bearerOf, signedIn, siteWithAdmin, withIdp } from "../support/guarded-sites";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** A signed-in caller who is no admin, POSTing a JSON OData batch. */
const batchPost = async () => ({
  method: "POST",
  headers: {
    ...(await bearerOf(issuer, { sub: "mallory", groups: ["staff"] })),
    "content-type": "application/json",
  },
  body: JSON.stringify({ requests: [{ id: "1", method: "GET", url: "Orders" }] }),
});

// README (Security model, Batches): `<root>/$batch` "is refused likewise unless a route is
// written for that `$batch` path or no other route takes any path under the root". A route's
// pattern overlapping the root is not enough to make a batch ambiguous, where no other route
// could ever take a sub-request of it:
// - a route for another host takes no path of this host at all (`routeFor` skips it);
// - a route listed after the OData route, for no method the OData route does not take, is
//   never the first match of any path under the root (first match wins), so every
//   sub-request is routed to the route that took the batch.
// The second is the shape of every SAP Fiori / UI5 app behind the edge: the OData service
// (`/sap/opu/odata/**`) signed-in, then the app's static files public under `/**`; UI5's
// ODataModel sends every read through `$batch` by default (v2 `useBatch: true`, v4 always), so
// refusing it as `400 ambiguous_batch` would break the whole app though no sub-request could
// reach another route.
describe("an OData $batch goes on where no other route could take a path under its root", () => {
  it("a route for another host does not make api.example.test's $batch ambiguous", async () => {
    const edge = harness(
      withIdp(issuer, [
        {
          name: "odata",
          methods: ["GET", "POST", "PATCH", "DELETE"],
          host: "api.example.test",
          path: "/odata/**",
          auth: signedIn(),
          upstream: "echo",
        },
        {
          name: "admin-console",
          methods: ["GET", "POST", "PATCH", "DELETE"],
          host: "admin.example.test",
          path: "/**",
          auth: admins(),
          upstream: "echo",
        },
      ]),
    );
    const post = await batchPost();
    // Control: an ordinary POST under the service root goes on under the OData route.
    const create = await sendMarked(edge, "https://api.example.test/odata/Orders", post);
    expect(create.record).toMatchObject({ decision: "allow", route: "odata" });
    expect(create.seen).toHaveLength(1);

    const batch = await sendMarked(edge, "https://api.example.test/odata/$batch", post);
    expect(batch.record).toMatchObject({ decision: "allow", route: "odata" });
    expect(batch.seen.map((s) => s.raw_target)).toEqual(["/odata/$batch"]);
  });

  it("a public catch-all after the OData route, which it shadows under the root, does not", async () => {
    const edge = harness(
      withIdp(issuer, [
        {
          name: "odata",
          methods: ["GET", "POST", "PATCH", "PUT", "DELETE"],
          path: "/sap/opu/odata/**",
          auth: signedIn(),
          upstream: "echo",
        },
        { name: "app", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
      ]),
    );
    const post = await batchPost();
    // Control: a GET under the root (as a batch's sub-request would be) is the OData route's,
    // never the catch-all's.
    const read = await sendMarked(edge, "/sap/opu/odata/sap/ZORDERS_SRV/Orders", { headers: post.headers });
    expect(read.record).toMatchObject({ decision: "allow", route: "odata" });
    expect(read.seen).toHaveLength(1);

    const batch = await sendMarked(edge, "/sap/opu/odata/sap/ZORDERS_SRV/$batch", post);
    expect(batch.record).toMatchObject({ decision: "allow", route: "odata" });
    expect(batch.seen.map((s) => s.raw_target)).toEqual(["/sap/opu/odata/sap/ZORDERS_SRV/$batch"]);
  });
});

// The tRPC reading takes each comma-separated part of the last segment in turn: were it to
// copy every segment before the last for each part and fold each copy's letters again, the
// work would be (segments before the last) × (commas), quadratic in the URL (at the allowed
// `max_url_bytes` of 65536, tens of seconds of CPU for one anonymous request, in the route
// stage before any token is looked at; Workers end an invocation over its CPU limit with
// error 1102). It reuses one reading and asks each distinct part once. Hang guard only (no
// assertion on elapsed time): the per-test timeout is some hundred times what a linear reading
// of this path takes.
describe("a path of many segments and commas is read in time linear in its length", () => {
  it("is answered (token_missing, not forwarded) within the hang guard at max_url_bytes 65536", async () => {
    const policy = siteWithAdmin(issuer);
    policy.routes[1] = { ...(policy.routes[1] as RouteConfig), auth: signedIn() };
    policy.settings = { ...policy.settings, max_url_bytes: 65536 };
    const edge = harness(policy);
    const path = `${"/x".repeat(16000)}/${",".repeat(31000)}`;
    const { response, body, record, seen } = await sendMarked(edge, path);
    expect(seen).toHaveLength(0);
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_missing");
    expect(record).toMatchObject({ decision: "deny", reason: "token_missing", route: "site" });
  }, 10_000);
});

// Ordinary requests the new readings must leave alone (verified; not covered elsewhere).
describe("ordinary paths with commas, and a front controller where one route takes both readings, go on", () => {
  it.each([
    // Coordinates, and an ID list, in the last segment: every part reads the same route.
    ["/v1/geo/40.7,-74.0", "v1"],
    ["/v1/users/1,2,3", "users"],
    // A comma before the last segment (Elasticsearch's multi-index target): tRPC reads none there.
    ["/v1/acme,globex/_search", "v1"],
    // `batch` in a name, and a `$batch`-like segment that is not `$batch`.
    ["/v1/batches/$batch-like", "v1"],
    // `/index.php` where `/` and the script are one route's (`/**`).
    ["/index.php", "site"],
  ])("GET %s is forwarded as sent under %s", async (path, route) => {
    const edge = harness(
      withIdp(issuer, [
        { name: "me", methods: ["GET"], path: "/v1/users/me", auth: admins(), upstream: "echo" },
        { name: "users", methods: ["GET"], path: "/v1/users/*", auth: "public", upstream: "echo" },
        { name: "v1", methods: ["GET"], path: "/v1/**", auth: "public", upstream: "echo" },
        { name: "admin", methods: ["GET"], path: "/admin/**", auth: admins(), upstream: "echo" },
        { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
      ]),
    );
    const { record, seen } = await sendMarked(edge, path);
    expect(record).toMatchObject({ decision: "allow", route });
    expect(seen.map((s) => s.raw_target)).toEqual([path]);
  });
});
