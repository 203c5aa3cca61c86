// An origin that answered before taking the upload takes the rest at its own pace, whatever
// either side does next; best-fit look-alikes in paths, and ordinary names that look close.
import { describe, expect, it } from "vitest";
import { canonicalPath } from "../../src/core/path";
import { basePolicy, harness } from "../support/harness";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
function within<T>(work: Promise<T>, ms: number): Promise<T | "hung"> {
  return Promise.race([work, new Promise<"hung">((resolve) => setTimeout(resolve, ms, "hung"))]);
}
function serviceEdge(origin: unknown, timeoutMs: number) {
  return harness(
    basePolicy({
      upstreams: { held: { service: "HELD", timeout_ms: timeoutMs } },
      routes: [{ name: "held", methods: ["GET", "POST", "PUT"], path: "/held/**", auth: "public", upstream: "held" }],
    }),
    {},
    { HELD: origin },
  );
}
/** A client body: `parts` chunks of 1000 bytes, then (optionally) an error. */
function clientBody(parts: number, thenError: boolean, gapMs = 0) {
  let n = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (gapMs) await sleep(gapMs);
      if (n++ < parts) return controller.enqueue(new Uint8Array(1000));
      if (thenError) controller.error(new Error("client gone"));
      else controller.close();
    },
  });
}

describe("an origin that answered, then the body", () => {
  // Answered at once, then cancels the body after the budget.
  it("origin answers, then cancels the upload later than timeout_ms: answer whole, no uncaught error", async () => {
    const origin = {
      fetch: (_input: string, init: RequestInit) => {
        setTimeout(() => (init.body as ReadableStream).cancel().catch(() => undefined), 500);
        return Promise.resolve(new Response("done", { status: 202 }));
      },
    };
    const edge = serviceEdge(origin, 200);
    const response = await within(
      edge.fetch(
        new Request("https://edge.test/held/x", {
          method: "POST",
          body: clientBody(50, false),
          headers: { "content-length": "50000" },
          duplex: "half",
        } as RequestInit),
      ),
      3000,
    );
    expect(response).not.toBe("hung");
    expect((response as Response).status).toBe(202);
    expect(await (response as Response).text()).toBe("done");
    await sleep(800);
    expect(edge.logs.join("\n")).not.toMatch(/uncaught|unhandled/i);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 202 });
  });

  // The client breaks off after the answer; the origin, reading late,
  // must see a failure, never a clean (truncated) end.
  for (const declared of [true, false]) {
    it(`client breaks off after the answer; the late-reading origin sees an error (${declared ? "length" : "chunked"})`, async () => {
      let seen: string | undefined;
      const origin = {
        fetch: (_input: string, init: RequestInit) => {
          const upload = init.body as ReadableStream<Uint8Array>;
          (async () => {
            await sleep(500);
            let bytes = 0;
            try {
              const reader = upload.getReader();
              for (;;) {
                const { done, value } = await reader.read();
                if (done) break;
                bytes += value.byteLength;
              }
              seen = `clean end after ${bytes}`;
            } catch {
              seen = "error";
            }
          })();
          return Promise.resolve(new Response("ok", { status: 200 }));
        },
      };
      const edge = serviceEdge(origin, 200);
      const headers: Record<string, string> = declared ? { "content-length": "10000" } : {};
      const response = await within(
        edge.fetch(
          new Request("https://edge.test/held/x", {
            method: "POST",
            body: clientBody(3, true, 50),
            headers,
            duplex: "half",
          } as RequestInit),
        ),
        3000,
      );
      expect(response).not.toBe("hung");
      expect(await (response as Response).text()).toBe("ok");
      for (let i = 0; i < 30 && seen === undefined; i++) await sleep(100);
      expect(seen).toBe("error");
      expect(edge.logs.join("\n")).not.toMatch(/uncaught|unhandled/i);
    });
  }

  // An origin that answers and never touches the body: answer whole.
  it("origin answers and never touches the body: the answer still arrives whole", async () => {
    const origin = { fetch: () => Promise.resolve(new Response("x".repeat(10000), { status: 200 })) };
    const edge = serviceEdge(origin, 150);
    const response = await within(
      edge.fetch(
        new Request("https://edge.test/held/x", {
          method: "PUT",
          body: clientBody(200, false),
          headers: { "content-length": "200000" },
          duplex: "half",
        } as RequestInit),
      ),
      3000,
    );
    expect(response).not.toBe("hung");
    expect((await within((response as Response).text(), 3000)) as string).toHaveLength(10000);
    await sleep(300);
    expect(edge.logs.join("\n")).not.toMatch(/uncaught|unhandled/i);
  });

  // GET with a body reaches the origin without one.
  it("GET with a body is forwarded without it, within the budget", async () => {
    let body: unknown = "unset";
    const origin = {
      fetch: (_input: string, init: RequestInit) => {
        body = init.body;
        return Promise.resolve(new Response("g"));
      },
    };
    const edge = serviceEdge(origin, 200);
    const response = await within(edge.fetch(new Request("https://edge.test/held/x", { method: "GET" })), 3000);
    expect((response as Response).status).toBe(200);
    expect(body ?? null).toBeNull();
  });
});

describe("best-fit look-alikes", () => {
  // Every spelling of the look-alikes is refused.
  it.each([
    "/admin%E2%88%B6%24DATA",
    "/admin%D6%89%24DATA",
    "/admin%E2%88%B6:$DATA",
    "/admin:%E2%88%B6$DATA",
    "/a%E2%81%84b",
    "/public/..%E2%81%84admin",
  ])("refuses %s", (path) => {
    expect(canonicalPath(path)).toEqual({ ok: false, detail: "ambiguous_segment" });
  });
  it.each(["/ratio%E2%88%B6x", "/hy%D6%89am", "/price$5"])("lets %s through", (path) => {
    expect(canonicalPath(path).ok).toBe(true);
  });
});
