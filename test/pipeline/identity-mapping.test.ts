// Identity header names and claim mapping through the whole pipeline: renamed identity
// headers (settings.identity_headers) are what the origin receives and are stripped from
// clients in every spelling; groups and scopes map the same whether a token carries them
// as a space-separated string or as an array. Each test asserts what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { IssuerConfig, PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, type EchoRecord, type Harness, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** Custom names outside the built-in identity prefixes (x-user-, x-tenant, x-client-, cf-access-). */
const CUSTOM = {
  subject: "x-caller-id",
  tenant: "x-caller-org",
  scopes: "x-caller-scopes",
  groups: "x-caller-groups",
  email: "x-caller-mail",
  issuer: "x-caller-issuer",
} as const;

const DEFAULT_NAMES = ["x-user-sub", "x-tenant", "x-user-scope", "x-user-groups", "x-user-email", "x-user-iss"];

function policy(options: { custom?: boolean; claims?: IssuerConfig["claims"] } = {}): PolicyDocument {
  const { custom = true, claims } = options;
  return basePolicy({
    ...(custom
      ? {
          // One name written in mixed case: header names match whatever their case.
          settings: { identity_headers: { ...CUSTOM, subject: "X-Caller-Id" } },
        }
      : {}),
    issuers: {
      idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE], ...(claims ? { claims } : {}) },
    } as Record<string, IssuerConfig>,
    routes: [
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
      {
        name: "writers",
        methods: ["GET"],
        path: "/v1/writers",
        auth: { issuers: ["idp"], scopes: { all_of: ["payments:write"] }, groups: { any_of: ["payments-writer"] } },
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ],
  });
}

/** Header names the origin received, lower-cased and with `_` read as `-`. */
function normalisedNames(headers: EchoRecord["headers"]): string[] {
  return Object.keys(headers).map((name) => name.toLowerCase().replace(/_/g, "-"));
}

/**
 * The headers the origin received for one request through `edge` with these headers, which
 * was let through (200) and forwarded once.
 */
async function forwardedHeaders(edge: Harness, path: string, headers: Record<string, string>) {
  const { response, seen, got } = await sendMarked(edge, path, { headers });
  expect(response.status).toBe(200);
  expect(seen).toHaveLength(1);
  return got;
}

/** Names of received headers whose value contains `needle`. */
function carrying(headers: EchoRecord["headers"], needle: string): string[] {
  return Object.entries(headers)
    .filter(([, value]) => value.includes(needle))
    .map(([name]) => name);
}

/** Every custom name in several spellings: case variants, `_` for `-`, and both mixed. */
const SPOOFED: Record<string, string> = {
  "x-caller-id": "mallory-sub",
  X_CALLER_ID: "mallory-sub-underscore",
  "X-CALLER-ORG": "mallory-org",
  x_caller_org: "mallory-org-underscore",
  "X-Caller_Scopes": "mallory:scope",
  x_caller_groups: "mallory-group",
  "X-Caller-Mail": "mallory@evil.example",
  X_Caller_Issuer: "https://mallory.example",
};

