// `node bench/profile.mjs [--cell forward/pc-jwt/warm] [--duration 10] [--tokens 25000]`
//
// Where one benchmark cell spends its CPU: builds the variant's Worker unminified (so
// functions keep their names), serves it with workerd's V8 inspector on loopback, drives it
// with the same wrk workload as `npm run bench`, records a sampling CPU profile through the
// DevTools protocol, and prints self time by source module and by function. The raw
// profile is written next to the results (open it in Chrome DevTools → Performance).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildEntry, readCompatibility } from "./lib/build.mjs";
import { makeKeys, makeWorkloads } from "./lib/keys.mjs";
import { ORIGIN_BODY, startJwksServer, startOrigin } from "./lib/servers.mjs";
import { freePort, WorkerdProcess, writeConfig } from "./lib/workerd.mjs";
import { durableObjectsOf, VARIANTS } from "./lib/variants.mjs";
import { runWrk, wrkVersion } from "./lib/wrk.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const benchDir = join(root, "bench");

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : args[at + 1];
};
const cell = option("--cell", "forward/pc-jwt/warm");
const durationS = Number(option("--duration", 10));
const tokens = Number(option("--tokens", 25_000));
const top = Number(option("--top", 30));
const [mode, variantId, workloadName] = cell.split("/");
const variant = VARIANTS.find((v) => v.id === variantId);
if (!variant || !["direct", "forward"].includes(mode) || !workloadName) {
  console.error(`--cell must be <direct|forward>/<${VARIANTS.map((v) => v.id).join("|")}>/<es256|warm|rs256|eddsa>`);
  process.exit(2);
}
if (!wrkVersion()) {
  console.error("profile: wrk is not installed; install it first, e.g. `apt-get install wrk`.");
  process.exit(1);
}

const workDir = mkdtempSync(join(tmpdir(), "portcullis-profile-"));
let proc;
let origin;
let jwksServer;
try {
  const compatibility = readCompatibility(root);
  const bundle = buildEntry(root, {
    name: variant.bundle,
    entry: join(benchDir, "workers", `${variant.bundle}.ts`),
    outdir: join(workDir, "bundle"),
    compatibility,
    minify: false,
  });
  const { keys, jwks } = await makeKeys();
  mkdirSync(join(workDir, "tokens"));
  const workloads = await makeWorkloads(keys, join(workDir, "tokens"), workloadName === "warm" ? 1 : tokens, [
    workloadName,
  ]);
  origin = await startOrigin();
  jwksServer = await startJwksServer(jwks, "");
  const objects = durableObjectsOf(variant, bundle.exports);
  const port = await freePort();
  const inspectorPort = await freePort();
  const config = writeConfig({
    dir: workDir,
    name: variant.id,
    port,
    bundleDir: bundle.outdir,
    main: bundle.main,
    supportDir: join(benchDir, "workers"),
    ...compatibility,
    bindings: [
      ["RESPONDER", "service", "responder"],
      ["ORIGIN_URL", "text", origin.url],
      ["JWKS_CACHE", "kv", "kv"],
      ["BENCH_KV_STATS", "service", "kv"],
      ...objects.bindings,
      ...variant.bindings({ jwks, jwksUri: jwksServer.jwksUri, originUrl: origin.url }),
    ],
    durableObjectClasses: objects.classes,
    storageDir: join(workDir, "storage"),
  });
  proc = new WorkerdProcess({
    binary: join(root, "node_modules", ".bin", "workerd"),
    config,
    port,
    logDir: workDir,
    name: variant.id,
    extraArgs: [`--inspector-addr=127.0.0.1:${inspectorPort}`],
  });
  await proc.start();
  const first = workloads[workloadName].first;
  const check = await fetch(`${proc.url}/${mode}/bench`, { headers: { authorization: `Bearer ${first}` } });
  const body = await check.text();
  if (check.status !== 200 || body !== ORIGIN_BODY)
    throw new Error(`first response ${check.status} ${body.slice(0, 200)}`);

  const run = {
    url: `${proc.url}/${mode}/bench`,
    script: join(benchDir, "wrk", "tokens.lua"),
    tokenFile: workloads[workloadName].file,
    connections: 16,
    threads: 2,
  };
  const warm = await runWrk({ ...run, start: 1, durationS: 2 });
  run.start = 1 + warm.requests; // continue the walk: see wrk/tokens.lua

  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const target = targets.find((t) => t.id === "entry") ?? targets[0];
  const profile = await withDevTools(target.webSocketDebuggerUrl, async (send) => {
    await send("Profiler.enable");
    await send("Profiler.setSamplingInterval", { interval: 100 });
    await send("Profiler.start");
    const result = await runWrk({ ...run, durationS });
    const { profile } = await send("Profiler.stop");
    console.log(`${cell}: ${result.rps.toFixed(0)} req/s under the profiler (${result.requests} requests)`);
    return { profile, requests: result.requests };
  });

  const out = join(benchDir, "results", `profile-${cell.replaceAll("/", "-")}.cpuprofile`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(profile.profile));
  const source = readFileSync(join(bundle.outdir, bundle.main), "utf8");
  printProfile(profile.profile, profile.requests, source, top, workDir);
  console.log(`\nprofile: ${out}`);
} catch (error) {
  console.error(`profile failed: ${error instanceof Error ? error.stack : error}`);
  process.exitCode = 1;
} finally {
  await proc?.stop();
  await origin?.close();
  await jwksServer?.close();
  rmSync(workDir, { recursive: true, force: true });
}

