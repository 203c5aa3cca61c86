// What an origin answers, as the client gets it: statuses no response can carry are the
// origin's fault, refused as a bad gateway, never an internal error of the edge; the request
// id is the edge's own, whatever the origin says.
import { describe, expect, it } from "vitest";
import { basePolicy, harness } from "../support/harness";

/**
 * What the runtime's fetch hands over when an HTTP origin answers 101 to a request that asked
 * for no upgrade (the edge never forwards `Upgrade`), or a status from 600 to 999: seen against
 * a raw socket server, and a `Response` cannot be built from either. The test origins cannot
 * send such a status, so a binding returns one with the same fields.
 */
const answering = (status: number) => ({
  fetch: async () => ({
    status,
    statusText: "",
    headers: new Headers({ upgrade: "h2c" }),
    body: null,
    webSocket: null,
  }),
});

function edge(origin: unknown) {
  return harness(
    basePolicy({
      upstreams: { odd: { service: "ODD" } },
      routes: [{ name: "odd", methods: ["GET"], path: "/odd/**", auth: "public", upstream: "odd" }],
    }),
    {},
    { ODD: origin },
  );
}

describe("an origin's reason phrase", () => {
  // RFC 9110 §4 allows a tab in it; the runtime's fetch hands over `HTTP/1.1 200 O<TAB>K` as
  // statusText "O\tK" (seen against a raw socket server), and refuses to build a Response with
  // it. The answer goes on without the phrase. (Such a Response, which no constructor makes,
  // is a real one whose statusText is made to read as the runtime's does.)
  it.each([
    [200, "O\tK"],
    [404, "\tNot Found"],
  ])("%s with a tab in it is passed on, not a 500", async (status, statusText) => {
    const e = edge({
      fetch: async () =>
        Object.defineProperty(
          new Response(null, { status, headers: { "content-type": "text/plain", "x-app": "kept" } }),
          "statusText",
          { value: statusText },
        ),
    });
    const response = await e.fetch("/odd/x");
    expect(response.status).toBe(status);
    expect(response.headers.get("x-app")).toBe("kept");
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status });
    expect(e.logs.join("\n")).not.toContain("unhandled");
  });
});

describe("an origin status outside 200–599", () => {
  it.each([101, 600, 999])("%s is a 502 origin_unavailable, not a 500", async (status) => {
    const e = edge(answering(status));
    const response = await e.fetch("/odd/x");
    expect(response.status).toBe(502);
    expect(JSON.parse(await response.text()).reason).toBe("origin_unavailable");
    expect(response.headers.get("upgrade")).toBeNull();
    expect(e.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "origin_unavailable",
      detail: "origin_bad_status",
    });
    expect(e.logs.join("\n")).not.toContain("unhandled");
  });

  it("a WebSocket a service binding hands over is still passed on", async () => {
    const origin = {
      async fetch() {
        const [client, server] = Object.values(new WebSocketPair());
        server!.accept();
        return new Response(null, { status: 101, webSocket: client });
      },
    };
    const e = edge(origin);
    const response = await e.fetch("/odd/x");
    expect(response.status).toBe(101);
    expect(response.webSocket).not.toBeNull();
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 101 });
  });
});

describe("the request id", () => {
  it("is the edge's own, even when the origin answers one", async () => {
    const e = harness(
      basePolicy({
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
    );
    const respondWith = [["x-request-id", "origin-chosen"]];
    const response = await e.fetch("/svc/x", { headers: { "x-respond-with": JSON.stringify(respondWith) } });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-request-id")).toBe(e.audit.at(-1)?.request_id);
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("headers the origin's Connection names", () => {
  function serviceEdge() {
    return harness(
      basePolicy({
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
    );
  }

  it("are removed as named, `_` and case included; a different `-` spelling is another field, kept", async () => {
    // RFC 9110 §7.6.1: a field the Connection header names is for the next hop only.
    const respondWith = [
      ["connection", "X_Other_Hop, x_hop"],
      ["x_other_hop", "1"],
      ["x_hop", "secret"],
      ["x-hop", "end-to-end"],
      ["x-keep", "yes"],
    ];
    const response = await serviceEdge().fetch("/svc/x", {
      headers: { "x-respond-with": JSON.stringify(respondWith) },
    });
    expect(response.status).toBe(200);
    const got = Object.fromEntries(response.headers);
    expect(got.connection).toBeUndefined();
    expect(got.x_other_hop).toBeUndefined();
    expect(got.x_hop).toBeUndefined();
    expect(got["x-hop"]).toBe("end-to-end");
    expect(got["x-keep"]).toBe("yes");
  });
  it("naming the request id and Set-Cookie removes the origin's own, never the id the edge writes", async () => {
    const e = serviceEdge();
    const respondWith = [
      ["connection", "X-Request-Id, set-cookie"],
      ["x-request-id", "origin-chosen"],
      ["set-cookie", "session=origin"],
      ["x-kept", "yes"],
    ];
    const response = await e.fetch("/svc/x", { headers: { "x-respond-with": JSON.stringify(respondWith) } });
    await response.arrayBuffer();
    expect(response.status).toBe(200);
    const record = e.audit.at(-1);
    expect(response.headers.get("x-request-id")).toBe(record?.request_id);
    expect(response.headers.get("set-cookie")).toBeNull();
    expect(response.headers.get("connection")).toBeNull();
    expect(response.headers.get("x-kept")).toBe("yes");
    expect(record).toMatchObject({ decision: "allow", reason: null, status: 200 });
  });

  it("that are no field names are skipped: the answer is passed on, not turned into a 500", async () => {
    // An HTTP origin's Connection header reaches the Worker; `x a` is no name a Headers object
    // takes, and deleting it threw.
    for (const connection of ["close, x a", '"x-a"', "x;y", "x@y, x-hop"]) {
      const e = serviceEdge();
      const response = await e.fetch("/svc/x", {
        headers: {
          "x-respond-with": JSON.stringify([
            ["connection", connection],
            ["x-hop", "secret"],
            ["x-kept", "yes"],
          ]),
        },
      });
      expect(response.status, connection).toBe(200);
      expect(response.headers.get("x-kept")).toBe("yes");
      expect(response.headers.get("x-hop")).toBe(connection.includes("x-hop") ? null : "secret");
      expect(e.audit.at(-1)).toMatchObject({ decision: "allow", reason: null, status: 200 });
      expect(e.logs.join("\n")).not.toContain("unhandled");
      await response.arrayBuffer();
    }
  });
});

describe("an origin's Clear-Site-Data", () => {
  it("is passed on as sent: a logout clearing every cookie of the site, the Access cookie with them", async () => {
    const e = harness(
      basePolicy({
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
    );
    const respondWith = [["clear-site-data", '"cookies", "storage"']];
    const response = await e.fetch("/svc/logout", { headers: { "x-respond-with": JSON.stringify(respondWith) } });
    expect(response.status).toBe(200);
    expect(response.headers.get("clear-site-data")).toBe('"cookies", "storage"');
    await response.arrayBuffer();
  });
});
