// Requests that carry several operations in one: the edge authorises a request by its method,
// host and path, once, under the one route that takes them, while some origin frameworks run
// several operations from that one request, each of which the policy may put under another
// route with stricter rules. Where the operations are named in the path (tRPC's batch, OData's
// `$batch` segment) the edge sees it, and does not forward the request under the one route's
// rules; where they are named only in the body (JSON-RPC arrays, GraphQL documents,
// Elasticsearch's `_bulk`, JSON:API atomic operations) it cannot (README: Security model).
// Each test asserts what the edge decided (reason and detail in the audit record) and what
// reached the real echo origin.
import { ODATA_BATCH_BODY, ODATA_BATCH_CONTENT_TYPE } from "../support/odata-batch";
import { beforeAll, describe, expect, it } from "vitest";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { admins, bearerOf, signedIn, withIdp } from "../support/guarded-sites";
import { sendMarked, expectAmbiguous } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** A signed-in caller who is no admin. */
const staff = () => bearerOf(issuer, { sub: "mallory", groups: ["staff"] });

// tRPC (v10 and v11, every adapter) serves each procedure at `<endpoint>/<procedure path>` and,
// with batching on (its default: `allowBatching ?? batching?.enabled ?? true`), reads a request
// with `?batch=1` as several procedures named in one segment, comma-separated
// (`getRequestInfo`: `const paths = isBatchCall ? opts.path.split(',') : [opts.path]`), every
// one run with the request's type (GET: queries, POST: mutations). Its client's httpBatchLink
// sends exactly that on every page that makes two calls in a tick. A policy written per
// procedure, the admin procedures guarded before `/trpc/*` for any signed-in caller (the edge
// has no other way to guard `admin.*`), matches `/trpc/user.me,admin.deleteUser` as `/trpc/*`:
// one segment, no route's literal. tRPC then runs `admin.deleteUser` for a caller the
// procedure's own route refuses. As the edge reads other paths an origin routes otherwise
// (`ambiguous_format`, `ambiguous_path_info`), it reads each comma-separated part of the last
// segment as the segment, and refuses the request where a part reads another route that does
// not take the path as written (a batch of procedures `/trpc/*` takes alike goes on).
describe("a tRPC batch naming a guarded procedure beside an open one in one segment is refused", () => {
  const trpc = () =>
    withIdp(issuer, [
      { name: "admin-delete", methods: ["POST"], path: "/trpc/admin.deleteUser", auth: admins(), upstream: "echo" },
      { name: "admin-list", methods: ["GET"], path: "/trpc/admin.listUsers", auth: admins(), upstream: "echo" },
      { name: "procedures", methods: ["GET", "POST"], path: "/trpc/*", auth: signedIn(), upstream: "echo" },
    ]);

  it.each([
    // A mutation batch, as httpBatchLink sends it: inputs by index in the body.
    ["POST", "/trpc/admin.deleteUser", "/trpc/user.rename,admin.deleteUser?batch=1", '{"0":"m","1":{"id":1}}'],
    // A query batch: inputs by index in the `input` parameter.
    [
      "GET",
      "/trpc/admin.listUsers",
      `/trpc/user.me,admin.listUsers?batch=1&input=${encodeURIComponent('{"0":null,"1":null}')}`,
      undefined,
    ],
    // The comma escaped: the edge matches segments decoded, and tRPC v11's resolveResponse
    // decodes the path before splitting it (`path: decodeURIComponent(opts.path)`; Next.js's
    // adapter takes it from `req.query.trpc`, decoded), so it is the same batch there.
    ["POST", "/trpc/admin.deleteUser", "/trpc/user.rename%2Cadmin.deleteUser?batch=1", '{"0":"m","1":{"id":1}}'],
  ])("%s batch naming %s is not forwarded under /trpc/*: %s", async (method, guarded, batch, body) => {
    const edge = harness(trpc());
    const headers = { ...(await staff()), "content-type": "application/json" };
    // Control: the guarded procedure refuses this caller when asked for alone, and a batch of
    // procedures `/trpc/*` takes alike goes on as sent: a refusal below is the comma's doing.
    const alone = await sendMarked(edge, guarded, { method, headers, body });
    expect(alone.record).toMatchObject({ decision: "deny", reason: "forbidden", detail: "group" });
    expect(alone.seen).toHaveLength(0);
    const open = await sendMarked(edge, "/trpc/user.me,user.settings?batch=1", { headers });
    expect(open.record).toMatchObject({ decision: "allow", route: "procedures" });
    expect(open.seen.map((s) => s.raw_target)).toEqual(["/trpc/user.me,user.settings?batch=1"]);

    const refused = await sendMarked(edge, batch, { method, headers, body });
    expectAmbiguous(refused);
    expect(refused.record?.detail).toBe("ambiguous_batch");
  });
});

