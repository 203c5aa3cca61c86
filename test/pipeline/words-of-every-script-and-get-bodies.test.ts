// Legitimate requests that real clients send, and what the edge does with them: words of
// living scripts in a path, and a GET that carries a body (Elasticsearch's search as its own
// documentation and curl send it). Each drives the real pipeline against the loopback echo
// origin and asserts what reached it and what the audit record says.
import { describe, expect, it } from "vitest";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { signedIn, withIdp } from "../support/guarded-sites";
import { makeIssuer } from "../support/issuers";
import { problemsOf } from "../support/policy-problems";
import { expectAmbiguous, sendMarked } from "../support/sent";

/** A public site (every path, GET and POST) in front of the echo origin. */
const publicSite = () =>
  basePolicy({
    routes: [{ name: "site", methods: ["GET", "POST"], path: "/**", auth: "public", upstream: "echo" }],
  });

describe("words whose NFKC form brings in no ASCII reach the origin as sent", () => {
  // THAI CHARACTER SARA AM (U+0E33) and LAO VOWEL SIGN AM (U+0EB3) have compatibility
  // decompositions (U+0E4D U+0E32, U+0ECD U+0EB2), and SARA AM is in a large share of everyday
  // Thai words: น้ำ (water), ทำ (do), คำ (word), สำหรับ (for), สำนักงาน (office), in shops'
  // slugs and wikis' titles. What NFKC makes of them is still Thai or Lao, which no route
  // written in ASCII takes: only what NFKC makes ASCII (`ａdmin`, `．．`) is refused.
  it.each([
    ["a Thai product slug (น้ำหอม, perfume)", "/products/%E0%B8%99%E0%B9%89%E0%B8%B3%E0%B8%AB%E0%B8%AD%E0%B8%A1"],
    [
      "a Thai wiki title (สำนักงาน, office)",
      "/wiki/%E0%B8%AA%E0%B8%B3%E0%B8%99%E0%B8%B1%E0%B8%81%E0%B8%87%E0%B8%B2%E0%B8%99",
    ],
    ["a Lao word (ຄຳ, word)", "/lo/%E0%BA%84%E0%BA%B3"],
  ])("%s reaches the origin as sent", async (_label, path) => {
    const { response, seen, record } = await sendMarked(harness(publicSite()), path);
    expect(record).toMatchObject({ decision: "allow", route: "site", detail: null });
    expect(response.status).toBe(200);
    expect(seen.map((s) => s.raw_target)).toEqual([path]);
  });
});

describe("words of scripts that NFKC leaves alone reach the origin as sent", () => {
  // The same public site passes paths in other scripts, precomposed accents and emoji with a
  // variation selector untouched, escapes as sent.
  it.each([
    ["Hindi (हिन्दी)", "/hi/%E0%A4%B9%E0%A4%BF%E0%A4%A8%E0%A5%8D%E0%A4%A6%E0%A5%80"],
    ["Arabic (عربي)", "/ar/%D8%B9%D8%B1%D8%A8%D9%8A"],
    ["Korean Hangul syllables (한글)", "/ko/%ED%95%9C%EA%B8%80"],
    ["Japanese katakana (カメラ)", "/ja/%E3%82%AB%E3%83%A1%E3%83%A9"],
    ["a precomposed accent (café)", "/fr/caf%C3%A9"],
    ["an emoji with a variation selector (❤️)", "/tags/%E2%9D%A4%EF%B8%8F"],
  ])("%s", async (_label, path) => {
    const { response, seen, record } = await sendMarked(harness(publicSite()), path);
    expect(record).toMatchObject({ decision: "allow", route: "site", detail: null });
    expect(response.status).toBe(200);
    expect(seen.map((s) => s.raw_target)).toEqual([path]);
  });
});

/**
 * A GET as workerd hands one over from the wire with a body (it gives a GET its body and its
 * Content-Length, as test/pipeline/protocol-edges.test.ts records): a `Request` built in
 * JavaScript may not carry one.
 */
