// What one anonymous request can make the edge do: routing and credential stripping read
// client input in work linear in its size, whatever the number of routes the policy holds, and
// decide exactly as they would for a short input. The work is counted (how often route patterns
// are consulted), never timed.
import { describe, expect, it } from "vitest";
import { hidesCredentialCookie, withoutCredentialCookies } from "../../src/core/cookies";
import { lenientName } from "../../src/core/lenient-name";
import type { CompiledRoute } from "../../src/core/policy";
import type { RouteConfig } from "../../src/core/policy-types";
import { methodsAt, routeRequest, routesAt } from "../../src/core/route-request";
import { compiledRoutes } from "../support/policy-compile-step";

const signedIn = { issuers: ["idp"] };
const admins = { issuers: ["idp"], groups: { any_of: ["admins"] } };

/**
 * An operator's policy of some 160 routes: a guarded home page, tRPC procedures (the admin ones
 * guarded), a tenant-bound resource, a HEAD-only probe, a host of its own, 150 services each
 * under its own directory with its own scope, then the public site (`/**`), and a route the
 * site shadows.
 */
function operatorRoutes({ probe = true } = {}): CompiledRoute[] {
  type Route = Omit<RouteConfig, "upstream">;
  const probeRoute: Route = { name: "probe", methods: ["HEAD"], path: "/health", auth: admins };
  const list: Route[] = [
    { name: "home", methods: ["GET"], path: "/", auth: admins },
    { name: "admin-delete", methods: ["POST"], path: "/trpc/admin.deleteUser", auth: admins },
    { name: "procedures", methods: ["GET", "POST"], path: "/trpc/*", auth: signedIn },
    { name: "tenant", methods: ["GET"], path: "/v1/tenants/:tenant", auth: signedIn },
    ...(probe ? [probeRoute] : []),
    { name: "other-host", methods: ["GET"], path: "/**", host: "admin.example.test", auth: admins },
  ];
  for (let k = 0; k < 150; k++)
    list.push({
      name: `svc${k}`,
      methods: ["GET", "POST"],
      path: `/svc${k}/**`,
      auth: { issuers: ["idp"], scopes: { all_of: [`svc${k}`] } },
    });
  list.push({ name: "site", methods: ["GET"], path: "/**", auth: "public" });
  list.push({ name: "late", methods: ["GET"], path: "/late", auth: admins });
  return compiledRoutes(list);
}

/** The routes, each counting how often its pattern is consulted. */
function counting(routes: CompiledRoute[]): { routes: CompiledRoute[]; reads: () => number } {
  let reads = 0;
  const counted = routes.map((route) => {
    const { parts } = route.pattern;
    return {
      ...route,
      pattern: {
        get parts() {
          reads++;
          return parts;
        },
      },
    };
  });
  return { routes: counted, reads: () => reads };
}

/** `n` distinct procedure names, comma-separated, as a tRPC batch's last segment names them. */
const procedures = (n: number) => Array.from({ length: n }, (_, i) => `p${i.toString(36)}`).join(",");

const HOST = "www.example.test";

/** How the route stage routes it: the route's name, or why it is refused (undefined: no route). */
function routed(routes: CompiledRoute[], method: string, path: string, search = "", host = HOST) {
  const answer = routeRequest(routes, method, host, path, search);
  return typeof answer === "object" ? answer.route.name : answer;
}

/**
 * Pattern reads per procedure beyond the first two: at most a few, where a reading that asked
 * every route of every procedure would read some hundreds (one per route).
 */
function readsPerProcedure(ask: (routes: CompiledRoute[], n: number) => unknown): number {
  const few = counting(operatorRoutes());
  ask(few.routes, 2);
  const many = counting(operatorRoutes());
  ask(many.routes, 2000);
  return (many.reads() - few.reads()) / 1998;
}

describe("a batch of many procedures is read with work per procedure that does not grow with the routes", () => {
  it("at the root, where every route may take a path of one segment", () => {
    expect(readsPerProcedure((routes, n) => routeRequest(routes, "GET", HOST, `/${procedures(n)}`, ""))).toBeLessThan(
      4,
    );
  });

  it("under /trpc/, where few routes take a path", () => {
    expect(
      readsPerProcedure((routes, n) => routeRequest(routes, "POST", HOST, `/trpc/${procedures(n)}`, "")),
    ).toBeLessThan(4);
  });

  it("in a query CodeIgniter reads as the path (`/?/…`)", () => {
    expect(readsPerProcedure((routes, n) => routeRequest(routes, "GET", HOST, "/", `?/${procedures(n)}`))).toBeLessThan(
      4,
    );
  });

  it("for a CORS preflight's or a 405's methods at the URL", () => {
    // Seven methods, the two that reach a route (GET, HEAD) each reading the batch.
    expect(readsPerProcedure((routes, n) => routesAt(routes, HOST, `/${procedures(n)}`, ""))).toBeLessThan(8);
  });
});

