// A tRPC batch read at most two parts of a kind decides as reading every part of it against
// every route would, and what each method reaches at a URL (`routesAt`, methods routed once
// where the routes take them alike) is what its own request reaches, on any route list and request.
// Route lists and requests are generated (seeded, so a failure names its case and repeats):
// captures, `*`, `**` at every depth (zero segments too), host routes, literals with letters
// that fold (`İ`, `ß`, `K`), escaped and non-ASCII literals, empty and repeated batch parts,
// trailing slashes.
import { describe, expect, it } from "vitest";
import { compiledRoutes } from "../support/policy-compile-step";
import { foldCase } from "../../src/core/case-fold";
import { canonicalPath } from "../../src/core/path";
import { readAsAnotherRoute, runsAsStrictly } from "../../src/core/route-readings";
import { routeRequest, routesAt } from "../../src/core/route-request";
import {
  capturesOf,
  compileHostPattern,
  compilePathPattern,
  findRoute,
  type MatchableRoute,
  matchPath,
  pathSegments,
  routeFor,
} from "../../src/core/routes";

type Named = MatchableRoute & { name: string };

/** A small seeded generator (mulberry32): the same seed, the same cases. */
function generator(seed: number) {
  let state = seed;
  const next = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T;
  return { next, pick };
}

const AUTHS: Named["auth"][] = [
  "public",
  { issuers: ["idp"] },
  { issuers: ["idp"], groups: { any_of: ["admins"] } },
  { issuers: ["idp"], scopes: { all_of: ["trpc:admin"] } },
];
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

interface World {
  literals: readonly string[];
  segments: readonly string[];
  hosts: readonly (string | undefined)[];
  requestHosts: readonly string[];
}

/** Letters that fold, escapes and characters beyond ASCII, host routes: every reading applies. */
const WIDE: World = {
  literals: [
    "trpc",
    "TRPC",
    "admin",
    "Admin",
    "user.rename",
    "a",
    "b",
    "data:purge",
    "café",
    "İ",
    "ß",
    "K",
    "api",
    "v1",
  ],
  segments: [
    "trpc",
    "TRPC",
    "admin",
    "ADMIN",
    "user.rename",
    "a",
    "b",
    "data:purge",
    "caf%C3%A9",
    "İ",
    "SS",
    "k",
    "K",
    "",
  ],
  hosts: [undefined, undefined, undefined, "api.example.com", ":tenant.t.example.com"],
  requestHosts: ["api.example.com", "acme.t.example.com", "x.acme.t.example.com", "www.example.com"],
};

/**
 * ASCII only, no `$batch`: a path with a comma is read as a tRPC batch before anything else
 * but letter case. Tenants' names among the parts, and letters that fold, so that parts alike
 * but for case, or alike but for the tenant a capture reads from them, come together.
 */
const ASCII_BATCHES: World = {
  literals: ["trpc", "TRPC", "admin", "Admin", "user", "a", "b", "api", "v1", "acme"],
  segments: ["trpc", "admin", "ADMIN", "Admin", "user", "a", "A", "b", "api", "v1", "x", "y", "acme", "globex", ""],
  hosts: [undefined, undefined, "api.example.com", ":tenant.t.example.com"],
  requestHosts: ["api.example.com", "acme.t.example.com", "www.example.com"],
};

function routeList(g: ReturnType<typeof generator>, world: World): Named[] {
  const list: Named[] = [];
  const count = 1 + Math.floor(g.next() * 6);
  while (list.length < count) {
    const depth = Math.floor(g.next() * 4);
    const parts: string[] = [];
    for (let i = 0; i < depth; i++) {
      const kind = g.next();
      parts.push(kind < 0.15 ? "*" : kind < 0.25 && !parts.includes(":tenant") ? ":tenant" : g.pick(world.literals));
    }
    const shape = g.next();
    let path = `/${parts.join("/")}`;
    if (shape < 0.35) path = `${parts.length ? `${path}/` : "/"}**`;
    else if (shape < 0.45 && parts.length) path = `${path}/`;
    const pattern = compilePathPattern(path);
    const hostName = g.pick(world.hosts);
    const host = hostName === undefined ? undefined : compileHostPattern(hostName);
    if (typeof pattern === "string" || typeof host === "string") continue;
    const methods = new Set(Array.from({ length: 1 + Math.floor(g.next() * 3) }, () => g.pick(METHODS)));
    list.push({
      name: `${hostName ?? ""}${path}#${list.length}`,
      methods,
      pattern,
      ...(host ? { host } : {}),
      auth: g.pick(AUTHS),
      limits: [],
    });
  }
  return list;
}

/** A canonical path, its last segment (and others) often a batch of comma-separated parts. */
function requestPath(g: ReturnType<typeof generator>, world: World): string | undefined {
  const segment = () =>
    g.next() < 0.5
      ? Array.from({ length: 2 + Math.floor(g.next() * 5) }, () => g.pick(world.segments)).join(",")
      : g.pick(world.segments);
  const raw = `/${Array.from({ length: 1 + Math.floor(g.next() * 4) }, segment).join("/")}${g.next() < 0.15 ? "/" : ""}`;
  const canonical = canonicalPath(new URL(`http://x${raw}`).pathname);
  return canonical.ok ? canonical.path : undefined;
}

