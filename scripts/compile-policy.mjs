// Validates and compiles policy/policy.json into policy/policy.compiled.json, the form the
// deployable Worker ships (src/index.ts): wrangler runs this before every `wrangler deploy`
// (wrangler.toml, [build]), so what is deployed is always the policy as written, and a policy
// that fails validation stops the deploy with every problem listed. `npm test` runs it first.
//
//   node scripts/compile-policy.mjs [--policy FILE] [--out FILE]
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at === -1 ? fallback : resolve(process.argv[at + 1]);
}
const policyFile = option("--policy", join(root, "policy", "policy.json"));
const outFile = option("--out", join(root, "policy", "policy.compiled.json"));

// The compiler is TypeScript: bundled in memory and loaded as a module.
const bundled = await build({
  stdin: {
    contents: [
      'export { compilePolicy, PolicyError } from "./src/core/policy";',
      'export { policyArtifact } from "./src/core/policy-artifact";',
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

let document;
try {
  document = JSON.parse(readFileSync(policyFile, "utf8"));
} catch (error) {
  console.error(`portcullis: cannot read ${policyFile}: ${error.message}`);
  process.exit(1);
}
try {
  const artifact = compiler.policyArtifact(compiler.compilePolicy(document));
  writeFileSync(outFile, `${JSON.stringify(artifact)}\n`);
  console.log(`portcullis: ${policyFile} compiled to ${outFile}`);
} catch (error) {
  if (!(error instanceof compiler.PolicyError)) throw error;
  console.error(`portcullis: ${policyFile} is not a valid policy:\n  - ${error.problems.join("\n  - ")}`);
  process.exit(1);
}
