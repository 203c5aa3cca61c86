// Small statistics: medians and paired ratios across rounds.

export function median(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function spread(values) {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return { min: Number.NaN, max: Number.NaN };
  return { min: Math.min(...finite), max: Math.max(...finite) };
}

/** Median over rounds of f(a[r], b[r]), using only rounds where both were measured. */
export function pairedMedian(a, b, f) {
  const values = [];
  for (let r = 0; r < Math.min(a.length, b.length); r += 1) {
    if (a[r] && b[r]) values.push(f(a[r], b[r]));
  }
  return { median: median(values), values };
}
