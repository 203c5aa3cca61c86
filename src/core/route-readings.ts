// How an origin may read a request as another route's than the one the edge matched: letter
// case, Unicode normalisation, a format suffix, a script's PATH_INFO, a front controller, a
// directory's index, a page's data path, a batch of operations, a path in the query. The route
// stage refuses such requests; a CORS preflight and Max-Forwards ask which route each method
// reaches here (`routesAt`).

import { foldCase } from "./case-fold";
import { canonicalPath } from "./path";
import { HTTP_METHODS } from "./policy-types";
import {
  findRoute,
  foldedLiteral,
  type MatchableRoute,
  matchesBelow,
  matchHost,
  matchPath,
  pathSegments,
  routeFor,
  takesMethod,
} from "./routes";

/**
 * The route `findRoute` matches, unless `readAsAnotherRoute` refuses it (none then); the route
 * stage's checks of the host and the query are not repeated here.
 */
function routeAt<R extends MatchableRoute>(
  routes: readonly R[],
  method: string,
  host: string,
  path: string,
): R | undefined {
  const match = findRoute(routes, method, host, path);
  return match && !readAsAnotherRoute(routes, method, host, path, match.route) ? match.route : undefined;
}

/** Per route list: whether any literal changes when its case is folded (see `readAsAnotherRoute`). */
const casedLiterals = new WeakMap<readonly MatchableRoute[], boolean>();

/** Why an origin may take a request for another route's than the edge matched. */
export type RouteAmbiguity =
  | "ambiguous_case"
  | "ambiguous_segment"
  | "ambiguous_format"
  | "ambiguous_path_info"
  | "ambiguous_batch";

/**
 * A segment naming a script, which servers run with the rest of the path as its PATH_INFO:
 * Apache's AcceptPathInfo and php-fpm's split path run `/admin.php/x` as `admin.php`, IIS
 * `/admin.aspx/x` as `admin.aspx`. Not Perl's `.pl`, which every Polish domain and address in a
 * path ends in (`/v1/domains/example.pl/records`); Perl scripts served so are `.cgi`.
 */
const SCRIPT_NAME = /\.(?:php\d?|phtml|cgi|fcgi|asp|aspx|asmx|ashx|axd|svc)$/i;

/**
 * A page's data file, named after the page's path: SvelteKit's `/admin/__data.json`, Nuxt's
 * `/admin/_payload.json` (or `_payload.<hash>.json`), React Router's `/admin/.data`,
 * `/admin/_.data` (for `/admin/`) and `/_root.data` for `/` (`/shop/_root.data` under a
 * basename). Next.js serves it under `/_next/data/<build id>/` after any base
 * path (`/shop/_next/data/b1/admin.json` for `/shop/admin`, `index.json` for the base itself,
 * a leading `index/` taken off: `/_next/data/b1/index/admin.json` is `/admin`'s); Gatsby under
 * `/page-data/` (below).
 */
const PAGE_DATA = /^(?:__data\.json|_payload(?:\.[^.]+)?\.json|_root\.data|_?\.data)$/;

/**
 * Whether an origin may take this request for another route's than `matched`, the route the
 * edge matched, and run that route's handler under `matched`'s rules: one routing without
 * regard to letter case (IIS, ASP.NET Core, Express by default) where the first route
 * matching with letters folded (as `foldCase` folds them) is another; or one reading the path
 * past a script as its PATH_INFO (`/admin.php/x` as `/admin.php`), or without a format suffix
 * (`/v1/admin.json` as `/v1/admin`), where another route takes what it reads, its letters
 * folded too, and not the path as written (`/openapi.json` written for itself before `/**`
 * is no other route's `/openapi`: `/**` takes both); or past a front controller, as a
 * directory's index, as a page's data path, or as a batch of operations (tRPC's, OData's
 * `$batch`); or one normalising the path (NFKC: halfwidth `ｶﾌｪ` is `カフェ`, a route's
 * literal written beyond ASCII; `I` and a combining dot is `İ`, which folds to `i`; what NFKC
 * makes ASCII itself is refused before routing). Only paths that folding changes (or policies
 * whose literals it does), and paths with a dot, a comma, `batch` or a character beyond ASCII,
 * are looked at twice.
 */
