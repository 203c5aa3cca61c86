// Variant 1, the limit: a pass-through Worker that authorises nothing. Direct mode hands the
// request to the in-process responder; forward mode sends it to the loopback origin.
import { benchResponse, countRequest, isBenchRequest } from "./counters";

interface Env {
  RESPONDER: Fetcher;
  ORIGIN_URL: string;
  [binding: string]: unknown;
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    if (isBenchRequest(request)) return benchResponse(request, env);
    countRequest();
    const url = new URL(request.url);
    if (url.pathname.startsWith("/direct/")) return env.RESPONDER.fetch(request);
    return fetch(new Request(`${env.ORIGIN_URL}${url.pathname}${url.search}`, request));
  },
} satisfies ExportedHandler<Env>;
