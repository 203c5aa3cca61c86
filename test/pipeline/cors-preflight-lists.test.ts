// CORS preflights at the edge: whether the answer ever carries what the page sent, and what an
// OPTIONS that asks for a method nobody serves reaches. Each test asserts the reason, the
// audit record and what (if anything) reached the origin.
import { describe, expect, it } from "vitest";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness } from "../support/harness";
import { sendMarked } from "../support/sent";

const APP = "https://app.example.com";

function policy(): PolicyDocument {
  return basePolicy({
    routes: [
      {
        name: "spa",
        methods: ["GET", "POST"],
        path: "/spa/**",
        auth: "public",
        upstream: "echo",
        cors: { allow_origins: [APP], allow_headers: ["content-type", "x-csrf-token"] },
      },
      // Takes OPTIONS itself and has no CORS: its origin answers the OPTIONS requests sent to it.
      { name: "opts", methods: ["GET", "OPTIONS"], path: "/opts/**", auth: "public", upstream: "echo" },
    ],
  });
}

/** `sendMarked`, and that the request wrote exactly one audit record, as every request here must. */
async function call(edge: Harness, url: string, init: RequestInit = {}) {
  const sent = await sendMarked(edge, url, init);
  expect(sent.records).toHaveLength(1);
  return sent;
}

const corsHeaders = (response: Response) =>
  [...response.headers.keys()].filter((name) => name.startsWith("access-control-")).sort();

const preflight = (method: string, requestHeaders?: string) => ({
  method: "OPTIONS",
  headers: {
    origin: APP,
    "access-control-request-method": method,
    ...(requestHeaders === undefined ? {} : { "access-control-request-headers": requestHeaders }),
  },
});

describe("Access-Control-Allow-Headers is the policy's list, never the page's", () => {
  // Were the answer built from Access-Control-Request-Headers, a page could grant itself any
  // header, or write into the answer whatever it put in the request.
  it("a preflight asking for a subset, in any case, with spaces, duplicates and empty items, is answered with the route's list", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/spa/x", preflight("POST", " X-CSRF-Token ,x-csrf-token,, "));
    expect(r.response.status).toBe(204);
    expect(r.record).toMatchObject({ decision: "allow", route: "spa", status: 204 });
    expect(r.response.headers.get("access-control-allow-headers")).toBe("content-type, x-csrf-token");
    expect(r.response.headers.get("access-control-allow-methods")).toBe("GET, POST");
    expect(r.seen).toHaveLength(0);
  });

  it("a preflight asking for a thousand headers is refused header_not_allowed and echoes none of them", async () => {
    const edge = harness(policy());
    const asked = Array.from({ length: 1000 }, (_, i) => `x-probe-${i}`);
    const r = await call(edge, "/spa/x", preflight("POST", ["content-type", ...asked].join(",")));
    expect(r.response.status).toBe(403);
    expect(r.body?.reason).toBe("cors_rejected");
    expect(r.record).toMatchObject({ decision: "deny", reason: "cors_rejected", detail: "header_not_allowed" });
    expect(corsHeaders(r.response)).toEqual([]);
    const answer = `${JSON.stringify([...r.response.headers])}${r.text}`;
    expect(answer).not.toContain("x-probe-");
    expect(r.seen).toHaveLength(0);
  });
});

describe("a preflight for a method no route serves", () => {
  // The route stage routes a preflight by the method it asks about: on a path whose route
  // takes OPTIONS, one asking for a method nobody serves there must not fall back to being
  // that route's own OPTIONS, which would forward it to an origin that may answer it.
  it("on a path whose route takes OPTIONS is 405 method_not_allowed, not forwarded as that route's OPTIONS", async () => {
    const edge = harness(policy());
    const r = await call(edge, "/opts/x", preflight("PUT"));
    expect(r.response.status).toBe(405);
    expect(r.response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    expect(r.body?.reason).toBe("method_not_allowed");
    expect(r.record).toMatchObject({ decision: "deny", reason: "method_not_allowed", method: "OPTIONS", route: null });
    expect(corsHeaders(r.response)).toEqual([]);
    expect(r.seen).toHaveLength(0);
  });
});