export function readAsAnotherRoute<R extends MatchableRoute>(
  routes: readonly R[],
  method: string,
  host: string,
  path: string,
  matched: R,
): RouteAmbiguity | undefined {
  let cased = casedLiterals.get(routes);
  if (cased === undefined) {
    cased = routes.some((route) =>
      route.pattern.parts.some((part) => part.kind === "literal" && part.value !== foldedLiteral(part.value)),
    );
    casedLiterals.set(routes, cased);
  }
  const caseMatters = cased || path !== foldCase(path);
  const dotted = path.includes(".");
  const batched = /,|%2C|batch/i.test(path);
  // A character beyond ASCII is escaped in the canonical path, from its lead byte on.
  const normalisable = /%[C-F]/.test(path);
  if (!caseMatters && !dotted && !batched && !normalisable) return undefined;
  const segments = pathSegments(path) as string[];
  const folded = segments.map(foldCase);
  // `shorter`: a route that takes the path as written too takes it alike either way.
  const readsOther = (reading: string[], shorter?: true, readingFolded = shorter ? reading.map(foldCase) : folded) => {
    const other = routeFor(routes, method, host, reading, readingFolded)?.route;
    return other !== undefined && other !== matched && !(shorter && matchPath(other.pattern, segments, folded));
  };
  if (caseMatters && readsOther(segments)) return "ambiguous_case";
  if (normalisable) {
    const normalised = segments.map((segment) => segment.normalize("NFKC"));
    if (normalised.some((segment, i) => segment !== segments[i])) {
      if (readsOther(normalised, true)) return "ambiguous_segment";
      // Read as the edge reads the path itself (a format suffix, PATH_INFO, a batch…): once,
      // since a normalised path normalises to itself.
      const normalisedPath = `/${normalised.map(encodeURIComponent).join("/")}`;
      const reading = readAsAnotherRoute(routes, method, host, normalisedPath, matched);
      if (reading) return reading === "ambiguous_case" ? "ambiguous_segment" : reading;
    }
  }
  if (batched) {
    // tRPC runs every procedure a batch names, comma-separated, in its last segment
    // (`/trpc/user.rename,admin.deleteUser?batch=1`; batching is on by default).
    // One reading whose last segment each distinct part takes in turn: linear in the path.
    const last = segments.at(-1) as string;
    const reading = [...segments];
    const readingFolded = [...folded];
    for (const part of last.includes(",") ? new Set(last.split(",")) : []) {
      reading[reading.length - 1] = part;
      readingFolded[reading.length - 1] = foldCase(part);
      if (readsOther(reading, true, readingFolded)) return "ambiguous_batch";
    }
    // OData's `$batch` runs the sub-requests its body names, anywhere under its service root:
    // only a route written for it takes it where another route could take a path under that
    // root (one for this host, not one after `matched` that `matched`'s `**` shadows there).
    const batch = folded.indexOf("$batch");
    const at = routes.indexOf(matched);
    const rest = matched.pattern.parts.findIndex((part) => part.kind === "rest");
    const shadows = (route: R, i: number) =>
      i > at && rest !== -1 && rest <= batch && [...route.methods].every((m) => takesMethod(matched.methods, m));
    if (
      batch !== -1 &&
      matched.pattern.parts[batch]?.kind !== "literal" &&
      routes.some(
        (route, i) =>
          route !== matched &&
          (!route.host || matchHost(route.host, host)) &&
          !shadows(route, i) &&
          matchesBelow(route.pattern, folded.slice(0, batch)),
      )
    )
      return "ambiguous_batch";
  }
  if (!dotted) return undefined;
  // PATH_INFO: the path cut after the first segment that names a script, when more follows.
  // And the path past a front controller: Laravel, Symfony and CodeIgniter route
  // `/app/index.php/admin/x` as `/app/admin/x` (the script is their base URL).
  const script = segments.findIndex((segment, i) => i < segments.length - 1 && SCRIPT_NAME.test(segment));
  if (
    script !== -1 &&
    (readsOther(segments.slice(0, script + 1), true) ||
      readsOther([...segments.slice(0, script), ...segments.slice(script + 1)], true))
  )
    return "ambiguous_path_info";
  const name = segments.at(-1) as string;
  // A directory's index is its page: `/index.php` is `/` to Laravel, Symfony and CodeIgniter,
  // `/default.aspx` to IIS, and `/admin/index.html` is `/admin` to a static host serving an
  // exported site (nginx, S3, Pages).
  if (
    /^(?:index|default)\./i.test(name) &&
    (SCRIPT_NAME.test(name) || /\.html?$/i.test(name)) &&
    readsOther(segments.length > 1 ? segments.slice(0, -1) : [""], true)
  )
    return "ambiguous_path_info";
  // A page's data: what its server-side loaders return, to any visitor, at a path of its own.
  let page: string[] | undefined;
  if (PAGE_DATA.test(name)) page = segments.slice(0, -1);
  const next = segments.indexOf("_next");
  if (next !== -1 && segments[next + 1] === "data" && segments.length > next + 3 && name.endsWith(".json")) {
    const rest = [...segments.slice(next + 3, -1), name.slice(0, -5)];
    page = [...segments.slice(0, next), ...(rest[0] === "index" ? rest.slice(1) : rest)];
  }
  // Gatsby: `/page-data/admin/page-data.json` (`/page-data/index/…` for `/`), computed per
  // request for a server-rendered page.
  const gatsby = segments.indexOf("page-data");
  if (gatsby !== -1 && name === "page-data.json" && segments.length > gatsby + 2) {
    const rest = segments.slice(gatsby + 1, -1);
    page = [...segments.slice(0, gatsby), ...(rest.join("/") === "index" ? [] : rest)];
  }
  if (page && readsOther(page.length ? page : [""], true)) return "ambiguous_format";
  // A format suffix: Rails reads `admin.b.json` as `admin.b` (every route is
  // `path(.:format)`), Spring MVC's suffix pattern match (its default before 5.3) as `admin`.
  // A leading dot is part of the name.
  const first = name.indexOf(".", 1);
  if (first === -1) return undefined;
  // The tenant it binds, read shorter, is another one (`/v1/tenants/globex.json` is `globex`).
  if (matched.pattern.parts[segments.length - 1]?.kind === "capture") return "ambiguous_format";
  for (const end of new Set([first, name.lastIndexOf(".")]))
    if (readsOther([...segments.slice(0, -1), name.slice(0, end)], true)) return "ambiguous_format";
  return undefined;
}

