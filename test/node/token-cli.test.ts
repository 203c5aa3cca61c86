// The `npm run token` contract: each option changes the claims as documented, only the token
// reaches stdout, usage errors exit 2, and every token verifies against the key set the
// development identity provider serves. Runs the real CLI and the real identity provider
// with a fresh key file, so the developer's own keys are never touched.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error -- plain JS module of the local stack
import { startIdp } from "../../dev/idp.mjs";
import { localPolicy } from "../../dev/local-policy";
import { ACCESS_AUD, LOCAL_ACCESS_TEAM, LOCAL_AUDIENCE, LOCAL_IDP_URL } from "../../dev/local-stack.mjs";
import { projectCopy } from "./project-copy";

const root = join(import.meta.dirname, "..", "..");
const keysDir = mkdtempSync(join(tmpdir(), "portcullis-keys-"));
const keysFile = join(keysDir, "keys.json");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a user would, against the test's key file; bounded so it cannot hang. */
function token(args: string[], keys = keysFile): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["dev/token.mjs", ...args],
      { cwd: root, timeout: 15_000, env: { ...process.env, PORTCULLIS_DEV_KEYS: keys } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The single JWT the CLI printed; fails if stdout holds anything else. */
async function mint(...args: string[]): Promise<string> {
  const run = await token(args);
  expect(run.code, run.stderr).toBe(0);
  expect(run.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
  return run.stdout.trim();
}

const now = () => Math.floor(Date.now() / 1000);

let idp: { issuer: string; close(): Promise<void> };
let oidcKeys: ReturnType<typeof createLocalJWKSet>;
let accessKeys: ReturnType<typeof createLocalJWKSet>;
let served: { jwks: JSONWebKeySet; certs: JSONWebKeySet & { public_cert: { kid: string } } };

beforeAll(async () => {
  // The CLI runs first, so it is the one that creates the key file the IdP then serves.
  await mint();
  idp = await startIdp({ port: 0, keysFile });
  const jwks = (await (await fetch(`${idp.issuer}/jwks`)).json()) as JSONWebKeySet;
  const certs = await (await fetch(`${idp.issuer}/access/cdn-cgi/access/certs`)).json();
  served = { jwks, certs };
  oidcKeys = createLocalJWKSet(jwks);
  accessKeys = createLocalJWKSet(certs);
});

afterAll(async () => {
  await idp?.close();
  rmSync(keysDir, { recursive: true, force: true });
});

describe("npm run token: OIDC tokens", () => {
  it("by default prints one ES256 token for user-123 in acme with api:read, valid for 900 s", async () => {
    // iat is bracketed by the clock around the run (both whole seconds, as the CLI's), so a slow
    // CLI start cannot fail the test and a clock that is off in either direction still does.
    const before = now();
    const jwt = await mint();
    const after = now();
    const header = decodeProtectedHeader(jwt);
    expect(header).toEqual({ alg: "ES256", kid: served.jwks.keys[0]?.kid, typ: "JWT" });
    const { payload } = await jwtVerify(jwt, oidcKeys, { issuer: LOCAL_IDP_URL, audience: LOCAL_AUDIENCE });
    expect(payload).toMatchObject({ iss: LOCAL_IDP_URL, sub: "user-123", aud: LOCAL_AUDIENCE });
    expect(payload).toMatchObject({ tenant_id: "acme", scope: "api:read" });
    expect(payload.groups).toBeUndefined();
    expect(payload.nbf).toBeUndefined();
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(payload.iat).toBeLessThanOrEqual(after);
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(900);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    // A fresh jti per token, so two tokens never collide in replay or audit checks.
    expect(decodeJwt(await mint()).jti).not.toBe(payload.jti);
  });

  it("--sub, --tenant, --scope, --groups, --aud, --iss and --email set their claims", async () => {
    const jwt = await mint(
      ...["--sub", "ada", "--tenant", "globex", "--scope", "api:read payments:write"],
      ...["--groups", "payments-writer, admins", "--aud", "https://other.example.com"],
      ...["--iss", "https://idp.example.com", "--email", "ada@example.com"],
    );
    const { payload } = await jwtVerify(jwt, oidcKeys);
    expect(payload).toMatchObject({
      sub: "ada",
      tenant_id: "globex",
      scope: "api:read payments:write",
      groups: ["payments-writer", "admins"],
      aud: "https://other.example.com",
      iss: "https://idp.example.com",
      email: "ada@example.com",
    });
  });

  it("--ttl sets exp from now, and a negative --ttl gives a token that is already expired", async () => {
    const short = decodeJwt(await mint("--ttl", "60"));
    expect((short.exp ?? 0) - (short.iat ?? 0)).toBe(60);

    const expired = await mint("--ttl", "-60");
    const claims = decodeJwt(expired);
    expect(claims.exp).toBeLessThan(now());
    await expect(jwtVerify(expired, oidcKeys)).rejects.toMatchObject({ code: "ERR_JWT_EXPIRED" });
    // The --ttl=VALUE spelling works the same.
    expect(decodeJwt(await mint("--ttl=-60")).exp).toBeLessThan(now());
  });

  it("--nbf sets not-before relative to now", async () => {
    const jwt = await mint("--nbf", "120");
    const claims = decodeJwt(jwt);
    expect((claims.nbf ?? 0) - (claims.iat ?? 0)).toBe(120);
    await expect(jwtVerify(jwt, oidcKeys)).rejects.toMatchObject({
      code: "ERR_JWT_CLAIM_VALIDATION_FAILED",
      claim: "nbf",
    });
  });

  it("--claim parses JSON values, falls back to strings, and overrides the other options", async () => {
    const claims = decodeJwt(
      await mint(
        ...["--claim", "level=3", "--claim", 'org={"id":"o-1"}', "--claim", 'roles=["a","b"]'],
        ...["--claim", "note=not json", "--claim", "flag=true", "--claim", "tenant_id=initech", "--claim", "x=a=b"],
      ),
    );
    expect(claims).toMatchObject({ level: 3, org: { id: "o-1" }, roles: ["a", "b"], note: "not json", flag: true });
    expect(claims.tenant_id).toBe("initech");
    // Only the first "=" separates key from value.
    expect(claims.x).toBe("a=b");
  });

  it("--typ sets the typ header (e.g. at+jwt for RFC 9068 access tokens)", async () => {
    expect(decodeProtectedHeader(await mint("--typ", "at+jwt")).typ).toBe("at+jwt");
  });
});

describe("npm run token: defaults follow policy/policy.json", () => {
  it("are the issuers and audiences that the local Worker's policy trusts", async () => {
    const local = localPolicy();
    const issuers = Object.entries(local.issuers ?? {});
    const oidc = issuers.find(([, issuer]) => issuer.kind === "oidc")?.[1];
    const [accessId, access] = issuers.find(([, issuer]) => issuer.kind === "cloudflare_access") ?? [];
    const accessAuth = local.routes
      .map((route) => route.auth)
      .find((auth) => auth !== "public" && accessId !== undefined && auth.issuers.includes(accessId));
    const token = decodeJwt(await mint());
    expect(oidc).toMatchObject({ issuer: token.iss, audiences: expect.arrayContaining([token.aud]) });
    const assertion = decodeJwt(await mint("--access"));
    expect(access).toMatchObject({ team_domain: assertion.iss });
    expect(accessAuth).toMatchObject({ audiences: assertion.aud });
    // The CLI's fallbacks, for a policy that names no audience, are the shipped policy's own.
    expect(oidc).toMatchObject({ audiences: expect.arrayContaining([LOCAL_AUDIENCE]) });
    expect(assertion.aud).toEqual([ACCESS_AUD]);
  });

  it("an edited policy's audience, typ and Access AUD tag become the defaults; options still win", async () => {
    const copy = projectCopy(keysDir, "policy-");
    const doc = JSON.parse(readFileSync(join(copy, "policy", "policy.json"), "utf8"));
    const idOf = (kind: string) =>
      Object.entries(doc.issuers).find(([, issuer]) => (issuer as { kind: string }).kind === kind)?.[0] as string;
    const oidcId = idOf("oidc");
    const accessId = idOf("cloudflare_access");
    doc.issuers[oidcId].audiences = ["https://api.mycompany.test"];
    doc.issuers[oidcId].typ = "at+jwt";
    const guarded = doc.routes.find((route: { auth: { issuers?: string[] } }) =>
      route.auth.issuers?.includes(accessId),
    );
    guarded.auth.audiences = ["my-aud-tag"];
    writeFileSync(join(copy, "policy", "policy.json"), JSON.stringify(doc));
    const run = (args: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile(
          process.execPath,
          ["dev/token.mjs", ...args],
          { cwd: copy, timeout: 15_000, env: { ...process.env, PORTCULLIS_DEV_KEYS: keysFile } },
          (error, stdout) => (error ? reject(error) : resolve(stdout.trim())),
        ),
      );
    const oidc = await run([]);
    expect(decodeJwt(oidc).aud).toBe("https://api.mycompany.test");
    expect(decodeProtectedHeader(oidc).typ).toBe("at+jwt");
    expect(decodeJwt(await run(["--access"])).aud).toEqual(["my-aud-tag"]);
    expect(decodeJwt(await run(["--aud", "x"])).aud).toBe("x");
    expect(decodeProtectedHeader(await run(["--typ", "JWT"])).typ).toBe("JWT");
  });
});

describe("npm run token: Cloudflare Access assertions", () => {
  it("--access signs an RS256 Access-style assertion with the Access key", async () => {
    const jwt = await mint("--access");
    const header = decodeProtectedHeader(jwt);
    expect(header).toEqual({ alg: "RS256", kid: served.certs.public_cert.kid, typ: "JWT" });
    const { payload } = await jwtVerify(jwt, accessKeys, { issuer: LOCAL_ACCESS_TEAM, audience: ACCESS_AUD });
    expect(payload).toMatchObject({
      iss: LOCAL_ACCESS_TEAM,
      aud: [ACCESS_AUD],
      sub: "user-123",
      email: "user@example.com",
      type: "app",
      country: "XX",
    });
    expect(payload.identity_nonce).toEqual(expect.any(String));
    expect(payload.nbf).toBe(payload.iat);
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(900);
    // The OIDC key does not verify it: the two issuers' keys are distinct.
    await expect(jwtVerify(jwt, oidcKeys)).rejects.toMatchObject({ code: "ERR_JWKS_NO_MATCHING_KEY" });
  });

  it("--access honours --sub, --email, --groups, --ttl and --aud", async () => {
    const claims = decodeJwt(
      await mint(
        "--access",
        ...["--sub", "u-9", "--email", "ada@example.com"],
        ...["--groups", "ops", "--ttl", "-5", "--aud", "t"],
      ),
    );
    expect(claims).toMatchObject({ sub: "u-9", email: "ada@example.com", groups: ["ops"], aud: ["t"] });
    expect(claims.exp).toBeLessThan(now());
  });
});

describe("npm run token: command line", () => {
  it("--print-issuer prints the issuer the edge trusts, not a token", async () => {
    expect(await token(["--print-issuer"])).toMatchObject({ code: 0, stdout: `${LOCAL_IDP_URL}\n` });
    expect(await token(["--print-issuer", "--access"])).toMatchObject({ code: 0, stdout: `${LOCAL_ACCESS_TEAM}\n` });
  });

  it.each([
    [["--claim", "iss=https://other.example.com"], "https://other.example.com"],
    [["--access", "--claim", "iss=https://team.example.com"], "https://team.example.com"],
    // --claim is applied last, so it wins over --iss as it does in the token.
    [["--iss", "https://a.example.com", "--claim", "iss=https://b.example.com"], "https://b.example.com"],
  ])("--print-issuer with %j prints the iss the token carries", async (args, issuer) => {
    const printed = await token(["--print-issuer", ...args]);
    expect(printed).toMatchObject({ code: 0, stdout: `${issuer}\n` });
    expect(decodeJwt(await mint(...args)).iss).toBe(issuer);
  });

  it("--print-issuer prints an iss that --claim made a number as the token holds it", async () => {
    const printed = await token(["--print-issuer", "--claim", "iss=123"]);
    expect(printed).toMatchObject({ code: 0, stdout: "123\n" });
    expect(decodeJwt(await mint("--claim", "iss=123")).iss).toBe(123);
  });

  it("an empty --scope is refused with the way to a token without scopes, which works", async () => {
    const refused = await token(["--scope="]);
    expect(refused).toMatchObject({ code: 2, stdout: "" });
    expect(refused.stderr).toContain("--scope needs a value (for a token without scopes: --claim scope=)");
    // --claim takes an empty VALUE as the empty string, as the README documents.
    const { payload } = await jwtVerify(await mint("--claim", "scope="), oidcKeys);
    expect(payload.scope).toBe("");
  });

  it("--help prints usage and exits 0", async () => {
    const run = await token(["--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("Usage: npm run token");
  });

  it.each([
    [["--bogus"], "unknown option: --bogus"],
    [["positional"], "unexpected argument"],
    [["--sub"], "--sub needs a value"],
    // The next option is not the value: this must not sign a token for the subject "--access".
    [["--sub", "--access"], "--sub needs a value"],
    [["--ttl", "soon"], "--ttl must be a whole number"],
    [["--claim", "=1"], "--claim needs KEY=VALUE"],
    [["--access=yes"], "--access takes no value"],
    [["--access", "--tenant", "acme"], "--tenant does not apply to --access"],
    // An empty value is no value, in either spelling: `--sub=` must not sign a token for "".
    ...["sub", "tenant", "scope", "groups", "email", "aud", "iss", "ttl", "nbf", "typ", "claim"].flatMap((name) => [
      [[`--${name}=`], `--${name} needs a value`] as [string[], string],
      [[`--${name}`, ""], `--${name} needs a value`] as [string[], string],
    ]),
    [["--access", "--email="], "--email needs a value"],
    // A list that names no group is as empty as `--groups=`, which would give `groups: []`.
    [["--groups", " , "], '--groups needs at least one group name, got " , "'],
  ])("%j is a usage error: exit 2, message on stderr, nothing on stdout", async (args, message) => {
    const run = await token(args);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain(message);
  });

  it("npm run --silent token prints only the token (the form to use in $(...))", async () => {
    const run = await new Promise<Run>((resolve) => {
      execFile(
        "npm",
        ["run", "--silent", "token", "--", "--sub", "via-npm"],
        { cwd: root, timeout: 30_000, env: { ...process.env, PORTCULLIS_DEV_KEYS: keysFile } },
        (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }),
      );
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    expect(decodeJwt(run.stdout.trim()).sub).toBe("via-npm");
  });
});

describe("development keys", () => {
  it("are created once, even by CLIs racing on first use, and the IdP serves only their public half", async () => {
    const fresh = join(keysDir, "race", "keys.json");
    const runs = await Promise.all([1, 2, 3, 4].map(() => token([], fresh)));
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const kids = new Set(runs.map((run) => decodeProtectedHeader(run.stdout.trim()).kid));
    expect(kids.size).toBe(1);

    const racedIdp = await startIdp({ port: 0, keysFile: fresh });
    try {
      const jwks = (await (await fetch(`${racedIdp.issuer}/jwks`)).json()) as JSONWebKeySet;
      for (const run of runs) await jwtVerify(run.stdout.trim(), createLocalJWKSet(jwks));
      const certs = (await (await fetch(`${racedIdp.issuer}/access/cdn-cgi/access/certs`)).json()) as JSONWebKeySet;
      for (const key of [...jwks.keys, ...certs.keys]) {
        for (const secret of ["d", "p", "q", "dp", "dq", "qi"]) expect(key).not.toHaveProperty(secret);
      }
    } finally {
      await racedIdp.close();
    }
    // The file itself holds the private keys, readable by the owner only.
    const stored = JSON.parse(readFileSync(fresh, "utf8"));
    expect(stored.keys.oidc.d).toEqual(expect.any(String));
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
  });
});

describe("development identity provider", () => {
  it("publishes discovery for an issuer without a trailing slash, and counts key set fetches", async () => {
    const before = await (await fetch(`${idp.issuer}/__idp/stats`)).json();
    const discovery = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json();
    expect(discovery.issuer).toBe(idp.issuer);
    expect(discovery.issuer.endsWith("/")).toBe(false);
    expect(discovery.jwks_uri).toBe(`${idp.issuer}/jwks`);
    expect(discovery.id_token_signing_alg_values_supported).toEqual(["ES256"]);
    await fetch(`${idp.issuer}/jwks`);
    const after = await (await fetch(`${idp.issuer}/__idp/stats`)).json();
    expect(after.discovery_fetches - before.discovery_fetches).toBe(1);
    expect(after.jwks_fetches - before.jwks_fetches).toBe(1);
    expect((await fetch(`${idp.issuer}/token`)).status).toBe(404);
  });
});
