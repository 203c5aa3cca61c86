import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const outdir = mkdtempSync(join(tmpdir(), "portcullis-bundle-"));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

/** The deployable Worker's size budget, as wrangler reports it ("gzip: N KiB"). */
const BUDGET_GZIP_KIB = 30;

describe("deployable bundle", () => {
  it("builds with wrangler deploy --dry-run, within its size budget, trusting no development issuer", () => {
    const output = execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], {
      stdio: "pipe",
      env: { ...process.env, CI: "true" },
    }).toString();
    const files = readdirSync(outdir).filter((f) => f.endsWith(".js"));
    expect(files).toContain("index.js");
    const source = readFileSync(join(outdir, "index.js")).toString();
    const size = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(output);
    expect(size, output).not.toBeNull();
    console.log(`deployable bundle: ${size?.[1]} KiB, ${size?.[2]} KiB gzipped (budget ${BUDGET_GZIP_KIB} KiB)`);
    expect(Number(size?.[2])).toBeLessThanOrEqual(BUDGET_GZIP_KIB);
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
