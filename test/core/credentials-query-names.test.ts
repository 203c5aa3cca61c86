// Query parameter names that PHP reads as `access_token` although they are not spelt so:
// its parser takes a decoded name up to the first NUL (strlen), and an array name up to the
// first `]`, ignoring whatever follows.
import { describe, expect, it } from "vitest";
import { hasQueryCredential, originQuery } from "../../src/core/tokens/credentials";

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
    expect(originQuery(`${search}&k=v`)).toBe("?k=v");
  });

  it.each([
    ["a NUL inside the name", "?access%00_token=x"],
    ["a longer name", "?access_token_hint=x"],
    ["a prefix", "?my_access_token=x"],
  ])("%s is not", (_label, search) => {
    expect(hasQueryCredential(search)).toBe(false);
    expect(originQuery(search)).toBe(search);
  });
});

describe("a _method override in the query, in every spelling a framework reads", () => {
  // Laravel and Symfony read `_method` from the query of a POST (PHP: `.`, space and `[` as
  // `_`), Spring's HiddenHttpMethodFilter and Gorilla's handler too (request parameters).
  it.each([
    ["as written", "?_method=DELETE"],
    ["escaped", "?%5Fmethod=DELETE"],
    ["with a dot for the underscore (PHP)", "?.method=DELETE"],
    ["upper case", "?_METHOD=PUT"],
    ["as an array (PHP)", "?_method[]=DELETE"],
    ["cut at a NUL (PHP)", "?_method%00x=DELETE"],
    ["without a value", "?_method"],
    ["after a ; separator", "?k=1;_method=DELETE"],
  ])("%s is taken out", (_label, search) => {
    expect(originQuery(`${search}&k=v`)).toBe(search.startsWith("?k=1;") ? "?k=1&k=v" : "?k=v");
    // It is no credential: an authenticated request carrying one is not refused for it.
    expect(hasQueryCredential(search)).toBe(false);
  });

  // A leading space is dropped (PHP), not read as `_`: `+method` is `method`.
  it.each([["?method=DELETE"], ["?+method=DELETE"], ["?_method_hint=x"], ["?x_method=DELETE"], ["?k=_method"]])(
    "%s is kept",
    (search) => {
      expect(originQuery(search)).toBe(search);
    },
  );
});
