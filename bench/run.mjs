// `npm run bench`: Portcullis side by side with a bare pass-through Worker and with Hono's
// `jwk` middleware, in one run, served by workerd directly and driven by wrk.
//
// Phases: build every Worker with wrangler's bundler → sign the token workloads → start the
// loopback origin and JWKS server → measure the deployable bundle's start-up → start one
// workerd process per variant → check each answers 200 → rounds of interleaved cells
// (A B C … A B C …) → medians of paired ratios → table, bench/results/latest.json and .md.
//
// Options (defaults in brackets):
//   --duration S [10]   measured seconds per cell       --rounds N [5]      rounds
//   --warmup S [1]      unmeasured seconds before each cell
//   --connections N [16] --threads N [2]                wrk -c / -t
//   --tokens N [25000]  distinct tokens per rotating workload (must exceed the verified-token
//                       cache's 10,000 entries, or the "cold" workload is served from it)
//   --modes direct,forward   --variants bare,bare-do,hono-inline,hono-uri,pc-jwt,pc-full
//   --starts N [7]      start-up samples per bundle
//   --quick             2 s cells, 1 round, 12,000 tokens, 3 starts (for development)
//   --out FILE          results JSON [bench/results/latest.json; --quick: bench/results/quick.json]
//   --keep              keep the temporary build directory
//   --pin               workerd on CPU 0, wrk and the origin on the others (needs 2+ CPUs and
//                       taskset); off by default: it did not narrow the spread between rounds
//                       on the shared 2-CPU machine of BENCHMARKS.md
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { buildDeployable, buildEntry, readCompatibility } from "./lib/build.mjs";
import { pinningPlan, pinThisProcess } from "./lib/cpu-pinning.mjs";
import { ALGORITHMS, AUDIENCE, ISSUER, makeKeys, makeWorkloads, signTokens } from "./lib/keys.mjs";
import { markdownReport, summarise, textReport } from "./lib/report.mjs";
import { ORIGIN_BODY, startJwksServer, startOrigin } from "./lib/servers.mjs";
import { median } from "./lib/stats.mjs";
import { freePort, WorkerdProcess, writeConfig } from "./lib/workerd.mjs";
import { CELLS, LIMITER_CLASSES, MODES, VARIANTS, cellId, durableObjectsOf } from "./lib/variants.mjs";
import { runWrk, wrkVersion } from "./lib/wrk.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const benchDir = join(root, "bench");
const workerdBinary = join(root, "node_modules", ".bin", "workerd");

// ── options ────────────────────────────────────────────────────────────────────────────
function parseArgs(argv) {
  const quick = argv.includes("--quick");
  const options = {
    duration: quick ? 2 : 10,
    rounds: quick ? 1 : 5,
    warmup: 1,
    connections: 16,
    threads: 2,
    tokens: quick ? 12_000 : 25_000,
    modes: MODES,
    variants: VARIANTS.map((v) => v.id),
    starts: quick ? 3 : 7,
    out: join(benchDir, "results", quick ? "quick.json" : "latest.json"),
    keep: false,
    pin: false,
    quick,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      const next = argv[i + 1];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      i += 1;
      return next;
    };
    const positive = (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0) throw new Error(`${arg} must be a positive integer`);
      return n;
    };
    if (arg === "--quick") continue;
    else if (arg === "--keep") options.keep = true;
    else if (arg === "--pin") options.pin = true;
    else if (arg === "--duration") options.duration = positive(value());
    else if (arg === "--rounds") options.rounds = positive(value());
    else if (arg === "--warmup") options.warmup = Math.max(0, Number(value()));
    else if (arg === "--connections") options.connections = positive(value());
    else if (arg === "--threads") options.threads = positive(value());
    else if (arg === "--tokens") options.tokens = positive(value());
    else if (arg === "--starts") options.starts = positive(value());
    else if (arg === "--out") options.out = resolve(value());
    else if (arg === "--modes")
      options.modes = value()
        .split(",")
        .filter((m) => MODES.includes(m));
    else if (arg === "--variants") options.variants = value().split(",");
    else throw new Error(`unknown option ${arg} (see the header of bench/run.mjs)`);
  }
  // Every ratio is paired with the bare Worker and hono/jwk inline of the same round.
  for (const needed of ["bare", "hono-inline"])
    if (!options.variants.includes(needed)) options.variants.unshift(needed);
  if (options.duration > 120 || options.rounds > 20) throw new Error("--duration ≤ 120 and --rounds ≤ 20");
  return options;
}

