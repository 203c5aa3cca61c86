// Variations of the rediscovery of a key set's URI, the policy's checks for pasted discovery
// URLs, other routers' parameters and default limits no route takes, and the audit record's
// redaction of a JWT after dotted parts that begin like one: what each must still catch, and
// what it must leave alone.
import { describe, expect, it } from "vitest";
import type { AuditRecord } from "../../src/core/audit";
import { about, compileStepProblems, minimalPolicy as minimal } from "../support/policy-compile-step";
import { scriptedIssuer, signFor } from "../support/scripted-issuer";
import { Clock, verifierFor } from "../support/clocked-verifier";
import { basePolicy, harness } from "../support/harness";
import { b64url, makeKey } from "../support/issuers";

describe("discovery read again once a TTL (key-store.ts #fetchKeySet)", () => {
  // README (key sets): "If discovery cannot be read then, the remembered URI serves as before",
  // and discovery and the key set share one fetch_timeout_ms. A discovery document that does
  // not answer (a slow or stuck IdP front end, while its key set is served from a CDN) uses up
  // that deadline first, the remembered URI would be fetched with an aborted signal and the
  // refresh fail, so discovery gets half of it at most. Here the issuer rotates (k2 published
  // at the same address) while discovery hangs.
  it("a discovery that does not answer in time still lets the remembered key set serve a rotated key", async () => {
    const { host, fetcher } = scriptedIssuer();
    const k1 = await makeKey("ES256");
    const k2 = await makeKey("ES256");
    host.sets.set(host.jwksUri, { keys: [k1.publicJwk] });
    const clock = new Clock();
    // The lowest timeout the policy takes, so the deadline comes soon; nothing here is timed.
    const settings = { cache_ttl_s: 300, refresh_cooldown_s: 30, fetch_timeout_ms: 100 };
    const edge = verifierFor(host.iss, clock, settings, false, fetcher);
    expect(await edge.verify(await signFor(host.iss, clock, k1))).toMatchObject({ ok: true, keySource: "fetch" });
    await edge.settle();

    host.sets.set(host.jwksUri, { keys: [k1.publicJwk, k2.publicJwk] });
    host.discoveryHangs = true;
    clock.advance(301);
    host.asked.length = 0;
    const answer = await edge.verify(await signFor(host.iss, clock, k2));
    await edge.settle();
    // Discovery was asked (it was due), and the remembered URI was asked too.
    expect(host.asked).toContain(host.discoveryUrl);
    expect(host.asked).toContain(host.jwksUri);
    expect(answer, JSON.stringify(answer)).toMatchObject({ ok: true, keySource: "fetch" });
  });

  // README ("the clock steps back"): a set fetched "in the future" counts as older than its
  // TTL, and the cooldown ends rather than stretching over the step. So does the last reading
  // of discovery: read as recent, the refresh the step brings about would go to the remembered
  // (old) address until the clock had caught up and a TTL more had passed (here 600 + 300 s),
  // the withdrawn key serving on meanwhile.
  it("after the clock steps back, the refresh it brings about reads discovery again", async () => {
    const { host, fetcher } = scriptedIssuer();
    const withdrawn = await makeKey("ES256");
    const kept = await makeKey("ES256");
    host.sets.set(host.jwksUri, { keys: [withdrawn.publicJwk, kept.publicJwk] });
    const clock = new Clock();
    const settings = { cache_ttl_s: 300, refresh_cooldown_s: 30, rotation_grace_s: 0 };
    const edge = verifierFor(host.iss, clock, settings, false, fetcher);
    expect(await edge.verify(await signFor(host.iss, clock, withdrawn))).toMatchObject({ ok: true });
    await edge.settle();

    // The move: discovery names keys-v2, without the withdrawn key; keys-v1 still answers.
    host.jwksUri = `${host.iss}/keys-v2`;
    host.sets.set(host.jwksUri, { keys: [kept.publicJwk] });
    clock.advance(-600);
    host.asked.length = 0;
    const answer = await edge.verify(await signFor(host.iss, clock, withdrawn));
    await edge.settle();
    // The step did bring a refresh (the set now seems fetched in the future).
    expect(host.asked.length).toBeGreaterThan(0);
    expect(host.asked).toContain(host.discoveryUrl);
    expect(answer).toMatchObject({ ok: false, reason: "token_invalid" });
  });
});

describe("the discovery document's URL pasted where it does not belong (policy-issuers.ts)", () => {
  // Not only a URL that ends in /.well-known/openid-configuration: Azure AD B2C's discovery URL
  // names its user flow in the query (jwks_uri may carry one, so a query is no mistake in
  // itself), and RFC 8414's authorization-server metadata is the same mistake under another
  // name: neither document holds `keys`, and no token's iss ends so.
  it.each<[string, string, (doc: any) => void]>([
    [
      "Azure AD B2C's discovery URL, with its ?p= user flow, as jwks_uri",
      "issuers.idp.jwks_uri",
      (doc) =>
        (doc.issuers.idp.jwks_uri =
          "https://contoso.b2clogin.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration?p=B2C_1_signin"),
    ],
    [
      "RFC 8414 metadata as jwks_uri",
      "issuers.idp.jwks_uri",
      (doc) => (doc.issuers.idp.jwks_uri = "https://idp.example.com/.well-known/oauth-authorization-server"),
    ],
    [
      "RFC 8414 metadata as the issuer",
      "issuers.idp.issuer",
      (doc) => (doc.issuers.idp.issuer = "https://idp.example.com/.well-known/oauth-authorization-server"),
    ],
  ])("%s is refused, naming %s", (_label, field, change) => {
    const doc = minimal();
    change(doc);
    expect(compileStepProblems(doc)).toContainEqual(about(field));
  });

  it("the plain key set URL of the same B2C tenant, query and all, still deploys", () => {
    const doc = minimal();
    doc.issuers.idp.jwks_uri =
      "https://contoso.b2clogin.com/contoso.onmicrosoft.com/discovery/v2.0/keys?p=b2c_1_signin";
    expect(compileStepProblems(doc)).toEqual([]);
  });
});

