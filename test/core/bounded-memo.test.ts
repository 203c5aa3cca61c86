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
    const computed: string[] = [];
    const double = boundedMemo(3, (key: string) => {
      computed.push(key);
      return Number(key) * 2;
    });
    for (let key = 0; key < 100; key++) expect(double(String(key))).toBe(key * 2);
    computed.length = 0;
    // The first three are still remembered; everything past the bound is computed each time.
    for (const key of ["0", "1", "2", "50", "50", "99"]) double(key);
    expect(computed).toEqual(["50", "50", "99"]);
  });

  it("never keeps a key longer than 512 characters: client header names may be 32 KB each", () => {
    const computed: string[] = [];
    const length = boundedMemo(4, (key: string) => {
      computed.push(key);
      return key.length;
    });
    const long = "x".repeat(513);
    const longest = "y".repeat(512);
    for (const key of [long, long, longest, longest]) length(key);
    expect(computed).toEqual([long, long, longest]);
  });
});
