// Policies as an operator who makes mistakes writes them: each document here is one the
// compile step (scripts/compile-policy.mjs: the validator, then the lint as deployed) should
// refuse, naming the field, because as written it guards less than the operator evidently
// meant, or refuses every request it was written to let through, and nothing says why.
import { describe, expect, it } from "vitest";
import policy from "../../policy/policy.json";
import { about, compileStepProblems, minimalPolicy as minimal } from "../support/policy-compile-step";

describe("a field written under a wrong name, at any depth", () => {
  // Every kind of object the policy holds, each field of it present once.
  const rich = (): any => {
    const doc = structuredClone(policy) as any;
    doc.settings = {
      realm: "r",
      server_timing: false,
      max_url_bytes: 4096,
      max_header_bytes: 8192,
      max_token_bytes: 4096,
      limiter_timeout_ms: 80,
      identity_headers: { subject: "x-id-sub", tenant: "x-id-tenant" },
    };
    Object.assign(doc.issuers.demo, {
      jwks_uri: "https://idp.example.com/keys",
      typ: "at+jwt",
      algorithms: ["ES256"],
      clock_skew_s: 30,
      cache_ttl_s: 900,
      refresh_cooldown_s: 30,
      max_stale_s: 3600,
      rotation_grace_s: 600,
      fetch_timeout_ms: 1000,
      max_jwks_bytes: 32768,
      claims: { subject: "sub", tenant: "tenant_id", scopes: "scp", groups: "roles", email: "email" },
    });
    doc.upstreams.api.timeout_ms = 5000;
    doc.limits.tenant_overrides["enterprise-demo"]["user-per-minute"] = { limit: 900, window_s: 30 };
    doc.routes.push({
      name: "tenant-host",
      methods: ["GET"],
      host: ":tenant.example.com:8443",
      path: "/h/*",
      auth: {
        issuers: ["demo"],
        audiences: ["https://api.example.com"],
        scopes: { all_of: ["api:read"], any_of: ["api:eu"] },
        groups: { any_of: ["staff"] },
        claims: [
          { claim: "amr", one_of: ["mfa"] },
          { claim: "email_verified", equals: true },
        ],
      },
      upstream: "api",
      cors: {
        allow_origins: ["https://app.example.com"],
        allow_methods: ["GET"],
        allow_headers: ["authorization"],
        expose_headers: ["x-request-id"],
        allow_credentials: true,
        max_age_s: 60,
      },
      inherit_default_limits: true,
      limits: [{ name: "ceiling", key: "route", limit: 50, window_s: 10, on_error: "allow" }],
    });
    return doc;
  };

  // Objects whose keys are names the operator chooses (an issuer id, a tenant): a key
  // renamed there is another issuer or tenant, with problems of its own.
  const NAMED = /^(issuers|upstreams|limits\.tenant_overrides(\.[^.]+)?)$/;

  /** Each object of `value` by the path problems name it with (the top level: `policy`). */
  function objectsOf(value: unknown, path: string): [string, Record<string, unknown>][] {
    if (typeof value !== "object" || value === null) return [];
    const children = Object.entries(value).flatMap(([key, child]) =>
      objectsOf(child, Array.isArray(value) ? `${path}[${key}]` : path === "policy" ? key : `${path}.${key}`),
    );
    return Array.isArray(value) ? children : [[path, value as Record<string, unknown>], ...children];
  }

  /** The misspellings operators make: a plural written singular and back (`scope`, `audience`, `methods`). */
  const misspelt = (key: string) => (key.endsWith("s") ? key.slice(0, -1) : `${key}s`);

  it("is refused wherever it is, naming it or the field it left out", () => {
    expect(compileStepProblems(rich())).toEqual([]);
    const renames: [string, string][] = [];
    for (const [path, node] of objectsOf(rich(), "policy")) {
      if (NAMED.test(path)) continue;
      for (const key of Object.keys(node)) {
        if (!(misspelt(key) in node)) renames.push([path, key]);
      }
    }
    // Enough of the policy that the sweep cannot pass by missing it.
    expect(renames).toEqual(
      expect.arrayContaining([
        ["routes[6].auth", "scopes"],
        ["routes[6].auth.scopes", "any_of"],
        ["routes[6].auth.claims[0]", "one_of"],
        ["routes[6]", "methods"],
        ["issuers.demo", "audiences"],
        ["issuers.demo.claims", "groups"],
        ["settings.identity_headers", "subject"],
        ["limits.tenant_overrides.enterprise-demo.user-per-minute", "window_s"],
        ["routes[6].cors", "expose_headers"],
      ]),
    );
    const unnamed: string[] = [];
    for (const [path, key] of renames) {
      const doc = rich();
      const node = objectsOf(doc, "policy").find(([at]) => at === path)?.[1] as Record<string, unknown>;
      node[misspelt(key)] = node[key];
      delete node[key];
      // Named as unknown, or, where the field left out is required, as missing (an issuer
      // without its `kind` is refused for that alone): either way the operator is led to it.
      const problems = compileStepProblems(doc);
      const named = [`${path}.${misspelt(key)}: unknown field`, `${path}.${key}: `];
      if (!problems.some((problem) => named.some((start) => problem.startsWith(start)))) {
        unnamed.push(`${path}.${misspelt(key)}: ${problems.join(" | ")}`);
      }
    }
    expect(unnamed).toEqual([]);
  });
});

