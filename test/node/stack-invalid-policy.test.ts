// `npm start` with a broken policy, as the README promises: the edge comes up but refuses
// every request with 500 misconfigured, the stack prints the policy's problems in a banner,
// and fixing the file is enough — wrangler reloads the edge on save. Runs a copy of the
// project in a temporary directory, so the repository's own policy is never touched.
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const EDGE_URL = "http://127.0.0.1:8787";

const copy = mkdtempSync(join(tmpdir(), "portcullis-invalid-policy-"));
const policyFile = join(copy, "policy", "policy.json");
const validPolicy = readFileSync(join(root, "policy", "policy.json"), "utf8");

let stack: ChildProcess;
let exited: Promise<unknown>;
const output: string[] = [];

function outputIncludes(text: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const check = () => {
      if (output.join("").includes(text)) return resolve();
      if (stack.exitCode !== null) return reject(new Error(`the stack exited: ${output.join("").slice(-3000)}`));
      if (Date.now() > deadline) return reject(new Error(`no "${text}" in: ${output.join("").slice(-3000)}`));
      setTimeout(check, 100);
    };
    check();
  });
}

async function publicHello() {
  const response = await fetch(`${EDGE_URL}/public/hello`, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, type: response.headers.get("content-type"), body: await response.json() };
}

beforeAll(async () => {
  for (const entry of ["dev", "src", "durable-objects", "policy", "wrangler.toml", "package.json", "tsconfig.json"]) {
    cpSync(join(root, entry), join(copy, entry), { recursive: true });
  }
  symlinkSync(join(root, "node_modules"), join(copy, "node_modules"), "dir");
  // A route naming an upstream the policy does not define: the compiler must name the field.
  const broken = JSON.parse(validPolicy);
  broken.routes[0].upstream = "nowhere";
  writeFileSync(policyFile, JSON.stringify(broken, null, 2));

  stack = spawn(process.execPath, ["dev/start.mjs"], {
    cwd: copy,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PORTCULLIS_DEV_KEYS: join(copy, ".dev", "keys.json") },
  });
  exited = new Promise((resolve) => stack.once("exit", resolve));
  stack.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  stack.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  await outputIncludes("Ctrl-C stops everything", 90_000);
}, 120_000);

afterAll(async () => {
  if (stack && stack.exitCode === null && stack.signalCode === null) {
    stack.kill("SIGINT");
    const timer = setTimeout(() => stack.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(copy, { recursive: true, force: true });
}, 30_000);

describe("local stack with an invalid policy", () => {
  it("prints the problems in a banner, naming the field, and refuses every request with 500 misconfigured", async () => {
    await outputIncludes("the local policy is invalid", 10_000);
    const text = output.join("");
    const bannerAt = text.indexOf("the local policy is invalid");
    // The problem itself, under the banner: the route's upstream and why.
    expect(text.slice(bannerAt)).toMatch(/- routes\[0\]\.upstream: .*nowhere/);

    const answer = await publicHello();
    expect(answer.status).toBe(500);
    expect(answer.type).toContain("application/problem+json");
    expect(answer.body).toMatchObject({ reason: "misconfigured" });
  });

  it("serves again once the policy file is fixed and saved, without a restart", async () => {
    writeFileSync(policyFile, validPolicy);
    const deadline = Date.now() + 60_000;
    let last: Awaited<ReturnType<typeof publicHello>> | undefined;
    while (Date.now() < deadline) {
      try {
        last = await publicHello();
        if (last.status === 200) break;
      } catch {
        // The edge is reloading: try again.
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(last).toMatchObject({ status: 200, body: { path: "/public/hello" } });
    expect(stack.exitCode).toBeNull();
  }, 90_000);
});
