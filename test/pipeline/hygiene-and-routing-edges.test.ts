// Checks of the hygiene, path, routing and authorisation rules at their edges:
// each test below fails if the one rule it names is dropped or moved by one. Boundaries are
// asserted on both sides (the last value let through, the first refused), and every refusal by
// its reason and detail, with what reached the origin (the real echo origin records it) or what
// the client was answered.
import { beforeAll, describe, expect, it } from "vitest";
import { canonicalPath } from "../../src/core/path";
import type { IssuerConfig, PolicyDocument } from "../../src/core/policy-types";
import { basePolicy, harness } from "../support/harness";
import { AUDIENCE, makeIssuer, type TestIssuer } from "../support/issuers";
import { sendMarked } from "../support/sent";

let issuer: TestIssuer;

beforeAll(async () => {
  issuer = await makeIssuer("ES256");
});

const idp = () =>
  ({ idp: { kind: "oidc", issuer: issuer.url, audiences: [AUDIENCE] } }) as Record<string, IssuerConfig>;

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe("a field named Close is hop-by-hop by definition, whatever Connection says", () => {
  it("a client's Close without any Connection never reaches the origin", async () => {
    const edge = harness(basePolicy());
    const { response, seen, got, record } = await sendMarked(edge, "/public/a", { headers: { close: "1" } });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "public" });
    expect(seen).toHaveLength(1);
    expect(got).not.toHaveProperty("close");
  });

  it("an origin's Close without any Connection never reaches the client", async () => {
    const edge = harness(
      basePolicy({
        upstreams: { svc: { service: "ECHO_SERVICE" } },
        routes: [{ name: "svc", methods: ["GET"], path: "/svc/**", auth: "public", upstream: "svc" }],
      }),
    );
    // The binding's test hook adds these to its answer: the other one shows the hook worked.
    const response = await edge.fetch("/svc/a", {
      headers: {
        "x-respond-with": JSON.stringify([
          ["close", "1"],
          ["x-kept", "yes"],
        ]),
      },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-kept")).toBe("yes");
    expect(response.headers.get("close")).toBeNull();
  });
});

describe("the Cookie header budget at its boundary (2,000 `;` and `=`)", () => {
  // 1,000 pairs hold 1,999 separators; a bare name after one more `;` makes 2,000 exactly.
  const pairs = Array.from({ length: 1000 }, (_, i) => `c${i}=1`).join(";");

  it("exactly 2,000 is read and forwarded as sent", async () => {
    const edge = harness(basePolicy());
    const cookie = `${pairs};last`;
    expect(cookie.split(/[;=]/).length - 1).toBe(2000);
    const { response, got, record } = await sendMarked(edge, "/public/a", { headers: { cookie } });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow" });
    expect(got.cookie).toBe(cookie);
  });

  it("2,001 is refused 400 too_many_cookies, never forwarded", async () => {
    const edge = harness(basePolicy());
    const cookie = `${pairs};last=`;
    expect(cookie.split(/[;=]/).length - 1).toBe(2001);
    const { response, body, seen, record } = await sendMarked(edge, "/public/a", { headers: { cookie } });
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "too_many_cookies" });
    expect(seen).toHaveLength(0);
  });
});

describe("a path exactly max_url_bytes long, in a URL refused for its length", () => {
  // The URL (scheme and host too) is longer than its path: a path of the limit's length is in
  // a URL past it, and made canonical all the same, so the record names it.
  const edge = () => harness(basePolicy({ settings: { limiter_timeout_ms: 2000, max_url_bytes: 256 } }));

  it("is still named by the audit record", async () => {
    const path = `/public/${"a".repeat(256 - "/public/".length)}`;
    expect(path).toHaveLength(256);
    const { response, body, seen, record } = await sendMarked(edge(), path);
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "url_too_long", path });
    expect(seen).toHaveLength(0);
  });

  it("one byte longer is not made canonical, and the record names no path", async () => {
    const path = `/public/${"a".repeat(257 - "/public/".length)}`;
    const { response, seen, record } = await sendMarked(edge(), path);
    expect(response.status).toBe(400);
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "url_too_long", path: null });
    expect(seen).toHaveLength(0);
  });
});

describe("control characters at their boundary", () => {
  it.each(["/v1/a%1Fb", "/v1/a%1fb"])("%s (the last C0 control, escaped) is control_character", (path) => {
    expect(canonicalPath(path)).toEqual({ ok: false, detail: "control_character" });
  });

  it("the last C0 control sent raw is control_character too", () => {
    expect(canonicalPath("/v1/a\u001fb")).toEqual({ ok: false, detail: "control_character" });
  });

  it("an escaped space, the first character past the controls, is no control: it goes on escaped", () => {
    expect(canonicalPath("/v1/a%20b")).toEqual({ ok: true, path: "/v1/a%20b" });
  });

  it("/public/a%1Fb is refused 400 control_character at the edge, never forwarded", async () => {
    const edge = harness(basePolicy());
    const { response, body, seen, record } = await sendMarked(edge, "/public/a%1Fb");
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "control_character" });
    expect(seen).toHaveLength(0);
  });
});

