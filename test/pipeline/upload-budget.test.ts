// Uploads against origins that do not behave: one that never reads the body or never answers
// (the budget still ends the wait), one that answers before reading it (passed on at once),
// one that cannot be reached while the client's upload stalls (502 at once); once an origin
// has answered, it takes the rest of the upload at its own pace, whatever either side does next.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { basePolicy, echoOrigin, harness, marker, originSaw } from "../support/harness";
import { sleep, within } from "../support/waiting";

const issuerServer = (env as unknown as { ISSUER_SERVER: string }).ISSUER_SERVER;

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

describe("origin budget with a request body", () => {
  // Control: a GET to an origin that never answers is 504 after timeout_ms.
  it("a GET to an origin that never answers is 504 origin_timeout", async () => {
    const edge = serviceEdge({ fetch: () => new Promise(() => undefined) }, 200);
    const answered = await within(edge.fetch("/held/x"), 3000);
    expect(answered).not.toBe("hung");
    expect((answered as Response).status).toBe(504);
  });

  it("a POST whose whole body the client sent, to an origin that never reads it nor answers, is 504 within the budget", async () => {
    const edge = serviceEdge({ fetch: () => new Promise(() => undefined) }, 200);
    const answered = await within(
      edge.fetch(
        new Request("https://edge.test/held/x", {
          method: "POST",
          body: "tiny",
          headers: { "content-length": "4" },
        }),
      ),
      3000,
    );
    expect(answered).not.toBe("hung");
    expect((answered as Response).status).toBe(504);
  });

  it("the same without a declared length (chunked upload)", async () => {
    const edge = serviceEdge({ fetch: () => new Promise(() => undefined) }, 200);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("tiny"));
        controller.close();
      },
    });
    const answered = await within(
      edge.fetch(new Request("https://edge.test/held/x", { method: "POST", body, duplex: "half" } as RequestInit)),
      3000,
    );
    expect(answered).not.toBe("hung");
    expect((answered as Response).status).toBe(504);
  });
});

describe("origin budget with a request body, over the network", () => {
  it("an 8 MiB upload the client sends at once, to an origin that hangs without reading it, is 504 within the budget", async () => {
    const name = `hung-${crypto.randomUUID().slice(0, 8)}`;
    await fetch(`${issuerServer}/__control/issuers/${name}`, {
      method: "POST",
      body: JSON.stringify({ mode: "slow", delayMs: 6000 }),
    });
    const edge = harness(
      basePolicy({
        upstreams: { slow: { url: issuerServer, timeout_ms: 300 } },
        routes: [{ name: "slow", methods: ["GET", "POST"], path: `/${name}/**`, auth: "public", upstream: "slow" }],
      }),
    );
    // Control: the same origin with no body is a 504 within the budget.
    const started = Date.now();
    const control = await edge.fetch(`/${name}/jwks`);
    expect(control.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(2000);

    const total = 8 << 20;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= total) return controller.close();
        sent += 1 << 16;
        controller.enqueue(new Uint8Array(1 << 16));
      },
    });
    const t0 = Date.now();
    const answered = await within(
      edge.fetch(
        new Request(`https://edge.test/${name}/jwks`, {
          method: "POST",
          body,
          headers: { "content-length": String(total) },
          duplex: "half",
        } as RequestInit),
      ),
      4000,
    );
    expect(answered).not.toBe("hung");
    expect((answered as Response).status).toBe(504);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

describe("the pump when the origin does not wait for the body", () => {
  function stalledBody() {
    return new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(1000));
        // …and never another byte, never closed.
      },
    });
  }

  // An origin that answers before reading the body (the issuer server's
  // 404 for an unknown path) is passed on at once, even while the client's upload is stalled.
  it("an origin answering at once is passed on while the client's upload stalls", async () => {
    const edge = harness(
      basePolicy({
        upstreams: { early: { url: issuerServer, timeout_ms: 300 } },
        routes: [{ name: "early", methods: ["POST"], path: "/no-such/**", auth: "public", upstream: "early" }],
      }),
    );
    const answered = await within(
      edge.fetch(
        new Request("https://edge.test/no-such/upload", {
          method: "POST",
          body: stalledBody(),
          headers: { "content-length": "100000" },
          duplex: "half",
        } as RequestInit),
      ),
      3000,
    );
    expect(answered).not.toBe("hung");
    expect((answered as Response).status).toBe(404);
    await (answered as Response).arrayBuffer();
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 404 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(edge.logs.join("\n")).not.toMatch(/uncaught|unhandled/i);
  });

  // An unreachable origin with a stalled upload is 502 at once.
  it("an unreachable origin with a stalled upload is 502 origin_unavailable at once", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: "http://127.0.0.1:9" } } }));
    const answered = await within(
      edge.fetch(
        new Request("https://edge.test/public/upload", {
          method: "POST",
          body: stalledBody(),
          duplex: "half",
        } as RequestInit),
      ),
      3000,
    );
    expect(answered).not.toBe("hung");
    expect((answered as Response).status).toBe(502);
    expect(edge.audit.at(-1)).toMatchObject({ reason: "origin_unavailable", detail: "origin_unreachable" });
  });

  // An 8 MiB upload to an origin that answers 404 at once without reading it.
  it("a large upload to an origin that answers at once without reading it", async () => {
    const edge = harness(
      basePolicy({
        upstreams: { early: { url: issuerServer, timeout_ms: 300 } },
        routes: [{ name: "early", methods: ["POST"], path: "/no-such/**", auth: "public", upstream: "early" }],
      }),
    );
    const total = 8 << 20;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= total) return controller.close();
        sent += 1 << 16;
        controller.enqueue(new Uint8Array(1 << 16));
      },
    });
    const answered = await within(
      edge.fetch(
        new Request("https://edge.test/no-such/upload", {
          method: "POST",
          body,
          headers: { "content-length": String(total) },
          duplex: "half",
        } as RequestInit),
      ),
      3000,
    );
    expect(answered).not.toBe("hung");
    expect((answered as Response).status).toBe(404);
    await (answered as Response).arrayBuffer();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(edge.logs.join("\n")).not.toMatch(/uncaught|unhandled/i);
  });
});

