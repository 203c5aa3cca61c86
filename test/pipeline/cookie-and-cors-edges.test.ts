// The cookie, cross-site and CORS checks at their edges: each test here fails if the one
// check it names is dropped, narrowed or loosened.
import { beforeAll, describe, expect, it } from "vitest";
import type { RouteConfig } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { accessAppEdge } from "../support/guarded-sites";
import { ACCESS_AUD_TAG } from "../support/issuers";
import { accessAssertion, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let team: TestIssuer;
beforeAll(async () => {
  team = await makeIssuer("RS256");
});

const accessEdge = (overrides: Partial<RouteConfig> = {}) => accessAppEdge(team, overrides);

describe("a cookie-authenticated post whose only word of its page is a Referer", () => {
  it("is refused when the Referer names a page with no origin (data:), which is no page of this site", async () => {
    // A data: or about: page (one an attacker opened, or a sandboxed frame of an old browser)
    // has the opaque origin "null": a page, and not this one. Read as no page at all, the post
    // would pass as a client that is no browser.
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const r = await sendMarked(accessEdge(), "/app/transfer", {
      method: "POST",
      body: "to=attacker",
      headers: { cookie: `CF_Authorization=${token}`, referer: "data:text/html,<form method=post></form>" },
    });
    expect(r.response.status).toBe(403);
    expect(r.body?.reason).toBe("cross_site_request");
    expect(r.record).toMatchObject({ reason: "cross_site_request", detail: "cross_site_origin", token_hash: null });
    expect(r.seen).toHaveLength(0);
  });
});

describe("an Access assertion in its header alone, beside other cookies, with another site's page in Referer", () => {
  // Referer is read only where the Access cookie came along, as a browser sends it by itself: a
  // script holding a service token's assertion may forward any Referer and any cookies of its
  // own, and is no page posting on a user's behalf.
  it("is judged no browser's post: it goes through with its cookies", async () => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const r = await sendMarked(accessEdge(), "/app/x", {
      method: "POST",
      body: "a=1",
      headers: { "cf-access-jwt-assertion": token, cookie: "theme=dark", referer: "https://evil.example/form.html" },
    });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", detail: null });
    expect(r.seen).toHaveLength(1);
    expect(r.got["x-user-email"]).toBe("user@example.com");
    expect(r.got.cookie).toBe("theme=dark");
  });
});

describe("Access-Control-Request-Method on a request that is no OPTIONS", () => {
  // Only an OPTIONS asks a preflight's question (browsers never let a page set
  // Access-Control-Request-*): a GET or POST carrying the header is the request itself, to be
  // authenticated and forwarded, never answered 204 as a preflight (a shared cache would keep
  // that empty answer for the page's real GET, and an unauthenticated POST would get an answer
  // meant for no request at all).
  const APP = "https://app.example.com";
  const corsEdge = () => accessEdge({ cors: { allow_origins: [APP], allow_credentials: true } });
  const asking = { origin: APP, "access-control-request-method": "POST", "sec-fetch-site": "same-site" };

  it("a POST without a credential is refused 401 token_missing, not answered as a preflight", async () => {
    const r = await sendMarked(corsEdge(), "/app/x", { method: "POST", body: "a=1", headers: asking });
    expect(r.response.status).toBe(401);
    expect(r.body?.reason).toBe("token_missing");
    expect(r.record).toMatchObject({ decision: "deny", reason: "token_missing", method: "POST" });
    expect(r.response.headers.get("access-control-allow-methods")).toBeNull();
    expect(r.seen).toHaveLength(0);
  });

  it("the allowed page's authenticated GET reaches the origin with the user's identity, and its answer is the origin's", async () => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const r = await sendMarked(corsEdge(), "/app/x", {
      headers: { ...asking, cookie: `CF_Authorization=${token}` },
    });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", method: "GET" });
    expect(r.seen).toHaveLength(1);
    expect(r.seen[0]).toMatchObject({ method: "GET", path: "/app/x" });
    expect(r.got["x-user-email"]).toBe("user@example.com");
    expect(r.response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(r.response.headers.get("access-control-allow-methods")).toBeNull();
  });
});

