// Builds the deployable Worker (wrangler.toml, [build]: wrangler runs this before every
// `wrangler deploy`, and uploads build/worker.js as it is): the policy compiled, then
// src/index.ts bundled as wrangler would bundle it (esbuild, the same target and conditions),
// then minified once more by terser, which takes about 4 % (over 1 KiB gzipped) more out of
// the bundle than esbuild's minifier alone. esbuild's metafile goes beside it, for the size
// report of `npm run bench`. The whole-stack tests bundle their Worker with `bundleWorker` too,
// so the minified code they run is made as the deployed Worker's is.
//
//   node scripts/build-worker.mjs
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { minify } from "terser";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Hono modules whose functions no code of the Worker calls, with what each module gives in
 * their place. Hono's classes import them whatever is called, so the bundle would carry them:
 * `app.mount()`'s request rewriting, `c.req.parseBody()`'s form parser (a request body streams
 * to the origin unread), `c.html()`'s renderer, `c.req.query()`'s and `c.req.param()`'s
 * decoding, the path Hono would route by (the app gives its own `getPath`: the route stage
 * reads the canonical path itself) and the middleware chain of an app with several handlers
 * (the app has one). Each stub throws if ever reached; `mergePath` joins the app's base path
 * to a route's for `app.routes` alone, which the one-handler router ignores and nothing reads.
 * About 2.2 KiB gzipped of the 30 KiB budget, and the app methods below 0.5 KiB more.
 */
const unusedHonoParts = {
  "./utils/mount.js": { stubbed: ["createMountedRequest"] },
  "./utils/body.js": { stubbed: ["parseBody"] },
  "./utils/html.js": { stubbed: ["HtmlEscapedCallbackPhase", "resolveCallback"] },
  "./utils/url.js": {
    stubbed: ["getPath", "getPathNoStrict", "getQueryParam", "getQueryParams", "tryDecodeURIComponent"],
    given: "export const mergePath = (_base, path) => path;",
  },
  "./compose.js": { stubbed: ["compose"] },
};
/**
 * The methods of Hono's app class that the Worker never calls, and that a class keeps in the
 * bundle whatever is called: sub-apps and base paths (`route`, `basePath`), `mount`, custom
 * error and not-found handlers (the pipeline answers every request itself), the test helper
 * `request` and the service-worker `fire`.
 */
const UNUSED_APP_METHODS = ["#clone()", "route(", "basePath(", "onError = ", "notFound = ", "mount(", "request = ", "fire = "];

/**
 * hono-base.js without those methods: each from its line (`\tname(…) {` or `\tname = …`) to the
 * line that closes it at the same depth. A method not found stops the build: a Hono whose
 * class is written otherwise must be looked at, not shipped with the methods half cut.
 */
function withoutUnusedAppMethods(source) {
  const lines = source.split("\n");
  for (const method of UNUSED_APP_METHODS) {
    const start = lines.findIndex((line) => line.startsWith(`\t${method}`));
    const end = lines.findIndex((line, at) => at > start && /^\t\};?$/.test(line));
    if (start === -1 || end === -1) throw new Error(`hono-base.js: no method ${method.trim()} to leave out`);
    lines.splice(start, end - start + 1);
  }
  return lines.join("\n");
}

const leaveOutUnusedHonoParts = {
  name: "unused-hono-parts",
  setup(build) {
    const names = Object.keys(unusedHonoParts).map((path) => path.replace(/[./]/g, "\\$&"));
    build.onResolve({ filter: new RegExp(`^(?:${names.join("|")})$`) }, (args) =>
      /[\\/]hono[\\/]dist$/.test(args.resolveDir) ? { path: args.path, namespace: "unused-hono-part" } : undefined,
    );
    build.onLoad({ filter: /[\\/]hono[\\/]dist[\\/]hono-base\.js$/ }, (args) => ({
      contents: withoutUnusedAppMethods(readFileSync(args.path, "utf8")),
      loader: "js",
    }));
    build.onLoad({ filter: /.*/, namespace: "unused-hono-part" }, (args) => {
      const { stubbed, given = "" } = unusedHonoParts[args.path];
      return {
        contents: `const unused = () => { throw new Error("${args.path} is not bundled"); };
export { ${stubbed.map((name) => `unused as ${name}`).join(", ")} };
${given}`,
        loader: "js",
      };
    });
  },
};

/** Bundles and minifies the Worker entry `entry` into `outfile`, with its metafile beside it. */
export async function bundleWorker(entry, outfile) {
  const bundled = await build({
    entryPoints: [entry],
    absWorkingDir: root,
    bundle: true,
    format: "esm",
    // As wrangler bundles a Worker: its target, its package conditions, the runtime's own
    // `cloudflare:` modules left to the runtime.
    target: "es2024",
    conditions: ["workerd", "worker", "browser"],
    external: ["cloudflare:*"],
    define: { "process.env.NODE_ENV": '"production"' },
    minify: true,
    metafile: true,
    outfile,
    write: false,
    logLevel: "error",
    plugins: [leaveOutUnusedHonoParts],
  });
  // terser's default transforms, three passes over them (the third takes some 60 bytes more
  // out), and function expressions that use no `this` written as arrows (`unsafe_arrows`: unsafe
  // only for a function called with `new`, which neither this code nor Hono's does; the
  // whole-stack tests run the bundle so minified).
  const { code } = await minify(bundled.outputFiles[0].text, {
    module: true,
    ecma: 2022,
    compress: { passes: 3, unsafe_arrows: true },
  });
  mkdirSync(dirname(outfile), { recursive: true });
  writeFileSync(outfile, code);
  writeFileSync(outfile.replace(/\.js$/, "-meta.json"), JSON.stringify(bundled.metafile));
  return Buffer.byteLength(code);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const compiled = spawnSync(process.execPath, [join(root, "scripts", "compile-policy.mjs")], { stdio: "inherit" });
  if (compiled.status !== 0) process.exit(compiled.status ?? 1);
  const outfile = join(root, "build", "worker.js");
  const bytes = await bundleWorker(join(root, "src", "index.ts"), outfile);
  console.log(`portcullis: built ${outfile} (${bytes} bytes)`);
}
