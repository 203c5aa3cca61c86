// Which URLs the edge may fetch keys from or forward to: https anywhere, plain http only on
// loopback (the local stack and tests).

/** The local stack's and the tests' hosts. */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === "127.0.0.1" || hostname === "localhost" || hostname === "[::1]";
}

/** The parsed URL if it is https, or http on a loopback host; otherwise undefined. */
export function secureUrl(value: unknown): URL | undefined {
  if (typeof value !== "string") return undefined;
  try {
    const url = new URL(value);
    if (url.protocol === "https:" || (url.protocol === "http:" && isLoopbackHost(url.hostname))) return url;
  } catch {
    // not a URL
  }
  return undefined;
}