describe("a Cookie header without a credential cookie", () => {
  // Nothing to cut: the header goes on byte for byte as the client sent it, empty cookies and
  // all. Rebuilding it would drop a leading separator (`;theme=dark` as `theme=dark`), or the
  // whole header where it holds only separators: the origin would read another header than
  // the one the client sent.
  it.each([";theme=dark", ";", "theme=dark;;lang=en;", ",theme=dark"])(
    "%j reaches the origin exactly as sent",
    async (cookie) => {
      const r = await sendMarked(harness(basePolicy()), "/public/x", { headers: { cookie } });
      expect(r.response.status).toBe(200);
      expect(r.record).toMatchObject({ decision: "allow", route: "public" });
      expect(r.seen).toHaveLength(1);
      expect(r.got.cookie).toBe(cookie);
    },
  );
});

describe("a credential cookie hidden in another cookie's value", () => {
  // Python's SimpleCookie ends a cookie at a quote or a comma, and reads what follows as a
  // cookie of its own; cutting it out would change the other cookie's value, so the request
  // is refused before anything reaches the origin.
  it.each([
    // After a quote: the name in an opened quoted value.
    ['pref="CF_Authorization=forged"', "a quote"],
    // After a comma that is no cookie boundary (`[` is no token character, so the comma does
    // not end `pref`), the name spelt as PHP reads it (`[` as `_`).
    ["pref=a,CF[Authorization=forged", "a comma"],
    // After a vertical tab, whitespace to Python as a space is.
    ["pref=a\u000bCF_Authorization=forged", "a vertical tab"],
  ])("%s (after %s) is refused 400 credential_cookie_in_value, nothing forwarded", async (cookie) => {
    const r = await sendMarked(harness(basePolicy()), "/public/x", { headers: { cookie } });
    expect(r.response.status).toBe(400);
    expect(r.body?.reason).toBe("bad_request");
    expect(r.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "credential_cookie_in_value" });
    expect(r.seen).toHaveLength(0);
  });
});

describe("allow_headers written in any case", () => {
  // Browsers send Access-Control-Request-Headers in lower case; the policy may name a header
  // as it is usually spelt (`X-CSRF-Token`): compared case-insensitively, answered in lower case.
  const APP = "https://app.example.com";
  const caseEdge = () =>
    harness(
      basePolicy({
        routes: [
          {
            name: "form",
            methods: ["POST"],
            path: "/form/**",
            auth: "public",
            upstream: "echo",
            cors: { allow_origins: [APP], allow_headers: ["Content-Type", "X-CSRF-Token"] },
          },
        ],
      }),
    );

  it("a preflight asking for content-type and x-csrf-token is granted both", async () => {
    const r = await sendMarked(caseEdge(), "/form/x", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-csrf-token",
      },
    });
    expect(r.response.status).toBe(204);
    expect(r.response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(r.response.headers.get("access-control-allow-headers")).toBe("content-type, x-csrf-token");
    expect(r.seen).toHaveLength(0);
  });

  it("one header beyond them is still refused header_not_allowed", async () => {
    const r = await sendMarked(caseEdge(), "/form/x", {
      method: "OPTIONS",
      headers: {
        origin: APP,
        "access-control-request-method": "POST",
        "access-control-request-headers": "x-csrf-token,x-other",
      },
    });
    expect(r.response.status).toBe(403);
    expect(r.body?.reason).toBe("cors_rejected");
    expect(r.record).toMatchObject({ reason: "cors_rejected", detail: "header_not_allowed" });
    expect(r.response.headers.get("access-control-allow-headers")).toBeNull();
    expect(r.seen).toHaveLength(0);
  });
});

describe("the Access cookie's name beside ASCII whitespace other than space and tab", () => {
  // A vertical tab or form feed around the name is whitespace to String#trim, and to a lenient
  // server reading the name: the cookie is cut out as the credential it is (not left to be
  // read, nor the request refused as one hiding it), and the other cookies go on.
  it.each([
    "\u000bCF_Authorization=forged; theme=dark",
    "\u000cCF_Authorization=forged; theme=dark",
    "theme=dark; CF_Authorization\u000b=forged",
    "theme=dark; CF_Authorization\u000c=forged",
    // Behind an empty name (a browser sends `=CF_Authorization=…` back as its value alone).
    "theme=dark; \u000b=CF_Authorization=forged",
  ])("%j: the Access cookie is cut, theme=dark forwarded", async (cookie) => {
    const r = await sendMarked(harness(basePolicy()), "/public/x", { headers: { cookie } });
    expect(r.response.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow", reason: null });
    expect(r.seen).toHaveLength(1);
    expect(r.got.cookie).toBe("theme=dark");
  });
});
