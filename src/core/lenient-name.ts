// Names as the most lenient parser an origin may use reads them (PHP, .NET, Java, Python):
// escapes decoded one by one, case folded generously, `.`, space and `[` as `_`. A credential's
// name (a query parameter, a cookie) is matched on this reading, so no spelling slips past.

const LENIENT_UTF8 = new TextDecoder();

/** Characters as escapes of their UTF-8 bytes (a run with a lone surrogate, which no header carries, as U+FFFD's). */
function escapeUtf8(run: string): string {
  try {
    return encodeURIComponent(run);
  } catch {
    return "%EF%BF%BD";
  }
}

/**
 * Every valid escape decoded on its own, and a bad escape kept as sent, as PHP's and .NET's
 * decoders read a name (the latter also takes IIS's `%uXXXX`); the bytes then read as UTF-8,
 * so case folding sees the characters an origin sees. Decoding all or nothing would read
 * `access_token%00%` undecoded, as a name that is not `access_token`, where PHP reads exactly that.
 * `unescape` does exactly this per escape, natively: a callback per escape cost ~1 µs each, and
 * a Cookie header of thousands of escapes tens of milliseconds. `%u` waits for the second pass,
 * after the bytes are read as UTF-8 (in either case, as .NET takes it).
 */
function decodeEachEscape(text: string): string {
  // Nothing escaped (a `%` alone is no escape): the runtime hands header values over decoded
  // already, and a name of a thousand `%` is read as sent without a pass over each.
  if (!/%(?:[\dA-F]{2}|u[\dA-F]{4})/i.test(text)) return text;
  // A character sent as it is stands for its UTF-8 bytes, as the origin receives them: escaped
  // first (a run at a time), so that only bytes are left once the escapes are decoded.
  const sent = /[^\0-\x7f]/.test(text) ? text.replace(/[^\0-\x7f]+/g, escapeUtf8) : text;
  let chars = unescape(sent.replace(/%(?=u)/gi, "%25"));
  if (/[\x80-\xff]/.test(chars)) {
    // One byte per character, in a loop: Uint8Array.from with a callback per character took
    // half the time of all of this.
    const bytes = new Uint8Array(chars.length);
    for (let i = 0; i < chars.length; i++) bytes[i] = chars.charCodeAt(i);
    chars = LENIENT_UTF8.decode(bytes);
  }
  return unescape(chars.replace(/%(?!u[\dA-F]{4})/gi, "%25").replace(/%U/g, "%u"));
}

/**
 * A query-parameter or cookie name as the most lenient parser an origin may use reads it:
 * escapes decoded (and `+` as a space, in a query), surrounding whitespace dropped, any case
 * (folded both ways, as Java's equalsIgnoreCase does: the Kelvin sign is a `k`, `ſ` an `s`),
 * and `.`, space or `[` read as `_`, as PHP does (`access.token`, `CF%5FAuthorization`).
 * What is stripped as a credential is matched on this, so no spelling slips past.
 */
export function lenientName(raw: string, { plusIsSpace = false } = {}): string {
  const name = plusIsSpace ? raw.replace(/\+/g, " ") : raw;
  // The whole name upper- then lower-cased, more generously than a per-character comparison
  // folds (`ß` reads as `ss` too, as Python's casefold reads it): a credential's name errs
  // towards being stripped. İ lower-cases to i and a combining dot in JavaScript: read as i.
  return decodeEachEscape(name)
    .trim()
    .replace(/\u0130/g, "i")
    .toUpperCase()
    .toLowerCase()
    .replace(/[. []/g, "_");
}

/**
 * Whether a name, as `lenientName` reads it, is `wanted` (lower case) to PHP: exactly, cut at
 * a NUL (`access_token%00x`), or in array form whatever follows its `]` (`access_token[0]x`;
 * the first `[` already reads as `_`).
 */
export function readsAsName(lenient: string, wanted: string): boolean {
  if (!lenient.startsWith(wanted)) return false;
  const rest = lenient.slice(wanted.length);
  return rest === "" || rest.startsWith("\0") || /^_[^\0]*\]/.test(rest);
}
