// Route path literals and hosts must be written as a request spells them, or the route would
// guard nothing; the ones requests do spell compile and match.
import { describe, expect, it } from "vitest";
import { compilePolicy } from "../../src/core/policy";
import { compilePathPattern } from "../../src/core/routes";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { problemsOf } from "../support/policy-problems";

const minimal = () => ({
  version: 3,
  upstreams: { api: { url: "https://origin.example.com" } },
  issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
  routes: [{ name: "r", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "api" }],
});

describe("route literals and hosts as requests spell them", () => {
  // Literals requests do spell, and hosts as the URL parser writes them.
  it("reasonable literals and hosts compile; a raw non-ASCII literal matches its escaped request", async () => {
    for (const path of ["/~user/**", "/a@b/**", "/data:purge", "/a+b/k=v/x,y", "/.well-known/**", "/v1.2/**"]) {
      const p = minimal();
      p.routes[0]!.path = path;
      expect({ path, problems: problemsOf(p) }).toEqual({ path, problems: [] });
    }
    for (const host of [
      "xn--caf-dma.example",
      "api.example.com.",
      "API.Example.com",
      "localhost",
      "10.0.0.1",
      "a-b.c",
    ]) {
      const p: any = minimal();
      p.routes[0].host = host;
      expect({ host, problems: problemsOf(p) }).toEqual({ host, problems: [] });
    }
    const edge = harness(
      basePolicy({ routes: [{ name: "cafe", methods: ["GET"], path: "/café/**", auth: "public", upstream: "echo" }] }),
    );
    expect((await edge.fetch("/caf%C3%A9/x")).status).toBe(200);
  });

  // Raw non-ASCII a request would carry escaped, and then be refused with: never matched.
  it.each(["/ａdmin/**", "/（最終）/**"])("refuses the unmatchable literal %s", async (path) => {
    const p = minimal();
    p.routes[0]!.path = path;
    expect(problemsOf(p).join("\n")).toMatch(/not a canonical literal/);
  });

  // A request spelt so is asked whether its NFKC reading is the literal: written in NFKC form.
  it("refuses a literal in decomposed form, naming the NFKC spelling to write", async () => {
    const p = minimal();
    p.routes[0]!.path = "/cafe\u0301/**";
    expect(problemsOf(p)).toEqual([
      'routes[0].path: segment "cafe\u0301" is not in Unicode NFKC form: write it as "caf\u00e9"',
    ]);
  });

  it("a literal mixing a raw U+01C3 and %80 is a policy problem, not a URIError", () => {
    const p = minimal();
    p.routes[0]!.path = "/\u01C3%80/**";
    let thrown: unknown;
    try {
      compilePolicy(p);
    } catch (error) {
      thrown = error;
    }
    expect((thrown as Error)?.name).toBe("PolicyError");
  });
});

describe("literals with characters the URL parser escapes or leaves as they are", () => {
  const withPath = (path: string) => ({ ...minimal(), routes: [{ ...minimal().routes[0]!, path }] });

  const punct = [
    "'",
    "!",
    "$",
    "&",
    "(",
    ")",
    "[",
    "]",
    "|",
    "^",
    "`",
    "{",
    "}",
    '"',
    "<",
    ">",
    "@",
    "=",
    "+",
    ",",
    "~",
  ];

  // Each compiles and matches a request however it spells the character, raw or escaped.
  it("punctuation literals compile and match raw and escaped requests", async () => {
    for (const ch of punct) {
      const literal = `a${ch}b`;
      expect({ literal, problems: problemsOf(withPath(`/${literal}/**`)) }).toEqual({ literal, problems: [] });
    }
    const edge = harness(
      basePolicy({
        routes: punct.map((ch, i) => ({
          name: `p${i}`,
          methods: ["GET"],
          path: `/p${i}/a${ch}b`,
          auth: "public",
          upstream: "echo",
        })),
      }),
    );
    for (const [i, ch] of punct.entries()) {
      const escaped = `%${ch.charCodeAt(0).toString(16).toUpperCase()}`;
      const raw = await edge.fetch(new Request(`https://edge.test/p${i}/a${ch}b`));
      const esc = await edge.fetch(new Request(`https://edge.test/p${i}/a${escaped}b`));
      expect({ ch, raw: raw.status, esc: esc.status }).toEqual({ ch, raw: 200, esc: 200 });
    }
  });

  // None throws; each one no request can carry is refused.
  it("no literal throws; unmatchable ones are refused", () => {
    for (const literal of [
      "a\\b",
      "a\tb",
      "\ud800",
      "..",
      ".",
      "a\u0000",
      "a\u007f",
      "a\u00a0b",
      "x::$DATA",
      "\u2215",
      "a;b",
    ]) {
      let result: unknown;
      expect(() => {
        result = compilePathPattern(`/${literal}`);
      }).not.toThrow();
      expect({ literal, result: typeof result }).toEqual({ literal, result: "string" });
    }
  });
});

describe("letter case", () => {
  // Express (by default), ASP.NET Core and IIS route `/api/ADMIN/x` as `/api/admin/x`: the
  // request must not reach the origin through the broader route the edge matched.
  it("a path an earlier route takes but for letter case is refused and never forwarded; the route's own spelling is routed", async () => {
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
        routes: [
          { name: "admin", methods: ["GET"], path: "/api/admin/**", auth: { issuers: ["idp"] }, upstream: "echo" },
          { name: "public", methods: ["GET"], path: "/api/**", auth: "public", upstream: "echo" },
        ],
      }),
    );
    const m = marker();
    const shouted = await edge.fetch("/api/ADMIN/users", { headers: { "x-test-marker": m } });
    expect(shouted.status).toBe(400);
    expect(((await shouted.json()) as { reason: string }).reason).toBe("bad_request");
    expect(edge.audit.at(-1)).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_case" });
    expect(await originSaw(m)).toHaveLength(0);

    expect((await edge.fetch("/api/admin/users")).status).toBe(401);
    expect((await edge.fetch("/api/Reports/Q1")).status).toBe(200);
  });
});
