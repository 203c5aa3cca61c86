// A route's authentication and authorisation requirement, validated: issuers, audiences,
// scopes, groups and claim conditions.

import type { ResolvedIssuer } from "./policy";
import { type Checker, isNegativeZero, NEGATIVE_ZERO } from "./policy-checker";
import type { AuthRequirement } from "./policy-types";
import { isGroupName, isScopeName } from "./tokens/claims";

/** Why a claim condition may not hold an integer beyond 2^53. */
const UNSAFE_INTEGER =
  "holds an integer beyond ±9007199254740991, which JSON cannot carry exactly (other ids would match it): compare ids that large as strings, sent as strings by the issuer";

/**
 * An integer past 2^53 is not exact: JSON reads it as the nearest double, which the claims of
 * other ids round to as well (1234567890123456788 equals …789).
 */
function unsafe(value: unknown): boolean {
  return Number.isInteger(value) && !Number.isSafeInteger(value);
}

/**
 * A value a claim condition compares with. Not a number JSON reads as Infinity (`1e400`), which
 * could not be written back, nor an inexact integer, nor -0, which JSON writes back as 0.
 */
function scalar(value: unknown): boolean {
  return (
    typeof value === "string" ||
    typeof value === "boolean" ||
    (Number.isFinite(value) && !unsafe(value) && !isNegativeZero(value))
  );
}

function checkScopeTokens(check: Checker, scopes: readonly string[], path: string): void {
  for (const scope of scopes) {
    // Also what a challenge can quote. One no token can carry would refuse every request.
    if (!isScopeName(scope))
      check.fail(path, `"${scope}" is not a scope (printable ASCII, no spaces, ",", '"' or "\\")`);
  }
}

export function checkAuth(
  check: Checker,
  raw: unknown,
  path: string,
  issuers: ReadonlyMap<string, ResolvedIssuer>,
): "public" | AuthRequirement | undefined {
  if (raw === "public") return "public";
  if (raw === undefined) {
    check.fail(path, 'is required: the issuers this route accepts, or "public"');
    return undefined;
  }
  if (typeof raw === "string") {
    check.fail(path, 'must be "public", exactly so, or an object naming the issuers this route accepts');
    return undefined;
  }
  if (!check.object(raw, path)) return undefined;
  check.known(raw, path, ["issuers", "audiences", "scopes", "groups", "claims", "resource_metadata"]);
  if (!check.stringArray(raw.issuers, `${path}.issuers`, { nonEmpty: true })) return undefined;
  for (const id of raw.issuers) {
    const issuer = issuers.get(id);
    if (!issuer) {
      check.fail(`${path}.issuers`, `"${id}" is not defined in issuers`);
    } else if (issuer.kind === "cloudflare_access" && raw.audiences === undefined) {
      check.fail(`${path}.audiences`, `is required with Access issuer "${id}" (its AUD tag)`);
    }
  }
  if (raw.audiences !== undefined) check.stringArray(raw.audiences, `${path}.audiences`, { nonEmpty: true });
  const metadata = raw.resource_metadata;
  // Quoted into every challenge as written: as a URL parser writes it, it holds no `"` or `\`
  // (nor a character a header cannot carry), which would turn each 401 into a 500.
  if (metadata !== undefined && check.url(metadata, `${path}.resource_metadata`) && new URL(metadata).href !== metadata)
    check.fail(`${path}.resource_metadata`, `is read as "${new URL(metadata).href}" by a URL parser: write it so`);
  if (raw.scopes !== undefined && check.object(raw.scopes, `${path}.scopes`)) {
    check.known(raw.scopes, `${path}.scopes`, ["all_of", "any_of"]);
    // An empty all_of, or none at all, would require nothing: a list emptied or deleted by
    // mistake must not open the route.
    if (raw.scopes.all_of === undefined && raw.scopes.any_of === undefined)
      check.fail(`${path}.scopes`, "needs all_of or any_of (or leave scopes out)");
    for (const list of ["all_of", "any_of"]) {
      const scopes = raw.scopes[list];
      const at = `${path}.scopes.${list}`;
      if (scopes !== undefined && check.stringArray(scopes, at, { nonEmpty: true }))
        checkScopeTokens(check, scopes, at);
    }
  }
  if (raw.groups !== undefined && check.object(raw.groups, `${path}.groups`)) {
    check.known(raw.groups, `${path}.groups`, ["any_of"]);
    const at = `${path}.groups.any_of`;
    if (check.stringArray(raw.groups.any_of, at, { nonEmpty: true })) {
      // A name no token may carry (every token with it is refused) would make the route unusable.
      for (const group of raw.groups.any_of) {
        if (!isGroupName(group))
          check.fail(
            at,
            `"${group}" is not a group name a token may carry (printable ASCII, no "," " or \\, no leading or trailing space)`,
          );
      }
    }
  }
  if (raw.claims !== undefined) {
    if (!Array.isArray(raw.claims) || raw.claims.length === 0) {
      check.fail(`${path}.claims`, "must be a non-empty array of conditions");
    } else {
      raw.claims.forEach((condition: unknown, i: number) => {
        const at = `${path}.claims[${i}]`;
        if (!check.object(condition, at)) return;
        check.known(condition, at, ["claim", "equals", "one_of"]);
        if (check.string(condition.claim, `${at}.claim`)) {
          // As a string (`scope`, Entra's `scp`) a space-separated list, compared whole:
          // `equals: "admin"` would refuse `read admin`. `scopes` reads it as a list either way.
          const scopesOf = (raw.issuers as string[]).find((id) => {
            const claims = issuers.get(id)?.claims;
            return claims && (condition.claim === claims.scopes || condition.claim === claims.scopesFallback);
          });
          if (scopesOf)
            check.fail(
              `${at}.claim`,
              `"${condition.claim}" holds issuer "${scopesOf}"'s scopes, which a condition compares whole when they are one string: write scopes.all_of or scopes.any_of, which read a string or an array alike`,
            );
        }
        if ((condition.equals === undefined) === (condition.one_of === undefined)) {
          check.fail(at, "needs exactly one of equals, one_of");
        } else if (condition.equals !== undefined && !scalar(condition.equals)) {
          check.fail(
            `${at}.equals`,
            unsafe(condition.equals)
              ? UNSAFE_INTEGER
              : isNegativeZero(condition.equals)
                ? `is ${NEGATIVE_ZERO}`
                : "must be a string, number or boolean",
          );
        } else if (
          condition.one_of !== undefined &&
          (!Array.isArray(condition.one_of) || condition.one_of.length === 0 || !condition.one_of.every(scalar))
        ) {
          const holds = (test: (v: unknown) => boolean) =>
            Array.isArray(condition.one_of) && condition.one_of.some(test);
          check.fail(
            `${at}.one_of`,
            holds(unsafe)
              ? UNSAFE_INTEGER
              : holds(isNegativeZero)
                ? `holds ${NEGATIVE_ZERO}`
                : "must be a non-empty array of strings, numbers or booleans",
          );
        }
      });
    }
  }
  return raw as unknown as AuthRequirement;
}
