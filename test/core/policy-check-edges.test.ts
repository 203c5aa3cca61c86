// Checks of the policy compiler and its lint at their edges: each test here fails if the
// check it names is dropped or its boundary moved, and says which field the refusal must
// name. A policy the compiler lets through runs as written, so a check lost here would let a
// dangerous policy deploy silently.
import { describe, expect, it } from "vitest";
import { compilePolicy } from "../../src/core/policy";
import { policyProblems } from "../../src/core/policy-lint";
import { compileStepProblems } from "../support/policy-compile-step";
import { problemsOf } from "../support/policy-problems";

const minimal = (): any => ({
  version: 1,
  upstreams: { api: { url: "https://origin.example.com" } },
  issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
  routes: [{ name: "r", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "api" }],
});

describe("upstreams", () => {
  it("one naming both a url and a service is refused: which of them requests go to is the author's to say", () => {
    const doc = minimal();
    doc.upstreams.api = { url: "https://origin.example.com", service: "ECHO_SERVICE" };
    expect(problemsOf(doc)).toEqual([
      "upstreams.api: give either url or service, not both",
      // The upstream is not compiled at all, so the route naming it cannot compile either.
      'routes[0].upstream: "api" is not defined in upstreams',
    ]);
  });
});

describe("routes", () => {
  it("a name of 64 characters is taken, one of 65 refused (its audit rule must keep its version)", () => {
    const named = (name: string) => {
      const doc = minimal();
      doc.routes[0].name = name;
      return doc;
    };
    expect(compilePolicy(named("r".repeat(64))).routes[0]?.matchedRule).toBe(`policy:${"r".repeat(64)}@v1`);
    expect(problemsOf(named("r".repeat(65)))).toEqual([
      "routes[0].name: at most 64 characters: letters, digits, '.', '_' and '-'",
    ]);
  });
});

describe("claim conditions", () => {
  // The authoriser reads `equals` when it is there and ignores `one_of`: a condition with both
  // would silently require only one of the values its author listed.
  it.each([
    ["both equals and one_of", { claim: "tier", equals: "gold", one_of: ["gold", "silver"] }],
    ["neither equals nor one_of", { claim: "tier" }],
  ])("one with %s is refused, naming the condition", (_, condition) => {
    const doc = minimal();
    doc.routes[0].auth.claims = [condition];
    expect(problemsOf(doc)).toEqual(["routes[0].auth.claims[0]: needs exactly one of equals, one_of"]);
  });
});

describe("strings and lists the policy names things with", () => {
  // An empty name is no name: read as a claim or a token type, it would match
  // nothing, or, where the edge skips a check it reads as unset, silently drop the check.
  it.each([
    ["an issuer's claim mapping", (p: any) => (p.issuers.idp.claims = { tenant: "" }), "issuers.idp.claims.tenant"],
    ["an issuer's typ", (p: any) => (p.issuers.idp.typ = ""), "issuers.idp.typ"],
    [
      "a claim condition's claim",
      (p: any) => (p.routes[0].auth.claims = [{ claim: "", equals: "x" }]),
      "routes[0].auth.claims[0].claim",
    ],
  ])("an empty string as %s is refused, naming it", (_, mutate, field) => {
    const doc = minimal();
    mutate(doc);
    expect(problemsOf(doc)).toEqual([`${field}: must be a non-empty string`]);
  });

  // A token whose aud is "" (or a route naming an issuer "") must not be what a list admits.
  it.each([
    ["an issuer's audiences", (p: any) => (p.issuers.idp.audiences = ["api", ""]), "issuers.idp.audiences"],
    ["a route's audiences", (p: any) => (p.routes[0].auth.audiences = [""]), "routes[0].auth.audiences"],
    ["a route's methods", (p: any) => (p.routes[0].methods = ["GET", ""]), "routes[0].methods"],
  ])("an empty string among %s is refused, naming the list", (_, mutate, field) => {
    const doc = minimal();
    mutate(doc);
    expect(problemsOf(doc)).toEqual([`${field}: must be an array of non-empty strings`]);
  });

  it("a URL with a password but no user name is refused: a policy is reviewed and bundled in plain text", () => {
    const doc = minimal();
    doc.issuers.idp.jwks_uri = "https://:S3cr3t-pw@idp.example.com/keys";
    expect(problemsOf(doc)).toEqual(["issuers.idp.jwks_uri: must not carry a user name or password"]);
  });

  // Field names are compared exactly: one written in another case is not read, so
  // `"Inherit_Default_Limits": false` would leave the defaults on without a word.
  it.each([
    ["a route's", (p: any) => (p.routes[0].Inherit_Default_Limits = false), "routes[0].Inherit_Default_Limits"],
    ["the settings'", (p: any) => (p.settings = { Server_Timing: false }), "settings.Server_Timing"],
  ])("%s field written in another case is unknown", (_, mutate, field) => {
    const doc = minimal();
    mutate(doc);
    expect(problemsOf(doc)).toEqual([`${field}: unknown field`]);
  });
});

