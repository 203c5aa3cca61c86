// A CORS preflight is routed by the method it asks about, so it is answered as that method's own
// request would be: 405 with `Allow` where another method's request goes on at the URL, and 404
// where every request routes take there is refused as read as another route's (README: the
// CORS stage row and the `route_not_found`, `method_not_allowed` and `cors_rejected` rows).
import { beforeAll, describe, expect, it } from "vitest";
import { siteWithAdmin } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

const PAGE = "https://app.example.com";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

const preflight = (method: string): RequestInit => ({
  method: "OPTIONS",
  headers: { origin: PAGE, "access-control-request-method": method },
});

describe("a preflight for a method no route takes at its URL", () => {
  it("is 405 method_not_allowed with Allow where another method's request goes on there, never forwarded", async () => {
    const edge = harness(siteWithAdmin(issuer));
    const sent = await sendMarked(edge, "/about", preflight("DELETE"));
    expect(sent.response.status).toBe(405);
    expect(sent.response.headers.get("allow")).toBe("GET, HEAD");
    expect(sent.body).toMatchObject({ status: 405, reason: "method_not_allowed" });
    // The route stage's refusal: no CORS headers, whatever the Origin.
    expect(sent.response.headers.get("access-control-allow-origin")).toBeNull();
    expect(sent.record).toMatchObject({
      decision: "deny",
      reason: "method_not_allowed",
      method: "OPTIONS",
      route: null,
    });
    expect(sent.seen).toEqual([]);
  });

  it("is 404 route_not_found without Allow where the only request routes take there is refused as ambiguous_case", async () => {
    const edge = harness(siteWithAdmin(issuer));
    // Control: a GET of `/ADMIN/users` is the public site's by the edge's match, the guarded
    // admin area's to an origin that routes without regard to case, and refused.
    const get = await sendMarked(edge, "/ADMIN/users");
    expect(get.record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_case" });

    const sent = await sendMarked(edge, "/ADMIN/users", preflight("DELETE"));
    expect(sent.response.status).toBe(404);
    expect(sent.response.headers.get("allow")).toBeNull();
    expect(sent.body).toMatchObject({ status: 404, reason: "route_not_found" });
    expect(sent.response.headers.get("access-control-allow-origin")).toBeNull();
    expect(sent.record).toMatchObject({ decision: "deny", reason: "route_not_found", method: "OPTIONS", route: null });
    expect([...get.seen, ...sent.seen]).toEqual([]);
  });
});