describe("a list emptied by mistake is refused, never read as 'anything' or 'nothing'", () => {
  // Beside those policy.test.ts already holds (scopes.all_of, claims, an issuer's audiences,
  // cors.allow_methods).
  it.each<[string, (doc: any) => void, string]>([
    ["scopes.any_of", (doc) => (doc.routes[0].auth.scopes = { any_of: [] }), "routes[0].auth.scopes.any_of"],
    ["groups.any_of", (doc) => (doc.routes[0].auth.groups = { any_of: [] }), "routes[0].auth.groups.any_of"],
    ["a route's audiences", (doc) => (doc.routes[0].auth.audiences = []), "routes[0].auth.audiences"],
    ["a route's issuers", (doc) => (doc.routes[0].auth.issuers = []), "routes[0].auth.issuers"],
    ["a route's methods", (doc) => (doc.routes[0].methods = []), "routes[0].methods"],
    ["an issuer's algorithms", (doc) => (doc.issuers.idp.algorithms = []), "issuers.idp.algorithms"],
    ["cors.allow_origins", (doc) => (doc.routes[0].cors = { allow_origins: [] }), "routes[0].cors.allow_origins"],
  ])("%s", (_label, change, field) => {
    const doc = minimal();
    change(doc);
    expect(compileStepProblems(doc)).toEqual([`${field}: must not be empty`]);
  });
});

describe("path segments in another router's template syntax", () => {
  // OpenAPI, Spring and ASP.NET write a parameter `{id}`, Flask `<id>`, Next.js `[id]`. Taken
  // as a literal, each would match only a request for the path
  // `/v1/users/%7Bid%7D`: `/v1/users/42` would fall through to whatever route comes next (here a
  // public `/v1/**`, which the lint does not flag: it covers the guarded route, not the other
  // way round). `{tenant}` is worse: the operator meant tenant binding, and every tenant's
  // requests would reach the origin under the next route's rules, bound to no tenant. The README
  // refuses `:id` for this very reason ("rather than silently binding nothing; write `*`").
  it.each([
    ["/v1/users/{id}", "an OpenAPI parameter"],
    ["/v1/tenants/{tenant}/**", "an OpenAPI tenant parameter"],
    ["/v1/users/<id>", "a Flask parameter"],
    ["/v1/users/[id]", "a Next.js parameter"],
  ])("%s (%s) is refused, naming routes[0].path", (path) => {
    const doc = minimal();
    doc.routes[0].path = path;
    doc.routes[0].auth.scopes = { all_of: ["admin"] };
    doc.routes.push({ name: "public", methods: ["GET"], path: "/v1/**", auth: "public", upstream: "api" });
    expect(compileStepProblems(doc)).toContainEqual(about("routes[0].path"));
  });
});

describe("default limits", () => {
  // An `ip` default is taken by public routes only, a `tenant` or `user` default by
  // authenticated routes only (README, Rate limits). Written as a route's own limit on the
  // wrong kind of route, each is refused ('"ip" limits apply to public routes only'); a
  // default that no route can take would be dropped, and the policy run with no limit at all
  // where the operator wrote one (a tenant override of it resizing nothing either).
  it.each<[string, (doc: any) => void]>([
    [
      "a per-address default in a policy of authenticated routes",
      (doc) => (doc.limits = { defaults: [{ name: "per-address", key: "ip", limit: 100, window_s: 60 }] }),
    ],
    [
      "a per-user default in a policy of public routes",
      (doc) => {
        doc.routes[0].auth = "public";
        doc.limits = { defaults: [{ name: "per-user", key: "user", limit: 600, window_s: 60 }] };
      },
    ],
    [
      "a per-tenant default, with a plan's override, that every route opts out of",
      (doc) => {
        doc.routes[0].inherit_default_limits = false;
        doc.limits = {
          defaults: [{ name: "per-tenant", key: "tenant", limit: 10000, window_s: 60 }],
          tenant_overrides: { acme: { "per-tenant": { limit: 50000 } } },
        };
      },
    ],
  ])("%s, which applies to no route, is refused, naming limits.defaults[0]", (_label, change) => {
    const doc = minimal();
    change(doc);
    expect(compileStepProblems(doc)).toContainEqual(about("limits.defaults[0]"));
  });
});

