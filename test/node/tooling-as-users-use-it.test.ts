// The local tooling as a new user meets it, following the README: the mistakes people make
// with `npm run token` and `npm run policy`, a policy edited the way the README's provider table
// says, a typo saved while `npm start` runs, a port someone else holds, and stopping the stack
// the ways a shell stops it: Ctrl-C to the terminal's process group, and `kill $!` (SIGTERM
// to the `npm start` process alone). Stacks run from copies of the project, started through
// npm as the README says, each in a process group of its own so nothing outlives this file.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectCopy, projectRoot } from "./project-copy";
import { refused } from "./refused";

const scratch = mkdtempSync(join(tmpdir(), "portcullis-tooling-"));
const keysFile = join(scratch, "keys.json");
const PORTS = [8787, 8788, 8789];
const EDGE_URL = "http://127.0.0.1:8787";

/** Process groups this file started (npm's, and wrangler's under it), killed by id on the way out. */
const startedGroups = new Set<number>();
function killGroups(groups: Iterable<number>) {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
afterAll(() => {
  killGroups(startedGroups);
  rmSync(scratch, { recursive: true, force: true });
});

/** The environment a user's shell gives: no npm option of an outer npm run leaking in. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PORTCULLIS_DEV_KEYS: keysFile };
  for (const name of Object.keys(env)) if (/^npm_config_(sub|ttl|tenant|scope|access)$/i.test(name)) delete env[name];
  return env;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, timeout: 60_000, env: userEnv() }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal colour codes
const COLOUR_CODES = /\u001b\[[0-9;]*m/g;

/** Every process whose parent chain leads to `pid`, with its process group. */
function descendants(pid: number): { pid: number; pgid: number }[] {
  const table: { pid: number; ppid: number; pgid: number }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      table.push({ pid: Number(entry), ppid: Number(fields[1]), pgid: Number(fields[2]) });
    } catch {
      // gone meanwhile
    }
  }
  const found: { pid: number; pgid: number }[] = [];
  const frontier = [pid];
  while (frontier.length > 0) {
    const parent = frontier.pop() as number;
    for (const row of table) {
      if (row.ppid !== parent) continue;
      found.push({ pid: row.pid, pgid: row.pgid });
      frontier.push(row.pid);
    }
  }
  return found;
}

/** Whether any process is still in one of `groups` (a zombie awaiting its reaper counts as gone). */
function anyLeftIn(groups: Set<number>): boolean {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] !== "Z" && groups.has(Number(fields[2]))) return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

/**
 * Whether every process of `groups` is gone and nothing listens on the stack's ports, polled: a
 * process on its way out holds its port a moment longer. The bound only keeps a stack that
 * never stops from holding the test for ever.
 */
