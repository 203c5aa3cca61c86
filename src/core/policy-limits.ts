// A policy's rate limits, validated: each limit's name, key and size, and the tenant
// overrides that resize them.

import { MAX_LIMIT, MAX_WINDOW_S } from "./limits/limiter-rpc";
import { MAX_NAME_CHARS } from "./limits/counter-ids";
import type { CompiledPolicy } from "./policy";
import type { Checker } from "./policy-checker";
import type { LimitKey, LimitSpec } from "./policy-types";
import { isTenant, MAX_IDENTIFIER_CHARS } from "./tokens/claims";

const LIMIT_KEYS: ReadonlySet<string> = new Set(["tenant", "user", "route", "ip"]);
/**
 * Valid tenants that an override may still not name: every plain object has these
 * properties, and `"__proto__"` in a JSON policy bundled as a JS object literal would set
 * the object's prototype instead of adding a tenant.
 */
const RESERVED_TENANTS: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

/** `named`: collects every limit name written, valid limit or not (see `checkTenantOverrides`). */
export function checkLimits(
  check: Checker,
  raw: unknown,
  path: string,
  isPublic: boolean | undefined,
  named: Set<string>,
): LimitSpec[] {
  if (!Array.isArray(raw)) {
    check.fail(path, "must be an array of limits");
    return [];
  }
  const limits: LimitSpec[] = [];
  // One list declares a name once: with two, only the last would apply, silently.
  const declaredAt = new Map<string, string>();
  raw.forEach((item, i) => {
    const at = `${path}[${i}]`;
    if (!check.object(item, at)) return;
    check.known(item, at, ["name", "key", "limit", "window_s", "on_error"]);
    if (typeof item.name === "string") {
      named.add(item.name);
      const first = declaredAt.get(item.name);
      if (first !== undefined) check.fail(`${at}.name`, `"${item.name}" is already declared at ${first}`);
      else declaredAt.set(item.name, at);
    }
    // Names go into counter names, which the limiter objects bound, and into the metrics'
    // comma-separated failed_open column, which a comma in one would make ambiguous.
    const nameFits =
      typeof item.name !== "string" || (item.name.length <= MAX_NAME_CHARS && /^[A-Za-z0-9._:-]+$/.test(item.name));
    if (!nameFits)
      check.fail(`${at}.name`, `at most ${MAX_NAME_CHARS} characters: letters, digits, '.', '_', ':' and '-'`);
    const ok =
      check.string(item.name, `${at}.name`) &&
      nameFits &&
      check.integer(item.limit, `${at}.limit`, 1, MAX_LIMIT) &&
      check.integer(item.window_s, `${at}.window_s`, 1, MAX_WINDOW_S);
    if (typeof item.key !== "string" || !LIMIT_KEYS.has(item.key)) {
      check.fail(`${at}.key`, "must be one of tenant, user, route, ip");
      return;
    }
    if (isPublic === true && (item.key === "tenant" || item.key === "user")) {
      check.fail(`${at}.key`, `"${item.key}" needs an identity (public routes: ip or route)`);
    }
    if (isPublic === false && item.key === "ip") {
      check.fail(`${at}.key`, '"ip" limits apply to public routes only');
    }
    if (item.on_error !== undefined && item.on_error !== "deny" && item.on_error !== "allow") {
      check.fail(`${at}.on_error`, 'must be "deny" or "allow"');
    }
    if (ok) limits.push(item as unknown as LimitSpec);
  });
  return limits;
}

/**
 * `limits.tenant_overrides`, checked against every declared limit (`declared`: the defaults
 * and each route's own). An override must be able to take effect: its tenant must be one a
 * token can carry, and its limit a tenant or user limit (overrides resize only those).
 * `named`: every limit name written, valid or not: an override of a limit that is itself
 * invalid has that limit's problem, not a second one saying no such limit exists.
 */
export function checkTenantOverrides(
  check: Checker,
  raw: unknown,
  declared: readonly LimitSpec[],
  named: ReadonlySet<string>,
): CompiledPolicy["tenantOverrides"] {
  const compiled: CompiledPolicy["tenantOverrides"] = Object.create(null);
  if (raw === undefined || !check.object(raw, "limits.tenant_overrides")) return compiled;
  const keysByName = new Map<string, Set<LimitKey>>();
  for (const spec of declared) {
    const keys = keysByName.get(spec.name) ?? new Set<LimitKey>();
    keys.add(spec.key);
    keysByName.set(spec.name, keys);
  }
  for (const [tenant, byName] of Object.entries(raw)) {
    const at = `limits.tenant_overrides.${tenant}`;
    if (RESERVED_TENANTS.has(tenant)) {
      check.fail(at, `"${tenant}" is reserved (an object property name)`);
    } else if (!isTenant(tenant)) {
      check.fail(
        at,
        `a tenant is 1 to ${MAX_IDENTIFIER_CHARS} printable ASCII characters, without spaces, commas, |, " or \\`,
      );
    }
    if (!check.object(byName, at)) continue;
    const overrides: Record<string, { limit: number; window_s?: number }> = Object.create(null);
    for (const [name, override] of Object.entries(byName)) {
      const path = `${at}.${name}`;
      const keys = keysByName.get(name);
      if (!keys) {
        if (!named.has(name)) check.fail(path, `no tenant or user limit is named "${name}"`);
      } else if (!keys.has("tenant") && !keys.has("user")) {
        check.fail(path, `"${name}" is a ${[...keys].join(" or ")} limit, not a tenant or user one`);
      }
      if (!check.object(override, path)) continue;
      check.known(override, path, ["limit", "window_s"]);
      const limitOk = check.integer(override.limit, `${path}.limit`, 1, MAX_LIMIT);
      const windowOk =
        override.window_s === undefined || check.integer(override.window_s, `${path}.window_s`, 1, MAX_WINDOW_S);
      if (limitOk && windowOk) {
        overrides[name] = {
          limit: override.limit as number,
          ...(override.window_s !== undefined ? { window_s: override.window_s as number } : {}),
        };
      }
    }
    compiled[tenant] = overrides;
  }
  return compiled;
}
