import { describe, expect, it } from "vitest";
import { TIMED_OUT, withDeadline } from "../../src/core/deadline";

const resolvesAfter = <T>(ms: number, value: T) => new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));

describe("withDeadline", () => {
  it("gives the work's value when it settles in time", async () => {
    expect(await withDeadline(resolvesAfter(5, "done"), 1_000)).toBe("done");
  });

  it("gives TIMED_OUT when the work is slower than the deadline", async () => {
    expect(await withDeadline(resolvesAfter(500, "late"), 10)).toBe(TIMED_OUT);
  });

  it("gives TIMED_OUT for work that never settles", async () => {
    expect(await withDeadline(new Promise(() => undefined), 10)).toBe(TIMED_OUT);
  });

  it("passes a rejection through", async () => {
    await expect(withDeadline(Promise.reject(new TypeError("down")), 1_000)).rejects.toThrow(TypeError);
  });
});