describe("issuers", () => {
  // Two issuers may not name the same `iss`, nor one written with a trailing slash and one
  // without: both would be discovered at the same URL (the slash is dropped to build it), whose
  // document names one of them, so the other's key set would never load, and with a jwks_uri
  // its tokens could match only one of them anyway. Here the admin routes' issuer would be the
  // dead one: every admin request refused.
  it("the same issuer twice, but for a trailing slash, is refused, naming issuers.admin.issuer", () => {
    const doc = minimal();
    doc.issuers.admin = { kind: "oidc", issuer: "https://idp.example.com/", audiences: ["admin-api"] };
    doc.routes.push({ ...doc.routes[0], name: "admin", path: "/admin/**", auth: { issuers: ["admin"] } });
    expect(compileStepProblems(doc)).toContainEqual(about("issuers.admin.issuer"));
  });

  // Pasted from the provider's page: the discovery document's URL as the issuer (discovery
  // then asks for `…/openid-configuration/.well-known/openid-configuration`, and no token's
  // `iss` ends so), or as the key set URL (a discovery document holds no `keys`). Every token
  // of the issuer would be refused. The compiler refuses the Access twin of this mistake, the certs
  // URL pasted whole as a team domain.
  it.each<[string, string, (doc: any) => void]>([
    [
      "the discovery URL as the issuer",
      "issuers.idp.issuer",
      (doc) => (doc.issuers.idp.issuer = "https://idp.example.com/.well-known/openid-configuration"),
    ],
    [
      "the discovery URL as the key set URL",
      "issuers.idp.jwks_uri",
      (doc) => (doc.issuers.idp.jwks_uri = "https://idp.example.com/.well-known/openid-configuration"),
    ],
  ])("%s is refused, naming %s", (_label, field, change) => {
    const doc = minimal();
    change(doc);
    expect(compileStepProblems(doc)).toContainEqual(about(field));
  });

  // `iss` is compared with the issuer as written, byte for byte, but discovery fetches it as the
  // URL parser reads it: `\` as `/`, dot segments resolved. The document found names the
  // parsed issuer, never the one written, and no token's `iss` holds a backslash or `..`:
  // every token would be refused (discovery_issuer_mismatch, or issuer_unknown with a jwks_uri).
  it.each(["https://idp.example.com\\realms\\corp", "https://idp.example.com/realms/../realms/corp"])(
    "an issuer the URL parser writes otherwise (%s) is refused, naming issuers.idp.issuer",
    (issuer) => {
      const doc = minimal();
      doc.issuers.idp.issuer = issuer;
      expect(compileStepProblems(doc)).toContainEqual(about("issuers.idp.issuer"));
    },
  );
});

describe("an issuer's audience claim", () => {
  /** The policy with an Access issuer of this claim mapping, guarding `/console/**`. */
  const withAccess = (claims: { audience: string }) => {
    const doc = minimal();
    doc.issuers.access = { kind: "cloudflare_access", team_domain: "acme.cloudflareaccess.com", claims };
    doc.routes.push({
      ...doc.routes[0],
      name: "console",
      path: "/console/**",
      auth: { issuers: ["access"], audiences: ["aud-tag"] },
    });
    return doc;
  };

  // An Access assertion's application is its AUD tag in `aud`, the one claim Access vouches
  // for it in: a route's tag compared with any other claim (an `email`, a `sub`) would take
  // any assertion of the team whose claim happened to read so. The default written out is no
  // mistake.
  it("a Cloudflare Access issuer reading its audience from another claim is refused, naming issuers.access.claims.audience; from aud it deploys", () => {
    expect(compileStepProblems(withAccess({ audience: "email" }))).toContainEqual(
      about("issuers.access.claims.audience"),
    );
    expect(compileStepProblems(withAccess({ audience: "aud" }))).toEqual([]);
  });

  it("an OIDC issuer reading it from client_id deploys; one naming no claim is refused", () => {
    const doc = minimal();
    doc.issuers.idp.claims = { audience: "client_id" };
    expect(compileStepProblems(doc)).toEqual([]);
    doc.issuers.idp.claims = { audience: 7 };
    expect(compileStepProblems(doc)).toContainEqual(about("issuers.idp.claims.audience"));
  });
});

