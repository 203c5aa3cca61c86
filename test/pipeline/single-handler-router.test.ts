// The app's router: one handler for every request, whatever its method or path, and a
// second handler refused rather than silently replacing the first.
import { HonoBase } from "hono/hono-base";
import { describe, expect, it } from "vitest";
import { SingleHandlerRouter } from "../../src/pipeline/single-handler-router";

function app() {
  const hono = new HonoBase({ router: new SingleHandlerRouter(), getPath: () => "/" });
  hono.all("*", (c) => c.text(`${c.req.method} ${new URL(c.req.url).pathname}`));
  return hono;
}

describe("SingleHandlerRouter", () => {
  it("sends every method and path to the one handler", async () => {
    const hono = app();
    for (const [method, path] of [
      ["GET", "/"],
      ["POST", "/v1/things"],
      ["DELETE", "/a/b/c/"],
      ["PROPFIND", "/dav"],
      ["OPTIONS", "/%2e%2e/x"],
    ] as const) {
      const response = await hono.fetch(new Request(`https://edge.example${path}`, { method }));
      expect(response.status).toBe(200);
      expect(await response.text()).toBe(`${method} ${new URL(`https://edge.example${path}`).pathname}`);
    }
  });

  it("answers HEAD with the handler's status and headers and no body", async () => {
    const response = await app().fetch(new Request("https://edge.example/x", { method: "HEAD" }));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain");
    expect(await response.text()).toBe("");
  });

  it("refuses a second handler instead of replacing the first", () => {
    const hono = app();
    expect(() => hono.get("/other", (c) => c.text("other"))).toThrow("SingleHandlerRouter takes one handler");
  });
});
