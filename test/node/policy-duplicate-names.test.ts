// A policy naming one member twice in an object is refused on every path that turns
// policy/policy.json into a running policy: the compile script (`npm run policy`, `npm test`,
// the build step of `wrangler deploy` and `wrangler dev`) and the local stack's Worker, which
// compiles the policy itself. JSON.parse keeps the last of the two: a route's `"auth": {…}`
// followed by `"auth": "public"` would otherwise be deployed public, without a word.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectCopy, projectRoot } from "./project-copy";

const scratch = mkdtempSync(join(tmpdir(), "portcullis-duplicate-names-"));
const started: ChildProcess[] = [];
afterAll(() => {
  for (const child of started) {
    if (child.pid === undefined || child.exitCode !== null) continue;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  rmSync(scratch, { recursive: true, force: true });
});

const demo = JSON.parse(readFileSync(join(projectRoot, "policy", "policy.json"), "utf8"));
/** routes[1] of the demo policy: POST /v1/payments, for tokens with payments:write only. */
const PAYMENTS = 1;

/**
 * The demo policy as JSON text, edited by `edit`; a member `DUP:name` is written `name`: a
 * second member of that name, after the first.
 */
function policyText(edit: (policy: Record<string, any>) => void = () => {}): string {
  const policy = structuredClone(demo);
  edit(policy);
  return JSON.stringify(policy, null, 2).replace(/"DUP:([^"]*)":/g, '"$1":');
}

/** The payments route made public by a second `auth`, as the README's example. */
const publicPayments = policyText((policy) => {
  expect(policy.routes[PAYMENTS].auth).toMatchObject({ scopes: { all_of: ["payments:write"] } });
  policy.routes[PAYMENTS]["DUP:auth"] = "public";
});

/** `node scripts/compile-policy.mjs --policy FILE --out OUT` on `text`, as `npm run policy` runs it. */
function compile(text: string) {
  const dir = mkdtempSync(join(scratch, "compile-"));
  const policy = join(dir, "policy.json");
  const out = join(dir, "policy.compiled.json");
  writeFileSync(policy, text);
  const run = spawnSync(process.execPath, ["scripts/compile-policy.mjs", "--policy", policy, "--out", out], {
    cwd: projectRoot,
    encoding: "utf8",
  });
  return {
    status: run.status,
    stdout: run.stdout,
    stderr: run.stderr,
    policy,
    compiled: existsSync(out) ? readFileSync(out, "utf8") : undefined,
  };
}

describe("scripts/compile-policy.mjs", () => {
  it("refuses a route whose second `auth` would make it public, naming the route and the name", () => {
    // What JSON.parse makes of it is a valid policy: only the duplicate stands in its way.
    expect(compile(JSON.stringify(JSON.parse(publicPayments))).status).toBe(0);

    const run = compile(publicPayments);
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).toBe(`portcullis: ${run.policy} is not a valid policy:\n  - routes[1]: "auth" appears twice\n`);
    expect(run.stdout).toBe("");
    expect(run.compiled).toBeUndefined();
  });

  it("refuses a duplicate at the top level, and one spelt with an escape, listing each", () => {
    const text = policyText((policy) => {
      policy["DUP:version"] = 1;
      policy.issuers.demo["DUP:kind"] = "oidc";
    }).replace('"routes":', '"\\u0072outes": [],\n  "routes":');
    expect(Object.keys(JSON.parse(text))).toContain("routes");
    const run = compile(text);
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).toBe(
      `portcullis: ${run.policy} is not a valid policy:\n` +
        '  - policy: "version" appears twice\n' +
        '  - policy: "routes" appears twice\n' +
        '  - issuers.demo: "kind" appears twice\n',
    );
    expect(run.compiled).toBeUndefined();
  });

  it("accepts strings that merely look like duplicates, and compiles them as written", () => {
    const lookalike = '{"auth": "public", "auth": "public"} \\", "auth": "public" }';
    const text = policyText((policy) => {
      policy.$schema = 'C:\\schemas\\"}, "version": 2, "\\';
      policy.routes[PAYMENTS].auth.claims = [{ claim: "note", equals: lookalike }];
    });
    const run = compile(text);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.stdout).toContain("compiled to");
    expect(run.compiled).toContain(JSON.stringify(lookalike));
  });
});

