// Foundation stages against hostile input: odd paths, spoofed identity headers, Connection
// tricks, method overrides, oversized input, CORS. Each asserts the reason and what (if
// anything) reached the origin.
import { describe, expect, it } from "vitest";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { AUDIENCE, makeIssuer } from "../support/issuers";
import { sendMarked, sentStraightToOrigin } from "../support/sent";

const policy = () =>
  basePolicy({
    routes: [
      {
        name: "public",
        methods: ["GET", "POST"],
        path: "/public/**",
        auth: "public",
        upstream: "echo",
        cors: {
          allow_origins: ["https://app.example.com"],
          allow_headers: ["content-type", "authorization"],
          expose_headers: ["x-request-id"],
        },
      },
      { name: "plain", methods: ["GET"], path: "/plain/**", auth: "public", upstream: "echo" },
      { name: "item", methods: ["GET"], path: "/items/*", auth: "public", upstream: "echo" },
      { name: "upload", methods: ["POST", "PUT", "PATCH"], path: "/upload/**", auth: "public", upstream: "echo" },
      { name: "options", methods: ["GET", "OPTIONS"], path: "/opts/**", auth: "public", upstream: "echo" },
      { name: "options-delete", methods: ["DELETE"], path: "/opts/**", auth: "public", upstream: "echo" },
    ],
  });

async function send(path: string, init: RequestInit = {}) {
  return sendMarked(harness(policy()), path, init);
}

/**
 * Sends `spoofed` and `kept` to a public route: none of the spoofed headers (in whatever case
 * they were sent) reaches the origin, and each kept one does, unchanged. What the origin received.
 */
async function expectStripped(spoofed: Record<string, string>, kept: Record<string, string> = {}) {
  const { seen } = await send("/public/a", { headers: { ...spoofed, ...kept } });
  const got = seen[0]!.headers;
  for (const name of Object.keys(spoofed)) expect(got[name.toLowerCase()], name).toBeUndefined();
  for (const [name, value] of Object.entries(kept)) expect(got[name], name).toBe(value);
  return seen;
}

describe("canonical path", () => {
  it.each([
    ["/public//a///b", "/public/a/b"],
    ["/public/./a", "/public/a"],
    ["/public/x/../a", "/public/a"],
    ["/public/%61%62c", "/public/abc"],
    ["/plain/../public/a", "/public/a"],
    ["/public/%2e%2e/public/a", "/public/a"],
  ])("%s reaches the origin as %s", async (path, expected) => {
    const { response, seen } = await send(path);
    expect(response.status).toBe(200);
    expect(seen[0]?.raw_target).toBe(expected);
  });

  it.each([
    ["/public/a%2Fb", "encoded_slash"],
    ["/public/a%2fb", "encoded_slash"],
    ["/public/a%5Cb", "encoded_backslash"],
    ["/public/a%00b", "control_character"],
    ["/public/a%0D%0Ax-user-sub:%20admin", "control_character"],
    ["/public/a;jsessionid=1", "path_parameter"],
    ["/public/%zz", "bad_percent_encoding"],
    ["/public/%252e%252e/admin", "double_encoding"],
    ["/public/%25%32%65%25%32%65/admin", "double_encoding"],
    ["/public/%25u002e%25u002e/admin", "double_encoding"],
    ["/public/%252f..%252fadmin", "double_encoding"],
    ["/public/%C0%AE%C0%AE/admin", "invalid_utf8"],
    // A stray continuation byte, and a sequence cut short.
    ["/public/a%80b", "invalid_utf8"],
    ["/public/a%E2%82/admin", "invalid_utf8"],
    // Escaped `?` and `#`: an origin that decodes before splitting the query cuts the path there.
    ["/public/a%3F/x", "path_parameter"],
    ["/public/a%23/x", "path_parameter"],
    // What Windows servers read without trailing dots and spaces, and NFKC-normalising ones as
    // ASCII: `/public/..`, climbing out of the public prefix.
    ["/public/..%20/admin", "ambiguous_segment"],
    ["/public/%EF%BC%8E%EF%BC%8E/admin/users", "ambiguous_segment"],
    ["/public/..%EF%BC%8F/admin", "ambiguous_segment"],
    ["/plain./x", "ambiguous_segment"],
    // Fullwidth `ａ`, sent as it is (the URL parser escapes it) and escaped: NFKC reads `admin`.
    ["/public/ａdmin/users", "ambiguous_segment"],
    ["/public/%EF%BD%81dmin/users", "ambiguous_segment"],
    // NTFS stream names: IIS reads `admin::$DATA` as the file `admin`, and
    // `admin:$i30:$INDEX_ALLOCATION` as the directory, however the colons are spelt.
    ["/public/admin::$DATA", "ambiguous_segment"],
    ["/public/report.aspx%3A%3A%24DATA", "ambiguous_segment"],
    ["/public/admin:$i30:$INDEX_ALLOCATION/users", "ambiguous_segment"],
    // Best-fit separators: a conversion to a Windows code page reads `¥` (cp932) and `₩`
    // (cp949) as `\`, and `∕` as `/`: each would climb out of the public prefix.
    ["/public/..%C2%A5admin/users", "ambiguous_segment"],
    ["/public/..¥admin/users", "ambiguous_segment"],
    ["/public/..%E2%82%A9admin/users", "ambiguous_segment"],
    ["/public/..%E2%88%95admin/users", "ambiguous_segment"],
  ])("%s is refused with 400 (%s) and never forwarded", async (path, detail) => {
    const { response, text, seen, record } = await send(path);
    expect(response.status).toBe(400);
    expect(JSON.parse(text).reason).toBe("bad_request");
    expect(record).toMatchObject({ reason: "bad_request", detail, path: null });
    expect(seen).toHaveLength(0);
  });

  it("a fragment is never part of the path, and the query is forwarded untouched", async () => {
    const { seen } = await send("/public/a?b=%2F&c=1#frag");
    expect(seen[0]?.raw_target).toBe("/public/a?b=%2F&c=1");
  });

  it("routes match case-sensitively: a different case matches no route", async () => {
    const { response, text, seen, record } = await send("/PUBLIC/a");
    expect(response.status).toBe(404);
    expect(JSON.parse(text).reason).toBe("route_not_found");
    expect(record).toMatchObject({ decision: "deny", reason: "route_not_found", path: "/PUBLIC/a", route: null });
    expect(seen).toHaveLength(0);
  });

  it("a :capture never matches an empty segment", async () => {
    const full = await send("/items/42");
    expect(full.response.status).toBe(200);
    expect(full.record).toMatchObject({ decision: "allow", route: "item" });
    expect(full.seen.map((seen) => seen.raw_target)).toEqual(["/items/42"]);
    const empty = await send("/items/");
    expect(empty.response.status).toBe(404);
    expect(JSON.parse(empty.text).reason).toBe("route_not_found");
    expect(empty.record).toMatchObject({ decision: "deny", reason: "route_not_found", route: null });
    expect(empty.seen).toHaveLength(0);
  });

  it("HEAD is authorised as GET", async () => {
    const { response, seen, record } = await send("/plain/x", { method: "HEAD" });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "plain", method: "HEAD" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.method).toBe("HEAD");
  });

  it("over-long URLs and header blocks are refused", async () => {
    const url = await send(`/public/${"a".repeat(9000)}`);
    expect(url.response.status).toBe(400);
    expect(JSON.parse(url.text).reason).toBe("bad_request");
    expect(url.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "url_too_long" });
    expect(url.seen).toHaveLength(0);
    const headers = await send("/public/a", { headers: { "x-big": "b".repeat(40_000) } });
    expect(headers.response.status).toBe(400);
    expect(JSON.parse(headers.text).reason).toBe("bad_request");
    expect(headers.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "headers_too_large" });
    expect(headers.seen).toHaveLength(0);
  });
});

