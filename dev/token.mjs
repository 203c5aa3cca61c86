// `npm run token -- [options]`: prints one JWT signed with the local stack's keys, which the
// local edge accepts, so requests can be tried with curl. Only the token goes to stdout
// (`TOKEN=$(npm run --silent token)` works); notes and errors go to stderr.
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { CompactSign } from "jose";
import { loadPrivateJwks, signingKey } from "./keys.mjs";
import { ACCESS_AUD, EDGE_URL, LOCAL_ACCESS_TEAM, LOCAL_AUDIENCE, LOCAL_IDP_URL } from "./local-stack.mjs";
import { isMainModule } from "./main-module.mjs";

const HELP = `Usage: npm run token -- [options]

Prints one signed JWT for the local stack on stdout.

Token options (defaults in brackets):
  --sub ID            subject [user-123]
  --tenant ID         tenant [acme]
  --scope "A B"       space-separated scopes [api:read]
  --groups A,B        groups, an array [none]
  --email ADDRESS     e-mail [none; user@example.com with --access]
                      Each in the claim policy/policy.json's first OIDC issuer reads it by
                      (sub, tenant_id, scope, groups, email unless its "claims" map them)
  --aud AUDIENCE      audience, in aud unless that issuer's "claims" name another claim
                      (client_id) [the first audience of policy/policy.json's first OIDC
                      issuer, else ${LOCAL_AUDIENCE}; with --access, the AUD tag of the first
                      route of its first Access issuer, else ${ACCESS_AUD}]
  --iss URL           issuer (iss) [${LOCAL_IDP_URL}; ${LOCAL_ACCESS_TEAM} with --access]
  --ttl SECONDS       lifetime: exp = now + SECONDS; negative means already expired [900]
  --nbf SECONDS       not before: nbf = now + SECONDS [not set; now with --access]
  --typ TYPE          typ header, e.g. at+jwt [the OIDC issuer's typ in the policy, else JWT;
                      JWT with --access]
  --claim KEY=VALUE   set any claim; the value is parsed as JSON, or taken as a string if
                      it is not JSON. Repeatable; applied last, so it overrides the above

Modes:
  --access            a Cloudflare Access-style assertion (RS256) instead of an OIDC token;
                      send it in the Cf-Access-Jwt-Assertion header
  --print-issuer      print the iss the token would carry (after --iss, --access and
                      --claim iss=...) instead of a token
  --help              print this help

Examples:
  curl -H "authorization: Bearer $(npm run --silent token)" ${EDGE_URL}/v1/things
  npm run --silent token -- --scope "api:read payments:write" --groups payments-writer
  npm run --silent token -- --ttl -60        # expired a minute ago
  npm run --silent token -- --access --email ada@example.com
`;

/**
 * What the local stack's policy asks of a token, so that the defaults keep working after
 * policy/policy.json is edited (the local stack runs it with only its issuers' and origins'
 * URLs changed): its first OIDC issuer's first audience and `typ`, and the AUD tag of the first
 * route its first Access issuer guards. Empty where the policy cannot be read. "First" is in
 * Object.entries order, as dev/local-policy.ts reads it, so both pick the same issuer: ids that
 * are whole numbers ("1", "20") come before the others, whatever their place in the file.
 */
export function policyDefaults(file = new URL("../policy/policy.json", import.meta.url)) {
  try {
    const doc = JSON.parse(readFileSync(file, "utf8"));
    const issuers = Object.entries(doc.issuers ?? {});
    const oidc = issuers.find(([, issuer]) => issuer?.kind === "oidc")?.[1];
    const accessId = issuers.find(([, issuer]) => issuer?.kind === "cloudflare_access")?.[0];
    const guarded = (doc.routes ?? []).find(
      (route) => route?.auth?.issuers?.includes?.(accessId) && typeof route.auth.audiences?.[0] === "string",
    );
    const text = (value) => (typeof value === "string" ? value : undefined);
    const mapped = oidc?.claims ?? {};
    // The claim names the issuer's tokens are read by: a policy that maps them (`roles` for
    // groups, `scp` for scopes) reads no other.
    const claims = Object.fromEntries(
      Object.entries(DEFAULT_CLAIMS).map(([field, name]) => [field, text(mapped[field]) ?? name]),
    );
    return { aud: text(oidc?.audiences?.[0]), typ: text(oidc?.typ), accessAud: guarded?.auth.audiences[0], claims };
  } catch {
    return {};
  }
}

