// Route patterns: compiled once per isolate, matched against the canonical path and host.

import { foldCase } from "./case-fold";
import { canonicalPath } from "./path";
import { HTTP_METHODS } from "./policy-types";

export type PathPart =
  | { kind: "literal"; value: string }
  | { kind: "capture"; name: string }
  | { kind: "any" }
  | { kind: "rest" };

export interface CompiledPattern {
  parts: PathPart[];
}

/** The one capture anything reads (tenant binding): a `:tenant` path segment or host label. */
export const TENANT_CAPTURE = "tenant";

export function capturesOf(pattern: CompiledPattern): string[] {
  return pattern.parts.flatMap((part) => (part.kind === "capture" ? [part.name] : []));
}

/** Whether a route binds the tenant, by its path or its host. */
export function bindsTenant(route: MatchableRoute): boolean {
  return route.host?.captureName !== undefined || capturesOf(route.pattern).length > 0;
}

export interface HostPattern {
  exact?: string;
  captureName?: string;
  suffix?: string;
  /** Only this port; without one, the host name matches on every port. */
  port?: string;
}

/** Parse `/v1/:tenant/*\/**`. Returns an error message for a malformed pattern. */
export function compilePathPattern(pattern: string): CompiledPattern | string {
  if (!pattern.startsWith("/")) return "must start with /";
  const raw = pattern === "/" ? [""] : pattern.split("/").slice(1);
  const parts: PathPart[] = [];
  for (let i = 0; i < raw.length; i++) {
    const segment = raw[i] as string;
    if (segment === "**") {
      if (i !== raw.length - 1) return "`**` may only be the last segment";
      parts.push({ kind: "rest" });
    } else if (segment === "*") {
      parts.push({ kind: "any" });
    } else if (/\{.*\}|<.*>|^\[.*\]$/.test(segment)) {
      // Another router's parameter (OpenAPI's `{id}` or `report.{format}`, Flask's `<id>`,
      // Next.js's `[id]`): as a literal it would match no request, and every one would fall
      // through to later routes.
      return `segment "${segment}" holds another router's parameter: write * for any segment, :tenant to bind the tenant`;
    } else if (segment.startsWith(":")) {
      const name = segment.slice(1);
      // The one capture anything reads (tenant binding): `:tenant_id` or `:org` would bind nothing.
      if (name !== TENANT_CAPTURE) return "only :tenant is captured (* matches any segment)";
      // One value per name: a second capture would silently overwrite the first.
      if (capturesOf({ parts }).includes(name)) return `capture "${segment}" appears twice`;
      parts.push({ kind: "capture", name });
    } else {
      // As a canonical path spells it (decoded, as segments are matched), or no request could
      // ever match it: the URL parser first escapes what a request would carry escaped.
      const canonical = /[*%?# ]/.test(segment) ? undefined : canonicalPath(new URL(`http://x/${segment}`).pathname);
      // In NFKC form too: a request spelt otherwise (halfwidth `ｶﾌｪ` for `カフェ`) is asked
      // whether its normalised reading is this literal (see `readAsAnotherRoute`).
      if (
        !canonical?.ok ||
        decodeURIComponent(canonical.path) !== `/${segment}` ||
        segment.normalize("NFKC") !== segment
      ) {
        return `segment "${segment}" is not a canonical literal`;
      }
      if (segment === "" && i !== raw.length - 1) return "empty segment (double slash)";
      parts.push({ kind: "literal", value: segment });
    }
  }
  if (parts.length > 1 && isTrailingSlash(parts[parts.length - 1] as PathPart)) parts.pop();
  return { parts };
}

function isTrailingSlash(part: PathPart): boolean {
  return part.kind === "literal" && part.value === "";
}

/** Route literals folded (see `foldCase`), once per literal per isolate: the policy's are few. */
const foldedLiterals = new Map<string, string>();

export function foldedLiteral(literal: string): string {
  let folded = foldedLiterals.get(literal);
  if (folded === undefined) {
    folded = foldCase(literal);
    foldedLiterals.set(literal, folded);
  }
  return folded;
}

/**
 * Match canonical path segments; returns captures or null. `**` matches zero or more segments.
 * `folded`: the segments with letters folded, compared with literals folded alike (any case).
 */
export function matchPath(
  pattern: CompiledPattern,
  segments: readonly string[],
  folded?: readonly string[],
): Record<string, string> | null {
  const captures: Record<string, string> = {};
  const { parts } = pattern;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as PathPart;
    if (part.kind === "rest") return captures;
    const segment = segments[i];
    if (segment === undefined) return null;
    if (part.kind === "literal") {
      if (folded ? folded[i] !== foldedLiteral(part.value) : segment !== part.value) return null;
    } else {
      if (segment === "") return null;
      if (part.kind === "capture") captures[part.name] = segment;
    }
  }
  return segments.length === parts.length ? captures : null;
}

