// API protocols beyond plain REST behind the edge, as their clients send them: Connect RPC (unary
// POST and the side-effect-free GET with the message in the query), gRPC-Web (its headers, a
// browser's preflight, and the status the origin sends in headers and in the body's trailer
// frame), OData and JSON:API query strings, tus resumable uploads (HEAD to resume, PATCH with
// `application/offset+octet-stream`) and Apollo's CSRF-prevention headers and persisted-query
// GETs. Each is legitimate traffic the edge must neither refuse nor mangle once the operator has
// written the route as README.md describes. The origin is the loopback echo origin (what reached
// it) or a service binding that answers as the protocol's server does.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** The single-page app every browser test here runs in, as its browser writes `Origin`. */
const APP = "https://app.example.com";

/** A policy whose routes any signed-in caller of the test issuer (`idp`) may use, forwarded to the echo origin unless a route says otherwise. */
function api(routes: RouteConfig[], upstreams: PolicyDocument["upstreams"] = {}): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    upstreams: { ...basePolicy().upstreams, ...upstreams },
    routes,
  });
}

const signedIn = { issuers: ["idp"] };
const bearer = async () => ({ authorization: `Bearer ${await issuer.sign({ sub: "alice" })}` });

/** What reached the origin for one forwarded request: the credential gone, the verified subject written. */
function expectForwardedAsAlice(got: Record<string, string>): void {
  expect(got.authorization).toBeUndefined();
  expect(got["x-user-sub"]).toBe("alice");
}

describe("Connect RPC", () => {
  const connect = () =>
    harness(
      api([
        {
          name: "eliza",
          methods: ["GET", "POST"],
          path: "/connectrpc.eliza.v1.ElizaService/*",
          auth: signedIn,
          upstream: "echo",
        },
      ]),
    );

  it("a unary POST reaches the origin whole, with Connect-Protocol-Version and Connect-Timeout-Ms", async () => {
    const body = JSON.stringify({ sentence: "I feel happy." });
    const sent = await sendMarked(connect(), "/connectrpc.eliza.v1.ElizaService/Say", {
      method: "POST",
      body,
      headers: {
        ...(await bearer()),
        "content-type": "application/json",
        "content-length": String(body.length),
        "connect-protocol-version": "1",
        "connect-timeout-ms": "15000",
      },
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "eliza", status: 200 });
    expect(sent.seen).toHaveLength(1);
    expect(sent.seen[0]).toMatchObject({
      method: "POST",
      path: "/connectrpc.eliza.v1.ElizaService/Say",
      body_bytes: body.length,
    });
    expect(sent.got).toMatchObject({
      "content-type": "application/json",
      "content-length": String(body.length),
      "connect-protocol-version": "1",
      "connect-timeout-ms": "15000",
    });
    expectForwardedAsAlice(sent.got);
  });

  it("a GET carries the message in the query, which reaches the origin exactly as sent", async () => {
    // The protocol's unary GET (connectrpc.com/docs/protocol, "Unary-Get-Request"), in the order
    // connect-python writes it: base64url of the message, the compression it was coded with.
    const query =
      "connect=v1&base64=1&compression=gzip&encoding=proto&message=H4sIAAAAAAAA_-Iq8k8ryc8rAQQAAP__3wMxEw4AAAA";
    const sent = await sendMarked(connect(), `/connectrpc.eliza.v1.ElizaService/Say?${query}`, {
      headers: await bearer(),
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "eliza", status: 200 });
    expect(sent.seen.map((s) => s.raw_target)).toEqual([`/connectrpc.eliza.v1.ElizaService/Say?${query}`]);
    expectForwardedAsAlice(sent.got);
  });
});

