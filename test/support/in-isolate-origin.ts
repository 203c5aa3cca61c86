// An edge whose public route forwards to an origin in the test's own isolate, which records the
// headers of every request it gets. The echo origin and miniflare's bindings are Node servers,
// which refuse header blocks past 16 KiB themselves: requests at the edge's own header bounds
// need an origin that takes any.
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness } from "./harness";

export function edgeWithInIsolateOrigin(settings: PolicyDocument["settings"] = {}): {
  edge: Harness;
  reached: Headers[];
} {
  const reached: Headers[] = [];
  const origin = {
    fetch: (target: string, init?: RequestInit) => {
      reached.push(new Request(target, init).headers);
      return Promise.resolve(new Response("ok"));
    },
  };
  const edge = harness(
    basePolicy({
      settings: { limiter_timeout_ms: 2000, ...settings },
      upstreams: { svc: { service: "LOCAL_ORIGIN" } },
      routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "svc" }],
    }),
    {},
    { LOCAL_ORIGIN: origin },
  );
  return { edge, reached };
}
