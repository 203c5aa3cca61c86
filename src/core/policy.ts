// Validates a policy document and compiles it into the shape the pipeline uses: at build
// time for the deployable Worker (scripts/compile-policy.mjs), once per isolate for the local
// stack and tests. Every error names the field and why, so a bad policy fails loudly at
// `npm test` and at deploy instead of running half-configured. Here: the compiled shape, the
// document's top level and its routes; each other section is checked in a policy-*.ts module
// of its own (issuers, limits, auth, CORS, identity headers).

import { DEFAULT_REALM } from "./deny";
import { duplicateNames } from "./duplicate-names";
import { MAX_COUNTERS_PER_CALL, MAX_LIMITER_TIMEOUT_MS } from "./limits/limiter-rpc";
import { MAX_NAME_CHARS } from "./limits/counter-ids";
import { matchedRuleOf } from "./policy-artifact";
import { checkAuth } from "./policy-auth";
import { Checker, checkMethods, METHODS, optionalInteger } from "./policy-checker";
import { checkCors } from "./policy-cors";
import { resolveIdentityHeaders } from "./policy-identity-headers";
import { resolveIssuer } from "./policy-issuers";
import { checkLimits, checkTenantOverrides } from "./policy-limits";
import type { AuthRequirement, ClaimMapping, CorsConfig, LimitSpec, UpstreamConfig } from "./policy-types";
import {
  capturesOf,
  type CompiledPattern,
  compileHostPattern,
  compilePathPattern,
  type HostPattern,
  takesMethod,
} from "./routes";
import { secureUrl } from "./urls";

export interface ResolvedIssuer {
  id: string;
  kind: "oidc" | "cloudflare_access";
  /** Exact `iss` expected in tokens. */
  issuer: string;
  /** Where keys come from: an explicit JWKS URL, or discovery on the issuer. */
  jwksUri?: string;
  discoveryUrl?: string;
  audiences: string[];
  algorithms: string[];
  clockSkewS: number;
  /** The longest a token may be good for, seconds from its `iat` (else `nbf`, else now); 0 for no bound. */
  maxLifetimeS: number;
  typ?: string;
  claims: Required<ClaimMapping> & { scopesFallback?: string };
  cacheTtlS: number;
  refreshCooldownS: number;
  maxStaleS: number;
  rotationGraceS: number;
  fetchTimeoutMs: number;
  maxJwksBytes: number;
}

export interface ResolvedIdentityHeaders {
  subject: string;
  tenant: string;
  scopes: string;
  groups: string;
  email: string;
  issuer: string;
}

export interface CompiledRoute {
  name: string;
  index: number;
  methods: ReadonlySet<string>;
  pattern: CompiledPattern;
  host?: HostPattern;
  auth: "public" | AuthRequirement;
  upstreamName: string;
  upstream: UpstreamConfig;
  cors?: CorsConfig;
  /** Every limit that applies: the inherited defaults, each replaced by the route's own limit of its name. */
  limits: LimitSpec[];
  /** The inherited defaults the route's own limits replace by name (for the lint), if any. */
  replacedDefaults?: LimitSpec[];
  /** `policy:<route>@v<version>`, as named in audit records. */
  matchedRule: string;
}

export interface CompiledPolicy {
  version: number;
  routes: CompiledRoute[];
  issuers: ReadonlyMap<string, ResolvedIssuer>;
  /** By tenant, then limit name; null-prototype objects, read by own keys only. */
  tenantOverrides: Record<string, Record<string, { limit: number; window_s?: number }>>;
  identityHeaders: ResolvedIdentityHeaders;
  maxUrlBytes: number;
  maxHeaderBytes: number;
  maxTokenBytes: number;
  serverTiming: boolean;
  limiterTimeoutMs: number;
  realm: string;
}