describe("a dot segment that ends the path leaves its directory's trailing slash (RFC 3986 §5.2.4)", () => {
  it.each([
    ["/v1/a/..", "/v1/"],
    ["/v1/a/.", "/v1/a/"],
  ])("%s -> %s", (input, expected) => {
    expect(canonicalPath(input)).toEqual({ ok: true, path: expected });
  });
});

describe("a one-segment pattern at the root path", () => {
  const edge = () =>
    harness(basePolicy({ routes: [{ name: "one", methods: ["GET"], path: "/*", auth: "public", upstream: "echo" }] }));

  it("`/*` takes a named segment", async () => {
    const { response, record, seen } = await sendMarked(edge(), "/x");
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "one" });
    expect(seen.map((s) => s.path)).toEqual(["/x"]);
  });

  it("`/*` never takes `/`, whose one segment is empty: 404 route_not_found, never forwarded", async () => {
    const { response, body, record, seen } = await sendMarked(edge(), "/");
    expect(response.status).toBe(404);
    expect(body?.reason).toBe("route_not_found");
    expect(record).toMatchObject({ decision: "deny", reason: "route_not_found", route: null });
    expect(seen).toHaveLength(0);
  });
});

describe("format suffixes read from the first dot and from the last", () => {
  const policy = (): PolicyDocument =>
    basePolicy({
      issuers: idp(),
      routes: [
        { name: "home", methods: ["GET"], path: "/", auth: { issuers: ["idp"] }, upstream: "echo" },
        { name: "report", methods: ["GET"], path: "/v1/report.v2", auth: { issuers: ["idp"] }, upstream: "echo" },
        { name: "files", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
      ],
    });

  it("/v1/report.v2.json, which Rails reads as report.v2 (its last suffix off), is refused 400 ambiguous_format", async () => {
    const edge = harness(policy());
    const { response, body, record, seen } = await sendMarked(edge, "/v1/report.v2.json");
    expect(response.status).toBe(400);
    expect(body?.reason).toBe("bad_request");
    expect(record).toMatchObject({ decision: "deny", reason: "bad_request", detail: "ambiguous_format" });
    expect(seen).toHaveLength(0);
  });

  it("/.env's leading dot is part of its name, not a suffix: it is not read as `/`, and is served by /**", async () => {
    const edge = harness(policy());
    const { response, record, seen } = await sendMarked(edge, "/.env");
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "files" });
    expect(seen.map((s) => s.path)).toEqual(["/.env"]);
  });
});

describe("groups.any_of with more than one group", () => {
  const edge = () =>
    harness(
      basePolicy({
        issuers: idp(),
        routes: [
          {
            name: "ops",
            methods: ["GET"],
            path: "/ops/**",
            auth: { issuers: ["idp"], groups: { any_of: ["admins", "ops"] } },
            upstream: "echo",
          },
        ],
      }),
    );

  it("one of the listed groups is enough", async () => {
    const token = await issuer.sign({ sub: "alice", groups: ["ops"] });
    const { response, record, got } = await sendMarked(edge(), "/ops/x", { headers: bearer(token) });
    expect(response.status).toBe(200);
    expect(record).toMatchObject({ decision: "allow", route: "ops" });
    expect(got["x-user-groups"]).toBe("ops");
  });

  it("none of them is 403 forbidden (group), never forwarded", async () => {
    const token = await issuer.sign({ sub: "alice", groups: ["viewers"] });
    const { response, body, record, seen } = await sendMarked(edge(), "/ops/x", { headers: bearer(token) });
    expect(response.status).toBe(403);
    expect(body?.reason).toBe("forbidden");
    expect(record).toMatchObject({ decision: "deny", reason: "forbidden", detail: "group", route: "ops" });
    expect(seen).toHaveLength(0);
  });
});

describe("Max-Forwards on a forwarded OPTIONS, at the ceiling and with leading zeros", () => {
  const edge = () =>
    harness(
      basePolicy({
        routes: [{ name: "opts", methods: ["GET", "OPTIONS"], path: "/opts/**", auth: "public", upstream: "echo" }],
      }),
    );

  it.each([
    // Three digits are counted down like any other count; only past 255 is it the ceiling.
    ["100", "99"],
    ["255", "254"],
    ["256", "255"],
    ["999", "255"],
    ["0010", "9"],
  ])("%s goes on as %s", async (value, forwarded) => {
    const { response, seen } = await sendMarked(edge(), "/opts/a", {
      method: "OPTIONS",
      headers: { "max-forwards": value },
    });
    expect(response.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers["max-forwards"]).toBe(forwarded);
  });

  it.each(["00", "000"])("%s is zero: answered at the edge, never forwarded", async (value) => {
    const { response, text, record, seen } = await sendMarked(edge(), "/opts/a", {
      method: "OPTIONS",
      headers: { "max-forwards": value },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    expect(text).toBe("");
    expect(record).toMatchObject({ decision: "allow", reason: null, detail: "max_forwards_zero" });
    expect(seen).toHaveLength(0);
  });
});