describe("a route's resource_metadata", () => {
  // Quoted into every challenge of the route: written otherwise than a URL parser writes it
  // (a `"`, a space, a host in capitals), it would not be the URL clients are sent, or could
  // not be quoted at all; a plain-http metadata URL would let a network attacker name clients
  // another authorisation server.
  it.each([
    "https://mcp.example.com/.well-known/oauth-protected-resource/a b",
    'https://mcp.example.com/"',
    "https://MCP.example.com/.well-known/oauth-protected-resource",
    "http://mcp.example.com/.well-known/oauth-protected-resource",
    "https://mcp.example.com/.well-known/oauth-protected-resource?x=1",
    7,
  ])("%j is refused, naming routes[0].auth.resource_metadata", (url) => {
    const doc = minimal();
    doc.routes[0].auth.resource_metadata = url;
    expect(compileStepProblems(doc)).toContainEqual(about("routes[0].auth.resource_metadata"));
  });

  // Loopback passes the validator (the local stack's policy names one), but a deployed policy
  // would send every client to its own machine to find the authorisation server.
  it("a loopback URL does not deploy, naming routes[0].auth.resource_metadata", () => {
    const doc = minimal();
    doc.routes[0].auth.resource_metadata = "http://127.0.0.1:8787/.well-known/oauth-protected-resource";
    expect(compileStepProblems(doc)).toEqual([
      "routes[0].auth.resource_metadata: http://127.0.0.1:8787/.well-known/oauth-protected-resource is local or an address",
    ]);
  });

  it("an https URL as a URL parser writes it deploys", () => {
    const doc = minimal();
    doc.routes[0].auth.resource_metadata = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
    expect(compileStepProblems(doc)).toEqual([]);
  });
});

describe("authorisation that can never be met as the operator meant it", () => {
  // `scope` (and Entra's `scp`) is a space-separated string: a condition compares the whole of
  // it, so `equals: "admin"` admits a token whose scope is exactly `admin` and refuses one with
  // `read admin`, the shape tokens carry (forbidden, claim:scope). `scopes` reads it split.
  it.each([
    ["scope", { claim: "scope", equals: "admin" }],
    ["scp", { claim: "scp", one_of: ["admin", "owner"] }],
  ])("a claim condition on the scopes claim %s is refused, naming routes[0].auth.claims[0]", (_l, condition) => {
    const doc = minimal();
    doc.routes[0].auth.claims = [condition];
    expect(compileStepProblems(doc)).toContainEqual(expect.stringMatching(/^routes\[0\]\.auth\.claims\[0\].*scopes/));
  });

  // A bearer token travels only in Authorization, which no page may send to another origin
  // unless the preflight allows it. Listed without it (meaning to add a header to the
  // defaults, which a list given replaces), every cross-origin request a route that takes only
  // bearer tokens could admit would be refused at its preflight (cors_rejected, header_not_allowed).
  it.each([
    ["a list without authorization", ["content-type", "x-trace-id"]],
    ["an empty list", []],
  ])("cors.allow_headers as %s on a bearer-only route is refused, naming it", (_label, headers) => {
    const doc = minimal();
    doc.routes[0].cors = { allow_origins: ["https://app.example.com"], allow_headers: headers };
    expect(compileStepProblems(doc)).toContainEqual(about("routes[0].cors.allow_headers"));
  });

  // Refused, with a message that says the one word allowed is `"public"`, exactly so, as the
  // message for a missing auth does.
  it.each(["Public", "PUBLIC", "public "])('auth %j is refused with a message naming "public"', (auth) => {
    const doc = minimal();
    doc.routes[0].auth = auth;
    expect(compileStepProblems(doc)).toContainEqual(expect.stringMatching(/^routes\[0\]\.auth: .*"public"/));
  });
});

describe("what those checks leave alone", () => {
  it("an issuer as providers write it, a default a route replaces by name, and an Access route's own header list deploy", () => {
    const doc = minimal();
    // Auth0 ends its issuer with a slash, Keycloak names a realm in its path.
    doc.issuers.idp.issuer = "https://tenant.eu.auth0.com/";
    doc.issuers.realm = { kind: "oidc", issuer: "https://sso.example.com/realms/corp", audiences: ["api"] };
    doc.issuers.access = { kind: "cloudflare_access", team_domain: "acme.cloudflareaccess.com" };
    // Taken by its one route, if only to be replaced there.
    doc.limits = { defaults: [{ name: "per-user", key: "user", limit: 600, window_s: 60 }] };
    doc.routes[0].limits = [{ name: "per-user", key: "user", limit: 60, window_s: 60 }];
    doc.routes.push({
      name: "console",
      methods: ["GET"],
      path: "/console/**",
      auth: { issuers: ["access"], audiences: ["aud-tag"] },
      upstream: "api",
      // An Access assertion comes in a cookie: no page sends it in Authorization.
      cors: { allow_origins: ["https://app.example.com"], allow_headers: ["content-type"] },
      inherit_default_limits: false,
    });
    doc.routes.push({ ...doc.routes[0], name: "realm", path: "/realm/**", auth: { issuers: ["realm"] } });
    expect(compileStepProblems(doc)).toEqual([]);
  });
});