describe("wrangler deploy", () => {
  it("stops at the build step, naming the duplicate, with nothing built", () => {
    const copy = projectCopy(scratch, "deploy-");
    writeFileSync(join(copy, "policy", "policy.json"), publicPayments);
    const out = join(copy, "out");
    const run = spawnSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", out], {
      cwd: copy,
      encoding: "utf8",
      env: { ...process.env, CI: "true" },
    });
    const output = `${run.stdout}${run.stderr}`;
    expect(run.status, output).not.toBe(0);
    expect(output).toContain('- routes[1]: "auth" appears twice');
    expect(existsSync(join(out, "worker.js"))).toBe(false);
  });
});

describe("the local stack's Worker (wrangler dev --env local)", () => {
  it("refuses every request with 500 misconfigured, logging the duplicate, until the policy is fixed", async () => {
    const copy = projectCopy(scratch, "local-");
    const policyFile = join(copy, "policy", "policy.json");
    writeFileSync(policyFile, publicPayments);
    const port = 19_000 + Math.floor(Math.random() * 1000);
    const child = spawn(
      "npx",
      [
        ...["wrangler", "dev", "--env", "local", "--ip", "127.0.0.1", "--port", String(port)],
        ...["--inspector-port", String(port + 1000), "--show-interactive-dev-session=false"],
      ],
      { cwd: copy, env: { ...process.env, CI: "true" }, detached: true, stdio: ["ignore", "pipe", "pipe"] },
    );
    started.push(child);
    let output = "";
    const outputChanged: (() => void)[] = [];
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      for (const wake of outputChanged.splice(0)) wake();
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    let ended = false;
    const exited = new Promise<void>((resolve) =>
      child.once("exit", () => {
        ended = true;
        resolve();
      }),
    );
    /** Resolves once the output holds `text`; rejects if wrangler exits first. */
    const seen = async (text: string) => {
      while (!output.includes(text)) {
        if (ended) throw new Error(`wrangler exited: ${output.slice(-3000)}`);
        await Promise.race([new Promise<void>((resolve) => outputChanged.push(resolve)), exited]);
      }
    };
    const payment = async () => {
      const response = await fetch(`http://127.0.0.1:${port}/v1/payments`, {
        method: "POST",
        signal: AbortSignal.timeout(10_000),
      });
      const realm = response.headers.get("www-authenticate");
      return { status: response.status, realm, body: (await response.json()) as { reason?: string } };
    };

    await seen("Ready on");
    // Public as JSON.parse reads it, the route would go on to the (absent) origin.
    const refused = await payment();
    expect(refused, output.slice(-3000)).toMatchObject({ status: 500, body: { reason: "misconfigured" } });
    await seen('"detail":"policy_invalid"');
    // As the edge prints it, where npm start's banner finds it (dev/start.mjs, policyProblems).
    // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal colour codes
    const plain = output.replace(/\u001b\[[0-9;]*m/g, "");
    expect(plain).toMatch(/invalid policy:\s*\n\s*- routes\[1\]: "auth" appears twice\n/);

    // Fixed (the first auth kept, and a string that merely looks like a duplicate), the
    // policy is served on reload: the route asks for a token again.
    writeFileSync(
      policyFile,
      policyText((policy) => {
        policy.settings.realm = "fixed";
        policy.routes[PAYMENTS].auth.claims = [{ claim: "note", equals: '{"auth": "public", "auth": "x"}' }];
      }),
    );
    let answer = refused;
    for (let tries = 0; tries < 120 && answer.status === 500; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      answer = await payment().catch(() => refused);
    }
    expect(answer, output.slice(-3000)).toMatchObject({
      status: 401,
      realm: 'Bearer realm="fixed"',
      body: { reason: "token_missing" },
    });
  });
});
