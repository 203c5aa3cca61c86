// A seeded stream of hostile requests (odd paths, query names, cookies, credentials,
// Connection lists, CORS headers and client addresses) through public, tenant-bound,
// dual-transport and ip-limited routes, mixed with authenticated requests (a valid token or
// Access assertion, on the token's own tenant) that carry credential cookies and spoofed
// identity headers next to it: no answer is a 5xx other than 503, and whatever reached the
// origin carries no credential, query token or spoofed identity. What reached the origin is
// read from the origin's own record of each request, so every forwarded request is checked,
// and enough of each kind must have been forwarded that the checks cannot pass vacuously.
// Seeded, so a failure replays exactly.
import { beforeAll, describe, expect, it } from "vitest";
import { basePolicy, type EchoRecord, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, accessAssertion, makeIssuer, type TestIssuer } from "../support/issuers";

const ACCESS_TAG = "tag";
const ACCESS_SUB = "7335d417-61da-459d-899c-0a01c76a2f94";

let issuer: TestIssuer;
let team: TestIssuer;
beforeAll(async () => {
  issuer = await makeIssuer("ES256");
  team = await makeIssuer("RS256");
});

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * A name as lenient origin parsers read it, written apart from the edge's own reading: escapes
 * decoded where they can be, `+` as a space, cut at a NUL, case folded, `.`, ` ` and `[` as `_`.
 */
function lenient(name: string): string {
  let decoded = name;
  try {
    decoded = decodeURIComponent(name.replace(/%(?![0-9a-f]{2})/gi, "%25"));
  } catch {}
  return decoded.split("\0")[0]!.trim().toLowerCase().replace(/[. []/g, "_");
}

/** Whether a lenient parser (PHP's arrays included) reads this name as `wanted`. */
function readsAs(name: string, wanted: string): boolean {
  const n = lenient(name);
  return n === wanted || (n.startsWith(`${wanted}_`) && n.includes("]"));
}

/** Whether a `Cookie` value holds a cookie a lenient parser reads as the Access cookie. */
function holdsAccessCookie(cookie: string): boolean {
  return cookie.split(/[;,]/).some((part) => {
    // A nameless cookie (`=CF_Authorization=…`) is read by name by lenient servers.
    const pair = part.replace(/^[\s=]+/, "");
    const eq = pair.indexOf("=");
    return eq >= 0 && readsAs(pair.slice(0, eq).replace(/\+/g, " "), "cf_authorization");
  });
}

const IDENTITY_HEADERS = ["x-user-sub", "x-tenant", "x-user-scope", "x-user-groups", "x-user-email", "x-user-iss"];

/** The identity headers among these, in one order, so two sets compare as strings. */
function identityOf(headers: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    IDENTITY_HEADERS.flatMap((name) => (headers[name] === undefined ? [] : [[name, headers[name]]])),
  );
}