// OData's batch endpoint, `<service root>/$batch` (ASP.NET Core OData's `UseODataBatching`,
// SAP Gateway's `/sap/opu/odata/sap/<service>/$batch`, Microsoft Graph's `/v1.0/$batch`), takes
// one POST whose body (multipart/mixed, or OData 4.01's JSON `{"requests":[…]}`) holds
// sub-requests, each with its own method and URL relative to the service root, and runs each
// as a request of its own: ASP.NET Core OData's DefaultODataBatchHandler hands every
// sub-request to the rest of the middleware pipeline (routing, controllers) as a new
// HttpContext. A policy that lets signed-in callers read and create (GET, POST on
// `/odata/**`) and only admins delete or change (DELETE, PATCH, PUT) matches
// `POST /odata/$batch` as the readers' route, and the origin deletes what the DELETE route
// refuses this caller. ASP.NET Core routes without regard to case and Kestrel decodes `%24`,
// so `$BATCH` and `%24batch` are the same endpoint. The segment is the edge's to see: a `$batch`
// (decoded, any case) that a route not written for it takes, where another route takes some
// method somewhere under the same service root, is refused (`ambiguous_batch`) rather than
// forwarded under the route that took the POST; a policy that means to serve batches writes a
// route for `<root>/$batch`, which must demand no less than the routes under its root.
describe("an OData $batch, whose sub-requests another route guards, is refused", () => {
  const odata = () =>
    withIdp(issuer, [
      { name: "odata-admin", methods: ["DELETE", "PATCH", "PUT"], path: "/odata/**", auth: admins(), upstream: "echo" },
      { name: "odata", methods: ["GET", "POST"], path: "/odata/**", auth: signedIn(), upstream: "echo" },
    ]);
  const multipart = ODATA_BATCH_BODY;
  const json = JSON.stringify({ requests: [{ id: "1", method: "DELETE", url: "Users(1)" }] });

  it.each([
    ["/odata/$batch", ODATA_BATCH_CONTENT_TYPE, multipart],
    ["/odata/$batch", "application/json", json],
    ["/odata/%24batch", ODATA_BATCH_CONTENT_TYPE, multipart],
    ["/odata/$BATCH", ODATA_BATCH_CONTENT_TYPE, multipart],
  ])("POST %s (%s) holding a DELETE is not forwarded under the readers' route", async (path, type, body) => {
    const edge = harness(odata());
    const headers = await staff();
    // Control: the DELETE itself refuses this caller, and an ordinary POST under the service
    // root goes on: a refusal below is the batch segment's doing.
    const direct = await sendMarked(edge, "/odata/Users(1)", { method: "DELETE", headers });
    expect(direct.record).toMatchObject({
      decision: "deny",
      reason: "forbidden",
      detail: "group",
      route: "odata-admin",
    });
    expect(direct.seen).toHaveLength(0);
    const create = await sendMarked(edge, "/odata/Orders", { method: "POST", headers, body: "{}" });
    expect(create.record).toMatchObject({ decision: "allow", route: "odata" });
    expect(create.seen).toHaveLength(1);

    const batch = await sendMarked(edge, path, {
      method: "POST",
      headers: { ...headers, "content-type": type },
      body,
    });
    expectAmbiguous(batch);
    expect(batch.record?.detail).toBe("ambiguous_batch");
  });
});

