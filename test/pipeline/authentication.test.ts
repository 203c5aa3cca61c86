// Token verification through the whole pipeline: each attack is asserted by its deny
// reason, and by what (nothing) reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import {
  AUDIENCE,
  attackerHits,
  b64url,
  COMMA_SCHEMES,
  issuerServer,
  makeIssuer,
  makeKey,
  type TestIssuer,
} from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;
let rsaIssuer: TestIssuer;

function policyFor(...issuers: TestIssuer[]): PolicyDocument {
  const entries = Object.fromEntries(
    issuers.map((iss, i) => [`idp${i}`, { kind: "oidc" as const, issuer: iss.url, audiences: [AUDIENCE] }]),
  );
  const ids = Object.keys(entries);
  return basePolicy({
    issuers: entries,
    routes: [
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
      {
        name: "payments",
        methods: ["POST"],
        path: "/v1/payments",
        auth: { issuers: ids, scopes: { all_of: ["payments:write"] }, groups: { any_of: ["payments-writer"] } },
        upstream: "echo",
      },
      {
        name: "tenant",
        methods: ["GET"],
        path: "/v1/tenants/:tenant/**",
        auth: { issuers: ids, scopes: { all_of: ["api:read"] } },
        upstream: "echo",
      },
      {
        name: "admin",
        methods: ["GET"],
        path: "/v1/admin/**",
        auth: {
          issuers: ids,
          scopes: { any_of: ["admin:read", "admin:write"] },
          claims: [{ claim: "amr", one_of: ["mfa", "hwk"] }],
        },
        upstream: "echo",
      },
      {
        name: "read",
        methods: ["GET", "HEAD"],
        path: "/v1/**",
        auth: { issuers: ids, scopes: { all_of: ["api:read"] } },
        upstream: "echo",
      },
    ],
  });
}

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
  rsaIssuer = await makeIssuer("RS256");
});

describe("a valid token", () => {
  it("reaches the origin with identity headers the edge wrote, and no credentials", async () => {
    const edge = harness(policyFor(issuer, rsaIssuer));
    const token = await issuer.sign({
      sub: "alice",
      tenant_id: "acme",
      scope: "api:read extra",
      email: "alice@example.com",
      groups: ["eng", "ops"],
    });
    const { response, seen, record } = await sendMarked(edge, "/v1/things?q=1", {
      headers: {
        authorization: `Bearer ${token}`,
        "x-user-sub": "mallory",
        X_User_Sub: "mallory",
        "x-tenant": "evil",
        "x-tenant-id": "evil",
        cookie: "CF_Authorization=abc; theme=dark",
      },
    });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    const headers = seen[0]!.headers;
    expect(headers["x-user-sub"]).toBe("alice");
    expect(headers["x-tenant"]).toBe("acme");
    expect(headers["x-user-scope"]).toBe("api:read extra");
    expect(headers["x-user-email"]).toBe("alice@example.com");
    expect(headers["x-user-groups"]).toBe("eng,ops");
    expect(headers["x-user-iss"]).toBe(issuer.url);
    expect(headers.authorization).toBeUndefined();
    expect(headers["x-tenant-id"]).toBeUndefined();
    expect(headers.x_user_sub).toBeUndefined();
    expect(headers.cookie).toBe("theme=dark");
    expect(record).toMatchObject({ decision: "allow", user_sub: "alice", tenant_id: "acme", route: "read" });
    expect(record?.token_hash).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.stringify(edge.audit)).not.toContain(token.split(".")[2]);
  });

  it("verifies RS256 tokens from a second trusted issuer", async () => {
    const edge = harness(policyFor(issuer, rsaIssuer));
    const token = await rsaIssuer.sign({ sub: "bob" });
    const { response, seen } = await sendMarked(edge, "/v1/x", { headers: { authorization: `bearer ${token}` } });
    expect(response.status).toBe(200);
    expect(seen[0]!.headers["x-user-sub"]).toBe("bob");
  });

  it("audits the token as the first 16 hex characters of its signed part's SHA-256, verified or cached", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign({ sub: "alice" });
    const signedPart = token.slice(0, token.lastIndexOf("."));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(signedPart)));
    const expected = [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
    for (let i = 0; i < 2; i++) {
      const { response, record } = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
      expect(response.status).toBe(200);
      expect(record?.token_hash).toBe(expected);
    }
    // blob7 is the key source: the second request was served by the verified-token cache.
    expect(edge.dataPoints.map((point) => point.blobs?.[6])).toEqual([
      expect.not.stringMatching("token_cache"),
      "token_cache",
    ]);
  });

  it("accepts the scp array form of scopes", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign({ scope: undefined, scp: ["api:read"] });
    const { response } = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
  });
});

