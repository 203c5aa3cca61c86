/// <reference types="vite/client" />
// The metrics data point (src/core/metrics.ts, written by src/pipeline/audit.ts) and what
// ops/README.md promises about it, against Analytics
// Engine's documented limits (developers.cloudflare.com/analytics/analytics-engine/limits:
// at most 20 blobs, 20 doubles and one index per point; all blobs together at most 16 KB;
// the index at most 96 bytes). The local binding checks none of these (it accepts an index of
// any length and blobs of any size), so the bounds are asserted on the row itself.
import { beforeAll, describe, expect, it } from "vitest";
import { auditRecord } from "../../src/core/audit";
import { compilePolicy } from "../../src/core/policy";
import { BLOB_COLUMNS, columnOf, metricsDataPoint } from "../../src/core/metrics";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";

/** Analytics Engine's per-point limits; "16 KB" read as the smaller 16,000 bytes, to be safe. */
const AE = { blobs: 20, doubles: 20, indexes: 1, indexBytes: 96, blobBytes: 16_000 } as const;

/** Where token_verify_ms sits in `doubles`. */
const DOUBLE_TOKEN_VERIFY = Number(columnOf("token_verify_ms").slice("double".length)) - 1;

const utf8 = new TextEncoder();
const bytes = (value: unknown) => utf8.encode(value as string).length;
const blob = (point: { blobs: string[] }, field: (typeof BLOB_COLUMNS)[number]) =>
  point.blobs[BLOB_COLUMNS.indexOf(field)];

let idp: TestIssuer;
beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

describe("a data point within Analytics Engine's limits, whatever a request or policy carries", () => {
  it("every field at its longest at once, in 4-byte characters: within every per-point limit, no character split", () => {
    // Fields the policy or the client choose are long and non-ASCII here (the policy checks
    // may refuse some of this; the row must stay within bounds without relying on them).
    const long = "🦀".repeat(1000);
    const failedOpen = Array.from({ length: 32 }, (_, i) => `limit-${String(i).padStart(2, "0")}-${"x".repeat(55)}`);
    const record = auditRecord({
      now: 2_000,
      requestId: long,
      startedAt: 1_000,
      method: long,
      canonicalPath: `/${long}`,
      route: { name: long, matchedRule: `policy:${long}@v9007199254740991`, upstreamName: long },
      identity: { subject: long, tenant: long, issuer: long, tokenHash: "9f86d081884c7d65" },
      outcome: { decision: "deny", reason: "token_invalid", detail: long, limit: long, failedOpen },
      status: 401,
      timings: { authMs: 1, limitMs: 1, upstreamMs: 1 },
      cf: { colo: long, asn: Number.MAX_SAFE_INTEGER, country: long },
      keySource: "fetch",
    });
    const point = metricsDataPoint({
      record,
      tokenCheck: { issuerId: long, verifyMs: Number.POSITIVE_INFINITY, keySource: "fetch" },
      // The longest text form of an IPv6 address (45 characters), kept on an invalid-token refusal.
      clientIp: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    });
    expect(point.indexes).toHaveLength(AE.indexes);
    expect(bytes(point.indexes[0])).toBeLessThanOrEqual(AE.indexBytes);
    expect(point.blobs.length).toBeLessThanOrEqual(AE.blobs);
    expect(point.doubles.length).toBeLessThanOrEqual(AE.doubles);
    expect(point.blobs.reduce((sum, value) => sum + bytes(value), 0)).toBeLessThanOrEqual(AE.blobBytes);
    // Every cut fell between characters: half a surrogate pair would come back from UTF-8 as U+FFFD.
    for (const value of [...point.indexes, ...point.blobs]) {
      expect(new TextDecoder().decode(utf8.encode(value))).toBe(value);
    }
    // Cut, yet the row still says what it is about.
    expect(blob(point, "failed_open")?.split(",")).toEqual(failedOpen);
    expect(blob(point, "client_ip")).toBe("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
    expect(point.doubles.every(Number.isFinite)).toBe(true);
    expect(point.doubles[DOUBLE_TOKEN_VERIFY]).toBe(-1);
  });
});

describe("blob16 ties a change in behaviour to a policy deploy", () => {
  // Metrics cut blob16 at 256 bytes: `policy:<246 characters>@v17` would be stored as
  // `policy:<246 characters>@v1`, a wrong version. A route name is at most 64 characters, so
  // the longest keeps its version whole, and its name whole in blob3.
  it("the longest route name the policy takes keeps the policy version in matched_rule (blob16), and whole in route (blob3)", async () => {
    const route = (name: string) =>
      basePolicy({
        version: 17,
        routes: [{ name, methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" }],
      });
    expect(() => compilePolicy(route(`r${"x".repeat(64)}`))).toThrow(/routes\[0\]\.name: at most 64 characters/);
    const name = `r${"x".repeat(63)}`;
    const edge = harness(route(name));
    await (await edge.fetch("/public/x")).arrayBuffer();
    const point = edge.dataPoints.at(-1) as { blobs: string[] };
    expect(blob(point, "route")).toBe(name);
    expect(blob(point, "matched_rule")).toBe(`policy:${name}@v17`);
  });
});

describe("personal data in the metrics", () => {
  it("a subject mapped from the email claim lands in blob5, and ops/README's personal-data section says so", async () => {
    // The policy may map the subject to `email` (README: claims.subject: "email"); the data
    // point then keeps the user's address in blob5 for Analytics Engine's three months,
    // where ops/README calls user_sub "a pseudonymous identifier".
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE], claims: { subject: "email" } } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const address = `ada.${crypto.randomUUID().slice(0, 8)}@example.com`;
    const token = await idp.sign({ email: address, email_verified: true });
    const response = await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    const point = edge.dataPoints.at(-1) as { blobs: string[] };
    expect(blob(point, "user_sub")).toBe(address);

    const opsReadme: string = (await import("../../ops/README.md?raw")).default;
    const personal = opsReadme.split("### Personal data")[1]?.split("\n## ")[0] ?? "";
    const aboutUserSub = personal.split("\n- ").filter((bullet) => bullet.includes("`user_sub`"));
    expect(aboutUserSub.length).toBeGreaterThan(0);
    // Declared: user_sub is whatever claim the policy maps, an email address included.
    expect(aboutUserSub.join("\n")).toMatch(/e-?mail/i);
  });
});
