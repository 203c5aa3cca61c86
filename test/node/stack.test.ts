// Whole-stack test: `npm start` as a user runs it (identity provider on 8788, echo origin on
// 8789, the edge in workerd through `wrangler dev --env local` on 8787), driven over HTTP with
// tokens from the real token CLI. Assertions look at what reached the origin, not only at
// status codes. The stack is one child process, stopped with SIGINT as Ctrl-C would.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectCopy } from "./project-copy";

// A copy of the project, with keys (.dev/) and a local KV (.wrangler/state) of its own: a key
// set another run of the stack from this checkout cached in its KV, under the same issuer
// URL, would refuse this run's new kid for up to refresh_cooldown_s.
const scratch = mkdtempSync(join(tmpdir(), "portcullis-stack-"));
const root = projectCopy(scratch, "project-");
const EDGE_URL = "http://127.0.0.1:8787";
const IDP_URL = "http://127.0.0.1:8788";
const ORIGIN_URL = "http://127.0.0.1:8789";

interface EchoRecord {
  method: string;
  path: string;
  headers: Record<string, string>;
}

let stack: ChildProcess;
let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
const output: string[] = [];

/** Resolves when `npm start` has printed its banner; rejects if it exits or takes too long. */
function startedBanner(child: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the local stack did not start in time")), timeoutMs);
    const onData = (chunk: Buffer) => {
      output.push(chunk.toString());
      if (output.join("").includes("Ctrl-C stops everything")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the local stack exited during start-up (code ${code})`));
    });
  });
}

/** Waits for the stack to exit, sending SIGKILL if it has not after `ms`. */
async function exitWithin(ms: number) {
  const timer = setTimeout(() => stack.kill("SIGKILL"), ms);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

beforeAll(async () => {
  // `npm start` is `node dev/start.mjs`; running it directly keeps npm out of the signal path.
  stack = spawn(process.execPath, ["dev/start.mjs"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  exited = new Promise((resolve) => stack.once("exit", (code, signal) => resolve({ code, signal })));
  try {
    await startedBanner(stack, 90_000);
  } catch (error) {
    // The stack's own words are the quickest way to see why it did not come up.
    console.error(output.join("").slice(-4000));
    throw error;
  }
}, 120_000);

afterAll(async () => {
  if (stack.exitCode === null && stack.signalCode === null) {
    stack.kill("SIGTERM");
    await exitWithin(15_000);
  }
  rmSync(scratch, { recursive: true, force: true });
}, 30_000);

/** A token from the real CLI, as `npm run token -- ...args` would print it. */
function token(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ["dev/token.mjs", ...args], { cwd: root, timeout: 15_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`token CLI failed: ${stderr}`)) : resolve(stdout.trim()),
    );
  });
}

/** A request through the edge, tagged so the origin's log can be searched for it. */
async function edge(path: string, headers: Record<string, string> = {}) {
  const marker = randomUUID();
  const response = await fetch(`${EDGE_URL}${path}`, {
    headers: { ...headers, "x-test-marker": marker },
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : undefined;
  // What the echo origin received for this request (its log is searchable by marker).
  const reachedOrigin = async (): Promise<EchoRecord[]> =>
    (await fetch(`${ORIGIN_URL}/__echo/requests?marker=${marker}`)).json() as Promise<EchoRecord[]>;
  return { response, body, reachedOrigin };
}

/** Header names the origin received, in the normalised spelling the edge strips by. */
function identityLikeHeaders(headers: Record<string, string>): string[] {
  return Object.keys(headers)
    .map((name) => name.toLowerCase().replace(/_/g, "-"))
    .filter((name) => /^(x-user-|x-tenant|x-forwarded-client-cert|cf-access-|authorization$)/.test(name));
}

describe("local stack", () => {
  it("starts with a policy the edge accepts and prints where everything runs", async () => {
    const printed = output.join("");
    // start.mjs probes the edge once; a policy that fails to compile is reported loudly.
    expect(printed).not.toContain("local policy is invalid");
    expect(printed).not.toContain("warning:");
    for (const url of [EDGE_URL, IDP_URL, ORIGIN_URL]) expect(printed).toContain(url);
    expect(printed).toContain("npm run -s token");
    const discovery = await (await fetch(`${IDP_URL}/.well-known/openid-configuration`)).json();
    expect(discovery.issuer).toBe(IDP_URL);
  });

  it("forwards a public request with the edge's request id and none of the client's identity headers", async () => {
    const { response, body, reachedOrigin } = await edge("/public/hello", {
      "x-user-sub": "mallory",
      X_User_Sub: "mallory",
      "x-tenant-id": "victim-tenant",
      "x-forwarded-client-cert": "Hash=spoofed",
      "x-request-id": "client-chosen-id",
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-echo")).toBe("1");
    expect(body.path).toBe("/public/hello");
    // The id is the edge's: on the response and on what the origin received, never the client's.
    const requestId = response.headers.get("x-request-id");
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(body.headers["x-request-id"]).toBe(requestId);
    expect(identityLikeHeaders(body.headers)).toEqual([]);
    expect(JSON.stringify(body.headers)).not.toMatch(/mallory|victim-tenant|spoofed|client-chosen-id/);
    expect(await reachedOrigin()).toHaveLength(1);
  });

  it("prints no JWT a request carries in its path: the audit line records it as [jwt], and wrangler's own request line is left out", async () => {
    const signature = randomUUID().replaceAll("-", "");
    const jwt = `eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzdGFjayJ9.${signature}`;
    const printed = async (path: string) => {
      const response = await fetch(`${EDGE_URL}${path}`);
      await response.arrayBuffer();
      const requestId = response.headers.get("x-request-id") as string;
      for (let i = 0; i < 200 && !output.join("").includes(requestId); i++) await new Promise((r) => setTimeout(r, 50));
      return output
        .join("")
        .split("\n")
        .find((line) => line.includes(requestId));
    };
    expect(await printed(`/public/magic-link-${jwt}`)).toContain('"path":"/public/magic-link-[jwt]"');
    // A second request's record printed after it: the first one's wrangler line, had it been
    // printed, would be among what came before.
    expect(await printed("/public/after")).toContain('"path":"/public/after"');
    expect(output.join("")).not.toContain(signature);
    expect(output.join("")).not.toMatch(/\[wrangler:info\] GET \/public\/after/);
  });

  it("answers an unrouted path at the edge: 404 problem+json, never forwarded", async () => {
    const { response, body, reachedOrigin } = await edge("/nothing");
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(body.reason).toBe("route_not_found");
    expect(await reachedOrigin()).toEqual([]);
  });

  it("refuses a protected route without a token: 401, never forwarded", async () => {
    const { response, body, reachedOrigin } = await edge("/v1/things");
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect(body.reason).toBe("token_missing");
    expect(await reachedOrigin()).toEqual([]);
  });

  it("accepts a token from `npm run token`: the origin sees the edge's identity headers and no credential", async () => {
    const jwt = await token();
    const { response, body, reachedOrigin } = await edge("/v1/things", {
      authorization: `Bearer ${jwt}`,
      "x-user-sub": "mallory",
    });
    expect(response.status, JSON.stringify(body)).toBe(200);
    expect(body.path).toBe("/v1/things");
    expect(body.headers["x-user-sub"]).toBe("user-123");
    expect(body.headers["x-tenant"]).toBe("acme");
    expect(body.headers.authorization).toBeUndefined();
    expect(JSON.stringify(body.headers)).not.toContain(jwt);
    expect(await reachedOrigin()).toHaveLength(1);
  });

  it("refuses a token from `npm run token -- --ttl -60` as expired, never forwarded", async () => {
    const { response, body, reachedOrigin } = await edge("/v1/things", {
      authorization: `Bearer ${await token("--ttl", "-60")}`,
    });
    expect(response.status).toBe(401);
    expect(body.reason).toBe("token_expired");
    expect(await reachedOrigin()).toEqual([]);
  });

  it("accepts an Access assertion from `npm run token -- --access` on the Access route", async () => {
    const assertion = await token("--access", "--email", "ada@example.com");
    const { response, body, reachedOrigin } = await edge("/access/x", { "cf-access-jwt-assertion": assertion });
    expect(response.status, JSON.stringify(body)).toBe(200);
    expect(body.path).toBe("/access/x");
    expect(body.headers["x-user-sub"]).toBe("user-123");
    expect(body.headers["x-user-email"]).toBe("ada@example.com");
    expect(body.headers["cf-access-jwt-assertion"]).toBeUndefined();
    expect(JSON.stringify(body.headers)).not.toContain(assertion);
    expect(await reachedOrigin()).toHaveLength(1);
  });

  it("refuses an OIDC token on the Access route: the wrong issuer, never forwarded", async () => {
    const { response, body, reachedOrigin } = await edge("/access/x", { "cf-access-jwt-assertion": await token() });
    expect(response.status).toBe(401);
    expect(body.reason).toBe("issuer_unknown");
    expect(await reachedOrigin()).toEqual([]);
  });

  // Last: stopping is part of the contract (Ctrl-C must leave nothing behind).
  it("a second `npm start` while the stack runs stops at once, naming the port in use", async () => {
    const second = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const child = spawn(process.execPath, ["dev/start.mjs"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      child.stdout?.on("data", (chunk: Buffer) => {
        text += chunk.toString();
      });
      child.stderr?.on("data", (chunk: Buffer) => {
        text += chunk.toString();
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, text });
      });
    });
    expect(second.code).not.toBe(0);
    expect(second.code).not.toBeNull(); // it stopped by itself, not by the test's kill
    expect(second.text).toMatch(/port 878[789] is in use/);
    // The stack that was already running is unaffected.
    const { response } = await edge("/public/still-up", {});
    expect(response.status).toBe(200);
  });

  it("stops the edge, the identity provider and the origin on Ctrl-C (SIGINT)", async () => {
    stack.kill("SIGINT");
    expect(await exitWithin(15_000)).toEqual({ code: 0, signal: null });
    // Nothing listens any more: the connection is refused. A server left running but wedged
    // would only time out, and that is not stopped (the signal just turns such a hang into a failure).
    for (const url of [`${EDGE_URL}/public/`, `${IDP_URL}/jwks`, `${ORIGIN_URL}/`]) {
      await expect(fetch(url, { signal: AbortSignal.timeout(30_000) }), url).rejects.toMatchObject({
        cause: { code: "ECONNREFUSED" },
      });
    }
  });
});