/** The claims an OIDC issuer's tokens are read by when the policy maps none (README, OAuth / OIDC issuers). */
const DEFAULT_CLAIMS = {
  subject: "sub",
  tenant: "tenant_id",
  scopes: "scope",
  groups: "groups",
  email: "email",
  audience: "aud",
};

/** Options that take a value, and flags that do not. */
const VALUE_OPTIONS = new Set("sub tenant scope groups email aud iss ttl nbf typ claim".split(" "));
const FLAG_OPTIONS = new Set(["access", "print-issuer", "help"]);

class UsageError extends Error {}

/**
 * A small parser rather than util.parseArgs: `--ttl -60` must read -60 as the value,
 * which parseArgs rejects as ambiguous.
 */
export function parseOptions(argv) {
  const options = { claim: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new UsageError(`unexpected argument: ${arg}`);
    const equals = arg.indexOf("=");
    const name = arg.slice(2, equals === -1 ? undefined : equals);
    const inline = equals === -1 ? undefined : arg.slice(equals + 1);
    if (FLAG_OPTIONS.has(name)) {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      options[name] = true;
    } else if (VALUE_OPTIONS.has(name)) {
      // The next option is not a value: `--sub --access` would sign a token for "--access".
      const value = inline ?? (argv[i + 1]?.startsWith("--") ? undefined : argv[++i]);
      // An empty value is no value either: `--sub "$UNSET"` or `--sub=` would sign a token for
      // the subject "", which nobody asks for on purpose (`--claim sub=` still crafts one).
      if (value === undefined || value === "") {
        const hint = name === "scope" ? " (for a token without scopes: --claim scope=)" : "";
        throw new UsageError(`--${name} needs a value${hint}`);
      }
      if (name === "claim") options.claim.push(parseClaim(value));
      else if (name === "groups") options.groups = parseGroups(value);
      else options[name] = value;
    } else {
      throw new UsageError(`unknown option: ${arg}`);
    }
  }
  for (const name of ["ttl", "nbf"]) {
    if (options[name] !== undefined && !/^-?\d+$/.test(options[name])) {
      throw new UsageError(`--${name} must be a whole number of seconds, got "${options[name]}"`);
    }
  }
  if (options.access) {
    // Access assertions carry no tenant or scopes; silently dropping them would mislead.
    for (const name of ["tenant", "scope"]) {
      if (options[name] !== undefined) throw new UsageError(`--${name} does not apply to --access tokens`);
    }
  }
  return options;
}

/** `--groups A,B`: the names, trimmed; a list naming none (`,`) is as empty as `--groups=`. */
function parseGroups(text) {
  const groups = text
    .split(",")
    .map((group) => group.trim())
    .filter(Boolean);
  if (groups.length === 0) throw new UsageError(`--groups needs at least one group name, got "${text}"`);
  return groups;
}

/** `--claim key=value`: JSON when it parses (numbers, arrays, objects, true), else a string. */
function parseClaim(text) {
  const equals = text.indexOf("=");
  if (equals <= 0) throw new UsageError(`--claim needs KEY=VALUE, got "${text}"`);
  const raw = text.slice(equals + 1);
  try {
    return [text.slice(0, equals), JSON.parse(raw)];
  } catch {
    return [text.slice(0, equals), raw];
  }
}