describe("renamed identity headers (settings.identity_headers)", () => {
  it("the origin receives the custom names with the verified values, and none of the default names", async () => {
    const edge = harness(policy());
    const token = await issuer.sign({
      sub: "alice",
      tenant_id: "acme",
      scope: "api:read extra",
      groups: ["eng", "ops"],
      email: "alice@example.com",
    });
    const headers = await forwardedHeaders(edge, "/v1/things", { authorization: `Bearer ${token}` });
    expect(headers).toMatchObject({
      "x-caller-id": "alice",
      "x-caller-org": "acme",
      "x-caller-scopes": "api:read extra",
      "x-caller-groups": "eng,ops",
      "x-caller-mail": "alice@example.com",
      "x-caller-issuer": issuer.url,
    });
    for (const name of DEFAULT_NAMES) expect(headers[name], name).toBeUndefined();
    // The subject is written under exactly one name.
    expect(carrying(headers, "alice")).toEqual(expect.arrayContaining(["x-caller-id", "x-caller-mail"]));
    expect(carrying(headers, "alice")).toHaveLength(2);
  });

  it("a client's headers under the custom names never reach a public route, in any spelling", async () => {
    const edge = harness(policy());
    const headers = await forwardedHeaders(edge, "/public/a", {
      ...SPOOFED,
      // Controls: an unrelated header, and one with underscores, do reach the origin, so the
      // spoofed ones are missing because the edge removed them, not because transit drops them.
      "x-probe-kept": "kept",
      x_probe_kept_underscore: "kept-underscore",
    });
    expect(headers["x-probe-kept"]).toBe("kept");
    expect(headers.x_probe_kept_underscore).toBe("kept-underscore");
    const names = normalisedNames(headers);
    for (const name of Object.values(CUSTOM)) expect(names, name).not.toContain(name);
    expect(carrying(headers, "mallory")).toEqual([]);
  });

  it("without the setting, the same client header is an ordinary header (the stripping comes from the policy)", async () => {
    const edge = harness(policy({ custom: false }));
    const headers = await forwardedHeaders(edge, "/public/a", {
      "x-caller-id": "someone",
      x_caller_org: "org",
    });
    expect(headers["x-caller-id"]).toBe("someone");
    expect(headers.x_caller_org).toBe("org");
  });

  it("with a token, spoofed custom headers the token does not overwrite still never reach the origin", async () => {
    const edge = harness(policy());
    // No tenant, groups or email in the token: the edge writes nothing under those names,
    // so only stripping keeps the client's values away.
    const token = await issuer.sign({ sub: "alice", tenant_id: undefined, scope: "api:read" });
    const headers = await forwardedHeaders(edge, "/v1/things", {
      authorization: `Bearer ${token}`,
      ...SPOOFED,
      // The default names are stripped too, and not written by the edge.
      "x-user-sub": "mallory-default",
      "x-tenant": "mallory-default-tenant",
    });
    expect(headers["x-caller-id"]).toBe("alice");
    expect(headers["x-caller-scopes"]).toBe("api:read");
    expect(headers["x-caller-issuer"]).toBe(issuer.url);
    for (const name of ["x-caller-org", "x-caller-groups", "x-caller-mail"]) {
      expect(normalisedNames(headers), name).not.toContain(name);
    }
    for (const name of DEFAULT_NAMES) expect(headers[name], name).toBeUndefined();
    expect(carrying(headers, "mallory")).toEqual([]);
  });
});

describe("groups claim: an array, or one string that is one group", () => {
  it.each([
    ["an array", ["eng", "payments-writer"], "eng,payments-writer"],
    ["a string naming one group", "payments-writer", "payments-writer"],
  ])("groups as %s reach the origin comma-separated and satisfy groups.any_of", async (_label, groups, header) => {
    const edge = harness(policy());
    const token = await issuer.sign({ sub: "alice", scope: "payments:write", groups });
    const { response, got: headers } = await sendMarked(edge, "/v1/writers", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    expect(headers["x-caller-groups"]).toBe(header);
  });

  it("a string is never split: `eng payments-writer` is one group, not payments-writer", async () => {
    const edge = harness(policy());
    const token = await issuer.sign({ sub: "alice", scope: "payments:write", groups: "eng payments-writer" });
    const refused = await sendMarked(edge, "/v1/writers", { headers: { authorization: `Bearer ${token}` } });
    expect(refused.response.status).toBe(403);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "forbidden", detail: "group" });
    expect(refused.seen).toHaveLength(0);
    // Elsewhere it travels on as the one group it names.
    const allowed = await sendMarked(edge, "/v1/things", { headers: { authorization: `Bearer ${token}` } });
    expect(allowed.response.status).toBe(200);
    expect(allowed.got["x-caller-groups"]).toBe("eng payments-writer");
  });

  it("a group name with leading or trailing spaces rejects the token", async () => {
    const edge = harness(policy());
    const token = await issuer.sign({ sub: "alice", scope: "payments:write", groups: " payments-writer " });
    const { response, seen } = await sendMarked(edge, "/v1/writers", { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(401);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "groups_unsafe" });
    expect(seen).toHaveLength(0);
  });

  it("a string that does not name the required group is still refused, and nothing is forwarded", async () => {
    const edge = harness(policy());
    const token = await issuer.sign({ sub: "alice", scope: "payments:write", groups: "eng payments-writerX" });
    const { response, seen } = await sendMarked(edge, "/v1/writers", { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(403);
    expect(edge.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "forbidden",
      detail: "group",
      route: "writers",
    });
    expect(seen).toHaveLength(0);
  });

  it("an empty groups string writes no groups header", async () => {
    const edge = harness(policy());
    const token = await issuer.sign({ sub: "alice", groups: "" });
    const headers = await forwardedHeaders(edge, "/v1/things", { authorization: `Bearer ${token}` });
    // The identity was injected (so the groups header is missing by choice, not because none were written).
    expect(headers["x-caller-id"]).toBe("alice");
    expect(normalisedNames(headers)).not.toContain("x-caller-groups");
  });
});

