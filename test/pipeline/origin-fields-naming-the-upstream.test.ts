// What of the origin's answer reaches the client, field by field, beyond Location,
// Content-Location, Refresh and Link. The upstream sits at a private address
// (`https://origin.internal:8443/base`) that no client should learn or be sent to: the origin is
// sent that host (`Host`), so one that writes absolute URLs from it names the upstream in any
// field that carries a URL, and a browser or API client acts on each of them by itself (reports
// posted, metadata fetched, an operation polled with the caller's own token). The origin here is
// the runtime's fetch answering for that upstream with the fields each test chooses, so the
// answer passes every stage a deployed edge's does (re-wrapped, the upstream's URLs made the
// edge's, Vary and cache rules, request id).
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { PolicyDocument, RouteConfig } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";

const UPSTREAM = "https://origin.internal:8443/base";
const UPSTREAM_HOST = "origin.internal";
const EDGE = "https://edge.test";

let issuer: TestIssuer;
beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** A request as it reached the upstream. */
interface Reached {
  url: string;
  method: string;
  headers: Record<string, string>;
}

/**
 * The upstream answers every request with `status` and `fields` (and a small JSON body); what
 * reached it is returned. Every other fetch (the identity provider's keys) goes out as usual.
 */
function upstreamAnswers(fields: [string, string][], status = 200): Reached[] {
  const reached: Reached[] = [];
  const real = globalThis.fetch;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!url.startsWith(UPSTREAM)) return real(input, init);
    const request = new Request(url, init);
    reached.push({ url, method: request.method, headers: Object.fromEntries(request.headers) });
    const headers = new Headers({ "content-type": "application/json" });
    for (const [name, value] of fields) headers.append(name, value);
    const body = status === 204 || status === 304 ? null : '{"ok":true}';
    return new Response(body, { status, headers });
  });
  return reached;
}

/** An edge whose routes forward to the private upstream. */
function edgeWith(routes: RouteConfig[]): Harness {
  const policy: PolicyDocument = basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    upstreams: { app: { url: UPSTREAM, timeout_ms: 2000 } },
    routes,
  });
  return harness(policy);
}

/** A public page route and an authenticated API route, both on the upstream. */
function siteAndApi(): Harness {
  return edgeWith([
    { name: "pages", methods: ["GET"], path: "/pages/**", auth: "public", upstream: "app" },
    {
      name: "api",
      methods: ["GET", "POST"],
      path: "/api/**",
      auth: { issuers: ["idp"], resource_metadata: `${EDGE}/.well-known/oauth-protected-resource/api` },
      upstream: "app",
    },
  ]);
}

/** A page's answer through the edge, its record, and what reached the upstream. */
async function page(edge: Harness, fields: [string, string][], status = 200) {
  const reached = upstreamAnswers(fields, status);
  const response = await edge.fetch("/pages/account?tab=1");
  await response.arrayBuffer();
  expect(reached.map((r) => r.url)).toEqual([`${UPSTREAM}/pages/account?tab=1`]);
  expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "pages", status, reason: null });
  return response;
}

/** An API call with a caller's token, its record, and what reached the upstream. */
async function apiCall(edge: Harness, fields: [string, string][], status: number, method = "POST") {
  const reached = upstreamAnswers(fields, status);
  const token = await issuer.sign({ sub: "alice", scope: "api:read" });
  const response = await edge.fetch("/api/reports", {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(method === "POST" ? { body: "{}" } : {}),
  });
  await response.arrayBuffer();
  expect(reached.map((r) => [r.method, r.url])).toEqual([[method, `${UPSTREAM}/api/reports`]]);
  // The caller's token stops at the edge: the upstream never sees it.
  expect(reached[0]?.headers.authorization).toBeUndefined();
  expect(reached[0]?.headers["x-user-sub"]).toBe("alice");
  expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", route: "api", status, reason: null, user_sub: "alice" });
  return response;
}

