// The build step under `wrangler dev` on the deployable configuration: wrangler watches the
// policy directory and reruns the build on every change in it, and the build writes
// policy/policy.compiled.json into that same directory. An edit to the policy costs a bounded
// number of rebuilds (the artifact is written only when it changes), not a rebuild loop that
// keeps reloading the Worker, and the edit is served.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

describe("policy build step under wrangler dev (deployable configuration)", () => {
  it("rebuilds a bounded number of times after one policy edit", async () => {
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
    const builds = () => output.split("[custom build] Running").length - 1;
    const before = builds();

    const file = join(copy, "policy", "policy.json");
    const policy = JSON.parse(readFileSync(file, "utf8"));
    policy.settings.realm = "edited-under-dev";
    writeFileSync(file, JSON.stringify(policy, null, 2));

    // The edit is picked up (one rebuild)…
    expect(await waitFor(() => builds() > before, 20_000), output).toBe(true);
    // …and then the watcher settles: give a loop time to show itself.
    await sleep(12_000);
    const after = builds() - before;
    const rebuiltFor = output.match(/The file \S+ changed, restarting build/g) ?? [];
    expect(after, `${after} rebuilds after one edit:\n${rebuiltFor.slice(0, 5).join("\n")}`).toBeLessThanOrEqual(2);

    const response = await fetch(`http://127.0.0.1:${port}/v1/payments`, { method: "POST" });
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="edited-under-dev"');
  });
});
