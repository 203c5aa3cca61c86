// Variant 1b, the floor of an exact rate limit: the bare pass-through plus one call per
// request to a Durable Object that does nothing. The full pipeline makes one such call for
// its limits, so what this variant costs the bare Worker is what no exact limiter can save.
import { DurableObject } from "cloudflare:workers";
import bare from "./bare";
import { instrumentEnv, isBenchRequest } from "./counters";

export class NoopObject extends DurableObject {
  /** The cheapest round trip: no arguments, no storage, a number back. */
  ping(): number {
    return 1;
  }
}

interface Env {
  NOOP: DurableObjectNamespace<NoopObject>;
  RESPONDER: Fetcher;
  ORIGIN_URL: string;
  [binding: string]: unknown;
}

let objectId: DurableObjectId | undefined;
let countedEnv: Env | undefined;

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    // One object, as the benchmark's single tenant has one, and its id resolved once.
    countedEnv ??= instrumentEnv(env, ["NOOP"]);
    objectId ??= env.NOOP.idFromName("bench");
    if (!isBenchRequest(request)) await countedEnv.NOOP.get(objectId).ping();
    return bare.fetch(request, env);
  },
} satisfies ExportedHandler<Env>;