export class PolicyError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid policy:\n  - ${problems.join("\n  - ")}`);
    this.name = "PolicyError";
  }
}

function checkUpstream(check: Checker, name: string, raw: unknown): UpstreamConfig | undefined {
  const path = `upstreams.${name}`;
  if (!check.object(raw, path)) return undefined;
  check.known(raw, path, ["url", "service", "timeout_ms"]);
  if (raw.timeout_ms !== undefined) check.integer(raw.timeout_ms, `${path}.timeout_ms`, 100, 300000);
  const timeout = typeof raw.timeout_ms === "number" ? { timeout_ms: raw.timeout_ms } : {};
  if (raw.url !== undefined && raw.service !== undefined) {
    check.fail(path, "give either url or service, not both");
    return undefined;
  }
  if (raw.url !== undefined) {
    if (!check.url(raw.url, `${path}.url`)) return undefined;
    // The prefix of every forwarded URL, as fetch reads it (`\` is `/`), without trailing
    // slashes: one left at the join starts the path with `//`, which an origin resolving it
    // against a base reads as a host (`//public/admin` as `/admin`).
    return { url: (secureUrl(raw.url) as URL).href.replace(/\/+$/, ""), ...timeout };
  }
  if (raw.service !== undefined) {
    if (!check.string(raw.service, `${path}.service`)) return undefined;
    return { service: raw.service, ...timeout };
  }
  check.fail(path, "needs url or service");
  return undefined;
}

/**
 * The policy document a JSON text holds. JSON.parse keeps the last of two members with one name:
 * a route's `"auth": {…}` followed by `"auth": "public"` would compile as public, so a name
 * written twice in one object throws PolicyError, listing each (which one the author meant is
 * theirs to say). Text that is not JSON throws JSON.parse's SyntaxError.
 */
export function parsePolicyText(text: string): unknown {
  const document: unknown = JSON.parse(text);
  const duplicates = duplicateNames(text);
  if (duplicates.length > 0) throw new PolicyError(duplicates);
  return document;
}

/** Validate and compile a policy document. Throws PolicyError listing every problem found. */
export function compilePolicy(doc: unknown): CompiledPolicy {
  const check = new Checker();
  if (!check.object(doc, "policy")) throw new PolicyError(check.problems);
  check.known(doc, "policy", ["$schema", "version", "settings", "issuers", "upstreams", "limits", "routes"]);
  const version = check.integer(doc.version, "version", 1, Number.MAX_SAFE_INTEGER) ? doc.version : 0;

  const settings: Record<string, unknown> =
    doc.settings === undefined ? {} : check.object(doc.settings, "settings") ? doc.settings : {};
  check.known(settings, "settings", [
    "max_url_bytes",
    "max_header_bytes",
    "max_token_bytes",
    "server_timing",
    "limiter_timeout_ms",
    "identity_headers",
    "realm",
  ]);
  check.boolean(settings, "server_timing", "settings");
  const serverTiming = settings.server_timing === true;
  if (settings.realm !== undefined && check.string(settings.realm, "settings.realm")) {
    // It is quoted into WWW-Authenticate: a character a header cannot carry would turn
    // every challenge into a 500.
    if (!/^[\x20\x21\x23-\x5B\x5D-\x7E]{1,128}$/.test(settings.realm))
      check.fail("settings.realm", 'must be 1 to 128 printable ASCII characters, without " or \\');
  }

  const issuers = new Map<string, ResolvedIssuer>();
  if (doc.issuers !== undefined && check.object(doc.issuers, "issuers")) {
    const seenIss = new Map<string, string>();
    for (const [id, raw] of Object.entries(doc.issuers)) {
      // An issuer's id is part of every user counter's name.
      if (id.length > MAX_NAME_CHARS)
        check.fail(`issuers.${id}`, `an issuer id is at most ${MAX_NAME_CHARS} characters`);
      const issuer = resolveIssuer(check, id, raw);
      if (!issuer) continue;
      // But for a trailing slash, the same issuer too: both are discovered at one URL, whose
      // document names one of them, so the other's keys never load.
      const key = issuer.issuer.replace(/\/$/, "");
      const other = seenIss.get(key);
      if (other) check.fail(`issuers.${id}.issuer`, `"${issuer.issuer}" is already used by issuer "${other}"`);
      seenIss.set(key, id);
      issuers.set(id, issuer);
    }
  }

  const upstreams = new Map<string, UpstreamConfig>();
  if (check.object(doc.upstreams, "upstreams")) {
    for (const [name, raw] of Object.entries(doc.upstreams)) {
      const upstream = checkUpstream(check, name, raw);
      if (upstream) upstreams.set(name, upstream);
    }
  }

  let defaultLimits: LimitSpec[] = [];
  // Every limit name written, valid or not (see checkTenantOverrides).
  const limitNames = new Set<string>();
  const limitsDoc: Record<string, unknown> =
    doc.limits !== undefined && check.object(doc.limits, "limits") ? doc.limits : {};
  check.known(limitsDoc, "limits", ["defaults", "tenant_overrides"]);
  if (limitsDoc.defaults !== undefined) {
    defaultLimits = checkLimits(check, limitsDoc.defaults, "limits.defaults", undefined, limitNames);
  }

  const routes: CompiledRoute[] = [];
  const names = new Set<string>();
  const declaredLimits: LimitSpec[] = [...defaultLimits];
  const takenDefaults = new Set<LimitSpec>();
  if (Array.isArray(doc.routes) && doc.routes.length > 0) {
    doc.routes.forEach((raw: unknown, index: number) => {
      const path = `routes[${index}]`;
      if (!check.object(raw, path)) return;
      check.known(raw, path, [
        "name",
        "methods",
        "path",
        "host",
        "auth",
        "upstream",
        "cors",
        "limits",
        "inherit_default_limits",
      ]);
      const route = compileRoute(check, raw, path, index, {
        version,
        issuers,
        upstreams,
        defaultLimits,
        declaredLimits,
        limitNames,
        serverTiming,
        takenDefaults,
      });
      if (!route) return;
      if (names.has(route.name)) check.fail(`${path}.name`, `"${route.name}" is used by another route`);
      names.add(route.name);
      routes.push(route);
    });
  } else {
    check.fail("routes", "must be a non-empty array");
  }
  // A default no route can take counts nothing (nor does a tenant's override of it): written
  // as a route's own limit on the wrong kind of route, it would have been refused. Only asked
  // of a policy otherwise valid: a route whose auth is not understood takes none.
  for (const limit of check.problems.length === 0 ? defaultLimits : []) {
    if (takenDefaults.has(limit)) continue;
    const at = (limitsDoc.defaults as { name?: unknown }[]).findIndex((raw) => raw?.name === limit.name);
    const only =
      limit.key === "ip"
        ? "an ip limit applies to public routes only, "
        : limit.key === "route"
          ? ""
          : "a tenant or user limit to authenticated routes only, ";
    check.fail(
      `limits.defaults[${at}]`,
      `"${limit.name}" applies to no route: ${only}none to a route with inherit_default_limits false`,
    );
  }
  const tenantOverrides = checkTenantOverrides(check, limitsDoc.tenant_overrides, declaredLimits, limitNames);

  const identityHeaders = resolveIdentityHeaders(check, settings.identity_headers);
  const compiled: CompiledPolicy = {
    version,
    routes,
    issuers,
    tenantOverrides,
    identityHeaders,
    maxUrlBytes: optionalInteger(check, settings, "max_url_bytes", "settings", 8192, 256, 65536),
    maxHeaderBytes: optionalInteger(check, settings, "max_header_bytes", "settings", 32768, 1024, 131072),
    maxTokenBytes: optionalInteger(check, settings, "max_token_bytes", "settings", 8192, 512, 65536),
    serverTiming,
    limiterTimeoutMs: optionalInteger(check, settings, "limiter_timeout_ms", "settings", 50, 5, MAX_LIMITER_TIMEOUT_MS),
    realm: typeof settings.realm === "string" ? settings.realm : DEFAULT_REALM,
  };
  if (check.problems.length > 0) throw new PolicyError(check.problems);
  return compiled;
}

