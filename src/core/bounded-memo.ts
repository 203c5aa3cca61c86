// A per-isolate memo for answers computed from request-derived keys (header names, tenant
// names). Bounded because the keys are client input: once full it keeps what it has and
// computes anything new every time, so a flood of fresh keys can neither grow it nor push
// out the common keys it learnt first.

export function boundedMemo<K, V>(maxEntries: number, compute: (key: K) => V): (key: K) => V {
  const answers = new Map<K, V>();
  return (key) => {
    const known = answers.get(key);
    if (known !== undefined || answers.has(key)) return known as V;
    const answer = compute(key);
    if (answers.size < maxEntries) answers.set(key, answer);
    return answer;
  };
}
