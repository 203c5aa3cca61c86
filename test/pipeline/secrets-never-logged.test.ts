// "Nothing secret is ever logged or echoed" (README: Audit log, Metrics, Server-Timing,
// Errors, Security model "Credentials stop at the edge" and "Secrets never reach logs"; DESIGN
// invariants 4 and 5), walked through every place a client puts a credential: the
// Authorization header in each scheme and spelling, Proxy-Authorization, the Access cookie and
// header, API key headers, the query string, the path, the Referer, and the token's own header
// and claims. For each, what the edge leaves behind (audit records, data points, console lines,
// Server-Timing, the refusal's body and WWW-Authenticate) holds none of it, and what reaches
// the origin holds only what the README says goes on.
import { beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../src/core/audit";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness } from "../support/harness";
import {
  ACCESS_AUD_TAG,
  AUDIENCE,
  accessAssertion,
  b64url,
  makeIssuer,
  makeKey,
  type TestIssuer,
} from "../support/issuers";
import { type Sent, sendMarked } from "../support/sent";

/** The members a refusal's body may have (README, Errors): nothing finer than the reason. */
const PROBLEM_MEMBERS = ["type", "title", "status", "reason", "request_id"];

let idp: TestIssuer;
let team: TestIssuer;

beforeAll(async () => {
  [idp, team] = await Promise.all([makeIssuer("ES256"), makeIssuer("RS256")]);
});

/** Random base64url: a piece of it found in a trace can only have come from this request. */
function randomPart(bytes = 32): string {
  return b64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/**
 * An API route for the test IdP's bearer tokens, an Access application, and a public site,
 * with Server-Timing on so that its header is among the outputs checked.
 */
function edge(): Harness {
  const policy: PolicyDocument = basePolicy({
    settings: { limiter_timeout_ms: 2000, server_timing: true },
    issuers: {
      idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] },
      team: { kind: "cloudflare_access", team_domain: team.url },
    },
    routes: [
      { name: "api", methods: ["GET", "POST"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      {
        name: "app",
        methods: ["GET"],
        path: "/app/**",
        auth: { issuers: ["team"], audiences: [ACCESS_AUD_TAG] },
        upstream: "echo",
      },
      { name: "public", methods: ["GET", "POST"], path: "/public/**", auth: "public", upstream: "echo" },
    ],
  });
  return harness(policy);
}

/**
 * Everything the edge wrote for the requests so far: audit records and console lines, data
 * points, the answer's headers (Server-Timing and WWW-Authenticate among them), and the body
 * when it is the edge's own refusal (the echo origin's body is the origin's copy of what it got).
 */
function traces(on: Harness, sent: Sent): string[] {
  return [
    ...on.logs,
    ...on.dataPoints.map((point) => JSON.stringify(point)),
    ...[...sent.response.headers].map(([name, value]) => `${name}: ${value}`),
    ...(sent.body ? [sent.text] : []),
  ];
}

/** The first trace holding any of `secrets`, for the failure message; undefined when none does. */
function leakIn(lines: string[], secrets: string[]): string | undefined {
  for (const secret of secrets) {
    const line = lines.find((l) => l.includes(secret));
    if (line !== undefined) return `${secret.slice(0, 24)}… in: ${line.slice(0, 200)}`;
  }
  return undefined;
}

/** The Server-Timing value the edge writes: stage names and durations, nothing else (README, Server-Timing). */
const SERVER_TIMING = /^(auth|limit|upstream);dur=\d+(\.\d)?(, (auth|limit|upstream);dur=\d+(\.\d)?)*$/;
/** The only Bearer challenges a refusal here may carry: the realm and an RFC 6750 error code. */
const CHALLENGE = /^Bearer realm="portcullis"(, error="(invalid_request|invalid_token)")?$/;

describe("what reaches the origin of an authenticated request: the verified identity, never a credential", () => {
  it("keeps every credential the client sent, in every transport, from the origin and from every trace", async () => {
    const token = await idp.sign({ sub: "alice" });
    const signature = token.split(".")[2] as string;
    const proxy = randomPart();
    const cookie = await accessAssertion(team, ACCESS_AUD_TAG);
    const assertion = await accessAssertion(team, ACCESS_AUD_TAG, { sub: "someone-else" });
    const apiKey = `pk_live_${randomPart()}`;
    const authToken = randomPart();
    const inReferer = randomPart();
    const on = edge();
    const sent = await sendMarked(on, "/v1/orders?page=2", {
      headers: {
        authorization: `Bearer ${token}`,
        "proxy-authorization": `Basic ${btoa(`proxy:${proxy}`)}`,
        cookie: `theme=dark; CF_Authorization=${cookie}; lang=en`,
        "cf-access-jwt-assertion": assertion,
        "x-api-key": apiKey,
        "x-auth-token": authToken,
        // The page the client came from was opened with a token: escaped in its name, after a `;`, and in the fragment.
        referer: `https://app.example/cb?acc%65ss_token=${inReferer}&x=1;access_token=${inReferer}#access_token=${inReferer}`,
      },
    });

    expect(sent.response.status).toBe(200);
    expect(sent.record).toMatchObject({ decision: "allow", reason: null, route: "api", user_sub: "alice" });
    expect(sent.record?.token_hash).toMatch(/^[0-9a-f]{16}$/);
    // The origin: the identity the edge verified, the other cookies, the page without its token.
    expect(sent.seen).toHaveLength(1);
    expect(sent.got["x-user-sub"]).toBe("alice");
    expect(sent.got.cookie).toBe("theme=dark; lang=en");
    expect(sent.got.referer).toBe("https://app.example/cb?x=1");
    expect(sent.seen[0]?.query).toBe("page=2");
    for (const name of ["authorization", "proxy-authorization", "cf-access-jwt-assertion", "x-api-key", "x-auth-token"])
      expect(sent.got[name], name).toBeUndefined();
    const secrets = [signature, proxy, cookie.split(".")[2] as string, assertion.split(".")[2] as string, apiKey];
    expect(leakIn([JSON.stringify(sent.seen)], [...secrets, authToken, inReferer])).toBeUndefined();
    // The edge's own outputs: nothing of any of them, and Server-Timing only names and numbers.
    expect(sent.response.headers.get("server-timing")).toMatch(SERVER_TIMING);
    expect(leakIn(traces(on, sent), [...secrets, authToken, inReferer, token.split(".")[1] as string])).toBeUndefined();
  });

  it("keeps a claim holding another token out of every header the origin gets and out of every trace", async () => {
    // A verified token whose claims carry other credentials (an actor's token, a refresh token,
    // a link with a token in it): only the mapped identity goes on.
    const other = await idp.sign({ sub: "bob" });
    const refresh = randomPart();
    const token = await idp.sign({
      sub: "alice",
      act: { sub: "svc", token: other },
      refresh_token: refresh,
      picture: `https://cdn.example/p.png?sig=${refresh}`,
    });
    const on = edge();
    const sent = await sendMarked(on, "/v1/me", { headers: { authorization: `Bearer ${token}` } });
    expect(sent.response.status).toBe(200);
    expect(sent.record).toMatchObject({ decision: "allow", user_sub: "alice", tenant_id: "acme", issuer: idp.url });
    expect(Object.keys(sent.got).filter((name) => name.startsWith("x-user") || name === "x-tenant")).toEqual(
      expect.arrayContaining(["x-user-sub", "x-user-iss", "x-tenant", "x-user-scope"]),
    );
    const secrets = [other.split(".")[2] as string, other.split(".")[1] as string, refresh];
    expect(leakIn([JSON.stringify(sent.got)], secrets)).toBeUndefined();
    expect(leakIn(traces(on, sent), secrets)).toBeUndefined();
  });

  it("removes the Access cookie from an Access application's forwarded request and records the subject alone", async () => {
    const assertion = await accessAssertion(team, ACCESS_AUD_TAG);
    const on = edge();
    const sent = await sendMarked(on, "/app/home", { headers: { cookie: `a=1; CF_Authorization=${assertion}` } });
    expect(sent.response.status).toBe(200);
    expect(sent.record).toMatchObject({
      decision: "allow",
      route: "app",
      user_sub: "7335d417-61da-459d-899c-0a01c76a2f94",
    });
    expect(sent.got.cookie).toBe("a=1");
    expect(sent.got["cf-access-jwt-assertion"]).toBeUndefined();
    const secrets = [assertion.split(".")[2] as string, assertion.split(".")[1] as string];
    expect(leakIn([JSON.stringify(sent.seen)], secrets)).toBeUndefined();
    expect(leakIn(traces(on, sent), secrets)).toBeUndefined();
  });
});

describe("a public route passes no credential on either", () => {
  it.each([
    ["Bearer", (s: string) => `Bearer ${s}`],
    ["bearer in lower case", (s: string) => `bearer ${s}`],
    ["BEARER in upper case", (s: string) => `BEARER ${s}`],
    ["Basic", (s: string) => `Basic ${btoa(`alice:${s}`)}`],
    ["DPoP", (s: string) => `DPoP ${s}`],
    ["two joined", (s: string) => `Bearer ${s}, Bearer ${s}`],
  ])("Authorization: %s never reaches the origin or a trace", async (_scheme, value) => {
    const secret = `${randomPart()}.${randomPart()}.${randomPart()}`;
    const authorization = value(secret);
    const on = edge();
    const sent = await sendMarked(on, "/public/page", {
      headers: { authorization, "proxy-authorization": `Bearer ${secret}` },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.record).toMatchObject({ decision: "allow", route: "public", user_sub: null, token_hash: null });
    expect(sent.got.authorization).toBeUndefined();
    expect(sent.got["proxy-authorization"]).toBeUndefined();
    const pieces = [secret, ...secret.split("."), btoa(`alice:${secret}`)];
    expect(leakIn([JSON.stringify(sent.seen)], pieces)).toBeUndefined();
    expect(leakIn(traces(on, sent), pieces)).toBeUndefined();
  });

  it.each([
    "access_token",
    "ACCESS_TOKEN",
    "acc%65ss_token",
    "%61ccess%5Ftoken",
    "access+token",
    "access.token",
    "access_token[]",
  ])("takes %s out of the query, wherever and however often it stands, and the rest goes on as sent", async (name) => {
    const secret = randomPart();
    const on = edge();
    const sent = await sendMarked(on, `/public/page?${name}=${secret}&x=1;${name}=${secret}&y=2&${name}=${secret}`);
    expect(sent.response.status).toBe(200);
    expect(sent.seen[0]?.query).toBe("x=1&y=2");
    expect(sent.record?.path).toBe("/public/page");
    expect(leakIn([JSON.stringify(sent.seen)], [secret])).toBeUndefined();
    expect(leakIn(traces(on, sent), [secret])).toBeUndefined();
  });
});

describe("credentials in the query reach no trace, whatever the request's fate", () => {
  // README, Security model: other query parameters go to the origin as sent; the record keeps
  // the canonical path, never the query string.
  const NAMES = [
    "id_token",
    "code",
    "token",
    "api_key",
    "apikey",
    "key",
    "sig",
    "signature",
    "X-Amz-Signature",
    "password",
    "client_secret",
    "refresh_token",
    "state",
  ];

  it.each([
    { name: "let through on a public route", path: "/public/cb", status: 200, reason: null, auth: false },
    { name: "let through on an authenticated route", path: "/v1/cb", status: 200, reason: null, auth: true },
    { name: "refused for its missing credential", path: "/v1/cb", status: 401, reason: "token_missing", auth: false },
    { name: "refused as unrouted", path: "/nowhere", status: 404, reason: "route_not_found", auth: false },
  ])("$name", async ({ path, status, reason, auth }) => {
    const secret = randomPart();
    // Names in either case, parted by `&` and `;` in turn.
    const query = NAMES.map(
      (name, i) => `${i === 0 ? "" : i % 2 ? "&" : ";"}${i % 2 ? name.toUpperCase() : name}=${secret}${i}`,
    ).join("");
    const on = edge();
    const headers: Record<string, string> = auth ? { authorization: `Bearer ${await idp.sign()}` } : {};
    const sent = await sendMarked(on, `${path}?${query}`, { headers });
    expect(sent.response.status).toBe(status);
    expect(sent.record).toMatchObject({ reason, path });
    if (status === 200) expect(sent.seen[0]?.query).toBe(query);
    else expect(sent.seen).toEqual([]);
    expect(leakIn(traces(on, sent), [secret])).toBeUndefined();
  });

  it("a URL past max_url_bytes: refused, its sound path recorded, its query not", async () => {
    const secret = randomPart();
    const on = edge();
    const sent = await sendMarked(on, `/public/cb?code=${secret}&pad=${"a".repeat(9000)}&access_token=${secret}`);
    expect([sent.response.status, sent.body?.reason]).toEqual([400, "bad_request"]);
    expect(sent.record).toMatchObject({ reason: "bad_request", path: "/public/cb" });
    expect(sent.seen).toEqual([]);
    expect(leakIn(traces(on, sent), [secret])).toBeUndefined();
  });
});

describe("a refusal says nothing of the credential it refused", () => {
  // Each shape is refused for its documented reason, with a record naming the precise cause;
  // the answer's body has only the problem members and its challenge only the realm and error.
  const cases: {
    name: string;
    reason: string;
    detail: string;
    status: number;
    make: () => Promise<{ headers: Record<string, string>; secrets: string[]; path?: string }>;
  }[] = [
    {
      name: "a token in the query, alone",
      reason: "token_missing",
      detail: "query_token_not_accepted",
      status: 401,
      make: async () => {
        const token = await idp.sign();
        return { headers: {}, path: `/v1/x?acc%65ss_token=${token}`, secrets: [token.split(".")[2] as string] };
      },
    },
    {
      name: "a token in the query beside a Bearer header",
      reason: "token_malformed",
      detail: "multiple_methods",
      status: 400,
      make: async () => {
        const [query, header] = [await idp.sign({ sub: "q" }), await idp.sign()];
        return {
          headers: { authorization: `Bearer ${header}` },
          path: `/v1/x?a=1;ACCESS_TOKEN=${query}`,
          secrets: [query.split(".")[2] as string, header.split(".")[2] as string],
        };
      },
    },
    {
      name: "two Authorization headers",
      reason: "token_malformed",
      detail: "multiple_credentials",
      status: 400,
      make: async () => {
        const [a, b] = [await idp.sign(), await idp.sign({ sub: "b" })];
        const headers = new Headers();
        headers.append("authorization", `Bearer ${a}`);
        headers.append("authorization", `Bearer ${b}`);
        return {
          headers: Object.fromEntries(headers),
          secrets: [a.split(".")[2] as string, b.split(".")[2] as string],
        };
      },
    },
    {
      name: "Basic credentials",
      reason: "token_missing",
      detail: "unsupported_scheme",
      status: 401,
      make: async () => {
        const password = randomPart();
        return {
          headers: { authorization: `Basic ${btoa(`alice:${password}`)}` },
          secrets: [btoa(`alice:${password}`)],
        };
      },
    },
    {
      name: "a DPoP-scheme token",
      reason: "token_missing",
      detail: "unsupported_scheme",
      status: 401,
      make: async () => {
        const token = await idp.sign();
        return { headers: { authorization: `DPoP ${token}`, dpop: token }, secrets: [token.split(".")[2] as string] };
      },
    },
    {
      name: "characters no bearer token holds",
      reason: "token_malformed",
      detail: "bad_bearer_syntax",
      status: 400,
      make: async () => {
        const secret = randomPart();
        return { headers: { authorization: `Bearer eyJ!${secret}!.x.y` }, secrets: [secret] };
      },
    },
    {
      name: "parts that are not base64url JSON",
      reason: "token_invalid",
      detail: "bad_header",
      status: 401,
      make: async () => {
        const secret = randomPart(30);
        return { headers: { authorization: `Bearer ${secret}.${secret}.${secret}` }, secrets: [secret] };
      },
    },
    {
      name: "a header and claims carrying secrets, with a signature that does not verify",
      reason: "token_invalid",
      detail: "signature",
      status: 401,
      make: async () => {
        const secret = randomPart();
        const signed = await idp.sign({ password: secret, note: secret }, { header: { x_secret: secret } });
        const [header, payload] = signed.split(".") as [string, string];
        const forged = randomPart(64);
        return {
          headers: { authorization: `Bearer ${header}.${payload}.${forged}` },
          secrets: [secret, forged, header, payload],
        };
      },
    },
    {
      name: "a kid and a jku holding secrets",
      reason: "token_invalid",
      detail: "kid_unknown",
      status: 401,
      make: async () => {
        const secret = randomPart();
        const token = await idp.sign(
          {},
          {
            key: await makeKey("ES256", `kid-${secret}`),
            header: { jku: `https://keys.attacker.example/jwks?client_secret=${secret}` },
          },
        );
        return { headers: { authorization: `Bearer ${token}` }, secrets: [secret, token.split(".")[2] as string] };
      },
    },
    {
      name: "an iss holding a secret",
      reason: "issuer_unknown",
      detail: "issuer_not_configured",
      status: 401,
      make: async () => {
        const secret = randomPart();
        const token = await idp.sign({ iss: `https://user:${secret}@idp.example/?key=${secret}` });
        return { headers: { authorization: `Bearer ${token}` }, secrets: [secret, token.split(".")[2] as string] };
      },
    },
    {
      name: "a token longer than max_token_bytes",
      reason: "token_invalid",
      detail: "token_too_large",
      status: 401,
      make: async () => {
        // Past the default 8192 bytes, well within the header block's 32768.
        const secret = randomPart(7000);
        const token = await idp.sign({ padding: secret });
        return {
          headers: { authorization: `Bearer ${token}` },
          secrets: [secret.slice(0, 64), token.split(".")[2] as string],
        };
      },
    },
    {
      name: "an expired token",
      reason: "token_expired",
      detail: "exp",
      status: 401,
      make: async () => {
        const token = await idp.sign({ iat: 1_000, exp: 2_000 });
        return {
          headers: { authorization: `Bearer ${token}` },
          secrets: [token.split(".")[2] as string, token.split(".")[1] as string],
        };
      },
    },
  ];

  it.each(cases)("$name: $status $reason", async ({ reason, detail, status, make }) => {
    const { headers, secrets, path = "/v1/x" } = await make();
    const on = edge();
    const sent = await sendMarked(on, path, { headers });
    expect(sent.response.status).toBe(status);
    expect(sent.body?.reason).toBe(reason);
    expect(Object.keys(sent.body ?? {}).filter((key) => !PROBLEM_MEMBERS.includes(key))).toEqual([]);
    expect(sent.record).toMatchObject({
      decision: "deny",
      reason,
      detail,
      path: "/v1/x",
      user_sub: null,
      token_hash: null,
    });
    expect(sent.response.headers.get("www-authenticate")).toMatch(CHALLENGE);
    expect(sent.seen).toEqual([]);
    expect(leakIn(traces(on, sent), secrets)).toBeUndefined();
  });
});

describe("a JWT in the path is recorded as [jwt]", () => {
  it("on a request refused for its missing credential, and on one no route takes", async () => {
    const token = await idp.sign({ sub: "victim" });
    const on = edge();
    const refused = await sendMarked(on, `/v1/reset/${token}`);
    const unrouted = await sendMarked(on, `/reset-password/${token}/confirm`);
    expect([refused.response.status, refused.body?.reason]).toEqual([401, "token_missing"]);
    expect([unrouted.response.status, unrouted.body?.reason]).toEqual([404, "route_not_found"]);
    expect(refused.record?.path).toBe("/v1/reset/[jwt]");
    expect(unrouted.record?.path).toBe("/reset-password/[jwt]/confirm");
    const signature = token.split(".")[2] as string;
    expect(leakIn([...traces(on, refused), ...traces(on, unrouted)], [signature])).toBeUndefined();
  });

  // RFC 7515 §3 and RFC 7519 §7.1 let a JOSE header and a claims set carry whitespace (a token
  // from a library that pretty-prints its JSON, or a header written `{ "alg": … }`): their
  // base64url then begins `ew` or `eyA`, not `eyJ`. Recorded as `/public/cb/[jwt]` all the same,
  // signature and all.
  it.each([
    ["a header with a space after its brace", '{ "alg": "ES256", "kid": "k1" }', '{"sub":"victim","exp":2000000000}'],
    [
      "a pretty-printed header and claims set",
      '{\n  "alg": "ES256"\n}',
      '{\n  "sub": "victim",\n  "exp": 2000000000\n}',
    ],
    ["a compact header before a pretty-printed claims set", '{"alg":"ES256"}', '{\r\n "sub":"victim"}'],
  ])("whose JSON carries whitespace: %s", async (_name, header, payload) => {
    const signature = randomPart(64);
    const on = edge();
    const sent = await sendMarked(on, `/public/cb/${b64url(header)}.${b64url(payload)}.${signature}`);
    expect(sent.response.status).toBe(200);
    expect(sent.record?.path).toBe("/public/cb/[jwt]");
    expect(leakIn(traces(on, sent), [signature])).toBeUndefined();
  });
});

describe("the Referer the origin receives holds no credential of the page it names", () => {
  // RFC 9110 §10.1.3: a Referer "MUST NOT include the fragment and userinfo components of the
  // URI reference". Clients that fill Referer in themselves have sent a `user:password@` in it
  // (curl's `--referer ";auto"` on a redirect, CVE-2021-22876): it is removed, as the fragment
  // is, and the rest of the URL goes on unchanged.
  it("removes userinfo from the Referer, as it removes the fragment", async () => {
    const password = randomPart();
    const on = edge();
    const sent = await sendMarked(on, "/public/page", {
      headers: { referer: `https://alice:${password}@app.example/start?x=1#top` },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.got.referer).toBe("https://app.example/start?x=1");
    expect(leakIn([JSON.stringify(sent.seen)], [password])).toBeUndefined();
  });
});

describe("API keys stop at the edge, as the gateways in front of origins name them", () => {
  // API key headers stop at the edge (README, "Credentials stop at the edge"), as gateways name
  // them (`X-Api-Key`, Kong's `apikey`, Azure OpenAI's `api-key`, `x-apikey`), and as the most
  // used gateways and platforms read them by default: Azure API Management's subscription key,
  // Google APIs' key, Azure Functions' function key. Otherwise an unverified key would ride
  // along to the origin (and to a gateway before it) next to the identity the edge verified.
  it.each([
    ["Azure API Management", "Ocp-Apim-Subscription-Key"],
    ["Google APIs", "X-Goog-Api-Key"],
    ["Azure Functions", "X-Functions-Key"],
  ])("%s's %s never reaches the origin", async (_platform, name) => {
    const key = randomPart();
    const token = await idp.sign();
    const on = edge();
    const sent = await sendMarked(on, "/v1/orders", {
      headers: { authorization: `Bearer ${token}`, [name]: key, "x-api-key": key },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.record).toMatchObject({ decision: "allow", user_sub: "user-1" });
    expect(sent.got["x-api-key"]).toBeUndefined();
    expect(sent.got[name.toLowerCase()]).toBeUndefined();
    expect(leakIn([JSON.stringify(sent.seen)], [key])).toBeUndefined();
    expect(leakIn(traces(on, sent), [key])).toBeUndefined();
  });
});

describe("a record is written for each request checked above", () => {
  it("one per request, with no field holding anything a client sent but the canonical path", async () => {
    const token = await idp.sign();
    const on = edge();
    const marker = randomPart();
    const sent = await sendMarked(on, `/v1/${marker}?q=${marker}`, {
      headers: {
        authorization: `Bearer ${token}`,
        "user-agent": marker,
        origin: `https://${marker}.example`,
        "x-forwarded-for": marker,
        "cf-connecting-ip": "203.0.113.9",
      },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.records).toHaveLength(1);
    const record = sent.record as AuditRecord;
    const holding = Object.entries(record)
      .filter(([, value]) => JSON.stringify(value)?.includes(marker))
      .map(([field]) => field);
    expect(holding).toEqual(["path"]);
    expect(on.dataPoints).toHaveLength(1);
    expect(JSON.stringify(on.dataPoints[0])).not.toContain(marker);
    // An allowed request's data point keeps no client address (README, Metrics).
    expect(JSON.stringify(on.dataPoints[0])).not.toContain("203.0.113.9");
  });
});
