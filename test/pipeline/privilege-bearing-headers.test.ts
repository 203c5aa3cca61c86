// Header hygiene for client headers that a component behind the edge (a mesh proxy, an API
// server, a data API) reads as identity, privilege or a routing decision: each is stopped at
// the edge, which the echo origin's view shows.
//
// One fact runs through the identity findings: the edge strips `Authorization` (and every API
// key header), so a client's own Kubernetes, Elasticsearch or Hasura credential never reaches
// such an origin. A delegation header that does reach it can only ride on the credential of
// whatever sits between the edge and the API (the reverse proxy those products document for
// this layout), never on the client's: it is a confused deputy by construction.
import { describe, expect, it } from "vitest";
import { basePolicy, harness } from "../support/harness";
import { authenticatedEdge } from "../support/guarded-sites";
import { sendMarked, sentStraightToOrigin } from "../support/sent";

const publicEdge = harness(
  basePolicy({ routes: [{ name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" }] }),
);

describe("mesh destination-override headers stop at the edge", () => {
  // Both pick the upstream host from the request itself, past every route the edge matched:
  // - Linkerd: a proxy injected in ingress mode (`linkerd.io/inject: ingress`) routes by
  //   `l5d-dst-override`; Linkerd's ingress guide warns the ingress must remove the header a
  //   client sends, or it is an open relay to cluster-local and external endpoints
  //   (linkerd/website#1585). Behind the edge, a tunnel to such an ingress lets a caller the edge
  //   allowed on `/public/**` reach `internal-admin.ops.svc.cluster.local` instead.
  // - Envoy: an ORIGINAL_DST cluster with `use_http_header` takes the destination from
  //   `x-envoy-original-dst-host`; Envoy's reference says the header "isn't sanitized by
  //   default" and lets clients route to arbitrary hosts and ports. It is not among the
  //   `x-envoy-*` headers Envoy sanitises for external requests.
  const overrides = {
    "l5d-dst-override": "internal-admin.ops.svc.cluster.local:80",
    "x-envoy-original-dst-host": "10.0.0.1:8443",
  };

  it("a client's l5d-dst-override and x-envoy-original-dst-host never reach the origin", async () => {
    // Control: straight to the origin, both arrive, so their absence below is the edge's doing.
    expect(await sentStraightToOrigin(overrides)).toMatchObject(overrides);
    const { response, record, got } = await sendMarked(publicEdge, "/public/a", {
      headers: { ...overrides, "x-kept": "yes" },
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    expect(got["x-kept"]).toBe("yes");
    for (const name of Object.keys(overrides)) expect(got[name], name).toBeUndefined();
  });
});

describe("impersonation and run-as headers stop at the edge, beside the verified identity", () => {
  // Kubernetes' API server replaces the authenticated user with `Impersonate-User`, `-Uid`,
  // `-Group` (repeatable) and `-Extra-*` when the authenticated principal may impersonate.
  // The Kubernetes Dashboard, Kiali (`auth.strategy: header`) and the Tekton Dashboard document
  // exactly this behind a reverse proxy: the proxy adds a service account's token and the
  // impersonation headers, and the app passes every `Impersonate-*` header of the request to
  // the API server. Behind the edge that proxy maps the verified `x-user-sub` to
  // `Impersonate-User` (nginx `proxy_set_header` replaces that one name); a signed-in user's own
  // `Impersonate-Group: system:masters` goes through beside it and the API server answers as
  // cluster-admin. Elasticsearch's `es-security-runas-user` is the same mechanism for a proxy
  // whose user holds the `run_as` privilege. The edge already strips the front-proxy identity
  // headers of the same API server (`X-Remote-User`, `X-Remote-Group`) for the same reason.
  const claims = {
    "impersonate-user": "admin",
    "impersonate-uid": "0",
    "impersonate-group": "system:masters",
    "impersonate-extra-scopes": "cluster-admin",
    "es-security-runas-user": "elastic",
  };

  it("a signed-in user's Impersonate-* and es-security-runas-user never reach the origin", async () => {
    // Control: straight to the origin every one arrives, so its absence below is the edge's doing.
    expect(await sentStraightToOrigin(claims)).toMatchObject(claims);
    const { edge, token } = await authenticatedEdge();
    const { response, record, got } = await sendMarked(edge, "/v1/pods", {
      headers: { ...claims, authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "v1", user_sub: "user-1" });
    // The identity the edge verified reaches the origin...
    expect(got["x-user-sub"]).toBe("user-1");
    // ...and nothing that claims another one beside it.
    for (const name of Object.keys(claims)) expect(got[name], name).toBeUndefined();
  });

  it("strips them in the spellings CGI-style servers read as the same names", async () => {
    const spellings = {
      impersonate_group: "system:masters",
      "impersonate.extra.scopes": "x",
      es_security_runas_user: "elastic",
    };
    // Control: straight to the origin, each spelling arrives, so its absence below is the edge's doing.
    expect(await sentStraightToOrigin(spellings)).toMatchObject(spellings);
    const { response, record, got } = await sendMarked(publicEdge, "/public/a", {
      headers: {
        Impersonate_Group: "system:masters",
        "Impersonate.Extra.Scopes": "x",
        es_security_runas_user: "elastic",
        "x-kept": "yes",
      },
    });
    // The request was forwarded (an empty `got` would pass every check below).
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    expect(got["x-kept"]).toBe("yes");
    for (const name of Object.keys(spellings)) expect(got[name], name).toBeUndefined();
  });
});

describe("OpenSearch Security proxy-authentication headers stop at the edge", () => {
  // OpenSearch Security's `proxy` authenticator (and Open Distro's and Search Guard's before it,
  // and OpenSearch Dashboards' `proxy` auth type) takes the user and its backend roles from
  // `x-proxy-user` and `x-proxy-roles` (the names its documentation configures) on any request
  // from a trusted internal proxy, which behind the edge is the tunnel connector every request
  // arrives through. An operator who maps the edge's subject to `x-proxy-user` but keeps the
  // default `x-user-groups` for groups still gets the client's `x-proxy-roles: admin`, which
  // the stock role mapping turns into `all_access`. These are the same kind of header as
  // Grafana's `X-WEBAUTH-USER` and Authelia's `Remote-Groups`, which the edge strips.
  it("a client's x-proxy-user and x-proxy-roles never reach the origin", async () => {
    // Control: straight to the origin both arrive, the CGI spelling included.
    const proxied = { "x-proxy-user": "admin", x_proxy_roles: "admin,all_access" };
    expect(await sentStraightToOrigin(proxied)).toMatchObject(proxied);
    const { edge, token } = await authenticatedEdge();
    const { response, record, got } = await sendMarked(edge, "/v1/_search", {
      headers: { authorization: `Bearer ${token}`, "x-proxy-user": "admin", x_proxy_roles: "admin,all_access" },
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "v1", user_sub: "user-1" });
    expect(got["x-user-sub"]).toBe("user-1");
    expect(got["x-proxy-user"]).toBeUndefined();
    expect(got.x_proxy_roles).toBeUndefined();
  });
});

describe("Hasura session-variable headers stop at the edge", () => {
  // Hasura takes every `X-Hasura-*` header as a session variable on a request that carries the
  // admin secret: `X-Hasura-Role` picks the role, the others (`X-Hasura-User-Id`,
  // `X-Hasura-Org-Id`, …) fill the permission rules, and
  // `X-Hasura-Use-Backend-Only-Permissions: true` opens the mutations reserved for trusted
  // backends (Hasura docs, "Admin Access" and backend-only permissions). Behind the edge
  // Hasura never sees the client's JWT (Authorization stops at the edge), so it is deployed
  // with a proxy that adds the admin secret and maps the edge's identity to `X-Hasura-Role`
  // and `X-Hasura-User-Id`; a client's `X-Hasura-Org-Id: globex` then reaches the permission
  // rules as acme's user's organisation. The admin secret itself is a credential the client
  // would have to know, so it is not asserted here.
  const variables = {
    "x-hasura-role": "admin",
    "x-hasura-user-id": "1",
    "x-hasura-org-id": "globex",
    "x-hasura-use-backend-only-permissions": "true",
  };

  it("a signed-in user's X-Hasura-* session variables never reach the origin", async () => {
    // Control: straight to the origin every one arrives, so its absence below is the edge's doing.
    expect(await sentStraightToOrigin(variables)).toMatchObject(variables);
    const { edge, token } = await authenticatedEdge();
    const { response, record, got } = await sendMarked(edge, "/v1/graphql", {
      headers: { ...variables, authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "v1", tenant_id: "acme" });
    expect(got["x-tenant"]).toBe("acme");
    for (const name of Object.keys(variables)) expect(got[name], name).toBeUndefined();
  });
});

describe("credentials for the origin's own API, which the edge forwards", () => {
  // A Vault, Consul or Nomad token is checked by the origin against its own policies: the client
  // can do no more through the edge than it could with the same token anywhere, and stripping
  // it would make those APIs unusable behind the edge. Pinned so a later widening of the strip
  // lists that breaks them is a decision, not an accident.
  it("X-Vault-Token, X-Consul-Token and X-Nomad-Token reach the origin as sent", async () => {
    const tokens = { "x-vault-token": "hvs.a", "x-consul-token": "b", "x-nomad-token": "c" };
    const { response, record, got } = await sendMarked(publicEdge, "/public/a", { headers: tokens });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    expect(got).toMatchObject(tokens);
  });
});
