// Canonical path: the one spelling of a request path that routes match and the origin
// receives. Ambiguous encodings are rejected, never guessed: the edge cannot know how an
// origin would decode them.

export type PathResult = { ok: true; path: string } | { ok: false; detail: PathRejection };

export type PathRejection =
  | "path_not_absolute"
  | "encoded_slash"
  | "encoded_backslash"
  | "control_character"
  | "bad_percent_encoding"
  | "path_parameter"
  | "double_encoding"
  | "invalid_utf8"
  | "backslash"
  | "ambiguous_segment";

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const HEX = /^[0-9A-Fa-f]{2}$/;
/** Refuses what a strict decoder refuses: overlong forms, surrogates, stray continuation bytes. */
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Canonicalise a URL path (as produced by the WHATWG URL parser, which has already
 * resolved plain and `%2e` dot segments). Decodes percent-encoded unreserved characters,
 * upper-cases the hex of everything left encoded, resolves any dot segments that decoding
 * revealed, and merges repeated slashes.
 */
export function canonicalPath(rawPath: string): PathResult {
  if (!rawPath.startsWith("/")) return { ok: false, detail: "path_not_absolute" };
  let decoded = "";
  let nonAscii = false;
  for (let i = 0; i < rawPath.length; i++) {
    const ch = rawPath[i] as string;
    const code = ch.charCodeAt(0);
    if (code < 0x20 || code === 0x7f) return { ok: false, detail: "control_character" };
    if (ch === "\\") return { ok: false, detail: "backslash" };
    // Matrix parameters (`/admin;x`) are read as `/admin` by some origin servers: an
    // authorisation bypass waiting to happen, so they are refused outright.
    if (ch === ";") return { ok: false, detail: "path_parameter" };
    if (ch !== "%") {
      decoded += ch;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return { ok: false, detail: "bad_percent_encoding" };
    const byte = Number.parseInt(hex, 16);
    if (byte === 0x2f) return { ok: false, detail: "encoded_slash" };
    if (byte === 0x5c) return { ok: false, detail: "encoded_backslash" };
    if (byte < 0x20 || byte === 0x7f) return { ok: false, detail: "control_character" };
    // So are `?` and `#`, escaped: an origin (or a proxy before it) that decodes the path
    // before splitting off the query would cut it there.
    if (byte === 0x3b || byte === 0x3f || byte === 0x23) return { ok: false, detail: "path_parameter" };
    const char = String.fromCharCode(byte);
    decoded += byte < 0x80 && UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
    if (byte >= 0x80) nonAscii = true;
    i += 2;
  }
  // `%25` before two hex digits (`%252e`, `%252f`), or before IIS's `u` and four (`%25u002e`),
  // is an escape of an escape: an origin, or anything before it, that decodes twice would see
  // `.` or `/` the routes never saw. Judged on what is forwarded, after decoding: `%25%32%65`
  // becomes `%252e` there.
  if (/%25(u[\dA-F]{2})?[\dA-F]{2}/i.test(decoded)) return { ok: false, detail: "double_encoding" };
  // Escaped bytes that are not UTF-8 (an overlong `%C0%AE` is a `.` to a lax decoder, so
  // `/t/acme/%C0%AE%C0%AE/globex` would climb out of the tenant at such an origin) are refused.
  if (nonAscii && !isUtf8(decoded)) return { ok: false, detail: "invalid_utf8" };
  const path = normaliseSegments(decoded);
  // Most paths have no segment ending in a dot or space, no colon or parenthesis, and nothing
  // escaped beyond ASCII: they skip the check.
  if (/\.(\/|$)|%20(\/|$)|%[89A-F]|:|%3A|\(|%28/.test(path) && path.split("/").some(readsOtherwise))
    return { ok: false, detail: "ambiguous_segment" };
  return { ok: true, path };
}

/** Characters a Windows best-fit conversion or a stream name makes a separator, or the ASP.NET session segment. */
const WINDOWS_READING = /[:\u2236\u0589]\$|[\u00a5\u20a9\u2215\u2216\u2044]|^\([A-Za-z]\(.*\)\)$/;

/**
 * Whether an origin may read a segment as another one, which another route may guard:
 * Windows servers (IIS) drop trailing dots and spaces (`admin.` is `admin`, `.. ` is `..`)
 * and read an NTFS stream name as its file (`admin::$DATA`, `admin:$i30:$INDEX_ALLOCATION`);
 * a best-fit conversion to a Windows code page reads `¥` and `₩` (Japanese, Korean), `∕`, `⁄`
 * and `∖` as `\` or `/`, and `∶` or `։` as `:`; servers that normalise Unicode (NFKC) read
 * a fullwidth `ａdmin` or `．．` as the ASCII; ASP.NET (on IIS) takes a cookieless session's
 * segment, `(S(…))`, `(A(…))` or `(F(…))`, out of the path before routing (CVE-2023-36899), so
 * `/(S(x))/admin` is `/admin` there. What NFKC changes without bringing in ASCII (Thai and
 * Lao `ำ`, halfwidth katakana, decomposed accents) goes on: routing asks whether another route
 * takes the normalised reading (`readAsAnotherRoute`: a literal written beyond ASCII, or one
 * its letter case folds to, as `İ` is `i`).
 */
function readsOtherwise(segment: string): boolean {
  const text = decodeURIComponent(segment);
  const read = text.normalize("NFKC");
  return (
    WINDOWS_READING.test(text) ||
    /[. ]$/.test(read) ||
    (read !== text && (WINDOWS_READING.test(read) || bringsInAscii(text, read)))
  );
}

/**
 * Whether `read` holds ASCII that `text` does not, in order: composing `e` and an accent into
 * `é` takes ASCII away, and is no reading of another ASCII name.
 */
function bringsInAscii(text: string, read: string): boolean {
  let at = 0;
  for (const char of read) {
    if (char > "\x7f") continue;
    at = text.indexOf(char, at);
    if (at === -1) return true;
    at++;
  }
  return false;
}

/** Whether the bytes `path` spells (ASCII, and `%XX` escapes) are valid UTF-8. */
function isUtf8(path: string): boolean {
  const bytes: number[] = [];
  for (let i = 0; i < path.length; i++) {
    if (path[i] === "%") {
      bytes.push(Number.parseInt(path.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(path.charCodeAt(i));
    }
  }
  try {
    STRICT_UTF8.decode(new Uint8Array(bytes));
    return true;
  } catch {
    return false;
  }
}

/** Merge repeated slashes and resolve `.` / `..` segments (RFC 3986 §5.2.4, never above root). */
function normaliseSegments(path: string): string {
  const input = path.split("/").slice(1);
  const output: string[] = [];
  for (let i = 0; i < input.length; i++) {
    const segment = input[i] as string;
    const isLast = i === input.length - 1;
    if (segment === "..") {
      output.pop();
      if (isLast) output.push("");
    } else if (segment === ".") {
      if (isLast) output.push("");
    } else if (segment === "") {
      // An empty segment is a repeated slash, except a trailing one which is kept.
      if (isLast) output.push("");
    } else {
      output.push(segment);
    }
  }
  // Collapse a trailing "" that follows nothing (the root) and any doubled trailing slash.
  while (output.length > 1 && output[output.length - 1] === "" && output[output.length - 2] === "") {
    output.pop();
  }
  if (output.length === 1 && output[0] === "") return "/";
  return `/${output.join("/")}`;
}