describe("credential extraction (RFC 6750)", () => {
  const presentations: [label: string, headers: Record<string, string>, status: number, reason: string][] = [
    ["no credentials", {}, 401, "token_missing"],
    ["Basic scheme", { authorization: "Basic dXNlcjpwYXNz" }, 401, "token_missing"],
    ["Bearer without a token", { authorization: "Bearer" }, 400, "token_malformed"],
    ["comma-joined value", { authorization: "Bearer aaa, Bearer bbb" }, 400, "token_malformed"],
    ["comma-joined, a Bearer second", { authorization: "Basic dXNlcjpwYXNz, Bearer aaa" }, 400, "token_malformed"],
    ...COMMA_SCHEMES.map((authorization): [string, Record<string, string>, number, string] => [
      authorization.split(" ")[0] as string,
      { authorization },
      401,
      "token_missing",
    ]),
    ["a tab after the scheme", { authorization: "Bearer\taaa.bbb.ccc" }, 400, "token_malformed"],
    ["extra parts", { authorization: "Bearer aaa.bbb.ccc extra" }, 400, "token_malformed"],
    ["two spaces", { authorization: "Bearer  aaa.bbb.ccc" }, 400, "token_malformed"],
  ];
  it.each(presentations)("%s -> %s %s", async (_label, headers, status, reason) => {
    const edge = harness(policyFor(issuer));
    const { response, body, seen } = await sendMarked(edge, "/v1/x", { headers: headers as Record<string, string> });
    expect(response.status).toBe(status);
    expect(body?.reason).toBe(reason);
    expect(seen).toHaveLength(0);
    if (status === 401) expect(response.headers.get("www-authenticate")).toMatch(/^Bearer realm="portcullis"/);
    if (status === 400) expect(response.headers.get("www-authenticate")).toContain('error="invalid_request"');
  });

  it("refuses two Authorization headers", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign();
    const m = marker();
    const headers = new Headers({ "x-test-marker": m });
    headers.append("authorization", `Bearer ${token}`);
    headers.append("authorization", `Bearer ${token}`);
    const response = await edge.fetch(new Request("https://edge.test/v1/x", { headers }));
    expect(response.status).toBe(400);
    expect(((await response.json()) as { reason: string }).reason).toBe("token_malformed");
    expect(edge.audit.at(-1)?.detail).toBe("multiple_credentials");
    expect(await originSaw(m)).toHaveLength(0);
  });

  it("does not accept a token in the query string, and refuses one sent both ways", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign();
    const only = await sendMarked(edge, `/v1/x?access_token=${token}`);
    expect(only.response.status).toBe(401);
    expect(only.body?.reason).toBe("token_missing");
    expect(only.record?.detail).toBe("query_token_not_accepted");
    expect(only.seen).toHaveLength(0);
    const both = await sendMarked(edge, `/v1/x?access_token=${token}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(both.response.status).toBe(400);
    expect(both.body?.reason).toBe("token_malformed");
    expect(both.record?.detail).toBe("multiple_methods");
    expect(both.seen).toHaveLength(0);
    // However a lenient origin parser would spell it, the query token is refused with the header
    // (PHP also ends a name at a NUL and ignores what follows an array's `]`).
    for (const query of [
      "a=1;access_token=x",
      "ACCESS_TOKEN=x",
      "%20access_token=x",
      "access_token[]=x",
      "access_token%00=x",
      "access_token%00junk=x",
      "access_token[0]x=x",
      "access_token%00%=x",
      "access_token%5B%5D%=x",
    ]) {
      const sneaked = await sendMarked(edge, `/v1/x?${query}`, { headers: { authorization: `Bearer ${token}` } });
      expect({ query, status: sneaked.response.status, detail: sneaked.record?.detail }).toEqual({
        query,
        status: 400,
        detail: "multiple_methods",
      });
      expect(sneaked.seen).toHaveLength(0);
    }
  });
});

function forge(header: Record<string, unknown>, payload: Record<string, unknown>, signature = "AAAA"): string {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${signature}`;
}

async function hmac(keyBytes: Uint8Array, data: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return b64url(new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(data))));
}