describe("fields that send a browser's reports to a URL naming the upstream", () => {
  // Browsers post violation and network-error reports by themselves to the URL these fields
  // name: the page's own URL with its query, the referrer and the blocked URL in each report.
  // An origin that writes that URL from the Host it was sent (Laravel's `route()`, Rails'
  // `*_url` helpers, Flask's `url_for(_external=True)`, without a trusted proxy) names the
  // private upstream: every page tells every visitor its address, and the reports go past the
  // edge (or nowhere), as a Location naming it would send the browser.
  it("a Content-Security-Policy report-uri is the edge's URL for the same path", async () => {
    const edge = siteAndApi();
    const response = await page(edge, [
      ["content-security-policy", `default-src 'self'; report-uri ${UPSTREAM}/csp-reports`],
    ]);
    expect(response.headers.get("content-security-policy")).toBe(`default-src 'self'; report-uri ${EDGE}/csp-reports`);
  });

  it("a source naming the upstream under its path is the edge's too, every other source as written", async () => {
    const edge = siteAndApi();
    const response = await page(edge, [
      [
        "content-security-policy",
        `default-src 'self'; img-src ${UPSTREAM}/img/ https://cdn.example.net 'sha256-ab//c='`,
      ],
    ]);
    expect(response.headers.get("content-security-policy")).toBe(
      `default-src 'self'; img-src ${EDGE}/img/ https://cdn.example.net 'sha256-ab//c='`,
    );
  });

  it("a Content-Security-Policy-Report-Only report-uri is the edge's URL for the same path", async () => {
    const edge = siteAndApi();
    const response = await page(edge, [
      ["content-security-policy-report-only", `script-src 'self'; report-uri ${UPSTREAM}/csp-reports?mode=ro`],
    ]);
    expect(response.headers.get("content-security-policy-report-only")).toBe(
      `script-src 'self'; report-uri ${EDGE}/csp-reports?mode=ro`,
    );
  });

  it("a Reporting-Endpoints endpoint (the Reporting API's CSP report-to target) is the edge's URL", async () => {
    const edge = siteAndApi();
    const response = await page(edge, [
      ["content-security-policy", "default-src 'self'; report-to csp-endpoint"],
      ["reporting-endpoints", `csp-endpoint="${UPSTREAM}/reports", default="${UPSTREAM}/reports/default"`],
    ]);
    expect(response.headers.get("reporting-endpoints")).toBe(
      `csp-endpoint="${EDGE}/reports", default="${EDGE}/reports/default"`,
    );
  });

  it("a Report-To group's endpoint URL (NEL's reports) is the edge's URL", async () => {
    const edge = siteAndApi();
    const group = `{"group":"network-errors","max_age":2592000,"endpoints":[{"url":"${UPSTREAM}/nel"}]}`;
    const response = await page(edge, [
      ["report-to", group],
      ["nel", '{"report_to":"network-errors","max_age":2592000}'],
    ]);
    const reportTo = response.headers.get("report-to") ?? "";
    expect(reportTo).not.toContain(UPSTREAM_HOST);
    expect(JSON.parse(reportTo)).toEqual({
      group: "network-errors",
      max_age: 2592000,
      endpoints: [{ url: `${EDGE}/nel` }],
    });
    // NEL names a group, no URL: as sent.
    expect(response.headers.get("nel")).toBe('{"report_to":"network-errors","max_age":2592000}');
  });
});

describe("fields that have a browser fetch a URL naming the upstream by itself", () => {
  // Speculation rules (a page's prefetch and prerender rule sets) and a script's source map
  // are fetched by the browser from the URL the field names, past the edge if it names the
  // upstream.
  it("a Speculation-Rules rule set and a SourceMap are the edge's URLs; a relative rule set goes on as written", async () => {
    const edge = siteAndApi();
    const response = await page(edge, [
      ["speculation-rules", `"${UPSTREAM}/rules/prefetch.json", "/rules/prerender.json"`],
      ["sourcemap", `${UPSTREAM}/assets/app.js.map`],
      ["x-sourcemap", `//${UPSTREAM_HOST}:8443/base/assets/old.js.map`],
    ]);
    expect(response.headers.get("speculation-rules")).toBe(`"${EDGE}/rules/prefetch.json", "/rules/prerender.json"`);
    expect(response.headers.get("sourcemap")).toBe(`${EDGE}/assets/app.js.map`);
    expect(response.headers.get("x-sourcemap")).toBe(`${EDGE}/assets/old.js.map`);
  });
});

describe("fields an API client follows by itself to a URL naming the upstream", () => {
  // RFC 9728 §5.1: a client reads `resource_metadata` from the challenge and fetches the
  // metadata there (MCP's authorization specification requires it, the 403 `insufficient_scope`
  // step-up included, which the server answers for tools it guards itself). Named on the
  // upstream, the client's discovery goes to a host it cannot reach, and the address is told.
  it("an origin's 403 insufficient_scope challenge names the edge's metadata URL, not the upstream's", async () => {
    const edge = siteAndApi();
    const challenge = `Bearer error="insufficient_scope", scope="reports:write", resource_metadata="${UPSTREAM}/.well-known/oauth-protected-resource/api"`;
    const response = await apiCall(edge, [["www-authenticate", challenge]], 403);
    expect(response.headers.get("www-authenticate")).toBe(
      `Bearer error="insufficient_scope", scope="reports:write", resource_metadata="${EDGE}/.well-known/oauth-protected-resource/api"`,
    );
  });

  // Azure's long-running operations (and the REST API guidelines many ASP.NET APIs follow):
  // a 202 names the status monitor in Operation-Location (or Azure-AsyncOperation), which the
  // SDKs' pollers request again and again with the caller's bearer token, as they follow a
  // Location. Written from Request.Host without forwarded headers, it names the upstream: the
  // token would go straight to it.
  it.each([["operation-location"], ["azure-asyncoperation"]])(
    "a 202's %s naming the upstream is the edge's URL for the same path",
    async (field) => {
      const edge = siteAndApi();
      const response = await apiCall(edge, [[field, `${UPSTREAM}/api/operations/42?api-version=2024-01-01`]], 202);
      expect(response.headers.get(field)).toBe(`${EDGE}/api/operations/42?api-version=2024-01-01`);
    },
  );
});

