// Client headers that data and ML platforms commonly placed behind an edge authoriser read as
// the caller's identity, groups or tenant (src/core/headers.ts): each test names the
// component, the header it reads by default, and why a client's copy reaching it would undo
// what the edge verified.
//
// The layout is the one the edge is built for: the origin is reachable only through the edge,
// so it trusts whatever arrives as coming from the authoriser in front of it; and since
// `Authorization` stops at the edge, the origin never sees the client's own credential. A header
// below that reaches it therefore speaks with the edge's authority, not the client's.
import { describe, expect, it } from "vitest";
import { basePolicy, harness } from "../support/harness";
import { authenticatedEdge } from "../support/guarded-sites";
import { sendMarked, sentStraightToOrigin } from "../support/sent";

const publicEdge = harness(
  basePolicy({ routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" }] }),
);

/**
 * Sends `claims` with user-1's token and returns what reached the origin, after checking the
 * request was allowed as user-1 of acme and that an unrelated header went on (so an absent
 * header below is the edge's stripping, not a request that never arrived).
 */
async function throughEdge(path: string, claims: Record<string, string>) {
  // Control: straight to the origin every one of them arrives under its own (lower-case) name.
  const control = await sentStraightToOrigin(claims);
  for (const name of Object.keys(claims)) expect(control[name.toLowerCase()], name).toBe(claims[name]);
  const { edge, token } = await authenticatedEdge();
  const { response, record, got } = await sendMarked(edge, path, {
    headers: { ...claims, authorization: `Bearer ${token}`, "x-kept": "yes" },
  });
  expect(response.status).toBe(200);
  expect(record).toMatchObject({ decision: "allow", route: "v1", user_sub: "user-1", tenant_id: "acme" });
  expect(got["x-kept"]).toBe("yes");
  expect(got["x-user-sub"]).toBe("user-1");
  expect(got["x-tenant"]).toBe("acme");
  return got;
}

describe("VictoriaLogs / VictoriaMetrics tenant headers AccountID and ProjectID stop at the edge", () => {
  // VictoriaLogs (and VictoriaTraces, and VictoriaMetrics cluster's vminsert/vmselect with
  // -enableMultitenantHandlers) take the tenant of every request from the `AccountID` and
  // `ProjectID` headers and nothing else; without them a request is tenant 0:0. Their docs
  // (docs.victoriametrics.com, "victoriastack/multitenancy" and VictoriaLogs' security page)
  // say to run them behind an authorising proxy that maps users to tenant IDs, and name
  // "Nginx, Traefik, Envoy or HAProxy" as alternatives to vmauth: this edge is such a proxy.
  // The storage does no check of its own, so a signed-in acme user who adds `AccountID: 42`
  // reads (or, on /insert, writes into) tenant 42's logs. It is exactly the case the edge
  // already covers for Loki, Mimir, Cortex and Tempo (`X-Scope-OrgID`) and Thanos
  // (`THANOS-TENANT`), which README's table lists as stripped; and like `__tenant` these names
  // cannot be made the edge's own tenant header (identity headers must start with `x-`), so
  // the operator cannot even overwrite them from the edge.
  it("a signed-in acme user's AccountID and ProjectID never reach the origin", async () => {
    const claims = { AccountID: "42", ProjectID: "7" };
    const got = await throughEdge("/v1/select/logsql/query", claims);
    expect(got.accountid).toBeUndefined();
    expect(got.projectid).toBeUndefined();
  });
});

describe("Trino / Presto user headers X-Trino-User and X-Presto-User stop at the edge", () => {
  // With no `http-server.authentication.type` (the default, and what an operator who lets the
  // edge authenticate leaves), Trino's InsecureAuthenticator takes the user of every request
  // from `X-Trino-User` (`X-Presto-User` with the legacy protocol name configured), and that
  // user is who its access control (file-based rules, Ranger) judges: catalogs, schemas, row
  // filters. Behind the edge, user-1 adds `X-Trino-User: admin` and queries as admin. This is
  // the Trino counterpart of `X-Scope-OrgID`: a header its server reads as the principal and
  // nothing else, which the edge strips so the operator can name it as `identity_headers.subject`
  // (it starts with `x-`) and have the edge write the verified subject there instead.
  it("a signed-in user's X-Trino-User and X-Presto-User never reach the origin", async () => {
    const claims = { "x-trino-user": "admin", "x-presto-user": "admin" };
    const got = await throughEdge("/v1/statement", claims);
    expect(got["x-trino-user"]).toBeUndefined();
    expect(got["x-presto-user"]).toBeUndefined();
  });
});

describe("Apache NiFi proxied-entity headers stop at the edge", () => {
  // NiFi (and NiFi Registry) behind a proxy: the proxy authenticates to NiFi with its client
  // certificate, which holds the "proxy user requests" policy, and names the end user in
  // `X-ProxiedEntitiesChain: <user>`; NiFi's X509AuthenticationProvider builds the chain
  // `<end-user><proxy>` from that header, and takes the end user's identity-provider groups
  // from `X-ProxiedEntityGroups` (its code: "get the idp groups for the end-user that were
  // sent over in the X-ProxiedEntityGroups header"). Behind the edge, that proxy maps the
  // verified `x-user-sub` to the chain (nginx `proxy_set_header` replaces that one name); the
  // client's own `X-ProxiedEntityGroups: <admins>` goes through beside it and NiFi authorises
  // user-1 with the admins group's policies. Where a proxy passes on the chain it received
  // (in a multi-hop chain each proxy appends the identity of the one before it), the client's
  // `<admin>` becomes the end user outright. Same confused deputy as Kubernetes'
  // `Impersonate-Group` and OpenSearch's `x-proxy-roles`, which the edge strips.
  it("a signed-in user's X-ProxiedEntitiesChain and X-ProxiedEntityGroups never reach the origin", async () => {
    const claims = { "X-ProxiedEntitiesChain": "<admin>", "X-ProxiedEntityGroups": "<admins>" };
    const got = await throughEdge("/v1/nifi-api/flow/current-user", claims);
    expect(got["x-proxiedentitieschain"]).toBeUndefined();
    expect(got["x-proxiedentitygroups"]).toBeUndefined();
  });
});

describe("Kubeflow identity headers kubeflow-userid and kubeflow-groups stop at the edge", () => {
  // Every Kubeflow web app and API takes the user from `kubeflow-userid` by default (the
  // central dashboard's and web apps' USERID_HEADER, Kubeflow Pipelines' KUBEFLOW_USERID_HEADER,
  // oidc-authservice's UserIDHeader default), and the newer ones the groups from
  // `kubeflow-groups`; they trust it because the authenticating ingress in front (oauth2-proxy
  // or oidc-authservice in the stock manifests) is meant to be its only writer, and they
  // authorise that user with a SubjectAccessReview against its profile namespaces. Behind the
  // edge, user-1 adds `kubeflow-userid: admin@example.com` and the Pipelines API and the
  // notebook and volume web apps act in admin's namespaces. Neither
  // name can be the edge's own identity header (those must start with `x-`), so the operator
  // cannot have the edge overwrite them: they must not come from the client at all. Kubeflow's
  // IAP deployment is the same pattern with `x-goog-authenticated-user-email`, which the edge
  // strips.
  it("a signed-in user's kubeflow-userid and kubeflow-groups never reach the origin", async () => {
    const claims = { "kubeflow-userid": "admin@example.com", "kubeflow-groups": "kubeflow-admins" };
    const got = await throughEdge("/v1/pipeline/apis/v2beta1/runs", claims);
    expect(got["kubeflow-userid"]).toBeUndefined();
    expect(got["kubeflow-groups"]).toBeUndefined();
  });
});

describe("CouchDB proxy-authentication headers stop at the edge", () => {
  // CouchDB's proxy authentication ({chttpd_auth, proxy_authentication_handler}) takes the user
  // and roles from `X-Auth-CouchDB-UserName` and `X-Auth-CouchDB-Roles` (`_admin` makes the
  // caller a server admin), with `X-Auth-CouchDB-Token` required only when a proxy secret is
  // set. The `x-auth-` family the edge strips for Keycloak Gatekeeper covers them, in CGI
  // spellings too; pinned by name because CouchDB is not among the products README lists.
  it("a client's X-Auth-CouchDB-* never reach the origin", async () => {
    const couch = {
      "X-Auth-CouchDB-UserName": "admin",
      X_Auth_CouchDB_Roles: "_admin",
      "X-Auth-CouchDB-Token": "0123abcd",
    };
    // Control: straight to the origin all three arrive, the CGI spelling included.
    const control = await sentStraightToOrigin(couch);
    expect(Object.keys(control).filter((name) => /couchdb/i.test(name))).toHaveLength(3);
    const { response, record, got } = await sendMarked(publicEdge, "/public/a", {
      headers: { ...couch, "x-kept": "yes" },
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    expect(got["x-kept"]).toBe("yes");
    expect(Object.keys(got).filter((name) => /couchdb/i.test(name))).toEqual([]);
  });
});
