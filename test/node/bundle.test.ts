import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";

const outdir = mkdtempSync(join(tmpdir(), "portcullis-bundle-"));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

/** The deployable Worker's size budget: 30 KiB gzipped. */
const BUDGET_GZIP_BYTES = 30 * 1024;

describe("deployable bundle", () => {
  it("builds with wrangler deploy --dry-run, within its size budget, trusting no development issuer", () => {
    const output = execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], {
      stdio: "pipe",
      env: { ...process.env, CI: "true" },
    }).toString();
    const files = readdirSync(outdir).filter((f) => f.endsWith(".js"));
    expect(files).toContain("index.js");
    const bytes = readFileSync(join(outdir, "index.js"));
    const source = bytes.toString();
    // In bytes, gzipped as wrangler gzips the upload: its "gzip: N KiB" has two decimals,
    // which read 30.00 up to 5 bytes over the budget.
    const gzipBytes = gzipSync(bytes).length;
    expect(output).toContain(`gzip: ${(gzipBytes / 1024).toFixed(2)} KiB`);
    console.log(`deployable bundle: ${bytes.length} bytes, ${gzipBytes} gzipped (budget ${BUDGET_GZIP_BYTES})`);
    expect(gzipBytes).toBeLessThanOrEqual(BUDGET_GZIP_BYTES);
    // Nothing in the deployable configuration trusts the local development stack.
    expect(source.includes("127.0.0.1:878")).toBe(false);
    expect(source.includes("/.dev/keys")).toBe(false);
    // The Durable Object classes the bindings name are exported.
    expect(/export\{[^}]*as RouteLimiter[^}]*as TenantLimiter/.test(source)).toBe(true);
  });

  it("turns the runtime's invocation logs off, so URLs and headers stay out of Workers Logs", () => {
    const toml = readFileSync(join(import.meta.dirname, "..", "..", "wrangler.toml"), "utf8");
    // The [observability.logs] table, up to the next table header.
    const table = /^\[observability\.logs\]\n((?:(?!\[).*\n)*)/m.exec(toml)?.[1] ?? "";
    expect(table).toMatch(/^invocation_logs = false$/m);
    expect(toml).toMatch(/^\[observability\]\nenabled = true$/m);
  });
});
