import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";

const outdir = mkdtempSync(join(tmpdir(), "portcullis-bundle-"));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

describe("deployable bundle", () => {
  it("builds with wrangler deploy --dry-run and carries no development issuer", () => {
    execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], {
      stdio: "pipe",
      env: { ...process.env, CI: "true" },
    });
    const files = readdirSync(outdir).filter((f) => f.endsWith(".js"));
    expect(files).toContain("index.js");
    const source = readFileSync(join(outdir, "index.js"));
    const gzipped = gzipSync(source).length;
    console.log(`deployable bundle: ${source.length} bytes, ${gzipped} bytes gzipped`);
    // Nothing in the deployable configuration trusts the local development stack.
    expect(source.toString()).not.toContain("127.0.0.1:8788");
    expect(gzipped).toBeGreaterThan(1000);
  });
});