// ── process hygiene: everything this run starts, it stops ─────────────────────────────
const running = new Set();
let workDir;
let keepWorkDir = false;
async function cleanup() {
  await Promise.allSettled([...running].map((p) => p.stop()));
  running.clear();
  if (workDir && !keepWorkDir) rmSync(workDir, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, async () => {
    console.error(`\n${signal}: stopping`);
    await cleanup();
    process.exit(130);
  });
}

const log = (...args) => console.log(...args);

function versions(wrk) {
  const pkg = (name) => JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version;
  const workerd = spawnSync(workerdBinary, ["--version"], { encoding: "utf8" }).stdout.trim();
  const node = spawnSync(join(root, "node_modules", ".bin", "node"), ["--version"], { encoding: "utf8" }).stdout.trim();
  return { workerd, hono: pkg("hono"), jose: pkg("jose"), wrangler: pkg("wrangler"), node, wrk };
}

function gitState() {
  const rev = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).stdout.trim();
  const dirty = spawnSync("git", ["status", "--porcelain", "--", "src", "durable-objects", "policy", "wrangler.toml"], {
    cwd: root,
    encoding: "utf8",
  }).stdout.trim();
  return { commit: rev || null, uncommittedChanges: dirty ? dirty.split("\n").length : 0 };
}

// ── helpers around one workerd process ────────────────────────────────────────────────
async function startProcess({ name, bundle, bindings, durableObjectClasses = [], probePath }) {
  const port = await freePort();
  const config = writeConfig({
    dir: join(workDir, "config"),
    name,
    port,
    bundleDir: bundle.outdir,
    main: bundle.main,
    supportDir: join(benchDir, "workers"),
    ...compatibility,
    bindings,
    durableObjectClasses,
    storageDir: join(workDir, "storage", `${name}-${port}`),
  });
  const proc = new WorkerdProcess({
    binary: workerdBinary,
    config,
    port,
    logDir: join(workDir, "logs"),
    name,
    cpus: pinning.plan?.worker,
  });
  running.add(proc);
  const started = await proc.start(probePath ? { probePath } : {});
  return { proc, started };
}

async function stopProcess(proc) {
  await proc.stop();
  running.delete(proc);
}

/** The reason and detail of an audit record line, when the line is one. */
function auditCause(line) {
  try {
    const record = JSON.parse(line);
    return record.reason ? ` | audit: reason=${record.reason} detail=${record.detail}` : "";
  } catch {
    return "";
  }
}

async function counters(proc) {
  const response = await fetch(`${proc.url}/__bench/counters`);
  return response.json();
}

async function snapshot(proc) {
  return {
    isolate: await counters(proc),
    jwks: jwksServer.counts.jwks + jwksServer.counts.discovery,
    origin: origin.counts.requests,
    cpuUs: proc.cpuMicros(),
  };
}

function perRequest(before, after, requests, auditLines) {
  const d = (f) => (f(after) - f(before)) / requests;
  return {
    cpuUs: d((s) => s.cpuUs),
    verify: d((s) => s.isolate.verify),
    importKey: d((s) => s.isolate.importKey),
    workerFetch: d((s) => s.isolate.fetch),
    durableObjectStubs: d((s) => s.isolate.durableObjectStubs),
    kvReads: d((s) => s.isolate.kv?.reads ?? 0),
    kvWrites: d((s) => s.isolate.kv?.writes ?? 0),
    jwksFetch: d((s) => s.jwks),
    originRequests: d((s) => s.origin),
    workerRequests: d((s) => s.isolate.requests),
    auditLines: auditLines / requests,
  };
}

// ── main ──────────────────────────────────────────────────────────────────────────────
const options = parseArgs(process.argv.slice(2));
const wrk = wrkVersion();
if (!wrk) {
  console.error(
    "bench: wrk is not installed. Install it first, e.g. `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk` (macOS).",
  );
  process.exit(1);
}

const startedAt = new Date();
const pinning = pinningPlan(options.pin);
const loadAtStart = loadavg();
const gitAtBuild = gitState(); // what was built: others may commit during a long run
workDir = mkdtempSync(join(tmpdir(), "portcullis-bench-"));
keepWorkDir = options.keep;
for (const sub of ["config", "logs", "tokens", "bundles"]) mkdirSync(join(workDir, sub), { recursive: true });
const compatibility = readCompatibility(root);
const cellsPerRound = CELLS.filter((c) => options.variants.includes(c.variant)).length * options.modes.length;
const estimateS = options.rounds * cellsPerRound * (options.duration + options.warmup + 1.5);
log(
  `Portcullis benchmark: ${options.rounds} round(s) × ${cellsPerRound} cells × ${options.duration} s ` +
    `(wrk -t${options.threads} -c${options.connections}); about ${Math.ceil(estimateS / 60)} min of load.`,
);

