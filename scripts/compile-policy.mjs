// Validates, lints and compiles policy/policy.json into policy/policy.compiled.json, the form
// the deployable Worker ships (src/index.ts): wrangler's build step (wrangler.toml, [build]:
// scripts/build-worker.mjs) runs this before every `wrangler deploy`, so what is deployed is
// always the policy as written, and a policy that fails validation or the lint stops the
// deploy with every problem listed. `npm test` runs it first.
//
//   node scripts/compile-policy.mjs [--policy FILE] [--out FILE]
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

// `--policy FILE` or `--policy=FILE`.
const args = process.argv
  .slice(2)
  .flatMap((arg) => (arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg]));
// Anything else is a mistake (`--polcy draft.json`), never a reason to compile another file.
for (let i = 0; i < args.length; i += 2) {
  if (args[i] !== "--policy" && args[i] !== "--out") usage(`unknown option ${args[i]}`);
  if (args[i + 1] === undefined || args[i + 1].startsWith("--")) usage(`${args[i]} needs a file`);
}

function usage(problem) {
  console.error(`portcullis: ${problem}\nUsage: node scripts/compile-policy.mjs [--policy FILE] [--out FILE]`);
  process.exit(2);
}

function option(name, fallback) {
  const at = args.indexOf(name);
  return at === -1 ? fallback : resolve(args[at + 1]);
}
const policyFile = option("--policy", join(root, "policy", "policy.json"));
const outFile = option("--out", join(root, "policy", "policy.compiled.json"));

// The compiler is TypeScript: bundled in memory and loaded as a module.
const bundled = await build({
  stdin: {
    contents: [
      'export { compilePolicy, PolicyError, parsePolicyText } from "./src/core/policy";',
      'export { policyArtifact, policyFromArtifact } from "./src/core/policy-artifact";',
      'export { policyProblems } from "./src/core/policy-lint";',
    ].join("\n"),
    resolveDir: root,
    loader: "ts",
  },
  bundle: true,
  format: "esm",
  platform: "neutral",
  write: false,
  logLevel: "error",
});
const compiler = await import(`data:text/javascript;base64,${Buffer.from(bundled.outputFiles[0].text).toString("base64")}`);

/** Stops the build: `message`, then each of `problems` (if given) on a line of its own. */
function refuse(message, problems) {
  console.error(`portcullis: ${message}${problems ? `:\n  - ${problems.join("\n  - ")}` : ""}`);
  process.exit(1);
}

let document;
try {
  // Also refuses a name written twice in one object, which JSON.parse would let pass (the last wins).
  document = compiler.parsePolicyText(readFileSync(policyFile, "utf8"));
} catch (error) {
  if (error instanceof compiler.PolicyError) refuse(`${policyFile} is not a valid policy`, error.problems);
  refuse(`cannot read ${policyFile}: ${error.message}`);
}
let compiled;
try {
  compiled = compiler.compilePolicy(document);
} catch (error) {
  if (!(error instanceof compiler.PolicyError)) throw error;
  refuse(`${policyFile} is not a valid policy`, error.problems);
}
// What the validator lets through but no deployed policy should hold (src/core/policy-lint.ts):
// a shadowed route, credentials for a plain-http page, loopback upstreams… stop the deploy too.
const problems = compiler.policyProblems(compiled, { deployed: true });
if (problems.length > 0) refuse(`${policyFile} is not fit to deploy`, problems);
const text = `${JSON.stringify(compiler.policyArtifact(compiled))}\n`;
// What the Worker will revive must be exactly what was compiled: a value JSON cannot write
// (the validator refuses those it knows of) stops the build rather than deploy another policy.
if (!isDeepStrictEqual(compiler.policyFromArtifact(JSON.parse(text)), compiled)) {
  refuse(`${policyFile} compiles to a policy that JSON cannot carry unchanged`);
}
// Unchanged, the file is left alone: wrangler dev watches its directory, and a write would
// rebuild again, for ever.
if (!existsSync(outFile) || readFileSync(outFile, "utf8") !== text) writeFileSync(outFile, text);
console.log(`portcullis: ${policyFile} compiled to ${outFile}`);
