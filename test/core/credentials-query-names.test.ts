// Query parameter names that PHP reads as `access_token` although they are not spelt so:
// its parser takes a decoded name up to the first NUL (strlen), and an array name up to the
// first `]`, ignoring whatever follows.
import { describe, expect, it } from "vitest";
import { hasQueryCredential, withoutQueryCredentials } from "../../src/core/tokens/credentials";

describe("query credentials as PHP reads their names", () => {
  it.each([
    ["a NUL after the name", "?access_token%00=abc.def.ghi"],
    ["a NUL and more after the name", "?access_token%00junk=abc.def.ghi"],
    ["an array name with characters after the ]", "?access_token[0]x=abc.def.ghi"],
    ["an array name cut at a NUL", "?access_token[]%00x=abc.def.ghi"],
    // PHP decodes each escape on its own: one it cannot decode does not hide the others.
    ["a NUL, then a lone %", "?access_token%00%=abc.def.ghi"],
    ["a NUL, then a cut UTF-8 sequence", "?access_token%00%C3=abc.def.ghi"],
    ["an escaped array name, then a lone %", "?access_token%5B%5D%=abc.def.ghi"],
    ["IIS's %u escape, which .NET decodes", "?access%u005Ftoken=abc.def.ghi"],
    // Case folding an origin may do on the decoded name: the Kelvin sign lower-cases to `k`
    // (JavaScript, Python), `ſ` upper-cases to `S` (Java's equalsIgnoreCase).
    ["the Kelvin sign for k", "?access_to%E2%84%AAen=abc.def.ghi"],
    ["a long s for s", "?acce%C5%BFs_token=abc.def.ghi"],
    // Generous on purpose (README): no parser reads these as access_token, yet they count.
    ["ß, which upper-cases to SS", "?acce%C3%9F_token=abc.def.ghi"],
    ["an escaped %u escape", "?%25u0061ccess_token=abc.def.ghi"],
  ])("%s is a query credential, and is removed", (_label, search) => {
    expect(hasQueryCredential(search)).toBe(true);
    expect(withoutQueryCredentials(`${search}&k=v`)).toBe("?k=v");
  });

  it.each([
    ["a NUL inside the name", "?access%00_token=x"],
    ["a longer name", "?access_token_hint=x"],
    ["a prefix", "?my_access_token=x"],
  ])("%s is not", (_label, search) => {
    expect(hasQueryCredential(search)).toBe(false);
    expect(withoutQueryCredentials(search)).toBe(search);
  });
});