describe("an alternative service at the upstream's host", () => {
  // Alt-Svc (RFC 7838) tells the browser that the edge's own origin may be reached at another
  // host and port: every later request to the edge's host, with its cookies (the Access cookie
  // among them), would go over a connection to that host wherever it presents a certificate
  // for the edge's name (a wildcard shared with the origin), past every check of the edge. The
  // origin's alternatives describe its own listeners, never the edge's (whose transport,
  // HTTP/3 included, Cloudflare advertises itself); one that names the upstream must not reach
  // the browser.
  it("an origin's Alt-Svc naming the upstream's host does not reach the client", async () => {
    const edge = siteAndApi();
    const response = await page(edge, [
      ["alt-svc", `h3="${UPSTREAM_HOST}:8443"; ma=86400, h2="${UPSTREAM_HOST}:8443"`],
    ]);
    expect(response.headers.get("alt-svc") ?? "").not.toContain(UPSTREAM_HOST);
  });

  it.each(['h3=":443"; ma=86400', "clear"])(
    "an origin's Alt-Svc `%s` does not reach the client at all",
    async (value) => {
      const edge = siteAndApi();
      const response = await page(edge, [["alt-svc", value]]);
      expect(response.headers.has("alt-svc")).toBe(false);
    },
  );
});

describe("the same fields naming another host go on as written", () => {
  // Only the upstream's own URLs are the edge's to rewrite: a reporting service, an
  // authorisation server's metadata or another service's monitor is the origin's choice.
  it("report endpoints at a reporting service, and a monitor on another host, are passed on byte for byte", async () => {
    const edge = siteAndApi();
    const csp = "default-src 'self'; report-uri https://acme.report-uri.com/r/d/csp/enforce; report-to default";
    const endpoints = 'default="https://acme.report-uri.com/a/d/g"';
    const response = await page(edge, [
      ["content-security-policy", csp],
      ["reporting-endpoints", endpoints],
    ]);
    expect(response.headers.get("content-security-policy")).toBe(csp);
    expect(response.headers.get("reporting-endpoints")).toBe(endpoints);

    const monitor = "https://jobs.example.net/operations/42";
    const accepted = await apiCall(edge, [["operation-location", monitor]], 202);
    expect(accepted.headers.get("operation-location")).toBe(monitor);
  });
});

describe("Location and Content-Location naming the upstream, whatever the status", () => {
  // A 201's Location names the new resource (tus and most REST APIs upload or create there
  // next, with the caller's token); a 200's Content-Location names the representation.
  it("a 201's Location and a 200's Content-Location are the edge's URLs", async () => {
    const edge = siteAndApi();
    const created = await apiCall(edge, [["location", `${UPSTREAM}/api/reports/7`]], 201);
    expect(created.headers.get("location")).toBe(`${EDGE}/api/reports/7`);
    const shown = await page(edge, [["content-location", `${UPSTREAM}/pages/account.html`]]);
    expect(shown.headers.get("content-location")).toBe(`${EDGE}/pages/account.html`);
  });
});

describe("fields the edge writes itself, beside the origin's", () => {
  it("the origin's x-request-id is replaced by the edge's, the one its audit record carries", async () => {
    const edge = siteAndApi();
    const response = await page(edge, [["x-request-id", "origin-chosen"]]);
    const id = response.headers.get("x-request-id");
    expect(id).not.toBe("origin-chosen");
    expect(id).toBe(edge.audit.at(-1)?.request_id);
  });

  // `Vary: *` already says no cache may reuse the answer; the credential is named beside it for
  // a cache that reads past it.
  it("an origin's Vary: * on an answer to a token keeps the * and names Authorization", async () => {
    const edge = siteAndApi();
    const response = await apiCall(edge, [["vary", "*"]], 200, "GET");
    const members = (response.headers.get("vary") ?? "").split(",").map((m) => m.trim().toLowerCase());
    expect(members).toEqual(["*", "authorization"]);
  });

  // The whole origin's transport security is the operator's: an origin that sends HSTS with
  // includeSubDomains means it for the edge's host too (HTTPS-only at Cloudflare either way).
  it("an origin's Strict-Transport-Security is passed on as sent", async () => {
    const edge = siteAndApi();
    const hsts = "max-age=63072000; includeSubDomains; preload";
    const response = await page(edge, [["strict-transport-security", hsts]]);
    expect(response.headers.get("strict-transport-security")).toBe(hsts);
  });
});
