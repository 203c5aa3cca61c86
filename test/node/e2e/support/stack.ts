// Pieces every whole-stack test file uses: the echo origin (dev/echo-origin.mjs, the same one
// the local stack runs), a request helper that tags each request so the origin's log can be
// searched for it, and the problem+json reading that tests assert on.
import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export interface EchoRecord {
  method: string;
  path: string;
  headers: Record<string, string>;
  body_bytes: number;
}

export interface EchoOrigin {
  server: Server;
  port: number;
  url: string;
  /** What reached the origin, in order (bounded by the origin's own log size). */
  seen: EchoRecord[];
  /** Requests that reached the origin carrying this marker. */
  sawMarker(marker: string): EchoRecord[];
  close(): Promise<void>;
}

interface EchoModule {
  startEchoOrigin(options: {
    port: number;
    host?: string;
  }): Promise<{ server: Server; port: number; seen: EchoRecord[] }>;
}

export async function startOrigin(): Promise<EchoOrigin> {
  // Imported by URL: dev/echo-origin.mjs is plain JavaScript without type declarations.
  const module = (await import(
    pathToFileURL(join(import.meta.dirname, "..", "..", "..", "..", "dev", "echo-origin.mjs")).href
  )) as EchoModule;
  const { server, port, seen } = await module.startEchoOrigin({ port: 0 });
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    seen,
    sawMarker: (marker) => seen.filter((record) => record.headers["x-test-marker"] === marker),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface EdgeAnswer {
  status: number;
  headers: Headers;
  /** Parsed JSON (problem+json or the echo), or the raw text. */
  body: any;
  text: string;
  requestId: string | null;
  marker: string;
  /** Time from sending to the whole body received, ms. */
  ms: number;
}

/** One request through the edge, tagged with a fresh `x-test-marker`. */
export async function callEdge(
  edgeUrl: string,
  path: string,
  options: {
    token?: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    timeoutMs?: number;
  } = {},
): Promise<EdgeAnswer> {
  const marker = randomUUID();
  const headers: Record<string, string> = { ...options.headers, "x-test-marker": marker };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const started = performance.now();
  const response = await fetch(`${edgeUrl}${path}`, {
    method: options.method ?? "GET",
    headers,
    ...(options.body !== undefined ? { body: options.body } : {}),
    signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
  });
  const text = await response.text();
  const ms = performance.now() - started;
  let body: any = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: keep the text.
  }
  return {
    status: response.status,
    headers: response.headers,
    body,
    text,
    requestId: response.headers.get("x-request-id"),
    marker,
    ms,
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
