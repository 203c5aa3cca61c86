// Letter case as servers that ignore it compare: each character folded both ways, as Java's
// equalsIgnoreCase and .NET's case-insensitive comparison do, so the Kelvin sign is a `k`, `ſ`
// an `s`, dotless `ı` an `i` and final `ς` a `σ`. JavaScript lower-cases İ to an i with a
// combining dot; per-character folding reads an i.

export function foldCase(text: string): string {
  return text
    .replace(/\u0130/g, "i")
    .toUpperCase()
    .toLowerCase();
}
