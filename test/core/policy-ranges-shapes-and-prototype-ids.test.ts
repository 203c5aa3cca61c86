/// <reference types="vite/client" />
// The policy as an operator writes it: every numeric range the README lists holds at both
// ends, a field of the wrong shape anywhere gets a problem naming it (never a TypeError), and
// ids that are also Object.prototype's property names (`constructor`, `__proto__`) name
// issuers and upstreams like any other, from the policy file through the compiled artifact
// and the local stack's policy to a request that reaches the origin.
import { beforeAll, describe, expect, it } from "vitest";
import { localPolicy } from "../../dev/local-policy";
import policy from "../../policy/policy.json";
import README from "../../README.md?raw";
import { type CompiledPolicy, compilePolicy, PolicyError } from "../../src/core/policy";
import { type PolicyArtifact, policyArtifact, policyFromArtifact } from "../../src/core/policy-artifact";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { problemsOf } from "../support/policy-problems";

/** One issuer, one upstream, one CORS route inheriting one default limit: every range has a home. */
const ranged = (): any => ({
  version: 1,
  issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
  upstreams: { api: { url: "https://origin.example.com" } },
  limits: { defaults: [{ name: "per-user", key: "user", limit: 5, window_s: 60 }] },
  routes: [
    {
      name: "r",
      methods: ["GET"],
      path: "/v1/**",
      auth: { issuers: ["idp"] },
      upstream: "api",
      cors: { allow_origins: ["https://app.example.com"] },
    },
  ],
});

interface Range {
  /** The field as problems name it. */
  field: string;
  /** How the README's Settings section states the range, if it does. */
  readme?: string;
  min: number;
  max: number;
  set(doc: any, value: unknown): void;
  read(compiled: CompiledPolicy): unknown;
}

const issuerRange = (name: string, min: number, max: number, read: (c: CompiledPolicy) => unknown): Range => ({
  field: `issuers.idp.${name}`,
  readme: `\`${name}\` ${min}–${max}`,
  min,
  max,
  set: (doc, value) => {
    doc.issuers.idp[name] = value;
  },
  read,
});

const idp = (c: CompiledPolicy) => c.issuers.get("idp")!;

const settingRange = (name: string, min: number, max: number, read: (c: CompiledPolicy) => unknown): Range => ({
  field: `settings.${name}`,
  readme: `\`${name}\` ${min}–${max}`,
  min,
  max,
  set: (doc, value) => {
    doc.settings = { [name]: value };
  },
  read,
});

