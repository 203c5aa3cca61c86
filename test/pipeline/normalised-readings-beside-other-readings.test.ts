// Paths whose segments Unicode normalisation (NFKC) changes without bringing in ASCII: the
// canonical path lets them on, and routing asks about their normalised reading, letters folded,
// both as a whole path and through every other reading it asks about for a path as written (a
// format suffix, PATH_INFO, a directory's index). A scan of every code point, and of every
// letter (ASCII, fullwidth, and the compatibility letters: `Ⓐ`, `Ⅰ`, `ᴬ`, `ſ`, …) followed by
// one combining mark, found no segment so let on that an origin reads as `/admin` by
// normalising (NFC, NFD, NFKC, NFKD) and folding letter case that routing does not refuse.
// Each test drives the real pipeline against the echo origin.
import { beforeAll, describe, expect, it } from "vitest";
import { admins, siteWithAdmin, withIdp } from "../support/guarded-sites";
import { harness } from "../support/harness";
import { makeIssuer, type TestIssuer } from "../support/issuers";
import { expectAmbiguous, sendMarked } from "../support/sent";

let idp: TestIssuer;

beforeAll(async () => {
  idp = await makeIssuer("ES256");
});

/** A guarded route for `path` (the `admins` group), then the public site, `/**`. */
const guarding = (path: string) =>
  withIdp(idp, [
    { name: "guarded", methods: ["GET"], path, auth: admins(), upstream: "echo" },
    { name: "site", methods: ["GET"], path: "/**", auth: "public", upstream: "echo" },
  ]);

describe("a compatibility letter that a combining mark takes into a composed one", () => {
  // FULLWIDTH `Ｉ` (U+FF29) and ROMAN NUMERAL ONE `Ⅰ` (U+2160) are `I` to NFKC, which then
  // composes that `I` and COMBINING DOT ABOVE into `İ`: the ASCII `I` is taken in, so the path
  // stage lets the segment on, and only routing's reading (`admİn`, folded `admin`) is left to
  // see another route's path in it.
  it.each([
    ["fullwidth Ｉ + U+0307", "/adm%EF%BC%A9%CC%87n/users"],
    ["roman numeral Ⅰ + U+0307", "/adm%E2%85%A0%CC%87n/users"],
  ])("%s for /admin under a public /** is refused as ambiguous_segment, nothing forwarded", async (_label, path) => {
    const edge = harness(siteWithAdmin(idp));
    // Control: a combining mark on a letter that no reading makes `i` goes on as sent.
    const other = await sendMarked(edge, "/adme%CC%81n/users");
    expect(other.record).toMatchObject({ decision: "allow", route: "site" });
    expect(other.seen.map((s) => s.raw_target)).toEqual(["/adme%CC%81n/users"]);
    const sent = await sendMarked(edge, path);
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_segment");
  });
});

// An origin that normalises the path before routing (an NFC or NFKC filter before the router,
// or a file system that compares names canonically, as APFS does) and reads it as the edge's
// other readings say (Rails' `(.:format)`, Apache/php-fpm's PATH_INFO, a static host's
// `index.html`) would run the guarded handler: each path is refused as its NFKC spelling is.

describe("the normalised reading, without its format suffix", () => {
  it("/admI%CC%87n.json (NFKC: admİn.json, folded admin.json) under /admin/** before /** is refused, nothing forwarded", async () => {
    // Precomposed `İ` is folded before the format reading, and `/admin.json` is `/admin` to
    // Rails (every route is `path(.:format)`) and older Spring.
    const edge = harness(siteWithAdmin(idp));
    // Control: another word with a format suffix goes on as sent.
    const other = await sendMarked(edge, "/adm%C3%A9n.json");
    expect(other.record).toMatchObject({ decision: "allow", route: "site" });
    expect(other.seen.map((s) => s.raw_target)).toEqual(["/adm%C3%A9n.json"]);
    const precomposed = await sendMarked(edge, "/adm%C4%B0n.json");
    expectAmbiguous(precomposed);
    expect(precomposed.record?.detail).toBe("ambiguous_format");
    // Decomposed (I + COMBINING DOT ABOVE, as macOS writes names): NFC/NFKC make it the path
    // above.
    const sent = await sendMarked(edge, "/admI%CC%87n.json");
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_format");
  });

  it("halfwidth /v1/ｶﾌｪ.json (NFKC: カフェ.json) where /v1/カフェ is guarded is refused, nothing forwarded", async () => {
    // No letter case involved: NFKC alone makes it `/v1/カフェ.json`, which a format-suffix
    // router reads as the guarded page `/v1/カフェ`, as it does `/v1/カフェ.json` itself.
    const edge = harness(guarding("/v1/カフェ"));
    const written = await sendMarked(edge, "/v1/%E3%82%AB%E3%83%95%E3%82%A7.json");
    expectAmbiguous(written);
    expect(written.record?.detail).toBe("ambiguous_format");
    const sent = await sendMarked(edge, "/v1/%EF%BD%B6%EF%BE%8C%EF%BD%AA.json");
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_format");
  });
});

describe("the normalised reading, as a directory's index", () => {
  it("decomposed /cafe%CC%81/index.html where the page /café is guarded is refused, nothing forwarded", async () => {
    // A static host serving an exported site takes `/café/index.html` for the page `/café`
    // (the edge refuses that as ambiguous_path_info); one whose file system compares names
    // canonically equivalent (APFS on macOS) or behind an NFC filter reads the decomposed
    // `cafe` + COMBINING ACUTE the same.
    const edge = harness(guarding("/café"));
    // Control: another page's index file goes on as sent.
    const other = await sendMarked(edge, "/caf%C3%A9s/index.html");
    expect(other.record).toMatchObject({ decision: "allow", route: "site" });
    expect(other.seen.map((s) => s.raw_target)).toEqual(["/caf%C3%A9s/index.html"]);
    const precomposed = await sendMarked(edge, "/caf%C3%A9/index.html");
    expectAmbiguous(precomposed);
    expect(precomposed.record?.detail).toBe("ambiguous_path_info");
    const sent = await sendMarked(edge, "/cafe%CC%81/index.html");
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_path_info");
  });
});

describe("the normalised reading, as a script's PATH_INFO", () => {
  it("/admI%CC%87n.php/x where /admin.php is guarded is refused, nothing forwarded", async () => {
    // Apache's AcceptPathInfo and php-fpm run `/admin.php/x` as `admin.php` (refused as
    // ambiguous_path_info, as is precomposed `/admİn.php/x`, folded); the decomposed spelling
    // is the same to an origin that normalises and ignores case.
    const edge = harness(guarding("/admin.php"));
    // Control: another script's PATH_INFO goes on as sent.
    const other = await sendMarked(edge, "/adm%C3%A9n.php/x");
    expect(other.record).toMatchObject({ decision: "allow", route: "site" });
    expect(other.seen.map((s) => s.raw_target)).toEqual(["/adm%C3%A9n.php/x"]);
    const precomposed = await sendMarked(edge, "/adm%C4%B0n.php/x");
    expectAmbiguous(precomposed);
    expect(precomposed.record?.detail).toBe("ambiguous_path_info");
    const sent = await sendMarked(edge, "/admI%CC%87n.php/x");
    expectAmbiguous(sent);
    expect(sent.record?.detail).toBe("ambiguous_path_info");
  });
});
