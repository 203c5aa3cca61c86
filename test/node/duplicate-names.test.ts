// The duplicate-name scanner (src/core/duplicate-names.ts) against JSON that a scanner reading
// characters could misread: escapes that spell the same name, strings holding quotes, braces
// and commas, names reused at other levels, and nesting deeper than any recursion could follow.
// Every text here is JSON that JSON.parse accepts, as the scanner requires.
import { describe, expect, it } from "vitest";
import { duplicateNames } from "../../src/core/duplicate-names";

/** The scanner's findings on `text`, after checking it is JSON at all. */
function scan(text: string): string[] {
  JSON.parse(text);
  return duplicateNames(text, "policy");
}

describe("duplicate member names", () => {
  it("finds a name written twice in one object, and counts more", () => {
    expect(scan('{"a": 1, "a": 2}')).toEqual(['policy: "a" appears twice']);
    expect(scan('{"a":1,"b":2,"a":3,"a":4}')).toEqual(['policy: "a" appears 3 times']);
    expect(scan('{"b":1,"a":2,"b":3,"a":4}')).toEqual(['policy: "b" appears twice', 'policy: "a" appears twice']);
    // JSON.parse gives `__proto__` no special meaning either: it is a name like any other.
    expect(scan('{"__proto__":{},"__proto__":{}}')).toEqual(['policy: "__proto__" appears twice']);
    expect(scan('{"":1,"":2}')).toEqual(['policy: "" appears twice']);
  });

  it("accepts names that differ, however little, and values that repeat", () => {
    expect(scan('{"a":1,"A":2,"a ":3," a":4}')).toEqual([]);
    expect(scan('{"a":"a","b":"a","c":["a","a"]}')).toEqual([]);
    expect(scan("{}")).toEqual([]);
    expect(scan('"a"')).toEqual([]);
    expect(scan('[{"a":1},{"a":2}]')).toEqual([]);
  });

  describe("escapes: a name is what JSON.parse reads, not how it is written", () => {
    it("an escaped letter is the same name as the letter", () => {
      const text = '{"auth":{"issuers":["demo"]},"\\u0061uth":"public"}';
      expect(Object.keys(JSON.parse(text))).toEqual(["auth"]);
      expect(scan(text)).toEqual(['policy: "auth" appears twice']);
      expect(scan('{"\\u0061":1,"\\u0041":2,"\\u0061":3}')).toEqual(['policy: "a" appears twice']);
      expect(scan('{"a/b":1,"a\\/b":2}')).toEqual(['policy: "a/b" appears twice']);
      expect(scan('{"\\"":1,"\\u0022":2}')).toEqual(['policy: "\\"" appears twice']);
      expect(scan('{"\\n":1,"\\u000a":2,"\\u000A":3}')).toEqual(['policy: "\\n" appears 3 times']);
      expect(scan('{"\\ud83d\\ude00":1,"😀":2}')).toEqual(['policy: "😀" appears twice']);
    });

    it("an escaped backslash is not an escape of what follows it", () => {
      // `\\u0061` is a backslash, then "u0061": not "a".
      expect(scan('{"\\\\u0061":1,"a":2}')).toEqual([]);
      expect(scan('{"a\\\\":1,"a\\\\":2}')).toEqual(['policy: "a\\\\" appears twice']);
      // A value ending in a backslash: the quote after `\\` ends it, so the names after it are
      // names (read past it, they would be swallowed into a string running on).
      expect(scan('{"path":"C:\\\\","a":1,"a":2}')).toEqual(['policy: "a" appears twice']);
    });
  });

  describe("strings are data: nothing inside one opens, closes or separates anything", () => {
    it("a string that reads like a duplicate is accepted", () => {
      expect(scan('{"note":"{\\"auth\\": \\"public\\", \\"auth\\": \\"public\\"}"}')).toEqual([]);
      // An escaped quote does not end the string: the `"auth"` after it is still inside it.
      expect(scan('{"auth":1,"note":"x\\", \\"auth\\": \\"y"}')).toEqual([]);
      expect(scan('{"note":"\\"auth\\":","auth":1}')).toEqual([]);
    });

    it("braces, brackets and commas inside strings do not move the scanner", () => {
      // A `}` in a string does not close the object: the duplicate after it is the object's.
      expect(scan('{"s":"}","a":1,"a":2}')).toEqual(['policy: "a" appears twice']);
      // Nor does one after an escaped quote: the string runs on to the quote that ends it.
      expect(scan('{"s":"\\"}","a":1,"a":2}')).toEqual(['policy: "a" appears twice']);
      expect(scan('{"s":"{","a":1,"t":"]","b":{"c":1},"c":2}')).toEqual([]);
      // Commas in strings do not advance an array's index.
      expect(scan('{"routes":[{"note":"a,b,c","x":"[,]"},{"k":1,"k":2}]}')).toEqual(['routes[1]: "k" appears twice']);
      // A `,` in a string is not a separator: "auth" there is a value, not a name.
      expect(scan('{"a":",","auth":1}')).toEqual([]);
      expect(scan('{"a":"x","b":",\\"auth\\":1","auth":2}')).toEqual([]);
    });

    it("a name holding quotes, braces and dots is one name", () => {
      expect(scan('{"{\\"a\\":1}":1,"{\\"a\\":1}":2}')).toEqual(['policy: "{\\"a\\":1}" appears twice']);
      expect(scan('{"issuers":{"a.b":{"kind":1,"kind":2}}}')).toEqual(['issuers["a.b"]: "kind" appears twice']);
    });
  });

  describe("nesting", () => {
    it("names each object by its path, as the policy validator does", () => {
      const text = JSON.stringify({
        version: 1,
        issuers: { demo: { kind: "oidc", claims: { tenant: "t", DUP_tenant: "u" } } },
        routes: [{ name: "a" }, { name: "b", auth: { issuers: ["demo"] }, DUP_auth: "public" }],
      }).replaceAll('"DUP_', '"');
      expect(scan(text)).toEqual(['issuers.demo.claims: "tenant" appears twice', 'routes[1]: "auth" appears twice']);
      expect(scan('[{"a":1},[{"b":1,"b":2}]]')).toEqual(['policy[1][0]: "b" appears twice']);
    });

    it("keeps each object's names apart: the same name at another level or in a sibling is no duplicate", () => {
      expect(scan('{"a":{"a":{"a":1}}}')).toEqual([]);
      expect(scan('{"routes":[{"auth":1},{"auth":2}],"auth":3}')).toEqual([]);
      // A name seen in an inner object that has closed is no name of the outer one.
      expect(scan('{"x":{"b":1},"b":2}')).toEqual([]);
      // ...and the outer object's names still count after an inner one closes.
      expect(scan('{"a":1,"x":{"y":[{"a":1}]},"a":2}')).toEqual(['policy: "a" appears twice']);
    });

    it("lists problems in the order their objects open", () => {
      expect(scan('{"x":{"b":1,"b":2},"a":1,"a":2,"y":{"c":1,"c":2}}')).toEqual([
        'policy: "a" appears twice',
        'x: "b" appears twice',
        'y: "c" appears twice',
      ]);
    });

    it("follows nesting deeper than a recursive scanner's stack", () => {
      const depth = 200_000;
      const deep = `${'{"a":'.repeat(depth)}{"b":1,"b":2}${"}".repeat(depth)}`;
      const [problem] = scan(deep);
      expect(problem).toBe(`${Array(depth).fill("a").join(".")}: "b" appears twice`);
      expect(scan(`${"[".repeat(depth)}${"]".repeat(depth)}`)).toEqual([]);
    });
  });

  it("numbers, literals and white space between tokens are skipped", () => {
    expect(scan(' {\n\t"a" :\r\n -1.5e+3 , "b":true,"c":null,"d":false, "a" : 0 }\n')).toEqual([
      'policy: "a" appears twice',
    ]);
  });
});