/** Opens the DevTools WebSocket of one Worker and hands `fn` a request/response `send`. */
function withDevTools(url, fn) {
  return new Promise((resolvePromise, reject) => {
    const socket = new WebSocket(url);
    let nextId = 1;
    const pending = new Map();
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(String(event.data));
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      if (message.error) waiter.reject(new Error(JSON.stringify(message.error)));
      else waiter.resolve(message.result);
    });
    socket.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)));
    socket.addEventListener("open", () => {
      const send = (method, params = {}) =>
        new Promise((res, rej) => {
          const id = nextId++;
          pending.set(id, { resolve: res, reject: rej });
          socket.send(JSON.stringify({ id, method, params }));
        });
      fn(send).then(
        (value) => {
          socket.close();
          resolvePromise(value);
        },
        (error) => {
          socket.close();
          reject(error);
        },
      );
    });
  });
}

/**
 * esbuild's unminified output marks each module with a `// path/to/module.ts` line; map a
 * bundle line to the module it came from.
 */
function moduleIndex(source, baseDir) {
  const starts = [];
  for (const [line, text] of source.split("\n").entries()) {
    const match = /^\/\/ (\S+\.(?:[cm]?[jt]s|json))$/.exec(text);
    if (!match) continue;
    // esbuild writes these paths relative to the directory of the wrangler configuration.
    const absolute = resolve(baseDir, match[1]);
    const module = absolute.includes("node_modules/")
      ? absolute.replace(/^.*node_modules\//, "")
      : absolute.startsWith(`${root}/`)
        ? absolute.slice(root.length + 1)
        : match[1];
    starts.push({ line, module });
  }
  return (line) => {
    let found = "(bundle)";
    for (const start of starts) {
      if (start.line > line) break;
      found = start.module;
    }
    return found;
  };
}

function printProfile(profile, requests, source, topN, baseDir) {
  const moduleOf = moduleIndex(source, baseDir);
  const lines = source.split("\n");
  const lineTicks = new Map(); // function key → Map(line → ticks)
  const selfUs = new Map();
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  for (let i = 0; i < profile.samples.length; i += 1) {
    const node = byId.get(profile.samples[i]);
    const delta = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(node, (selfUs.get(node) ?? 0) + delta);
  }
  let total = 0;
  const byFunction = new Map();
  const byModule = new Map();
  for (const [node, us] of selfUs) {
    const frame = node.callFrame;
    if (frame.functionName === "(idle)") continue;
    total += us;
    const module = frame.url ? moduleOf(frame.lineNumber) : "(native / runtime)";
    const name = `${frame.functionName || "(anonymous)"}  ${module}${frame.url ? `:${frame.lineNumber + 1}` : ""}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byModule.set(module, (byModule.get(module) ?? 0) + us);
    if (frame.url && node.positionTicks) {
      const ticks = lineTicks.get(name) ?? new Map();
      for (const { line, ticks: n } of node.positionTicks) ticks.set(line, (ticks.get(line) ?? 0) + n);
      lineTicks.set(name, ticks);
    }
  }
  const print = (title, map, limit) => {
    console.log(`\n${title} (busy time ${(total / 1000).toFixed(0)} ms; µs per request = share of the Worker thread)`);
    for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
      console.log(
        `  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / requests).toFixed(1).padStart(6)} µs/req  ${key}`,
      );
    }
  };
  print("self time by source module", byModule, 25);
  print("self time by function", byFunction, topN);
  console.log("\nhottest lines of the busiest functions (share of each function's samples)");
  const busiest = [...byFunction].filter(([name]) => lineTicks.has(name)).sort((a, b) => b[1] - a[1]);
  for (const [name] of busiest.slice(0, 8)) {
    const ticks = [...lineTicks.get(name)];
    const sum = ticks.reduce((acc, [, n]) => acc + n, 0);
    console.log(`  ${name}`);
    for (const [line, n] of ticks.sort((a, b) => b[1] - a[1]).slice(0, 3)) {
      const text = (lines[line - 1] ?? "").trim().slice(0, 110);
      console.log(`    ${((100 * n) / sum).toFixed(0).padStart(3)}%  ${line}: ${text}`);
    }
  }
}
