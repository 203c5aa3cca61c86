// Turns raw per-round measurements into the summary (medians, paired ratios, targets) and
// prints it as a terminal table and as Markdown.
import { median, pairedMedian, spread } from "./stats.mjs";
import { CELLS, cellId, VARIANTS } from "./variants.mjs";

const labelOf = (variantId) => VARIANTS.find((v) => v.id === variantId)?.label ?? variantId;

/** Per-request counters of one measured window. */
export const COUNTERS = [
  ["verify", "verify/req", "crypto.subtle.verify calls"],
  ["importKey", "import/req", "crypto.subtle.importKey calls"],
  ["jwksFetch", "JWKS/req", "requests the JWKS server answered"],
  ["durableObjectStubs", "DO/req", "Durable Object stubs obtained"],
  ["kvReads", "KV r/req", "KV reads"],
  ["auditLines", "audit/req", "audit lines written"],
];

/** The cells every ratio in the table is paired with. */
const BARE = { variant: "bare", workload: "es256" };
const HONO_INLINE = { variant: "hono-inline", workload: "es256" };

/** A cell's measurement in each round, in round order (undefined where it was not measured). */
const roundsOf = (raw, cell, mode) => raw.rounds.map((round) => round.cells[cellId(cell, mode)]);

/** Throughput of one measurement relative to another. */
const rpsRatio = (a, b) => a.rps / b.rps;

/** The time per request one measurement adds to another, µs (1/rps − 1/rps). */
const usAdded = (a, b) => 1e6 / a.rps - 1e6 / b.rps;

/** Median over rounds of `f(a, b)`, each round's measurement of cell `a` paired with its cell `b`. */
function pairedOverRounds(raw, mode, a, b, f) {
  return pairedMedian(roundsOf(raw, a, mode), roundsOf(raw, b, mode), f).median;
}

export function summarise(raw) {
  const cells = {};
  for (const mode of raw.config.modes) {
    for (const cell of CELLS) {
      const id = cellId(cell, mode);
      const rounds = roundsOf(raw, cell, mode).filter(Boolean);
      const status = raw.variantStatus[cell.variant];
      if (status?.state !== "measured" || rounds.length === 0) {
        cells[id] = {
          ...cell,
          mode,
          label: labelOf(cell.variant),
          state: status?.state ?? "skipped",
          why: status?.why,
        };
        continue;
      }
      const per = (f) => median(rounds.map(f));
      const rps = rounds.map((r) => r.rps);
      cells[id] = {
        ...cell,
        mode,
        label: labelOf(cell.variant),
        state: "measured",
        rounds: rounds.length,
        rps: median(rps),
        rpsSpread: spread(rps),
        p50Ms: per((r) => r.latencyMs.p50),
        p99Ms: per((r) => r.latencyMs.p99),
        cpuUsPerRequest: per((r) => r.perRequest.cpuUs),
        perRequest: Object.fromEntries(COUNTERS.map(([key]) => [key, per((r) => r.perRequest[key])])),
        non2xx: rounds.reduce((sum, r) => sum + r.non2xx, 0),
        socketErrors: rounds.reduce((sum, r) => sum + r.socketErrors, 0),
        vsBare: pairedOverRounds(raw, mode, cell, BARE, rpsRatio),
        vsHonoInline: pairedOverRounds(raw, mode, cell, HONO_INLINE, rpsRatio),
      };
    }
  }
  return { cells, targets: targets(raw, cells) };
}

/**
 * Why a cold-token-cache cell says nothing of a cold cache: the verified-token cache answered
 * a share of its requests (too few distinct tokens for its 10,000 entries). Undefined if cold.
 */
function notCold(cell) {
  const verified = cell?.perRequest?.verify;
  if (!(verified < 0.95)) return undefined;
  return (
    `not judged: ${verified.toFixed(2)} signature verifications per request, the verified-token cache ` +
    "answered the rest (run with --tokens above its 10,000 entries)"
  );
}