describe("attacks, each by its deny reason", () => {
  const claims = () => {
    const now = Math.floor(Date.now() / 1000);
    return { iss: issuer.url, aud: AUDIENCE, sub: "mallory", scope: "api:read", iat: now, exp: now + 600 };
  };

  it.each(["none", "None", "NONE", "nOnE"])("alg %s", async (alg) => {
    const edge = harness(policyFor(issuer));
    for (const signature of ["AAAA", ""]) {
      const token = forge({ alg, typ: "JWT" }, claims(), signature);
      const { response, body, record, seen } = await sendMarked(edge, "/v1/x", {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(response.status).toBe(401);
      expect(body?.reason).toBe("token_invalid");
      expect(record?.detail).toBe(signature ? "alg_not_allowed" : "not_compact_jws");
      expect(seen).toHaveLength(0);
    }
  });

  it("HS256 signed with the RSA public key as PEM, JWK text and DER", async () => {
    const edge = harness(policyFor(rsaIssuer));
    const key = rsaIssuer.keys[0]!;
    const publicKey = await crypto.subtle.importKey(
      "jwk",
      key.publicJwk as JsonWebKey,
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      true,
      ["verify"],
    );
    const der = new Uint8Array((await crypto.subtle.exportKey("spki", publicKey)) as ArrayBuffer);
    let b = "";
    for (const byte of der) b += String.fromCharCode(byte);
    const pem = `-----BEGIN PUBLIC KEY-----\n${btoa(b).replace(/(.{64})/g, "$1\n")}\n-----END PUBLIC KEY-----\n`;
    const now = Math.floor(Date.now() / 1000);
    const payload = { iss: rsaIssuer.url, aud: AUDIENCE, sub: "mallory", scope: "api:read", iat: now, exp: now + 600 };
    for (const secret of [
      new TextEncoder().encode(pem),
      new TextEncoder().encode(JSON.stringify(key.publicJwk)),
      der,
    ]) {
      const signingInput = `${b64url(JSON.stringify({ alg: "HS256", kid: key.kid }))}.${b64url(JSON.stringify(payload))}`;
      const token = `${signingInput}.${await hmac(secret, signingInput)}`;
      const { body, record, seen } = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
      expect(body?.reason).toBe("token_invalid");
      expect(record?.detail).toBe("alg_not_allowed");
      expect(seen).toHaveLength(0);
    }
  });

  it("an embedded attacker jwk is ignored", async () => {
    const edge = harness(policyFor(issuer));
    const attacker = await makeKey("ES256");
    const { SignJWT } = await import("jose");
    for (const kid of [attacker.kid, issuer.keys[0]!.kid]) {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "ES256", kid, jwk: attacker.publicJwk as never })
        .sign(attacker.privateKey);
      const { body, record, seen } = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
      expect(body?.reason).toBe("token_invalid");
      expect(record?.detail).toBe(kid === attacker.kid ? "kid_unknown" : "signature");
      expect(seen).toHaveLength(0);
    }
  });

  it("jku and x5u pointing at an attacker host are never fetched", async () => {
    const edge = harness(policyFor(issuer));
    const attacker = await makeKey("ES256");
    const before = await attackerHits();
    const { SignJWT } = await import("jose");
    for (const header of [{ jku: `${issuerServer}/attacker/jwks` }, { x5u: `${issuerServer}/attacker/cert.pem` }]) {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "ES256", kid: attacker.kid, ...header })
        .sign(attacker.privateKey);
      const { body, seen } = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
      expect(body?.reason).toBe("token_invalid");
      expect(seen).toHaveLength(0);
    }
    expect(await attackerHits()).toBe(before);
  });

  it.each([
    ["path traversal", "../../../../etc/passwd", "kid_unknown"],
    ["SQL-ish", "' OR '1'='1' --", "kid_unknown"],
    ["10,000 characters", "k".repeat(10_000), "token_too_large"],
    ["300 characters", "k".repeat(300), "kid_invalid"],
    ["a number", 7, "kid_invalid"],
    ["an object", { $ne: null }, "kid_invalid"],
    ["null", null, "kid_invalid"],
    ["empty", "", "kid_invalid"],
  ])("kid %s", async (_label, kid, detail) => {
    const edge = harness(policyFor(issuer));
    const token = forge({ alg: "ES256", kid }, claims(), "A".repeat(86));
    const { body, record, seen } = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
    expect(body?.reason).toBe("token_invalid");
    expect(record?.detail).toBe(detail);
    expect(seen).toHaveLength(0);
  });

  // The bound on kid is the one on a key's kid in the set: the longest kid a key may carry
  // verifies, one character more is refused unparsed.
  it("kid of 256 characters is accepted, 257 refused", async () => {
    const longKids = await makeIssuer("ES256");
    const key = await makeKey("ES256", "k".repeat(256));
    await longKids.publish([key]);
    const edge = harness(policyFor(longKids));
    const accepted = await sendMarked(edge, "/v1/x", {
      headers: {
        authorization: `Bearer ${await longKids.sign({ sub: "long-kid-user", scope: "api:read" }, { key })}`,
      },
    });
    expect(accepted.response.status).toBe(200);
    expect(accepted.seen[0]?.headers["x-user-sub"]).toBe("long-kid-user");
    const longer = await longKids.sign({ scope: "api:read" }, { key: { ...key, kid: "k".repeat(257) } });
    const refused = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${longer}` } });
    expect(refused.record).toMatchObject({ reason: "token_invalid", detail: "kid_invalid" });
    expect(refused.seen).toHaveLength(0);
  });

  it("ECDSA r=s=0 in raw and DER form", async () => {
    const edge = harness(policyFor(issuer));
    const kid = issuer.keys[0]!.kid;
    const raw = b64url(new Uint8Array(64));
    const der = b64url(new Uint8Array([0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]));
    for (const signature of [raw, der]) {
      const token = forge({ alg: "ES256", kid }, claims(), signature);
      const { body, record, seen } = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
      expect(body?.reason).toBe("token_invalid");
      expect(record?.detail).toBe("signature");
      expect(seen).toHaveLength(0);
    }
  });

  it.each([
    [
      "stripped signature",
      (t: string) => `${t.split(".").slice(0, 2).join(".")}.`,
      401,
      "token_invalid",
      "not_compact_jws",
    ],
    ["two segments", (t: string) => t.split(".").slice(0, 2).join("."), 401, "token_invalid", "not_compact_jws"],
    [
      // `=` is only allowed at the end of a b64token (RFC 6750 §2.1): refused at extraction.
      "padded segments",
      (t: string) =>
        t
          .split(".")
          .map((s) => `${s}==`)
          .join("."),
      400,
      "token_malformed",
      "bad_bearer_syntax",
    ],
    [
      "standard base64",
      (t: string) => t.replace(/-/g, "+").replace(/_/g, "/").replace(/^./, "+"),
      401,
      "token_invalid",
      "not_compact_jws",
    ],
    ["five segments (JWE)", (t: string) => `${t}.AAAA.BBBB`, 401, "token_invalid", "not_compact_jws"],
  ])("%s", async (_label, mangle, status, reason, detail) => {
    const edge = harness(policyFor(issuer));
    const token = mangle(await issuer.sign());
    const { response, body, record, seen } = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(status);
    expect(body?.reason).toBe(reason);
    expect(record?.detail).toBe(detail);
    expect(seen).toHaveLength(0);
  });

  it("whitespace around the header value is not part of it (RFC 9110 §5.5); inside the token it is refused", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign();
    // The runtime drops leading and trailing whitespace of a field value before the edge reads it.
    const padded = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token} \t` } });
    expect(padded.response.status).toBe(200);
    expect(padded.seen).toHaveLength(1);
    const [head, payload, signature] = token.split(".");
    for (const inner of [`${head}. ${payload}.${signature}`, `${token.slice(0, 20)}\t${token.slice(20)}`]) {
      const refused = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${inner}` } });
      expect(refused.response.status).toBe(400);
      expect(refused.body?.reason).toBe("token_malformed");
      expect(refused.record?.detail).toBe("bad_bearer_syntax");
      expect(refused.seen).toHaveLength(0);
    }
  });

  it("a non-canonical final base64url character is refused", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign();
    // ES256 signatures are 86 characters (length % 4 == 2): the last one carries 4 unused bits.
    const last = token.at(-1)!;
    const flipped = token.slice(0, -1) + ("AQgw".includes(last) ? String.fromCharCode(last.charCodeAt(0) + 1) : last);
    const { response, body, record, seen } = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${flipped}` },
    });
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_invalid");
    expect(record?.detail).toBe("non_canonical_base64url");
    expect(seen).toHaveLength(0);
  });

  it.each([
    ["expired", { exp: Math.floor(Date.now() / 1000) - 120 }, 401, "token_expired"],
    ["nbf in the future", { nbf: Math.floor(Date.now() / 1000) + 600 }, 401, "token_not_yet_valid"],
    ["iat in the future", { iat: Math.floor(Date.now() / 1000) + 600 }, 401, "token_invalid"],
    ["missing exp", { exp: undefined }, 401, "token_invalid"],
    ["wrong audience", { aud: "https://other.test" }, 401, "audience_mismatch"],
    ["audience array without ours", { aud: ["a", "b"] }, 401, "audience_mismatch"],
    ["unknown issuer", { iss: "https://evil.test" }, 401, "issuer_unknown"],
    ["issuer with a trailing slash", { iss: "TRAILING" }, 401, "issuer_unknown"],
  ])("%s -> %s", async (_label, override, status, reason) => {
    const edge = harness(policyFor(issuer));
    const patch = { ...override } as Record<string, unknown>;
    if (patch.iss === "TRAILING") patch.iss = `${issuer.url}/`;
    const token = await issuer.sign(patch);
    const { response, body, seen } = await sendMarked(edge, "/v1/x", { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(status);
    expect(body?.reason).toBe(reason);
    expect(response.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(seen).toHaveLength(0);
  });

  it.each([
    ["exp as a string", { exp: String(Math.floor(Date.now() / 1000) + 600) }, "token_invalid", "claim_exp_invalid"],
    ["exp null", { exp: null }, "token_invalid", "claim_exp_invalid"],
    // Reported as jose's error mapping always did: any failure of the nbf claim.
    ["nbf as a string", { nbf: String(Math.floor(Date.now() / 1000)) }, "token_not_yet_valid", "nbf"],
    ["iat as a string", { iat: String(Math.floor(Date.now() / 1000)) }, "token_invalid", "claim_iat_invalid"],
    ["missing exp", { exp: undefined }, "token_invalid", "claim_exp_missing"],
    ["iat in the future", { iat: Math.floor(Date.now() / 1000) + 600 }, "token_invalid", "iat_in_future"],
    [
      "DPoP-bound, replayed as a bearer token",
      { cnf: { jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" } },
      "token_invalid",
      "sender_constrained",
    ],
  ])("%s -> %s %s", async (_label, override, reason, detail) => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign(override as Record<string, unknown>);
    const { response, body, record, seen } = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(401);
    expect(body?.reason).toBe(reason);
    expect(record?.detail).toBe(detail);
    expect(seen).toHaveLength(0);
  });

  it("expired and not-yet-valid tokens are audited with the claim at fault", async () => {
    const edge = harness(policyFor(issuer));
    const now = Math.floor(Date.now() / 1000);
    const expired = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${await issuer.sign({ exp: now - 120 })}` },
    });
    expect(expired.record).toMatchObject({ reason: "token_expired", detail: "exp" });
    expect(expired.seen).toHaveLength(0);
    const early = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${await issuer.sign({ nbf: now + 600 })}` },
    });
    expect(early.record).toMatchObject({ reason: "token_not_yet_valid", detail: "nbf" });
    expect(early.seen).toHaveLength(0);
  });

  it("expired tokens within the clock skew still pass; beyond it they do not", async () => {
    const edge = harness(policyFor(issuer));
    const now = Math.floor(Date.now() / 1000);
    const within = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${await issuer.sign({ exp: now - 30 })}` },
    });
    expect(within.response.status).toBe(200);
    const beyond = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${await issuer.sign({ exp: now - 90 })}` },
    });
    expect(beyond.body?.reason).toBe("token_expired");
    expect(beyond.seen).toHaveLength(0);
  });

  it("a 2 MB header is refused before any parsing", async () => {
    const edge = harness(policyFor(issuer));
    const header = b64url(JSON.stringify({ alg: "ES256", kid: "x", pad: "[".repeat(2_000_000) }));
    const token = `${header}.${b64url("{}")}.AAAA`;
    const { response, body, record, seen } = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(record?.detail).toBe("headers_too_large");
    expect(seen).toHaveLength(0);
  });

  it("a token over the length cap (but under the header cap) is refused unparsed", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign({ pad: "x".repeat(9000) });
    const { response, body, record, seen } = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_invalid");
    expect(record?.detail).toBe("token_too_large");
    expect(seen).toHaveLength(0);
  });
});

