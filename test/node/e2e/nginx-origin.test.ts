// Whole stack with a real reverse proxy behind the edge: edge → nginx → application. What
// matters is what the application behind nginx can be made to believe, read the way nginx
// reads it: the identity headers as nginx's `$http_*` variables see them (underscores
// included), the credentials, and the URI nginx routes on.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Edge, freePort, startEdge } from "./support/edge";
import { type Nginx, startNginx } from "./support/nginx";
import { e2ePolicy } from "./support/policy";
import { newSigningKey, type RunningProvider, startProvider } from "./support/provider";
import { callEdge, type EchoOrigin, type EdgeAnswer, startOrigin } from "./support/stack";

const CLIENTS = [{ id: "reports-reader", scope: "api:read", tenant: "acme" }];

let application: EchoOrigin;
let nginx: Nginx;
let provider: RunningProvider;
let edge: Edge;

beforeAll(async () => {
  application = await startOrigin();
  nginx = await startNginx({ port: await freePort(), applicationUrl: application.url });
  provider = await startProvider({ clients: CLIENTS, keys: [await newSigningKey()] });
  edge = await startEdge({
    policy: e2ePolicy({
      issuer: provider.issuer,
      originUrl: nginx.url,
      deadOriginUrl: `http://127.0.0.1:${await freePort()}`,
    }),
    probePath: "/public/ready",
  });
}, 120_000);

afterAll(async () => {
  await edge?.stop();
  await Promise.all([nginx?.stop(), provider?.close(), application?.close()]);
}, 30_000);

const token = async () => (await provider.token("reports-reader", { scope: "api:read" })).token;

/** The one request the application received for this answer, as nginx passed it on. */
function receivedBehindNginx(answer: EdgeAnswer): Record<string, string> {
  expect(answer.status, answer.text).toBe(200);
  const records = application.sawMarker(answer.marker);
  expect(records).toHaveLength(1);
  return (records[0] as { headers: Record<string, string> }).headers;
}

describe("nginx behind the edge", () => {
  it("reads only the edge's identity, however the client spelt its own identity headers", async () => {
    const answer = await callEdge(edge.url, "/v1/things", {
      token: await token(),
      headers: {
        "x-user-sub": "admin",
        x_user_sub: "admin",
        X_Tenant: "other-tenant",
        "x_user-scope": "api:admin",
      },
    });
    const headers = receivedBehindNginx(answer);
    expect(headers["x-nginx-user-sub"]).toBe("[reports-reader]");
    expect(headers["x-nginx-tenant"]).toBe("[acme]");
    expect(headers["x-nginx-user-scope"]).toBe("[api:read]");
    // Nor did any client spelling travel on for the application to read itself.
    const names = Object.keys(headers).map((name) => name.replace(/_/g, "-"));
    expect(names.filter((name) => name === "x-user-sub")).toEqual(["x-user-sub"]);
    expect(headers["x-user-sub"]).toBe("reports-reader");
    expect(Object.keys(headers).filter((name) => name.includes("_"))).toEqual([]);
  });

  it("sees no credential: no Authorization header, no Access cookie, other cookies kept", async () => {
    const answer = await callEdge(edge.url, "/v1/things", {
      token: await token(),
      headers: { cookie: "session=s-123; CF_Authorization=stolen.assertion.value" },
    });
    const headers = receivedBehindNginx(answer);
    expect(headers["x-nginx-authorization"]).toBe("[]");
    expect(headers["x-nginx-cookie-cf-authorization"]).toBe("[]");
    expect(headers["x-nginx-cookie-session"]).toBe("[s-123]");
  });

  it("routes on exactly the path the edge authorised, with the query as sent", async () => {
    const bearer = await token();
    for (const path of ["/v1//things", "/v1/%74hings", "/v1/./things"]) {
      const headers = receivedBehindNginx(await callEdge(edge.url, `${path}?b=2&a=1`, { token: bearer }));
      expect(headers["x-nginx-uri"], path).toBe("[/v1/things?b=2&a=1]");
    }
    // A trailing slash matches the same route and is passed on as sent (origins tell them apart or not).
    const slash = receivedBehindNginx(await callEdge(edge.url, "/v1/things/", { token: bearer }));
    expect(slash["x-nginx-uri"]).toBe("[/v1/things/]");
  });

  it("redirects to a directory's slash on the edge's host, not on nginx's own", async () => {
    // nginx builds the Location from the Host the edge sent it, its own address: passed on as
    // written, the client would learn the origin's address and leave the edge.
    const response = await fetch(`${edge.url}/public/files/docs?x=1`, { redirect: "manual" });
    await response.arrayBuffer();
    expect(response.status).toBe(301);
    expect(response.headers.get("location")).toBe(`${edge.url}/public/files/docs/?x=1`);
    // Followed, it lands on the directory, through the edge.
    const landed = await fetch(response.headers.get("location") as string);
    expect({ status: landed.status, text: await landed.text() }).toEqual({ status: 200, text: "docs\n" });
  });

  it("never sees a traversal nginx would resolve: the edge resolves or refuses it first", async () => {
    // Resolved by the edge to /v1/things, which needs a token this request does not carry.
    const resolved = await callEdge(edge.url, "/public/%2e%2e/v1/things");
    expect(resolved.status, resolved.text).toBe(401);
    expect(resolved.body.reason).toBe("token_missing");
    // An encoded slash nginx would decode into a path separator is refused outright.
    const encoded = await callEdge(edge.url, "/public/..%2fv1/things");
    expect(encoded.status, encoded.text).toBe(400);
    expect(encoded.body.reason).toBe("bad_request");
    const audit = await edge.auditRecord(encoded.requestId as string);
    expect(audit).toMatchObject({ decision: "deny", reason: "bad_request", detail: "encoded_slash" });
    expect(application.sawMarker(resolved.marker)).toEqual([]);
    expect(application.sawMarker(encoded.marker)).toEqual([]);
  });
});
