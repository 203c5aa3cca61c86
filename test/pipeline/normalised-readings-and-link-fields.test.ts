// Readings of a path that Unicode normalisation (NFKC) changes without bringing in ASCII, and
// `Link` fields naming the upstream, as origins write them. Path tests drive the real pipeline
// against the echo origin; Link tests call the rewrite directly, as
// test/core/upstream-urls-on-edge.test.ts does.
import { beforeAll, describe, expect, it } from "vitest";
import { upstreamUrlsOnEdge } from "../../src/core/origin-response";
import { siteWithAdmin, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { expectAmbiguous, sendMarked } from "../support/sent";

let idp: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

// `admin` spelt with an i that only NFKC and letter case together make ASCII: decomposed
// `I` + COMBINING DOT ABOVE, which NFC/NFKC compose into `İ` (U+0130), and MATHEMATICAL ITALIC
// SMALL DOTLESS I (U+1D6A4), which NFKC makes `ı` (U+0131). The edge itself folds `İ` and `ı` to
// `i` (src/core/case-fold.ts, as Java's equalsIgnoreCase compares), and refuses `/adm%C4%B0n`
// and `/adm%C4%B1n` as another route's (test/core/routing-match.test.ts).
const DECOMPOSED_DOTTED_I = "/admI%CC%87n/users";
const MATH_DOTLESS_I = "/adm%F0%9D%9A%A4n/users";

describe("an NFKC reading that letter case makes another route's", () => {
  // NFKC brings in no ASCII here (`admİn`, `admın`), so the path stage lets the segments on;
  // but folded as the edge folds, the reading is `admin`: an origin that normalises the path
  // (NFC or NFKC) and routes without regard to case would run the guarded `/admin/**` handler
  // for a caller let through by `/**`. Routing asks about the normalised reading for every
  // path beyond ASCII, whatever the policy's literals.
  it.each([
    ["decomposed I + U+0307 (NFKC: İ)", DECOMPOSED_DOTTED_I],
    ["mathematical dotless ı (NFKC: ı)", MATH_DOTLESS_I],
  ])("%s for /admin under a public /** is refused, nothing forwarded", async (_label, path) => {
    const edge = harness(siteWithAdmin(idp));
    // Control: a word beyond ASCII that no reading makes `admin` goes on as sent, so the
    // refusal below is the reading's, not one of every such path.
    const other = await sendMarked(edge, "/adm%C3%A9n/users");
    expect(other.record).toMatchObject({ decision: "allow", route: "site" });
    expect(other.seen.map((s) => s.raw_target)).toEqual(["/adm%C3%A9n/users"]);
    const sent = await sendMarked(edge, path);
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_segment");
  });
});

describe("the same readings where a route literal is beyond ASCII too", () => {
  const withCafe = () =>
    withIdp(idp, [
      { name: "cafe", methods: ["GET"], path: "/カフェ/**", auth: { issuers: ["idp"] }, upstream: "echo" },
      {
        name: "admin",
        methods: ["GET"],
        path: "/admin/**",
        auth: { issuers: ["idp"], groups: { any_of: ["admins"] } },
        upstream: "echo",
      },
      { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
    ]);

  it.each([DECOMPOSED_DOTTED_I, MATH_DOTLESS_I])(
    "%s is refused as ambiguous_segment, nothing forwarded",
    async (path) => {
      const edge = harness(withCafe());
      // Control: the route literal beyond ASCII is its route's as written.
      const cafe = await sendMarked(edge, "/%E3%82%AB%E3%83%95%E3%82%A7/menu");
      expect(cafe.record).toMatchObject({ decision: "deny", reason: "token_missing", route: "cafe" });
      expect(cafe.seen).toHaveLength(0);
      const sent = await sendMarked(edge, path);
      expectAmbiguous(sent);
      expect(sent.record?.detail).toBe("ambiguous_segment");
    },
  );
});

describe("Link fields as origins write them", () => {
  const EDGE = "https://api.example.com";
  const UPSTREAM = "https://origin.internal:8443/base";

  it("each of several Link field lines has its upstream targets made the edge's", () => {
    // Rails' and Express's answers may carry one field line per link (`append`).
    const headers = new Headers();
    headers.append("link", `<${UPSTREAM}/items?page=2>; rel="next"`);
    headers.append("link", `<${UPSTREAM}/items?page=9>; rel="last"`);
    upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
    expect(headers.get("link")).toBe(`<${EDGE}/items?page=2>; rel="next", <${EDGE}/items?page=9>; rel="last"`);
    expect(headers.get("link")).not.toContain("origin.internal");
  });

  it("an upstream at an IPv6 address: its targets are the edge's, another port's and another address's are not", () => {
    const headers = new Headers({
      link: '<http://[::1]:8080/a>; rel="next", <http://[::1]:9090/b>; rel="x", <http://[::2]:8080/c>; rel="y"',
    });
    upstreamUrlsOnEdge(headers, "http://[::1]:8080", EDGE);
    expect(headers.get("link")).toBe(
      `<${EDGE}/a>; rel="next", <http://[::1]:9090/b>; rel="x", <http://[::2]:8080/c>; rel="y"`,
    );
  });

  it("a Link with nothing naming the upstream is sent byte for byte as written", () => {
    const link = '</items?page=2>;rel=next,  <https://cdn.example/x.css>; rel="preload";as=style';
    const headers = new Headers({ link });
    upstreamUrlsOnEdge(headers, UPSTREAM, EDGE);
    expect(headers.get("link")).toBe(link);
  });
});