describe("another router's parameter in a path pattern (routes.ts compilePathPattern)", () => {
  // OpenAPI writes a parameter with a format suffix as `{id}.json` (and `report.{format}`):
  // not `{…}` whole, but taken as a literal it would match only `/v1/reports/%7Bid%7D.json`,
  // and every report fall through to the public `/v1/**` after it.
  it.each(["/v1/reports/{id}.json", "/v1/reports/report.{format}", "/v1/files/<path:name>.txt"])(
    "%s is refused, naming routes[0].path",
    (path) => {
      const doc = minimal();
      doc.routes[0].path = path;
      doc.routes.push({ name: "public", methods: ["GET"], path: "/v1/**", auth: "public", upstream: "api" });
      expect(compileStepProblems(doc)).toContainEqual(about("routes[0].path"));
    },
  );

  it("a literal that merely holds a bracket mid-segment (a file name) is not taken for one", () => {
    const doc = minimal();
    doc.routes[0].path = "/v1/files/report[1]";
    expect(compileStepProblems(doc)).toEqual([]);
  });
});

describe("default limits no route takes (policy.ts)", () => {
  // README: "an authenticated route every default but ip": a `route` default is taken by
  // authenticated routes too. The problem for one that every route opts out of must not say
  // it applies "to public routes only", which would send the operator to add a public route.
  it("a route default every route opts out of is not said to be for public routes only", () => {
    const doc = minimal();
    doc.routes[0].inherit_default_limits = false;
    doc.limits = { defaults: [{ name: "ceiling", key: "route", limit: 5000, window_s: 60 }] };
    const problems = compileStepProblems(doc);
    expect(problems).toContainEqual(about("limits.defaults[0]"));
    expect(problems.join("\n")).not.toMatch(/route and ip limits to public routes only/);
  });

  // A route whose auth is refused (here "Public") must not bring a second problem, about a
  // default that the route, once its auth is written "public", does take: a false lead beside
  // the real one.
  it("a mistyped auth is the only problem of a public route that takes an ip default", () => {
    const doc = minimal();
    doc.routes[0].auth = "Public";
    doc.limits = { defaults: [{ name: "per-address", key: "ip", limit: 100, window_s: 60 }] };
    expect(compileStepProblems(doc)).toEqual([expect.stringMatching(/^routes\[0\]\.auth: .*"public"/)]);
  });
});

describe("a JWT after dotted parts that begin like one, in the audit record's path (audit.ts redactedRun)", () => {
  const header = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0";
  const payload = b64url(JSON.stringify({ iss: "https://idp.example/", sub: "victim", exp: 2e9 }));
  const state = b64url(JSON.stringify({ return_to: "/home" }));
  const nonce = b64url(JSON.stringify({ n: "abc" }));
  const random = (bytes: number) => b64url(crypto.getRandomValues(new Uint8Array(bytes)));

  /** The record of one request for `path` on the public route, and every trace it left. */
  async function recorded(path: string) {
    const edge = harness(basePolicy());
    const response = await edge.fetch(path);
    await response.text();
    expect(response.status).toBe(200);
    return { record: edge.audit[0] as AuditRecord, lines: [...edge.logs] };
  }

  // An encrypted ID token (RSA-OAEP: its encrypted key is not empty) after a state: a JWE
  // header inside the run told only by an empty key after it would end the run after the
  // state, the header and the key, and keep the iv, ciphertext and tag.
  it("an RSA-OAEP JWE after a base64url JSON state is recorded whole as [jwt]", async () => {
    const jweHeader = b64url(JSON.stringify({ alg: "RSA-OAEP", enc: "A256GCM" }));
    const [key, iv, ciphertext, tag] = [random(256), random(12), random(96), random(16)];
    const { record, lines } = await recorded(`/public/cb/${state}.${jweHeader}.${key}.${iv}.${ciphertext}.${tag}`);
    for (const [name, piece] of Object.entries({ key, iv, ciphertext, tag })) {
      const leaking = lines.find((line) => line.includes(piece));
      expect(leaking, `the ${name} is in: ${leaking?.slice(0, 200)}`).toBeUndefined();
    }
    expect(record.path).toBe("/public/cb/[jwt]");
  });

  // Two dotted parts that begin `eyJ` (a state and a nonce), then a JWT glued by `_`: the first
  // run takes three parts (state, nonce, `id_token_<header>`), and the JWT that begins inside
  // the third must be looked for there too, glued on as it is, or its signature would stay.
  it("a JWT glued by _ after two dotted parts that begin eyJ leaves no signature in the record", async () => {
    const signature = random(64);
    const { record, lines } = await recorded(`/public/cb/${state}.${nonce}.id_token_${header}.${payload}.${signature}`);
    const leaking = lines.find((line) => line.includes(signature));
    expect(leaking, `the signature is in: ${leaking?.slice(0, 200)}`).toBeUndefined();
    expect(record.path).toBe("/public/cb/[jwt]");
  });

  it("a JWS after a state, the case the change was made for, leaves nothing of the token", async () => {
    const signature = random(64);
    const { record, lines } = await recorded(`/public/cb/${state}.${header}.${payload}.${signature}`);
    expect(lines.some((line) => line.includes(signature))).toBe(false);
    expect(record.path).toBe("/public/cb/[jwt]");
  });
});
