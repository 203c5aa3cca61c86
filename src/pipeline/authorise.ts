// Stage: authorise the verified identity against the route's requirement.

import { authorisationFor } from "../core/authz";
import { deny } from "./respond";
import type { Stage } from "./stage";

export function authorise(): Stage {
  return {
    run(c) {
      const auth = c.get("route").auth;
      if (auth === "public") return undefined;
      const decision = authorisationFor(c.get("identity"), auth, c.get("routeParams"));
      if (decision.ok) return undefined;
      return deny(c, decision.reason, {
        detail: decision.detail,
        ...(decision.requiredScope !== undefined ? { requiredScope: decision.requiredScope } : {}),
      });
    },
  };
}