describe("scopes: `scope` string, else `scp` array, unless a claim is named", () => {
  const writer = { sub: "alice", groups: ["payments-writer"] };

  it.each([
    ["`scope` as a space-separated string", { scope: "api:read payments:write" }],
    ["`scp` as an array (no `scope`)", { scope: undefined, scp: ["api:read", "payments:write"] }],
  ])("%s reaches the origin space-separated and satisfies scopes.all_of", async (_label, claims) => {
    const edge = harness(policy());
    const token = await issuer.sign({ ...writer, ...claims });
    const { response, got: headers } = await sendMarked(edge, "/v1/writers", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    expect(headers["x-caller-scopes"]).toBe("api:read payments:write");
  });

  it("`scope` wins over `scp` when both are present", async () => {
    const edge = harness(policy());
    const token = await issuer.sign({ ...writer, scope: "api:read", scp: ["payments:write"] });
    const ok = await sendMarked(edge, "/v1/things", { headers: { authorization: `Bearer ${token}` } });
    expect(ok.response.status).toBe(200);
    expect(ok.got["x-caller-scopes"]).toBe("api:read");
    const refused = await sendMarked(edge, "/v1/writers", { headers: { authorization: `Bearer ${token}` } });
    expect(refused.response.status).toBe(403);
    expect(refused.response.headers.get("www-authenticate")).toContain('scope="payments:write"');
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "insufficient_scope", detail: "scope" });
    expect(refused.seen).toHaveLength(0);
  });

  it("a named scopes claim is read as an array or a string, and `scp` is then not consulted", async () => {
    const edge = harness(policy({ claims: { scopes: "permissions" } }));
    const asArray = await issuer.sign({ ...writer, scope: undefined, permissions: ["api:read", "payments:write"] });
    const asString = await issuer.sign({ ...writer, scope: undefined, permissions: "api:read payments:write" });
    for (const token of [asArray, asString]) {
      const { response, got: headers } = await sendMarked(edge, "/v1/writers", {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(response.status).toBe(200);
      expect(headers["x-caller-scopes"]).toBe("api:read payments:write");
    }
    const scpOnly = await issuer.sign({ ...writer, scope: undefined, scp: ["api:read", "payments:write"] });
    const { response, got: headers } = await sendMarked(edge, "/v1/things", {
      headers: { authorization: `Bearer ${scpOnly}` },
    });
    expect(response.status).toBe(200);
    expect(headers["x-caller-scopes"]).toBe("");
    // Nor for authorisation: the scopes only `scp` carries do not satisfy the route.
    const refused = await sendMarked(edge, "/v1/writers", { headers: { authorization: `Bearer ${scpOnly}` } });
    expect(refused.response.status).toBe(403);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "insufficient_scope", detail: "scope" });
    expect(refused.seen).toHaveLength(0);
  });
});

describe("mapped claims of the wrong type", () => {
  it.each([
    ["a numeric tenant", { tenant_id: 42 }, "tenant_unsafe"],
    ["a numeric email", { email: 7 }, "email_unsafe"],
    ["scopes that are an object", { scope: { read: true } }, "scopes_unsafe"],
    ["a numeric group", { groups: [1] }, "groups_unsafe"],
  ])(
    "%s rejects the token on a route that does not read it, and nothing is forwarded",
    async (_label, claims, detail) => {
      const edge = harness(policy());
      const token = await issuer.sign({ sub: "alice", ...claims });
      const { response, seen } = await sendMarked(edge, "/v1/things", {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(response.status).toBe(401);
      expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "token_invalid", detail });
      expect(seen).toHaveLength(0);
    },
  );

  it("naming the scopes claim reads that claim only: an `scp` array is then not read", async () => {
    const token = await issuer.sign({
      sub: "alice",
      scope: undefined,
      scp: ["payments:write"],
      groups: ["payments-writer"],
    });
    const byDefault = await sendMarked(harness(policy()), "/v1/writers", {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(byDefault.response.status).toBe(200);
    expect(byDefault.got["x-caller-scopes"]).toBe("payments:write");
    const named = harness(policy({ claims: { scopes: "scope" } }));
    const refused = await sendMarked(named, "/v1/writers", { headers: { authorization: `Bearer ${token}` } });
    expect(refused.response.status).toBe(403);
    expect(named.audit.at(-1)).toMatchObject({ reason: "insufficient_scope" });
  });
});
