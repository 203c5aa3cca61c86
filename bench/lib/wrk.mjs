// Drives one Worker with wrk for a fixed time at a fixed connection count, and reads the
// summary the Lua script prints (requests, errors, latency percentiles).
import { spawn, spawnSync } from "node:child_process";
import { onCpus } from "./cpu-pinning.mjs";

/** wrk's version line, or undefined when wrk is not installed. */
export function wrkVersion() {
  const result = spawnSync("wrk", ["--version"], { encoding: "utf8" });
  if (result.error) return undefined;
  return `${result.stdout}${result.stderr}`
    .split("\n")[0]
    .replace(/\s+Copyright.*$/, "")
    .trim();
}

/**
 * @returns {Promise<{requests, durationS, rps, non2xx, socketErrors, latencyMs: {p50, p75, p90, p99, max, mean}}>}
 */
export function runWrk({ url, script, tokenFile, start = 0, durationS, connections, threads, cpus }) {
  const args = [
    `-t${threads}`,
    `-c${connections}`,
    `-d${durationS}s`,
    "--latency",
    "--timeout",
    "5s",
    "-s",
    script,
    url,
    "--",
    tokenFile,
    String(start),
    String(threads),
  ];
  return new Promise((resolve, reject) => {
    const pinned = onCpus(cpus, "wrk", args);
    const child = spawn(pinned.command, pinned.args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    // wrk stops itself after durationS; this only guards against a hung run.
    const guard = setTimeout(() => child.kill("SIGKILL"), (durationS + 30) * 1000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(guard);
      const line = stdout.split("\n").find((l) => l.startsWith("BENCH_JSON "));
      if (code !== 0 || !line) {
        reject(new Error(`wrk exited ${code}: ${stderr || stdout}`));
        return;
      }
      resolve(cellResult(JSON.parse(line.slice("BENCH_JSON ".length))));
    });
  });
}

/** One cell's figures from the summary the Lua script prints. */
export function cellResult(summary) {
  const durationSeconds = summary.duration_us / 1e6;
  const ms = (us) => us / 1000;
  const { connect, read, write, timeout, status } = summary.errors;
  return {
    requests: summary.requests,
    durationS: durationSeconds,
    // Answers only: an error response is not throughput (a limiter's 503s must not pass for speed).
    rps: (summary.requests - status) / durationSeconds,
    non2xx: status,
    socketErrors: connect + read + write + timeout,
    latencyMs: {
      p50: ms(summary.latency_us.p50),
      p75: ms(summary.latency_us.p75),
      p90: ms(summary.latency_us.p90),
      p99: ms(summary.latency_us.p99),
      max: ms(summary.latency_us.max),
      mean: ms(summary.latency_us.mean),
    },
  };
}