const RANGES: Range[] = [
  settingRange("max_url_bytes", 256, 65536, (c) => c.maxUrlBytes),
  settingRange("max_header_bytes", 1024, 131072, (c) => c.maxHeaderBytes),
  settingRange("max_token_bytes", 512, 65536, (c) => c.maxTokenBytes),
  settingRange("limiter_timeout_ms", 5, 5000, (c) => c.limiterTimeoutMs),
  issuerRange("clock_skew_s", 0, 300, (c) => idp(c).clockSkewS),
  issuerRange("max_lifetime_s", 60, 31622400, (c) => idp(c).maxLifetimeS),
  issuerRange("cache_ttl_s", 300, 3600, (c) => idp(c).cacheTtlS),
  // Less than cache_ttl_s as well: at its largest, beside the longest TTL.
  {
    ...issuerRange("refresh_cooldown_s", 1, 3599, (c) => idp(c).refreshCooldownS),
    set: (doc, value) => {
      doc.issuers.idp.cache_ttl_s = 3600;
      doc.issuers.idp.refresh_cooldown_s = value;
    },
  },
  // The README states these two together: "`max_stale_s` and `rotation_grace_s` 0–604800".
  { ...issuerRange("max_stale_s", 0, 604800, (c) => idp(c).maxStaleS), readme: "`rotation_grace_s` 0–604800" },
  issuerRange("rotation_grace_s", 0, 604800, (c) => idp(c).rotationGraceS),
  issuerRange("fetch_timeout_ms", 100, 30000, (c) => idp(c).fetchTimeoutMs),
  issuerRange("max_jwks_bytes", 1024, 1048576, (c) => idp(c).maxJwksBytes),
  {
    field: "upstreams.api.timeout_ms",
    readme: "an upstream's `timeout_ms` 100–300000",
    min: 100,
    max: 300000,
    set: (doc, value) => {
      doc.upstreams.api.timeout_ms = value;
    },
    read: (c) => c.routes[0]!.upstream.timeout_ms,
  },
  {
    field: "routes[0].cors.max_age_s",
    readme: "a route's `cors.max_age_s` 0–86400",
    min: 0,
    max: 86400,
    set: (doc, value) => {
      doc.routes[0].cors.max_age_s = value;
    },
    read: (c) => c.routes[0]!.cors?.max_age_s,
  },
  {
    field: "limits.defaults[0].limit",
    readme: "a limit's `limit` 1–10⁹",
    min: 1,
    max: 1_000_000_000,
    set: (doc, value) => {
      doc.limits.defaults[0].limit = value;
    },
    // Inherited by the route, at the size declared.
    read: (c) => c.routes[0]!.limits[0]?.limit,
  },
  {
    field: "limits.defaults[0].window_s",
    readme: "`window_s` 1–2678400 (31 days)",
    min: 1,
    max: 2678400,
    set: (doc, value) => {
      doc.limits.defaults[0].window_s = value;
    },
    read: (c) => c.routes[0]!.limits[0]?.window_s,
  },
  // A tenant override resizes a limit: within the same bounds as the limit itself.
  {
    field: "limits.tenant_overrides.acme.per-user.limit",
    min: 1,
    max: 1_000_000_000,
    set: (doc, value) => {
      doc.limits.tenant_overrides = { acme: { "per-user": { limit: value } } };
    },
    read: (c) => c.tenantOverrides.acme?.["per-user"]?.limit,
  },
  {
    field: "limits.tenant_overrides.acme.per-user.window_s",
    min: 1,
    max: 2678400,
    set: (doc, value) => {
      doc.limits.tenant_overrides = { acme: { "per-user": { limit: 7, window_s: value } } };
    },
    read: (c) => c.tenantOverrides.acme?.["per-user"]?.window_s,
  },
];

describe("every numeric range the README lists holds at both ends", () => {
  const readme = README.replace(/\s+/g, " ");

  it.each(RANGES.map((range) => [range.field, range] as const))("%s", (_field, range) => {
    if (range.readme) expect(readme).toContain(range.readme);
    for (const value of [range.min, range.max]) {
      const doc = ranged();
      range.set(doc, value);
      expect(range.read(compilePolicy(doc))).toBe(value);
    }
    // Just outside, a fraction, and the number written as a string (as an env-templated
    // policy may write it): each refused, naming the field and the range, and nothing else.
    for (const value of [range.min - 1, range.max + 1, range.min + 0.5, String(range.min)]) {
      const doc = ranged();
      range.set(doc, value);
      expect(problemsOf(doc), `${range.field} = ${JSON.stringify(value)}`).toEqual([
        `${range.field}: must be an integer from ${range.min} to ${range.max}`,
      ]);
    }
  });
});

/** Every node of `doc`, by the path problems name it with (`routes[0].auth.issuers`). */
function nodePaths(value: unknown, path = ""): string[] {
  if (typeof value !== "object" || value === null) return [path];
  const children = Object.entries(value).flatMap(([key, child]) =>
    nodePaths(child, Array.isArray(value) ? `${path}[${key}]` : path ? `${path}.${key}` : key),
  );
  return [path, ...children];
}

function setAt(doc: any, path: string, value: unknown): void {
  const keys = path.match(/[^.[\]]+/g) as string[];
  let node = doc;
  for (const key of keys.slice(0, -1)) node = node[key];
  node[keys[keys.length - 1] as string] = value;
}

/** Whether a problem about `field` concerns the node at `path`: the node itself, inside it, or around it. */
function concerns(field: string, path: string): boolean {
  const within = (inner: string, outer: string) => inner.startsWith(`${outer}.`) || inner.startsWith(`${outer}[`);
  return field === path || within(field, path) || within(path, field);
}