/**
 * The segments routes are matched against, percent-decoded. A trailing slash is not
 * significant, in paths and in patterns alike: origins commonly serve `/users/` as `/users`,
 * so if only `/users` matched the route written for it, `/users/` would fall through to a
 * broader (more permissive) route and reach the same handler under its rules. Decoding is
 * for the same reason: origins read `data%3Apurge` as `data:purge` and `caf%C3%A9` as `café`.
 * The canonical path has refused every escape whose decoding could move a segment boundary
 * (`%2F`, `%5C`) or is not UTF-8, so each segment decodes on its own; undefined otherwise.
 */
function pathSegments(canonicalPath: string): string[] | undefined {
  if (canonicalPath === "/") return [""];
  const segments = canonicalPath.split("/").slice(1);
  if (segments.length > 1 && segments[segments.length - 1] === "") segments.pop();
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as string;
    if (!segment.includes("%")) continue;
    try {
      segments[i] = decodeURIComponent(segment);
    } catch {
      return undefined;
    }
  }
  return segments;
}

/**
 * A host as matched: lower case, split from its port, without the trailing dot of a fully
 * qualified name (`api.example.com.` is the same host to DNS and to a name-based origin).
 */
function splitHost(host: string): { name: string; port?: string } {
  const lower = host.toLowerCase();
  const colon = lower.lastIndexOf(":");
  const hasPort = colon > lower.lastIndexOf("]") && /^\d+$/.test(lower.slice(colon + 1));
  let name = hasPort ? lower.slice(0, colon) : lower;
  if (name.endsWith(".")) name = name.slice(0, -1);
  return hasPort ? { name, port: lower.slice(colon + 1) } : { name };
}

/**
 * Whether a request's host has an empty label (`acme..example.com`, `acme.example.com..`,
 * `.example.com`): the URL parser keeps it, so no route written for the host matches it, while
 * an origin that splits X-Forwarded-Host into labels (Rails drops the empty ones) reads it as
 * that host. A single trailing dot is a fully qualified name, the same host (see `splitHost`).
 */
export function hasEmptyLabel(host: string): boolean {
  const { name } = splitHost(host);
  // Its one trailing dot taken off already: a second one is an empty label too.
  return name === "" || name.startsWith(".") || name.endsWith(".") || name.includes("..");
}

/**
 * Whether a host lies under a `:tenant` host's suffix with more before it than the one label
 * the capture takes (`globex.acme.tenants.example.com`): no tenant route takes it, while an
 * origin that picks its tenant from the host (Rails' subdomain, the Apartment gem's elevator)
 * reads `globex` from it.
 */
export function hasUncapturedLabels(routes: readonly MatchableRoute[], host: string): boolean {
  let suffixes = captureSuffixes.get(routes);
  if (!suffixes) {
    suffixes = routes.flatMap((route) => route.host?.suffix ?? []);
    captureSuffixes.set(routes, suffixes);
  }
  if (suffixes.length === 0) return false;
  const { name } = splitHost(host);
  return suffixes.some((suffix) => name.endsWith(suffix) && !/^[a-z0-9-]*$/.test(name.slice(0, -suffix.length)));
}

/** Per route list: its `:tenant` hosts' suffixes (see `hasUncapturedLabels`). */
const captureSuffixes = new WeakMap<readonly MatchableRoute[], string[]>();

/** The one label (letters, digits, `-`) a `:tenant` host takes before its suffix, or undefined. */
function capturedLabel(name: string, suffix: string): string | undefined {
  if (!name.endsWith(suffix)) return undefined;
  const label = name.slice(0, name.length - suffix.length);
  return /^[a-z0-9-]+$/.test(label) ? label : undefined;
}

export function compileHostPattern(host: string): HostPattern | string {
  const { name: lower, port } = splitHost(host);
  const withPort = port === undefined ? {} : { port };
  // URLs never carry the default port, so a route written with it would never match.
  if (port === "443" || port === "80") return `port ${port} is the default: a host never shows it`;
  // As a URL writes it, or it never matches: no leading zero, at most 65535.
  if (port !== undefined && !(/^[1-9]/.test(port) && +port < 65536)) return `port ${port} is not one a URL carries`;
  if (lower.startsWith(":")) {
    const dot = lower.indexOf(".");
    if (dot < 2) return "a host capture needs a suffix, e.g. `:tenant.example.com`";
    const name = host.slice(1, dot);
    if (name !== TENANT_CAPTURE) return "only :tenant is captured";
    if (!/^(\.[a-z0-9-]+)+$/.test(lower.slice(dot))) return "not a host name after the capture";
    return { captureName: name, suffix: lower.slice(dot), ...withPort };
  }
  // Not a wildcard, as a cookie domain or nginx's server_name reads it: it would match no host.
  if (lower.startsWith(".")) return "not a host name (to match hosts under it, capture one: `:tenant.example.com`)";
  // Labels that are not empty (`api..example.com` matches nothing), as the URL
  // parser writes them: `1.2.3` is 1.2.0.3 to it, and would never match.
  if (
    !/^[a-z0-9-]+(?:\.[a-z0-9-]+)*$/.test(lower) ||
    !URL.canParse(`http://${lower}`) ||
    new URL(`http://${lower}`).hostname !== lower
  )
    return "not a host name";
  return { exact: lower, ...withPort };
}

