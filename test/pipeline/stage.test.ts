// The stage runner: order, early answers, finishers on every response, and failures that
// must never lose the response or skip the audit-style finishers.
import { Hono } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Outcome } from "../../src/core/audit";
import type { PipelineEnv } from "../../src/pipeline/context";
import { runStages, type Stage } from "../../src/pipeline/stage";

function appOf(stages: Stage[]) {
  const app = new Hono<PipelineEnv>();
  app.all("*", runStages(stages));
  return app;
}

/** A stage that records its run and finish steps in `log`, and answers when told to. */
function traced(name: string, log: string[], answer?: () => Response): Stage {
  return {
    run() {
      log.push(`run ${name}`);
      return answer?.();
    },
    finish(_c, response) {
      log.push(`finish ${name} ${response.status}`);
      return response;
    },
  };
}

/** A stage that only finishes: it records the outcome the audit stage would read. */
function outcomeProbe(outcomes: (Outcome | undefined)[]): Stage {
  return {
    finish(c, response) {
      outcomes.push(c.get("outcome"));
      return response;
    },
  };
}

describe("runStages", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("runs stages in order until one answers, then the finishers of the stages reached, innermost first", async () => {
    const log: string[] = [];
    const app = appOf([
      traced("a", log),
      traced("b", log, () => new Response("from b", { status: 201 })),
      traced("c", log),
    ]);
    const response = await app.request("/x");
    expect(response.status).toBe(201);
    expect(await response.text()).toBe("from b");
    expect(log).toEqual(["run a", "run b", "finish b 201", "finish a 201"]);
  });

  it("awaits asynchronous stages and answers 500 internal_error when one throws, finishers still running", async () => {
    const log: string[] = [];
    const outcomes: (Outcome | undefined)[] = [];
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const app = appOf([
      outcomeProbe(outcomes),
      traced("outer", log),
      {
        async run() {
          await Promise.resolve();
          throw new RangeError("secret detail that must not leak");
        },
      },
      traced("never", log),
    ]);
    const response = await app.request("/x");
    expect(response.status).toBe(500);
    expect(response.headers.get("content-type")).toContain("application/problem+json");
    const body = await response.text();
    expect(JSON.parse(body)).toMatchObject({ reason: "internal_error" });
    expect(body).not.toContain("secret detail");
    // The stage after the one that failed never ran: it has nothing to finish.
    expect(log).toEqual(["run outer", "finish outer 500"]);
    // The audit reads the reason and the error's class name, never its message.
    expect(outcomes).toEqual([{ decision: "deny", reason: "internal_error", detail: "RangeError" }]);
    expect(errors).toHaveBeenCalledTimes(1);
    expect(errors.mock.calls[0]).toEqual(["portcullis: unhandled RangeError"]);
  });

  it("keeps the response and the other finishers when a finisher throws", async () => {
    const log: string[] = [];
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const app = appOf([
      traced("outer", log),
      {
        finish() {
          throw new Error("finisher broke");
        },
      },
      traced("inner", log, () => new Response("ok")),
    ]);
    const response = await app.request("/x");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("ok");
    expect(log).toEqual(["run outer", "run inner", "finish inner 200", "finish outer 200"]);
    // The failure is logged, by class name only.
    expect(errors.mock.calls).toEqual([["portcullis: finishing failed (Error)"]]);
  });

  it("answers 500 internal_error when no stage answers, every stage having run and finished", async () => {
    const log: string[] = [];
    const outcomes: (Outcome | undefined)[] = [];
    const app = appOf([outcomeProbe(outcomes), traced("first", log), traced("last", log)]);
    const response = await app.request("/x");
    expect(response.status).toBe(500);
    expect(await response.json()).toMatchObject({ reason: "internal_error" });
    expect(outcomes).toEqual([{ decision: "deny", reason: "internal_error", detail: "no_stage_answered" }]);
    expect(log).toEqual(["run first", "run last", "finish last 500", "finish first 500"]);
  });
});
