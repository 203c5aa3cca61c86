// Where a refusal rule meets what must still pass: hosts a client legitimately sends (IPv6,
// ports, a fully qualified name) against the empty-label rule and its other spellings; a
// give-back after its counter was resized; a scope with a comma on a route that reads none.
import { beforeAll, describe, expect, it } from "vitest";
import { CounterTable } from "../../src/core/limits/counter-table";
import type { CounterRequest } from "../../src/core/limits/limiter-rpc";
import type { PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, type Harness, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

/** A host route, and behind it a host-less route every host reaches. */
function policy(): PolicyDocument {
  return basePolicy({
    issuers: { idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } },
    routes: [
      {
        name: "tenant-host",
        methods: ["GET"],
        path: "/app/**",
        host: ":tenant.tenants.example.test",
        auth: { issuers: ["idp"], scopes: { all_of: ["api:read"] } },
        upstream: "echo",
      },
      { name: "signed-in", methods: ["GET"], path: "/app/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      { name: "public", methods: ["GET"], path: "/public/**", auth: "public", upstream: "echo" },
    ],
  });
}

/** `sendMarked`, and that the request wrote exactly one audit record, as every request here must. */
async function call(edge: Harness, url: string, headers: Record<string, string> = {}) {
  const sent = await sendMarked(edge, url, { headers });
  expect(sent.records).toHaveLength(1);
  return sent;
}

describe("hosts a client may legitimately send are not ambiguous", () => {
  it.each([
    ["an IPv6 literal (its `::` is no empty label)", "https://[2001:db8::1]/public/x", "[2001:db8::1]"],
    ["an IPv6 literal with a port", "https://[::1]:8443/public/x", "[::1]:8443"],
    ["an IPv4 literal", "https://192.0.2.7/public/x", "192.0.2.7"],
    [
      "a fully qualified name (one trailing dot) with a port",
      "https://api.example.test.:8443/public/x",
      "api.example.test.:8443",
    ],
  ])("%s is served", async (_label, url, host) => {
    const edge = harness(policy());
    const { response, seen, record } = await call(edge, url);
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", reason: null, route: "public" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers["x-forwarded-host"]).toBe(host);
  });
});

describe("an empty label however the client spells it", () => {
  // The URL parser decodes `%2E` and maps the ideographic and fullwidth full stops to `.`
  // before the stage looks: each is the `..` the check refuses, never a host-less route.
  it.each([
    ["percent-encoded dots", "https://acme%2E%2Etenants.example.test/app/orders"],
    ["ideographic full stops (U+3002)", "https://acme\u3002\u3002tenants.example.test/app/orders"],
    ["fullwidth full stops (U+FF0E)", "https://acme\uFF0E\uFF0Etenants.example.test/app/orders"],
    ["a percent-encoded leading dot", "https://%2Eacme.tenants.example.test/app/orders"],
  ])("%s: 400 ambiguous_host, nothing forwarded", async (_label, url) => {
    const edge = harness(policy());
    const token = await issuer.sign({ tenant_id: "globex" });
    const { response, body, seen, record } = await call(edge, url, { authorization: `Bearer ${token}` });
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_host", route: null });
  });
});

describe("a charge's give-back once its counter is decided on at another size", () => {
  // README (rate limits): nothing is given back "if the counter has been decided on at
  // another size since, as a tenant override changed in between sizes it".
  const T0 = 1_700_000_000_000;
  const before: CounterRequest = { id: "c", limit: 10, windowS: 10 };
  const after: CounterRequest = { id: "c", limit: 20, windowS: 10 };
  const remaining = (table: CounterTable, item: CounterRequest, now: number) =>
    table.acquire([{ ...item, cost: 0 }], now).counters[0]?.remaining;

  it("gives nothing back at the size it was charged at, once the counter was resized", () => {
    const table = new CounterTable();
    const charge = table.acquire([before], T0);
    expect(charge.allowed).toBe(true);
    // A request of the new policy version resizes the counter (an inspection does too).
    expect(remaining(table, after, T0)).toBe(18);
    table.release([before], charge.at, charge.epoch, T0);
    expect(remaining(table, after, T0)).toBe(18);
  });

  it("control: without the resize, the same give-back restores the counter", () => {
    const table = new CounterTable();
    const charge = table.acquire([before], T0);
    expect(remaining(table, before, T0)).toBe(9);
    table.release([before], charge.at, charge.epoch, T0);
    expect(remaining(table, before, T0)).toBe(10);
  });
});

describe("a scope with a comma", () => {
  it("refuses the token on a route that requires no scope (every route, whether or not it reads scopes)", async () => {
    // A comma is legal in an RFC 6749 scope-token, and Amazon Cognito allows one in a custom
    // scope's name and resource-server identifier: such a token is refused here as a whole.
    const edge = harness(policy());
    const token = await issuer.sign({ scope: "openid orders,api/read" });
    const { response, body, seen, record } = await call(edge, "https://edge.test/app/x", {
      authorization: `Bearer ${token}`,
    });
    expect(response.status).toBe(401);
    expect(body?.reason).toBe("token_invalid");
    expect(seen).toHaveLength(0);
    expect(record).toMatchObject({ decision: "deny", reason: "token_invalid", detail: "scopes_unsafe" });
  });
});