describe("what each method reaches at a URL is worked out once for methods every route takes alike", () => {
  it("HEAD, taken wherever GET is and nowhere else, costs no second routing of the URL", () => {
    const routes = () => operatorRoutes({ probe: false });
    const get = counting(routes());
    routeRequest(get.routes, "GET", HOST, "/docs/page.html", "");
    const others = counting(routes());
    for (const method of ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
      routeRequest(others.routes, method, HOST, "/docs/page.html", "");
    const all = counting(routes());
    const here = routesAt(all.routes, HOST, "/docs/page.html", "");
    expect([...here].map(([method, route]) => `${method} ${route.name}`)).toEqual(["GET site", "HEAD site"]);
    expect(all.reads()).toBeLessThanOrEqual(get.reads() + others.reads());
  });

  it("a route taking HEAD alone still routes HEAD apart from GET", () => {
    const routes = operatorRoutes();
    expect([...routesAt(routes, HOST, "/health", "")].map(([method, route]) => `${method} ${route.name}`)).toEqual([
      "GET site",
      "HEAD probe",
    ]);
    // A batch naming the probe: GET reads it as the site's page, HEAD as the guarded probe's.
    expect(methodsAt(routes, HOST, `/${procedures(2000)},health`, "")).toBe("GET");
  });
});

describe("a batch of many procedures is decided as a short one is", () => {
  const routes = operatorRoutes();
  const many = procedures(2000);

  it.each([
    ["procedures no other route takes go on under the site", "GET", `/${many}`, "site"],
    ["one named for a guarded service is refused", "GET", `/${many},svc7`, "ambiguous_batch"],
    ["in any letter case", "GET", `/${many},SVC7`, "ambiguous_batch"],
    ["an empty one reads as the guarded home page", "GET", `/${many},`, "ambiguous_batch"],
    ["one named for a route the site shadows goes on", "GET", `/${many},late`, "site"],
    [
      "the guarded admin procedure, for the method it takes",
      "POST",
      `/trpc/${many},admin.deleteUser`,
      "ambiguous_batch",
    ],
    ["not for another method", "GET", `/trpc/${many},admin.deleteUser`, "procedures"],
    ["procedures /trpc/* takes alike go on", "POST", `/trpc/${many}`, "procedures"],
    ["one binding another tenant is refused", "GET", `/v1/tenants/${many},globex`, "ambiguous_batch"],
  ])("%s (%s %#)", (_, method, path, expected) => {
    expect(routed(routes, method, path)).toBe(expected);
  });

  it("a route of another host is no reading of this one's batch, and takes its own", () => {
    expect(routed(routes, "GET", `/${many},x`)).toBe("site");
    expect(routed(routes, "GET", `/${many},x`, "", "admin.example.test")).toBe("other-host");
  });

  it("a batch in a query CodeIgniter reads as the path is refused where it names a guarded service", () => {
    expect(routed(routes, "GET", "/", `?/${many},svc7`)).toBe("ambiguous_path_info");
    // Under the guarded home page, a batch of the site's pages runs under the stricter rules.
    expect(routed(routes, "GET", "/", `?/${many}`)).toBe("home");
  });

  it("a 405's and a preflight's methods leave out the method whose batch is refused", () => {
    expect(methodsAt(routes, HOST, `/${many}`, "")).toBe("GET, HEAD");
    expect(methodsAt(routes, HOST, `/${many},svc7`, "")).toBe("");
  });
});

describe("a cookie name full of `%` is read as lenient parsers read it, however long", () => {
  const percents = "%".repeat(30000);

  it("a name of nothing but `%` (no escape decodes) goes on as sent", () => {
    expect(lenientName(percents)).toBe(percents);
    expect(lenientName(`${"%%u".repeat(10000)}`)).toBe("%%u".repeat(10000));
    expect(withoutCredentialCookies(`${percents}=v; a=1`)).toBe(`${percents}=v; a=1`);
    expect(hidesCredentialCookie(`x= ${percents}=v`)).toBe(false);
  });

  it("the Access cookie behind thousands of escaped spaces is still cut out", () => {
    expect(withoutCredentialCookies(`a=1; ${"%20".repeat(3000)}CF_Authorization=t; b=2`)).toBe("a=1; b=2");
    expect(hidesCredentialCookie(`a=1 ${"%09".repeat(3000)}CF_Authorization=x`)).toBe(true);
  });

  it("an escape after a run of `%` decodes on its own, as PHP and .NET decode it", () => {
    // `%%43F_Authorization` is `%CF_Authorization` there: another cookie.
    const name = `${"%".repeat(3000)}%43F_Authorization`;
    expect(lenientName(name)).toBe(`${"%".repeat(3000)}cf_authorization`);
    expect(withoutCredentialCookies(`a=1; ${name}=t; b=2`)).toBe(`a=1; ${name}=t; b=2`);
    // IIS's `%u0043` is a `C` after any run of `%`, and an escaped `%` (`%25`) is a `%`.
    expect(lenientName(`${"%".repeat(3000)}%u0043x`)).toBe(`${"%".repeat(3000)}cx`);
    expect(lenientName(`%25${"%".repeat(3000)}`)).toBe("%".repeat(3001));
    expect(withoutCredentialCookies("a=1; %u0043F_Authorization=t; b=2")).toBe("a=1; b=2");
  });
});
