// Variants 4 and 5: the real Portcullis pipeline (`createApp`), with a benchmark policy
// handed in as a binding and compiled once per isolate (the deployable Worker ships its policy
// compiled at build time: the same compiled policy, with no compile at start-up). Re-exports the deployable entry's named exports, so the
// Durable Object classes are here as soon as src/index.ts exports them.
import { createApp } from "../../src/app";
import { benchResponse, countRequest, instrumentEnv, isBenchRequest } from "./counters";

export * from "../../src/index";

interface Env {
  BENCH_POLICY: unknown;
  /** `console`: the default audit sink (one JSON line per request); `none`: no audit sink. */
  BENCH_AUDIT: "console" | "none";
  [binding: string]: unknown;
}

const DURABLE_OBJECT_BINDINGS = ["TENANT_LIMITER", "ROUTE_LIMITER"];

let app: ReturnType<typeof createApp> | undefined;
let appEnv: Env | undefined;

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response> {
    if (isBenchRequest(request)) return benchResponse(request, env);
    countRequest();
    if (!app || !appEnv) {
      app = createApp(env.BENCH_POLICY, env.BENCH_AUDIT === "none" ? { auditSinks: [] } : {});
      appEnv = instrumentEnv(env, DURABLE_OBJECT_BINDINGS);
    }
    return app.fetch(request, appEnv, ctx);
  },
} satisfies ExportedHandler<Env>;