describe("uploads, the origin and the client at their own pace", () => {
  // A slow client is not the origin's fault: the budget does not cut it.
  it("a client that pauses 700 ms mid-upload, with a 300 ms budget, gets the origin's answer", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 300 } } }));
    const m = marker();
    let step = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        step++;
        if (step === 1) controller.enqueue(new Uint8Array(1000));
        else if (step === 2) {
          await sleep(700);
          controller.enqueue(new Uint8Array(1000));
        } else controller.close();
      },
    });
    const response = await edge.fetch(
      new Request("https://edge.test/public/slow-client", {
        method: "POST",
        body,
        headers: { "content-length": "2000", "x-test-marker": m },
        duplex: "half",
      } as RequestInit),
    );
    expect(response.status).toBe(200);
    expect(((await response.json()) as { body_bytes: number }).body_bytes).toBe(2000);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
  });

  // An empty body is whole at once: audited as allowed.
  it("a 0-byte POST body reaches the origin and is audited as allowed", async () => {
    const edge = harness(basePolicy({ upstreams: { echo: { url: echoOrigin, timeout_ms: 300 } } }));
    const m = marker();
    const response = await edge.fetch("/public/empty", {
      method: "POST",
      body: "",
      headers: { "content-length": "0", "x-test-marker": m },
    });
    expect(response.status).toBe(200);
    const [seen] = await originSaw(m);
    expect(seen?.body_bytes).toBe(0);
    expect(edge.audit.at(-1)).toMatchObject({ decision: "allow", status: 200 });
  });

  // The origin answers before taking the upload and streams its answer for longer than the
  // budget: the answer is passed on whole, however long the unread upload waits.
  it("an answer already passed on is not cut when the unread upload later 'stalls'", async () => {
    const origin = {
      fetch: (_input: string, init: RequestInit) =>
        fetch(`${echoOrigin}/stream`, { headers: { "x-echo-stream-ms": "800" }, signal: init.signal }),
    };
    const edge = serviceEdge(origin, 200);
    const response = await edge.fetch("/held/x", { method: "POST", body: "hello" });
    expect(response.status).toBe(200);
    let text = "";
    let failure: unknown;
    try {
      text = await response.text();
    } catch (error) {
      failure = error;
    }
    expect(String(failure ?? "")).toBe("");
    expect(JSON.parse(text)).toMatchObject({ path: "/stream" });
  });

  // The same origin with an empty upload (the body is whole at once).
  it("the same early streamed answer with a 0-byte upload arrives whole", async () => {
    const origin = {
      fetch: (_input: string, init: RequestInit) =>
        fetch(`${echoOrigin}/stream`, { headers: { "x-echo-stream-ms": "800" }, signal: init.signal }),
    };
    const edge = serviceEdge(origin, 200);
    const response = await edge.fetch("/held/x", { method: "POST", body: "" });
    expect(JSON.parse(await response.text())).toMatchObject({ path: "/stream" });
  });

  // An origin that answers at once and then takes the body at its own pace (a streaming
  // transform): once it has answered, its taking the body is held to no budget.
  it("an origin that answered, then takes the body later than timeout_ms, gets the whole body", async () => {
    const origin = {
      fetch: (_input: string, init: RequestInit) => {
        const upload = init.body as ReadableStream<Uint8Array>;
        const out = new ReadableStream<Uint8Array>({
          async start(controller) {
            await sleep(600); // slower than the 200 ms budget to take the first part
            let bytes = 0;
            const reader = upload.getReader();
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              bytes += value.byteLength;
            }
            controller.enqueue(new TextEncoder().encode(JSON.stringify({ bytes })));
            controller.close();
          },
        });
        return Promise.resolve(new Response(out, { status: 200 }));
      },
    };
    const edge = serviceEdge(origin, 200);
    const response = await within(
      edge.fetch(
        new Request("https://edge.test/held/x", {
          method: "POST",
          body: "hello",
          headers: { "content-length": "5" },
        }),
      ),
      3000,
    );
    expect(response).not.toBe("hung");
    expect((response as Response).status).toBe(200);
    const text = await within(
      (response as Response).text().catch((error) => `failed: ${error}`),
      3000,
    );
    expect(text).toBe(JSON.stringify({ bytes: 5 }));
  });

  it("an origin refusing the body (cancel, then 413) is passed on", async () => {
    const origin = {
      fetch: async (_input: string, init: RequestInit) => {
        await (init.body as ReadableStream).cancel();
        await sleep(20);
        return new Response("too large", { status: 413 });
      },
    };
    const edge = serviceEdge(origin, 200);
    const response = await edge.fetch(
      new Request("https://edge.test/held/x", { method: "POST", body: "x".repeat(1000) }),
    );
    expect(response.status).toBe(413);
  });
});

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