interface RouteContext {
  version: number;
  issuers: ReadonlyMap<string, ResolvedIssuer>;
  upstreams: ReadonlyMap<string, UpstreamConfig>;
  defaultLimits: LimitSpec[];
  /** Collects every limit a route declares, even on a route that fails to compile, for `checkTenantOverrides`. */
  declaredLimits: LimitSpec[];
  /** Every limit name written, valid or not, for `checkTenantOverrides`. */
  limitNames: Set<string>;
  /** `settings.server_timing`: the edge's own timings are on every answer. */
  serverTiming: boolean;
  /** Every default limit some route takes (or replaces by name), for the check that each applies. */
  takenDefaults: Set<LimitSpec>;
}

function compileRoute(
  check: Checker,
  raw: Record<string, unknown>,
  path: string,
  index: number,
  context: RouteContext,
): CompiledRoute | undefined {
  const nameOk = check.string(raw.name, `${path}.name`);
  // Bounded as a limit's or an issuer's name: a metrics data point keeps 256 bytes of its
  // `policy:<route>@v<version>`, which would lose the version of a longer one.
  if (nameOk && !(/^[A-Za-z0-9._-]+$/.test(raw.name as string) && (raw.name as string).length <= MAX_NAME_CHARS)) {
    check.fail(`${path}.name`, `at most ${MAX_NAME_CHARS} characters: letters, digits, '.', '_' and '-'`);
  }
  const methods = new Set(checkMethods(check, raw.methods, `${path}.methods`));
  let pattern: CompiledPattern | undefined;
  if (check.string(raw.path, `${path}.path`)) {
    const compiled = compilePathPattern(raw.path);
    if (typeof compiled === "string") check.fail(`${path}.path`, compiled);
    else pattern = compiled;
  }
  let host: HostPattern | undefined;
  if (raw.host !== undefined && check.string(raw.host, `${path}.host`)) {
    const compiled = compileHostPattern(raw.host);
    if (typeof compiled === "string") check.fail(`${path}.host`, compiled);
    else host = compiled;
  }
  // A name captured by both the host and the path would have two values, and a tenant
  // binding would check only one of them.
  if (host?.captureName !== undefined && pattern && capturesOf(pattern).includes(host.captureName)) {
    check.fail(`${path}.host`, `capture ":${host.captureName}" is also in the path`);
  }
  const auth = checkAuth(check, raw.auth, `${path}.auth`, context.issuers);
  let upstream: UpstreamConfig | undefined;
  if (check.string(raw.upstream, `${path}.upstream`)) {
    upstream = context.upstreams.get(raw.upstream);
    if (!upstream) check.fail(`${path}.upstream`, `"${raw.upstream}" is not defined in upstreams`);
  }
  const cors = raw.cors === undefined ? undefined : checkCors(check, raw.cors, `${path}.cors`);
  // The edge's timings tell whether a token came from the cache: no other origin's page may read them.
  const exposed: unknown = cors?.expose_headers;
  if (
    context.serverTiming &&
    Array.isArray(exposed) &&
    exposed.some((name) => `${name}`.toLowerCase() === "server-timing")
  ) {
    check.fail(`${path}.cors.expose_headers`, '"server-timing" may not be exposed while settings.server_timing is on');
  }
  if (cors && methods.has("OPTIONS")) {
    check.fail(`${path}.methods`, "OPTIONS is answered by the edge when cors is set");
  }
  // A method the route does not take here is never its to grant (another route, or none, takes it).
  const granted: unknown = cors?.allow_methods;
  for (const method of Array.isArray(granted) ? granted : []) {
    // Listed by CORS recipes that answer preflights in the application: the edge answers them.
    if (method === "OPTIONS")
      check.fail(`${path}.cors.allow_methods`, '"OPTIONS" is not needed: the edge answers preflights itself');
    else if (METHODS.has(method) && !takesMethod(methods, method)) {
      check.fail(`${path}.cors.allow_methods`, `"${method}" is not one of the route's methods`);
    }
  }
  const isPublic = auth === undefined ? undefined : auth === "public";
  const own =
    raw.limits === undefined ? [] : checkLimits(check, raw.limits, `${path}.limits`, isPublic, context.limitNames);
  context.declaredLimits.push(...own);
  check.boolean(raw, "inherit_default_limits", path);
  const inherited =
    raw.inherit_default_limits === false
      ? []
      : context.defaultLimits.filter((limit) =>
          isPublic ? limit.key === "ip" || limit.key === "route" : limit.key !== "ip",
        );
  for (const limit of inherited) context.takenDefaults.add(limit);
  // A default the route replaces by name does not apply to it; one limiter call carries every
  // counter of its object kind (tenant and user; route and ip) that does.
  const replaced = inherited.filter((limit) => own.some((mine) => mine.name === limit.name));
  const applied = [...inherited.filter((limit) => !replaced.includes(limit)), ...own];
  for (const [kind, keys] of [
    ["tenant and user", ["tenant", "user"]],
    ["route and ip", ["route", "ip"]],
  ] as const) {
    const count = applied.filter((limit) => (keys as readonly string[]).includes(limit.key)).length;
    if (count > MAX_COUNTERS_PER_CALL) {
      check.fail(`${path}.limits`, `at most ${MAX_COUNTERS_PER_CALL} ${kind} limits apply to one route (${count} do)`);
    }
  }
  if (!nameOk || !pattern || !auth || !upstream) return undefined;
  return {
    name: raw.name as string,
    index,
    methods,
    pattern,
    ...(host ? { host } : {}),
    auth,
    upstreamName: raw.upstream as string,
    upstream,
    ...(cors ? { cors } : {}),
    limits: applied,
    ...(replaced.length > 0 ? { replacedDefaults: replaced } : {}),
    matchedRule: matchedRuleOf(raw.name as string, context.version),
  };
}