describe("gRPC-Web from a browser", () => {
  /**
   * A gRPC-Web server's answer (PROTOCOL-WEB.md): one data frame, then the trailers in a frame
   * whose flag byte is 0x80, in the body; the status also in headers, with CORS headers of the
   * origin's own, which the edge replaces with the policy's.
   */
  const frames = new Uint8Array([
    0x00,
    0x00,
    0x00,
    0x00,
    0x02,
    0x0a,
    0x00,
    0x80,
    0x00,
    0x00,
    0x00,
    0x0f,
    ...new TextEncoder().encode("grpc-status:0\r\n"),
  ]);
  const grpcWebOrigin = {
    async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
      const request = new Request(input, init);
      await request.arrayBuffer();
      return new Response(frames, {
        headers: {
          "content-type": "application/grpc-web+proto",
          "grpc-status": "0",
          "grpc-message": "",
          "access-control-allow-origin": "*",
          "access-control-expose-headers": "grpc-status, grpc-message, x-origin-secret",
          "x-seen-grpc-web": request.headers.get("x-grpc-web") ?? "absent",
          "x-seen-grpc-timeout": request.headers.get("grpc-timeout") ?? "absent",
        },
      });
    },
  };
  const grpcWeb = () =>
    harness(
      api(
        [
          {
            name: "grpc-web",
            methods: ["POST"],
            path: "/acme.users.v1.UserService/*",
            auth: signedIn,
            upstream: "grpc",
            cors: {
              allow_origins: [APP],
              allow_headers: ["authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"],
              expose_headers: ["grpc-status", "grpc-message"],
            },
          },
        ],
        { grpc: { service: "GRPC_WEB_ORIGIN", timeout_ms: 2000 } },
      ),
      {},
      { GRPC_WEB_ORIGIN: grpcWebOrigin },
    );

  it("the preflight for grpc-web's own headers is answered, before any token", async () => {
    const edge = grpcWeb();
    const response = await edge.fetch("/acme.users.v1.UserService/GetUser", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        // As a browser writes it: lower case, sorted, comma-joined.
        "access-control-request-headers": "authorization,content-type,grpc-timeout,x-grpc-web,x-user-agent",
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(response.headers.get("access-control-allow-methods")).toBe("POST");
    expect(response.headers.get("access-control-allow-headers")?.split(", ")).toEqual(
      expect.arrayContaining(["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"]),
    );
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "grpc-web", status: 204 });
  });

  it("the call reaches the origin with X-Grpc-Web and grpc-timeout; the page reads grpc-status and the trailer frame", async () => {
    const edge = grpcWeb();
    const response = await edge.fetch("/acme.users.v1.UserService/GetUser", {
      method: "POST",
      body: new Uint8Array([0x00, 0x00, 0x00, 0x00, 0x03, 0x0a, 0x01, 0x31]),
      headers: {
        ...(await bearer()),
        origin: APP,
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "grpc-timeout": "10S",
      },
    });
    expect(response.status).toBe(200);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "grpc-web", status: 200 });
    // The headers the server needed reached it.
    expect(response.headers.get("x-seen-grpc-web")).toBe("1");
    expect(response.headers.get("x-seen-grpc-timeout")).toBe("10S");
    // The status is the client's to read: in headers, exposed to the page by the policy (the
    // origin's own list, and its `*`, gone), and in the trailer frame, byte for byte.
    expect(response.headers.get("grpc-status")).toBe("0");
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(response.headers.get("access-control-expose-headers")).toBe("grpc-status, grpc-message");
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(frames);
  });
});

