// Test harness: builds the pipeline from a test policy and drives it inside workerd with
// the real bindings (KV, Durable Objects) and real loopback servers.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { type AppOptions, createApp } from "../../src/app";
import type { AuditRecord } from "../../src/core/audit";
import type { PolicyDocument } from "../../src/core/policy-types";
import { sleep } from "./waiting";

export const echoOrigin = (env as unknown as { ECHO_ORIGIN: string }).ECHO_ORIGIN;

/** A closed loopback port: connecting to it fails at once. */
export const unreachableOrigin = "http://127.0.0.1:9";

export interface Harness {
  fetch(input: string | Request, init?: RequestInit): Promise<Response>;
  audit: AuditRecord[];
  /** Every line written to console.* while the harness ran requests, and every audit record. */
  logs: string[];
  /** Data points written to the `METRICS` dataset (a recording one unless the test binds its own). */
  dataPoints: AnalyticsEngineDataPoint[];
  /**
   * Waits for deferred work (ctx.waitUntil) of every request this harness ran, as `fetch` does
   * for its own request before it returns: for work deferred later, after a client went away.
   */
  settle(): Promise<void>;
}

/**
 * Analytics Engine stand-in: miniflare's local dataset accepts writes but cannot be read
 * back, so tests bind this one and assert the exact rows.
 */
export function recordingDataset(): AnalyticsEngineDataset & { points: AnalyticsEngineDataPoint[] } {
  const points: AnalyticsEngineDataPoint[] = [];
  return {
    points,
    writeDataPoint(point) {
      if (point) points.push(structuredClone(point));
    },
  };
}

const CONSOLE_LEVELS = ["log", "info", "warn", "error", "debug"] as const;
/** Log arrays of the harnesses whose requests are in flight, with a count per array. */
const consoleListeners = new Map<string[], number>();
let consoleTapped = false;

function logLine(args: unknown[]): string {
  return args
    .map((arg) => {
      if (typeof arg === "string") return arg;
      if (arg instanceof Error) return `${arg.name}: ${arg.message}\n${arg.stack ?? ""}`;
      try {
        return JSON.stringify(arg) ?? String(arg);
      } catch {
        return String(arg);
      }
    })
    .join(" ");
}

/** Copies console output into the logs of every harness with a request in flight. */
function tapConsole(): void {
  if (consoleTapped) return;
  consoleTapped = true;
  for (const level of CONSOLE_LEVELS) {
    const original = console[level].bind(console);
    console[level] = (...args: unknown[]) => {
      if (consoleListeners.size > 0) {
        const line = logLine(args);
        for (const logs of consoleListeners.keys()) logs.push(line);
      }
      original(...args);
    };
  }
}

export function basePolicy(overrides: Partial<PolicyDocument> = {}): PolicyDocument {
  return {
    version: 7,
    // A limiter object's first call (its start-up and storage load) can take longer than the
    // default 50 ms on a machine running many test files at once: a limit refused 503 as
    // limiter_unavailable there would say nothing of the code. Tests of the budget set theirs.
    settings: { limiter_timeout_ms: 2000 },
    upstreams: { echo: { url: echoOrigin, timeout_ms: 2000 } },
    routes: [{ name: "public", methods: ["GET", "POST"], path: "/public/**", auth: "public", upstream: "echo" }],
    ...overrides,
  };
}

/**
 * `bindings` are laid over the test environment (e.g. `{ METRICS: undefined }` to run without
 * Analytics Engine); `options.auditSinks` run in addition to the harness's own.
 */
export function harness(policy: unknown, options: AppOptions = {}, bindings: Record<string, unknown> = {}): Harness {
  tapConsole();
  const audit: AuditRecord[] = [];
  const logs: string[] = [];
  const metrics = recordingDataset();
  const testEnv = { ...env, METRICS: metrics, ...bindings };
  const track = () => consoleListeners.set(logs, (consoleListeners.get(logs) ?? 0) + 1);
  const untrack = () => {
    const count = (consoleListeners.get(logs) ?? 1) - 1;
    if (count > 0) consoleListeners.set(logs, count);
    else consoleListeners.delete(logs);
  };
  // Every request's context, for `settle` to wait on what each defers after its answer.
  const contexts: ReturnType<typeof createExecutionContext>[] = [];
  track(); // what the policy compiler logs counts too
  let app: ReturnType<typeof createApp>;
  try {
    app = createApp(policy, {
      ...options,
      auditSinks: [
        ...(options.auditSinks ?? []),
        (record) => {
          audit.push(record);
          logs.push(JSON.stringify(record));
        },
      ],
    });
  } finally {
    untrack();
  }
  return {
    audit,
    logs,
    dataPoints: metrics.points,
    async fetch(input, init) {
      const request = typeof input === "string" ? new Request(new URL(input, "https://edge.test"), init) : input;
      const ctx = createExecutionContext();
      contexts.push(ctx);
      track();
      try {
        const response = await app.fetch(request, testEnv, ctx);
        await waitOnExecutionContext(ctx);
        return response;
      } finally {
        untrack();
      }
    },
    async settle() {
      for (const ctx of contexts) await waitOnExecutionContext(ctx);
    },
  };
}

/**
 * Rejections nobody handled while `work` ran, and for two task turns after it: `work` should
 * end with the scenario's own end (a body cancelled, an origin's request settled), so that
 * whatever the edge does about it has happened.
 */
export async function unhandledDuring(work: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const listener = (event: PromiseRejectionEvent) => {
    seen.push(String(event.reason));
  };
  addEventListener("unhandledrejection", listener);
  try {
    await work();
    // The runtime reports an unhandled rejection once the microtasks after it have run.
    await sleep(0);
    await sleep(0);
  } finally {
    removeEventListener("unhandledrejection", listener);
  }
  return seen;
}

/**
 * An edge whose one public route, `/held/**` (GET, POST, PUT), forwards to `origin`, a service
 * binding the test controls, within `timeoutMs`.
 */
export function serviceEdge(origin: unknown, timeoutMs: number): Harness {
  return harness(
    basePolicy({
      upstreams: { held: { service: "HELD", timeout_ms: timeoutMs } },
      routes: [{ name: "held", methods: ["GET", "POST", "PUT"], path: "/held/**", auth: "public", upstream: "held" }],
    }),
    {},
    { HELD: origin },
  );
}

/** What the echo origin received for requests carrying this marker. */
export async function originSaw(marker: string): Promise<EchoRecord[]> {
  const response = await fetch(`${echoOrigin}/__echo/requests?marker=${encodeURIComponent(marker)}`);
  return (await response.json()) as EchoRecord[];
}

export interface EchoRecord {
  method: string;
  path: string;
  query: string;
  raw_target: string;
  headers: Record<string, string>;
  body_bytes: number;
}

export function marker(): string {
  return crypto.randomUUID();
}
