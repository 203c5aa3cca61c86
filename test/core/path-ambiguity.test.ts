// Path spellings an origin may read as another path, which another route may guard: refused
// however they are escaped; the common legitimate ones go through.
import { describe, expect, it } from "vitest";
import { canonicalPath } from "../../src/core/path";

describe("segments an origin reads as another", () => {
  // NTFS stream names: IIS reads `admin::$INDEX_ALLOCATION` as the directory `admin`, and
  // `x.aspx::$DATA` as the file `x.aspx`.
  it.each([
    "/public/../admin::$INDEX_ALLOCATION/users",
    "/admin:$i30:$INDEX_ALLOCATION/users",
    "/admin%3A%3A%24INDEX_ALLOCATION/users",
    "/admin/report.aspx::$DATA",
  ])("refuses the NTFS stream spelling %s", (path) => {
    expect(canonicalPath(path)).toEqual({ ok: false, detail: "ambiguous_segment" });
  });

  // A best-fit conversion to a Windows code page reads `¥` (cp932) and `₩` (cp949) as `\`.
  it.each([
    "/public/..%C2%A5admin/users",
    "/public/..%E2%82%A9admin/users",
    "/public/..%E2%88%95admin",
    // U+2044 FRACTION SLASH, `/` to cp1252's best fit; U+2236 and U+0589, `:` to it.
    "/public/..%E2%81%84admin/users",
    "/admin%E2%88%B6%E2%88%B6$DATA/users",
    "/admin%D6%89%D6%89$INDEX_ALLOCATION/users",
    // Look-alikes NFKC already reads as ASCII: small and fullwidth solidi, fullwidth colons.
    "/a%EF%B9%A8b",
    "/a%EF%BC%8Fb",
    "/a%EF%BC%9A%EF%BC%9A$DATA",
  ])("refuses %s, a separator to a best-fit ANSI conversion", (path) => {
    expect(canonicalPath(path)).toEqual({ ok: false, detail: "ambiguous_segment" });
  });

  // The fast path cannot be dodged: every way of spelling a trailing
  // dot/space or a non-ASCII byte reaches the check, and decodeURIComponent never throws.
  it("every escape of a trailing dot or space, and NFKC look-alikes, is refused; nothing throws", () => {
    for (const path of [
      "/admin%2e/x",
      "/admin%2E%2e/x",
      "/admin.%2E%20/x",
      "/admin%20%2E/x",
      "/admin%C2%A0/x", // NBSP
      "/admin%E3%80%80/x", // ideographic space
      "/admin%EF%BC%8E/x", // fullwidth full stop
      "/%EF%BD%81dmin/x",
      "/%E2%84%AAdmin/x", // the Kelvin sign, `K` to NFKC (and NFC)
    ]) {
      expect({ path, r: canonicalPath(path) }).toEqual({ path, r: { ok: false, detail: "ambiguous_segment" } });
    }
    // Raw non-ASCII never reaches canonicalPath from a request: the URL parser escapes it.
    expect(new URL("https://e.test/ａdmin./x").pathname).toBe("/%EF%BD%81dmin./x");
    const pieces = ["%C3%A9", "%E2%80%A4", "%EF%BC%8E", ".", "%20", "%2E", "a", "/", "%CC%81", "%F0%9F%A6%80"];
    const walk = (path: string, depth: number) => {
      expect(() => canonicalPath(path)).not.toThrow();
      if (depth > 0) for (const piece of pieces) walk(path + piece, depth - 1);
    };
    walk("/", 4);
  });

  // Common legitimate paths still go through.
  it.each([
    "/v1.2/items",
    "/.well-known/openid-configuration",
    "/files/report.v2.pdf",
    "/~user/a@b/k=v,w/x+y:z",
    "/wiki/caf%C3%A9",
    "/%E6%97%A5%E6%9C%AC%E8%AA%9E/%E3%83%86%E3%82%B9%E3%83%88", // 日本語/テスト
    "/%E4%B8%AD%E6%96%87/%E6%96%87%E4%BB%B6", // 中文/文件
    "/a%20b/c", // an inner space
    "/%F0%9F%A6%80", // emoji
    // What NFKC changes without bringing in ASCII: no route written in ASCII could take it.
    "/v1/cafe%CC%81", // decomposed (NFD) accents, as macOS writes file names
    "/a%CC%81dmin/x", // `ádmin`: composing takes the `a` away, adds none
    "/%E0%B8%99%E0%B9%89%E0%B8%B3", // Thai น้ำ (water): SARA AM is NIKHAHIT and SARA AA to NFKC
    "/%E0%BA%84%E0%BA%B3", // Lao ຄຳ (word), likewise
    "/%EF%BD%B6%EF%BE%8C%EF%BD%AA", // halfwidth katakana ｶﾌｪ, カフェ to NFKC
  ])("accepts %s", (path) => {
    expect(canonicalPath(path)).toMatchObject({ ok: true });
  });
});

describe("best-fit look-alikes in every spelling, and ordinary names close to them", () => {
  // Every spelling of the look-alikes is refused.
  it.each([
    "/admin%E2%88%B6%24DATA",
    "/admin%D6%89%24DATA",
    "/admin%E2%88%B6:$DATA",
    "/admin:%E2%88%B6$DATA",
    "/a%E2%81%84b",
    "/public/..%E2%81%84admin",
  ])("refuses %s", (path) => {
    expect(canonicalPath(path)).toEqual({ ok: false, detail: "ambiguous_segment" });
  });
  it.each(["/ratio%E2%88%B6x", "/hy%D6%89am", "/price$5"])("lets %s through", (path) => {
    expect(canonicalPath(path).ok).toBe(true);
  });
});