describe("cors", () => {
  const withCors = (cors: unknown) => {
    const doc = minimal();
    doc.routes[0].cors = cors;
    return problemsOf(doc);
  };

  // A page's Origin is http or https: a WebSocket or FTP origin never matches one.
  it.each(["wss://app.example.com", "ws://app.example.com", "ftp://app.example.com"])(
    "an origin %s is refused as no page's origin",
    (origin) => {
      expect(withCors({ allow_origins: [origin] })).toEqual([
        `routes[0].cors.allow_origins: "${origin}" must be "*" or an origin such as https://app.example.com`,
      ]);
    },
  );

  // "true" in quotes is no boolean: the check that credentials never go with "*" reads only true.
  it('allow_credentials as the string "true" is refused, even beside "*"', () => {
    expect(withCors({ allow_origins: ["*"], allow_credentials: "true" })).toEqual([
      "routes[0].cors.allow_credentials: must be a boolean",
    ]);
  });
});

describe("issuers", () => {
  // A space is no printable character in a header, though the URL parser would encode it: the
  // refusal must say what is wrong with the issuer as written, not that a parser reads it otherwise.
  it("an issuer with a space is refused as not printable ASCII", () => {
    const doc = minimal();
    doc.issuers.idp.issuer = "https://idp.example.com/my tenant";
    expect(problemsOf(doc)).toEqual([
      "issuers.idp.issuer: must be printable ASCII: percent-encode other characters, as its tokens' iss does",
    ]);
  });

  // Scopes mapped to another claim are read from that claim alone: `scp` would otherwise still
  // grant scopes to a token of an issuer whose author said its scopes are elsewhere.
  it("a scopes claim given drops the scp fallback, which a claim condition may then name", () => {
    const doc = minimal();
    doc.issuers.idp.claims = { scopes: "permissions" };
    expect(compilePolicy(doc).issuers.get("idp")?.claims).toEqual({
      subject: "sub",
      tenant: "tenant_id",
      scopes: "permissions",
      groups: "groups",
      email: "email",
      audience: "aud",
    });
    doc.routes[0].auth.claims = [{ claim: "scp", equals: "read" }];
    expect(problemsOf(doc)).toEqual([]);
    doc.routes[0].auth.claims = [{ claim: "permissions", equals: "read" }];
    expect(problemsOf(doc)).toEqual([
      `routes[0].auth.claims[0].claim: "permissions" holds issuer "idp"'s scopes, which a condition compares whole when they are one string: write scopes.all_of or scopes.any_of, which read a string or an array alike`,
    ]);
  });
});

describe("limits", () => {
  // Only "allow" fails open: a value mistyped would fail closed without a word, or, read as
  // truthy by a later change, open.
  it.each(["Allow", "open", true])("on_error %j is refused, naming it", (onError) => {
    const doc = minimal();
    doc.routes[0].limits = [{ name: "per-user", key: "user", limit: 10, window_s: 60, on_error: onError }];
    expect(problemsOf(doc)).toEqual(['routes[0].limits[0].on_error: must be "deny" or "allow"']);
  });
});