describe("header hygiene", () => {
  it("strips every spelling of client-supplied identity headers", async () => {
    const headers = new Headers({
      "x-user-sub": "admin",
      "X-User-Email": "ceo@example.com",
      x_user_sub: "admin",
      "x-tenant": "evil",
      "x-tenant-id": "evil",
      x_tenant_id: "evil",
      "x-org-id": "evil",
      "x-client-cert": "evil",
      "x-client-dn": "CN=admin",
      "x-forwarded-client-cert": "Hash=evil",
      "cf-access-authenticated-user-email": "ceo@example.com",
      cf_access_authenticated_user_email: "ceo@example.com",
      "x-forwarded-for": "1.2.3.4",
      "x-real-ip": "1.2.3.4",
      forwarded: "for=1.2.3.4",
      "x-keep-me": "yes",
    });
    headers.append("x-user-sub", "second");
    const { seen } = await send("/public/a", { headers });
    const got = seen[0]!.headers;
    for (const name of Object.keys(got)) {
      expect(name.replace(/_/g, "-")).not.toMatch(
        /^(x-user-|x-tenant|x-org-id|x-client-|x-forwarded-client-cert|cf-access-|x-real-ip|forwarded)/,
      );
    }
    expect(got["x-forwarded-for"]).toBeUndefined();
    expect(got["x-keep-me"]).toBe("yes");
  });

  it("strips the identity and token headers of other identity-aware proxies and platforms", async () => {
    const spoofed: Record<string, string> = {
      // oauth2-proxy
      "x-auth-request-access-token": "tok",
      "x-auth-request-preferred-username": "admin",
      "x-forwarded-access-token": "tok",
      // common bare names
      "x-user": "admin",
      x_userid: "1",
      "x-username": "admin",
      "x-email": "ceo@example.com",
      "x-org": "evil",
      "x-authenticated-user": "admin",
      "x-access-token": "tok",
      "x-id-token": "tok",
      // Azure App Service, Google IAP, AWS ALB, TLS-terminating proxies
      "x-ms-client-principal-name": "admin",
      "x-ms-token-aad-access-token": "tok",
      "x-goog-authenticated-user-email": "accounts.google.com:ceo@example.com",
      "x-goog-iap-jwt-assertion": "tok",
      "x-amzn-oidc-identity": "admin",
      "x-amzn-oidc-data": "tok",
      "x-ssl-client-dn": "CN=admin",
    };
    // Near misses are not identity headers.
    await expectStripped(spoofed, { "x-username-hint": "kept", "x-emails": "kept" });
  });

  it("strips spellings with `.` or any other token character, which PHP and lighttpd read as the `-` names (X.User.Sub, X~User~Sub are HTTP_X_USER_SUB)", async () => {
    const spoofed = {
      "X~User~Sub": "admin",
      "X+User+Email": "ceo@example.com",
      "Remote*User": "admin",
      "Cf~Connecting~Ip": "10.0.0.1",
      "X`Api`Key": "unchecked",
      "X!Forwarded!For": "10.0.0.1",
      "X.User.Sub": "admin",
      "X.Tenant": "globex",
      "X.User.Groups": "admins",
      "Cf.Access.Authenticated.User.Email": "ceo@example.com",
      "X.Auth.Request.User": "admin",
      "X.Forwarded.For": "10.0.0.1",
      "X.Real.Ip": "10.0.0.1",
      "Cf.Connecting.Ip": "10.0.0.1",
      "X.Http.Method.Override": "DELETE",
      "X.Api.Key": "unchecked",
    };
    const lower = Object.fromEntries(Object.entries(spoofed).map(([name, value]) => [name.toLowerCase(), value]));
    // Control: without the edge, every one of them reaches the origin.
    expect(await sentStraightToOrigin(spoofed)).toMatchObject(lower);
    await expectStripped(spoofed, { "x.kept.too": "yes" });
  });

  it("strips the identity headers Authelia, authentik, Pomerium, Vouch, Grafana's auth proxy and Tailscale hand over", async () => {
    const spoofed = {
      "remote-user": "admin",
      "remote-groups": "admins",
      remote_email: "ceo@example.com",
      "remote-name": "Administrator",
      "x-remote-groups": "admins",
      "x-authentik-groups": "admins",
      "x-pomerium-claim-groups": "admins",
      "x-pomerium-jwt-assertion": "tok",
      "x-vouch-user": "admin",
      "x-webauth-user": "admin",
      "tailscale-user-login": "ceo@example.com",
      "x-organization": "evil",
    };
    expect(await sentStraightToOrigin(spoofed)).toMatchObject(spoofed);
    await expectStripped(spoofed, { remoteness: "kept" });
  });

  it("keeps stripping once the isolate has seen more header names than it remembers", async () => {
    const edge = harness(policy());
    // More distinct names than the per-isolate memo of header-name verdicts holds (512).
    for (let batch = 0; batch < 6; batch++) {
      const headers = new Headers({ "x-user-sub": "early" });
      for (let i = 0; i < 100; i++) headers.set(`x-filler-${batch}-${i}`, "1");
      const filled = await edge.fetch("/public/a", { headers });
      expect(filled.status).toBe(200);
      await filled.text();
    }
    const m = marker();
    const response = await edge.fetch("/public/a", {
      headers: { "x-test-marker": m, "x-user-sub": "admin", X_User_Email: "ceo@example.com", "x-late": "kept" },
    });
    expect(response.status).toBe(200);
    await response.text();
    const got = (await originSaw(m))[0]!.headers;
    expect(got["x-user-sub"]).toBeUndefined();
    expect(got.x_user_email).toBeUndefined();
    expect(got["x-late"]).toBe("kept");
  });

  it("strips request-override headers", async () => {
    const overrides = {
      "x-http-method-override": "DELETE",
      "x-method-override": "DELETE",
      "x-http-method": "DELETE",
      "x-original-url": "/admin",
      "x-rewrite-url": "/admin",
      // httpoxy: CGI makes it HTTP_PROXY, which some HTTP clients take as their proxy.
      proxy: "http://attacker.example:8080",
      // Host overrides some frameworks build absolute links (password-reset mails) from.
      "x-host": "evil.example",
      "x-http-host-override": "evil.example",
      "x-original-host": "evil.example",
      "x-original-uri": "/admin",
      // A mount prefix gunicorn and WSGI proxy middleware cut off the path before routing.
      "script-name": "/v1/tenants/acme/x",
      "x-script-name": "/v1/tenants/acme/x",
      // Next.js skips its middleware for it (CVE-2025-29927).
      "x-middleware-subrequest": "middleware:middleware:middleware:middleware:middleware",
      // Rack::Sendfile answers with an X-Accel-Redirect into nginx's internal locations.
      "x-sendfile-type": "X-Accel-Redirect",
      "x-accel-mapping": "/var/www/=/internal/",
    };
    // Control: without the edge, every one of them reaches the origin.
    expect(await sentStraightToOrigin(overrides)).toMatchObject(overrides);
    const seen = await expectStripped(overrides);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.method).toBe("GET");
  });

  it("strips SCRIPT_NAME in the spelling gunicorn reads, which would move the path a tenant-bound route authorised", async () => {
    const { seen } = await send("/public/a", {
      headers: { SCRIPT_NAME: "/public", X_Script_Name: "/public", "X-ARR-ClientCert": "MIIB" },
    });
    expect(seen).toHaveLength(1);
    const names = Object.keys(seen[0]!.headers);
    for (const name of ["script_name", "x_script_name", "x-arr-clientcert"]) expect(names).not.toContain(name);
  });

  it("strips scheme headers proxy middleware reads as the request's scheme", async () => {
    const { seen } = await send("/public/a", {
      headers: { "X-Scheme": "http", "X-Url-Scheme": "http", "Front-End-Https": "off", "X-Original-Filename": "a.pdf" },
    });
    expect(seen).toHaveLength(1);
    const got = seen[0]!.headers;
    for (const name of ["x-scheme", "x-url-scheme", "front-end-https"]) expect(got[name]).toBeUndefined();
    expect(got["x-original-filename"]).toBe("a.pdf");
  });

  it("strips hop-by-hop headers and any header Connection names", async () => {
    const hopHeaders = {
      connection: "close, x-secret-hop, X_Other_Hop",
      "x-secret-hop": "1",
      "x-other-hop": "1",
      "keep-alive": "timeout=5",
      te: "trailers",
      // The runtime's own fetch drops keep-alive and te; this one it passes on.
      "proxy-connection": "keep-alive",
    };
    // Control: sent straight to the origin by the runtime's own fetch, the headers Connection
    // names do arrive, so their absence below is the edge's doing.
    const control = await sentStraightToOrigin(hopHeaders);
    expect(control["x-secret-hop"]).toBe("1");
    expect(control["x-other-hop"]).toBe("1");
    expect(control["proxy-connection"]).toBe("keep-alive");
    const { seen } = await send("/public/a", { headers: hopHeaders });
    expect(seen).toHaveLength(1);
    const got = seen[0]!.headers;
    expect(got["x-secret-hop"]).toBeUndefined();
    expect(got["x-other-hop"]).toBeUndefined();
    expect(got["proxy-connection"]).toBeUndefined();
    expect(got["keep-alive"]).toBeUndefined();
    expect(got.te).toBeUndefined();
  });

  it("drops credentials even on public routes", async () => {
    const { seen } = await send("/public/a", {
      headers: {
        authorization: "Bearer abc.def.ghi",
        cookie: "CF_Authorization=abc; session=s",
        // API keys as gateways name them (X-Api-Key, Kong's apikey, Azure's api-key), in any spelling.
        "x-api-key": "k-123",
        apikey: "k-kong",
        "api-key": "k-azure",
        "x-apikey": "k-other",
        api_key: "k-underscore",
        // Cloud Run's IAM reads a caller's ID token here; some APIs their bearer token.
        "x-serverless-authorization": "Bearer k-cloudrun",
        x_authorization: "Bearer k-xauth",
      },
    });
    const got = seen[0]!.headers;
    expect(got.authorization).toBeUndefined();
    expect(got.cookie).toBe("session=s");
    expect(JSON.stringify(got)).not.toMatch(/k-(123|kong|azure|other|underscore|cloudrun|xauth)/);
  });

  it("drops access_token from the query on public routes, however its name is encoded", async () => {
    const cases: [string, string][] = [
      ["/public/a?x=1&access_token=abc.def.ghi&y=2", "x=1&y=2"],
      ["/public/a?%61ccess_token=abc.def.ghi", ""],
      ["/public/a?access%5Ftoken=abc&access_token&z=%ZZ", "z=%ZZ"],
      // Read as access_token by PHP.
      ["/public/a?access.token=abc.def.ghi&access+token=abc.def.ghi&access[token=abc.def.ghi&k=v", "k=v"],
      ["/public/a?x=%20access&y=a+b", "x=%20access&y=a+b"],
      // Names looked up without case (ASP.NET), with a leading space (PHP), as arrays (PHP, qs).
      ["/public/a?ACCESS_TOKEN=abc.def.ghi&Access_Token=abc.def.ghi&k=v", "k=v"],
      ["/public/a?%20access_token=abc.def.ghi&access_token[]=abc.def.ghi&access_token%5B0%5D=abc.def.ghi", ""],
      // `;` separates parameters for some parsers: the separators of what is kept stay as sent.
      ["/public/a?a=1;access_token=abc.def.ghi;b=2&c=3", "a=1;b=2&c=3"],
      ["/public/a?access_token=abc.def.ghi;b=2", "b=2"],
      // Each escape decoded on its own, as PHP does: a bad one does not hide the name.
      ["/public/a?access_token%00%=abc.def.ghi&access_token%00%C3=abc.def.ghi&k=v", "k=v"],
      // Near misses stay.
      ["/public/a?access_token_hint=x&my_access_token=y;x=1", "access_token_hint=x&my_access_token=y;x=1"],
    ];
    for (const [path, query] of cases) {
      const { response, seen } = await send(path);
      expect(response.status).toBe(200);
      expect(seen[0]!.query).toBe(query);
      expect(JSON.stringify(seen[0])).not.toContain("abc.def.ghi");
    }
  });

  it("drops a _method override from the query, so the origin runs the method the edge authorised", async () => {
    // Public route: the POST reaches the origin as a POST, its other parameters as sent.
    const { response, seen } = await send("/public/a?k=1&_method=DELETE;%5FMETHOD=PUT&.method=PATCH", {
      method: "POST",
      body: "x",
    });
    expect(response.status).toBe(200);
    expect(seen[0]!.method).toBe("POST");
    expect(seen[0]!.query).toBe("k=1");
    // Authenticated route: taken out there too (it is no credential, so no refusal).
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [{ name: "v1", methods: ["POST"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const token = await issuer.sign({});
    const sent = await sendMarked(edge, "/v1/x?_method=DELETE&k=v", {
      method: "POST",
      body: "x",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(sent.response.status).toBe(200);
    expect(sent.seen[0]!.query).toBe("k=v");
  });

  it("drops access_token from the query of the page a Referer names, and the Referer's fragment", async () => {
    const cases: [string, string][] = [
      ["https://app.example/cb?x=1&access_token=abc.def.ghi;y=2", "https://app.example/cb?x=1;y=2"],
      ["https://app.example/cb?ACCESS%5FTOKEN=abc.def.ghi", "https://app.example/cb"],
      // An implicit grant's token is in the fragment, which a Referer never carries.
      ["https://app.example/cb#access_token=abc.def.ghi&state=s", "https://app.example/cb"],
      ["https://app.example/cb?k=v#x?access_token=abc.def.ghi", "https://app.example/cb?k=v"],
      ["https://app.example/a?access_token_hint=x", "https://app.example/a?access_token_hint=x"],
      ["not a url?access_token=abc.def.ghi&k", "not a url?k"],
    ];
    for (const [referer, forwarded] of cases) {
      const { response, seen } = await send("/public/a", { headers: { referer } });
      expect(response.status).toBe(200);
      expect(seen[0]!.headers.referer).toBe(forwarded);
      expect(JSON.stringify(seen[0])).not.toContain("abc.def.ghi");
    }
    // Authenticated routes too: the page's token may be another caller's, or an older one.
    const issuer = await makeIssuer("ES256");
    const edge = harness(
      basePolicy({
        issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
        routes: [{ name: "v1", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" }],
      }),
    );
    const token = await issuer.sign({});
    const { seen } = await sendMarked(edge, "/v1/x", {
      headers: { authorization: `Bearer ${token}`, referer: "https://app.example/?access_token=abc.def.ghi&k=v" },
    });
    expect(seen[0]!.headers.referer).toBe("https://app.example/?k=v");
  });

  it("drops a credential cookie sent in a second Cookie header (the two arrive joined by a comma)", async () => {
    const headers = new Headers([
      ["cookie", "session=s"],
      ["cookie", "CF_Authorization=abc.def.ghi; theme=dark"],
    ]);
    const { seen } = await send("/public/a", { headers });
    expect(seen[0]!.headers.cookie).toBe("session=s; theme=dark");
  });

  it("drops the credential cookie however a lenient origin parser would spell its name", async () => {
    const cookie =
      "CF%5FAuthorization=t1; CF.Authorization=t2; CF Authorization=t3; cf_authorization=t4; session=s; " +
      // As PHP reads a name: cut at a NUL, each escape decoded on its own, an array's index.
      "CF_Authorization%00x=t5; CF%5FAuthorization%00%=t6; CF_Authorization[0]x=t7";
    const { seen } = await send("/public/a", { headers: { cookie } });
    expect(seen[0]!.headers.cookie).toBe("session=s");
  });

  it.each([
    // PHP decodes a `+` in a cookie name as a space, then reads spaces as `_` (dropping leading ones).
    ["'+' for '_' (PHP)", "session=s; CF+Authorization=forged.access.jwt"],
    ["leading '+' (PHP)", "session=s; +CF_Authorization=forged.access.jwt"],
    // Characters sent as they are, beyond Latin-1 and within it, inside an array index.
    ["an emoji and an é in its index (PHP)", "session=s; CF_Authorization[\u{1F600}\u00e9]=forged.access.jwt"],
    // Each character sent as it is counts as its UTF-8 bytes, as the origin receives them (read
    // as one byte each, Ā would be a NUL, which cuts the name short of its index).
    ["an Ā next to an é in its index (PHP)", "session=s; CF_Authorization[\u0100\u00e9]=forged.access.jwt"],
    // Java's equalsIgnoreCase folds one character at a time: the dotless ı (upper case I) and
    // the dotted İ (lower case i) are each an i.
    ["a dotless ı for the i (Java)", "session=s; CF_Authorızation=forged.access.jwt"],
    ["a dotted İ for the i (Java)", "session=s; CF_Authorİzation=forged.access.jwt"],
    ["an escaped é in its index (PHP)", "session=s; CF_Authorization[%C3%A9]=forged.access.jwt"],
  ])("drops the Access cookie spelt with %s", async (_label, cookie) => {
    const { response, seen } = await send("/public/a", { headers: { cookie } });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.cookie).toBe("session=s");
  });

  it.each([
    // Python's SimpleCookie (aiohttp's and Bottle's request.cookies) ends a cookie at
    // whitespace after a value: it reads CF_Authorization out of each of these (CPython 3.11).
    "session=s CF_Authorization=forged.access.jwt",
    "session=s\tCF_Authorization=forged.access.jwt",
    'a="x y" CF_Authorization=forged.access.jwt',
    "a=x,y CF_Authorization=forged.access.jwt",
    "a=Wed, 09 Jun 2021 10:18:14 GMT CF_Authorization=forged.access.jwt",
    'a="x;y" CF_Authorization=forged.access.jwt',
    // SimpleCookie also allows whitespace before the `=`.
    "session=s CF_Authorization =forged.access.jwt",
    "session=s CF_Authorization\t=forged.access.jwt",
    "a=b, CF_Authorization =forged.access.jwt",
    // After an `=`: read as a name behind an empty one, or left in the value a server
    // that splits at the last `=` reads it from.
    "session=s =CF_Authorization=forged.access.jwt",
    "pref=CF_Authorization=forged.access.jwt",
  ])("refuses a Cookie header that hides the Access cookie in another cookie's value: %j", async (cookie) => {
    const { response, seen, record } = await send("/public/a", { headers: { cookie } });
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ reason: "bad_request", detail: "credential_cookie_in_value" });
    expect(seen).toHaveLength(0);
  });

  it.each([
    // Values with spaces and `=` are the origin's business: stripping the Access cookie next
    // to them leaves them exactly as sent.
    ['q="a b=c"; CF_Authorization=x', 'q="a b=c"'],
    ["prefs=lang=en theme=dark; CF_Authorization=x", "prefs=lang=en theme=dark"],
    // Behind an empty name, as a browser sends back a cookie set without a name.
    ["x=1; =CF_Authorization=forged.access.jwt; y=2", "x=1; y=2"],
    // Its neighbours stay apart as a strict parser (`;`) would have parted them.
    ["a=1,=CF_Authorization=forged.access.jwt; b=2", "a=1; b=2"],
    ["a=1,CF_Authorization=forged.access.jwt,b=2", "a=1,b=2"],
  ])("strips the Access cookie from %j and forwards %j", async (cookie, forwarded) => {
    const { response, seen } = await send("/public/a", { headers: { cookie } });
    expect(response.status).toBe(200);
    expect(seen[0]!.headers.cookie).toBe(forwarded);
  });

  it("refuses a Cookie header with more than 2,000 `;` and `=`, and forwards 1,000 cookies as sent", async () => {
    // Thousands of escaped names would each be decoded as lenient parsers read them.
    const names = (count: number) => Array.from({ length: count }, (_, i) => `%E9%${i}=`).join(";");
    const over = await send("/public/a", { headers: { cookie: names(1001) } });
    expect(over.response.status).toBe(400);
    expect(over.record).toMatchObject({ reason: "bad_request", detail: "too_many_cookies" });
    expect(over.seen).toHaveLength(0);
    // A cookie without `=` is a name to read too.
    const bare = await send("/public/a", { headers: { cookie: "%C3%A9;".repeat(2001) } });
    expect(bare.record).toMatchObject({ reason: "bad_request", detail: "too_many_cookies" });
    expect(bare.seen).toHaveLength(0);
    const atLimit = await send("/public/a", { headers: { cookie: names(1000) } });
    expect(atLimit.response.status).toBe(200);
    expect(atLimit.seen[0]!.headers.cookie).toBe(names(1000));
    // What a browser sends at most for one site: 180 cookies, values with base64 padding.
    const browser = Array.from({ length: 180 }, (_, i) => `c${i}=YWJjZA==`).join("; ");
    expect((await send("/public/a", { headers: { cookie: browser } })).response.status).toBe(200);
  });

  it("passes a Cookie header without credentials on exactly as sent, commas in values included", async () => {
    const { seen } = await send("/public/a", { headers: { cookie: "prefs=a,b;session=s" } });
    expect(seen[0]!.headers.cookie).toBe("prefs=a,b;session=s");
  });

  it("strips the headers proxies and frameworks read a client address, port or prefix from", async () => {
    const spoofed = {
      "true-client-ip": "10.0.0.1",
      "x-cluster-client-ip": "10.0.0.1",
      "x-original-forwarded-for": "10.0.0.1",
      "x-forwarded-port": "8443",
      "x-forwarded-prefix": "/admin",
      "x-forwarded-server": "internal",
      // Rails (HTTP_CLIENT_IP) and the common PHP snippet; the request-ip package reads the
      // bare X-Forwarded and Forwarded-For; Fastly's client-address header.
      "client-ip": "10.0.0.1",
      client_ip: "10.0.0.1",
      "x-forwarded": "for=10.0.0.1",
      "forwarded-for": "10.0.0.1",
      "fastly-client-ip": "10.0.0.1",
    };
    // Control: without the edge, every one of them reaches the origin.
    expect(await sentStraightToOrigin(spoofed)).toMatchObject(spoofed);
    const { seen } = await send("/public/a", { headers: spoofed });
    expect(seen).toHaveLength(1);
    const got = seen[0]!.headers;
    for (const name of Object.keys(spoofed)) expect(got[name], name).toBeUndefined();
  });

  it("strips every X-Forwarded-* header the client sends, not only those the edge writes", async () => {
    // Rack reads the scheme from -Ssl and -Scheme, forward-auth setups the path from -Uri.
    const spoofed = {
      "x-forwarded-ssl": "on",
      "x-forwarded-scheme": "http",
      "x-forwarded-uri": "/admin",
      "x-forwarded-path": "/admin",
      x_forwarded_ssl: "on",
    };
    // Control: without the edge, every one of them reaches the origin.
    expect(await sentStraightToOrigin(spoofed)).toMatchObject(spoofed);
    const { seen } = await send("/public/a", { headers: { ...spoofed, "x-forwarded-proto": "http" } });
    expect(seen).toHaveLength(1);
    const got = seen[0]!.headers;
    for (const name of Object.keys(spoofed)) expect(got[name], name).toBeUndefined();
    // The edge's own are written after stripping.
    expect(got).toMatchObject({ "x-forwarded-proto": "https", "x-forwarded-host": "edge.test" });
  });

  it("strips the _ spellings of Cloudflare's cf- headers, which CGI-style origins read as Cloudflare's own", async () => {
    const spoofed = {
      cf_connecting_ip: "10.0.0.1",
      "cf-connecting_ip": "10.0.0.1",
      CF_IPCountry: "US",
      cf_visitor: "{}",
    };
    // Control: without the edge, every one of them reaches the origin.
    expect(await sentStraightToOrigin(spoofed)).toMatchObject({ cf_connecting_ip: "10.0.0.1", cf_ipcountry: "US" });
    const { seen } = await send("/public/a", {
      headers: { ...spoofed, "cf-connecting-ip": "198.51.100.7", "cf-ray": "kept" },
    });
    const got = seen[0]!.headers;
    for (const name of Object.keys(spoofed)) expect(got[name.toLowerCase()], name).toBeUndefined();
    // Cloudflare writes its own with `-` only: those go on (the runtime drops `cf-connecting-ip`
    // from subrequests, Cloudflare sets its own there; the edge passes it on as X-Forwarded-For,
    // and as X-Real-IP, from which Cloudflare sets a same-zone origin's CF-Connecting-IP).
    expect(got).toMatchObject({ "cf-ray": "kept", "x-forwarded-for": "198.51.100.7", "x-real-ip": "198.51.100.7" });
  });

  it("writes X-Real-IP from CF-Connecting-IP alone, whatever X-Real-IP the client sent", async () => {
    const { seen } = await send("/public/a", {
      headers: { "cf-connecting-ip": "203.0.113.7", "x-real-ip": "10.0.0.1", X_Real_IP: "10.0.0.2" },
    });
    const got = seen[0]!.headers;
    expect(got["x-real-ip"]).toBe("203.0.113.7");
    expect(got.x_real_ip).toBeUndefined();
  });

  it("forwards an Upgrade request (WebSocket, h2c) as a plain one, so no tunnel opens past the edge", async () => {
    const upgrades: Record<string, string>[] = [
      { upgrade: "h2c", connection: "Upgrade, HTTP2-Settings", "http2-settings": "AAMAAABkAARAAAAAAAIAAAAA" },
      { upgrade: "websocket", connection: "Upgrade", "sec-websocket-version": "13" },
    ];
    for (const headers of upgrades) {
      const { response, seen } = await send("/public/a", { headers });
      expect(response.status).toBe(200);
      expect(seen).toHaveLength(1);
      const got = seen[0]!.headers;
      expect(got.upgrade).toBeUndefined();
      expect(got.connection ?? "").not.toMatch(/upgrade/i);
      expect(got["http2-settings"]).toBeUndefined();
    }
  });

  it("forwards the body unchanged and keeps the method", async () => {
    const body = "x".repeat(100_000);
    const { seen } = await send("/upload/x", { method: "POST", body });
    expect(seen[0]).toMatchObject({ method: "POST", body_bytes: 100_000 });
  });

  it("answers an OPTIONS with Max-Forwards: 0 at the edge, as its final recipient, with the methods routes take there", async () => {
    const { response, text, seen, record } = await send("/opts/a", {
      method: "OPTIONS",
      headers: { "max-forwards": "0" },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("allow")).toBe("GET, HEAD, DELETE, OPTIONS");
    expect(response.headers.get("x-request-id")).toBe(record?.request_id);
    expect(text).toBe("");
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({ decision: "allow", reason: null, detail: "max_forwards_zero" });
  });

  it("passes Max-Forwards on an OPTIONS on less one, drops one that is no count, and leaves other methods' alone", async () => {
    const hopsSeen = async (method: string, value: string) => {
      const { response, seen } = await send("/opts/a", { method, headers: { "max-forwards": value } });
      expect(response.status).toBe(200);
      expect(seen).toHaveLength(1);
      return seen[0]!.headers["max-forwards"];
    };
    expect(await hopsSeen("OPTIONS", "5")).toBe("4");
    expect(await hopsSeen("OPTIONS", "1")).toBe("0");
    expect(await hopsSeen("OPTIONS", "99999999")).toBe("255");
    expect(await hopsSeen("OPTIONS", "1000000000000000000000")).toBe("255");
    expect(await hopsSeen("OPTIONS", "007")).toBe("6");
    expect(await hopsSeen("OPTIONS", "-1")).toBeUndefined();
    expect(await hopsSeen("OPTIONS", "1, 0")).toBeUndefined();
    expect(await hopsSeen("GET", "0")).toBe("0");
    // Named by the client's Connection, it is hop-by-hop: left out, not put back less one.
    const { seen } = await send("/opts/a", {
      method: "OPTIONS",
      headers: { "max-forwards": "3", connection: "max-forwards" },
    });
    expect(seen[0]?.headers["max-forwards"]).toBeUndefined();
  });

  it("lists in Allow only the methods the edge routes at that URL, not one it refuses as ambiguous_case", async () => {
    const edge = harness(
      basePolicy({
        routes: [
          { name: "admin", methods: ["DELETE"], path: "/api/admin/**", auth: "public", upstream: "echo" },
          { name: "api", methods: ["GET", "DELETE", "OPTIONS"], path: "/api/**", auth: "public", upstream: "echo" },
        ],
      }),
    );
    expect((await edge.fetch("/api/ADMIN/x", { method: "DELETE" })).status).toBe(400);
    const response = await edge.fetch("/api/ADMIN/x", { method: "OPTIONS", headers: { "max-forwards": "0" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
  });

  it("nor one it refuses for the path's normalised reading (ambiguous_segment)", async () => {
    const edge = harness(
      basePolicy({
        routes: [
          { name: "cafe", methods: ["DELETE"], path: "/api/カフェ/**", auth: "public", upstream: "echo" },
          { name: "api", methods: ["GET", "DELETE", "OPTIONS"], path: "/api/**", auth: "public", upstream: "echo" },
        ],
      }),
    );
    // Halfwidth ｶﾌｪ: カフェ to an origin that normalises, whose DELETE the `cafe` route takes.
    const halfwidth = "/api/%EF%BD%B6%EF%BE%8C%EF%BD%AA/x";
    expect((await edge.fetch(halfwidth, { method: "DELETE" })).status).toBe(400);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "ambiguous_segment" });
    const response = await edge.fetch(halfwidth, { method: "OPTIONS", headers: { "max-forwards": "0" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
  });
});

describe("CORS", () => {
  const preflight = (path: string, origin: string, method = "GET", requestHeaders?: string) =>
    send(path, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": method,
        ...(requestHeaders ? { "access-control-request-headers": requestHeaders } : {}),
      },
    });

  it("answers a preflight at the edge, without credentials and without reaching the origin", async () => {
    const { response, seen } = await preflight(
      "/public/a",
      "https://app.example.com",
      "POST",
      "Authorization, Content-Type",
    );
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(response.headers.get("access-control-allow-methods")).toContain("POST");
    expect(response.headers.get("access-control-allow-credentials")).toBeNull();
    expect(seen).toHaveLength(0);
  });

  it("answers a HEAD preflight on a route that allows GET, as routing answers HEAD there", async () => {
    const { response, seen } = await preflight("/public/a", "https://app.example.com", "HEAD");
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(seen).toHaveLength(0);
  });

  it.each([
    ["an origin not allowed", "/public/a", "https://evil.example", "GET", "origin_not_allowed"],
    ["a route without CORS", "/plain/a", "https://app.example.com", "GET", "route_has_no_cors"],
    ["a header not allowed", "/public/a", "https://app.example.com", "GET", "header_not_allowed", "x-custom"],
  ])("refuses a preflight for %s", async (_label, path, origin, method, detail, headers?: string) => {
    const { response, text, seen, record } = await preflight(path, origin, method, headers);
    expect(response.status).toBe(403);
    expect(JSON.parse(text).reason).toBe("cors_rejected");
    expect(record).toMatchObject({ reason: "cors_rejected", detail });
    expect(seen).toHaveLength(0);
  });

  it("adds CORS headers to actual responses for allowed origins only", async () => {
    const ok = await send("/public/a", { headers: { origin: "https://app.example.com" } });
    expect(ok.response.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(ok.response.headers.get("access-control-expose-headers")).toBe("x-request-id");
    expect(ok.response.headers.get("vary")).toContain("Origin");
    const evil = await send("/public/a", { headers: { origin: "https://evil.example" } });
    expect(evil.response.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("request bodies", () => {
  const bytes = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 31) & 0xff);

  it.each([
    ["POST", 0],
    ["POST", 1],
    ["PUT", 65_536],
    ["PATCH", 300_001],
  ] as const)("%s of %i bytes reaches the origin whole, with its Content-Length, not chunked", async (method, size) => {
    const { response, seen, record } = await send("/upload/x", {
      method,
      body: bytes(size),
      headers: { "content-length": String(size) },
    });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method, body_bytes: size });
    // Some origins refuse a chunked upload (411) or size-check it by Content-Length.
    expect(seen[0]!.headers["content-length"]).toBe(String(size));
    expect(seen[0]!.headers["transfer-encoding"]).toBeUndefined();
    expect(record).toMatchObject({ decision: "allow", status: 200 });
  });

  it("a declared length no number can hold exactly is not taken as a length: the body goes chunked", async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes(3));
        controller.close();
      },
    });
    const { response, seen, record } = await send("/upload/x", {
      method: "POST",
      body,
      duplex: "half",
      headers: { "content-length": "99999999999999999999" },
    } as RequestInit);
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow" });
    expect(seen[0]).toMatchObject({ body_bytes: 3 });
    expect(seen[0]!.headers["transfer-encoding"]).toBe("chunked");
  });

  it("a body of unknown length streams through chunked, whole", async () => {
    const chunks = [bytes(1000), bytes(70_003)];
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next) controller.enqueue(next);
        else controller.close();
      },
    });
    const { response, seen } = await send("/upload/x", { method: "POST", body, duplex: "half" } as RequestInit);
    expect(response.status).toBe(200);
    expect(seen[0]).toMatchObject({ body_bytes: 71_003 });
    expect(seen[0]!.headers["content-length"]).toBeUndefined();
  });
});
