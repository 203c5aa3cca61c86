// Stage: write the verified identity into the headers the origin receives. The hygiene
// stage already removed every client-supplied header in these names, so whatever the
// origin sees under them came from a verified token.

import type { Stage } from "./stage";

export function injectIdentity(): Stage {
  return {
    run(c) {
      const identity = c.get("identity");
      if (!identity) return undefined;
      const names = c.get("policy").identityHeaders;
      const headers = c.get("forwardHeaders");
      headers.set(names.subject, identity.subject);
      headers.set(names.issuer, identity.issuer);
      if (identity.tenant !== undefined) headers.set(names.tenant, identity.tenant);
      headers.set(names.scopes, identity.scopes.join(" "));
      if (identity.groups.length > 0) headers.set(names.groups, identity.groups.join(","));
      if (identity.email !== undefined) headers.set(names.email, identity.email);
      return undefined;
    },
  };
}