describe("a field of the wrong shape anywhere in the policy", () => {
  // The demo policy, and one that uses every other section: host, claims, groups, CORS
  // fields, settings, cache settings, overrides with a window.
  const rich = structuredClone(policy) as any;
  rich.settings = {
    realm: "r",
    server_timing: true,
    max_url_bytes: 4096,
    limiter_timeout_ms: 80,
    identity_headers: { subject: "x-id-sub" },
  };
  Object.assign(rich.issuers.demo, { jwks_uri: "https://idp.example.com/keys", typ: "at+jwt", cache_ttl_s: 900 });
  rich.limits.tenant_overrides["enterprise-demo"]["user-per-minute"] = { limit: 900, window_s: 30 };
  rich.routes.push({
    name: "tenant-host",
    methods: ["GET"],
    host: ":tenant.example.com:8443",
    path: "/h/*",
    auth: {
      issuers: ["demo"],
      audiences: ["https://api.example.com"],
      scopes: { any_of: ["api:read"] },
      groups: { any_of: ["staff"] },
      claims: [{ claim: "amr", one_of: ["mfa", 1, true] }],
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
    limits: [{ name: "ceiling", key: "route", limit: 50, window_s: 10, on_error: "allow" }],
  });

  // JSON's odd values: null, an empty array or object where the other is expected, numbers
  // as strings, a fraction, Infinity (`1e400` parses as it), a prototype property's name.
  const HOSTILE: unknown[] = [
    null,
    [],
    {},
    "",
    "1",
    0,
    -1,
    1.5,
    JSON.parse("1e400"),
    true,
    "__proto__",
    [null],
    ["constructor"],
    JSON.parse('{"__proto__": {"kind": "oidc"}}'),
  ];

  it("is a problem naming it (or a reference it broke), never a TypeError", () => {
    expect(problemsOf(rich)).toEqual([]);
    const paths = nodePaths(rich).filter(Boolean);
    // Enough of the policy that the sweep cannot pass by missing it.
    expect(paths).toEqual(
      expect.arrayContaining([
        "settings.identity_headers.subject",
        "issuers.access.team_domain",
        "routes[6].auth.claims[0].one_of[1]",
        "routes[6].cors.allow_credentials",
        "limits.tenant_overrides.enterprise-demo.user-per-minute.window_s",
      ]),
    );
    const unexplained: string[] = [];
    let refused = 0;
    for (const path of paths) {
      for (const value of HOSTILE) {
        const doc = structuredClone(rich);
        setAt(doc, path, structuredClone(value));
        let problems: string[];
        try {
          compilePolicy(doc);
          continue;
        } catch (error) {
          // A TypeError here would fail the test with its own stack: the validator must
          // answer every document with a PolicyError.
          if (!(error instanceof PolicyError)) throw error;
          problems = error.problems;
        }
        refused += 1;
        const fields = problems.map((problem) => problem.slice(0, problem.indexOf(": ")));
        expect(
          fields.every((field) => /^(version|settings|issuers|upstreams|limits|routes|policy)\b/.test(field)),
        ).toBe(true);
        // A value of the right shape may still break what refers to it (an issuer emptied
        // leaves its routes naming an issuer that is no more): those problems say so.
        const broke = problems.some((p) => /is not defined in|no tenant or user limit is named/.test(p));
        if (!fields.some((field) => concerns(field, path)) && !broke) {
          unexplained.push(`${path} = ${JSON.stringify(value)}: ${problems.join(" | ")}`);
        }
      }
    }
    expect(unexplained).toEqual([]);
    expect(refused).toBeGreaterThan(paths.length * 5);
  });
});

describe("issuer and upstream ids that are Object.prototype's property names", () => {
  let corp: TestIssuer;
  let partner: TestIssuer;
  beforeAll(async () => {
    corp = await makeIssuer("ES256");
    partner = await makeIssuer("ES256");
  });

  /** Parsed, as a policy file is: in an object literal `__proto__` would set the prototype. */
  const protoPolicy = (): PolicyDocument =>
    basePolicy({
      issuers: JSON.parse(
        `{"constructor": {"kind": "oidc", "issuer": "${corp.url}", "audiences": ["${AUDIENCE}"]},` +
          ` "__proto__": {"kind": "oidc", "issuer": "${partner.url}", "audiences": ["${AUDIENCE}"]}}`,
      ),
      upstreams: JSON.parse(`{"__proto__": {"url": "${echoOrigin}"}, "constructor": {"url": "${echoOrigin}/c"}}`),
      routes: [
        { name: "corp", methods: ["GET"], path: "/corp/**", auth: { issuers: ["constructor"] }, upstream: "__proto__" },
        {
          name: "partner",
          methods: ["GET"],
          path: "/partner/**",
          auth: { issuers: ["__proto__"] },
          upstream: "constructor",
        },
      ],
    });

  it("compile to the entries they name, and come back so from the artifact and the local stack's policy", () => {
    const doc = protoPolicy();
    expect(Object.hasOwn(doc.issuers!, "__proto__")).toBe(true);
    const compiled = compilePolicy(doc);
    expect(compiled.issuers.get("constructor")?.issuer).toBe(corp.url);
    expect(compiled.issuers.get("__proto__")?.issuer).toBe(partner.url);
    expect(compiled.routes.map((route) => [route.upstreamName, route.upstream])).toEqual([
      ["__proto__", { url: echoOrigin }],
      ["constructor", { url: `${echoOrigin}/c` }],
    ]);
    const artifact = JSON.parse(JSON.stringify(policyArtifact(compiled))) as PolicyArtifact;
    expect(policyFromArtifact(artifact)).toStrictEqual(compiled);
    // The local stack points them at loopback by name, and keeps every one of them.
    const local = localPolicy(doc);
    expect(Object.keys(local.issuers!)).toEqual(["constructor", "__proto__"]);
    expect(Object.keys(local.upstreams)).toEqual(["__proto__", "constructor"]);
    expect(compilePolicy(local).routes.map((route) => route.upstreamName)).toEqual(["__proto__", "constructor"]);
  });

  it("verify each issuer's tokens on its own route and forward to its own upstream", async () => {
    const edge = harness(protoPolicy());
    for (const [issuer, path, originPath, issuerId, upstream] of [
      [corp, "/corp/x", "/corp/x", "constructor", "__proto__"],
      [partner, "/partner/y", "/c/partner/y", "__proto__", "constructor"],
    ] as const) {
      const seen = marker();
      const token = await issuer.sign({ sub: `sub-${issuerId}` });
      const response = await edge.fetch(path, { headers: { authorization: `Bearer ${token}`, "x-test-marker": seen } });
      expect(response.status).toBe(200);
      const [record] = await originSaw(seen);
      expect(record?.path).toBe(originPath);
      expect(record?.headers["x-user-sub"]).toBe(`sub-${issuerId}`);
      expect(record?.headers["x-user-iss"]).toBe(issuer.url);
      expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", issuer: issuer.url, upstream });
      // The metrics name the issuer by its policy id.
      expect(edge.dataPoints.at(-1)?.blobs?.[5]).toBe(issuerId);
    }
    // Each route takes only the issuer it names, whatever the ids are.
    const crossed = await edge.fetch("/corp/x", { headers: { authorization: `Bearer ${await partner.sign()}` } });
    expect(crossed.status).toBe(401);
    expect(await crossed.json()).toMatchObject({ reason: "issuer_unknown" });
  });

  it("that the policy does not declare are refused by name, not found on the prototype", () => {
    const doc = protoPolicy() as any;
    doc.routes[0].auth.issuers = ["toString"];
    doc.routes[1].upstream = "hasOwnProperty";
    expect(problemsOf(doc)).toEqual([
      'routes[0].auth.issuers: "toString" is not defined in issuers',
      'routes[1].upstream: "hasOwnProperty" is not defined in upstreams',
    ]);
  });
});