/**
 * The path CodeIgniter routes for a query that begins with `/` where the path names its front
 * controller or its directory (`/index.php?/admin/x`, `/?/admin/x`, `/blog/?/admin/x`: whatever
 * the server's rewrites), as its canonical path under that directory ("" if it has none: a
 * dot segment, which CodeIgniter drops rather than resolves, counts as none), or undefined.
 */
function queryReadAsPath(path: string, search: string): string | undefined {
  if (!search.startsWith("?/")) return undefined;
  let dir = path.endsWith("/") ? path.slice(0, -1) : path;
  const name = dir.slice(dir.lastIndexOf("/") + 1);
  if (SCRIPT_NAME.test(name)) dir = dir.slice(0, -name.length - 1);
  else if (!path.endsWith("/")) return undefined;
  const query = search.slice(1).split("?")[0] as string;
  if (/(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i.test(query)) return "";
  const read = canonicalPath(new URL(`http://x${dir}${query}`).pathname);
  return read.ok ? read.path : "";
}

/**
 * Whether CodeIgniter would take this request for a route other than `matched`: its path in
 * the query is no path, or no route's, or another route's that does not take the path as
 * written too (a SvelteKit form action, `/?/logout`, lands on `/**` as `/` does).
 */
export function queryReadAsAnotherRoute<R extends MatchableRoute>(
  routes: readonly R[],
  method: string,
  host: string,
  path: string,
  search: string,
  matched: R,
): boolean {
  const read = queryReadAsPath(path, search);
  if (read === undefined) return false;
  const other = read && findRoute(routes, method, host, read)?.route;
  return !other || (other !== matched && !findRoute([other], method, host, path));
}

/** The route each method is routed to at this host and path (as the route stage routes it), in method order: a browser keeps what a preflight allowed per origin and URL, whatever route answered it. */
export function routesAt<R extends MatchableRoute>(routes: readonly R[], host: string, path: string): Map<string, R> {
  const here = new Map<string, R>();
  for (const method of HTTP_METHODS) {
    const route = routeAt(routes, method, host, path);
    if (route) here.set(method, route);
  }
  return here;
}
