// The build step under `wrangler dev` on the deployable configuration: wrangler watches the
// policy directory and reruns the build on every change in it, and the build writes
// policy/policy.compiled.json into that same directory. An edit to the policy is served, and
// costs no rebuild loop that keeps reloading the Worker: a build whose policy has not changed
// since the last one writes nothing wrangler watches, so the rebuild that the build's own
// write triggers ends the chain rather than starting another.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { projectCopy } from "./project-copy";

const scratch = mkdtempSync(join(tmpdir(), "portcullis-build-watch-"));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  rmSync(scratch, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (check()) return true;
    await sleep(250);
  }
  return check();
}

/** The directories wrangler watches to rerun the build (wrangler.toml, [build] watch_dir). */
function watchedDirs(project: string): string[] {
  const line = readFileSync(join(project, "wrangler.toml"), "utf8").match(/^watch_dir\s*=\s*(\[.*\])\s*$/m);
  expect(line, "wrangler.toml names no watch_dir").not.toBeNull();
  return (JSON.parse((line as RegExpMatchArray)[1] as string) as string[]).map((dir) => join(project, dir));
}

/** The build step wrangler runs (wrangler.toml, [build] command), as it runs it: in a shell, in the project. */
function buildCommand(project: string): string {
  const line = readFileSync(join(project, "wrangler.toml"), "utf8").match(/^command\s*=\s*(".*")\s*$/m);
  expect(line, "wrangler.toml names no build command").not.toBeNull();
  return JSON.parse((line as RegExpMatchArray)[1] as string) as string;
}

/** Every file under the watched directories, with when it was last written and what it holds. */
function snapshot(project: string): Record<string, { mtimeMs: number; text: string }> {
  const files: Record<string, { mtimeMs: number; text: string }> = {};
  for (const dir of watchedDirs(project)) {
    for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const path = join(entry.parentPath, entry.name);
      files[relative(project, path)] = { mtimeMs: statSync(path).mtimeMs, text: readFileSync(path, "utf8") };
    }
  }
  return files;
}

const run = promisify(execFile);

describe("policy build step under wrangler dev (deployable configuration)", () => {
  it("an edit is rebuilt and served, and rebuilding again writes nothing wrangler watches (no rebuild loop)", async () => {
    const copy = projectCopy(scratch, "dev-");
    const port = 18_000 + Math.floor(Math.random() * 1000);
    let output = "";
    const child = spawn(
      "npx",
      ["wrangler", "dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(port + 1000)],
      { cwd: copy, env: { ...process.env, CI: "true" }, detached: true, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(child);
    child.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    expect(await waitFor(() => output.includes("Ready on"), 60_000), output).toBe(true);

    const file = join(copy, "policy", "policy.json");
    const policy = JSON.parse(readFileSync(file, "utf8"));
    policy.settings.realm = "edited-under-dev";
    writeFileSync(file, JSON.stringify(policy, null, 2));

    // The edit is rebuilt and served: the build wrote the new artifact, and that write was a
    // change in a watched directory, which runs the build once more.
    let realm: string | null = null;
    const served = async () => {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/v1/payments`, {
          method: "POST",
          signal: AbortSignal.timeout(5000),
        });
        await response.arrayBuffer();
        realm = response.headers.get("www-authenticate");
      } catch {
        // Reloading: ask again.
      }
      return realm === 'Bearer realm="edited-under-dev"';
    };
    for (const until = Date.now() + 60_000; !(await served()) && Date.now() < until; ) await sleep(250);
    expect(realm, output.slice(-3000)).toBe('Bearer realm="edited-under-dev"');

    // That next build, and any after it, finds the policy unchanged: were it to write anything
    // wrangler watches (the artifact rewritten with the same text counts: the watcher sees the
    // write, not the text), each build would start the next, for ever. Running the build step
    // as wrangler does shows it leaves every watched file as it was.
    const beforeRebuild = snapshot(copy);
    expect(beforeRebuild[join("policy", "policy.compiled.json")]?.text).toContain("edited-under-dev");
    await run("bash", ["-c", buildCommand(copy)], { cwd: copy, timeout: 60_000 });
    expect(snapshot(copy)).toEqual(beforeRebuild);
  });
});
