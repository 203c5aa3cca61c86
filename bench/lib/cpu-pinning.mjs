// Keeps the Worker under test and the load that drives it off each other's CPUs. Without it,
// workerd, wrk and the loopback origin (this Node process) share every CPU, and the scheduler
// moves them around: a Worker's rate then depends on where wrk happened to run. With it,
// workerd has CPU 0 to itself, and wrk, the origin and the JWKS server share the rest.
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";

/** The CPU lists to pin to, or undefined when pinning is off or impossible here (and why). */
export function pinningPlan(enabled) {
  if (!enabled) return { plan: undefined, why: "not asked for (--pin)" };
  const cpus = availableParallelism();
  if (cpus < 2) return { plan: undefined, why: `only ${cpus} CPU` };
  if (spawnSync("taskset", ["--version"]).error) return { plan: undefined, why: "taskset not installed (util-linux)" };
  return { plan: { worker: "0", load: cpus === 2 ? "1" : `1-${cpus - 1}` }, why: "" };
}

/** `command args` run on `cpus` (taskset execs the command, so the pid is the command's own). */
export function onCpus(cpus, command, args) {
  return cpus ? { command: "taskset", args: ["-c", cpus, command, ...args] } : { command, args };
}

/** Pins every thread of this process (the origin and JWKS servers live here) to `cpus`. */
export function pinThisProcess(cpus) {
  const result = spawnSync("taskset", ["-a", "-p", "-c", cpus, String(process.pid)], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`taskset could not pin the harness: ${result.stderr}`);
}
