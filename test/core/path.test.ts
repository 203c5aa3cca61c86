import { describe, expect, it } from "vitest";
import { canonicalPath } from "../../src/core/path";

describe("canonicalPath", () => {
  it.each([
    ["/", "/"],
    ["/v1/users", "/v1/users"],
    ["//v1//users", "/v1/users"],
    ["/v1/./users", "/v1/users"],
    ["/v1/a/../users", "/v1/users"],
    ["/v1/%61dmin", "/v1/admin"],
    ["/v1/%7euser", "/v1/~user"],
    ["/v1/%2e%2e/admin", "/admin"],
    ["/v1/a%2Eb", "/v1/a.b"],
    ["/v1/v1.0/x", "/v1/v1.0/x"],
    // Non-ASCII that no Unicode normalisation changes goes on as sent, escaped.
    ["/v1/%E6%97%A5%E6%9C%AC", "/v1/%E6%97%A5%E6%9C%AC"],
    ["/v1/caf%c3%a9", "/v1/caf%C3%A9"],
    // A literal percent sign stays encoded; only an escaped escape (`%25` + two hex digits, or
    // `u` and four) is refused.
    ["/v1/100%25", "/v1/100%25"],
    ["/v1/100%25off", "/v1/100%25off"],
    ["/v1/100%25uptime", "/v1/100%25uptime"],
    ["/v1/%25u00", "/v1/%25u00"],
    ["/v1/users/", "/v1/users/"],
    ["/v1/users//", "/v1/users/"],
    ["/../../etc/passwd", "/etc/passwd"],
  ])("%s -> %s", (input, expected) => {
    expect(canonicalPath(input)).toEqual({ ok: true, path: expected });
  });

  it.each([
    ["/v1/a%2Fb", "encoded_slash"],
    ["/v1/a%2fb", "encoded_slash"],
    ["/v1/a%5Cb", "encoded_backslash"],
    ["/v1/a%00b", "control_character"],
    ["/v1/a%0d%0ab", "control_character"],
    ["/v1/a%7Fb", "control_character"],
    ["/v1/a\u0001b", "control_character"],
    ["/v1/a\\b", "backslash"],
    ["/v1/admin;jsessionid=x", "path_parameter"],
    ["/v1/admin%3Bx", "path_parameter"],
    ["/v1/%zz", "bad_percent_encoding"],
    ["/v1/%4", "bad_percent_encoding"],
    ["/v1/%252e%252e/admin", "double_encoding"],
    ["/v1/a%252Fb", "double_encoding"],
    // The same, assembled from escaped hex digits that the edge itself decodes.
    ["/v1/%25%32%65%25%32%65/admin", "double_encoding"],
    ["/v1/%252%65", "double_encoding"],
    ["/v1/a%25%32%46b", "double_encoding"],
    ["/v1/%25%43%30%25%41%45", "double_encoding"],
    // IIS's `%uXXXX`, escaped: a .NET origin that decodes twice reads `%25u002e` as `.`.
    ["/v1/%25u002e%25u002e/admin", "double_encoding"],
    ["/v1/a%25U002Fb", "double_encoding"],
    ["/v1/%25%75%30%30%32%65", "double_encoding"],
    // Not UTF-8: overlong forms of `.` and `/`, a stray continuation byte, a cut sequence, a surrogate.
    ["/v1/t/acme/%C0%AE%C0%AE/globex", "invalid_utf8"],
    ["/public/%C0%AF", "invalid_utf8"],
    ["/v1/%E0%80%AE", "invalid_utf8"],
    ["/v1/%80", "invalid_utf8"],
    ["/v1/caf%C3", "invalid_utf8"],
    ["/v1/%ED%A0%80", "invalid_utf8"],
    ["v1", "path_not_absolute"],
    // `?` and `#`, escaped: an origin that decodes before splitting the query cuts the path there.
    ["/admin%3F/users", "path_parameter"],
    ["/admin%3fx=1", "path_parameter"],
    ["/admin%23/users", "path_parameter"],
    // Segments Windows servers (IIS) read without their trailing dots and spaces.
    ["/v1/a%2E/b", "ambiguous_segment"],
    ["/admin./users", "ambiguous_segment"],
    ["/admin%20/users", "ambiguous_segment"],
    ["/admin.%20/users", "ambiguous_segment"],
    ["/public/..%20/admin/users", "ambiguous_segment"],
    ["/public/.../admin", "ambiguous_segment"],
    ["/v1/users.", "ambiguous_segment"],
    // Look-alikes servers that normalise Unicode (NFKC) read as ASCII: fullwidth `．．`, `／`,
    // `＼` and letters, one-dot leaders.
    ["/public/%EF%BC%8E%EF%BC%8E/admin/users", "ambiguous_segment"],
    ["/public/..%EF%BC%8F/admin", "ambiguous_segment"],
    ["/public/..%EF%BC%BC/admin", "ambiguous_segment"],
    ["/public/%E2%80%A4%E2%80%A4/admin", "ambiguous_segment"],
    ["/%EF%BD%81dmin/users", "ambiguous_segment"],
    // Letters NFKC makes ASCII however they are written: the Kelvin sign (`K`), a ligature
    // (`fi`), a superscript (`2`), a circled digit (`1`).
    ["/%E2%84%AAey/x", "ambiguous_segment"],
    ["/%EF%AC%81les", "ambiguous_segment"],
    ["/v%C2%B2/x", "ambiguous_segment"],
    ["/v%E2%91%A0", "ambiguous_segment"],
  ])("rejects %s (%s)", (input, detail) => {
    expect(canonicalPath(input)).toEqual({ ok: false, detail });
  });

  it("a canonical path is its own canonical form, so no origin reading it again finds another", () => {
    // Every escape of an unreserved character, `%` and a few hex-looking tails, in short paths.
    const pieces = [
      "/",
      "a",
      ".",
      "..",
      "%25",
      "%2e",
      "%2E",
      "%32",
      "%35",
      "%65",
      "%46",
      "%41",
      "%43",
      "%30",
      "2",
      "e",
      "F",
    ];
    let checked = 0;
    const walk = (path: string, depth: number) => {
      const once = canonicalPath(path);
      if (once.ok) {
        expect({ path, again: canonicalPath(once.path) }).toEqual({ path, again: once });
        checked++;
      }
      if (depth > 0) for (const piece of pieces) walk(path + piece, depth - 1);
    };
    walk("/", 4);
    expect(checked).toBeGreaterThan(10_000);
  });
});
