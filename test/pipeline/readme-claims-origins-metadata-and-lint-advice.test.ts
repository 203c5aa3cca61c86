// README claims checked against the code: origins that authenticate from Authorization (the
// Security model), a loopback `resource_metadata`, and the advice the build gives for a route
// every request of which a reading refuses. Pipeline tests run against the loopback echo
// origin; lint tests compile as scripts/compile-policy.mjs does (the validator, then the lint as
// deployed).
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { compileStepProblems } from "../support/policy-compile-step";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("an origin that authenticates each request itself from Authorization (README, Security model)", () => {
  // README: an S3-compatible store's AWS Signature V4 cannot sit behind the edge, public
  // routes included: its Authorization is stripped, and the Host the signature covers is
  // replaced by the upstream's. Shown by what reached the origin, so an operator reading the
  // sentence can trust that the store would see an unsigned request for another host.
  it("a SigV4-signed GET on a public route reaches the origin without Authorization, Host the upstream's", async () => {
    const edge = harness(basePolicy());
    const sigv4 =
      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/s3/aws4_request, " +
      "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" +
      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
    const sent = await sendMarked(edge, "/public/bucket/report.csv", {
      headers: {
        authorization: sigv4,
        "x-amz-date": "20250101T000000Z",
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
      },
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "public", reason: null });
    expect(sent.seen.map((s) => `${s.method} ${s.raw_target}`)).toEqual(["GET /public/bucket/report.csv"]);
    expect(sent.got.authorization).toBeUndefined();
    expect(sent.got.host).toBe(new URL(echoOrigin).host);
    expect(sent.got["x-forwarded-host"]).toBe("edge.test");
    // The signed headers themselves go on as sent: only what the signature is checked against is gone.
    expect(sent.got["x-amz-date"]).toBe("20250101T000000Z");
    expect(sent.got["x-amz-content-sha256"]).toBe("UNSIGNED-PAYLOAD");
  });

  // README: tus-js-client's `overridePatchMethod` sends each chunk as a POST carrying
  // `X-HTTP-Method-Override: PATCH`; the edge authorises the real method and strips the
  // override, so the tus server receives a POST (which tusd reads as a new upload, not a chunk).
  it("tus-js-client's overridePatchMethod chunk arrives as a POST, the override gone, its bytes whole", async () => {
    const policy: PolicyDocument = basePolicy({
      issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
      routes: [
        {
          name: "uploads",
          methods: ["POST", "HEAD", "PATCH"],
          path: "/files/**",
          auth: { issuers: ["idp"] },
          upstream: "echo",
        },
      ],
    });
    const chunk = new Uint8Array(4096).fill(9);
    const sent = await sendMarked(harness(policy), "/files/24e533e02ec3bc40c387f1a0e460e216", {
      method: "POST",
      body: chunk,
      headers: {
        authorization: `Bearer ${await issuer.sign({})}`,
        "x-http-method-override": "PATCH",
        "tus-resumable": "1.0.0",
        "upload-offset": "0",
        "content-type": "application/offset+octet-stream",
      },
    });
    expect(sent.record).toMatchObject({ decision: "allow", route: "uploads", method: "POST" });
    expect(sent.seen.map((s) => [s.method, s.body_bytes])).toEqual([["POST", chunk.length]]);
    expect(sent.got["x-http-method-override"]).toBeUndefined();
    expect(sent.got).toMatchObject({ "tus-resumable": "1.0.0", "upload-offset": "0" });
  });
});

describe("a loopback resource_metadata (README, Authorisation: http only for a loopback host)", () => {
  // The local stack's MCP server publishes its metadata on 127.0.0.1; the validator refuses
  // plain http elsewhere (policy-operator-mistakes.test.ts), and must take it here, as written,
  // into the challenge an MCP client reads.
  it("http://127.0.0.1:8787/… is taken, and the route's 401 names it", async () => {
    const metadata = "http://127.0.0.1:8787/.well-known/oauth-protected-resource/mcp";
    const policy: PolicyDocument = basePolicy({
      issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
      routes: [
        {
          name: "mcp",
          methods: ["GET", "POST", "DELETE"],
          path: "/mcp",
          auth: { issuers: ["idp"], resource_metadata: metadata },
          upstream: "echo",
        },
      ],
    });
    const sent = await sendMarked(harness(policy), "/mcp", { method: "POST", body: "{}" });
    expect(sent.record).toMatchObject({ decision: "deny", route: "mcp", reason: "token_missing" });
    expect(sent.response.headers.get("www-authenticate")).toBe(
      `Bearer realm="portcullis", resource_metadata="${metadata}"`,
    );
    expect(sent.seen).toEqual([]);
  });
});

describe("the lint never asks an operator to count a route or ip limit that no other route can count", () => {
  // README (Security model): the build names a route every request of which a reading refuses,
  // "with the route its path is read as and what to write". Where the route read as counts a
  // `route` or `ip` limit, nothing written on the refused route can satisfy it (route-demands.ts
  // `guardsAtLeast`: another route's is never the same counter): the advice is one that can be
  // followed, lifting that limit off the route read as, or dropping the route.
  const idp = { kind: "oidc", issuer: "https://idp.example.com", audiences: ["https://api.example.com"] };
  const ceiling = { name: "ui-ceiling", key: "route", limit: 1000, window_s: 60 };
  const springdoc = (htmlLimits: unknown[]): unknown => ({
    version: 1,
    upstreams: { api: { url: "https://origin.example.com" } },
    issuers: { idp },
    routes: [
      {
        name: "swagger-ui",
        methods: ["GET"],
        path: "/swagger-ui/**",
        auth: "public",
        upstream: "api",
        limits: [ceiling],
      },
      {
        name: "swagger-ui-html",
        methods: ["GET"],
        path: "/swagger-ui.html",
        auth: "public",
        upstream: "api",
        limits: htmlLimits,
      },
      { name: "api", methods: ["GET", "POST"], path: "/**", auth: { issuers: ["idp"] }, upstream: "api" },
    ],
  });

  it("after the route counts the same route ceiling, the build still names it, and no longer asks it to count them", () => {
    const problems = compileStepProblems(springdoc([ceiling]));
    // Still a dead route (every request of it is refused as ambiguous_format): the build is right to stop.
    expect(problems).toEqual([
      expect.stringMatching(/^routes\[1\] \(swagger-ui-html\): GET never reaches it: .*ambiguous_format/),
    ]);
    // Current message: "… which counts limits this route does not (a route or ip limit is its
    // own route's): count them here too", the same as before the ceiling was copied.
    expect(problems[0]).not.toContain("count them here too");
  });
});
