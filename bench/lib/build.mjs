// Builds every Worker the benchmark serves with wrangler (`wrangler deploy --dry-run
// --outdir`): the benchmark entries with wrangler's own bundler, minified, at the compatibility
// date of the project's wrangler.toml; the deployable Worker by its own build step, as
// production gets it.
import { spawnSync } from "node:child_process";
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { gzipSync } from "node:zlib";
import { wranglerCommand } from "../../dev/wrangler-env.mjs";

/** Top-level compatibility settings of the project's wrangler.toml (before the first table). */
export function readCompatibility(root) {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  const top = toml.split(/^\[/m)[0];
  const date = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(top)?.[1];
  const flags = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(top)?.[1];
  if (!date) throw new Error("wrangler.toml has no top-level compatibility_date");
  return {
    compatibilityDate: date,
    compatibilityFlags: flags ? [...flags.matchAll(/"([^"]+)"/g)].map((m) => m[1]) : [],
  };
}

function wrangler(root, args) {
  const { command, args: argv, cwd, env } = wranglerCommand(root, args);
  const result = spawnSync(command, argv, {
    cwd,
    encoding: "utf8",
    // Plain output, for the sizes read from it below.
    env: { ...env, CI: "true", NO_COLOR: "1" },
    timeout: 180_000,
  });
  if (result.status !== 0) {
    throw new Error(`wrangler ${args.join(" ")} failed:\n${result.stdout}\n${result.stderr}`);
  }
  return `${result.stdout}\n${result.stderr}`;
}

/** Groups a bundled input path: a package name, or the project directory it lives in. */
function ownerOf(path) {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (pkg) return pkg[1];
  const local = /(?:^|\/)((?:src|durable-objects|policy|bench)\/(?:[^/]+\/)?)/.exec(path);
  return local ? local[1] : path;
}

/**
 * The entry module's file name, the names it exports, and which sources fill it (minified
 * bytes per package or project directory), from esbuild's metafile.
 */
function entryModule(outdir) {
  const meta = JSON.parse(readFileSync(join(outdir, "bundle-meta.json"), "utf8"));
  for (const [path, output] of Object.entries(meta.outputs)) {
    if (!output.entryPoint) continue;
    const contents = {};
    const files = [];
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs ?? {})) {
      const owner = ownerOf(input);
      contents[owner] = (contents[owner] ?? 0) + bytesInOutput;
      files.push([input.replace(/^(\.\.\/)+/, "").replace(/^.*?node_modules\//, ""), bytesInOutput]);
    }
    const sorted = Object.fromEntries(Object.entries(contents).sort((a, b) => b[1] - a[1]));
    const largest = Object.fromEntries(files.sort((a, b) => b[1] - a[1]).slice(0, 15));
    return { main: basename(path), exports: output.exports ?? [], contents: sorted, largest };
  }
  throw new Error(`no entry point in ${outdir}/bundle-meta.json`);
}

function describe(name, outdir, log) {
  const { main, exports, contents, largest } = entryModule(outdir);
  const source = readFileSync(join(outdir, main));
  const reported = /Total Upload:\s*([\d.]+)\s*KiB\s*\/\s*gzip:\s*([\d.]+)\s*KiB/.exec(log);
  return {
    name,
    outdir,
    main,
    exports,
    contents,
    largest,
    bytes: source.length,
    gzipBytes: gzipSync(source).length,
    wranglerKiB: reported ? Number(reported[1]) : null,
    wranglerGzipKiB: reported ? Number(reported[2]) : null,
    modules: readdirSync(outdir).filter((f) => f.endsWith(".js")),
  };
}

/** Bundles one benchmark entry (a file under bench/workers) into `outdir`. */
export function buildEntry(root, { name, entry, outdir, compatibility, minify = true }) {
  const config = join(outdir, "..", `${name}.wrangler.json`);
  writeFileSync(
    config,
    JSON.stringify(
      {
        name: `bench-${name}`,
        main: entry,
        compatibility_date: compatibility.compatibilityDate,
        compatibility_flags: compatibility.compatibilityFlags,
        minify,
        // As the deployable's build: no `__name` wrappers around every function the bundle creates.
        keep_names: false,
        workers_dev: false,
      },
      null,
      2,
    ),
  );
  const log = wrangler(root, ["deploy", "--dry-run", "--outdir", outdir, "--metafile", "--config", config]);
  return describe(name, outdir, log);
}

/**
 * The deployable Worker: the project's own wrangler.toml, top-level environment. Its build
 * step (scripts/build-worker.mjs) bundles it and leaves esbuild's metafile beside it: what
 * fills it is read there (bytes as esbuild minified them, before terser's pass).
 */
export function buildDeployable(root, outdir) {
  const log = wrangler(root, ["deploy", "--dry-run", "--outdir", outdir, "--env", ""]);
  copyFileSync(join(root, "build", "worker-meta.json"), join(outdir, "bundle-meta.json"));
  return describe("deployable", outdir, log);
}
