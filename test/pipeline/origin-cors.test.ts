// The edge alone answers for CORS: whatever CORS headers the origin sends are dropped, and
// only the route's own policy decides which pages may read a response.
import { describe, expect, it } from "vitest";
import { basePolicy, harness } from "../support/harness";

/** An origin that grants every page everything: it reflects the Origin and allows credentials. */
const reflectingOrigin = {
  async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const request = new Request(input, init);
    return new Response("from origin", {
      headers: {
        "access-control-allow-origin": request.headers.get("origin") ?? "*",
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-internal-token",
        "access-control-allow-private-network": "true",
        "x-origin-header": "kept",
      },
    });
  },
};

function edge() {
  return harness(
    basePolicy({
      upstreams: { reflect: { service: "REFLECT" } },
      routes: [
        {
          name: "cors",
          methods: ["GET"],
          path: "/cors/**",
          auth: "public",
          upstream: "reflect",
          cors: { allow_origins: ["https://app.example.com"], allow_credentials: true },
        },
        { name: "plain", methods: ["GET"], path: "/plain/**", auth: "public", upstream: "reflect" },
      ],
    }),
    {},
    { REFLECT: reflectingOrigin },
  );
}

const corsHeaders = (response: Response) =>
  [...response.headers.keys()].filter((name) => name.startsWith("access-control-")).sort();

describe("CORS headers from the origin", () => {
  it("are dropped for a page the route does not allow", async () => {
    const response = await edge().fetch("/cors/x", { headers: { origin: "https://evil.example" } });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("from origin");
    expect(corsHeaders(response)).toEqual([]);
    expect(response.headers.get("x-origin-header")).toBe("kept");
    expect(response.headers.get("vary")).toContain("Origin");
  });

  it("are replaced by the route's own for a page it allows", async () => {
    const response = await edge().fetch("/cors/x", { headers: { origin: "https://app.example.com" } });
    expect(response.status).toBe(200);
    expect(corsHeaders(response)).toEqual(["access-control-allow-credentials", "access-control-allow-origin"]);
    expect(response.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
  });

  it("are dropped on a route without CORS, whatever the page", async () => {
    for (const origin of ["https://evil.example", "https://app.example.com"]) {
      const response = await edge().fetch("/plain/x", { headers: { origin } });
      expect(response.status).toBe(200);
      expect(corsHeaders(response)).toEqual([]);
    }
  });

  it("a CORS route's response varies by Origin even when the request has none", async () => {
    const response = await edge().fetch("/cors/x");
    expect(response.status).toBe(200);
    expect(corsHeaders(response)).toEqual([]);
    expect(response.headers.get("vary")).toContain("Origin");
  });
});
