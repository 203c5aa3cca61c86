// What `wrangler dev` needs to run offline and unattended: no telemetry, no prompts, no
// update check, no download. Shared by the local stack and the whole-stack tests.
export const WRANGLER_ENV = {
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_SEND_ERROR_REPORTS: "false",
  // Skips the banner, and with it the check for a newer wrangler on the npm registry.
  WRANGLER_HIDE_BANNER: "true",
  WRANGLER_NO_SKILLS_UPDATE_PROMPTS: "true",
  // request.cf comes from built-in sample data instead of a download.
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
};
