// A route's CORS settings, validated: origins as browsers send them, methods and header names.

import { type Checker, checkMethods } from "./policy-checker";
import type { CorsConfig } from "./policy-types";

/** RFC 9110 §5.1 field-name (token), without `*`, which CORS would read as a wildcard. */
const HEADER_NAME = /^[!#$%&'+.^_`|~0-9A-Za-z-]+$/;

/** Schemes of the web that serve no page a browser sends as an origin (a file's page sends `null`). */
const WEB_SCHEMES_SERVING_NO_PAGE: ReadonlySet<string> = new Set(["file:", "ftp:", "ws:", "wss:"]);

/**
 * Why `origin` can never equal a browser's `Origin` header, or undefined. Origins are
 * compared as exact strings, and browsers send the serialised form: scheme and host in
 * lower case, no default port, no path. So `https://App.example.com`, `…:443`, `…/` or a
 * `*.example.com` pattern would silently match nothing.
 */
function originProblem(origin: string): string | undefined {
  // Never quoted: a password in it would go to the deploy's log.
  if (origin.includes("@")) return "an origin must not carry a user name or password";
  let serialised: string | undefined;
  try {
    const url = new URL(origin);
    if (url.protocol === "https:" || url.protocol === "http:") serialised = url.origin;
    // An app's web view sends its own scheme and host (Capacitor's `capacitor://localhost`,
    // Ionic's `ionic://localhost`), which the URL parser gives no origin of its own.
    // Its host in lower case, as WebKit writes it into `Origin`.
    else if (!WEB_SCHEMES_SERVING_NO_PAGE.has(url.protocol) && url.host !== "")
      serialised = `${url.protocol}//${url.host.toLowerCase()}`;
  } catch {
    // not a URL
  }
  if (serialised === undefined || origin.includes("*"))
    return `"${origin}" must be "*" or an origin such as https://app.example.com`;
  if (serialised !== origin) return `"${origin}" never matches: browsers send it as "${serialised}"`;
  return undefined;
}

export function checkCors(check: Checker, raw: unknown, path: string): CorsConfig | undefined {
  if (!check.object(raw, path)) return undefined;
  check.known(raw, path, [
    "allow_origins",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age_s",
  ]);
  if (!check.stringArray(raw.allow_origins, `${path}.allow_origins`, { nonEmpty: true })) return undefined;
  for (const origin of raw.allow_origins) {
    const problem = origin === "*" ? undefined : originProblem(origin);
    if (problem) check.fail(`${path}.allow_origins`, problem);
  }
  if (raw.allow_credentials === true && raw.allow_origins.includes("*")) {
    check.fail(`${path}.allow_credentials`, 'cannot be true when allow_origins contains "*"');
  }
  if (raw.allow_methods !== undefined) checkMethods(check, raw.allow_methods, `${path}.allow_methods`);
  for (const field of ["allow_headers", "expose_headers"] as const) {
    const names = raw[field];
    if (names === undefined || !check.stringArray(names, `${path}.${field}`)) continue;
    for (const name of names) {
      // Listed literally: `*` means "any" only without credentials, so it is not offered.
      if (!HEADER_NAME.test(name))
        check.fail(`${path}.${field}`, `"${name}" is not a header name (and * is not supported)`);
    }
  }
  check.boolean(raw, "allow_credentials", path);
  if (raw.max_age_s !== undefined) check.integer(raw.max_age_s, `${path}.max_age_s`, 0, 86400);
  return raw as unknown as CorsConfig;
}
