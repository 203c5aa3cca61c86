// The hosts a request may carry as the runtime's URL parser leaves them, read as one host name or
// refused as ambiguous; and the URLs naming the upstream inside the origin's report, policy and
// challenge fields, made the edge's own without changing anything else in those values.
import { describe, expect, it } from "vitest";
import { upstreamUrlsOnEdge } from "../../src/core/origin-response";
import { isAmbiguousHost } from "../../src/core/routes";

const UPSTREAM = "https://origin.internal:8443/base";
const EDGE = "https://edge.test";

/** The host a request for `authority` carries once the runtime's URL parser has read it. */
const parsedHost = (authority: string) => new URL(`https://${authority}/`).host;

function rewritten(name: string, value: string, upstream = UPSTREAM): string | null {
  const headers = new Headers({ [name]: value });
  upstreamUrlsOnEdge(headers, upstream, EDGE);
  return headers.get(name);
}

describe("hosts real clients and the platform send are one host name", () => {
  it.each([
    // wrangler dev and miniflare, by name and by address, on their port.
    ["localhost:8787", "localhost:8787"],
    ["127.0.0.1:8787", "127.0.0.1:8787"],
    ["[::1]:8787", "[::1]:8787"],
    // IPv4 forms the URL parser writes as dotted decimal, and IPv4 inside IPv6.
    ["0x7f.1", "127.0.0.1"],
    ["[::ffff:192.0.2.1]", "[::ffff:c000:201]"],
    ["[0:0:0:0:0:0:0:1]", "[::1]"],
    // Internationalised names arrive in their ASCII (punycode) spelling.
    ["bücher.example", "xn--bcher-kva.example"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example"],
    // The hosts a service binding's caller chooses, a workers.dev name, a custom domain.
    ["fake-host", "fake-host"],
    ["internal", "internal"],
    ["portcullis.acme.workers.dev", "portcullis.acme.workers.dev"],
    ["API.Example.COM:8443", "api.example.com:8443"],
    // A fully qualified name, and an underscore label (a DNS name, not a host name rule).
    ["api.example.com.", "api.example.com."],
    ["_acme-challenge.example.com", "_acme-challenge.example.com"],
  ])("%s, read as %s, is routed as it stands", (authority, expected) => {
    const host = parsedHost(authority);
    expect(host).toBe(expected);
    expect(isAmbiguousHost(host)).toBe(false);
  });

  it.each([
    ["www.example.com,admin.example.com"],
    ["www.example.com%2cadmin.example.com"],
    ["admin.example.com;x"],
    ["*.example.com"],
    ["admin.example.com.."],
    [".admin.example.com"],
    ["a!b.example.com"],
    ["a~b.example.com"],
  ])("%s, which the URL parser keeps as it is, is ambiguous", (authority) => {
    expect(isAmbiguousHost(parsedHost(authority))).toBe(true);
  });
});

describe("a Report-To naming the upstream, as JSON encoders write it", () => {
  // RFC 8259 §7 lets `/` be written `\/`, and PHP's json_encode does so unless told not to
  // (JSON_UNESCAPED_SLASHES): `header('Report-To: ' . json_encode($group))` writes
  // `https:\/\/origin…`. A browser parses the field as JSON and posts its network-error
  // reports, the page's URL in each, straight to the upstream.
  it("an endpoint URL with escaped slashes is the edge's URL once the browser has parsed it", () => {
    const group =
      '{"group":"network-errors","max_age":2592000,"endpoints":[{"url":"https:\\/\\/origin.internal:8443\\/base\\/nel"}]}';
    const value = rewritten("report-to", group) ?? "";
    expect(value).not.toContain("origin.internal");
    expect(JSON.parse(value)).toEqual({
      group: "network-errors",
      max_age: 2592000,
      endpoints: [{ url: `${EDGE}/nel` }],
    });
  });
});

describe("a Report-To read as the browser parses its JSON", () => {
  it("an endpoint URL spelling its slashes as \\u002f is the edge's URL", () => {
    const group =
      '{"group":"nel","endpoints":[{"url":"https:\\u002f\\u002forigin.internal:8443\\u002fbase\\u002fnel"}]}';
    const value = rewritten("report-to", group) ?? "";
    expect(value).not.toContain("origin.internal");
    expect(JSON.parse(value)).toEqual({ group: "nel", endpoints: [{ url: `${EDGE}/nel` }] });
  });

  it("every group of the field is read, and each keeps its other members", () => {
    const groups =
      '{"group":"a","max_age":60,"endpoints":[{"url":"https://reports.example.net/a","priority":1}]}, ' +
      '{"group":"b","max_age":60,"endpoints":[{"url":"https://origin.internal:8443/base/b","weight":2}]}';
    const value = rewritten("report-to", groups) ?? "";
    expect(JSON.parse(`[${value}]`)).toEqual([
      { group: "a", max_age: 60, endpoints: [{ url: "https://reports.example.net/a", priority: 1 }] },
      { group: "b", max_age: 60, endpoints: [{ url: `${EDGE}/b`, weight: 2 }] },
    ]);
  });

  it("a field naming no upstream URL, or no JSON at all, is left byte for byte", () => {
    const other = '{ "group": "a", "endpoints": [ {"url": "https://reports.example.net/a"} ] }';
    expect(rewritten("report-to", other)).toBe(other);
    const broken = '{"endpoints":[{"url":"https://origin.internal:8443/base/nel"}]';
    expect(rewritten("report-to", broken)).toBe(broken);
  });
});

describe("Reporting-Endpoints and Speculation-Rules read as structured field strings", () => {
  // RFC 8941 §3.3.3: a string holds any printable character, `,` `;` and `'` included, with `"`
  // and `\` escaped; the browser takes the whole string as the URL.
  it("a URL holding a comma, semicolon or apostrophe is read whole", () => {
    expect(rewritten("reporting-endpoints", 'csp="https://origin.internal:8443/base/r,v2;x\'y"')).toBe(
      `csp="${EDGE}/r,v2;x'y"`,
    );
    // `/base,v2/r` is not under the upstream's `/base`: it goes on as written, not cut at the comma.
    const notUnderBase = 'csp="https://origin.internal:8443/base,v2/r"';
    expect(rewritten("reporting-endpoints", notUnderBase)).toBe(notUnderBase);
  });

  it("an escaped backslash is read as the browser reads the string: `\\\\\\\\host` is `\\\\host`, read as `//host`", () => {
    expect(rewritten("reporting-endpoints", 'csp="\\\\\\\\origin.internal:8443/base/r"')).toBe(`csp="${EDGE}/r"`);
  });

  it("an unclosed string goes on as written", () => {
    const unclosed = 'csp="https://origin.internal:8443/base/r';
    expect(rewritten("reporting-endpoints", unclosed)).toBe(unclosed);
  });

  it("a Speculation-Rules rule set naming the upstream is the edge's; the others as written", () => {
    expect(
      rewritten(
        "speculation-rules",
        '"https://origin.internal:8443/base/rules.json", "/r.json", "https://cdn.example.net/r.json"',
      ),
    ).toBe(`"${EDGE}/rules.json", "/r.json", "https://cdn.example.net/r.json"`);
  });
});

describe("a CSP report endpoint a browser reads as scheme-relative", () => {
  // Browsers resolve a report-uri against the page as the URL parser does: `/\host/…` is
  // `//host/…` for an https page, so the reports go to the upstream.
  it("report-uri /\\origin… is the edge's URL for the same path", () => {
    const csp = "default-src 'self'; report-uri /\\origin.internal:8443/base/csp";
    expect(rewritten("content-security-policy", csp)).toBe(`default-src 'self'; report-uri ${EDGE}/csp`);
  });
});

describe("the rest of a field naming the upstream goes on as written", () => {
  it("hashes, nonces, other sources and the directive after the report-uri are untouched", () => {
    const csp =
      "script-src 'self' 'sha256-q//6lK0dq+/+Ab//z9Ru0gXk0cH+w/nCq//a9Y1v3Zc=' 'nonce-r//aNd0m+/=' https://cdn.example.com/js/; " +
      "img-src https://origin.internal:8443/elsewhere/ data:; report-uri https://origin.internal:8443/base/csp; report-to csp";
    expect(rewritten("content-security-policy", csp)).toBe(
      "script-src 'self' 'sha256-q//6lK0dq+/+Ab//z9Ru0gXk0cH+w/nCq//a9Y1v3Zc=' 'nonce-r//aNd0m+/=' https://cdn.example.com/js/; " +
        `img-src https://origin.internal:8443/elsewhere/ data:; report-uri ${EDGE}/csp; report-to csp`,
    );
  });

  it("a challenge's quoted parameters keep their quotes and escapes; only the metadata URL moves", () => {
    const challenge =
      'Bearer realm="api \\"reports\\"", error="invalid_token", resource_metadata="https://origin.internal:8443/base/.well-known/oauth-protected-resource", Basic realm="staff"';
    expect(rewritten("www-authenticate", challenge)).toBe(
      `Bearer realm="api \\"reports\\"", error="invalid_token", resource_metadata="${EDGE}/.well-known/oauth-protected-resource", Basic realm="staff"`,
    );
  });

  it("Reporting-Endpoints members after a URL keep their places; a JSON URL with an escaped slash is the edge's as the browser parses it", () => {
    expect(
      rewritten(
        "reporting-endpoints",
        'csp="https://origin.internal:8443/base/r?a=1", default="https://reports.example.net/d";x',
      ),
    ).toBe(`csp="${EDGE}/r?a=1", default="https://reports.example.net/d";x`);
    expect(rewritten("report-to", '{"endpoints":[{"url":"https://origin.internal:8443/base/r\\/nel"}]}')).toBe(
      `{"endpoints":[{"url":"${EDGE}/r/nel"}]}`,
    );
  });

  it("a field naming no URL of the upstream is left byte for byte", () => {
    const csp = "default-src 'self' https://origin.internal:8443; report-uri https://reports.example.net/r";
    expect(rewritten("content-security-policy", csp)).toBe(csp);
  });
});
