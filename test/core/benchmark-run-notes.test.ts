/// <reference types="vite/client" />
// What BENCHMARKS.md and README.md say of when and where the last benchmark run ran, against the
// run's own result file and the one before it: a ratio is read beside the others only as far as
// the machine under it is the same.
import { describe, expect, it } from "vitest";
import benchmarks from "../../BENCHMARKS.md?raw";
import before from "../../bench/results/history/c5d4aad.json";
import last from "../../bench/results/history/25b21c1.json";
import readme from "../../README.md?raw";

const text = (doc: string) => doc.replace(/\s+/g, " ");

/** Hours as the text writes them, to the half hour. */
function hoursInWords(hours: number): string {
  const halves = Math.round(hours * 2);
  const words = ["no", "one", "two", "three", "four", "five", "six"];
  const whole = words[Math.floor(halves / 2)] as string;
  return halves % 2 ? `${whole} and a half hours` : `${whole} hours`;
}

describe("the last benchmark run, as BENCHMARKS.md places it", () => {
  const gap = (Date.parse(last.date) - Date.parse(before.date)) / 3_600_000;
  const paragraph = text(
    benchmarks.slice(benchmarks.indexOf("**The last run (`25b21c1`"), benchmarks.indexOf("**The run `c5d4aad`")),
  );

  it("ran as long after the run before it as their result files say", () => {
    expect(gap).toBeGreaterThan(0);
    expect(gap).toBeLessThan(24);
    expect(paragraph).toContain(`(\`25b21c1\`, ${hoursInWords(gap)} later`);
    expect(text(benchmarks)).toContain(`**The run \`c5d4aad\` (${hoursInWords(gap)} before it;`);
    expect(text(benchmarks)).toContain(`and \`25b21c1\`, the last, ${hoursInWords(gap)} later`);
  });

  it("names the machine it ran on, another than the run before it", () => {
    expect(last.machine.cpu).not.toBe(before.machine.cpu);
    expect(paragraph).toContain(`another machine, an ${last.machine.cpu} (${last.machine.nproc} vCPUs`);
    expect(text(readme)).toContain("the last of them on another machine");
  });
});
