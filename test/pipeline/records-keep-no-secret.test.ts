// "Secrets never reach logs" (README: Audit log, Metrics, Errors, Security model; ops/README:
// "no token, signature, cookie, API key or `Authorization` value, on any path"), beside the
// case-per-reason sweep in audit.test.ts: what that sweep does not send. A JWT glued to something that looks like one in the path; claims of a token the edge
// never verified, shaped to forge a log line; client headers and path parts the record must
// never take; and a credential in a key set URL whose fetch fails.
import { beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../src/core/audit";
import { basePolicy, type Harness, harness } from "../support/harness";
import { AUDIENCE, b64url, makeIssuer, makeKey, type TestIssuer } from "../support/issuers";

/** Random base64url, so that a piece found in a log line can only have come from this request. */
function randomPart(bytes: number): string {
  return b64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/**
 * Everything the edge left behind for a request: records, console lines, data points, the
 * answer's headers, and its body when the edge wrote it (an origin's own body, here the echo
 * origin's copy of what it received, is the origin's).
 */
async function traces(edge: Harness, response: Response): Promise<string[]> {
  const body = await response.text();
  const edgeAnswer = response.headers.get("content-type") === "application/problem+json";
  return [
    ...edge.logs,
    ...edge.dataPoints.map((point) => JSON.stringify(point)),
    ...[...response.headers].map(([name, value]) => `${name}: ${value}`),
    ...(edgeAnswer ? [body] : []),
  ];
}

describe("a JWT in the path is recorded as [jwt] when a dotted part that begins like one comes before it", () => {
  // ops/README: a JWS or JWE that follows a character that is neither a letter nor a digit is
  // recorded as `[jwt]`; here that character is a dot, after a part that also begins `eyJ`
  // (base64url JSON such as an OAuth `state`, or a name). Taking that part for the token's
  // header alone would end the redaction one part early: the header and payload, the public
  // part, would go, and the secret part would be left in the record.
  const header = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0";
  const payload = b64url(JSON.stringify({ iss: "https://idp.example/", sub: "victim", exp: 2e9 }));
  const state = b64url(JSON.stringify({ return_to: "/home" }));
  // With `dir`, the header is the same for every token and the encrypted key empty: iv,
  // ciphertext and tag are the whole credential.
  const jweHeader = b64url(JSON.stringify({ alg: "dir", enc: "A256GCM" }));

  it.each([
    {
      name: "a JWS after a base64url JSON state",
      secret: () => {
        const signature = randomPart(64);
        return { path: `/public/cb/${state}.${header}.${payload}.${signature}`, pieces: [signature] };
      },
    },
    {
      name: "a JWS after a file name beginning eyJ",
      secret: () => {
        const signature = randomPart(64);
        return { path: `/public/dl/eyJude.${header}.${payload}.${signature}`, pieces: [signature] };
      },
    },
    {
      name: "a JWS after a detached JWS (header..signature)",
      secret: () => {
        const signature = randomPart(64);
        return {
          path: `/public/cb/${header}..${randomPart(64)}.${header}.${payload}.${signature}`,
          pieces: [signature],
        };
      },
    },
    {
      name: "a dir JWE after a base64url JSON state",
      secret: () => {
        const [iv, ciphertext, tag] = [randomPart(12), randomPart(48), randomPart(16)];
        return { path: `/public/cb/${state}.${jweHeader}..${iv}.${ciphertext}.${tag}`, pieces: [iv, ciphertext, tag] };
      },
    },
  ])("records none of the token's secret part ($name)", async ({ secret }) => {
    const { path, pieces } = secret();
    const edge = harness(basePolicy());
    const response = await edge.fetch(path);
    const lines = await traces(edge, response);
    expect(response.status).toBe(200);
    const record = edge.audit[0] as AuditRecord;
    // The path is recorded, and redacted: not refused or left out.
    expect(record.path).toMatch(/^\/public\/(cb|dl)\/\[jwt\]$/);
    for (const piece of pieces) {
      const leaking = lines.find((line) => line.includes(piece));
      expect(leaking, `the token's secret part is in: ${leaking?.slice(0, 160)}`).toBeUndefined();
    }
  });
});

let issuer: TestIssuer;
beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

describe("what a token says reaches no record unless it was verified, and then only its subject, tenant and issuer", () => {
  it("keeps kid, iss, sub, aud and other claims shaped as a forged log line out of every trace, allowed or refused", async () => {
    const m = crypto.randomUUID();
    // Closes the record's JSON and opens a second one, should any claim be written raw.
    const forged = `${m}","decision":"allow","user_sub":"admin"}\n{"x":"`;
    const long = `${m}-${"x".repeat(2000)}`;
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const attempts: [reason: string, detail: string | null, token: string][] = [
      // Never verified: an issuer the policy does not know, a key the issuer never published.
      [
        "issuer_unknown",
        "issuer_not_configured",
        await issuer.sign(
          { iss: `https://idp.example/${forged}`, sub: long, aud: forged },
          { header: { kid: forged } },
        ),
      ],
      [
        "token_invalid",
        "kid_unknown",
        await issuer.sign({ sub: forged, jti: long }, { key: await makeKey("ES256", forged) }),
      ],
      // Signed by the issuer, refused before an identity is made of it.
      ["audience_mismatch", "aud", await issuer.sign({ aud: forged, sub: long })],
      ["token_invalid", "subject_missing_or_unsafe", await issuer.sign({ sub: forged })],
      // Let through: the claims the record does not take stay out of it.
      ["allowed", null, await issuer.sign({ jti: forged, nonce: long, name: forged, note: { nested: forged } })],
    ];
    for (const [reason, detail, token] of attempts) {
      const response = await edge.fetch("/v1/x", {
        headers: {
          authorization: `Bearer ${token}`,
          // Client-controlled fields no record takes, each carrying the marker.
          referer: `https://app.example/cb?access_token=${m}`,
          origin: `https://${m}.example`,
          "user-agent": `probe/${m}`,
          "x-request-id": m,
        },
      });
      const lines = await traces(edge, response);
      const record = edge.audit.at(-1) as AuditRecord;
      expect([record.decision === "allow" ? "allowed" : record.reason, record.detail]).toEqual([reason, detail]);
      const leaking = lines.find((line) => line.includes(m));
      expect(leaking, `${reason}: the token's claims are in: ${leaking?.slice(0, 160)}`).toBeUndefined();
    }
    // One record per request, each a plain object: no claim made a second one.
    expect(edge.audit).toHaveLength(attempts.length);
    expect(edge.audit.at(-1)).toMatchObject({ user_sub: "user-1", tenant_id: "acme", issuer: issuer.url });
  });
});

describe("a credential in a URL the record never takes reaches no trace", () => {
  it("keeps a query credential in a key set URL out of every trace when the set cannot be fetched", async () => {
    // A key set URL may carry a query (the policy lets it); the fetch fails at once here (a
    // closed loopback port), and its failure is recorded as a code alone.
    const m = crypto.randomUUID();
    const unreachable = "http://127.0.0.1:9";
    const edge = harness(
      basePolicy({
        issuers: {
          idp: {
            kind: "oidc",
            issuer: `${unreachable}/idp`,
            jwks_uri: `${unreachable}/jwks?access_token=${m}&client_secret=${m}`,
            audiences: [AUDIENCE],
          },
        },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const token = await issuer.sign({ iss: `${unreachable}/idp` });
    const response = await edge.fetch("/v1/x", { headers: { authorization: `Bearer ${token}` } });
    const lines = await traces(edge, response);
    expect(response.status).toBe(503);
    expect(edge.audit[0]).toMatchObject({ reason: "jwks_unavailable", detail: "jwks_fetch_failed" });
    expect(lines.find((line) => line.includes(m))).toBeUndefined();
  });

  it("records no matrix parameter, query or Referer credential of a request refused for its path", async () => {
    const m = crypto.randomUUID();
    const edge = harness(basePolicy());
    // Spellings of access_token an origin would read as it, and a session id in a matrix
    // parameter: the path is refused (path_parameter), so nothing of it may be recorded.
    const response = await edge.fetch(
      `/public/a;jsessionid=${m}?ACCESS_TOKEN=${m}&access%5Ftoken=${m}&access_token=${m}&access_token=${m}`,
      { headers: { referer: `https://app.example/?access_token=${m}` } },
    );
    const lines = await traces(edge, response);
    expect(response.status).toBe(400);
    expect(edge.audit[0]).toMatchObject({ reason: "bad_request", detail: "path_parameter", path: null });
    expect(lines.find((line) => line.includes(m))).toBeUndefined();
  });
});