describe("the lint", () => {
  // A route taking bearer tokens from any of its issuers needs Authorization allowed, though it
  // also takes Access assertions (which come in a cookie).
  it("flags allow_headers without authorization on a route taking an OIDC issuer beside an Access one", () => {
    const doc = minimal();
    doc.issuers.access = { kind: "cloudflare_access", team_domain: "acme.cloudflareaccess.com" };
    doc.routes[0].auth = { issuers: ["access", "idp"], audiences: ["aud-tag"] };
    doc.routes[0].cors = { allow_origins: ["https://app.example.com"], allow_headers: ["content-type"] };
    expect(compileStepProblems(doc)).toEqual([
      'routes[0].cors.allow_headers: has no "authorization", which the route\'s bearer tokens come in',
    ]);
  });

  // Header names are case-insensitive: the preflight allows "Authorization" as written.
  it("takes Authorization in any case in allow_headers", () => {
    const doc = minimal();
    doc.routes[0].cors = { allow_origins: ["https://app.example.com"], allow_headers: ["Authorization"] };
    expect(compileStepProblems(doc)).toEqual([]);
  });

  // Every URL the edge fetches keys from is named, the discovery document's as well as the issuer's.
  it("as deployed, names a loopback issuer and the discovery document it is found at", () => {
    const doc = minimal();
    doc.issuers.idp.issuer = "http://127.0.0.1:9000";
    expect(policyProblems(compilePolicy(doc), { deployed: true })).toEqual([
      "issuers.idp: http://127.0.0.1:9000 is local or an address",
      "issuers.idp: http://127.0.0.1:9000/.well-known/openid-configuration is local or an address",
    ]);
  });

  // An address carries no name a certificate or a reviewer can check, in IPv6 as in IPv4.
  it("as deployed, names an upstream at a bare IPv6 address", () => {
    const doc = minimal();
    doc.upstreams.api.url = "https://[2001:db8::1]:8443";
    expect(compileStepProblems(doc)).toEqual(["routes[0].upstream: https://[2001:db8::1]:8443 is local or an address"]);
  });
});

describe("the lint's loopback", () => {
  // `*.localhost` resolves to loopback (RFC 6761): no deployed Worker may forward there.
  it("as deployed, names an upstream on a subdomain of localhost", () => {
    const doc = minimal();
    doc.upstreams.api.url = "https://api.localhost:8443";
    expect(compileStepProblems(doc)).toEqual(["routes[0].upstream: https://api.localhost:8443 is local or an address"]);
  });

  // The local stack's upstreams and issuers may be plain http on any loopback spelling.
  it("takes plain http to [::1] as loopback", () => {
    const doc = minimal();
    doc.upstreams.api.url = "http://[::1]:8080";
    expect(compilePolicy(doc).routes[0]?.upstream).toEqual({ url: "http://[::1]:8080" });
  });
});

describe("route overlap", () => {
  const twoRoutes = (earlier: string, later: string) => {
    const doc = minimal();
    doc.routes = [
      { name: "first", methods: ["GET"], path: earlier, auth: "public", upstream: "api" },
      { name: "second", methods: ["GET"], path: later, auth: { issuers: ["idp"] }, upstream: "api" },
    ];
    return compileStepProblems(doc);
  };

  // A path with fewer segments, and no `**`, takes no longer path: neither route is shadowed.
  it.each([
    ["/v1", "/v1/admin"],
    ["/v1/*", "/v1/*/admin"],
    // A literal segment takes only itself, not every segment a capture or `*` takes.
    ["/v1/admin/**", "/v1/:tenant/**"],
    ["/v1/Admin/**", "/v1/*/**"],
  ])("%s before %s shadows nothing", (earlier, later) => {
    expect(twoRoutes(earlier, later)).toEqual([]);
  });

  it("a shorter path ending in ** before a longer one does shadow it", () => {
    expect(twoRoutes("/v1/**", "/v1/admin")).toEqual([
      "routes[1] (second): GET never reaches it: routes[0] (first) takes every such request first",
    ]);
  });
});