async function stackIsGone(groups: Set<number>): Promise<boolean> {
  for (const until = Date.now() + 30_000; ; ) {
    let gone = !anyLeftIn(groups);
    for (const port of PORTS) gone = gone && (await refused(port));
    if (gone) return true;
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

interface NpmStack {
  npm: ChildProcess;
  exited: Promise<unknown>;
  /** What the terminal shows, colour codes removed. */
  output: () => string;
  /** Resolves once the output matches `pattern`; rejects if npm exits first. */
  printed: (pattern: RegExp) => Promise<void>;
  /** npm's process group and every group under it (wrangler runs in one of its own). */
  groups: Set<number>;
}

/** `npm start` in `cwd`, as a user types it, in a process group of its own (a terminal's job). */
async function npmStart(cwd: string): Promise<NpmStack> {
  const npm = spawn("npm", ["start"], { cwd, detached: true, stdio: ["ignore", "pipe", "pipe"], env: userEnv() });
  startedGroups.add(npm.pid as number);
  let text = "";
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const onData = (chunk: Buffer) => {
    text += chunk.toString().replace(COLOUR_CODES, "");
    for (const waiter of [...waiters]) {
      if (waiter.pattern.test(text)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  npm.stdout?.on("data", onData);
  npm.stderr?.on("data", onData);
  const exited = new Promise((resolve) => npm.once("exit", resolve));
  const printed = (pattern: RegExp) =>
    new Promise<void>((resolve, reject) => {
      if (pattern.test(text)) return resolve();
      waiters.push({ pattern, resolve });
      exited.then(() => reject(new Error(`npm start exited before printing ${pattern}:\n${text.slice(-3000)}`)));
    });
  const stack: NpmStack = { npm, exited, output: () => text, printed, groups: new Set([npm.pid as number]) };
  await printed(/Ctrl-C stops everything/);
  for (const { pgid } of descendants(npm.pid as number)) {
    stack.groups.add(pgid);
    startedGroups.add(pgid);
  }
  return stack;
}

describe("npm run token: options written before `--`", () => {
  // `npm run -s token --ttl=-120` (the `--` forgotten): npm takes the option as its own config and
  // hands the script nothing; a default token, valid for 15 minutes, would have the user see 200
  // where they meant to try an expired token. npm passes such an option to the script's
  // environment (npm_config_ttl, npm_config_sub), where the CLI can see it was meant for it.
  it.each([["--ttl=-120"], ["--sub=alice"]])(
    "`npm run -s token %s` is refused (exit 2, nothing on stdout, the option named), never a default token",
    async (option) => {
      const result = await run("npm", ["run", "-s", "token", option], projectRoot);
      // The option's name, however the message spells it (`--ttl`, `ttl`).
      const name = option.slice(2, option.indexOf("="));
      expect(
        result.stdout,
        `printed a token: ${JSON.stringify(result.stdout && decodeJwt(result.stdout.trim()))}`,
      ).toBe("");
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(name);
    },
  );
});

describe("npm run policy: options it does not know", () => {
  // `npm run policy -- --polcy draft.json` compiling policy/policy.json instead, and saying so
  // with exit 0, would have the user believe the draft valid; `--policy` without a file must
  // not die with a TypeError and its stack.
  it.each([
    ["--polcy draft.json", "--polcy"],
    ["--policy", "--policy"],
  ])(
    "`npm run policy -- %s` is a usage error naming the option, never a compile of another file",
    async (command, named) => {
      const copy = projectCopy(scratch, "policy-args-");
      const args = command.split(" ");
      const result = await run(process.execPath, ["scripts/compile-policy.mjs", ...args], copy);
      expect(result.stdout).not.toContain("compiled to");
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(named);
      expect(result.stderr).not.toContain("TypeError");
    },
  );
});

describe("npm start with a port another program holds", () => {
  it("stops at once naming that port (the origin's, held on every interface), and frees the ports it took", async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(8789, "::", resolve));
    try {
      const result = await run(process.execPath, ["dev/start.mjs"], projectRoot);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("echo origin: port 8789 is in use");
      // The identity provider, started before the origin failed, was closed again.
      expect(await refused(8788)).toBe(true);
      expect(await refused(8787)).toBe(true);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });
});

describe("npm start: a typo saved while it runs, then Ctrl-C", () => {
  const copy = projectCopy(scratch, "typo-");
  const policyFile = join(copy, "policy", "policy.json");
  const validPolicy = readFileSync(policyFile, "utf8");
  let stack: NpmStack;

  beforeAll(async () => {
    stack = await npmStart(copy);
  }, 120_000);
  afterAll(() => killGroups(stack?.groups ?? []));

  it("names the file and line that does not parse, holds requests meanwhile, and serves them once it is fixed", async () => {
    // A trailing comma, the commonest JSON slip, on the realm's line.
    const lines = validPolicy.split("\n");
    const at = lines.findIndex((line) => line.includes('"realm"'));
    lines[at] = `${lines[at]},`;
    writeFileSync(policyFile, lines.join("\n"));
    await stack.printed(new RegExp(`policy/policy\\.json:${at + 1}:\\d+`));

    let fixed = false;
    const pending = fetch(`${EDGE_URL}/public/held`).then(async (response) => ({
      answeredAfterFix: fixed,
      status: response.status,
      body: await response.text(),
    }));
    // A chance for the edge to answer while the policy does not parse, which it must not.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    fixed = true;
    writeFileSync(policyFile, validPolicy);
    const answer = await pending;
    expect(answer.answeredAfterFix).toBe(true);
    expect(answer.status, answer.body).toBe(200);
    expect(JSON.parse(answer.body).path).toBe("/public/held");
    expect(stack.npm.exitCode).toBeNull();
  });

  // The README's provider table has users map claims (`"claims": { "groups": "roles" }` for
  // Entra, `scp` for Okta, `client_id` as the audience for Cognito); `npm run token` follows the
  // edited policy's audience and typ, and its claim names too: tokens written under `scope`,
  // `tenant_id`, `groups` and `aud`, which such a policy does not read, would be refused
  // (insufficient_scope; tenant_mismatch; audience_mismatch).
  it("after the policy's claim names are edited, the edge accepts `npm run token`'s tokens with their scopes, groups and tenant", async () => {
    const doc = JSON.parse(validPolicy);
    const oidcId = Object.entries(doc.issuers).find(
      ([, issuer]) => (issuer as { kind: string }).kind === "oidc",
    )?.[0] as string;
    doc.issuers[oidcId].claims = { tenant: "org_id", groups: "roles", scopes: "scp", audience: "client_id" };
    // A realm of its own shows when the edge serves the edited policy (in every 401's challenge).
    doc.settings.realm = "claims-edited";
    writeFileSync(policyFile, JSON.stringify(doc, null, 2));
    try {
      for (;;) {
        try {
          const probe = await fetch(`${EDGE_URL}/v1/things`, { signal: AbortSignal.timeout(5000) });
          await probe.arrayBuffer();
          if (probe.headers.get("www-authenticate")?.includes('realm="claims-edited"')) break;
        } catch {
          // Reloading: ask again.
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      const token = async (...args: string[]) => {
        const result = await run(process.execPath, ["dev/token.mjs", ...args], copy);
        expect(result.code, result.stderr).toBe(0);
        return result.stdout.trim();
      };
      const read = await fetch(`${EDGE_URL}/v1/things`, { headers: { authorization: `Bearer ${await token()}` } });
      const readBody = await read.text();
      expect(read.status, readBody).toBe(200);
      expect(JSON.parse(readBody).headers).toMatchObject({ "x-tenant": "acme", "x-user-scope": "api:read" });
      const pay = await fetch(`${EDGE_URL}/v1/payments`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("--scope", "payments:write", "--groups", "payments-writer")}`,
        },
      });
      const payBody = await pay.text();
      expect(pay.status, payBody).toBe(200);
      expect(JSON.parse(payBody).headers).toMatchObject({
        "x-user-scope": "payments:write",
        "x-user-groups": "payments-writer",
      });
    } finally {
      writeFileSync(policyFile, validPolicy);
    }
  });

  it("Ctrl-C (SIGINT to the terminal's whole process group) leaves no process of the stack behind", async () => {
    process.kill(-(stack.npm.pid as number), "SIGINT");
    await stack.exited;
    expect(await stackIsGone(stack.groups), stack.output().slice(-2000)).toBe(true);
  });
});

describe("npm start stopped with `kill` (SIGTERM to the npm process alone, as `npm start & … kill $!` does)", () => {
  // npm forwards SIGTERM to the shell it runs the script in (`sh -c "…"`); dash, /bin/sh on
  // Debian and Ubuntu, dies of it without passing it on, so the script execs node: otherwise
  // node dev/start.mjs would never hear it, and the edge, the identity provider and the origin
  // would go on holding 8787-8789 after npm exits.
  it("stops the edge, the identity provider and the echo origin, leaving no process behind", async () => {
    const stack = await npmStart(projectCopy(scratch, "sigterm-"));
    try {
      process.kill(stack.npm.pid as number, "SIGTERM");
      await stack.exited;
      expect(await stackIsGone(stack.groups), "the stack outlived `kill <npm start>`").toBe(true);
    } finally {
      killGroups(stack.groups);
    }
  });
});
