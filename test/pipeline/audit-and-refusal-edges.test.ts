// The audit record, the metrics data point and the refusal answer at their edges: each test
// here fails if the check it names is dropped or loosened. The redaction of a
// JWT in the path first (a credential that reaches a log line is the worst failure of this
// part), then the record's Cloudflare fields, the data point's byte budgets and Retry-After.
import { describe, expect, it } from "vitest";
import { type AuditRecord, auditRecord } from "../../src/core/audit";
import { problemResponse } from "../../src/core/deny";
import { MAX_BLOB_BYTES, MAX_INDEX_BYTES, metricsDataPoint, truncateUtf8 } from "../../src/core/metrics";
import { basePolicy, type Harness, harness } from "../support/harness";
import { b64url } from "../support/issuers";

/** Random base64url, so that a piece found in a log line can only have come from this request. */
function randomPart(bytes: number): string {
  return b64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** A JWS with a random signature: the signature is the piece that must reach no trace. */
function freshJws(): { jws: string; signature: string } {
  const header = b64url(JSON.stringify({ alg: "ES256", kid: "k1" }));
  const payload = b64url(JSON.stringify({ sub: "victim", exp: 2e9 }));
  const signature = randomPart(64);
  return { jws: `${header}.${payload}.${signature}`, signature };
}

/** Every line the edge left for its requests: records, console lines, data points. */
function traces(edge: Harness): string[] {
  return [...edge.logs, ...edge.dataPoints.map((point) => JSON.stringify(point))];
}

const utf8Bytes = (value: string) => new TextEncoder().encode(value).length;

describe("a JWT after an escape is recorded as [jwt] wherever the escape stands", () => {
  // The escape's `%` may end a longer separator before the run (`/%3D…`, a `/` then the
  // escape), not only be the separator alone (`token%3D…`); and the run may be the path's first.
  it.each([
    { path: "/public/cb/%3D", status: 200, recorded: "/public/cb/%3D[jwt]" },
    // Unrouted: refused 404, and the path is recorded all the same (route_not_found).
    { path: "/%3D", status: 404, recorded: "/%3D[jwt]" },
    { path: "/public/cb/%20", status: 200, recorded: "/public/cb/%20[jwt]" },
  ])("after $path", async ({ path, status, recorded }) => {
    const { jws, signature } = freshJws();
    const edge = harness(basePolicy());
    const response = await edge.fetch(`${path}${jws}`);
    await response.arrayBuffer();
    expect(response.status).toBe(status);
    expect(edge.audit).toHaveLength(1);
    expect((edge.audit[0] as AuditRecord).path).toBe(recorded);
    const leaking = traces(edge).find((line) => line.includes(signature));
    expect(leaking, `the signature is in: ${leaking?.slice(0, 160)}`).toBeUndefined();
  });
});

describe("a JWT glued by - or _ is recorded as [jwt] after an eyJ that starts no token in the same part", () => {
  // Every `eyJ` in a part is a candidate start, not only the first: `heyJude` begins with one
  // glued to a letter (no token), and the token glued on by `-` comes after it.
  it.each(["heyJude-", "MoneyJar_", "sheyJa.heyJude_"])("after %s", async (word) => {
    const { jws, signature } = freshJws();
    const edge = harness(basePolicy());
    const response = await edge.fetch(`/public/cb/${word}${jws}`);
    await response.arrayBuffer();
    expect(response.status).toBe(200);
    expect((edge.audit[0] as AuditRecord).path).toBe(`/public/cb/${word}[jwt]`);
    const leaking = traces(edge).find((line) => line.includes(signature));
    expect(leaking, `the signature is in: ${leaking?.slice(0, 160)}`).toBeUndefined();
  });
});

describe("a JWT glued straight onto a letter or digit is recorded as [jwt]", () => {
  // `/cb/1eyJ…` (a counter before the token), `/cb/tokeneyJ…` (a name with no separator): the
  // credential is no less one for what stands before it; the word or digit stays.
  it.each(["1", "token", "heyJude"])("after %s", async (word) => {
    const { jws, signature } = freshJws();
    const edge = harness(basePolicy());
    const response = await edge.fetch(`/public/cb/${word}${jws}`);
    await response.arrayBuffer();
    expect(response.status).toBe(200);
    const recorded = (edge.audit[0] as AuditRecord).path as string;
    expect(recorded.startsWith("/public/cb/")).toBe(true);
    expect(recorded.endsWith("[jwt]")).toBe(true);
    expect(word.startsWith(recorded.slice("/public/cb/".length, -"[jwt]".length))).toBe(true);
    const leaking = traces(edge).find((line) => line.includes(signature));
    expect(leaking, `the signature is in: ${leaking?.slice(0, 160)}`).toBeUndefined();
  });

  it("keeps the word when the token is glued by a digit", async () => {
    const { jws } = freshJws();
    const edge = harness(basePolicy());
    const response = await edge.fetch(`/public/cb/page2${jws}.json`);
    await response.arrayBuffer();
    expect((edge.audit[0] as AuditRecord).path).toBe("/public/cb/page2[jwt].json");
  });
});

describe("a part that only looks like a token's start is recorded as it is", () => {
  // Redaction hides what the path was: a bare `eyJ` (no header after it) starts no token; nor
  // does an `eyJ…` part followed by one that only holds `eyJ` inside (a JWS's payload begins
  // with it), or by four parts of which the last is empty (a JWE's tag is not).
  it.each([
    "/public/eyJ.eyJson.txt",
    "/public/eyJude.heyJo.mp3",
    "/public/eyJude.a.b.c.~x",
    "/public/eyJude.a.b.c.!x",
    // A start of JSON with whitespace inside a word: `eyA`, `ewk`.
    "/public/keyAuth-1.2.3.tar.gz",
    "/public/surveyAnswers.2024.05.17.csv",
    "/public/brewkit-1.0.0.tar.gz",
  ])("%s", async (path) => {
    const edge = harness(basePolicy());
    const response = await edge.fetch(path);
    await response.arrayBuffer();
    expect(response.status).toBe(200);
    expect(edge.audit.map((record) => record.path)).toEqual([path]);
  });
});

describe("the record's Cloudflare metadata", () => {
  it("records an empty colo or country as null, not as an empty string", async () => {
    const edge = harness(basePolicy());
    const response = await edge.fetch(
      new Request("https://edge.test/public/x", { cf: { colo: "", country: "", asn: 64500 } }),
    );
    await response.arrayBuffer();
    expect(edge.audit[0]).toMatchObject({ edge_pop: null, client_country: null, client_asn: 64500 });
  });
});

describe("the data point's byte budgets hold for characters of three UTF-8 bytes", () => {
  // One UTF-16 unit may be three UTF-8 bytes ("€"): a string whose length is within the
  // budget may still be three times over it in bytes.
  it("cuts a tenant and a subject of three-byte characters to the index and blob budgets, at a character", () => {
    const record = auditRecord({
      now: 1_000,
      requestId: "r-1",
      startedAt: 1_000,
      method: "GET",
      canonicalPath: "/v1/x",
      identity: { subject: "€".repeat(100), tenant: "€".repeat(40), issuer: "https://idp.example/", tokenHash: "h" },
      outcome: { decision: "allow" },
      status: 200,
      timings: {},
    });
    const point = metricsDataPoint({ record });
    expect(point.indexes[0]).toBe("€".repeat(Math.floor(MAX_INDEX_BYTES / 3)));
    expect(point.blobs[4]).toBe("€".repeat(Math.floor(MAX_BLOB_BYTES / 3)));
    expect(utf8Bytes(point.indexes[0])).toBeLessThanOrEqual(MAX_INDEX_BYTES);
    expect(truncateUtf8("€".repeat(60), 96)).toBe("€".repeat(32));
  });
});

describe("Retry-After on a refusal", () => {
  // Whole seconds, rounded up (a client retrying at the floor would come back too early), and
  // never negative; a zero is still sent (retry now), not left out.
  it.each([
    { seconds: 1.2, header: "2" },
    { seconds: 0.001, header: "1" },
    { seconds: 0, header: "0" },
    { seconds: -5, header: "0" },
  ])("$seconds s is sent as $header", async ({ seconds, header }) => {
    const response = problemResponse("rate_limited", {
      requestId: "r-1",
      realm: "portcullis",
      retryAfterSeconds: seconds,
    });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe(header);
    expect(response.headers.get("x-request-id")).toBe("r-1");
    expect(await response.json()).toMatchObject({ reason: "rate_limited", request_id: "r-1", status: 429 });
  });

  it("is absent when no retry time is given", () => {
    const response = problemResponse("forbidden", { requestId: "r-1", realm: "portcullis" });
    expect(response.headers.has("retry-after")).toBe(false);
  });
});
