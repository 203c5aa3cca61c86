// The user-facing tooling against what the README promises: the
// Deployment section against what wrangler reads, the token CLI, and `npm start` as a user
// runs it (quickstart commands as written, a policy edited per the Deployment section, a
// policy that is not JSON, the terminal closing).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error -- plain JS module of the local stack
import { startEchoOrigin } from "../../dev/echo-origin.mjs";
// @ts-expect-error -- plain JS module of the local stack
import { showsEdgeLine } from "../../dev/start.mjs";
import { projectCopy as sharedProjectCopy } from "./project-copy";
import { refused } from "./refused";

const root = join(import.meta.dirname, "..", "..");
const README = readFileSync(join(root, "README.md"), "utf8");
const scratch = mkdtempSync(join(tmpdir(), "portcullis-tooling-"));
const keysFile = join(scratch, "keys.json");

/** Processes this file started (process-group leaders), killed by id on the way out. */
const startedGroups = new Set<number>();
afterAll(async () => {
  for (const pgid of startedGroups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  rmSync(scratch, { recursive: true, force: true });
});

const projectCopy = (prefix: string) => sharedProjectCopy(scratch, prefix);

/** Runs the token CLI as `npm run -s token -- ...args` would. */
function token(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["dev/token.mjs", ...args],
      { cwd: root, timeout: 15_000, env: { ...process.env, PORTCULLIS_DEV_KEYS: keysFile } },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

describe("Deployment section against wrangler.toml", () => {
  // The routes line must be at the top level of wrangler.toml: one added at the end would land
  // inside [[env.local.migrations]] and leave the deployed Worker without a route, silently.
  it("step 3: uncommenting the routes line routes the deployable Worker, and only it", async () => {
    const snippet = /```toml\n([\s\S]*?)```/.exec(README)?.[1]?.trim() ?? "";
    expect(snippet).toMatch(/^routes = /);
    const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
    expect(toml).toContain(`# ${snippet}`);
    const dir = mkdtempSync(join(scratch, "toml-"));
    writeFileSync(join(dir, "wrangler.toml"), toml.replace(`# ${snippet}`, snippet));
    const { unstable_readConfig } = await import("wrangler");
    const config = unstable_readConfig({ config: join(dir, "wrangler.toml") });
    expect(config.routes).toEqual([{ pattern: "api.example.com/*", zone_name: "example.com" }]);
    // As shipped, nothing is routed: the line is a comment.
    expect(unstable_readConfig({ config: join(root, "wrangler.toml") }).routes).toBeUndefined();
  });

  it("the deployable configuration declares what the README's Bindings table lists", async () => {
    const { unstable_readConfig } = await import("wrangler");
    const config = unstable_readConfig({ config: join(root, "wrangler.toml") });
    expect(config.kv_namespaces.map((kv: { binding: string }) => kv.binding)).toEqual(["JWKS_CACHE"]);
    expect(
      config.durable_objects.bindings.map((b: { name: string; class_name: string }) => [b.name, b.class_name]),
    ).toEqual([
      ["TENANT_LIMITER", "TenantLimiter"],
      ["ROUTE_LIMITER", "RouteLimiter"],
    ]);
    expect(config.migrations).toEqual([{ tag: "v1", new_sqlite_classes: ["TenantLimiter", "RouteLimiter"] }]);
    expect(config.analytics_engine_datasets).toEqual([{ binding: "METRICS", dataset: "portcullis" }]);
    expect(config.compatibility_flags).toContain("enable_request_signal");
    expect(config.observability?.logs?.invocation_logs).toBe(false);
    expect(config.observability?.redact_query_string).toBe(true);
    // Commented out up top, where wrangler reads them as the Worker's own (not a section's).
    expect(config.routes).toBeUndefined();
    expect(config.logpush).toBeUndefined();
    const text = readFileSync(join(root, "wrangler.toml"), "utf8");
    const top = text.split(/^\[/m)[0] as string;
    for (const line of ["# routes = [", "# logpush = true"]) expect(top).toContain(line);
    expect(config.workers_dev).toBe(false);
    // The local environment carries the same request-signal flag (inherited).
    const local = unstable_readConfig({ config: join(root, "wrangler.toml"), env: "local" });
    expect(local.compatibility_flags).toContain("enable_request_signal");
    expect(local.main).toMatch(/dev\/local-worker\.ts$/);
  });
});

describe(".ci/run", () => {
  it("installs the Debian tools npm test runs (nginx behind the edge, curl for the Quickstart) without starting nginx", () => {
    const ci = readFileSync(join(root, ".ci", "run"), "utf8").replace(/^\s*#.*$/gm, "");
    expect(ci).toMatch(/missing\+=\(nginx\)/);
    expect(ci).toMatch(/missing\+=\(curl\)/);
    expect(ci).toMatch(/apt-get install -y --no-install-recommends "\$\{missing\[@\]\}"/);
    // The package would otherwise start and enable its own nginx on port 80.
    expect(ci.indexOf("exit 101")).toBeGreaterThan(-1);
    expect(ci.indexOf("exit 101")).toBeLessThan(ci.indexOf("apt-get install"));
    // The README's test command, last.
    expect(ci.trim().split("\n").slice(-2)).toEqual(["npm ci", "npm test"]);
    expect(README).toContain("`apt-get install nginx curl`");
  });
});

describe("npm run token", () => {
  // `--claim` takes any claim, `__proto__` too (a plain assignment would set the prototype
  // and drop the claim silently).
  it("--claim __proto__=VALUE puts the claim in the token, never drops it silently", async () => {
    const run = await token(["--claim", '__proto__={"admin":true}']);
    expect(run.code, run.stderr).toBe(0);
    const payload = JSON.parse(Buffer.from(run.stdout.trim().split(".")[1] ?? "", "base64url").toString());
    expect(Object.hasOwn(payload, "__proto__")).toBe(true);
  });

  it("documented options and errors behave as the README table says", async () => {
    const claims = decodeJwt(
      (await token(["--scope", "api:read payments:write", "--groups", "payments-writer"])).stdout.trim(),
    );
    expect(claims).toMatchObject({ scope: "api:read payments:write", groups: ["payments-writer"] });
    expect(decodeJwt((await token(["--claim", 'roles=["admin"]'])).stdout.trim()).roles).toEqual(["admin"]);
    const nbf = decodeJwt((await token(["--nbf", "300"])).stdout.trim());
    expect((nbf.nbf ?? 0) - (nbf.iat ?? 0)).toBe(300);
    for (const args of [["--access", "--scope", "x"], ["--nbf", "soon"], ["--sub", "--access"], ["-s"]]) {
      const run = await token(args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stdout).toBe("");
    }
  });
});

// ---------------------------------------------------------------------------------------
// Whole stacks: `npm start` as a user runs it. Each starts and stops its own stack.

interface Stack {
  child: ChildProcess;
  output: string[];
  exited: Promise<unknown>;
}

/** Starts `node dev/start.mjs` in `cwd` and waits for its banner. */
async function startStack(cwd: string): Promise<Stack> {
  const child = spawn(process.execPath, ["dev/start.mjs"], {
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PORTCULLIS_DEV_KEYS: keysFile },
  });
  const output: string[] = [];
  child.stdout?.on("data", (c: Buffer) => output.push(c.toString()));
  child.stderr?.on("data", (c: Buffer) => output.push(c.toString()));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const deadline = Date.now() + 90_000;
  while (!output.join("").includes("Ctrl-C stops everything")) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`stack did not start: ${output.join("").slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  // Let the post-banner lines (warnings) arrive.
  await new Promise((r) => setTimeout(r, 1000));
  for (const pgid of childGroups(child.pid ?? 0)) startedGroups.add(pgid);
  return { child, output, exited };
}

/** Process groups of the direct children of `pid` (wrangler runs in its own group). */
function childGroups(pid: number): number[] {
  const groups: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === pid) groups.push(Number(fields[2]));
    } catch {
      // gone
    }
  }
  return groups;
}

async function stopStack(stack: Stack) {
  if (stack.child.exitCode === null && stack.child.signalCode === null) {
    stack.child.kill("SIGINT");
    const timer = setTimeout(() => stack.child.kill("SIGKILL"), 15_000);
    await stack.exited;
    clearTimeout(timer);
  }
}

function sh(command: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      "bash",
      ["-c", command],
      { cwd: root, timeout: 30_000, env: { ...process.env, PORTCULLIS_DEV_KEYS: keysFile } },
      (error, stdout, stderr) => (error ? reject(new Error(`${command}: ${stderr}`)) : resolve(stdout)),
    ),
  );
}

/**
 * Whether nothing listens on the edge's port (or, with `all`, on the provider's and origin's
 * too), polled: a process on its way out may hold its port a moment longer. The bound only
 * keeps a server that never goes (or hangs instead of refusing) from holding the test for ever.
 */
async function edgeIsDown(all = false): Promise<boolean> {
  const ports = all ? [8787, 8788, 8789] : [8787];
  const until = Date.now() + 30_000;
  for (;;) {
    let down = true;
    for (const port of ports) down = down && (await refused(port));
    if (down) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("the echo origin", () => {
  it("shows every header line that reached it, a repeated Authorization included", async () => {
    const echo = await startEchoOrigin({ port: 0 });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const request = httpRequest(
          {
            host: "127.0.0.1",
            port: echo.port,
            path: "/x",
            headers: [
              "Host",
              "127.0.0.1",
              "Authorization",
              "one",
              "authorization",
              "two",
              "X-A",
              "1",
              "x-a",
              "2",
              "Cookie",
              "a=1",
              "Cookie",
              "b=2",
            ],
          },
          (response) => {
            let text = "";
            response.on("data", (chunk) => {
              text += chunk;
            });
            response.on("end", () => resolve(text));
          },
        );
        request.on("error", reject);
        request.end();
      });
      expect(JSON.parse(body).headers).toMatchObject({ authorization: "one, two", "x-a": "1, 2", cookie: "a=1; b=2" });
    } finally {
      await echo.close();
    }
  });
});

describe("npm start's output", () => {
  it("leaves out wrangler's own request lines, which print the path as sent; keeps every other line", () => {
    for (const line of [
      "[wrangler:info] GET /public/eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln 200 OK (5ms)",
      "\u001b[32m[wrangler:info]\u001b[39m POST /v1/payments 403 Forbidden (3ms)",
      "[wrangler:info] OPTIONS / 204 No Content (1ms)",
    ])
      expect(showsEdgeLine(line)).toBe(false);
    for (const line of [
      '{"ts":"2026-11-30T00:00:00.000Z","path":"/public/[jwt]"}',
      "[wrangler:info] Ready on http://127.0.0.1:8787",
      "✘ [ERROR] Build failed with 1 error:",
    ])
      expect(showsEdgeLine(line)).toBe(true);
  });
});

describe("npm start", () => {
  it("the Quickstart curl commands give what the README says", async () => {
    const stack = await startStack(root);
    try {
      const status = async (cmd: string) => (await sh(`${cmd} -o /dev/null -w '%{http_code}'`)).trim();
      const body = async (cmd: string) => JSON.parse(await sh(cmd));
      expect((await body("curl -s http://127.0.0.1:8787/public/hello")).path).toBe("/public/hello");
      expect(await status("curl -s http://127.0.0.1:8787/private")).toBe("404");
      expect(await status("curl -s http://127.0.0.1:8787/v1/things")).toBe("401");
      // This file signs with fresh keys each run, while the local KV (.wrangler/state) keeps the
      // previous run's key set and refresh stamp: for up to refresh_cooldown_s (30 s) after the
      // previous run's fetch the new kid is refused (token_invalid, kid_unknown), as the README's
      // JWKS table says. Wait that out (it is what "delete keys.json, restart" costs a user too).
      let first: any;
      for (const deadline = Date.now() + 40_000; Date.now() < deadline; ) {
        first = await body('curl -s -H "Authorization: Bearer $(npm run -s token)" http://127.0.0.1:8787/v1/things');
        if (first.reason !== "token_invalid") break;
        await new Promise((r) => setTimeout(r, 2000));
      }
      expect(first.headers?.["x-user-sub"], JSON.stringify(first)).toBe("user-123");
      const spoof = await body(
        'curl -s -H "Authorization: Bearer $(npm run -s token -- --sub alice)" -H "X-User-Sub: admin" -H "X_User_Sub: admin" http://127.0.0.1:8787/v1/things',
      );
      expect(spoof.headers["x-user-sub"]).toBe("alice");
      expect(JSON.stringify(spoof.headers)).not.toContain("admin");
      expect(
        await status(
          'curl -s -X POST -H "Authorization: Bearer $(npm run -s token)" http://127.0.0.1:8787/v1/payments',
        ),
      ).toBe("403");
      expect(
        await status(
          'curl -s -X POST -H "Authorization: Bearer $(npm run -s token -- --scope payments:write --groups payments-writer)" http://127.0.0.1:8787/v1/payments',
        ),
      ).toBe("200");
      expect(
        (
          await body(
            'curl -s -H "Authorization: Bearer $(npm run -s token -- --tenant acme)" http://127.0.0.1:8787/v1/tenants/globex/orders',
          )
        ).reason,
      ).toBe("tenant_mismatch");
      expect(
        (
          await body(
            'curl -s -H "Authorization: Bearer $(npm run -s token -- --ttl -120)" http://127.0.0.1:8787/v1/things',
          )
        ).reason,
      ).toBe("token_expired");
      expect(
        (
          await body(
            'curl -s -H "Cf-Access-Jwt-Assertion: $(npm run -s token -- --access)" http://127.0.0.1:8787/access/dashboard',
          )
        ).path,
      ).toBe("/access/dashboard");
    } finally {
      await stopStack(stack);
    }
    expect(await edgeIsDown()).toBe(true);
  }, 180_000);

  // A policy for your own API has no demo `/public/` route: the start-up check of the edge
  // must not call that a fault.
  it("a valid policy without a /public/** route starts without a warning", async () => {
    const copy = projectCopy("stack-");
    const edited = JSON.parse(readFileSync(join(root, "policy", "policy.json"), "utf8"));
    edited.routes = edited.routes.filter((route: { name: string }) => route.name !== "public");
    writeFileSync(join(copy, "policy", "policy.json"), JSON.stringify(edited, null, 2));
    const stack = await startStack(copy);
    try {
      // A valid policy (no highlighted block of problems), and no warning about it either.
      expect(stack.output.join("")).not.toContain("refuses every request");
      expect(stack.output.join("")).not.toContain("warning:");
    } finally {
      await stopStack(stack);
    }
  }, 180_000);

  // A policy.json that is not JSON cannot be bundled: npm start says so and exits.
  it("a policy.json with a JSON syntax error stops npm start with the file it could not build", async () => {
    const copy = projectCopy("badjson-");
    const file = join(copy, "policy", "policy.json");
    writeFileSync(file, readFileSync(file, "utf8").replace('"version": 1,', '"version": 1,,'));
    let stack: Stack | undefined;
    let failure = "";
    try {
      stack = await startStack(copy);
    } catch (error) {
      failure = (error as Error).message;
    }
    if (stack) await stopStack(stack);
    expect(failure).toMatch(/failed to build/);
    expect(failure).toMatch(/policy\.json/);
  }, 180_000);

  // Closing the terminal (or losing an ssh session) sends SIGHUP: the edge, in a process group
  // of its own, must stop too, or it would hold 127.0.0.1:8787 for the next `npm start`.
  it("closing the terminal (SIGHUP) stops the edge too, leaving port 8787 free", async () => {
    const stack = await startStack(root);
    const groups = childGroups(stack.child.pid ?? 0);
    stack.child.kill("SIGHUP");
    await stack.exited;
    const down = await edgeIsDown(true);
    // Clean up what start.mjs left behind (by the process group it created), then judge.
    for (const pgid of groups) {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    expect(down, "wrangler/workerd still serve 127.0.0.1:8787 after SIGHUP").toBe(true);
  }, 180_000);
});
