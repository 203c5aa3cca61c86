import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { projectCopy } from "./project-copy";

const outdir = mkdtempSync(join(tmpdir(), "portcullis-bundle-"));
const scratch = mkdtempSync(join(tmpdir(), "portcullis-build-"));
afterAll(() => {
  rmSync(outdir, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

/** `wrangler deploy --dry-run` in `cwd`, with the policy in it edited by `edit`. */
function dryRunWithPolicy(edit: (policy: Record<string, any>) => void) {
  const copy = projectCopy(scratch, "deploy-");
  const file = join(copy, "policy", "policy.json");
  const policy = JSON.parse(readFileSync(file, "utf8"));
  edit(policy);
  writeFileSync(file, JSON.stringify(policy));
  const out = join(copy, "out");
  const run = spawnSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", out], {
    cwd: copy,
    encoding: "utf8",
    env: { ...process.env, CI: "true" },
  });
  const bundle = join(out, "worker.js");
  return {
    status: run.status,
    output: `${run.stdout}${run.stderr}`,
    bundle: existsSync(bundle) ? readFileSync(bundle, "utf8") : undefined,
  };
}

/** The deployable Worker's size budget: 30 KiB gzipped. */
const BUDGET_GZIP_BYTES = 30 * 1024;

describe("deployable bundle", () => {
  it("builds with wrangler deploy --dry-run, within its size budget, trusting no development issuer", () => {
    const output = execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], {
      stdio: "pipe",
      env: { ...process.env, CI: "true" },
    }).toString();
    const files = readdirSync(outdir).filter((f) => f.endsWith(".js"));
    expect(files).toContain("worker.js");
    const bytes = readFileSync(join(outdir, "worker.js"));
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
    // The policy ships compiled: none of the validator's code or messages is in the Worker.
    for (const message of ["is required: the issuers", "unknown method", "must be an integer from"]) {
      expect(source.includes(message), message).toBe(false);
    }
    // The Durable Object classes the bindings name are exported.
    expect(/export\{[^}]*as RouteLimiter[^}]*as TenantLimiter/.test(source)).toBe(true);
    // The Hono parts the Worker never calls are left out (scripts/build-worker.mjs), stubs in
    // their place; `app.mount()` went with the app methods left out, and its module with it.
    for (const part of ["./utils/body.js", "./utils/html.js", "./utils/url.js", "./compose.js"]) {
      expect(source).toContain(`${part} is not bundled`);
    }
    expect(source).not.toContain("./utils/mount.js");
    // The app methods left out: the service-worker listener, the test helper's default host,
    // the sub-app and mount handlers (the app's own `fetch`, `all` and error handler stay).
    for (const method of [
      'addEventListener("fetch"',
      "http://localhost",
      "replaceRequest",
      "onError=",
      "notFound=e=>",
    ]) {
      expect(source.includes(method), method).toBe(false);
    }
    expect(source).toMatch(/fetch=\(e,\.\.\.t\)=>this\.#\w+\(/);
  });

  // What the build leaves out of Hono must be what the Worker never calls: `app.mount()`,
  // `app.route()`, `app.basePath()`, `app.onError()`, `app.notFound()`, `app.request()`,
  // `app.fire()`, `c.req.parseBody()`, `c.html()`, `c.req.query()`/`queries()`/`param()`, Hono's
  // own path finding (the one app gives its own `getPath`) and the chain of several handlers (it
  // has one router, which takes one). The whole-stack tests run the built Worker through every
  // stage.
  it("has no source that calls the Hono parts the build leaves out", () => {
    const sources = ["src", "durable-objects"].flatMap((dir) =>
      readdirSync(dir, { recursive: true, encoding: "utf8" })
        .filter((file) => file.endsWith(".ts"))
        .map((file) => join(dir, file)),
    );
    expect(sources.length).toBeGreaterThan(40);
    for (const file of sources) {
      expect(readFileSync(file, "utf8"), file).not.toMatch(
        /\.(mount|route|basePath|onError|notFound|request|fire)\(|parseBody|\.html\(|\.req\.(query|queries|param)\(/,
      );
    }
    const apps = sources.flatMap((file) => readFileSync(file, "utf8").match(/new Hono\w*.*/g) ?? []);
    expect(apps).toEqual(['new HonoBase<PipelineEnv>({ router: new SingleHandlerRouter(), getPath: () => "/" });']);
  });

  // The Worker ships its policy compiled; wrangler's build step compiles it from policy.json
  // before every deploy, so a policy edited since the compiled one was written is what ships.
  it("deploys policy.json as it is now, compiled by the build step", () => {
    const { status, output, bundle } = dryRunWithPolicy((policy) => {
      policy.settings.realm = "edited-since-compiled";
    });
    expect(status, output).toBe(0);
    expect(output).toContain("node scripts/build-worker.mjs");
    expect(bundle).toContain("edited-since-compiled");
    expect(bundle).not.toContain("portcullis-demo");
  });

  it("stops the deploy of an invalid policy, listing its problems, with nothing built", () => {
    const { status, output, bundle } = dryRunWithPolicy((policy) => {
      policy.routes[0].methods = ["FETCH"];
      policy.limits.defaults[0].window_s = 0;
    });
    expect(status).not.toBe(0);
    expect(output).toContain("is not a valid policy");
    expect(output).toContain(
      'routes[0].methods: unknown method "FETCH" (one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)',
    );
    expect(output).toContain("limits.defaults[0].window_s: must be an integer from 1 to 2678400");
    expect(bundle).toBeUndefined();
  });

  it("stops the deploy of a policy the lint finds unfit: a route an earlier one shadows", () => {
    const { status, output, bundle } = dryRunWithPolicy((policy) => {
      // A public catch-all before every other route: each would be reached through it.
      policy.routes.unshift({ name: "everything", methods: ["GET"], path: "/**", auth: "public", upstream: "api" });
    });
    expect(status).not.toBe(0);
    expect(output).toContain("is not fit to deploy");
    expect(output).toMatch(/never reaches it: routes\[0\] \(everything\) takes every such request first/);
    expect(bundle).toBeUndefined();
  });

  it("turns the runtime's invocation logs off, so URLs and headers stay out of Workers Logs", () => {
    const toml = readFileSync(join(import.meta.dirname, "..", "..", "wrangler.toml"), "utf8");
    // The [observability.logs] table, up to the next table header.
    const table = /^\[observability\.logs\]\n((?:(?!\[).*\n)*)/m.exec(toml)?.[1] ?? "";
    expect(table).toMatch(/^invocation_logs = false$/m);
    expect(toml).toMatch(/^\[observability\]\nenabled = true$/m);
  });
});
