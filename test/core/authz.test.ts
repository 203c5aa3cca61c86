// Route authorisation on a verified identity: what an insufficient_scope refusal names as needed.
import { describe, expect, it } from "vitest";
import { authorisationFor } from "../../src/core/authz";
import type { Identity } from "../../src/core/identity";
import type { AuthRequirement } from "../../src/core/policy-types";

const identity = (scopes: string[]): Identity => ({
  issuerId: "idp",
  issuer: "https://idp.example.com",
  kind: "oidc",
  subject: "u1",
  tenant: "acme",
  scopes,
  groups: [],
  claims: {},
  tokenHash: async () => "0000000000000000",
});

const requirement = (scopes: AuthRequirement["scopes"]): AuthRequirement => ({ issuers: ["idp"], scopes });

describe("insufficient_scope names what the route needs (RFC 6750 §3)", () => {
  it.each([
    ["all_of missing", { all_of: ["read", "write"] }, ["read"], "read write"],
    ["any_of missing: its first option", { any_of: ["eu", "us"] }, [], "eu"],
    ["both missing: all_of and any_of's first option", { all_of: ["read"], any_of: ["eu", "us"] }, [], "read eu"],
    // any_of met: only all_of is named, the held one included (the route needs it all).
    ["any_of met, all_of missing", { all_of: ["read", "write"], any_of: ["eu", "us"] }, ["us", "read"], "read write"],
  ] as [string, AuthRequirement["scopes"], string[], string][])("%s", (_label, scopes, held, needed) => {
    expect(authorisationFor(identity(held), requirement(scopes), {})).toEqual({
      ok: false,
      reason: "insufficient_scope",
      detail: "scope",
      requiredScope: needed,
    });
  });

  it("admits when all_of is held and one any_of option is", () => {
    expect(
      authorisationFor(identity(["read", "us"]), requirement({ all_of: ["read"], any_of: ["eu", "us"] }), {}),
    ).toEqual({
      ok: true,
    });
  });
});
