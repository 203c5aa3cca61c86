import { describe, expect, it } from "vitest";
import { compilePolicy } from "../../src/core/policy";
import type { RouteConfig } from "../../src/core/policy-types";
import { shadowedRoutes } from "../../src/core/route-overlap";

function withRoutes(...routes: Partial<RouteConfig>[]) {
  return compilePolicy({
    version: 1,
    upstreams: { api: { url: "https://origin.example.com" } },
    issuers: { idp: { kind: "oidc", issuer: "https://idp.example.com", audiences: ["api"] } },
    routes: routes.map((route, i) => ({
      name: `r${i}`,
      methods: ["GET"],
      auth: { issuers: ["idp"] },
      upstream: "api",
      ...route,
    })),
  });
}

describe("routes an earlier route shadows", () => {
  it("a public catch-all before an authenticated route under it: the later route is never reached", () => {
    const compiled = withRoutes(
      { name: "public", path: "/v1/**", auth: "public" },
      { name: "admin", path: "/v1/admin/**" },
    );
    expect(shadowedRoutes(compiled)).toEqual([
      "routes[1] (admin): GET never reaches it: routes[0] (public) takes every such request first",
    ]);
  });

  it("names the methods shadowed in the order the earlier route declares them", () => {
    const compiled = withRoutes(
      { name: "public", path: "/v1/**", methods: ["POST", "GET"], auth: "public" },
      { name: "admin", path: "/v1/admin/**", methods: ["GET", "POST"] },
    );
    expect(shadowedRoutes(compiled)).toEqual([
      "routes[1] (admin): POST, GET never reaches it: routes[0] (public) takes every such request first",
    ]);
  });

  it("an earlier route that differs only in letter case: every request of the later one is refused as ambiguous_case", () => {
    const compiled = withRoutes(
      { name: "legacy", path: "/Admin/**", auth: "public" },
      { name: "admin", path: "/admin/**" },
      { name: "reports", path: "/v1/REPORTS/*", methods: ["GET", "POST"] },
      { name: "report", path: "/v1/reports/daily", methods: ["POST", "PUT"] },
    );
    const butForCase = "takes every such request but for letter case, so each is refused as ambiguous_case";
    expect(shadowedRoutes(compiled)).toEqual([
      `routes[1] (admin): GET never reaches it: routes[0] (legacy) ${butForCase}`,
      `routes[3] (report): POST never reaches it: routes[2] (reports) ${butForCase}`,
    ]);
  });

  it("names only the methods taken: the rest of the later route still answers", () => {
    const compiled = withRoutes(
      { name: "read", path: "/v1/**", methods: ["GET"], auth: "public" },
      { name: "write", path: "/v1/orders/*", methods: ["GET", "PUT"] },
    );
    expect(shadowedRoutes(compiled)).toEqual([
      "routes[1] (write): GET never reaches it: routes[0] (read) takes every such request first",
    ]);
  });

  it("HEAD alone, where the earlier route lists HEAD without GET", () => {
    const compiled = withRoutes({ name: "head", path: "/v1/**", methods: ["HEAD"] }, { name: "get", path: "/v1/x" });
    expect(shadowedRoutes(compiled)).toEqual([
      "routes[1] (get): HEAD never reaches it: routes[0] (head) takes every such request first",
    ]);
  });

  it.each([
    ["a capture", "/v1/:tenant", "/v1/42"],
    ["`*`", "/v1/*/x", "/v1/:tenant/x"],
    ["`**` taking nothing more", "/v1/**", "/v1"],
    ["the same pattern", "/v1/a/*", "/v1/a/*"],
    ["a trailing slash", "/v1/users", "/v1/users/"],
  ])("%s before a path it covers", (_case, first, second) => {
    expect(shadowedRoutes(withRoutes({ path: first }, { path: second }))).toHaveLength(1);
  });

  it.each([
    ["a specific route before a general one", "/v1/admin/**", "/v1/**"],
    ["a capture before `**`", "/v1/:tenant", "/v1/**"],
    ["another literal", "/v1/a", "/v1/b"],
    ["a longer pattern", "/v1/a/*", "/v1/a"],
    ["a capture before a literal root segment", "/:tenant", "/"],
  ])("%s: both reachable", (_case, first, second) => {
    expect(shadowedRoutes(withRoutes({ path: first }, { path: second }))).toEqual([]);
  });

  it("hosts: a host-less route covers every host; one host does not cover another, nor every host", () => {
    const hostless = withRoutes({ path: "/**" }, { path: "/x", host: "api.example.com" });
    expect(shadowedRoutes(hostless)).toHaveLength(1);
    const other = withRoutes({ path: "/**", host: "a.example.com" }, { path: "/x", host: "b.example.com" });
    expect(shadowedRoutes(other)).toEqual([]);
    const narrower = withRoutes({ path: "/**", host: "a.example.com" }, { path: "/x" });
    expect(shadowedRoutes(narrower)).toEqual([]);
  });

  it("hosts: a capture covers the hosts under its suffix; a port-bound route covers only its port", () => {
    const capture = withRoutes(
      { path: "/**", host: ":tenant.example.com" },
      { path: "/x", host: "acme.example.com" },
      { path: "/x", host: "a.b.example.com" },
    );
    expect(shadowedRoutes(capture).map((p) => p.slice(0, 9))).toEqual(["routes[1]"]);
    const port = withRoutes(
      { path: "/**", host: "api.example.com:8443" },
      { path: "/y", host: "api.example.com:8443" },
      { path: "/x", host: "api.example.com" },
    );
    expect(shadowedRoutes(port).map((p) => p.slice(0, 9))).toEqual(["routes[1]"]);
  });
});
