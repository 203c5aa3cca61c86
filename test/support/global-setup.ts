// Starts the real local servers the in-workerd tests talk to: the echo origin, and a
// closed port for "origin unreachable". Runs in Node, outside workerd.
import type { TestProject } from "vitest/node";
// @ts-expect-error -- plain JS module shared with the local stack
import { startEchoOrigin } from "../../dev/echo-origin.mjs";
// @ts-expect-error -- plain JS test server
import { startIssuerServer } from "./issuer-server.mjs";

export default async function setup(project: TestProject) {
  const echo = await startEchoOrigin({ port: 0 });
  project.provide("echoOrigin", `http://127.0.0.1:${echo.port}`);
  const issuers = await startIssuerServer();
  project.provide("issuerServer", issuers.base);
  return async () => {
    await new Promise<void>((resolve) => echo.server.close(() => resolve()));
    await new Promise<void>((resolve) => issuers.server.close(() => resolve()));
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    echoOrigin: string;
    issuerServer: string;
  }
}