let origin;
let jwksServer;
try {
  // Builds: wrangler's bundler, as production.
  log("building Workers with wrangler deploy --dry-run …");
  const bundle = {};
  for (const name of ["bare", "bare-do", "hono-jwk", "portcullis", "verify"]) {
    const outdir = join(workDir, "bundles", name);
    bundle[name] = buildEntry(root, { name, entry: join(benchDir, "workers", `${name}.ts`), outdir, compatibility });
  }
  bundle.deployable = buildDeployable(root, join(workDir, "bundles", "deployable"));
  log(
    `  deployable Worker: ${bundle.deployable.bytes} bytes, ${bundle.deployable.gzipBytes} bytes gzipped ` +
      `(wrangler: ${bundle.deployable.wranglerKiB} KiB / gzip ${bundle.deployable.wranglerGzipKiB} KiB)`,
  );
  const contents = Object.entries(bundle.deployable.contents)
    .slice(0, 8)
    .map(([owner, bytes]) => `${owner} ${(bytes / 1024).toFixed(1)} KiB`);
  log(`  minified bytes by source: ${contents.join(", ")}`);
  const limitersExported = Object.values(LIMITER_CLASSES).every((c) => bundle.portcullis.exports.includes(c));
  const deployableLimiters = Object.values(LIMITER_CLASSES).every((c) => bundle.deployable.exports.includes(c));

  // Keys and token workloads.
  log(`signing token workloads (${options.tokens} per rotating set) …`);
  const { keys, jwks } = await makeKeys();
  const needed = [...new Set(CELLS.filter((c) => options.variants.includes(c.variant)).map((c) => c.workload))];
  const workloads = await makeWorkloads(keys, join(workDir, "tokens"), options.tokens, needed);

  // Pinned after the builds, which may use every CPU; processes started from here on inherit it.
  if (pinning.plan) pinThisProcess(pinning.plan.load);
  log(
    pinning.plan
      ? `CPU pinning: workerd on CPU ${pinning.plan.worker}; wrk, the origin and the JWKS server on ${pinning.plan.load}`
      : `CPU pinning: off, ${pinning.why}`,
  );
  origin = await startOrigin();
  jwksServer = await startJwksServer(jwks, ISSUER);

  // Start-up: workerd loading the deployable bundle and answering one request, against
  // workerd loading a one-line Worker; interleaved, median of several starts.
  log(`start-up: ${options.starts} starts each of the deployable Worker and an empty Worker …`);
  const emptyDir = join(workDir, "bundles", "empty");
  mkdirSync(emptyDir, { recursive: true });
  writeFileSync(join(emptyDir, "index.js"), readFileSync(join(benchDir, "workers", "responder.js")));
  const startup = { deployable: [], empty: [] };
  const deployableBindings = [
    ["JWKS_CACHE", "kv", "kv"],
    ...(deployableLimiters ? Object.entries(LIMITER_CLASSES).map(([n, c]) => [n, "durableObject", c]) : []),
  ];
  for (let i = 0; i < options.starts; i += 1) {
    for (const which of ["empty", "deployable"]) {
      const { proc, started } = await startProcess({
        name: `startup-${which}`,
        bundle: which === "empty" ? { outdir: emptyDir, main: "index.js" } : bundle.deployable,
        bindings: which === "empty" ? [] : deployableBindings,
        durableObjectClasses: which === "empty" || !deployableLimiters ? [] : Object.values(LIMITER_CLASSES),
        probePath: "/__startup",
      });
      await stopProcess(proc);
      startup[which].push({ wallMs: started.wallMs, cpuMs: started.cpuUs / 1000, status: started.status });
    }
  }
  const startupSummary = {
    method:
      "workerd process spawned → first HTTP answer; CPU = on-CPU time of all workerd threads at that moment " +
      "(/proc/<pid>/task/*/schedstat). The deployable answers 404 (no route matches /__startup): the request " +
      "ran the whole entry pipeline up to routing.",
    deployable: {
      wallMs: median(startup.deployable.map((s) => s.wallMs)),
      cpuMs: median(startup.deployable.map((s) => s.cpuMs)),
    },
    empty: { wallMs: median(startup.empty.map((s) => s.wallMs)), cpuMs: median(startup.empty.map((s) => s.cpuMs)) },
    samples: startup,
  };
  startupSummary.addedCpuMs = startupSummary.deployable.cpuMs - startupSummary.empty.cpuMs;
  startupSummary.addedWallMs = startupSummary.deployable.wallMs - startupSummary.empty.wallMs;
  log(
    `  deployable: ${startupSummary.deployable.cpuMs.toFixed(1)} ms CPU, ${startupSummary.deployable.wallMs.toFixed(1)} ms wall; ` +
      `empty Worker: ${startupSummary.empty.cpuMs.toFixed(1)} ms CPU; added by the bundle: ${startupSummary.addedCpuMs.toFixed(1)} ms CPU`,
  );

  // One workerd process per variant, plus the verify-cost Worker.
  const context = { jwks, jwksUri: jwksServer.jwksUri, originUrl: origin.url };
  const variantStatus = {};
  const procs = {};
  for (const variant of VARIANTS) {
    if (!options.variants.includes(variant.id)) {
      variantStatus[variant.id] = { state: "skipped", why: "not selected" };
      continue;
    }
    if (variant.requiresLimiters && !limitersExported) {
      variantStatus[variant.id] = {
        state: "not available",
        why: "src/index.ts does not export the TenantLimiter and RouteLimiter Durable Object classes",
      };
      log(`  ${variant.label}: NOT AVAILABLE — ${variantStatus[variant.id].why}`);
      continue;
    }
    const objects = durableObjectsOf(variant, bundle[variant.bundle].exports);
    const { proc } = await startProcess({
      name: variant.id,
      bundle: bundle[variant.bundle],
      bindings: [
        ["RESPONDER", "service", "responder"],
        ["ORIGIN_URL", "text", origin.url],
        ["JWKS_CACHE", "kv", "kv"],
        ["BENCH_KV_STATS", "service", "kv"],
        ...objects.bindings,
        ...variant.bindings(context),
      ],
      durableObjectClasses: objects.classes,
    });
    procs[variant.id] = proc;
    variantStatus[variant.id] = { state: "measured" };
  }
  const verifySamples = {};
  for (const alg of ALGORITHMS) verifySamples[alg] = { jwk: keys[alg].jwk, token: (await signTokens(keys, alg, 1))[0] };
  const { proc: verifyProc } = await startProcess({
    name: "verify",
    bundle: bundle.verify,
    bindings: [
      ["VERIFY_SAMPLES", "json", verifySamples],
      ["ISSUER", "text", ISSUER],
      ["AUDIENCE", "text", AUDIENCE],
    ],
    probePath: "/",
  });

  // First responses: every variant must answer 200 with the upstream's body, in every mode
  // and for every workload it runs, before anything is measured. Error responses are
  // never measured as throughput.
  log("checking first responses …");
  for (const variant of VARIANTS) {
    const proc = procs[variant.id];
    if (!proc) continue;
    const problems = [];
    for (const mode of options.modes) {
      for (const cell of CELLS.filter((c) => c.variant === variant.id)) {
        const before = await snapshot(proc);
        const response = await fetch(`${proc.url}/${mode}/bench`, {
          headers: { authorization: `Bearer ${workloads[cell.workload].first}` },
        });
        const body = await response.text();
        await sleep(50); // audit records are written after the response (waitUntil)
        const after = await snapshot(proc);
        const { lines, last } = proc.takeStdoutLines({ keepLast: true });
        if (response.status !== 200 || body !== ORIGIN_BODY) {
          problems.push(
            `${mode}/${cell.workload}: first response ${response.status} ${body.slice(0, 120).replace(/\s+/g, " ")}` +
              auditCause(last) +
              (proc.stderr() ? ` | workerd: ${proc.stderr().slice(-300).replace(/\s+/g, " ")}` : ""),
          );
          continue;
        }
        if (variant.requiresLimiters && after.isolate.durableObjectStubs === before.isolate.durableObjectStubs) {
          variantStatus[variant.id] = {
            state: "not available",
            why: "the pipeline made no rate-limit Durable Object call (rate-limit stage not wired)",
          };
        }
        if (variant.id === "bare-do" && after.isolate.durableObjectStubs === before.isolate.durableObjectStubs) {
          problems.push(`${mode}/${cell.workload}: no Durable Object call made`);
        }
        if (variant.id === "pc-full" && lines === 0) problems.push(`${mode}/${cell.workload}: no audit record written`);
      }
    }
    if (problems.length > 0) {
      variantStatus[variant.id] = { state: "failed", why: problems[0], problems };
      console.error(`\n✗ ${variant.label}: ABORTED, not measured — ${problems.length} check(s) failed:`);
      for (const p of problems) console.error(`    ${p}`);
    } else if (variantStatus[variant.id].state !== "measured") {
      log(`  ${variant.label}: NOT AVAILABLE — ${variantStatus[variant.id].why}`);
    } else {
      log(`  ${variant.label}: ok`);
    }
    if (variantStatus[variant.id].state !== "measured") {
      await stopProcess(proc);
      delete procs[variant.id];
    }
  }
  for (const needed of ["bare", "hono-inline"]) {
    if (variantStatus[needed].state !== "measured") throw new Error(`${needed} must answer 200: ratios need it`);
  }

  // Raw verification cost inside the isolate, as the workerd process's CPU time per
  // operation (on a shared machine, wall time counts other processes' turns too; the
  // in-isolate wall time is kept alongside).
  async function measureVerify() {
    const out = {};
    for (const [alg, mode, n] of [
      ["ES256", "raw", 3000],
      ["RS256", "raw", 3000],
      ["EdDSA", "raw", 3000],
      ["ES256", "import", 1000],
      ["ES256", "jose", 2000],
    ]) {
      const cpu = [];
      const wall = [];
      for (let i = 0; i < 3; i += 1) {
        const before = verifyProc.cpuMicros();
        const result = await (await fetch(`${verifyProc.url}/__bench/verify?alg=${alg}&mode=${mode}&n=${n}`)).json();
        if (result.error) throw new Error(`verify ${alg}/${mode}: ${result.error}`);
        cpu.push((verifyProc.cpuMicros() - before) / n);
        wall.push(result.us_per_op);
      }
      out[alg] ??= {};
      out[alg][mode] = median(cpu);
      out[alg][`${mode}Wall`] = median(wall);
    }
    return out;
  }

  // Rounds.
  const script = join(benchDir, "wrk", "tokens.lua");
  const rounds = [];
  const verifyRounds = [];
  // Where the next run against a Worker starts in each token file (see wrk/tokens.lua).
  const cursors = new Map();
  async function drive(run, cell, durationS) {
    const key = `${cell.variant}/${cell.workload}`;
    const start = cursors.get(key) ?? 1; // token 0 answered the first-response check
    const result = await runWrk({ ...run, start, durationS });
    cursors.set(key, (start + result.requests) % workloads[cell.workload].count);
    return result;
  }
  const started = Date.now();
  for (let r = 0; r < options.rounds; r += 1) {
    log(`\nround ${r + 1}/${options.rounds}`);
    const verify = await measureVerify();
    verifyRounds.push(verify);
    log(
      `  raw verify in workerd: ES256 ${verify.ES256.raw.toFixed(1)} µs, RS256 ${verify.RS256.raw.toFixed(1)} µs, ` +
        `EdDSA ${verify.EdDSA.raw.toFixed(1)} µs; ES256 importKey+verify ${verify.ES256.import.toFixed(1)} µs, ` +
        `jose jwtVerify ${verify.ES256.jose.toFixed(1)} µs`,
    );
    const round = { cells: {} };
    // Every other round runs the cells backwards, so a drift in the machine's speed during a
    // round weighs on both sides of a paired ratio alike rather than always on the later cell.
    const order = r % 2 === 0 ? CELLS : [...CELLS].reverse();
    for (const mode of options.modes) {
      for (const cell of order) {
        const proc = procs[cell.variant];
        if (!proc) continue;
        const id = cellId(cell, mode);
        const run = {
          url: `${proc.url}/${mode}/bench`,
          script,
          tokenFile: workloads[cell.workload].file,
          connections: options.connections,
          cpus: pinning.plan?.load,
          threads: options.threads,
        };
        if (options.warmup > 0) await drive(run, cell, options.warmup);
        proc.takeStdoutLines();
        const before = await snapshot(proc);
        const result = await drive(run, cell, options.duration);
        await sleep(20);
        const after = await snapshot(proc);
        const auditLines = proc.takeStdoutLines();
        const measured = { ...result, perRequest: perRequest(before, after, result.requests, auditLines) };
        round.cells[id] = measured;
        const bad = result.non2xx + result.socketErrors;
        log(
          `  ${id.padEnd(26)} ${result.rps.toFixed(0).padStart(6)} req/s  p50 ${result.latencyMs.p50.toFixed(2)} ms  ` +
            `p99 ${result.latencyMs.p99.toFixed(2)} ms  CPU ${measured.perRequest.cpuUs.toFixed(0)} µs/req  ` +
            `verify ${measured.perRequest.verify.toFixed(2)}/req  JWKS ${measured.perRequest.jwksFetch.toFixed(3)}/req` +
            (bad > 0 ? `  !! ${result.non2xx} non-2xx, ${result.socketErrors} socket errors` : ""),
        );
      }
    }
    rounds.push(round);
  }
  const elapsedS = (Date.now() - started) / 1000;
  // Anything a Worker process printed to stderr during the run (errors, failed alarms).
  const diagnostics = {};
  for (const [id, proc] of Object.entries(procs)) {
    const text = proc.stderr().trim();
    if (text) {
      diagnostics[id] = text.slice(-1000);
      log(`  note: workerd ${id} wrote to stderr: ${text.slice(-300).replace(/\s+/g, " ")}`);
    }
  }

  const verifySummary = {};
  for (const alg of Object.keys(verifyRounds[0] ?? {})) {
    verifySummary[alg] = {};
    for (const mode of Object.keys(verifyRounds[0][alg])) {
      verifySummary[alg][mode] = median(verifyRounds.map((v) => v[alg][mode]));
    }
  }

  const raw = {
    schema: 1,
    date: startedAt.toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    machine: {
      nproc: cpus().length,
      cpu: cpus()[0]?.model ?? "unknown",
      platform: `${process.platform} ${process.arch}`,
      loadAverage: { atStart: loadAtStart, atEnd: loadavg() },
      pinning: pinning.plan ?? { off: pinning.why },
    },
    versions: versions(wrk),
    git: gitAtBuild,
    config: {
      durationS: options.duration,
      rounds: options.rounds,
      warmupS: options.warmup,
      connections: options.connections,
      threads: options.threads,
      tokensPerRotatingSet: options.tokens,
      modes: options.modes,
      compatibility,
      elapsedS,
    },
    bundle: Object.fromEntries(
      Object.entries(bundle).map(([name, b]) => [
        name,
        {
          bytes: b.bytes,
          gzipBytes: b.gzipBytes,
          wranglerKiB: b.wranglerKiB,
          wranglerGzipKiB: b.wranglerGzipKiB,
          exports: b.exports,
          minifiedBytesBySource: b.contents,
          largestInputs: b.largest,
        },
      ]),
    ),
    startup: startupSummary,
    verify: {
      summary: verifySummary,
      rounds: verifyRounds,
      unit: "µs per operation: workerd CPU time (…Wall: in-isolate wall time)",
    },
    variantStatus,
    diagnostics,
    rounds,
  };
  const summary = summarise(raw);
  raw.summary = summary;

  log(textReport(raw, summary));
  log(
    `\nraw verify in workerd (median): ES256 ${verifySummary.ES256.raw.toFixed(1)} µs, RS256 ${verifySummary.RS256.raw.toFixed(1)} µs, ` +
      `EdDSA ${verifySummary.EdDSA.raw.toFixed(1)} µs; importKey+verify ${verifySummary.ES256.import.toFixed(1)} µs; ` +
      `jose jwtVerify ${verifySummary.ES256.jose.toFixed(1)} µs`,
  );
  mkdirSync(dirname(options.out), { recursive: true });
  // Beside the JSON, never over it: an --out without .json gets .md appended.
  const markdownOut = options.out.endsWith(".json") ? options.out.replace(/\.json$/, ".md") : `${options.out}.md`;
  writeFileSync(options.out, `${JSON.stringify(raw, null, 2)}\n`);
  writeFileSync(markdownOut, `${markdownReport(raw, summary)}\n`);
  // The repository's formatter owns every file under bench/: keep the results lint-clean.
  spawnSync(join(root, "node_modules", ".bin", "biome"), ["format", "--write", options.out, markdownOut], {
    stdio: "ignore",
  });
  log(`\nresults: ${options.out} (and ${markdownOut})`);
} catch (error) {
  console.error(`\nbench failed: ${error instanceof Error ? error.stack : error}`);
  process.exitCode = 1;
} finally {
  await cleanup();
  await origin?.close();
  await jwksServer?.close();
}
