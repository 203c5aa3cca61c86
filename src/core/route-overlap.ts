// Routes that can never match, for some method: an earlier route takes every such request
// first (routes match in policy order). `/v1/**` made public before `/v1/admin/**` made
// authenticated sends every admin request through the public route, and nothing at run time
// says so. Checked with the policy lint (src/core/policy-lint.ts) when the deployable policy is
// compiled, not by the Worker: the analysis has no place on the request path or in the deployable bundle.

import { foldCase } from "./case-fold";
import type { CompiledPolicy, CompiledRoute } from "./policy";
import { HTTP_METHODS } from "./policy-types";
import { coversHost, type PathPart, takesMethod } from "./routes";

/** The methods a route answers, as routing takes them: its own as declared, then HEAD where it allows GET. */
function answeredMethods(route: CompiledRoute): Set<string> {
  return new Set([...route.methods, ...HTTP_METHODS.filter((method) => takesMethod(route.methods, method))]);
}

/**
 * Whether `earlier` matches every list of segments `later` matches (see matchPath); with
 * `anyCase`, as the route stage matches to find a path another route would take but for
 * letter case.
 */
function coversPath(earlier: readonly PathPart[], later: readonly PathPart[], anyCase = false): boolean {
  for (let i = 0; ; i++) {
    const mine = earlier[i];
    const theirs = later[i];
    if (mine?.kind === "rest") return true;
    if (!mine || !theirs) return !mine && !theirs;
    // Zero or more segments of any kind: only `**` takes them all.
    if (theirs.kind === "rest") return false;
    if (mine.kind === "literal") {
      if (theirs.kind !== "literal") return false;
      if (anyCase ? foldCase(theirs.value) !== foldCase(mine.value) : theirs.value !== mine.value) return false;
    } else if (theirs.kind === "literal" && theirs.value === "") {
      // A capture or `*` needs a non-empty segment.
      return false;
    }
  }
}

/**
 * One problem per route and method that an earlier route shadows, as
 * `routes[3] (admin): GET never reaches it: routes[1] (public) takes every such request first`;
 * or takes but for letter case (`/Admin/**` before `/admin/**`): every such request is then
 * refused as ambiguous_case, and the earlier route serves the other spelling.
 */
export function shadowedRoutes(policy: CompiledPolicy): string[] {
  const problems: string[] = [];
  policy.routes.forEach((later, j) => {
    const open = answeredMethods(later);
    for (const earlier of policy.routes.slice(0, j)) {
      if (!coversHost(earlier.host, later.host)) continue;
      const exactly = coversPath(earlier.pattern.parts, later.pattern.parts);
      if (!exactly && !coversPath(earlier.pattern.parts, later.pattern.parts, true)) continue;
      const taken = [...answeredMethods(earlier)].filter((method) => open.delete(method));
      // HEAD alone follows from GET: say it with GET, not on its own.
      const named = taken.filter((method) => method !== "HEAD" || !taken.includes("GET"));
      if (named.length > 0) {
        const how = exactly
          ? "takes every such request first"
          : "takes every such request but for letter case, so each is refused as ambiguous_case";
        problems.push(
          `routes[${j}] (${later.name}): ${named.join(", ")} never reaches it: routes[${earlier.index}] (${earlier.name}) ${how}`,
        );
      }
    }
  });
  return problems;
}