function targets(raw, cells) {
  const mode = "forward";
  const has = (variant, workload) => cells[cellId({ variant, workload }, mode)]?.state === "measured";
  const verifyUs = raw.verify?.summary?.ES256?.raw;
  const list = [];
  // `unit` says how `measured` reads: a ratio of two cells, or a size in KiB.
  const add = (name, goal, measured, pass, note, unit = "ratio") =>
    list.push({ name, unit, goal, measured, pass, note });
  const na = (name, goal, why) => add(name, goal, null, null, why);

  const jwt = { variant: "pc-jwt", workload: "es256" };
  // A target read from a cold-token-cache cell is judged only if the cell was cold.
  const cold = notCold(cells[cellId(jwt, mode)]);
  const judged = (name, goal, measured, pass, note) =>
    cold ? add(name, goal, measured, null, note ? `${cold}; ${note}` : cold) : add(name, goal, measured, pass, note);
  if (has("pc-jwt", "es256") && has("hono-inline", "es256")) {
    const r = pairedOverRounds(raw, mode, jwt, HONO_INLINE, rpsRatio);
    const verified = cells[cellId(jwt, mode)].perRequest.verify;
    judged(
      "JWT-only, cold token cache ÷ hono/jwk inline",
      "≥ 1.0×",
      r,
      r >= 1.0,
      `${verified.toFixed(2)} signature verifications per request (1.00: the token cache answered none)`,
    );
  } else na("JWT-only, cold token cache ÷ hono/jwk inline", "≥ 1.0×", "not measured");
  if (has("pc-jwt", "es256") && has("hono-uri", "es256")) {
    const r = pairedOverRounds(raw, mode, jwt, { variant: "hono-uri", workload: "es256" }, rpsRatio);
    judged("JWT-only, cold token cache ÷ hono/jwk jwks_uri", "≥ 2.0×", r, r >= 2.0);
  } else na("JWT-only, cold token cache ÷ hono/jwk jwks_uri", "≥ 2.0×", "not measured");
  if (has("pc-jwt", "es256") && has("bare", "es256") && Number.isFinite(verifyUs)) {
    const added = pairedOverRounds(raw, mode, jwt, BARE, usAdded);
    const cpuAdded = pairedOverRounds(raw, mode, jwt, BARE, (x, y) => x.perRequest.cpuUs - y.perRequest.cpuUs);
    // Paired within each round with the raw verify measured in that round, like every other
    // ratio: the machine's speed moves between rounds, and moves both.
    const perRound = raw.rounds.map((round, i) => {
      const [a, b] = [round.cells[cellId(jwt, mode)], round.cells[cellId(BARE, mode)]];
      const verify = raw.verify?.rounds?.[i]?.ES256?.raw;
      return a && b ? usAdded(a, b) / verify : Number.NaN;
    });
    // A round in which Portcullis answered nothing (0 req/s) added without bound: it is not
    // dropped as the median drops a round that was not measured.
    const ratio = perRound.includes(Number.POSITIVE_INFINITY) ? Number.POSITIVE_INFINITY : median(perRound);
    judged(
      "time added per request, cold token cache (1/rps − 1/rps_bare) ÷ raw ES256 verify",
      "≤ 1.3×",
      ratio,
      ratio <= 1.3,
      (ratio === Number.POSITIVE_INFINITY
        ? "Portcullis answered no request in a round; "
        : `median of per-round ratios; medians ${added.toFixed(1)} µs added vs ${verifyUs.toFixed(1)} µs raw verify; `) +
        `Worker CPU added ${cpuAdded.toFixed(1)} µs/request (${(cpuAdded / verifyUs).toFixed(2)}× raw verify)`,
    );
  } else na("time added per request ÷ raw ES256 verify", "≤ 1.3×", "not measured");
  if (has("pc-jwt", "warm") && has("bare", "es256")) {
    const r = pairedOverRounds(raw, mode, { variant: "pc-jwt", workload: "warm" }, BARE, rpsRatio);
    add("JWT-only, warm token cache ÷ bare", "≥ 0.9×", r, r >= 0.9);
  } else na("JWT-only, warm token cache ÷ bare", "≥ 0.9×", "not measured");
  if (has("pc-full", "es256") && has("pc-jwt", "es256")) {
    const full = { variant: "pc-full", workload: "es256" };
    const r = pairedOverRounds(raw, mode, full, jwt, rpsRatio);
    const warm =
      has("pc-full", "warm") && has("pc-jwt", "warm")
        ? pairedOverRounds(
            raw,
            mode,
            { variant: "pc-full", workload: "warm" },
            { variant: "pc-jwt", workload: "warm" },
            rpsRatio,
          )
        : Number.NaN;
    const notes = Number.isFinite(warm) ? [`warm token cache: ${warm.toFixed(2)}×`] : [];
    // What the goal leaves for authorisation, limits and audit, next to what one Durable
    // Object call alone costs a pass-through in the same rounds.
    const fullAdded = pairedOverRounds(raw, mode, full, jwt, usAdded);
    // The time the goal allows: what a Worker at 0.75× JWT-only's rate adds to JWT-only.
    const allowed = pairedOverRounds(raw, mode, jwt, jwt, (jwtRound) =>
      usAdded({ rps: 0.75 * jwtRound.rps }, jwtRound),
    );
    notes.push(`${fullAdded.toFixed(1)} µs added per request to JWT-only, ${allowed.toFixed(1)} µs allowed`);
    if (has("bare-do", "es256") && has("bare", "es256")) {
      const callUs = pairedOverRounds(raw, mode, { variant: "bare-do", workload: "es256" }, BARE, usAdded);
      notes.push(`one no-op Durable Object call adds ${callUs.toFixed(1)} µs to the bare Worker`);
    }
    const fullCold = notCold(cells[cellId(full, mode)]) ?? cold;
    if (fullCold) notes.unshift(fullCold);
    add("full pipeline ÷ JWT-only (cold token cache)", "≥ 0.75×", r, fullCold ? null : r >= 0.75, notes.join("; "));
  } else na("full pipeline ÷ JWT-only", "≥ 0.75×", raw.variantStatus["pc-full"]?.why ?? "not measured");
  const gzip = raw.bundle?.deployable?.gzipBytes;
  if (Number.isFinite(gzip)) {
    add(
      "deployable bundle, gzipped",
      "≤ 30 KiB",
      gzip / 1024,
      gzip <= 30 * 1024,
      `${gzip} bytes (${raw.bundle.deployable.bytes} bytes minified)`,
      "KiB",
    );
  }
  return list;
}

