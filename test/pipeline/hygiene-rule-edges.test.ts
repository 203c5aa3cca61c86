// Where hygiene rules meet what must still pass: a Transfer-Encoding other than chunked refused
// (chunked in any case let through), legitimate hosts against the empty-label check, the
// Referer read when a browser sends neither Origin nor Sec-Fetch-Site (never for a service
// token's client), and the fields a request's `Connection` nominates, `Close` included. Each asserts the reason and what reached the
// origin (the real echo origin records it).
import { beforeAll, describe, expect, it } from "vitest";
import { WireRequest } from "../support/wire-request";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { accessAssertion, makeIssuer, type TestIssuer, ACCESS_AUD_TAG } from "../support/issuers";

let team: TestIssuer;
beforeAll(async () => {
  team = await makeIssuer("RS256");
});

function edge() {
  return harness(
    basePolicy({
      issuers: { access: { kind: "cloudflare_access", team_domain: team.url } },
      routes: [
        { name: "public", methods: ["GET", "POST"], path: "/public/**", auth: "public", upstream: "echo" },
        {
          name: "app",
          methods: ["GET", "POST"],
          path: "/app/**",
          auth: { issuers: ["access"], audiences: [ACCESS_AUD_TAG] },
          upstream: "echo",
        },
      ],
    }),
  );
}

describe("Transfer-Encoding: chunked, however a client spells it", () => {
  it.each(["chunked", "Chunked", "CHUNKED"])(
    "%j is the one coding the runtime takes off: the body reaches the origin whole",
    async (coding) => {
      const e = edge();
      const m = marker();
      const response = await e.fetch("/public/x", {
        method: "POST",
        body: "a=1&b=2",
        headers: { "transfer-encoding": coding, "x-test-marker": m },
      });
      expect(response.status).toBe(200);
      const [seen] = await originSaw(m);
      expect(seen).toMatchObject({ method: "POST", body_bytes: 7 });
      expect(e.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
    },
  );

  it.each(["gzip", "identity", "chunked, chunked"])(
    "%j is refused 400 unsupported_transfer_coding, never forwarded",
    async (coding) => {
      const e = edge();
      const m = marker();
      const response = await e.fetch("/public/x", {
        method: "POST",
        body: "a=1",
        headers: { "transfer-encoding": coding, "x-test-marker": m },
      });
      expect(response.status).toBe(400);
      expect(e.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "unsupported_transfer_coding" });
      expect(await originSaw(m)).toEqual([]);
    },
  );
});

describe("a cookie-authenticated post with neither Origin nor Sec-Fetch-Site, judged by its Referer", () => {
  const post = async (referer: string) => {
    const token = await accessAssertion(team, ACCESS_AUD_TAG);
    const e = edge();
    const m = marker();
    const response = await e.fetch("/app/x", {
      method: "POST",
      body: "a=1",
      headers: { cookie: `CF_Authorization=${token}`, referer, "x-test-marker": m },
    });
    return { status: response.status, record: e.audit.at(-1), seen: await originSaw(m) };
  };

  it.each([
    ["this host over another scheme", "http://edge.test/app/form"],
    ["this host on another port", "https://edge.test:8443/app/form"],
    ["a sibling subdomain", "https://www.edge.test/app/form"],
  ])("naming %s is another origin, refused as Origin would be", async (_label, referer) => {
    const r = await post(referer);
    expect(r.status).toBe(403);
    expect(r.record).toMatchObject({ reason: "cross_site_request", detail: "cross_site_origin" });
    expect(r.seen).toEqual([]);
  });

  it.each([
    ["its own page with the default port spelt out", "https://edge.test:443/app/form"],
    ["its own page in another letter case", "HTTPS://EDGE.TEST/app/form"],
    ["no URL (no page named)", "not a url"],
  ])("naming %s passes", async (_label, referer) => {
    const r = await post(referer);
    expect(r.status).toBe(200);
    expect(r.record).toMatchObject({ decision: "allow" });
    expect(r.seen).toHaveLength(1);
  });
});

describe("the empty-label host check in the route stage", () => {
  it.each([
    "http://edge.test./public/a",
    "http://edge.test.:8080/public/a",
    "http://[::1]:8080/public/a",
    "http://127.0.0.1/public/a",
  ])("%s, a legitimate host, is routed and forwarded", async (url) => {
    const e = edge();
    const m = marker();
    const response = await e.fetch(new WireRequest(url, { headers: { "x-test-marker": m } }));
    expect(response.status).toBe(200);
    expect(await originSaw(m)).toHaveLength(1);
  });

  it.each([
    "http://edge.test../public/a",
    "http://.edge.test:8080/public/a",
    "http://a..edge.test/public/a",
    "http://./public/a",
  ])("%s is 400 ambiguous_host, never forwarded", async (url) => {
    const e = edge();
    const m = marker();
    const response = await e.fetch(new WireRequest(url, { headers: { "x-test-marker": m } }));
    expect(response.status).toBe(400);
    expect(e.audit.at(-1)).toMatchObject({ reason: "bad_request", detail: "ambiguous_host" });
    expect(await originSaw(m)).toEqual([]);
  });
});

describe("fields a request's Connection nominates", () => {
  it("a field nominated in another spelling goes, beside keep-alive (the hop-by-hop names are skipped, and stripped in any spelling)", async () => {
    const e = edge();
    const m = marker();
    const response = await e.fetch("/public/x", {
      headers: { connection: "keep-alive, x_hop", "x-hop": "1", keep_alive: "1", "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen?.headers).not.toHaveProperty("x-hop");
    expect(seen?.headers).not.toHaveProperty("keep_alive");
  });

  it("a field named Close, which Connection: close nominates (RFC 9110 reserves the name), never reaches the origin", async () => {
    const e = edge();
    const m = marker();
    const response = await e.fetch("/public/x", { headers: { connection: "close", close: "1", "x-test-marker": m } });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen?.headers).not.toHaveProperty("close");
  });
});

describe("a service token's client, which sends no Access cookie", () => {
  it("is not judged by a Referer it forwards: its post passes (only a browser sends the cookie by itself)", async () => {
    const e = edge();
    const m = marker();
    const token = await accessAssertion(team, ACCESS_AUD_TAG, { sub: "", email: undefined, common_name: "ci.client" });
    const response = await e.fetch("/app/x", {
      method: "POST",
      body: "job=1",
      headers: { "cf-access-jwt-assertion": token, referer: "https://portal.partner.example/jobs", "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    expect(e.audit.at(-1)).toMatchObject({ decision: "allow", user_sub: "ci.client" });
    expect(await originSaw(m)).toHaveLength(1);
  });
});
