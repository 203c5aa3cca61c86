// Header name lists shared by every stage that strips or writes headers: one constant,
// one normalisation, so the stripper and the injector can never disagree.

/**
 * Client headers that claim identity, or carry a token or client certificate an
 * identity-aware proxy passes on: ours, and those of the proxies and platforms an origin may
 * have been written for (oauth2-proxy, Azure App Service, Google IAP, Cloud Endpoints and API
 * Gateway, AWS ALB, Kong, Keycloak Gatekeeper, Apache mod_auth_openidc, TLS-terminating
 * proxies and RFC 9440's Client-Cert, Cloudflare's mTLS transform, and the `Remote-*` family
 * Authelia and authentik hand over behind Caddy or nginx: -User, -Groups, -Email, -Name),
 * and the web access managers' agents: SiteMinder's `SM_*` (Spring Security's
 * RequestHeaderAuthenticationFilter takes the user from SM_USER by default), IBM WebSEAL's
 * `iv-*`, Oracle Access Manager's `OAM_*`, WSO2's X-JWT-Assertion, and WebSphere's private
 * `$WS*` (the client address, scheme and host that WebSphere trusts from any sender by
 * default; `$WSRA` normalises to `-wsra`).
 * Matched after normaliseHeaderName. A prefix takes a whole family: `x-org` is X-Org,
 * X-Org-Id, X-Organization.
 */
const IDENTITY_HEADER_PREFIXES: readonly string[] = [
  "x-user-",
  "x-org",
  "x-tenant",
  "x-client-",
  "cf-access-",
  "cf-cert-",
  "x-auth-",
  "x-authenticated-",
  "x-consumer-",
  "x-credential-",
  "x-anonymous-",
  "oidc-",
  "x-ms-client-principal",
  "x-ms-token-",
  "x-goog-authenticated-user-",
  "x-goog-iap-jwt-assertion",
  "x-endpoint-api-userinfo",
  "x-apigateway-api-userinfo",
  "x-amzn-oidc-",
  "x-amzn-mtls-",
  "cloudfront-viewer-cert-",
  "x-arr-clientcert",
  "x-ssl-",
  "ssl-client-",
  "client-cert",
  "remote-",
  "x-remote-",
  "x-webauth-",
  "x-pomerium-",
  "x-authentik-",
  "x-vouch-",
  "tailscale-user-",
  "sm-",
  "iv-",
  "oam-",
  "x-jwt-assertion",
  "-ws",
  // Kubernetes impersonation, which dashboards' proxies pass on beside their own credential.
  "impersonate-",
  // Hasura's session variables, read from any request that carries the admin secret.
  "x-hasura-",
  // Apache NiFi's proxied end user and groups; Kubeflow's user and groups (not `x-` names).
  "x-proxiedentit",
  "kubeflow-",
];

/**
 * Exact identity and token header names. Those under `x-forwarded-` (oauth2-proxy's
 * X-Forwarded-User, -Email, -Groups, -Access-Token; Envoy's X-Forwarded-Client-Cert) go with
 * every forwarding header, by FORWARDING_HEADER_PREFIX.
 */
const IDENTITY_HEADER_NAMES: readonly string[] = [
  "x-user",
  // SiteMinder's SMUSER, without the underscore the `sm-` prefix reads as `-`.
  "smuser",
  "x-userid",
  "x-username",
  "x-userinfo",
  "x-email",
  "x-id-token",
  "x-access-token",
  // Not an identity, but the edge's own: a client's copy would be taken for the edge's id.
  "x-request-id",
  // Elasticsearch's run-as; OpenSearch Security's proxy authentication.
  "es-security-runas-user",
  "x-proxy-user",
  "x-proxy-roles",
  // Trino's and Presto's user, which they take as it is without an authentication type.
  "x-trino-user",
  "x-presto-user",
  // Tenants: Loki, Mimir, Cortex and Tempo read X-Scope-OrgID, Thanos THANOS-TENANT, ABP
  // `__tenant` and Finbuckle `__tenant__` (as compared: every other character is `-`).
  "x-scope-orgid",
  "thanos-tenant",
  // VictoriaLogs' and VictoriaMetrics cluster's tenant, read from these names alone.
  "accountid",
  "projectid",
  "--tenant",
  "--tenant--",
];

/**
 * Headers that re-route or re-interpret a request at origins that honour them; `Proxy` becomes
 * HTTP_PROXY under CGI, which some HTTP clients take as their outbound proxy ("httpoxy").
 * `SCRIPT_NAME` and `X-Script-Name` set the mount prefix gunicorn and the common WSGI
 * "reverse proxied" middleware cut off the path before routing (gunicorn honours the former
 * from loopback peers, such as a tunnel or nginx on the same host): `/v1/tenants/acme/x/v1/tenants/globex/…`
 * with a prefix of `/v1/tenants/acme/x` would be routed as globex's. `X-Middleware-Subrequest`
 * makes Next.js skip its middleware (CVE-2025-29927), an origin's own auth check included.
 * `X-Sendfile-Type` and `X-Accel-Mapping` make Rack::Sendfile (Rails' `send_file`) answer
 * with an `X-Accel-Redirect` of the client's choosing into nginx's internal locations.
 */
export const REQUEST_OVERRIDE_HEADERS: readonly string[] = [
  "proxy",
  "x-host",
  "x-http-host-override",
  "x-original-host",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-original-url",
  "x-original-uri",
  "x-rewrite-url",
  "x-original-method",
  "script-name",
  "x-script-name",
  "x-middleware-subrequest",
  "x-sendfile-type",
  "x-accel-mapping",
  // Service meshes' destination overrides: Linkerd's ingress mode, Envoy's original-destination cluster.
  "l5d-dst-override",
  "x-envoy-original-dst-host",
];

