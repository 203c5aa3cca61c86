// Test harness: builds the pipeline from a test policy and drives it inside workerd with
// the real bindings (KV, Durable Objects) and real loopback servers.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { type AppOptions, createApp } from "../../src/app";
import type { AuditRecord } from "../../src/core/audit";
import type { PolicyDocument } from "../../src/core/policy-types";

export const echoOrigin = (env as unknown as { ECHO_ORIGIN: string }).ECHO_ORIGIN;

/** A closed loopback port: connecting to it fails at once. */
export const unreachableOrigin = "http://127.0.0.1:9";

export interface Harness {
  fetch(input: string | Request, init?: RequestInit): Promise<Response>;
  audit: AuditRecord[];
  /** Every line written to console.* while the harness ran requests. */
  logs: string[];
}

export function basePolicy(overrides: Partial<PolicyDocument> = {}): PolicyDocument {
  return {
    version: 7,
    upstreams: { echo: { url: echoOrigin, timeout_ms: 2000 } },
    routes: [{ name: "public", methods: ["GET", "POST"], path: "/public/**", auth: "public", upstream: "echo" }],
    ...overrides,
  };
}

export function harness(policy: unknown, options: AppOptions = {}): Harness {
  const audit: AuditRecord[] = [];
  const logs: string[] = [];
  const app = createApp(policy, {
    ...options,
    auditSinks: [
      (record) => {
        audit.push(record);
        logs.push(JSON.stringify(record));
      },
    ],
  });
  return {
    audit,
    logs,
    async fetch(input, init) {
      const request = typeof input === "string" ? new Request(new URL(input, "https://edge.test"), init) : input;
      const ctx = createExecutionContext();
      const response = await app.fetch(request, env, ctx);
      await waitOnExecutionContext(ctx);
      return response;
    },
  };
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
