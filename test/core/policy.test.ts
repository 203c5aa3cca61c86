import { describe, expect, it } from "vitest";
import { localPolicy } from "../../dev/local-policy";
import policy from "../../policy/policy.json";
import { compilePolicy } from "../../src/core/policy";
import { problemsOf } from "../support/policy-problems";

const minimal = () => ({
  version: 3,
  upstreams: { api: { url: "https://origin.example.com" } },
  issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
  routes: [{ name: "r", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "api" }],
});

describe("the bundled policies", () => {
  it("the deployable policy compiles", () => {
    const compiled = compilePolicy(policy);
    expect(compiled.routes.map((r) => r.matchedRule)).toContain("policy:api-read@v1");
  });

  it("the local stack's policy compiles and trusts only loopback issuers", () => {
    const compiled = compilePolicy(localPolicy());
    for (const issuer of compiled.issuers.values()) expect(new URL(issuer.issuer).hostname).toBe("127.0.0.1");
  });

  it("the deployable policy trusts no loopback issuer", () => {
    for (const issuer of compilePolicy(policy).issuers.values()) expect(new URL(issuer.issuer).protocol).toBe("https:");
  });
});

describe("policy validation names the field and why", () => {
  it.each([
    [
      "missing auth",
      (p: any) => delete p.routes[0].auth,
      'routes[0].auth: is required: the issuers this route accepts, or "public"',
    ],
    [
      "unknown issuer",
      (p: any) => (p.routes[0].auth.issuers = ["nope"]),
      'routes[0].auth.issuers: "nope" is not defined in issuers',
    ],
    [
      "unknown upstream",
      (p: any) => (p.routes[0].upstream = "x"),
      'routes[0].upstream: "x" is not defined in upstreams',
    ],
    [
      "bad method",
      (p: any) => (p.routes[0].methods = ["get"]),
      'routes[0].methods: unknown method "get" (use upper case)',
    ],
    ["bad pattern", (p: any) => (p.routes[0].path = "/a/**/b"), "routes[0].path: `**` may only be the last segment"],
    [
      // `1e400` is valid JSON that reads as Infinity, which the compiled policy (JSON) would
      // write as null: a condition a null claim would then meet.
      "a claim condition JSON reads as Infinity",
      (p: any) => (p.routes[0].auth.claims = JSON.parse('[{ "claim": "tier", "equals": 1e400 }]')),
      "routes[0].auth.claims[0].equals: must be a string, number or boolean",
    ],
    [
      "one among a claim condition's values",
      (p: any) => (p.routes[0].auth.claims = JSON.parse('[{ "claim": "size", "one_of": [1, -1e400] }]')),
      "routes[0].auth.claims[0].one_of: must be a non-empty array of strings, numbers or booleans",
    ],
    [
      // With all_of deleted rather than emptied, the same mistake: nothing would be required.
      "scopes naming neither list",
      (p: any) => (p.routes[0].auth = { issuers: ["idp"], scopes: {} }),
      "routes[0].auth.scopes: needs all_of or any_of (or leave scopes out)",
    ],
    [
      // Every condition of an empty list holds.
      "an empty claims list",
      (p: any) => (p.routes[0].auth = { issuers: ["idp"], claims: [] }),
      "routes[0].auth.claims: must be a non-empty array of conditions",
    ],
    [
      "empty scopes.all_of",
      (p: any) => (p.routes[0].auth = { issuers: ["idp"], scopes: { all_of: [] } }),
      "routes[0].auth.scopes.all_of: must not be empty",
    ],
    [
      "http issuer",
      (p: any) => (p.issuers.idp.issuer = "http://idp.example.com"),
      "issuers.idp.issuer: must be an https URL (http only for loopback hosts)",
    ],
    [
      "HS256 allowed",
      (p: any) => (p.issuers.idp.algorithms = ["HS256"]),
      'issuers.idp.algorithms: "HS256" is not an accepted algorithm',
    ],
    [
      // Unsigned tokens, even beside a real algorithm.
      "none allowed",
      (p: any) => (p.issuers.idp.algorithms = ["ES256", "none"]),
      'issuers.idp.algorithms: "none" is not an accepted algorithm',
    ],
    [
      "none allowed, in capitals",
      (p: any) => (p.issuers.idp.algorithms = ["NONE"]),
      'issuers.idp.algorithms: "NONE" is not an accepted algorithm',
    ],
    [
      "cache TTL out of range",
      (p: any) => (p.issuers.idp.cache_ttl_s = 86400),
      "issuers.idp.cache_ttl_s: must be an integer from 300 to 3600",
    ],
    ["unknown field", (p: any) => (p.routes[0].auht = "public"), "routes[0].auht: unknown field"],
    ["no version", (p: any) => delete p.version, "version: must be an integer from 1 to 9007199254740991"],
    ["duplicate route", (p: any) => p.routes.push({ ...p.routes[0] }), 'routes[1].name: "r" is used by another route'],
    [
      "ip limit on an authenticated route",
      (p: any) => (p.routes[0].limits = [{ name: "l", key: "ip", limit: 1, window_s: 1 }]),
      'routes[0].limits[0].key: "ip" limits apply to public routes only',
    ],
    [
      "user limit on a public route",
      (p: any) => {
        p.routes[0].auth = "public";
        p.routes[0].limits = [{ name: "l", key: "user", limit: 1, window_s: 1 }];
      },
      'routes[0].limits[0].key: "user" needs an identity (public routes: ip or route)',
    ],
    [
      "Access route without AUD",
      (p: any) => {
        p.issuers.access = { kind: "cloudflare_access", team_domain: "acme.cloudflareaccess.com" };
        p.routes[0].auth.issuers = ["access"];
      },
      'routes[0].auth.audiences: is required with Access issuer "access" (its AUD tag)',
    ],
    [
      "a limit name too long for a counter name",
      (p: any) => (p.routes[0].limits = [{ name: "n".repeat(65), key: "user", limit: 5, window_s: 60 }]),
      "routes[0].limits[0].name: at most 64 characters: letters, digits, '.', '_', ':' and '-'",
    ],
    [
      // The metrics list the limits that failed open comma-separated: `a,b` would read as two.
      "a limit name with a comma",
      (p: any) => (p.routes[0].limits = [{ name: "per,user", key: "user", limit: 5, window_s: 60 }]),
      "routes[0].limits[0].name: at most 64 characters: letters, digits, '.', '_', ':' and '-'",
    ],
    [
      "more limits of one object kind than one limiter call carries",
      (p: any) =>
        (p.routes[0].limits = Array.from({ length: 17 }, (_, i) => ({
          name: `l${i}`,
          key: "user",
          limit: 5,
          window_s: 60,
        }))),
      "routes[0].limits: at most 16 tenant and user limits apply to one route (17 do)",
    ],
    [
      // Only `:tenant` is read (tenant binding): a capture of another name would bind nothing,
      // and `:tenant_id` looks like it does.
      "a path capture other than :tenant",
      (p: any) => (p.routes[0].path = "/v1/tenants/:tenant_id/**"),
      "routes[0].path: only :tenant is captured (* matches any segment)",
    ],
    [
      "a host capture other than :tenant",
      (p: any) => (p.routes[0].host = ":Tenant.example.com"),
      "routes[0].host: only :tenant is captured",
    ],
    [
      "a capture twice in the path",
      (p: any) => (p.routes[0].path = "/t/:tenant/x/:tenant"),
      'routes[0].path: capture ":tenant" appears twice',
    ],
    [
      // Tenant binding would check only one of the two values.
      "a capture in both the host and the path",
      (p: any) => {
        p.routes[0].path = "/t/:tenant/**";
        p.routes[0].host = ":tenant.example.com";
      },
      'routes[0].host: capture ":tenant" is also in the path',
    ],
    [
      // URLs never carry the default port: the route would never match.
      "a host with the default port",
      (p: any) => (p.routes[0].host = "api.example.com:443"),
      "routes[0].host: port 443 is the default: a host never shows it",
    ],
    [
      // The runtime sees `:08443` as `:8443`, and no request carries 65536: the route would
      // never match, and what it guards would fall through to the routes after it.
      "a host port with a leading zero",
      (p: any) => (p.routes[0].host = "admin.example.com:08443"),
      "routes[0].host: port 08443 is not one a URL carries",
    ],
    [
      "a host port out of range",
      (p: any) => (p.routes[0].host = "admin.example.com:65536"),
      "routes[0].host: port 65536 is not one a URL carries",
    ],
    [
      // The URL parser writes `1.2.3` as 1.2.0.3 and `0x7f.0.0.1` as 127.0.0.1: never matched.
      "a host the URL parser writes otherwise",
      (p: any) => (p.routes[0].host = "0x7f.0.0.1"),
      "routes[0].host: not a host name",
    ],
    ["a short IPv4 host", (p: any) => (p.routes[0].host = "1.2.3"), "routes[0].host: not a host name"],
    // Each matches no request host, so what the route meant to guard would fall through.
    [
      "a host with an empty label",
      (p: any) => (p.routes[0].host = "api..example.com"),
      "routes[0].host: not a host name",
    ],
    [
      "a leading dot, read as a wildcard elsewhere",
      (p: any) => (p.routes[0].host = ".example.com"),
      "routes[0].host: not a host name (to match hosts under it, capture one: `:tenant.example.com`)",
    ],
    [
      // No request path can hold them (the edge refuses such a segment), so the route would
      // guard nothing and what it meant to guard would fall through.
      "a path literal with a control character",
      (p: any) => (p.routes[0].path = "/v1/ad\tmin/**"),
      'routes[0].path: segment "ad\tmin" is not a canonical literal',
    ],
    [
      "a path literal with a trailing dot",
      (p: any) => (p.routes[0].path = "/v1/admin./**"),
      'routes[0].path: segment "admin." is not a canonical literal',
    ],
    [
      "a path literal with a space",
      (p: any) => (p.routes[0].path = "/v1/my admin/**"),
      'routes[0].path: segment "my admin" is not a canonical literal',
    ],
    [
      "a host capture followed by something that is not a host name",
      (p: any) => (p.routes[0].host = ":tenant.example.com/x"),
      "routes[0].host: not a host name after the capture",
    ],
    [
      "CORS wildcard with credentials",
      (p: any) => (p.routes[0].cors = { allow_origins: ["*"], allow_credentials: true }),
      'routes[0].cors.allow_credentials: cannot be true when allow_origins contains "*"',
    ],
    [
      "cors methods in lower case",
      (p: any) => (p.routes[0].cors = { allow_origins: ["*"], allow_methods: ["get"] }),
      'routes[0].cors.allow_methods: unknown method "get" (use upper case)',
    ],
    [
      // A preflight could then succeed for no method at all: say so rather than answer nothing.
      "cors with no methods",
      (p: any) => (p.routes[0].cors = { allow_origins: ["*"], allow_methods: [] }),
      "routes[0].cors.allow_methods: must not be empty",
    ],
    [
      "a boolean field given as a string",
      (p: any) => (p.routes[0].inherit_default_limits = "false"),
      "routes[0].inherit_default_limits: must be a boolean",
    ],
    [
      "a limit declared twice in the defaults (only one could apply)",
      (p: any) =>
        (p.limits = {
          defaults: [
            { name: "per-minute", key: "user", limit: 60, window_s: 60 },
            { name: "per-minute", key: "tenant", limit: 600, window_s: 60 },
          ],
        }),
      'limits.defaults[1].name: "per-minute" is already declared at limits.defaults[0]',
    ],
    [
      "a limit declared twice on one route",
      (p: any) =>
        (p.routes[0].limits = [
          { name: "l", key: "user", limit: 5, window_s: 60 },
          { name: "l", key: "user", limit: 50, window_s: 3600 },
        ]),
      'routes[0].limits[1].name: "l" is already declared at routes[0].limits[0]',
    ],
    [
      "a refresh cooldown as long as the cache TTL (it would hold back the refresh a set past its TTL needs)",
      (p: any) => Object.assign(p.issuers.idp, { cache_ttl_s: 300, refresh_cooldown_s: 300 }),
      "issuers.idp.refresh_cooldown_s: must be less than cache_ttl_s (300)",
    ],

    [
      "an override of a limit that is declared nowhere",
      (p: any) => (p.limits = { tenant_overrides: { acme: { "user-per-day": { limit: 5 } } } }),
      'limits.tenant_overrides.acme.user-per-day: no tenant or user limit is named "user-per-day"',
    ],
    [
      "an override of a route limit",
      (p: any) => {
        p.routes[0].limits = [{ name: "ceiling", key: "route", limit: 500, window_s: 60 }];
        p.limits = { tenant_overrides: { acme: { ceiling: { limit: 5 } } } };
      },
      'limits.tenant_overrides.acme.ceiling: "ceiling" is a route limit, not a tenant or user one',
    ],
    [
      "an override for a tenant no token can carry",
      (p: any) => (p.limits = { tenant_overrides: { "acme corp": {} } }),
      'limits.tenant_overrides.acme corp: a tenant is 1 to 255 printable ASCII characters, without spaces, commas, |, " or \\',
    ],
    [
      "an override for an empty tenant",
      (p: any) => (p.limits = { tenant_overrides: { "": {} } }),
      'limits.tenant_overrides.: a tenant is 1 to 255 printable ASCII characters, without spaces, commas, |, " or \\',
    ],
    [
      "an override for a tenant with a comma, which no token may carry",
      (p: any) => (p.limits = { tenant_overrides: { "acme,globex": {} } }),
      'limits.tenant_overrides.acme,globex: a tenant is 1 to 255 printable ASCII characters, without spaces, commas, |, " or \\',
    ],
    ...["__proto__", "constructor", "prototype"].map((tenant) => [
      `an override for the tenant "${tenant}"`,
      (p: any) => (p.limits = JSON.parse(`{ "tenant_overrides": { "${tenant}": {} } }`)),
      `limits.tenant_overrides.${tenant}: "${tenant}" is reserved (an object property name)`,
    ]),
    // Identity header names: application headers only, none the edge uses otherwise, one per field.
    ...[
      ["authorization", "must start with x- (an application header)"],
      ["Cookie", "must start with x- (an application header)"],
      ["transfer-encoding", "must start with x- (an application header)"],
      ["x-forwarded-host", '"x-forwarded-host" is a header the edge strips or writes itself'],
      ["x-request-id", '"x-request-id" is a header the edge strips or writes itself'],
      ["x-api-key", '"x-api-key" is a header the edge strips or writes itself'],
      ["x-http-method-override", '"x-http-method-override" is a header the edge strips or writes itself'],
    ].map(([name, why]) => [
      `identity header named ${name}`,
      (p: any) => (p.settings = { identity_headers: { subject: name } }),
      `settings.identity_headers.subject: ${why}`,
    ]),
    [
      "two identity fields in one header",
      (p: any) => (p.settings = { identity_headers: { subject: "x-id", email: "X-Id" } }),
      'settings.identity_headers.email: "x-id" is already the subject header',
    ],
    [
      "an identity field in another field's default header",
      (p: any) => (p.settings = { identity_headers: { email: "x-user-sub" } }),
      'settings.identity_headers.email: "x-user-sub" is already the subject header',
    ],
    // Upstream URLs: the raw text is the forwarding prefix.
    ...["https://o.example.com?", "https://o.example.com#", "https://o.example.com/base?x=1"].map((url) => [
      `upstream url ${url}`,
      (p: any) => (p.upstreams.api.url = url),
      "upstreams.api.url: must not carry a query or fragment",
    ]),
    [
      "upstream url with a password",
      (p: any) => (p.upstreams.api.url = "https://svc:hunter2@origin.example.com"),
      "upstreams.api.url: must not carry a user name or password",
    ],
    [
      "issuer url with a user name",
      (p: any) => (p.issuers.idp.issuer = "https://user@idp.example.com"),
      "issuers.idp.issuer: must not carry a user name or password",
    ],
    [
      "a realm a header cannot carry",
      (p: any) => (p.settings = { realm: "edge\r\nx-injected: 1" }),
      'settings.realm: must be 1 to 128 printable ASCII characters, without " or \\',
    ],
    ...["Domain Admins,EU", '"admins"', " admins"].map((group) => [
      `a group no token may carry: ${group}`,
      (p: any) => (p.routes[0].auth.groups = { any_of: ["eng", group] }),
      `routes[0].auth.groups.any_of: "${group}" is not a group name a token may carry (printable ASCII, no "," " or \\, no leading or trailing space)`,
    ]),
    ...["read write", "read,write", '"read"'].map((scope) => [
      `a scope no token can hold: ${scope}`,
      (p: any) => (p.routes[0].auth.scopes = { all_of: [scope] }),
      `routes[0].auth.scopes.all_of: "${scope}" is not a scope (printable ASCII, no spaces, ",", '"' or "\\")`,
    ]),
    // CORS origins are compared exactly with what browsers send.
    ...[
      [
        "https://App.Example.com",
        '"https://App.Example.com" never matches: browsers send it as "https://app.example.com"',
      ],
      [
        "https://app.example.com:443",
        '"https://app.example.com:443" never matches: browsers send it as "https://app.example.com"',
      ],
      [
        "https://app.example.com/",
        '"https://app.example.com/" never matches: browsers send it as "https://app.example.com"',
      ],
      ["https://*.example.com", '"https://*.example.com" must be "*" or an origin such as https://app.example.com'],
      ["null", '"null" must be "*" or an origin such as https://app.example.com'],
      // Not quoted: the password would go to the deploy's log.
      ["https://deploy:S3cr3t-pw@app.example.com", "an origin must not carry a user name or password"],
    ].map(([origin, why]) => [
      `CORS origin ${origin}`,
      (p: any) => (p.routes[0].cors = { allow_origins: [origin] }),
      `routes[0].cors.allow_origins: ${why}`,
    ]),
    [
      "CORS allow_headers *",
      (p: any) => (p.routes[0].cors = { allow_origins: ["https://app.example.com"], allow_headers: ["*"] }),
      'routes[0].cors.allow_headers: "*" is not a header name (and * is not supported)',
    ],
    [
      "CORS expose_headers with a line break",
      (p: any) => (p.routes[0].cors = { allow_origins: ["https://app.example.com"], expose_headers: ["x-a\r\nx-b"] }),
      'routes[0].cors.expose_headers: "x-a\r\nx-b" is not a header name (and * is not supported)',
    ],
    [
      // The edge's timings tell whether a token came from the cache.
      "Server-Timing exposed to other origins while the edge writes its own",
      (p: any) => {
        p.settings = { server_timing: true };
        p.routes[0].cors = { allow_origins: ["*"], expose_headers: ["x-request-id", "Server-Timing"] };
      },
      'routes[0].cors.expose_headers: "server-timing" may not be exposed while settings.server_timing is on',
    ],
    [
      "a route name with a character other than letters, digits, '.', '_' and '-'",
      (p: any) => (p.routes[0].name = "read/all"),
      "routes[0].name: at most 64 characters: letters, digits, '.', '_' and '-'",
    ],
    [
      "an OIDC issuer without audiences",
      (p: any) => delete p.issuers.idp.audiences,
      "issuers.idp.audiences: must be an array of non-empty strings",
    ],
    [
      "an OIDC issuer with no audience",
      (p: any) => (p.issuers.idp.audiences = []),
      "issuers.idp.audiences: must not be empty",
    ],
    [
      "audiences on a Cloudflare Access issuer (each route names its application's AUD tag)",
      (p: any) =>
        (p.issuers.access = { kind: "cloudflare_access", team_domain: "acme.cloudflareaccess.com", audiences: ["x"] }),
      "issuers.access.audiences: unknown field",
    ],
    [
      "two issuers naming the same issuer URL",
      (p: any) => (p.issuers.again = { ...p.issuers.idp }),
      'issuers.again.issuer: "https://idp.example.com" is already used by issuer "idp"',
    ],
    [
      "OPTIONS on a route with cors",
      (p: any) => {
        p.routes[0].methods = ["GET", "OPTIONS"];
        p.routes[0].cors = { allow_origins: ["https://app.example.com"] };
      },
      "routes[0].methods: OPTIONS is answered by the edge when cors is set",
    ],
    [
      "a CORS method the route does not take",
      (p: any) => (p.routes[0].cors = { allow_origins: ["https://app.example.com"], allow_methods: ["GET", "DELETE"] }),
      'routes[0].cors.allow_methods: "DELETE" is not one of the route\'s methods',
    ],
    [
      // JSON reads 1234567890123456789 as the double …800, which another id's claim
      // (1234567890123456788) reads as too: the condition would admit another organisation.
      "a claim condition with an integer JSON cannot carry exactly",
      (p: any) => (p.routes[0].auth.claims = JSON.parse('[{ "claim": "org_id", "equals": 1234567890123456789 }]')),
      "routes[0].auth.claims[0].equals: holds an integer beyond ±9007199254740991, which JSON cannot carry exactly (other ids would match it): compare ids that large as strings, sent as strings by the issuer",
    ],
    [
      "a one_of list with such an integer",
      (p: any) => (p.routes[0].auth.claims = JSON.parse('[{ "claim": "org_id", "one_of": [7, -9007199254740993] }]')),
      "routes[0].auth.claims[0].one_of: holds an integer beyond ±9007199254740991, which JSON cannot carry exactly (other ids would match it): compare ids that large as strings, sent as strings by the issuer",
    ],
    [
      // The id is part of every user counter's name, which the limiter objects bound.
      "an issuer id longer than 64 characters",
      (p: any) => {
        p.issuers = { [`i${"d".repeat(64)}`]: p.issuers.idp };
        p.routes[0].auth.issuers = [`i${"d".repeat(64)}`];
      },
      `issuers.i${"d".repeat(64)}: an issuer id is at most 64 characters`,
    ],
    [
      // It reaches the origin as x-user-iss: a header would carry it as raw UTF-8 bytes.
      "an issuer that is not printable ASCII",
      (p: any) => (p.issuers.idp.issuer = "https://idp.example.com/realms/caf\u00e9"),
      "issuers.idp.issuer: must be printable ASCII: percent-encode other characters, as its tokens' iss does",
    ],
    [
      "a method outside the supported set",
      (p: any) => (p.routes[0].methods = ["TRACE"]),
      'routes[0].methods: unknown method "TRACE" (one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)',
    ],
    [
      "an identity header name with a character other than letters, digits and -",
      (p: any) => (p.settings = { identity_headers: { subject: "x-user_sub" } }),
      "settings.identity_headers.subject: must be a header name of letters, digits and -",
    ],
  ] as [string, (p: any) => void, string][])("%s", (_label, mutate, expected) => {
    const doc = minimal();
    mutate(doc);
    expect(problemsOf(doc)).toContain(expected);
  });

  it("a cache TTL out of range beside a long cooldown gets the TTL's problem alone (its default is not what was written)", () => {
    const doc: any = minimal();
    Object.assign(doc.issuers.idp, { cache_ttl_s: 5000, refresh_cooldown_s: 3000 });
    expect(problemsOf(doc)).toEqual(["issuers.idp.cache_ttl_s: must be an integer from 300 to 3600"]);
  });

  it("an origin's own Server-Timing may be exposed while the edge writes none", () => {
    const doc: any = minimal();
    doc.routes[0].cors = { allow_origins: ["*"], expose_headers: ["server-timing"] };
    expect(problemsOf(doc)).toEqual([]);
    doc.settings = { server_timing: false };
    expect(problemsOf(doc)).toEqual([]);
  });

  it("an override of a limit that is itself invalid gets that limit's problem alone, not a second saying it does not exist", () => {
    const doc: any = minimal();
    doc.limits = {
      defaults: [{ name: "per-user", key: "user", limit: 0, window_s: 60 }],
      tenant_overrides: { acme: { "per-user": { limit: 5 } } },
    };
    expect(problemsOf(doc)).toEqual(["limits.defaults[0].limit: must be an integer from 1 to 1000000000"]);
  });

  it("lets a route's own limit replace a default of the same name, and overrides name either", () => {
    const doc: any = minimal();
    doc.limits = {
      defaults: [{ name: "user-per-minute", key: "user", limit: 600, window_s: 60 }],
      tenant_overrides: { acme: { "user-per-minute": { limit: 1200 }, "r-user": { limit: 10, window_s: 1 } } },
    };
    doc.routes[0].limits = [
      { name: "user-per-minute", key: "user", limit: 5, window_s: 60 },
      { name: "r-user", key: "user", limit: 2, window_s: 1 },
    ];
    const compiled = compilePolicy(doc);
    expect(compiled.routes[0]?.limits.map((l) => [l.name, l.limit])).toEqual([
      ["user-per-minute", 5],
      ["r-user", 2],
    ]);
    expect(compiled.routes[0]?.replacedDefaults?.map((l) => [l.name, l.limit])).toEqual([["user-per-minute", 600]]);
    expect(compiled.tenantOverrides).toEqual({
      acme: { "user-per-minute": { limit: 1200 }, "r-user": { limit: 10, window_s: 1 } },
    });
  });

  it("gives each route the defaults that can apply to it: public routes ip and route, others all but ip", () => {
    const doc: any = minimal();
    doc.limits = {
      defaults: [
        { name: "tenant-per-minute", key: "tenant", limit: 10000, window_s: 60 },
        { name: "user-per-minute", key: "user", limit: 600, window_s: 60 },
        { name: "route-per-minute", key: "route", limit: 5000, window_s: 60 },
        { name: "ip-per-minute", key: "ip", limit: 100, window_s: 60 },
      ],
    };
    doc.routes.push({ ...doc.routes[0], name: "pub", path: "/public/**", auth: "public" });
    const compiled = compilePolicy(doc);
    const byName = Object.fromEntries(compiled.routes.map((r) => [r.name, r.limits.map((l) => l.name)]));
    expect(byName[doc.routes[0].name]).toEqual(["tenant-per-minute", "user-per-minute", "route-per-minute"]);
    expect(byName.pub).toEqual(["route-per-minute", "ip-per-minute"]);
  });

  it.each([
    ["settings", "max_url_bytes", 256, 65536],
    ["settings", "max_header_bytes", 1024, 131072],
    ["settings", "max_token_bytes", 512, 65536],
    ["settings", "limiter_timeout_ms", 5, 5000],
    ["issuer", "clock_skew_s", 0, 300],
    ["issuer", "cache_ttl_s", 300, 3600],
    ["issuer", "refresh_cooldown_s", 1, 3599],
    ["issuer", "max_stale_s", 0, 604800],
    ["issuer", "rotation_grace_s", 0, 604800],
    ["issuer", "fetch_timeout_ms", 100, 30000],
    ["issuer", "max_jwks_bytes", 1024, 1048576],
    ["upstream", "timeout_ms", 100, 300000],
    ["cors", "max_age_s", 0, 86400],
    ["limit", "limit", 1, 1_000_000_000],
    ["limit", "window_s", 1, 2678400],
  ] as const)("%s %s takes %i to %i, as the README says", (where, field, min, max) => {
    const withValue = (value: number) => {
      const doc: any = minimal();
      doc.settings = {};
      doc.routes[0].cors = { allow_origins: ["*"] };
      doc.routes[0].limits = [{ name: "l", key: "user", limit: 1, window_s: 1 }];
      const targets: Record<string, any> = {
        settings: doc.settings,
        issuer: doc.issuers.idp,
        upstream: doc.upstreams.api,
        cors: doc.routes[0].cors,
        limit: doc.routes[0].limits[0],
      };
      // The cooldown must also be less than the TTL: at its largest, beside the longest TTL.
      if (field === "refresh_cooldown_s") doc.issuers.idp.cache_ttl_s = 3600;
      targets[where][field] = value;
      return problemsOf(doc);
    };
    expect(withValue(min)).toEqual([]);
    expect(withValue(max)).toEqual([]);
    expect(withValue(min - 1)).toHaveLength(1);
    expect(withValue(max + 1)).toHaveLength(1);
  });

  it("takes a one-port route after a capture route it cannot be matched by", () => {
    const doc: any = minimal();
    doc.routes[0].host = ":tenant.example.com";
    // Two labels before the suffix (a capture takes one), and another domain.
    doc.routes.push({ ...doc.routes[0], name: "deeper", host: "a.b.example.com:8443" });
    doc.routes.push({ ...doc.routes[0], name: "other", host: "acme.example.org:8443" });
    expect(problemsOf(doc)).toEqual([]);
  });

  it("reports every problem at once", () => {
    expect(problemsOf({ version: 0, upstreams: {}, routes: [] })).toEqual([
      "version: must be an integer from 1 to 9007199254740991",
      "routes: must be a non-empty array",
    ]);
  });
});
