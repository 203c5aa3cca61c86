// How the project runs wrangler: its own wrangler, offline and unattended. The command is
// shared by the local stack (dev/start.mjs) and the benchmark's builds (bench/lib/build.mjs);
// the environment also by the whole-stack tests.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

// No telemetry, no prompts, no update check, no download.
export const WRANGLER_ENV = {
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_SEND_ERROR_REPORTS: "false",
  // Skips the banner, and with it the check for a newer wrangler on the npm registry.
  WRANGLER_HIDE_BANNER: "true",
  WRANGLER_NO_SKILLS_UPDATE_PROMPTS: "true",
  // request.cf comes from built-in sample data instead of a download.
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
};

/**
 * `wrangler <args>` for the project in `root`, as `{ command, args, cwd, env }` for spawn: the
 * entry of the wrangler installed under `root`, run with this Node, so neither a `wrangler`
 * nor an older `node` earlier on PATH is ever used.
 */
export function wranglerCommand(root, args) {
  const require = createRequire(join(root, "package.json"));
  const manifest = require.resolve("wrangler/package.json");
  const cli = join(dirname(manifest), require(manifest).bin.wrangler);
  return { command: process.execPath, args: [cli, ...args], cwd: root, env: { ...process.env, ...WRANGLER_ENV } };
}