describe("OData and JSON:API query strings", () => {
  const queries = () =>
    harness(api([{ name: "data", methods: ["GET", "DELETE"], path: "/v1/**", auth: signedIn, upstream: "echo" }]));

  it.each([
    [
      "OData, with nested options parted by `;` inside $expand",
      "/v1/odata/Customers('ALFKI')/Orders?$filter=Freight%20gt%2010&$expand=Order_Details($select=Quantity;$filter=Quantity%20gt%205)&$orderby=OrderDate%20desc&$top=5&$count=true",
    ],
    [
      "JSON:API, with include, filter[…], fields[…] and page[…]",
      "/v1/articles?include=author,comments.author&filter[author.name]=Dan&fields[articles]=title,body&fields[people]=name&page[size]=10&sort=-created",
    ],
    [
      "JSON:API, with the brackets escaped as most clients send them",
      "/v1/articles?filter%5Btags%5D=web,api&fields%5Barticles%5D=title&page%5Bcursor%5D=eyJpZCI6NDJ9",
    ],
  ])("%s reaches the origin exactly as sent", async (_, target) => {
    // Every parameter name here is read as lenient parsers read it, looking for an access_token
    // or a method override (README: query rules): none is one, so nothing is taken out.
    const sent = await sendMarked(queries(), target, { headers: await bearer() });
    expect(sent.record).toMatchObject({ decision: "allow", route: "data", status: 200 });
    expect(sent.seen.map((s) => s.raw_target)).toEqual([target]);
    expectForwardedAsAlice(sent.got);
  });

  it("a JSON:API relationship DELETE reaches the origin with its body of resource identifiers", async () => {
    // JSON:API removes members of a to-many relationship with a DELETE whose body names them:
    // forwarded without it, the server would be asked to remove nothing (or refuse the request).
    const body = JSON.stringify({
      data: [
        { type: "comments", id: "12" },
        { type: "comments", id: "13" },
      ],
    });
    const sent = await sendMarked(queries(), "/v1/articles/1/relationships/comments", {
      method: "DELETE",
      body,
      headers: {
        ...(await bearer()),
        "content-type": "application/vnd.api+json",
        "content-length": String(body.length),
      },
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "data", status: 200 });
    expect(sent.seen).toHaveLength(1);
    expect(sent.seen[0]).toMatchObject({ method: "DELETE", body_bytes: body.length });
    expect(sent.got["content-type"]).toBe("application/vnd.api+json");
    expectForwardedAsAlice(sent.got);
  });
});

describe("tus resumable uploads from a browser", () => {
  const TUS_HEADERS = ["tus-resumable", "upload-length", "upload-metadata", "upload-offset", "upload-defer-length"];
  const tus = () =>
    harness(
      api([
        {
          name: "uploads",
          methods: ["POST", "HEAD", "PATCH", "DELETE"],
          path: "/files/**",
          auth: signedIn,
          upstream: "echo",
          cors: {
            allow_origins: [APP],
            allow_headers: ["authorization", "content-type", ...TUS_HEADERS],
            expose_headers: ["location", "tus-resumable", "upload-offset", "upload-length"],
          },
        },
      ]),
    );

  it("the preflight for a PATCH with tus's headers is answered", async () => {
    const edge = tus();
    const response = await edge.fetch("/files/24e533e02ec3bc40c387f1a0e460e216", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "PATCH",
        "access-control-request-headers": "authorization,content-type,tus-resumable,upload-offset",
      },
    });
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(response.headers.get("access-control-allow-methods")?.split(", ")).toContain("PATCH");
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "uploads", status: 204 });
  });

  it("a HEAD to resume reaches the origin as a HEAD, and its answer is the page's to read", async () => {
    // tus-js-client asks the upload URL for its Upload-Offset with a HEAD before it sends the rest.
    const sent = await sendMarked(tus(), "/files/24e533e02ec3bc40c387f1a0e460e216", {
      method: "HEAD",
      headers: { ...(await bearer()), origin: APP, "tus-resumable": "1.0.0" },
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "uploads", status: 200 });
    expect(sent.seen.map((s) => [s.method, s.headers["tus-resumable"]])).toEqual([["HEAD", "1.0.0"]]);
    expect(sent.response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(sent.response.headers.get("access-control-expose-headers")).toBe(
      "location, tus-resumable, upload-offset, upload-length",
    );
    expectForwardedAsAlice(sent.got);
  });

  it("a PATCH reaches the origin with its offset, its content type and every byte of its chunk", async () => {
    const chunk = new Uint8Array(65_536).fill(7);
    const sent = await sendMarked(tus(), "/files/24e533e02ec3bc40c387f1a0e460e216", {
      method: "PATCH",
      body: chunk,
      headers: {
        ...(await bearer()),
        origin: APP,
        "tus-resumable": "1.0.0",
        "upload-offset": "131072",
        "content-type": "application/offset+octet-stream",
        "content-length": String(chunk.length),
      },
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "uploads", status: 200 });
    expect(sent.seen).toHaveLength(1);
    expect(sent.seen[0]).toMatchObject({ method: "PATCH", body_bytes: chunk.length });
    expect(sent.got).toMatchObject({
      "tus-resumable": "1.0.0",
      "upload-offset": "131072",
      "content-type": "application/offset+octet-stream",
      "content-length": String(chunk.length),
    });
    expectForwardedAsAlice(sent.got);
  });
});

