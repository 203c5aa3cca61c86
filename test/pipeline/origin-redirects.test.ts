// An origin's redirects go back to the client (the edge's own URL where they name the
// upstream: test/pipeline/origin-redirects-to-the-upstream.test.ts); the edge never follows them
// (forward uses redirect: "manual"). The real echo origin answers a redirect when asked
// (`x-echo-redirect`), and records every request it receives, so a followed redirect would
// show up as a second origin request for the redirect target.
import { describe, expect, it } from "vitest";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";

describe("redirects from the origin", () => {
  it("the echo origin's redirect is followed by a client that follows redirects (the check below can fail)", async () => {
    const m = marker();
    const response = await fetch(`${echoOrigin}/public/start`, {
      headers: { "x-test-marker": m, "x-echo-redirect": "/public/landed" },
    });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    expect((await originSaw(m)).map((seen) => seen.path)).toEqual(["/public/start", "/public/landed"]);
  });

  it("a 302 reaches the client with its status and Location, and the target is not fetched", async () => {
    const edge = harness(basePolicy());
    const m = marker();
    const response = await edge.fetch("/public/start?step=1", {
      headers: { "x-test-marker": m, "x-echo-redirect": "/public/landed?from=start" },
    });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("/public/landed?from=start");
    expect(response.headers.get("x-echo")).toBe("1");
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(await response.text()).toBe("");
    const seen = await originSaw(m);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: "GET", path: "/public/start", query: "step=1" });
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", route: "public", status: 302 });
  });

  it.each([301, 303, 307, 308])(
    "a %s to a POST is returned, not followed (no second request, body not resent)",
    async (status) => {
      const edge = harness(basePolicy());
      const m = marker();
      const response = await edge.fetch("/public/submit", {
        method: "POST",
        body: "payload",
        headers: {
          "x-test-marker": m,
          "x-echo-redirect": "/public/landed",
          "x-echo-redirect-status": String(status),
        },
      });
      expect(response.status).toBe(status);
      expect(response.headers.get("location")).toBe("/public/landed");
      const seen = await originSaw(m);
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ method: "POST", path: "/public/submit", body_bytes: 7 });
      expect(edge.audit).toHaveLength(1);
      expect(edge.audit[0]).toMatchObject({ decision: "allow", route: "public", status, reason: null });
    },
  );

  it("an absolute Location naming the origin itself is sent as the edge's URL for that path, and not fetched", async () => {
    const edge = harness(basePolicy());
    const m = marker();
    const response = await edge.fetch("/public/start", {
      headers: { "x-test-marker": m, "x-echo-redirect": `${echoOrigin}/public/landed` },
    });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("https://edge.test/public/landed");
    expect((await originSaw(m)).map((seen) => seen.path)).toEqual(["/public/start"]);
    expect(edge.audit).toHaveLength(1);
    expect(edge.audit[0]).toMatchObject({ decision: "allow", route: "public", status: 302, reason: null });
  });
});
