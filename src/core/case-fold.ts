// Letter case as servers that ignore it compare names: one character at a time, folded both
// ways (as Java's equalsIgnoreCase and .NET's case-insensitive comparison do), so dotless `ı`
// and dotted `İ` read as `i`, final `ς` as `σ` and capital `ẞ` as `ß`, while `ß` is never `ss`:
// a mapping to more than one character is not one a per-character comparison makes.

function foldChar(char: string): string {
  // JavaScript lower-cases İ to an i with a combining dot; per character it is an i.
  if (char === "\u0130") return "i";
  const upper = char.toUpperCase();
  const base = [...upper].length === 1 ? upper : char;
  const lower = base.toLowerCase();
  return [...lower].length === 1 ? lower : base;
}

export function foldCase(text: string): string {
  // ASCII letters fold as lower case does; only other characters need one at a time.
  return text.replace(/[^\0-\x7f]/gu, foldChar).toLowerCase();
}
