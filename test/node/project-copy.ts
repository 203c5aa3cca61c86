import { cpSync, mkdtempSync, symlinkSync } from "node:fs";
import { join } from "node:path";

export const projectRoot = join(import.meta.dirname, "..", "..");

/**
 * A copy of what `npm start` and `wrangler deploy` need, under `scratch`, to run or build
 * with an edited policy; node_modules is the project's own.
 */
export function projectCopy(scratch: string, prefix: string): string {
  const copy = mkdtempSync(join(scratch, prefix));
  for (const entry of [
    "dev",
    "src",
    "durable-objects",
    "policy",
    "scripts",
    "wrangler.toml",
    "package.json",
    "tsconfig.json",
  ]) {
    cpSync(join(projectRoot, entry), join(copy, entry), { recursive: true });
  }
  symlinkSync(join(projectRoot, "node_modules"), join(copy, "node_modules"), "dir");
  return copy;
}
