// The methods the edge says it routes at a URL, where the URL's query is read as a path
// (CodeIgniter routes `/index.php?/admin/users` as `/admin/users`): a CORS preflight grants only
// the methods whose requests at that very URL go on (a browser keeps a preflight's answer per
// URL, query included), keeps its answer only where no other route's request goes on there, and
// a `Max-Forwards: 0` OPTIONS and a 405 name the same methods.
import { beforeAll, describe, expect, it } from "vitest";
import type { RouteConfig } from "../../src/core/policy-types";
import { admins, withIdp } from "../support/guarded-sites";
import { type Harness, harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

const APP = "https://app.example.com";

let idp: TestIssuer;
beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

/** A guarded admin area (GET), then a public app any page of APP may call (GET and PUT). */
const admin: RouteConfig = { name: "admin", methods: ["GET"], path: "/admin/**", auth: admins(), upstream: "echo" };
const app: RouteConfig = {
  name: "app",
  methods: ["GET", "PUT"],
  path: "/**",
  auth: "public",
  upstream: "echo",
  cors: { allow_origins: [APP], allow_headers: ["content-type", "x-csrf-token"], max_age_s: 600 },
};
/** Another route at the front controller's own path, without CORS: its requests are not the app's. */
const reports: RouteConfig = {
  name: "reports",
  methods: ["POST"],
  path: "/index.php",
  auth: "public",
  upstream: "echo",
};

const preflight = (method: string) => ({
  method: "OPTIONS",
  headers: { origin: APP, "access-control-request-method": method, "access-control-request-headers": "x-csrf-token" },
});

async function expectPreflight(edge: Harness, url: string, method: string, allowed: string, maxAge: string) {
  const sent = await sendMarked(edge, url, preflight(method));
  expect(sent.response.status, url).toBe(204);
  expect(sent.record, url).toMatchObject({ decision: "allow", route: "app", status: 204 });
  expect(sent.response.headers.get("access-control-allow-origin"), url).toBe(APP);
  expect(sent.response.headers.get("access-control-allow-methods"), url).toBe(allowed);
  expect(sent.response.headers.get("access-control-max-age"), url).toBe(maxAge);
  expect(sent.seen, url).toEqual([]);
}

describe("a CORS preflight at a URL whose query an origin reads as a path", () => {
  it("grants no method whose request at that URL the edge refuses as read as another route's, and keeps its answer there", async () => {
    const edge = harness(withIdp(idp, [admin, app]));
    // Control: without the query, both of the app's methods go on at the front controller.
    await expectPreflight(edge, "/index.php", "PUT", "GET, PUT", "600");
    // With it, a GET there is the admin area's to CodeIgniter, and is refused.
    const get = await sendMarked(edge, "/index.php?/admin/users", { headers: { origin: APP } });
    expect(get.response.status).toBe(400);
    expect(get.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    expect(get.seen).toEqual([]);
    await expectPreflight(edge, "/index.php?/admin/users", "PUT", "PUT", "600");
    // The PUT itself goes on, as the app's.
    const put = await sendMarked(edge, "/index.php?/admin/users", {
      method: "PUT",
      headers: { origin: APP, "x-csrf-token": "t" },
      body: "{}",
    });
    expect(put.record).toMatchObject({ decision: "allow", route: "app" });
    expect(put.seen.map((s) => s.raw_target)).toEqual(["/index.php?/admin/users"]);
  });

  it("keeps nothing where another route's request goes on at the URL, and may keep it where that request is refused there", async () => {
    const edge = harness(withIdp(idp, [admin, reports, app]));
    // At `/index.php` a POST is the reports route's: the x-csrf-token a kept answer allows would
    // go with it unasked.
    await expectPreflight(edge, "/index.php", "PUT", "GET, PUT", "0");
    // At `/index.php?/admin/users` the POST is read as `/admin/users`, which no route takes for
    // POST, and is refused: nothing goes on there but the app's PUT.
    const post = await sendMarked(edge, "/index.php?/admin/users", {
      method: "POST",
      headers: { origin: APP, "x-csrf-token": "t" },
      body: "x",
    });
    expect(post.response.status).toBe(400);
    expect(post.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    expect(post.seen).toEqual([]);
    await expectPreflight(edge, "/index.php?/admin/users", "PUT", "PUT", "600");
  });
});

describe("the methods named at such a URL", () => {
  const site: RouteConfig = {
    name: "site",
    methods: ["GET", "OPTIONS"],
    path: "/**",
    auth: "public",
    upstream: "echo",
  };

  it("Max-Forwards: 0 names only the methods whose requests go on there, and a 405 names the same", async () => {
    const edge = harness(withIdp(idp, [admin, site]));
    const plain = await sendMarked(edge, "/index.php", { method: "OPTIONS", headers: { "max-forwards": "0" } });
    expect(plain.response.status).toBe(200);
    expect(plain.response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    expect(plain.record).toMatchObject({ decision: "allow", route: "site", detail: "max_forwards_zero" });
    expect(plain.seen).toEqual([]);

    const read = await sendMarked(edge, "/index.php?/admin/users", {
      method: "OPTIONS",
      headers: { "max-forwards": "0" },
    });
    expect(read.response.status).toBe(200);
    expect(read.response.headers.get("allow")).toBe("OPTIONS");
    expect(read.record).toMatchObject({ decision: "allow", route: "site", detail: "max_forwards_zero" });
    expect(read.seen).toEqual([]);

    const head = await sendMarked(edge, "/index.php?/admin/users", { method: "HEAD" });
    expect(head.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_path_info" });
    const del = await sendMarked(edge, "/index.php?/admin/users", { method: "DELETE" });
    expect(del.response.status).toBe(405);
    expect(del.response.headers.get("allow")).toBe("OPTIONS");
    expect(del.body).toMatchObject({ reason: "method_not_allowed", status: 405 });
    expect(del.record).toMatchObject({ decision: "deny", reason: "method_not_allowed", route: null });
    expect([...head.seen, ...del.seen]).toEqual([]);
  });
});