/**
 * Forwarding headers the client may not set: every `x-forwarded-*` (the edge writes its own
 * `-for`, `-host` and `-proto`; proxies and frameworks read a client address, scheme, port,
 * prefix or path from the others, Rack the scheme from `-ssl` and `-scheme`), and these.
 */
export const FORWARDING_HEADER_PREFIX = "x-forwarded-";
export const FORWARDING_HEADERS: readonly string[] = [
  "forwarded",
  // The scheme, as ingress-nginx passes it and WSGI "reverse proxied" middleware and
  // Microsoft's proxies read it (wsgi.url_scheme, is_secure, absolute links).
  "x-scheme",
  "x-url-scheme",
  "front-end-https",
  "forwarded-for",
  "x-forwarded",
  "x-original-forwarded-for",
  "x-real-ip",
  "client-ip",
  "true-client-ip",
  "fastly-client-ip",
  "x-cluster-client-ip",
];

/** RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy ones proxies still see. */
const HOP_BY_HOP_HEADERS: readonly string[] = [
  "connection",
  // Reserved as a field name (RFC 9110 §7.6.1): `Connection: close` must not make one that
  // `Close` names go on.
  "close",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

/** Credentials that stop at the edge: the origin never sees them. Cookies are filtered by name. */
export const CREDENTIAL_HEADERS: readonly string[] = [
  "authorization",
  "cf-access-jwt-assertion",
  // API keys, as gateways name them: X-Api-Key, Kong key-auth's apikey, Azure's api-key, x-apikey.
  "x-api-key",
  "apikey",
  "api-key",
  "x-apikey",
  // The key headers Azure API Management, Google's APIs and Azure Functions read by default.
  "ocp-apim-subscription-key",
  "x-goog-api-key",
  "x-functions-key",
  // Google Cloud Run reads the caller's ID token here (before Authorization), so a client's own
  // would authenticate it to the origin's IAM past the edge; and the same for X-Authorization,
  // which APIs that keep Authorization for another scheme read as their bearer token.
  "x-serverless-authorization",
  "x-authorization",
];

/**
 * A header name as an origin may read it: CGI-style servers (PHP under FastCGI, Django on
 * ASGI) read `_` as `-`, PHP reads `.` as `_` too (`X.User.Sub` is HTTP_X_USER_SUB), and
 * lighttpd's CGI and FastCGI read every character but a letter or digit as `_`
 * (`X~User~Sub` too).
 */
export function normaliseHeaderName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, "-");
}

/**
 * Builds the predicate "is this a client header the edge must remove before forwarding":
 * identity, override, hop-by-hop, credential and forwarding headers. `extraNames` are the
 * configured identity header names, which are stripped too.
 */
export function makeStripPredicate(extraNames: readonly string[]): (name: string) => boolean {
  const exact = new Set<string>([
    ...IDENTITY_HEADER_NAMES,
    ...REQUEST_OVERRIDE_HEADERS,
    ...HOP_BY_HOP_HEADERS,
    ...CREDENTIAL_HEADERS,
    ...FORWARDING_HEADERS,
    ...extraNames.map(normaliseHeaderName),
  ]);
  // And Apache Camel's message headers (`CamelHttpMethod`, `CamelHttpPath`, …), which a Camel
  // route behind the edge takes the request's method, path and query from, and which Camel
  // filtered by letter case before CVE-2025-27636.
  const prefixes = [...IDENTITY_HEADER_PREFIXES, FORWARDING_HEADER_PREFIX, "camel"];
  return (name: string) => {
    const normal = normaliseHeaderName(name);
    if (exact.has(normal)) return true;
    // Cloudflare writes its `cf-` headers with `-` only: any other spelling (`cf_connecting_ip`)
    // is the client's, and origins that read it as `-` would take it for Cloudflare's.
    if (normal.startsWith("cf-") && /[^a-z\d-]/i.test(name)) return true;
    for (const prefix of prefixes) if (normal.startsWith(prefix)) return true;
    return false;
  };
}

const HOP_BY_HOP: ReadonlySet<string> = new Set(HOP_BY_HOP_HEADERS);

/** Whether a (lower-case) name is hop-by-hop by definition, whatever `Connection` says. */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

/**
 * The names `headers` holds that its `Connection` nominates, compared as `spell` reads a name
 * (exactly, or as an origin reads it). Only names it holds: a nominated token that is no field
 * name (`x a`) would throw if deleted. None, at no second pass over the headers, when it names
 * only hop-by-hop fields, as most messages do (`keep-alive`, `close`).
 */
export function connectionNominatedPresent(
  headers: Headers,
  spell: (name: string) => string = (name) => name,
): string[] {
  const named = new Set<string>();
  for (const name of connectionNominated(headers)) if (!HOP_BY_HOP.has(name)) named.add(spell(name));
  if (named.size === 0) return [];
  const present: string[] = [];
  for (const name of headers.keys()) if (named.has(spell(name))) present.push(name);
  return present;
}

/**
 * Names listed in `Connection` (RFC 9110 §7.6.1) are hop-by-hop too: each once, however often
 * the field repeats it, so a field of thousands of repeats or empty elements costs a few names.
 */
function connectionNominated(headers: Headers): Set<string> {
  const tokens = new Set<string>();
  const value = headers.get("connection");
  if (value) for (const token of new Set(value.toLowerCase().split(","))) tokens.add(token.trim());
  tokens.delete("");
  return tokens;
}