const fmt = (value, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : "–");
/** "–": not measured; "∞": measured, with a round in which Portcullis answered nothing. */
const fmtRatio = (value) =>
  Number.isFinite(value) ? `${value.toFixed(2)}×` : value === Number.POSITIVE_INFINITY ? "∞" : "–";

/** A target's measured value in its unit (see `add` in `targets`). */
const fmtMeasured = (target) =>
  target.measured === null
    ? "–"
    : target.unit === "KiB"
      ? `${target.measured.toFixed(1)} KiB`
      : fmtRatio(target.measured);

function rows(summary, mode) {
  return CELLS.map((cell) => summary.cells[cellId(cell, mode)]).filter((c) => c && c.state !== "skipped");
}

const HEAD = [
  "variant",
  "tokens",
  "req/s",
  "p50 ms",
  "p99 ms",
  "× bare",
  "× hono inline",
  "CPU µs/req",
  ...COUNTERS.map((c) => c[1]),
];

function rowValues(c) {
  if (c.state !== "measured") return [c.label, c.workload, c.state.toUpperCase(), ...HEAD.slice(3).map(() => "")];
  const flag = c.non2xx > 0 || c.socketErrors > 0 ? ` (!${c.non2xx} non-2xx, ${c.socketErrors} socket errors)` : "";
  return [
    c.label,
    c.workload,
    `${fmt(c.rps)}${flag}`,
    fmt(c.p50Ms, 2),
    fmt(c.p99Ms, 2),
    fmtRatio(c.vsBare),
    fmtRatio(c.vsHonoInline),
    fmt(c.cpuUsPerRequest, 0),
    ...COUNTERS.map(([key]) => fmt(c.perRequest[key], key === "auditLines" || key === "jwksFetch" ? 3 : 2)),
  ];
}

/** Why a variant was not measured, one line each. */
function statusNotes(raw) {
  return Object.entries(raw.variantStatus)
    .filter(([, status]) => status.state !== "measured" && status.state !== "skipped")
    .map(([id, status]) => `${labelOf(id)}: ${status.state.toUpperCase()} — ${status.why}`);
}

export function textReport(raw, summary) {
  const out = [];
  for (const mode of raw.config.modes) {
    out.push(`\n${mode} mode`);
    const table = [HEAD, ...rows(summary, mode).map(rowValues)];
    const widths = HEAD.map((_, i) => Math.max(...table.map((r) => String(r[i]).length)));
    for (const [n, r] of table.entries()) {
      out.push(r.map((v, i) => (i < 2 ? String(v).padEnd(widths[i]) : String(v).padStart(widths[i]))).join("  "));
      if (n === 0) out.push(widths.map((w) => "-".repeat(w)).join("  "));
    }
  }
  for (const note of statusNotes(raw)) out.push(`  ${note}`);
  out.push("\ntargets (forward mode)");
  for (const t of summary.targets) {
    const verdict = t.pass === null ? (t.measured === null ? "n/a " : "----") : t.pass ? "MET " : "MISS";
    out.push(`  ${verdict} ${t.name}: ${fmtMeasured(t)} (target ${t.goal})${t.note ? ` — ${t.note}` : ""}`);
  }
  return out.join("\n");
}

export function markdownReport(raw, summary) {
  const out = [];
  for (const mode of raw.config.modes) {
    out.push(`**${mode} mode**`, "");
    out.push(`| ${HEAD.join(" | ")} |`, `|${HEAD.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`);
    for (const c of rows(summary, mode)) out.push(`| ${rowValues(c).join(" | ")} |`);
    out.push("");
  }
  for (const note of statusNotes(raw)) out.push(`- ${note}`, "");
  out.push("| target (forward mode) | goal | measured | verdict | note |", "|---|---|---:|---|---|");
  for (const t of summary.targets) {
    const verdict =
      t.pass === null ? (t.measured === null ? "not measured" : "not judged") : t.pass ? "met" : "**missed**";
    out.push(`| ${t.name} | ${t.goal} | ${fmtMeasured(t)} | ${verdict} | ${t.note ?? ""} |`);
  }
  return out.join("\n");
}
