// `npm run token` with its options written before `--`, where npm takes the ones it shares a
// name with (`scope`) as its own settings: as the README says, refused, never a default token.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { projectRoot } from "./project-copy";

const scratch = mkdtempSync(join(tmpdir(), "portcullis-token-options-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A user's shell: its own key file, and no npm option of an outer `npm run` leaking in. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PORTCULLIS_DEV_KEYS: join(scratch, "keys.json") };
  for (const name of Object.keys(env))
    if (/^npm_config_/i.test(name) && !/^npm_config_cache$/i.test(name)) delete env[name];
  return env;
}

function run(command: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: projectRoot, timeout: 60_000, env: userEnv() }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

describe("npm run token: options written before `--` (dev/token.mjs)", () => {
  // README: "An option written before `--` … prints an error on stderr and exits with status
  // 2", `scope` included, among the options most often given: npm's own `scope` setting is a
  // package scope (`@org`), so one that is not was meant for the command. A token with the
  // default `api:read` would have the user see 403 insufficient_scope for a scope they believe
  // they asked for.
  it("`npm run -s token --scope=…` is refused (exit 2, the option named), never a default token", async () => {
    const result = await run("npm", ["run", "-s", "token", "--scope=api:read payments:write"]);
    expect(result.stdout, `printed a token: ${JSON.stringify(result.stdout && decodeJwt(result.stdout.trim()))}`).toBe(
      "",
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--scope");
  });

  it("the same options after `--` reach the command", async () => {
    const result = await run("npm", [
      "run",
      "-s",
      "token",
      "--",
      "--scope",
      "api:read payments:write",
      "--email",
      "ada@example.com",
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(decodeJwt(result.stdout.trim())).toMatchObject({
      scope: "api:read payments:write",
      email: "ada@example.com",
    });
  });
});
