// The benchmark's arithmetic (bench/lib/report.mjs, wrk.mjs) against what BENCHMARKS.md says
// it computes, on the recorded result files. No benchmark runs and nothing is timed.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
// @ts-expect-error: the harness is plain JavaScript
import { summarise } from "../../bench/lib/report.mjs";
// @ts-expect-error: the harness is plain JavaScript
import { cellResult } from "../../bench/lib/wrk.mjs";

const root = join(__dirname, "..", "..");

type Cell = { rps: number; requests: number; non2xx: number; perRequest: Record<string, number> };
type Raw = { rounds: { cells: Record<string, Cell> }[]; verify: { rounds: { ES256: { raw: number } }[] } };
type Target = { name: string; measured: number | null; pass: boolean | null; note?: string };

const load = (file: string): Raw => JSON.parse(readFileSync(join(root, "bench", "results", file), "utf8"));
const targetOf = (raw: Raw, prefix: string): Target => {
  const found = (summarise(raw).targets as Target[]).find((t) => t.name.startsWith(prefix));
  if (!found) throw new Error(`no target ${prefix}`);
  return found;
};
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

describe("the time-added target", () => {
  it.each(["history/3b6e3dc.json", "latest.json"])(
    "in %s is the median of each round's time added over that round's raw verify",
    (file) => {
      const raw = load(file);
      const perRound = raw.rounds.map((round, r) => {
        const jwt = round.cells["forward/pc-jwt/es256"] as Cell;
        const bare = round.cells["forward/bare/es256"] as Cell;
        return (1e6 / jwt.rps - 1e6 / bare.rps) / (raw.verify.rounds[r] as { ES256: { raw: number } }).ES256.raw;
      });
      expect(targetOf(raw, "time added per request").measured).toBeCloseTo(median(perRound), 6);
    },
  );
});

describe("a cold-token-cache target", () => {
  it("is not judged when the verified-token cache answered the cell's requests", () => {
    // As a run with fewer --tokens than the cache's 10,000 entries produces.
    const raw = load("latest.json");
    for (const round of raw.rounds) {
      const cold = round.cells["forward/pc-jwt/es256"] as Cell;
      cold.perRequest.verify = 0.01;
      cold.rps = (round.cells["forward/hono-inline/es256"] as Cell).rps * 1.2;
    }
    for (const prefix of ["JWT-only, cold token cache ÷ hono/jwk inline", "time added per request", "full pipeline"]) {
      const target = targetOf(raw, prefix);
      expect(target.pass).toBeNull();
      expect(target.note).toMatch(/^not judged: 0\.01 signature verifications per request/);
    }
    // A cold cell is judged as before.
    expect(targetOf(load("latest.json"), "JWT-only, cold token cache ÷ hono/jwk inline").pass).toBe(false);
  });
});

describe("a round in which Portcullis answered nothing", () => {
  it("is not dropped from the time-added target, which then cannot be met", () => {
    const raw = load("latest.json");
    for (const [i, round] of raw.rounds.entries()) if (i < 3) (round.cells["forward/pc-jwt/es256"] as Cell).rps = 0;
    const target = targetOf(raw, "time added per request");
    expect(target.measured).toBe(Number.POSITIVE_INFINITY);
    expect(target.pass).toBe(false);
  });
});

describe("a cell's req/s", () => {
  it("counts answers only: error responses are not throughput", () => {
    const summary = {
      requests: 1000,
      duration_us: 2_000_000,
      errors: { connect: 0, read: 0, write: 0, timeout: 0, status: 400 },
      latency_us: { p50: 1000, p75: 2000, p90: 3000, p99: 4000, max: 5000, mean: 1500 },
    };
    expect(cellResult(summary)).toMatchObject({ requests: 1000, rps: 300, non2xx: 400, latencyMs: { p99: 4 } });
  });
});
