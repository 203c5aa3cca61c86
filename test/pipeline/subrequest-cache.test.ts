// The edge's subrequests and Cloudflare's cache. A Worker's fetch to a hostname proxied by
// Cloudflare goes through that zone's cache. The origin request of an authenticated request
// has lost its credential, the `Authorization` that keeps shared caches from storing an
// answer meant for one caller (RFC 9111 §3.5), so it must bypass that cache; so must every
// key-set fetch, or a refresh for a newly published key could be answered with the old set.
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { fetchJson } from "../../src/core/jwks/fetch-key-set";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";

let idp: TestIssuer;
beforeAll(async () => {
  idp = await makeIssuer("ES256");
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** The cache mode of each request the edge sent to the echo origin. */
function recordOriginFetches(): Map<string, RequestInit["cache"]> {
  const modes = new Map<string, RequestInit["cache"]>();
  const realFetch = globalThis.fetch;
  vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url.startsWith(echoOrigin)) modes.set(new URL(url).pathname, init?.cache);
    return realFetch(input, init);
  });
  return modes;
}

describe("the origin request", () => {
  const policy = () =>
    basePolicy({
      issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } },
      routes: [
        { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
        { name: "private", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      ],
    });

  it("of an authenticated request bypasses Cloudflare's cache; it reaches the origin with the identity only", async () => {
    const modes = recordOriginFetches();
    const m = marker();
    const token = await idp.sign({ sub: "alice" });
    const response = await harness(policy()).fetch("/v1/me/export.csv", {
      headers: { authorization: `Bearer ${token}`, "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    expect(modes.get("/v1/me/export.csv")).toBe("no-store");
    const [seen] = await originSaw(m);
    expect(seen?.headers["x-user-sub"]).toBe("alice");
    expect(seen?.headers.authorization).toBeUndefined();
  });

  it("of an authenticated request says no-cache, no-store, whatever the client's directives, and Pragma no-cache where the client sent none; a public one neither", async () => {
    const token = await idp.sign({ sub: "alice" });
    const edge = harness(policy());
    const seenFor = async (path: string, extra: Record<string, string>) => {
      const m = marker();
      const headers: Record<string, string> = { "x-test-marker": m, ...extra };
      if (path.startsWith("/v1")) headers.authorization = `Bearer ${token}`;
      expect((await edge.fetch(path, { headers })).status).toBe(200);
      const [seen] = await originSaw(m);
      return [seen?.headers["cache-control"], seen?.headers.pragma];
    };
    expect(await seenFor("/v1/a", {})).toEqual(["no-cache, no-store", "no-cache"]);
    // A cache before the origin must ask it again: a client's `max-stale` or `only-if-cached`
    // would let it answer with another caller's stored answer (the credential never got there).
    for (const directive of ["max-age=5", "max-stale=86400", "only-if-cached", "no-cache, max-stale"])
      expect(await seenFor("/v1/b", { "cache-control": directive })).toEqual(["no-cache, no-store", "no-cache"]);
    expect(await seenFor("/v1/c", { pragma: "x" })).toEqual(["no-cache, no-store", "x"]);
    expect(await seenFor("/public/d", {})).toEqual([undefined, undefined]);
  });

  it("of a public request may be cached as the origin says", async () => {
    const modes = recordOriginFetches();
    const response = await harness(policy()).fetch("/public/logo.png");
    expect(response.status).toBe(200);
    expect(modes.has("/public/logo.png")).toBe(true);
    expect(modes.get("/public/logo.png")).toBeUndefined();
  });
});

describe("key-set and discovery fetches", () => {
  it("bypass Cloudflare's cache", async () => {
    const modes: RequestInit["cache"][] = [];
    const fetcher = async (_url: string, init?: RequestInit) => {
      modes.push(init?.cache);
      return Response.json({ keys: [] });
    };
    await fetchJson(fetcher, "https://idp.example/jwks", { timeoutMs: 1000, maxBytes: 1000 });
    expect(modes).toEqual(["no-store"]);
  });
});
