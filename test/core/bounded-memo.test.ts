import { describe, expect, it } from "vitest";
import { boundedMemo } from "../../src/core/bounded-memo";

describe("boundedMemo", () => {
  it("computes a key once while there is room", () => {
    const computed: string[] = [];
    const upper = boundedMemo(4, (key: string) => {
      computed.push(key);
      return key.toUpperCase();
    });
    expect([upper("a"), upper("b"), upper("a"), upper("a")]).toEqual(["A", "B", "A", "A"]);
    expect(computed).toEqual(["a", "b"]);
  });

  it("remembers falsy answers too", () => {
    let calls = 0;
    const isStripped = boundedMemo(4, (_: string) => {
      calls++;
      return false;
    });
    isStripped("accept");
    isStripped("accept");
    expect(calls).toBe(1);
  });

  it("keeps the first keys once full and still answers new keys correctly", () => {
    const computed: number[] = [];
    const double = boundedMemo(3, (key: number) => {
      computed.push(key);
      return key * 2;
    });
    for (let key = 0; key < 100; key++) expect(double(key)).toBe(key * 2);
    computed.length = 0;
    // The first three are still remembered; everything past the bound is computed each time.
    for (const key of [0, 1, 2, 50, 50, 99]) double(key);
    expect(computed).toEqual([50, 50, 99]);
  });
});