export function buildClaims(options, now = Math.floor(Date.now() / 1000), defaults = policyDefaults()) {
  const ttl = Number(options.ttl ?? 900);
  const iss = options.iss ?? (options.access ? LOCAL_ACCESS_TEAM : LOCAL_IDP_URL);
  let claims;
  if (options.access) {
    // The claims Cloudflare Access puts in an application token.
    claims = {
      aud: [options.aud ?? defaults.accessAud ?? ACCESS_AUD],
      email: options.email ?? "user@example.com",
      exp: now + ttl,
      iat: now,
      nbf: now + Number(options.nbf ?? 0),
      iss,
      type: "app",
      identity_nonce: randomBytes(12).toString("base64url"),
      sub: options.sub ?? "user-123",
      country: "XX",
    };
  } else {
    // Under the names the policy reads them by.
    const names = { ...DEFAULT_CLAIMS, ...defaults.claims };
    claims = {
      iss,
      [names.subject]: options.sub ?? "user-123",
      [names.audience]: options.aud ?? defaults.aud ?? LOCAL_AUDIENCE,
      iat: now,
      exp: now + ttl,
      jti: randomUUID(),
      [names.tenant]: options.tenant ?? "acme",
      [names.scopes]: options.scope ?? "api:read",
    };
    if (options.nbf !== undefined) claims.nbf = now + Number(options.nbf);
    if (options.email !== undefined) claims[names.email] = options.email;
    if (options.groups) claims[names.groups] = options.groups;
  }
  if (options.access && options.groups) claims.groups = options.groups;
  // Defined, not assigned: `__proto__` is a claim like any other here, not the prototype.
  for (const [key, value] of options.claim)
    Object.defineProperty(claims, key, { value, enumerable: true, writable: true, configurable: true });
  return claims;
}

export async function mintToken(options) {
  const jwks = await loadPrivateJwks({
    onCreate: (file) => console.error(`token: generated development signing keys in ${file}`),
  });
  const { key, kid, alg } = await signingKey(options.access ? jwks.access : jwks.oidc);
  const defaults = policyDefaults();
  const claims = buildClaims(options, undefined, defaults);
  // CompactSign signs the claims exactly as built, so --claim can also craft odd tokens
  // (a string exp, a missing sub) to see how the edge refuses them.
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ alg, kid, typ: options.typ ?? (options.access ? undefined : defaults.typ) ?? "JWT" })
    .sign(key);
}

/**
 * Options written before `--` (`npm run token --ttl=-60`): npm takes them as its own settings
 * and hands the script their values only in its environment, as `npm_config_<name>`. `scope`
 * is an npm setting too, but npm's is a package scope (`@org`); npm's own `access` and `email`
 * cannot be told from ours, so those two go unnoticed.
 */
function optionsBeforeDashes(env) {
  return [...VALUE_OPTIONS, ...FLAG_OPTIONS].filter((name) => {
    const value = env[`npm_config_${name.replace(/-/g, "_")}`];
    if (name === "scope") return value !== undefined && !value.startsWith("@");
    return value !== undefined && name !== "access" && name !== "email";
  });
}

async function main(argv) {
  const misplaced = optionsBeforeDashes(process.env);
  if (misplaced.length > 0) {
    process.stderr.write(
      `token: --${misplaced.join(", --")} went to npm, not to this command: put options after \`--\` (npm run token -- --${misplaced[0]} …).\n`,
    );
    return 2;
  }
  let options;
  try {
    options = parseOptions(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`token: ${error.message}\nRun \`npm run token -- --help\` for usage.\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (options["print-issuer"]) {
    // Read from the claims the token would be signed with, so every option that sets the issuer
    // (--iss, --access, --claim iss=…, applied last) counts exactly as it does in the token. An
    // iss that --claim made something other than a string is printed as the token holds it.
    const { iss } = buildClaims(options);
    process.stdout.write(`${typeof iss === "string" ? iss : JSON.stringify(iss)}\n`);
    return 0;
  }
  try {
    process.stdout.write(`${await mintToken(options)}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`token: ${error.message}\n`);
    return 1;
  }
}

if (isMainModule(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