/**
 * A pattern without a port matches its host on every port: Cloudflare passes other ports
 * (8443, 2053, …) to the same Worker, and a host-specific route that missed them would let
 * `admin.example.com:8443` fall through to a broader route.
 */
function matchHost(pattern: HostPattern, host: string): Record<string, string> | null {
  const { name, port } = splitHost(host);
  if (pattern.port !== undefined && port !== pattern.port) return null;
  if (pattern.exact !== undefined) return name === pattern.exact ? {} : null;
  const label = capturedLabel(name, pattern.suffix as string);
  return label === undefined ? null : { [pattern.captureName as string]: label };
}

/** Whether `earlier` matches every host `later` matches (no pattern: every host). */
export function coversHost(earlier: HostPattern | undefined, later: HostPattern | undefined): boolean {
  if (!earlier) return true;
  if (!later) return false;
  if (earlier.port !== undefined && earlier.port !== later.port) return false;
  if (earlier.exact !== undefined) return later.exact === earlier.exact;
  const suffix = earlier.suffix as string;
  if (later.exact !== undefined) return capturedLabel(later.exact, suffix) !== undefined;
  return later.suffix === suffix;
}

/** The parts of a compiled route that matching needs (kept structural to stay free of policy imports). */
export interface MatchableRoute {
  methods: ReadonlySet<string>;
  pattern: CompiledPattern;
  host?: HostPattern;
}

export interface RouteMatch<R> {
  route: R;
  /** Captures from the host pattern and the path pattern (`:tenant` etc.). */
  params: Record<string, string>;
}

/**
 * First route, in policy order, whose method, host and path all match. HEAD is authorised
 * as GET: a route that allows GET also answers HEAD.
 */
export function findRoute<R extends MatchableRoute>(
  routes: readonly R[],
  method: string,
  host: string,
  canonicalPath: string,
): RouteMatch<R> | undefined {
  const segments = pathSegments(canonicalPath);
  return segments && routeFor(routes, method, host, segments);
}

/**
 * `findRoute` over a path's segments, compared as they are or, given `folded` (the segments
 * with letters folded once, however many routes compare them), without regard to case.
 */
function routeFor<R extends MatchableRoute>(
  routes: readonly R[],
  method: string,
  host: string,
  segments: readonly string[],
  folded?: readonly string[],
): RouteMatch<R> | undefined {
  for (const route of routes) {
    if (!takesMethod(route.methods, method)) continue;
    let hostParams: Record<string, string> = {};
    if (route.host) {
      const matched = matchHost(route.host, host);
      if (!matched) continue;
      hostParams = matched;
    }
    const pathParams = matchPath(route.pattern, segments, folded);
    if (!pathParams) continue;
    return { route, params: { ...hostParams, ...pathParams } };
  }
  return undefined;
}

/** The method a request is authorised and counted as: HEAD as GET (a HEAD is a GET without its body). */
export function canonicalMethod(method: string): string {
  return method === "HEAD" ? "GET" : method;
}

/** Whether `methods` take `method`: its own, or its canonical one (HEAD wherever GET is). */
export function takesMethod(methods: ReadonlySet<string> | readonly string[], method: string): boolean {
  const canonical = canonicalMethod(method);
  // No closure: routing asks this of every route, on every request.
  if ("has" in methods) return methods.has(method) || (canonical !== method && methods.has(canonical));
  return methods.includes(method) || (canonical !== method && methods.includes(canonical));
}

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

/** Whether `pattern` matches some path below these (folded) segments. */
export function matchesBelow(pattern: CompiledPattern, prefix: readonly string[]): boolean {
  const { parts } = pattern;
  for (let i = 0; i < prefix.length; i++) {
    const part = parts[i];
    if (!part || part.kind === "rest") return part !== undefined;
    if (part.kind === "literal" && foldedLiteral(part.value) !== prefix[i]) return false;
  }
  return parts.length > prefix.length;
}

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
  canonicalPath: string,
  matched: R,
): RouteAmbiguity | undefined {
  let cased = casedLiterals.get(routes);
  if (cased === undefined) {
    cased = routes.some((route) =>
      route.pattern.parts.some((part) => part.kind === "literal" && part.value !== foldedLiteral(part.value)),
    );
    casedLiterals.set(routes, cased);
  }
  const caseMatters = cased || canonicalPath !== foldCase(canonicalPath);
  const dotted = canonicalPath.includes(".");
  const batched = /,|%2C|batch/i.test(canonicalPath);
  // A character beyond ASCII is escaped in the canonical path, from its lead byte on.
  const normalisable = /%[C-F]/.test(canonicalPath);
  if (!caseMatters && !dotted && !batched && !normalisable) return undefined;
  const segments = pathSegments(canonicalPath) as string[];
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
      const path = `/${normalised.map(encodeURIComponent).join("/")}`;
      const reading = readAsAnotherRoute(routes, method, host, path, matched);
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
