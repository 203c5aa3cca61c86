// The policy validator's tools: problems collected with the path of the field they concern,
// and the checks every section uses (strings, integers in range, method lists).

import { HTTP_METHODS } from "./policy-types";
import { secureUrl } from "./urls";

export const METHODS: ReadonlySet<string> = new Set(HTTP_METHODS);

/** -0: JSON writes it back as 0, so a compiled policy holding it would not come back as written. */
export const NEGATIVE_ZERO = "-0: write 0";

export function isNegativeZero(value: unknown): boolean {
  return Object.is(value, -0);
}

/** Collects problems with the path of the field they concern. */
export class Checker {
  readonly problems: string[] = [];
  fail(path: string, why: string): void {
    this.problems.push(`${path}: ${why}`);
  }
  object(value: unknown, path: string): value is Record<string, unknown> {
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return true;
    this.fail(path, "must be an object");
    return false;
  }
  string(value: unknown, path: string): value is string {
    if (typeof value === "string" && value.length > 0) return true;
    this.fail(path, "must be a non-empty string");
    return false;
  }
  stringArray(value: unknown, path: string, { nonEmpty = false } = {}): value is string[] {
    if (!Array.isArray(value) || value.some((item) => typeof item !== "string" || item.length === 0)) {
      this.fail(path, "must be an array of non-empty strings");
      return false;
    }
    if (nonEmpty && value.length === 0) {
      this.fail(path, "must not be empty");
      return false;
    }
    return true;
  }
  integer(value: unknown, path: string, min: number, max: number): value is number {
    // Where 0 is out of range anyway, the range says more.
    if (isNegativeZero(value) && min <= 0) {
      this.fail(path, `is ${NEGATIVE_ZERO}`);
      return false;
    }
    if (typeof value === "number" && Number.isInteger(value) && value >= min && value <= max) return true;
    this.fail(path, `must be an integer from ${min} to ${max}`);
    return false;
  }
  /** `query`: whether the URL may carry a query or fragment (a key set URL may; an issuer or prefix may not). */
  url(value: unknown, path: string, query = false): value is string {
    if (!this.string(value, path)) return false;
    const url = secureUrl(value);
    if (!url) {
      this.fail(path, "must be an https URL (http only for loopback hosts)");
      return false;
    }
    if (url.username || url.password) {
      // A policy is reviewed and bundled in plain text: no place for a secret (and the edge
      // would not send it anyway).
      this.fail(path, "must not carry a user name or password");
      return false;
    }
    // The raw text: `https://o.example?` has an empty search, yet it turns what is appended
    // to it (a discovery path, a forwarded path) into a query.
    if (!query && /[?#]/.test(value)) this.fail(path, "must not carry a query or fragment");
    return true;
  }
  /** An optional boolean field of `source`. */
  boolean(source: Record<string, unknown>, field: string, path: string): void {
    const value = source[field];
    if (value !== undefined && typeof value !== "boolean") this.fail(`${path}.${field}`, "must be a boolean");
  }
  known(value: Record<string, unknown>, path: string, allowed: readonly string[]): void {
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.fail(`${path}.${key}`, "unknown field");
    }
  }
}

export function optionalInteger(
  check: Checker,
  source: Record<string, unknown>,
  field: string,
  path: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const value = source[field];
  if (value === undefined) return fallback;
  return check.integer(value, `${path}.${field}`, min, max) ? value : fallback;
}

/** A non-empty list of methods, as given (an empty list when it is none). */
export function checkMethods(check: Checker, raw: unknown, path: string): string[] {
  if (!check.stringArray(raw, path, { nonEmpty: true })) return [];
  for (const method of raw) {
    if (METHODS.has(method)) continue;
    const hint = METHODS.has(method.toUpperCase()) ? "use upper case" : `one of ${[...METHODS].join(", ")}`;
    check.fail(path, `unknown method "${method}" (${hint})`);
  }
  return raw;
}
