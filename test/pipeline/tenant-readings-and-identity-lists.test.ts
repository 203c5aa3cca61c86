// Identity headers and tenant binding, as a caller who chooses some claim values (a
// self-service organisation name, a group a user may create) and the whole request: what an
// origin's router or header parser reads from what the edge forwarded must be what the edge
// authorised. Each test asserts the reason and exactly what reached the origin.
import { beforeAll, describe, expect, it } from "vitest";
import type { IssuerConfig, PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let idp: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

const policy = (): PolicyDocument =>
  basePolicy({
    issuers: { idp: { kind: "oidc", issuer: idp.url, audiences: [AUDIENCE] } } as Record<string, IssuerConfig>,
    routes: [
      // The README's tenant route, and one whose tenant is the last segment of every path.
      {
        name: "tenant-api",
        methods: ["GET"],
        path: "/v1/tenants/:tenant/**",
        auth: { issuers: ["idp"] },
        upstream: "echo",
      },
      { name: "org", methods: ["GET"], path: "/v1/orgs/:tenant", auth: { issuers: ["idp"] }, upstream: "echo" },
      {
        name: "admins",
        methods: ["GET"],
        path: "/v1/admin/**",
        auth: { issuers: ["idp"], groups: { any_of: ["Domain Admins"] } },
        upstream: "echo",
      },
      { name: "any", methods: ["GET"], path: "/v1/**", auth: { issuers: ["idp"] }, upstream: "echo" },
    ],
  });

const bearer = async (claims: Record<string, unknown>) => ({ authorization: `Bearer ${await idp.sign(claims)}` });

// Rails routes `/v1/tenants/:tenant` as `/v1/tenants/:tenant(.:format)` with a segment that
// takes no dot, and Spring MVC's suffix pattern match (its default before 5.3) reads
// `{tenant}` the same way: `/v1/tenants/globex.json` is tenant `globex`, format json. Dotted
// tenants are accepted (`acme.eu`, `acme.pl` go on verbatim), so a caller whose organisation
// is named `globex.json` (or a legitimate `globex.eu`) has the edge bind the segment to its
// own tenant while the origin's controller runs for `globex`. As a reading that lands on
// another route (`ambiguous_format`), one that lands on another tenant of the same route is
// refused: it is no less another principal.
describe("tenant binding as an origin's router reads the bound segment", () => {
  it.each([
    ["the README's tenant route, ending at the tenant", "/v1/tenants/globex.json"],
    ["the same with a trailing slash", "/v1/tenants/globex.json/"],
    ["a route whose tenant is always the last segment", "/v1/orgs/globex.json"],
  ])(
    "a dotted tenant that ends the path (%s), which Rails and Spring read as tenant globex, is not forwarded",
    async (_label, path) => {
      const edge = harness(policy());
      const { response, body, record, seen } = await sendMarked(edge, path, {
        headers: await bearer({ sub: "mallory", tenant_id: "globex.json" }),
      });
      expect(response.status).toBe(400);
      expect(body).toMatchObject({ reason: "bad_request" });
      expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_format" });
      expect(seen).toHaveLength(0);
    },
  );

  it("a dotted tenant with more path after it goes on, bound as written: no router reads that segment shorter", async () => {
    const edge = harness(policy());
    const { response, record, seen } = await sendMarked(edge, "/v1/tenants/globex.json/reports", {
      headers: await bearer({ sub: "mallory", tenant_id: "globex.json" }),
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "tenant-api", tenant_id: "globex.json" });
    expect(seen.map((s) => s.raw_target)).toEqual(["/v1/tenants/globex.json/reports"]);
    expect(seen[0]?.headers["x-tenant"]).toBe("globex.json");
  });
});

/**
 * An RFC 9110 §5.6.1 list as Python's parse_http_list and Werkzeug's parse_list_header read
 * one: split at commas outside quoted strings, optional whitespace trimmed, quoted members
 * unquoted, empty members dropped.
 */
function readAsHttpList(value: string): string[] {
  const members: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i] as string;
    if (quoted && ch === "\\" && i + 1 < value.length) current += ch + value[++i];
    else if (ch === '"') {
      quoted = !quoted;
      current += ch;
    } else if (ch === "," && !quoted) {
      members.push(current);
      current = "";
    } else current += ch;
  }
  members.push(current);
  return members
    .map((member) => member.trim())
    .filter((member) => member !== "")
    .map((member) =>
      member.length >= 2 && member.startsWith('"') && member.endsWith('"')
        ? member.slice(1, -1).replace(/\\(.)/g, "$1")
        : member,
    );
}

describe("list headers as an origin's HTTP list parser reads them", () => {
  it("x-user-groups read as a list and x-user-scope split on spaces give back exactly the token's groups and scopes, for the oddest names accepted", async () => {
    // Every printable ASCII character a group or a scope may hold, in names a user could create.
    const groups = ["Domain Admins", "a;b=c", "o'reilly (eng)", "<ops>", "[x]{y}|z", "#!$%&*+./:?@^_`~"];
    const scopes = ["api:read", "a;b=c", "x'(y)", "#!$%&*+./:<>?@[]^_`{|}~"];
    const edge = harness(policy());
    const { response, record, got } = await sendMarked(edge, "/v1/admin/panel", {
      headers: await bearer({ sub: "alice", groups, scope: scopes.join(" ") }),
    });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "admins", user_sub: "alice" });
    expect(got["x-user-groups"]).toBe(groups.join(","));
    expect(readAsHttpList(got["x-user-groups"] ?? "")).toEqual(groups);
    expect((got["x-user-scope"] ?? "").split(/\s+/)).toEqual(scopes);
  });
});