class GetWithBody extends Request {
  readonly #body: ReadableStream<Uint8Array>;
  constructor(url: string, headers: Record<string, string>, body: string) {
    super(url, { method: "GET", headers: { ...headers, "content-length": String(body.length) } });
    this.#body = new Blob([body]).stream();
  }
  override get body(): ReadableStream<Uint8Array> {
    return this.#body;
  }
}

describe("a GET with a body", () => {
  // Elasticsearch and OpenSearch document `GET /<index>/_search` (and `_count`, `_msearch`) with
  // the query in a JSON body, and their documentation's curl examples send it so. The runtime's
  // fetch cannot send a GET with a body: forwarded without it, the origin would run a search
  // with no query (`match_all`), and the client would get documents it never asked for with no
  // sign that its query was lost. Refused instead, the client learns to send POST, which these
  // APIs take alike.
  it("a GET /logs/_search with its query in the body is refused, never forwarded without it", async () => {
    const edge = harness(publicSite());
    // Control: the same GET without a body goes on, so nothing forwarded below is the body's doing.
    const bare = await sendMarked(edge, "/logs/_search");
    expect(bare.record).toMatchObject({ decision: "allow", route: "site" });
    expect(bare.seen.map((s) => [s.method, s.raw_target])).toEqual([["GET", "/logs/_search"]]);
    const m = marker();
    const query = JSON.stringify({ query: { term: { "service.keyword": "billing" } } });
    const response = await edge.fetch(
      new GetWithBody(
        "https://edge.test/logs/_search",
        { "content-type": "application/json", "x-test-marker": m },
        query,
      ),
    );
    const seen = await originSaw(m);
    expect(seen.map((s) => ({ method: s.method, body_bytes: s.body_bytes }))).toEqual([]);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ reason: "bad_request" });
    expect(edge.audit.at(-1)).toMatchObject({
      decision: "deny",
      reason: "bad_request",
      detail: "body_on_get_or_head",
    });
  });
});

describe("a route written beyond ASCII, and a request normalisation would take for it", () => {
  // A literal is written as NFKC writes it (or no request in another spelling could be asked
  // about it); a request spelt otherwise, halfwidth `ｶﾌｪ` for `カフェ`, is `カフェ` to an origin
  // that normalises Unicode, whose handler for it the guarded route is.
  const cafeGuarded = async () =>
    withIdp(await makeIssuer(), [
      { name: "cafe", methods: ["GET"], path: "/カフェ/**", auth: signedIn(), upstream: "echo" },
      { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
    ]);

  it("halfwidth ｶﾌｪ, which the public route would take, is refused as ambiguous_segment, nothing forwarded", async () => {
    const sent = await sendMarked(harness(await cafeGuarded()), "/%EF%BD%B6%EF%BE%8C%EF%BD%AA/menu");
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_segment");
  });

  it("カフェ as written is the guarded route's; other words go on under the public route", async () => {
    const edge = harness(await cafeGuarded());
    const guarded = await sendMarked(edge, "/%E3%82%AB%E3%83%95%E3%82%A7/menu");
    expect(guarded.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "cafe" });
    expect(guarded.seen).toEqual([]);
    const thai = await sendMarked(edge, "/%E0%B8%99%E0%B9%89%E0%B8%B3/menu");
    expect(thai.record).toMatchObject({ decision: "allow", route: "site" });
    expect(thai.seen.map((s) => s.raw_target)).toEqual(["/%E0%B8%99%E0%B9%89%E0%B8%B3/menu"]);
  });

  it("a literal NFKC writes otherwise is refused when the policy is built", () => {
    const policy = basePolicy({
      routes: [{ name: "cafe", methods: ["GET"], path: "/ｶﾌｪ/**", auth: "public", upstream: "echo" }],
    });
    expect(problemsOf(policy)).toEqual([
      'routes[0].path: segment "ｶﾌｪ" is not in Unicode NFKC form: write it as "カフェ"',
    ]);
  });
});