describe("hostile input sweep", () => {
  it("never answers 500 and never forwards a credential or a spoofed identity", async () => {
    const policy = basePolicy({
      issuers: {
        idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] },
        acc: { kind: "cloudflare_access", team_domain: team.url },
      },
      routes: [
        {
          name: "public",
          methods: ["GET", "POST"],
          path: "/public/**",
          auth: "public",
          upstream: "echo",
          cors: { allow_origins: ["https://app.example.com"], allow_credentials: true },
        },
        {
          name: "tenant",
          methods: ["GET"],
          path: "/t/:tenant/**",
          auth: { issuers: ["idp"] },
          upstream: "echo",
          limits: [{ name: "r", key: "route", limit: 100000, window_s: 60 }],
        },
        {
          name: "both",
          methods: ["GET", "POST"],
          path: "/both/**",
          auth: { issuers: ["idp", "acc"], audiences: [AUDIENCE, ACCESS_TAG] },
          upstream: "echo",
        },
        {
          name: "ip",
          methods: ["GET"],
          path: "/ip/**",
          auth: "public",
          upstream: "echo",
          limits: [{ name: "i", key: "ip", limit: 100000, window_s: 60 }],
        },
      ],
    });
    const edge = harness(policy);
    const good = await issuer.sign({ tenant_id: "acme" });
    const assertion = await accessAssertion(team, ACCESS_TAG, { sub: ACCESS_SUB });
    // The signatures: neither may reach the origin in any header, cookie or query.
    const secrets = [good.split(".")[2]!, assertion.split(".")[2]!];
    const r = rng(12345);
    const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)] as T;
    const pieces = [
      "a",
      "%",
      "%2",
      "%25",
      "%2e",
      "%2E%2e",
      "..",
      ".",
      ";",
      ":",
      "$",
      "~",
      "%C0%AE",
      "%E2%80%AE",
      "%EF%BC%8E",
      "%F0%9F%98%80",
      "%ff",
      "é",
      "ａ",
      "%u002e",
      "%00",
      "%20",
      " ",
      "+",
      "@",
      "!",
      "'",
      "(",
      "*",
      "\u0130",
      "%5C",
      "acme",
      "t",
      "public",
      "both",
      "ip",
      "%3A",
      "%24DATA",
      "::$DATA",
    ];
    const seg = () => Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(pieces)).join("");
    // Segments every route takes as they are (or canonicalises: `//`, an escaped letter).
    const plainSegments = ["a", "orders", "x.json", "%61", "~u", "v1", "", "2024-01-01", "a+b", "@me"];
    const plainPath = () =>
      Array.from({ length: 1 + Math.floor(r() * 3) }, () => (r() < 0.15 ? seg() : pick(plainSegments))).join("/");
    const qpieces = [
      "access_token",
      "a",
      "=",
      "&",
      ";",
      "%",
      "%2",
      "%5F",
      "%5f",
      "[",
      "]",
      "%00",
      "+",
      ".",
      "x",
      "acc%65ss_token",
      "%u0061",
      "%C5%BF",
      "K",
      "\u212a",
      "%E2%84%AA",
    ];
    const cpieces = [
      "CF_Authorization",
      "=",
      ";",
      ",",
      " ",
      '"',
      "a",
      "b=c",
      "cf%5Fauthorization",
      "CF.Authorization",
      "%",
      "+",
      good,
      "x=",
      "\t",
    ];
    // The Access cookie as it is sent, and as lenient origin parsers would read it.
    const accessCookieNames = [
      "CF_Authorization",
      "cf_authorization",
      "CF%5FAuthorization",
      "CF.Authorization",
      "CF+Authorization",
      "CF_Authorization[0]",
      "CF_Authorization%00x",
      "=CF_Authorization",
    ];
    const plainCookies = ["session=s", "theme=dark", "a=1", "prefs=a,b", 'q="x y"', "empty="];
    const hpieces = [
      "x-user-sub",
      "x_user_sub",
      "connection",
      "cookie",
      "authorization",
      "content-length",
      "host",
      "x-forwarded-for",
      "a",
      "te",
      "upgrade",
    ];
    const spoofed: [string, string][] = [
      ["x-user-sub", "admin"],
      ["X_User_Sub", "admin"],
      ["X.User.Sub", "admin"],
      ["x-tenant", "globex"],
      ["x_tenant", "globex"],
      ["x-user-scope", "admin:write"],
      ["x-user-groups", "admins"],
      ["x-user-email", "ceo@example.com"],
      ["x-user-iss", "https://evil.example"],
      ["cf-access-authenticated-user-email", "ceo@example.com"],
    ];

    interface Sent {
      url: string;
      method: string;
      headers: Headers;
      /** The tokens appear only where the edge must remove them (credentials, credential cookies). */
      credentialOnly: boolean;
      accessCookie: boolean;
      spoofedIdentity: boolean;
      /** How an authenticated request presents its credential. */
      via?: "bearer" | "cookie" | "header";
    }

    /** A request as a failure names it, the tokens shortened. */
    const show = (sent: Sent) =>
      `${sent.method} ${sent.url} ${JSON.stringify([...sent.headers])}`
        .replaceAll(good, "<token>")
        .replaceAll(assertion, "<assertion>");

    /** The original sweep: anything goes, valid or not. */
    const hostile = (): Sent => {
      const first = pick(["public", "t", "both", "ip", "x"]);
      const path = `/${first}/${Array.from({ length: Math.floor(r() * 4) }, seg).join("/")}`;
      const query = r() < 0.5 ? "" : `?${Array.from({ length: Math.floor(r() * 5) }, () => pick(qpieces)).join("")}`;
      const headers = new Headers();
      if (r() < 0.5)
        headers.set(
          "authorization",
          pick([
            `Bearer ${good}`,
            "Bearer",
            "Bearer x",
            `bearer ${good}x`,
            "Basic a",
            `Bearer ${good}, Bearer ${good}`,
            "Bearer a.b.c",
            `Bearer ${good.replace(/.$/, "A")}`,
          ]),
        );
      if (r() < 0.4) headers.set("cookie", Array.from({ length: Math.floor(r() * 6) }, () => pick(cpieces)).join(""));
      if (r() < 0.2) headers.set("cf-access-jwt-assertion", pick([good, "", ",", "a.b.c", `${good},${good}`]));
      if (r() < 0.2)
        headers.set("connection", Array.from({ length: 3 }, () => pick(hpieces)).join(pick([",", " ", ", "])));
      if (r() < 0.3) headers.set("origin", pick(["https://app.example.com", "null", "", "https://evil"]));
      if (r() < 0.3) headers.set("access-control-request-method", pick(["GET", "post", "", "DELETE", "HEAD", "x"]));
      if (r() < 0.2)
        headers.set(
          "access-control-request-headers",
          pick(["authorization", "x-a, ,", "", ",,,", "content-type,AUTHORIZATION"]),
        );
      if (r() < 0.3)
        headers.set(
          "cf-connecting-ip",
          pick([
            "1.2.3.4",
            "::1",
            "2001:db8::1",
            "",
            "garbage",
            "0x7f.1",
            "::ffff:1.2.3.4",
            "1.2.3.4.5",
            "[::1]",
            "1:2:3:4:5:6:7:8:9",
          ]),
        );
      const method = pick(["GET", "POST", "HEAD", "OPTIONS", "DELETE", "PATCH", "get"]);
      return {
        url: `https://edge.test${path}${query}`,
        method,
        headers,
        credentialOnly: false,
        accessCookie: holdsAccessCookie(headers.get("cookie") ?? ""),
        spoofedIdentity: false,
      };
    };

    /**
     * A request the edge should let through, on the token's own tenant, with a valid
     * credential next to credential cookies and spoofed identity headers; now and then one
     * hostile part (a segment, a query, a Connection list) on top.
     */
    const authenticated = (): Sent => {
      const route = pick(["tenant", "tenant", "both", "both", "public", "ip"]);
      const tenant = r() < 0.85 ? "acme" : "%61cme"; // a tenant captured escaped is compared decoded
      const path = {
        tenant: `/t/${tenant}/${plainPath()}`,
        both: `/both/${plainPath()}`,
        public: `/public/${plainPath()}`,
        ip: `/ip/${plainPath()}`,
      }[route]!;
      const query =
        r() < 0.7 ? "" : `?${r() < 0.5 ? "page=2&q=a+b" : Array.from({ length: 3 }, () => pick(qpieces)).join("")}`;
      const headers = new Headers();
      const cookies: string[] = [];
      let accessCookie = false;
      // How the request authenticates: a Bearer token, the Access cookie, or Access's header.
      const via = route === "both" ? pick(["bearer", "bearer", "cookie", "header"] as const) : "bearer";
      if (via === "bearer" && (route === "tenant" || route === "both" || r() < 0.5))
        headers.set("authorization", r() < 0.95 ? `Bearer ${good}` : `bearer ${good}`);
      if (via === "cookie") {
        cookies.push(`CF_Authorization=${assertion}`);
        accessCookie = true;
      }
      if (via === "header") headers.set("cf-access-jwt-assertion", assertion);
      // Credential cookies beside it, exact or spelt as lenient parsers read them (on the
      // Access route a second exact one is two credentials, which is refused).
      for (let n = Math.floor(r() * 3); n > 0; n--) {
        const name = pick(via === "cookie" ? accessCookieNames.slice(1) : accessCookieNames);
        cookies.push(`${name}=${pick([assertion, good, "forged.access.jwt"])}`);
        accessCookie = true;
      }
      for (let n = Math.floor(r() * 3); n > 0; n--) cookies.push(pick(plainCookies));
      if (cookies.length > 0) {
        for (let i = cookies.length - 1; i > 0; i--) {
          const j = Math.floor(r() * (i + 1));
          [cookies[i], cookies[j]] = [cookies[j]!, cookies[i]!];
        }
        headers.set("cookie", cookies.join(pick(["; ", ";", ", "])));
      }
      let spoofedIdentity = false;
      if (r() < 0.6) {
        for (let n = 1 + Math.floor(r() * 4); n > 0; n--) headers.set(...pick(spoofed));
        spoofedIdentity = true;
      }
      if (r() < 0.1) headers.set("connection", Array.from({ length: 2 }, () => pick(hpieces)).join(pick([",", ", "])));
      if (r() < 0.2) headers.set("origin", pick(["https://app.example.com", "https://evil", "null"]));
      if (r() < 0.3) headers.set("cf-connecting-ip", pick(["1.2.3.4", "2001:db8::1", "203.0.113.9"]));
      const method =
        route === "both" || route === "public" ? pick(["GET", "GET", "POST", "HEAD"]) : pick(["GET", "GET", "HEAD"]);
      return {
        url: `https://edge.test${path}${query}`,
        method,
        headers,
        credentialOnly: true,
        accessCookie,
        spoofedIdentity,
        via,
      };
    };

    const failures: string[] = [];
    // Per route: requests whose origin record was checked, and of those, the ones that
    // carried an Access cookie, spoofed identity headers, or were let in by the Access cookie.
    const checked = new Map<string, number>();
    const checkedWithCookie = new Map<string, number>();
    const checkedWithSpoofed = new Map<string, number>();
    let checkedViaAccessCookie = 0;
    const bump = (counts: Map<string, number>, key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);

    const checkOrigin = (sent: Sent, route: string | null, seen: EchoRecord) => {
      const where = show(sent);
      const h = seen.headers;
      const bad = Object.keys(h).filter(
        (n) => /authorization|assertion|user.sub|x.tenant/.test(n) && n !== "x-user-sub" && n !== "x-tenant",
      );
      if (bad.length) failures.push(`${where} leaked headers ${bad}`);
      if (route === "tenant" || route === "both") {
        // The verified identity, exactly, whatever the client wrote beside it.
        const viaAccess = h["x-user-sub"] === ACCESS_SUB;
        const expected = viaAccess
          ? { "x-user-sub": ACCESS_SUB, "x-user-scope": "", "x-user-iss": team.url, "x-user-email": "user@example.com" }
          : { "x-user-sub": "user-1", "x-tenant": "acme", "x-user-scope": "api:read", "x-user-iss": issuer.url };
        const got = identityOf(h);
        if (JSON.stringify(got) !== JSON.stringify(identityOf(expected)))
          failures.push(`${where} identity ${JSON.stringify(got)}`);
        if (viaAccess && sent.via === "cookie") checkedViaAccessCookie++;
      } else {
        const identity = IDENTITY_HEADERS.filter((n) => h[n] !== undefined);
        if (identity.length) failures.push(`${where} identity on a public route: ${identity}`);
      }
      if (h["cf-access-authenticated-user-email"] !== undefined) failures.push(`${where} spoofed Access email`);
      if (holdsAccessCookie(h.cookie ?? "")) failures.push(`${where} cookie leak ${h.cookie}`);
      for (const part of seen.query.split(/[&;]/)) {
        const eq = part.indexOf("=");
        if (readsAs((eq >= 0 ? part.slice(0, eq) : part).replace(/\+/g, " "), "access_token"))
          failures.push(`${where} query ${seen.query}`);
      }
      if (sent.credentialOnly) {
        const text = JSON.stringify(seen);
        if (secrets.some((secret) => text.includes(secret))) failures.push(`${where} token reached the origin`);
      }
      bump(checked, route ?? "none");
      if (sent.accessCookie) bump(checkedWithCookie, route ?? "none");
      if (sent.spoofedIdentity) bump(checkedWithSpoofed, route ?? "none");
    };

    // Sent in batches, each under its own marker, and matched with the origin's records after
    // each batch: a request counts as forwarded when the origin recorded it, HEAD included.
    const BATCH = 100;
    for (let start = 0; start < 2000; start += BATCH) {
      const batchMarker = marker();
      const sentInBatch = new Map<string, { sent: Sent; route: string | null; echoed: boolean }>();
      for (let i = start; i < start + BATCH; i++) {
        let sent: Sent;
        try {
          sent = r() < 0.45 ? authenticated() : hostile();
        } catch {
          continue; // a header value the runtime refuses to send
        }
        sent.headers.set("x-test-marker", batchMarker);
        sent.headers.set("x-test-fuzz", String(i));
        let response: Response;
        try {
          const init: RequestInit = { method: sent.method, headers: sent.headers };
          if (sent.method === "POST" || sent.method === "PATCH") init.body = "x";
          response = await edge.fetch(sent.url, init);
          await response.text();
        } catch (error) {
          failures.push(`${show(sent)} threw ${error}`);
          continue;
        }
        const record = edge.audit.at(-1);
        sentInBatch.set(String(i), {
          sent,
          route: record?.route ?? null,
          echoed: response.headers.get("x-echo") === "1",
        });
        if (response.status >= 500 && response.status !== 503)
          failures.push(`${show(sent)} -> ${response.status} ${JSON.stringify(record)}`);
      }
      const seenInBatch = await originSaw(batchMarker);
      const recorded = new Set<string>();
      for (const seen of seenInBatch) {
        const index = seen.headers["x-test-fuzz"] ?? "";
        const entry = sentInBatch.get(index);
        if (!entry) {
          failures.push(`the origin saw a request the sweep cannot place: ${JSON.stringify(seen)}`);
          continue;
        }
        recorded.add(index);
        checkOrigin(entry.sent, entry.route, seen);
      }
      // Whatever the origin answered was recorded there: no forwarded request goes unchecked.
      for (const [index, entry] of sentInBatch)
        if (entry.echoed && !recorded.has(index))
          failures.push(`${show(entry.sent)} answered by the origin, not in its record`);
    }
    expect(failures).toEqual([]);
    // Enough requests of every kind reached the origin that its checks ran where they matter:
    // on each route, on authenticated requests carrying credential cookies and spoofed
    // identity headers, and on requests the Access cookie itself let in.
    const counts = Object.fromEntries(
      ["public", "tenant", "both", "ip"].map((route) => [
        route,
        {
          checked: checked.get(route) ?? 0,
          withCookie: checkedWithCookie.get(route) ?? 0,
          withSpoofed: checkedWithSpoofed.get(route) ?? 0,
        },
      ]),
    );
    for (const route of ["public", "tenant", "both", "ip"]) {
      expect(counts[route]!.checked, `${route} checked`).toBeGreaterThanOrEqual(30);
      expect(counts[route]!.withSpoofed, `${route} with spoofed identity`).toBeGreaterThanOrEqual(10);
    }
    for (const route of ["tenant", "both"])
      expect(counts[route]!.withCookie, `${route} with an Access cookie`).toBeGreaterThanOrEqual(10);
    expect(checkedViaAccessCookie).toBeGreaterThanOrEqual(10);
  }, 120_000);
});