describe("Apollo GraphQL", () => {
  const graphql = () =>
    harness(
      api([
        {
          name: "graphql",
          methods: ["GET", "POST"],
          path: "/graphql",
          auth: signedIn,
          upstream: "echo",
          cors: {
            allow_origins: [APP],
            allow_headers: ["authorization", "content-type", "apollo-require-preflight", "x-apollo-operation-name"],
          },
        },
      ]),
    );

  it("the CSRF-prevention headers Apollo Server requires of a multipart upload reach it", async () => {
    // Apollo Server 4 refuses (400) a multipart/form-data request carrying neither header: it
    // is a simple request a cross-site form could send. Stripped at the edge, every upload fails.
    const boundary = "----apollo";
    const body = [
      `--${boundary}`,
      'Content-Disposition: form-data; name="operations"',
      "",
      '{"query":"mutation($file: Upload!) { upload(file: $file) }","variables":{"file":null}}',
      `--${boundary}`,
      'Content-Disposition: form-data; name="map"',
      "",
      '{"0":["variables.file"]}',
      `--${boundary}`,
      'Content-Disposition: form-data; name="0"; filename="a.txt"',
      "Content-Type: text/plain",
      "",
      "hello",
      `--${boundary}--`,
      "",
    ].join("\r\n");
    const sent = await sendMarked(graphql(), "/graphql", {
      method: "POST",
      body,
      headers: {
        ...(await bearer()),
        origin: APP,
        "content-type": `multipart/form-data; boundary=${boundary}`,
        "content-length": String(body.length),
        "apollo-require-preflight": "true",
        "x-apollo-operation-name": "Upload",
      },
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "graphql", status: 200 });
    expect(sent.seen[0]).toMatchObject({ method: "POST", body_bytes: body.length });
    expect(sent.got).toMatchObject({ "apollo-require-preflight": "true", "x-apollo-operation-name": "Upload" });
    expectForwardedAsAlice(sent.got);
  });

  it("a persisted query sent as a GET reaches the origin with its query exactly as sent", async () => {
    // Apollo Client's persisted-query link, with useGETForHashedQueries: the JSON escaped by
    // encodeURIComponent, one parameter per field.
    const query = [
      "operationName=Me",
      `variables=${encodeURIComponent(JSON.stringify({ first: 10 }))}`,
      `extensions=${encodeURIComponent(
        JSON.stringify({
          persistedQuery: {
            version: 1,
            sha256Hash: "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38",
          },
        }),
      )}`,
    ].join("&");
    const sent = await sendMarked(graphql(), `/graphql?${query}`, {
      headers: { ...(await bearer()), origin: APP, "apollo-require-preflight": "true" },
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "graphql", status: 200 });
    expect(sent.seen.map((s) => s.raw_target)).toEqual([`/graphql?${query}`]);
    expect(sent.got["apollo-require-preflight"]).toBe("true");
    expectForwardedAsAlice(sent.got);
  });
});