const describeCase = (routes: Named[], request: Record<string, string>) =>
  JSON.stringify({ routes: routes.map((r) => [r.name, [...r.methods]]), ...request });

describe("a tRPC batch's parts, read at most two of a kind", () => {
  /**
   * The batch reading spelt out at its plainest: every distinct part
   * of the last segment read in its place, asked of every route (as `readsOther` asks a
   * shorter reading: the matched route itself counts only where the reading moves its tenant).
   */
  function batchReadAsOtherByEveryRoute(routes: Named[], method: string, host: string, path: string, matched: Named) {
    const segments = pathSegments(path) as string[];
    const folded = segments.map(foldCase);
    const last = segments.at(-1) as string;
    if (!last.includes(",")) return false;
    for (const part of new Set(last.split(","))) {
      const reading = [...segments.slice(0, -1), part];
      const readingFolded = reading.map(foldCase);
      const other = routeFor(routes, method, host, reading, readingFolded)?.route;
      if (!other) continue;
      const movesTenant =
        capturesOf(other.pattern).length > 0 &&
        matchPath(other.pattern, reading, readingFolded)?.tenant !== matchPath(matched.pattern, segments)?.tenant;
      if (movesTenant) return true;
      if (other !== matched && !(matchPath(other.pattern, segments, folded) || runsAsStrictly(matched, other)))
        return true;
    }
    return false;
  }

  /** Whether an origin routing without regard to case takes the path as written for another route (read first). */
  function caseReadAsOther(routes: Named[], method: string, host: string, path: string, matched: Named) {
    const cased = routes.some((route) =>
      route.pattern.parts.some((part) => part.kind === "literal" && part.value !== foldCase(part.value)),
    );
    if (!cased && path === foldCase(path)) return false;
    const segments = pathSegments(path) as string[];
    const other = routeFor(routes, method, host, segments, segments.map(foldCase))?.route;
    return other !== undefined && other !== matched;
  }

  it("refuses as ambiguous_batch exactly the requests the batch reading asked of every route refuses", () => {
    const g = generator(4242);
    let compared = 0;
    let refused = 0;
    for (let i = 0; i < 4000; i++) {
      const routes = routeList(g, ASCII_BATCHES);
      for (let j = 0; j < 6; j++) {
        const path = requestPath(g, ASCII_BATCHES);
        if (!path?.includes(",")) continue;
        const method = g.pick(METHODS);
        const host = g.pick(ASCII_BATCHES.requestHosts);
        const match = findRoute(routes, method, host, path);
        if (!match) continue;
        const read = readAsAnotherRoute(routes, method, host, path, match.route);
        const context = describeCase(routes, { method, host, path, read: String(read) });
        if (caseReadAsOther(routes, method, host, path, match.route)) {
          expect(read, context).toBe("ambiguous_case");
          continue;
        }
        const expected = batchReadAsOtherByEveryRoute(routes, method, host, path, match.route);
        compared++;
        if (expected) refused++;
        expect(read === "ambiguous_batch", context).toBe(expected);
      }
    }
    expect(compared).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(50);
  });
});

describe("two parts of a kind, not one", () => {
  // Parts of a kind reach the same route, but one of them may name the tenant the edge bound:
  // read alone, it would hide the part that names another. `/acme/acme,b` is the first route's,
  // for acme; read as `/acme/b`, the second route's, for tenant b (and as `/acme/acme`, for acme).
  it("a part naming the edge's own tenant does not hide the next, which names another", () => {
    const routes = compiledRoutes([
      { name: "pair", methods: ["GET"], path: "/:tenant/acme,b", auth: { issuers: ["idp"] } },
      { name: "member", methods: ["GET"], path: "/*/:tenant", auth: { issuers: ["idp"] } },
    ]);
    const match = findRoute(routes, "GET", "www.example.test", "/acme/acme,b");
    expect(match?.route.name).toBe("pair");
    expect(readAsAnotherRoute(routes, "GET", "www.example.test", "/acme/acme,b", match!.route)).toBe("ambiguous_batch");
  });
});

describe("what every method reaches at a URL", () => {
  const SEARCHES = ["", "?a=1", "?/admin/x", "?/ADMIN", "?/trpc/a,b", "?/", "?access_token=t&/admin"];

  it("is, method by method, what that method's own request reaches (methods routed once where routes take them alike)", () => {
    const g = generator(7);
    let routed = 0;
    let refused = 0;
    for (let i = 0; i < 2500; i++) {
      const routes = routeList(g, WIDE);
      for (let j = 0; j < 6; j++) {
        const path = requestPath(g, WIDE);
        if (!path) continue;
        const host = g.pick(WIDE.requestHosts);
        const search = g.pick(SEARCHES);
        const here = routesAt(routes, host, path, search);
        for (const method of METHODS) {
          const own = routeRequest(routes, method, host, path, search);
          if (typeof own === "object") routed++;
          if (typeof own === "string") refused++;
          expect(here.get(method)?.name, describeCase(routes, { method, host, path, search })).toBe(
            typeof own === "object" ? own.route.name : undefined,
          );
        }
      }
    }
    expect(routed).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(100);
  });
});
