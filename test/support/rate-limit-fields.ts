// Reading the RateLimit fields the edge writes on an answer, as a client would.

/** The items of a RateLimit field: name, remaining and seconds to reset, in order. */
export function rateLimitItems(field: string | null): { name: string; r: number; t: number }[] {
  return (field ?? "").split(", ").map((item) => {
    const match = /^"([^"]+)";r=(\d+);t=(\d+)$/.exec(item);
    if (!match) throw new Error(`not a RateLimit item: ${item}`);
    return { name: match[1]!, r: Number(match[2]), t: Number(match[3]) };
  });
}
