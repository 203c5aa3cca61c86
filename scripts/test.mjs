// `npm test`: the policy compiled (and so validated), lint, typecheck, the in-workerd suite and
// the Node-side suite (bundle build, whole-stack tests), then one summary line:
// `N passed, N failed`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let passed = 0;
let failed = 0;

function run(label, command, args) {
  console.log(`\n── ${label} ──`);
  const result = spawnSync(command, args, { stdio: "inherit", env: process.env });
  return result.status === 0;
}

function check(label, command, args) {
  if (run(label, command, args)) passed += 1;
  else {
    failed += 1;
    console.log(`✗ ${label} failed`);
  }
}

function vitest(label, config) {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-test-"));
  const report = join(dir, "report.json");
  const ok = run(label, "npx", ["vitest", "run", "--config", config, "--reporter=default", "--reporter=json", `--outputFile.json=${report}`]);
  try {
    const summary = JSON.parse(readFileSync(report, "utf8"));
    passed += summary.numPassedTests;
    failed += summary.numFailedTests;
    if (!ok && summary.numFailedTests === 0) failed += 1; // a suite that crashed counts as a failure
    if (summary.numPendingTests + summary.numTodoTests > 0) {
      console.log(`✗ ${label}: skipped or todo tests are not allowed`);
      failed += 1;
    }
  } catch {
    failed += 1;
    console.log(`✗ ${label}: no report`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

check("policy (compile policy/policy.json)", "node", ["scripts/compile-policy.mjs"]);
check("lint (biome)", "npx", ["biome", "check", "."]);
check("typecheck (tsc)", "npm", ["run", "--silent", "typecheck"]);
vitest("tests in workerd", "vitest.config.ts");
vitest("node-side tests (bundle, whole stack)", "vitest.node.config.ts");

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
