// How an origin may read a request as another route's than the one the edge matched: letter
// case, Unicode normalisation, a format suffix, a script's PATH_INFO, a front controller, a
// directory's index, a page's data path, a batch of operations, a path in the query. Routing a
// request (route-request.ts) refuses such requests.

import { foldCase } from "./case-fold";
import { canonicalPath } from "./path";
import { guardsAtLeast } from "./route-demands";
import {
  bindsHostTenant,
  bindsTenant,
  capturesOf,
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
const SCRIPT_NAME = /\.(?:php\d?|phtml|f?cgi|aspx?|as[hm]x|axd|svc|cfml?)$/i;

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
 * The request as the edge matched it, which each reading below reads again: its route list,
 * method and host, the route it matched, and its path's segments, as written and with letters
 * folded (as `foldCase` folds them).
 */
interface EdgeMatch<R extends MatchableRoute> {
  routes: readonly R[];
  method: string;
  host: string;
  matched: R;
  segments: string[];
  folded: string[];
}

/**
 * Whether an origin may run `other`'s handler for a request `matched` took, with no caller let
 * past rules of `other`'s: `matched` guards at least as well, and any tenant `other` binds is the
 * one the edge bound (one from the path read, as `movesTenant` asks first; one bound by a host
 * both routes capture is the same tenant: no reading changes the host).
 */
export function runsAsStrictly(matched: MatchableRoute, other: MatchableRoute): boolean {
  return (
    (!bindsTenant(other) || capturesOf(other.pattern).length > 0 || bindsHostTenant(matched)) &&
    guardsAtLeast(matched, other)
  );
}

/**
 * Whether another route than the matched one takes `reading`, a path as an origin reads it,
 * compared without regard to letter case (its letters folded too). `shorter`: a reading other
 * than the path as written, where a route that takes the path as written too takes it alike
 * either way (`/openapi.json` written for itself before `/**` is no other route's `/openapi`:
 * `/**` takes both), and so does one whose handler may run under the matched route's rules
 * (`runsAsStrictly`: springdoc's public `/swagger-ui.html` beside a public `/swagger-ui/**`);
 * but the matched route itself, read so, counts as another where it binds another tenant
 * (a route for `/<region>/:tenant/**` takes `/index.php/acme/globex/x` for acme, which
 * Laravel runs as `/acme/globex/x`, for globex).
 */
function readsOther<R extends MatchableRoute>(
  edge: EdgeMatch<R>,
  reading: string[],
  shorter?: true,
  readingFolded = shorter ? reading.map(foldCase) : edge.folded,
): boolean {
  const other = routeFor(edge.routes, edge.method, edge.host, reading, readingFolded)?.route;
  if (!other) return false;
  if (shorter && movesTenant(edge.matched, edge.segments, other, reading, readingFolded)) return true;
  return (
    other !== edge.matched &&
    !(shorter && (matchPath(other.pattern, edge.segments, edge.folded) || runsAsStrictly(edge.matched, other)))
  );
}

/**
 * Whether `other`, taking the path as `reading`, binds a tenant from the path that the edge did
 * not bind from the path as written: its handler would run for that tenant (a host's tenant is
 * the same either way; one the matched route bound by the host is bound by no segment).
 */
function movesTenant(
  matched: MatchableRoute,
  segments: readonly string[],
  other: MatchableRoute,
  reading: readonly string[],
  readingFolded?: readonly string[],
): boolean {
  return (
    capturesOf(other.pattern).length > 0 &&
    matchPath(other.pattern, reading, readingFolded)?.tenant !== matchPath(matched.pattern, segments)?.tenant
  );
}

/** Whether any of these routes' literals changes when its case is folded, once per route list. */
function literalsCased(routes: readonly MatchableRoute[]): boolean {
  let cased = casedLiterals.get(routes);
  if (cased === undefined) {
    cased = routes.some((route) =>
      route.pattern.parts.some((part) => part.kind === "literal" && part.value !== foldedLiteral(part.value)),
    );
    casedLiterals.set(routes, cased);
  }
  return cased;
}

/**
 * The path normalised (NFKC: halfwidth `ｶﾌｪ` is `カフェ`, a route's literal written beyond
 * ASCII; `I` and a combining dot is `İ`, which folds to `i`; what NFKC makes ASCII itself is
 * refused before routing): another route's as it stands, or by any reading below of it.
 */
function readNormalised<R extends MatchableRoute>(edge: EdgeMatch<R>): RouteAmbiguity | undefined {
  const { segments } = edge;
  const normalised = segments.map((segment) => segment.normalize("NFKC"));
  if (!normalised.some((segment, i) => segment !== segments[i])) return undefined;
  if (readsOther(edge, normalised, true)) return "ambiguous_segment";
  // Read as the edge reads the path itself (a format suffix, PATH_INFO, a batch…): once,
  // since a normalised path normalises to itself.
  const normalisedPath = `/${normalised.map(encodeURIComponent).join("/")}`;
  const reading = readAsAnotherRoute(edge.routes, edge.method, edge.host, normalisedPath, edge.matched);
  return reading === "ambiguous_case" ? "ambiguous_segment" : reading;
}

/**
 * tRPC runs every procedure a batch names, comma-separated, in its last segment
 * (`/trpc/user.rename,admin.deleteUser?batch=1`; batching is on by default). One reading whose
 * last segment each distinct part takes in turn, two parts of a kind at most: the parts a route's
 * literal there names (by their letters), the empty part, and every other part are the kinds, and
 * parts of one kind reach the same route, told apart at most by the tenant that route may read
 * from the part, which no two distinct parts can both share with the edge's. So a path of
 * thousands of parts is read a few times per route literal, not once per part.
 */
function readsTrpcBatch<R extends MatchableRoute>(edge: EdgeMatch<R>): boolean {
  const last = edge.segments.at(-1) as string;
  if (!last.includes(",")) return false;
  const at = edge.segments.length - 1;
  const literals = new Set<string>();
  for (const route of edge.routes) {
    const part = route.pattern.parts[at];
    if (part?.kind === "literal") literals.add(foldedLiteral(part.value));
  }
  const read = new Map<string, number>();
  const reading = [...edge.segments];
  const readingFolded = [...edge.folded];
  for (const part of new Set(last.split(","))) {
    const folded = foldCase(part);
    // No segment holds a `/`: the kind of every part no literal names.
    const kind = part === "" || literals.has(folded) ? folded : "/";
    const times = read.get(kind) ?? 0;
    if (times === 2) continue;
    read.set(kind, times + 1);
    reading[at] = part;
    readingFolded[at] = folded;
    if (readsOther(edge, reading, true, readingFolded)) return true;
  }
  return false;
}

/**
 * OData's `$batch` runs the sub-requests its body names, anywhere under its service root: only a
 * route written for it takes it where another route could take a path under that root (one for
 * this host, not one after `matched` that `matched`'s `**` shadows there).
 */
function readsODataBatch<R extends MatchableRoute>({ routes, host, matched, folded }: EdgeMatch<R>): boolean {
  const batch = folded.indexOf("$batch");
  if (batch === -1 || matched.pattern.parts[batch]?.kind === "literal") return false;
  const at = routes.indexOf(matched);
  const rest = matched.pattern.parts.findIndex((part) => part.kind === "rest");
  // `matched`'s `**` takes the root, so it shadows a later route there for every method it takes.
  const restShadows = rest !== -1 && rest <= batch;
  const root = folded.slice(0, batch);
  return routes.some(
    (route, i) =>
      route !== matched &&
      (!route.host || matchHost(route.host, host)) &&
      !(i > at && restShadows && [...route.methods].every((m) => takesMethod(matched.methods, m))) &&
      matchesBelow(route.pattern, root),
  );
}

/**
 * PATH_INFO: the path cut after the first segment that names a script, when more follows
 * (`/admin.php/x` as `/admin.php`). And the path past a front controller: Laravel, Symfony and
 * CodeIgniter route `/app/index.php/admin/x` as `/app/admin/x` (the script is their base URL).
 */
function readsPathInfo<R extends MatchableRoute>(edge: EdgeMatch<R>): boolean {
  const { segments } = edge;
  const script = segments.findIndex((segment, i) => i < segments.length - 1 && SCRIPT_NAME.test(segment));
  const cut = segments.slice(0, script + 1);
  // The script may be its directory's index (`/admin/index.php/x` runs the `/admin` page).
  return (
    script !== -1 &&
    (readsOther(edge, cut, true) ||
      readsDirectoryIndex(edge, cut) ||
      readsOther(edge, [...segments.slice(0, script), ...segments.slice(script + 1)], true))
  );
}

/**
 * A directory's index is its page: `/index.php` is `/` to Laravel, Symfony and CodeIgniter,
 * `/default.aspx` to IIS, and `/admin/index.html` is `/admin` to a static host serving an
 * exported site (nginx, S3, Pages), as is `/admin/index.txt`, the page's payload in a Next.js
 * export. `segments`: the path, or the part of it up to a script.
 */
function readsDirectoryIndex<R extends MatchableRoute>(edge: EdgeMatch<R>, segments: string[]): boolean {
  const name = segments.at(-1) as string;
  return (
    /^(?:index|default)\./i.test(name) &&
    (SCRIPT_NAME.test(name) || /\.(?:html?|txt)$/i.test(name)) &&
    readsOther(edge, segments.length > 1 ? segments.slice(0, -1) : [""], true)
  );
}

/**
 * The pages whose data this path is, if it is one (`PAGE_DATA`, Next.js's `_next/data`, Gatsby's
 * `page-data`): what their server-side loaders return, to any visitor, at a path of their own.
 * Every reading that applies counts, each as its framework reads the path: a Gatsby name
 * inside a Next.js data path is Next.js's page to a Next.js origin.
 */
function pagesOfData(segments: string[], name: string): string[][] {
  const pages: string[][] = [];
  if (PAGE_DATA.test(name)) pages.push(segments.slice(0, -1));
  const next = segments.indexOf("_next");
  if (next !== -1 && segments[next + 1] === "data" && segments.length > next + 3 && name.endsWith(".json")) {
    const rest = [...segments.slice(next + 3, -1), name.slice(0, -5)];
    pages.push([...segments.slice(0, next), ...(rest[0] === "index" ? rest.slice(1) : rest)]);
  }
  // Gatsby: `/page-data/admin/page-data.json` (`/page-data/index/…` for `/`), computed per
  // request for a server-rendered page.
  const gatsby = segments.indexOf("page-data");
  if (gatsby !== -1 && name === "page-data.json" && segments.length > gatsby + 2) {
    const rest = segments.slice(gatsby + 1, -1);
    pages.push([...segments.slice(0, gatsby), ...(rest.join("/") === "index" ? [] : rest)]);
  }
  return pages;
}

/**
 * Whether the page whose data this is (`page`) is another route's whose handler may not run
 * under the rules of the route the edge matched (`runsAsStrictly`: it may ask more of a caller,
 * bind a tenant the matched route does not bind alike, or count a limit; a tenant it binds from
 * the page's path was asked of `readsOther` first: see `movesTenant`), even where that route
 * takes the data path as written too: the origin answers the data path with that page's
 * server-side data (Next.js runs its `getServerSideProps`), so a public, or merely signed-in,
 * `/_next/**` before a stricter `/**` would hand its callers every page's data.
 */
function exposesPageData<R extends MatchableRoute>({ routes, method, host, matched }: EdgeMatch<R>, page: string[]) {
  const other = routeFor(routes, method, host, page, page.map(foldCase))?.route;
  return other !== undefined && other !== matched && !runsAsStrictly(matched, other);
}

/**
 * A dotted name bound by a capture: the tenant it binds, read shorter, is another one
 * (`/v1/tenants/globex.json` is `globex`).
 */
function bindsDottedCapture<R extends MatchableRoute>({ matched, segments }: EdgeMatch<R>): boolean {
  return matched.pattern.parts[segments.length - 1]?.kind === "capture";
}

/**
 * A format suffix: Rails reads `admin.b.json` as `admin.b` (every route is `path(.:format)`),
 * Spring MVC's suffix pattern match (its default before 5.3) as `admin`. `first`: the name's
 * first dot after its first character.
 */
function readsWithoutSuffix<R extends MatchableRoute>(edge: EdgeMatch<R>, name: string, first: number): boolean {
  for (const end of new Set([first, name.lastIndexOf(".")]))
    if (readsOther(edge, [...edge.segments.slice(0, -1), name.slice(0, end)], true)) return true;
  return false;
}

/**
 * Whether an origin may take this request for another route's than `matched`, the route the
 * edge matched, and run that route's handler under `matched`'s rules, by the first reading
 * that another route takes, in this order: without regard to letter case (IIS, ASP.NET Core,
 * Express by default route so), where the first route matching with letters folded is another;
 * normalised; as a batch of operations; past a script as its PATH_INFO or past a front
 * controller; as a directory's index; as a page's data path; without a format suffix
 * (`/v1/admin.json` as `/v1/admin`). It runs on every request: only paths that folding changes
 * (or policies whose literals it does), and paths with a dot, a comma, `batch` or a character
 * beyond ASCII, are looked at twice.
 */
export function readAsAnotherRoute<R extends MatchableRoute>(
  routes: readonly R[],
  method: string,
  host: string,
  path: string,
  matched: R,
): RouteAmbiguity | undefined {
  const caseMatters = literalsCased(routes) || path !== foldCase(path);
  const dotted = path.includes(".");
  const batched = /,|%2C|batch/i.test(path);
  // A character beyond ASCII is escaped in the canonical path, from its lead byte on.
  const normalisable = /%[C-F]/.test(path);
  if (!caseMatters && !dotted && !batched && !normalisable) return undefined;
  const segments = pathSegments(path) as string[];
  const edge: EdgeMatch<R> = { routes, method, host, matched, segments, folded: segments.map(foldCase) };
  if (caseMatters && readsOther(edge, segments)) return "ambiguous_case";
  const normalised = normalisable ? readNormalised(edge) : undefined;
  if (normalised) return normalised;
  if (batched && (readsTrpcBatch(edge) || readsODataBatch(edge))) return "ambiguous_batch";
  if (!dotted) return undefined;
  const name = segments.at(-1) as string;
  if (readsPathInfo(edge) || readsDirectoryIndex(edge, segments)) return "ambiguous_path_info";
  for (const page of pagesOfData(segments, name)) {
    const pageReading = page.length ? page : [""];
    if (readsOther(edge, pageReading, true) || exposesPageData(edge, pageReading)) return "ambiguous_format";
  }
  // A leading dot is part of the name.
  const first = name.indexOf(".", 1);
  if (first === -1) return undefined;
  if (bindsDottedCapture(edge) || readsWithoutSuffix(edge, name, first)) return "ambiguous_format";
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
 * the query is no path, or no route's, or another route's whose handler may not run under
 * `matched`'s rules (`runsAsStrictly`: a SvelteKit form action, `/?/logout`, lands on `/**` as
 * `/` does; `/?/admin/users` under a public `/` before a signed-in `/**` would run the admin
 * area for anyone), or one an origin may read as another route's again (`/?/ADMIN/x`, letters
 * folded; `/?/ｶﾌｪ/x`, normalised: see `readAsAnotherRoute`).
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
  if (
    !other ||
    (other !== matched && !runsAsStrictly(matched, other)) ||
    movesTenant(matched, pathSegments(path) as string[], other, pathSegments(read) as string[])
  )
    return true;
  return readAsAnotherRoute(routes, method, host, read, other) !== undefined;
}
