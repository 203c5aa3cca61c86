// A per-isolate memo for answers computed from request-derived keys (header names, tenant
// names). Bounded because the keys are client input: once full it keeps what it has and
// computes anything new every time, so a flood of fresh keys can neither grow it nor push
// out the common keys it learnt first.

/**
 * Longer keys are computed every time, never kept: 512 header names of 32 KB each would
 * otherwise hold 16 MB for the isolate's life.
 */
const MAX_KEY_CHARS = 512;

export function boundedMemo<V>(maxEntries: number, compute: (key: string) => V): (key: string) => V {
  const answers = new Map<string, V>();
  return (key) => {
    const known = answers.get(key);
    if (known !== undefined || answers.has(key)) return known as V;
    const answer = compute(key);
    if (answers.size < maxEntries && key.length <= MAX_KEY_CHARS) answers.set(key, answer);
    return answer;
  };
}