describe("authorisation", () => {
  it("a trailing slash cannot sidestep a specific route for a broader one", async () => {
    const ids = ["idp0"];
    const edge = harness(
      basePolicy({
        issuers: { idp0: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [
          {
            name: "users",
            methods: ["GET"],
            path: "/v1/users",
            auth: { issuers: ids, groups: { any_of: ["admins"] } },
            upstream: "echo",
          },
          // Written with a trailing slash: matches without one too.
          { name: "docs", methods: ["GET"], path: "/v1/docs/", auth: "public", upstream: "echo" },
          { name: "read", methods: ["GET"], path: "/v1/**", auth: { issuers: ids }, upstream: "echo" },
        ],
      }),
    );
    const reader = { authorization: `Bearer ${await issuer.sign({ scope: "api:read" })}` };
    for (const path of ["/v1/users", "/v1/users/", "/v1/users//", "/v1/users/.", "/v1/x/../users/"]) {
      const { response, body, seen, record } = await sendMarked(edge, path, { headers: reader });
      expect({ path, status: response.status, reason: body?.reason, route: record?.route }).toEqual({
        path,
        status: 403,
        reason: "forbidden",
        route: "users",
      });
      expect(seen).toHaveLength(0);
    }
    const admin = { authorization: `Bearer ${await issuer.sign({ groups: ["admins"] })}` };
    const allowed = await sendMarked(edge, "/v1/users/", { headers: admin });
    expect(allowed.response.status).toBe(200);
    // Forwarded as sent: the route decides, the path is not rewritten.
    expect(allowed.seen[0]?.path).toBe("/v1/users/");
    for (const path of ["/v1/docs", "/v1/docs/"]) {
      const { response, record } = await sendMarked(edge, path);
      expect({ path, status: response.status, route: record?.route }).toEqual({ path, status: 200, route: "docs" });
    }
  });

  it("an escaped character cannot sidestep a specific route for a broader one", async () => {
    const ids = ["idp0"];
    const edge = harness(
      basePolicy({
        issuers: { idp0: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [
          {
            name: "purge",
            methods: ["POST"],
            path: "/v1/things/*/data:purge",
            auth: { issuers: ids, groups: { any_of: ["admins"] } },
            upstream: "echo",
          },
          { name: "rest", methods: ["GET", "POST"], path: "/v1/**", auth: { issuers: ids }, upstream: "echo" },
        ],
      }),
    );
    // Origins decode `%3A`: each of these is the purge the route guards.
    const reader = { authorization: `Bearer ${await issuer.sign()}` };
    for (const path of ["/v1/things/t1/data:purge", "/v1/things/t1/data%3Apurge", "/v1/things/t1/data%3apurge"]) {
      const { response, body, seen, record } = await sendMarked(edge, path, { method: "POST", headers: reader });
      expect({ path, status: response.status, reason: body?.reason, route: record?.route }).toEqual({
        path,
        status: 403,
        reason: "forbidden",
        route: "purge",
      });
      expect(seen).toHaveLength(0);
    }
    const admin = { authorization: `Bearer ${await issuer.sign({ groups: ["admins"] })}` };
    const allowed = await sendMarked(edge, "/v1/things/t1/data%3Apurge", { method: "POST", headers: admin });
    expect(allowed.response.status).toBe(200);
    expect(allowed.record).toMatchObject({ decision: "allow", route: "purge" });
    expect(allowed.seen).toHaveLength(1);
  });

  it("a tenant captured escaped is compared decoded, as the origin reads it", async () => {
    const edge = harness(policyFor(issuer));
    // The origin decodes `a%3Ab` to `a:b`: a token for the tenant spelt like the escape is not for it.
    const spelt = await sendMarked(edge, "/v1/tenants/a%3Ab/orders", {
      headers: {
        authorization: `Bearer ${await issuer.sign({ tenant_id: "a%3Ab" })}`,
      },
    });
    expect(spelt.response.status).toBe(403);
    expect(spelt.body?.reason).toBe("tenant_mismatch");
    expect(spelt.seen).toHaveLength(0);
    const own = await sendMarked(edge, "/v1/tenants/a%3Ab/orders", {
      headers: {
        authorization: `Bearer ${await issuer.sign({ tenant_id: "a:b" })}`,
      },
    });
    expect(own.response.status).toBe(200);
    expect(own.seen[0]?.headers["x-tenant"]).toBe("a:b");
  });

  it("403 insufficient_scope names the scope the route needs (RFC 6750 §3)", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign({ scope: "api:read", groups: ["payments-writer"] });
    const { response, body, seen } = await sendMarked(edge, "/v1/payments", {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(403);
    expect(body?.reason).toBe("insufficient_scope");
    expect(response.headers.get("www-authenticate")).toBe(
      'Bearer realm="portcullis", error="insufficient_scope", scope="payments:write"',
    );
    expect(seen).toHaveLength(0);
  });

  it("groups are any-of; without the group the answer is 403 forbidden", async () => {
    const edge = harness(policyFor(issuer));
    const ok = await sendMarked(edge, "/v1/payments", {
      method: "POST",
      headers: {
        authorization: `Bearer ${await issuer.sign({ scope: "payments:write", groups: ["x", "payments-writer"] })}`,
      },
    });
    expect(ok.response.status).toBe(200);
    const no = await sendMarked(edge, "/v1/payments", {
      method: "POST",
      headers: { authorization: `Bearer ${await issuer.sign({ scope: "payments:write", groups: ["x"] })}` },
    });
    expect(no.response.status).toBe(403);
    expect(no.body?.reason).toBe("forbidden");
    expect(no.seen).toHaveLength(0);
  });

  it("any-of scopes and claim conditions", async () => {
    const edge = harness(policyFor(issuer));
    const good = await sendMarked(edge, "/v1/admin/x", {
      headers: {
        authorization: `Bearer ${await issuer.sign({ scope: "admin:write", amr: ["pwd", "mfa"] })}`,
      },
    });
    expect(good.response.status).toBe(200);
    const noMfa = await sendMarked(edge, "/v1/admin/x", {
      headers: {
        authorization: `Bearer ${await issuer.sign({ scope: "admin:write", amr: ["pwd"] })}`,
      },
    });
    expect(noMfa.body?.reason).toBe("forbidden");
    expect(noMfa.record?.detail).toBe("claim:amr");
    expect(noMfa.seen).toHaveLength(0);
    const noScope = await sendMarked(edge, "/v1/admin/x", {
      headers: {
        authorization: `Bearer ${await issuer.sign({ scope: "api:read", amr: ["mfa"] })}`,
      },
    });
    expect(noScope.body?.reason).toBe("insufficient_scope");
    expect(noScope.seen).toHaveLength(0);
  });

  it("binds a :tenant path segment to the token's tenant", async () => {
    const edge = harness(policyFor(issuer));
    const token = await issuer.sign({ tenant_id: "acme" });
    const own = await sendMarked(edge, "/v1/tenants/acme/orders", { headers: { authorization: `Bearer ${token}` } });
    expect(own.response.status).toBe(200);
    const other = await sendMarked(edge, "/v1/tenants/globex/orders", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(other.response.status).toBe(403);
    expect(other.body?.reason).toBe("tenant_mismatch");
    expect(other.seen).toHaveLength(0);
    const none = await sendMarked(edge, "/v1/tenants/acme/orders", {
      headers: {
        authorization: `Bearer ${await issuer.sign({ tenant_id: undefined })}`,
      },
    });
    expect(none.body?.reason).toBe("tenant_mismatch");
    expect(none.seen).toHaveLength(0);
    // A climb into another tenant, double-encoded from escaped hex digits the edge decodes
    // (`%25%32%65` is `%252e` once decoded): an origin that decodes twice would read
    // /v1/tenants/globex/orders.
    const climb = await sendMarked(edge, "/v1/tenants/acme/%25%32%65%25%32%65/globex/orders", {
      headers: {
        authorization: `Bearer ${token}`,
      },
    });
    expect(climb.response.status).toBe(400);
    expect(climb.record).toMatchObject({ reason: "bad_request", detail: "double_encoding" });
    expect(climb.seen).toHaveLength(0);
  });

  it("identity claims a header cannot carry verbatim reject the token", async () => {
    const edge = harness(policyFor(issuer));
    for (const claims of [
      { sub: "alice\r\nx-user-sub: admin" },
      { sub: "ålice" },
      { tenant_id: "a b" },
      { groups: ["a,b"] },
      // Longer than OpenID Connect allows; it would also name an unbounded rate-limit counter.
      { sub: "u".repeat(256) },
      { tenant_id: "t".repeat(256) },
    ]) {
      const { body, seen } = await sendMarked(edge, "/v1/x", {
        headers: { authorization: `Bearer ${await issuer.sign(claims)}` },
      });
      expect(body?.reason).toBe("token_invalid");
      expect(seen).toHaveLength(0);
    }
    const longest = await sendMarked(edge, "/v1/x", {
      headers: {
        authorization: `Bearer ${await issuer.sign({ sub: "u".repeat(255), tenant_id: "t".repeat(255) })}`,
      },
    });
    expect(longest.response.status).toBe(200);
  });
});
