// In-memory KV namespace for the benchmark's workerd processes. workerd turns every KV
// binding call into an HTTP request to the service named by the binding; this answers
// those requests from a Map (the same protocol Miniflare implements) and counts them, so
// the harness can show how many KV reads and writes each measured request cost.
//
//   GET    /<key>            get (404 when absent or expired)
//   PUT    /<key>?expiration=S|expiration_ttl=S   put (body = value, CF-KV-Metadata = JSON)
//   DELETE /<key>            delete
//   GET    /?prefix=&key_count_limit=&cursor=     list
//   GET    /  with header x-bench-counters: 1      {reads, writes, deletes, lists}

const entries = new Map();
const counts = { reads: 0, writes: 0, deletes: 0, lists: 0 };

function keyOf(url) {
  const raw = url.pathname.slice(1);
  return url.searchParams.get("urlencoded")?.toLowerCase() === "true" ? decodeURIComponent(raw) : raw;
}

function live(entry, nowS) {
  return entry !== undefined && (entry.expiration === undefined || entry.expiration > nowS);
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const nowS = Math.floor(Date.now() / 1000);
    if (request.headers.get("x-bench-counters") === "1") return Response.json(counts);
    if (url.pathname === "/" && request.method === "GET") {
      counts.lists += 1;
      const prefix = url.searchParams.get("prefix") ?? "";
      const limit = Number(url.searchParams.get("key_count_limit") ?? 1000);
      const keys = [...entries.entries()]
        .filter(([name, entry]) => name.startsWith(prefix) && live(entry, nowS))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .slice(0, limit)
        .map(([name, entry]) => ({
          name,
          expiration: entry.expiration,
          metadata: entry.metadata === undefined ? undefined : JSON.stringify(entry.metadata),
        }));
      return Response.json({ keys, list_complete: true, cacheStatus: null });
    }
    const key = keyOf(url);
    if (request.method === "GET") {
      counts.reads += 1;
      const entry = entries.get(key);
      if (!live(entry, nowS)) return new Response("Not Found", { status: 404 });
      const headers = new Headers();
      if (entry.expiration !== undefined) headers.set("CF-Expiration", String(entry.expiration));
      if (entry.metadata !== undefined) headers.set("CF-KV-Metadata", JSON.stringify(entry.metadata));
      return new Response(entry.value, { headers });
    }
    if (request.method === "PUT") {
      counts.writes += 1;
      const value = await request.arrayBuffer();
      const expiration = url.searchParams.get("expiration");
      const ttl = url.searchParams.get("expiration_ttl");
      const metadata = request.headers.get("CF-KV-Metadata");
      entries.set(key, {
        value,
        expiration: expiration ? Number(expiration) : ttl ? nowS + Number(ttl) : undefined,
        metadata: metadata ? JSON.parse(metadata) : undefined,
      });
      return new Response(null);
    }
    if (request.method === "DELETE") {
      counts.deletes += 1;
      entries.delete(key);
      return new Response(null);
    }
    return new Response("Method Not Allowed", { status: 405 });
  },
};