describe("an OData $batch goes on where one route serves the whole service, or a route is written for it", () => {
  it("as ambiguous_batch only where another route shares its root", async () => {
    const headers = await staff();
    const post = { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: "{}" };
    // One route for the service: every sub-request runs under the rules the batch ran under.
    const whole = harness(
      withIdp(issuer, [
        { name: "odata", methods: ["GET", "POST", "DELETE"], path: "/odata/**", auth: signedIn(), upstream: "echo" },
      ]),
    );
    const alone = await sendMarked(whole, "/odata/$batch", post);
    expect(alone.record).toMatchObject({ decision: "allow", route: "odata" });
    expect(alone.seen.map((s) => s.raw_target)).toEqual(["/odata/$batch"]);
    // A route written for `$batch` (the operator's to make as strict as the routes under its root).
    const written = harness(
      withIdp(issuer, [
        { name: "batch", methods: ["POST"], path: "/odata/$batch", auth: signedIn(), upstream: "echo" },
        { name: "odata-admin", methods: ["DELETE"], path: "/odata/**", auth: admins(), upstream: "echo" },
        { name: "odata", methods: ["GET", "POST"], path: "/odata/**", auth: signedIn(), upstream: "echo" },
      ]),
    );
    const batchRoute = await sendMarked(written, "/odata/$batch", post);
    expect(batchRoute.record).toMatchObject({ decision: "allow", route: "batch" });
    expect(batchRoute.seen.map((s) => s.raw_target)).toEqual(["/odata/$batch"]);
    // Without it, the same policy refuses the batch, naming why.
    const refused = harness(
      withIdp(issuer, [
        { name: "odata-admin", methods: ["DELETE"], path: "/odata/**", auth: admins(), upstream: "echo" },
        { name: "odata", methods: ["GET", "POST"], path: "/odata/**", auth: signedIn(), upstream: "echo" },
      ]),
    );
    const ambiguous = await sendMarked(refused, "/odata/$batch", post);
    expectAmbiguous(ambiguous);
    expect(ambiguous.record?.detail).toBe("ambiguous_batch");
  });
});

// Elasticsearch (and OpenSearch) read a path's target as several indices: comma-separated
// (`acme,globex`), wildcards (`acm*`, `*`), `_all`, and none at all for `/_search` (every index).
// Where each tenant has its index and the route binds it (`/:tenant/**`), the edge captures the
// segment whole and compares it with the token's tenant, so none of these reaches another
// tenant's index through the path (a tenant holds no comma or `*`). What `_msearch`, `_mget` or
// `_bulk` name in their body is another matter: the edge does not read bodies.
describe("an Elasticsearch multi-target path is no way past a tenant-bound index route", () => {
  it.each([
    "/acme,globex/_search",
    "/acme%2Cglobex/_search",
    "/acm*/_search",
    "/*/_search",
    "/_all/_search",
    "/_search",
  ])("%s is refused tenant_mismatch for a caller of tenant acme, and not forwarded", async (path) => {
    const edge = harness(
      withIdp(issuer, [
        { name: "index", methods: ["GET", "POST"], path: "/:tenant/**", auth: signedIn(), upstream: "echo" },
      ]),
    );
    const acme = await bearerOf(issuer, { sub: "alice", tenant_id: "acme" });
    // Control: the caller's own index is served.
    const own = await sendMarked(edge, "/acme/_search", { headers: acme });
    expect(own.record).toMatchObject({ decision: "allow", route: "index" });
    expect(own.seen.map((s) => s.raw_target)).toEqual(["/acme/_search"]);

    const { response, body, record, seen } = await sendMarked(edge, path, { headers: acme });
    expect(seen).toHaveLength(0);
    expect(response.status).toBe(403);
    expect(body?.reason).toBe("tenant_mismatch");
    expect(record).toMatchObject({ decision: "deny", reason: "tenant_mismatch", route: "index" });
  });
});
