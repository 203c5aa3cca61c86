// Route patterns: compiled once per isolate, matched against the canonical path and host.

import { foldCase } from "./case-fold";
import { canonicalPath } from "./path";
import type { AuthRequirement, LimitSpec } from "./policy-types";

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

/**
 * Whether a route binds a caller's tenant, by its path or its host: not a public route, where
 * a `:tenant` host only chooses the hosts (no token is there to bind).
 */
export function bindsTenant(route: MatchableRoute): boolean {
  return route.auth !== "public" && (route.host?.captureName !== undefined || capturesOf(route.pattern).length > 0);
}

/** Whether a route's `:tenant` is its host's alone: a reading of the path never moves it. */
export function bindsHostTenant(route: MatchableRoute): boolean {
  return route.host?.captureName !== undefined && capturesOf(route.pattern).length === 0;
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
      // whether its normalised reading is this literal (see `readAsAnotherRoute` in route-readings.ts).
      const nfkc = segment.normalize("NFKC");
      if (canonical?.ok && decodeURIComponent(canonical.path) === `/${segment}` && nfkc !== segment)
        return `segment "${segment}" is not in Unicode NFKC form: write it as "${nfkc}"`;
      if (!canonical?.ok || decodeURIComponent(canonical.path) !== `/${segment}`) {
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
export function pathSegments(path: string): string[] | undefined {
  if (path === "/") return [""];
  const segments = path.split("/").slice(1);
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
 * Whether a request's host is no one host name as DNS writes one: an empty label
 * (`acme..example.com`, `.example.com`; a single trailing dot is a fully qualified name, the
 * same host, see `splitHost`) or a character no name holds, which the URL parser keeps (`,`,
 * `;`, `*`, `!`, `+`, …). No route written for a host matches it, while an origin may read it
 * as that host: Rails drops empty labels from X-Forwarded-Host, and reads a list
 * (`www.example.com,admin.example.com`) by its last host, Express by its first.
 */
export function isAmbiguousHost(host: string): boolean {
  const { name } = splitHost(host);
  // Its one trailing dot taken off already: a second one is an empty label too.
  return !/^(?:[a-z\d_-]+(?:\.[a-z\d_-]+)*|\[[\da-f:.]+\])$/.test(name);
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
  ) {
    // An internationalised name arrives as its ASCII (punycode) spelling, which a URL writes.
    const name = URL.canParse(`http://${lower}`) ? new URL(`http://${lower}`).hostname : undefined;
    // With its port, if it had one: without, the route would take the host on every port.
    const written = name && (port === undefined ? name : `${name}:${port}`);
    // Named only if that spelling would do: one the URL parser writes as it stands is refused here.
    return name !== undefined &&
      name !== lower &&
      name.includes("xn--") &&
      typeof compileHostPattern(written as string) !== "string"
      ? `not a host name as requests carry it: write "${written}"`
      : "not a host name";
  }
  return { exact: lower, ...withPort };
}

/**
 * A pattern without a port matches its host on every port: Cloudflare passes other ports
 * (8443, 2053, …) to the same Worker, and a host-specific route that missed them would let
 * `admin.example.com:8443` fall through to a broader route.
 */
export function matchHost(pattern: HostPattern, host: string): Record<string, string> | null {
  const { name, port } = splitHost(host);
  if (pattern.port !== undefined && port !== pattern.port) return null;
  if (pattern.exact !== undefined) return name === pattern.exact ? {} : null;
  const label = capturedLabel(name, pattern.suffix as string);
  return label === undefined ? null : { [pattern.captureName as string]: label };
}

/** Whether some request's host matches both patterns (no pattern: every host). */
export function hostsOverlap(a: HostPattern | undefined, b: HostPattern | undefined): boolean {
  if (!a || !b) return true;
  if (a.port !== undefined && b.port !== undefined && a.port !== b.port) return false;
  if (a.exact !== undefined && b.exact !== undefined) return a.exact === b.exact;
  if (a.exact !== undefined) return capturedLabel(a.exact, b.suffix as string) !== undefined;
  if (b.exact !== undefined) return capturedLabel(b.exact, a.suffix as string) !== undefined;
  return a.suffix === b.suffix;
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
  /** `"public"`, or what a caller must show, and the limits counted (see route-demands.ts). */
  auth?: "public" | AuthRequirement;
  limits?: readonly LimitSpec[];
  cors?: { allow_credentials?: boolean };
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
  path: string,
): RouteMatch<R> | undefined {
  const segments = pathSegments(path);
  return segments && routeFor(routes, method, host, segments);
}

/**
 * `findRoute` over a path's segments, compared as they are or, given `folded` (the segments
 * with letters folded once, however many routes compare them), without regard to case.
 */
export function routeFor<R extends MatchableRoute>(
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
