// Runs the edge for the whole-stack tests: `wrangler dev` (workerd) serving the test-only
// entry test/node/e2e/fixtures/edge-worker.js with a policy the test builds, on a free
// loopback port, with its own state directory (KV and Durable Objects start empty and are
// thrown away afterwards). Everything the Worker prints is kept line by line, so tests can
// find the audit record of a request by its id (E2E_EDGE_OUTPUT=1 also prints them).
//
// The Worker is bundled once up front (`bundleWorker`, as the deployable bundle is built:
// esbuild, then terser) and served with `--no-bundle`: `wrangler dev` reloads the Worker when a source
// file changes, and a reload mid-test would silently reset the isolate's key cache and the
// test clock. Serving a fixed bundle keeps each test file on one isolate from start to end.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
// @ts-expect-error -- plain JS module shared with the local stack
import { WRANGLER_ENV } from "../../../../dev/wrangler-env.mjs";
// @ts-expect-error -- plain JS module: the deployable Worker's build step
import { bundleWorker } from "../../../../scripts/build-worker.mjs";

const ROOT = join(import.meta.dirname, "..", "..", "..", "..");
const CONFIG = join(import.meta.dirname, "..", "fixtures", "wrangler.toml");

/** One audit record as the edge writes it (src/core/audit.ts), the fields tests read. */
export interface AuditLine {
  request_id: string;
  decision: "allow" | "deny";
  reason: string | null;
  detail: string | null;
  status: number;
  route: string | null;
  tenant_id: string | null;
  user_sub: string | null;
  token_hash: string | null;
  limit: string | null;
  failed_open: string[] | null;
  [field: string]: unknown;
}

export interface Edge {
  url: string;
  /** Every line wrangler and the Worker printed so far. */
  lines: string[];
  /** The audit record of a request, waiting for it to be printed (it is written after the response). */
  auditRecord(requestId: string, timeoutMs?: number): Promise<AuditLine>;
  /** Lines that mention a string (e.g. to prove a token was never printed). */
  linesContaining(text: string): string[];
  /** Shifts the clock the edge verifies tokens and ages key sets by (see the Worker entry). */
  setClockOffset(ms: number): Promise<void>;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void) {
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  });
  stream.on("end", () => buffered && onLine(buffered));
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

async function groupGone(child: ChildProcess, ms: number) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      if (child.pid) process.kill(-child.pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts the edge and resolves once a request has crossed the whole pipeline: `probePath`
 * must be a public route of the policy, forwarded to a running origin.
 */
export async function startEdge(options: {
  policy: unknown;
  probePath: string;
  readyTimeoutMs?: number;
}): Promise<Edge> {
  const [port, inspectorPort] = [await freePort(), await freePort()];
  const state = mkdtempSync(join(tmpdir(), "portcullis-e2e-state-"));
  const require = createRequire(import.meta.url);
  const manifest = require.resolve("wrangler/package.json");
  const wrangler = join(dirname(manifest), require(manifest).bin.wrangler);
  const env = { ...process.env, ...WRANGLER_ENV };
  const bundle = join(state, "bundle", "edge-worker.js");
  try {
    await bundleWorker(join(import.meta.dirname, "..", "fixtures", "edge-worker.js"), bundle);
  } catch (error) {
    rmSync(state, { recursive: true, force: true });
    throw new Error(`the edge did not build: ${error}`);
  }
  const args = [
    wrangler,
    "dev",
    bundle,
    "--no-bundle",
    "--config",
    CONFIG,
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(inspectorPort),
    "--persist-to",
    state,
    "--show-interactive-dev-session=false",
    "--var",
    `E2E_POLICY:${JSON.stringify(options.policy)}`,
  ];
  const lines: string[] = [];
  // Its own process group, so stopping reaches wrangler and its workerd children.
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  const killOnExit = () => killGroup(child, "SIGKILL");
  process.on("exit", killOnExit);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const onLine = (line: string) => {
    lines.push(line);
    if (process.env.E2E_EDGE_OUTPUT) console.log(`[edge] ${line}`);
  };
  if (child.stdout) forEachLine(child.stdout, onLine);
  if (child.stderr) forEachLine(child.stderr, onLine);

  const url = `http://127.0.0.1:${port}`;
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      process.off("exit", killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        killGroup(child, "SIGTERM");
        await Promise.race([exited, sleep(5000)]);
      }
      killGroup(child, "SIGKILL");
      await groupGone(child, 3000);
      rmSync(state, { recursive: true, force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 90_000);
  let ready = false;
  while (!ready) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`the edge did not start:\n${lines.slice(-40).join("\n")}`);
    }
    try {
      const response = await fetch(`${url}${options.probePath}`, { signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      if (response.status !== 200) {
        await stop();
        throw new Error(`the edge answered its probe with ${response.status}:\n${lines.slice(-40).join("\n")}`);
      }
      ready = true;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("the edge answered")) throw error;
      await sleep(250);
    }
  }

  const findAudit = (requestId: string): AuditLine | undefined => {
    for (let i = lines.length - 1; i >= 0; i -= 1) {
      const line = lines[i] as string;
      if (!line.includes(requestId)) continue;
      const start = line.indexOf("{");
      if (start === -1) continue;
      try {
        const record = JSON.parse(line.slice(start)) as AuditLine;
        if (record.request_id === requestId) return record;
      } catch {
        // Not a JSON line that happens to mention the id.
      }
    }
    return undefined;
  };

  return {
    url,
    lines,
    linesContaining: (text) => lines.filter((line) => line.includes(text)),
    async auditRecord(requestId, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const record = findAudit(requestId);
        if (record) return record;
        if (Date.now() > until) throw new Error(`no audit record for request ${requestId}`);
        await sleep(50);
      }
    },
    async setClockOffset(ms) {
      const response = await fetch(`${url}/__e2e/clock`, {
        method: "POST",
        body: JSON.stringify({ offset_ms: ms }),
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) throw new Error(`clock offset refused: ${response.status}`);
      await response.arrayBuffer();
    },
    stop,
  };
}
