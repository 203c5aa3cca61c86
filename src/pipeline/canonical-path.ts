// Stage: bound the request's size and reduce its path to the one canonical spelling that
// routes match and the origin receives.

import { canonicalPath as canonicalise } from "../core/path";
import { deny } from "./respond";
import type { Stage } from "./stage";

/** Whether the request's header block, counted as `name: value\r\n` per field, is over `max` bytes. */
function headersOver(headers: Headers, max: number): boolean {
  let total = 0;
  // Read no further once over: a block of thousands of tiny fields is refused as soon as it is.
  for (const [name, value] of headers) {
    total += name.length + value.length + 4;
    if (total > max) return true;
  }
  return false;
}

export function canonicalPath(): Stage {
  return {
    run(c) {
      const policy = c.get("policy");
      const raw = c.req.raw;
      // The runtime joins the Host header to the request target unchecked: a host no URL can
      // carry (`x.test:abc`, `[::1`) is the client's error, not the edge's.
      let url: URL;
      try {
        url = new URL(raw.url);
      } catch {
        return deny(c, "bad_request", { detail: "bad_url" });
      }
      c.set("url", url);
      // A path within the size limit is made canonical even when the request is refused for
      // its size (a long query, a large header block), so its audit record names the path.
      const result = url.pathname.length <= policy.maxUrlBytes ? canonicalise(url.pathname) : undefined;
      if (result?.ok) c.set("canonicalPath", result.path);
      if (!result || raw.url.length > policy.maxUrlBytes) return deny(c, "bad_request", { detail: "url_too_long" });
      if (headersOver(raw.headers, policy.maxHeaderBytes)) {
        return deny(c, "bad_request", { detail: "headers_too_large" });
      }
      if (!result.ok) return deny(c, "bad_request", { detail: result.detail });
      return undefined;
    },
  };
}
