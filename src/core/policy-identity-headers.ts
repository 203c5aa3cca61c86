// The names of the identity headers the edge writes, validated: application headers the
// edge neither strips nor writes for another purpose.

import {
  CREDENTIAL_HEADERS,
  FORWARDING_HEADER_PREFIX,
  FORWARDING_HEADERS,
  normaliseHeaderName,
  REQUEST_OVERRIDE_HEADERS,
} from "./headers";
import type { ResolvedIdentityHeaders } from "./policy";
import type { Checker } from "./policy-checker";
import type { IdentityHeaderNames } from "./policy-types";

export function resolveIdentityHeaders(check: Checker, raw: unknown): ResolvedIdentityHeaders {
  const resolved: ResolvedIdentityHeaders = {
    subject: "x-user-sub",
    tenant: "x-tenant",
    scopes: "x-user-scope",
    groups: "x-user-groups",
    email: "x-user-email",
    issuer: "x-user-iss",
  };
  if (raw === undefined) return resolved;
  const path = "settings.identity_headers";
  if (!check.object(raw, path)) return resolved;
  const fields = Object.keys(resolved) as (keyof IdentityHeaderNames)[];
  check.known(raw, path, fields);
  for (const field of fields) {
    const value = raw[field];
    if (value === undefined) continue;
    if (check.string(value, `${path}.${field}`)) {
      const name = normaliseHeaderName(value);
      const problem = /^[A-Za-z0-9-]+$/.test(value)
        ? identityHeaderProblem(name)
        : "must be a header name of letters, digits and -";
      if (problem) check.fail(`${path}.${field}`, problem);
      else resolved[field] = name;
    }
  }
  const firstField = new Map<string, string>();
  for (const field of fields) {
    const other = firstField.get(resolved[field]);
    if (other !== undefined) {
      // Two fields in one header: the origin would read one claim as the other.
      check.fail(`${path}.${field}`, `"${resolved[field]}" is already the ${other} header`);
    }
    firstField.set(resolved[field], field);
  }
  return resolved;
}

/**
 * Names the edge gives another meaning: credentials and forwarding headers it strips or
 * writes itself, method and URL overrides, its request id. An identity header under such a
 * name would be overwritten, or would overwrite what the origin relies on.
 */
const RESERVED_IDENTITY_NAMES: ReadonlySet<string> = new Set([
  ...CREDENTIAL_HEADERS,
  ...FORWARDING_HEADERS,
  ...REQUEST_OVERRIDE_HEADERS,
  "x-request-id",
]);

/** Why `name` (normalised) cannot be an identity header, or undefined if it can. */
function identityHeaderProblem(name: string): string | undefined {
  // Outside x-, a name may mean something to HTTP or to a proxy (Host, Cookie,
  // Transfer-Encoding…): the edge writes identities only into application headers.
  if (!name.startsWith("x-")) return "must start with x- (an application header)";
  if (RESERVED_IDENTITY_NAMES.has(name) || name.startsWith(FORWARDING_HEADER_PREFIX))
    return `"${name}" is a header the edge strips or writes itself`;
  return undefined;
}
