/// <reference types="vite/client" />
import { describe, expect, it } from "vitest";
import { type AuditRecord, auditRecord } from "../../src/core/audit";
import { denyReasons } from "../../src/core/deny";
import {
  BLOB_COLUMNS,
  columnOf,
  DOUBLE_COLUMNS,
  MAX_BLOB_BYTES,
  MAX_INDEX_BYTES,
  metricsDataPoint,
  truncateUtf8,
} from "../../src/core/metrics";
import type { CheckSource } from "../../src/core/tokens/verify";
import { RECORD_FIELDS } from "../support/record-fields";

function record(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    ...auditRecord({
      now: Date.parse("2026-11-29T10:00:00.050Z"),
      requestId: "0b5c3f4e-6a57-4a7e-9a1d-3f1d2b6c7e8f",
      startedAt: Date.parse("2026-11-29T10:00:00.008Z"),
      method: "POST",
      canonicalPath: "/v1/payments",
      route: { name: "billing-write", matchedRule: "policy:billing-write@v17", upstreamName: "billing" },
      identity: { subject: "u_1234", tenant: "t_42", issuer: "https://idp.example", tokenHash: "9f86d081884c7d65" },
      outcome: { decision: "allow" },
      status: 201,
      timings: { authMs: 1.5, limitMs: 0.5, upstreamMs: 31 },
      cf: { colo: "LHR", asn: 64500, country: "GB" },
    }),
    ...overrides,
  };
}

describe("metricsDataPoint", () => {
  it("lays out an allowed request: tenant in index1, labels in blobs, durations in doubles", () => {
    const point = metricsDataPoint({
      record: record(),
      tokenCheck: { issuerId: "main", verifyMs: 0.75, keySource: "memory" },
      clientIp: "203.0.113.7",
    });
    expect(point).toEqual({
      indexes: ["t_42"],
      blobs: [
        "allow",
        "",
        "billing-write",
        "POST",
        "u_1234",
        "main",
        "memory",
        "billing",
        "LHR",
        "GB",
        "64500",
        "", // the client IP is kept only on denies
        "",
        "",
        "",
        "policy:billing-write@v17",
        "0b5c3f4e-6a57-4a7e-9a1d-3f1d2b6c7e8f",
      ],
      doubles: [201, 42, 0.75, 31, 1.5, 0.5, 1],
    });
  });

  it("keeps the limit and what failed open on a deny, but no IP for a rate limit; -1 marks what was not measured", () => {
    const point = metricsDataPoint({
      record: record({
        decision: "deny",
        reason: "rate_limited",
        detail: "tenant_limit",
        status: 429,
        limit: "tenant-per-minute",
        failed_open: ["user-per-minute", "route-ceiling"],
        upstream_ms: null,
        authz_ms: null,
      }),
      clientIp: "2001:db8::1",
    });
    expect(point.blobs).toEqual([
      "deny",
      "rate_limited",
      "billing-write",
      "POST",
      "u_1234",
      "",
      "",
      "billing",
      "LHR",
      "GB",
      "64500",
      "",
      "tenant-per-minute",
      "user-per-minute,route-ceiling",
      "tenant_limit",
      "policy:billing-write@v17",
      "0b5c3f4e-6a57-4a7e-9a1d-3f1d2b6c7e8f",
    ]);
    expect(point.doubles).toEqual([429, 42, -1, -1, -1, 0.5, 1]);
  });

  it("uses an empty index and empty blobs for a request that never got an identity", () => {
    const point = metricsDataPoint({
      record: auditRecord({
        now: 10,
        requestId: "r",
        startedAt: 10,
        method: "GET",
        outcome: { decision: "deny", reason: "route_not_found" },
        status: 404,
        timings: {},
      }),
      clientIp: "198.51.100.4",
    });
    expect(point.indexes).toEqual([""]);
    expect(point.blobs).toEqual([
      "deny",
      "route_not_found",
      "",
      "GET",
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      "",
      "r",
    ]);
    expect(point.doubles).toEqual([404, 0, -1, -1, -1, -1, 1]);
  });

  it("stores only something shaped like an IP address in the client IP column", () => {
    const deny = record({ decision: "deny", reason: "token_invalid", status: 401 });
    const ipColumn = BLOB_COLUMNS.indexOf("client_ip");
    expect(metricsDataPoint({ record: deny, clientIp: "Bearer abc.def" }).blobs[ipColumn]).toBe("");
    expect(metricsDataPoint({ record: deny, clientIp: "x".repeat(64) }).blobs[ipColumn]).toBe("");
    expect(metricsDataPoint({ record: deny, clientIp: null }).blobs[ipColumn]).toBe("");
    expect(metricsDataPoint({ record: deny, clientIp: "192.0.2.1" }).blobs[ipColumn]).toBe("192.0.2.1");
  });

  it("stores the client IP only for the invalid-token refusals the credential-stuffing queries read", () => {
    const ipColumn = BLOB_COLUMNS.indexOf("client_ip");
    const ipFor = (decision: "allow" | "deny", reason: string | null) =>
      metricsDataPoint({
        record: record({ decision, reason: reason as never, status: 403 }),
        clientIp: "192.0.2.1",
      }).blobs[ipColumn];
    for (const reason of ["token_malformed", "token_invalid", "token_expired", "issuer_unknown", "audience_mismatch"]) {
      expect(ipFor("deny", reason)).toBe("192.0.2.1");
    }
    for (const reason of ["rate_limited", "insufficient_scope", "origin_timeout", "client_closed", "token_missing"]) {
      expect(ipFor("deny", reason)).toBe("");
    }
    expect(ipFor("allow", null)).toBe("");
  });

  it("keeps the index within 96 bytes and every blob within its byte budget", () => {
    const point = metricsDataPoint({
      record: record({ tenant_id: "é".repeat(80), user_sub: "🦀".repeat(100), detail: "d".repeat(1000) }),
    });
    const bytes = (s: unknown) => new TextEncoder().encode(s as string).length;
    expect(bytes(point.indexes[0])).toBeLessThanOrEqual(MAX_INDEX_BYTES);
    expect(point.indexes[0]).toBe("é".repeat(48));
    for (const blob of point.blobs) expect(bytes(blob)).toBeLessThanOrEqual(MAX_BLOB_BYTES);
    expect(point.blobs[BLOB_COLUMNS.indexOf("user_sub")]).toBe("🦀".repeat(64));
    expect(point.blobs.length).toBeLessThanOrEqual(20);
    // All blobs together within Analytics Engine's total, as its older limit put it (5,120 bytes).
    expect(point.blobs.reduce((sum, blob) => sum + bytes(blob), 0)).toBeLessThanOrEqual(5120);
    expect(point.doubles.length).toBeLessThanOrEqual(20);
  });
});

describe("truncateUtf8", () => {
  it("never splits a character", () => {
    expect(truncateUtf8("abc", 3)).toBe("abc");
    expect(truncateUtf8("aé", 2)).toBe("a");
    expect(truncateUtf8("🦀🦀", 7)).toBe("🦀");
    expect(truncateUtf8("", 0)).toBe("");
  });
});

describe("columnOf", () => {
  it("names the SQL column the queries in ops/queries rely on", () => {
    expect(columnOf("tenant_id")).toBe("index1");
    expect(columnOf("decision")).toBe("blob1");
    expect(columnOf("reason")).toBe("blob2");
    expect(columnOf("route")).toBe("blob3");
    expect(columnOf("user_sub")).toBe("blob5");
    expect(columnOf("issuer_id")).toBe("blob6");
    expect(columnOf("key_source")).toBe("blob7");
    expect(columnOf("client_asn")).toBe("blob11");
    expect(columnOf("client_ip")).toBe("blob12");
    expect(columnOf("request_id")).toBe("blob17");
    expect(columnOf("status")).toBe("double1");
    expect(columnOf("latency_ms")).toBe("double2");
    expect(columnOf("token_verify_ms")).toBe("double3");
    expect(columnOf("upstream_ms")).toBe("double4");
    expect(columnOf("layout_version")).toBe("double7");
    expect(BLOB_COLUMNS).toHaveLength(17);
    expect(DOUBLE_COLUMNS).toHaveLength(7);
  });
});

describe("every column holds its own field", () => {
  it("a refusal with every field set: each named column has that field's value", () => {
    const refused = record({
      decision: "deny",
      reason: "token_invalid",
      detail: "signature",
      limit: "per-user",
      failed_open: ["a", "b"],
      latency_ms: 12,
      upstream_ms: 7,
      authz_ms: 3,
      limit_ms: 2,
      status: 401,
    });
    const point = metricsDataPoint({
      record: refused,
      tokenCheck: { issuerId: "main", verifyMs: 0.75, keySource: "kv" },
      clientIp: "203.0.113.7",
    });
    const expected: Record<(typeof BLOB_COLUMNS)[number], string> = {
      decision: "deny",
      reason: "token_invalid",
      route: "billing-write",
      method: "POST",
      user_sub: "u_1234",
      issuer_id: "main",
      key_source: "kv",
      upstream: "billing",
      edge_pop: "LHR",
      client_country: "GB",
      client_asn: "64500",
      client_ip: "203.0.113.7",
      limit: "per-user",
      failed_open: "a,b",
      detail: "signature",
      matched_rule: "policy:billing-write@v17",
      request_id: "0b5c3f4e-6a57-4a7e-9a1d-3f1d2b6c7e8f",
    };
    expect(Object.fromEntries(BLOB_COLUMNS.map((name, i) => [name, point.blobs[i]]))).toEqual(expected);
    expect(Object.fromEntries(DOUBLE_COLUMNS.map((name, i) => [name, point.doubles[i]]))).toEqual({
      status: 401,
      latency_ms: 12,
      token_verify_ms: 0.75,
      upstream_ms: 7,
      authz_ms: 3,
      limit_ms: 2,
      layout_version: 1,
    });
  });
});

describe("the limits that failed open", () => {
  it("are kept whole: 32 names of 64 characters (both limiter objects), where other columns are cut at 256 bytes", () => {
    const names = Array.from({ length: 32 }, (_, i) => `limit-${String(i).padStart(2, "0")}-${"x".repeat(55)}`);
    expect(names.every((name) => name.length === 64)).toBe(true);
    const point = metricsDataPoint({ record: record({ failed_open: names, detail: "d".repeat(300) }) });
    expect(point.blobs[BLOB_COLUMNS.indexOf("failed_open")]?.split(",")).toEqual(names);
    expect(point.blobs[BLOB_COLUMNS.indexOf("detail")]).toHaveLength(256);
  });
});

describe("the documented layout", () => {
  it("ops/README.md names the same column for every field", async () => {
    const readme: string = (await import("../../ops/README.md?raw")).default;
    const documented = new Map<string, string>();
    for (const match of readme.matchAll(/^\| `(index1|blob\d+|double\d+)` \| `([a-z_]+)` \|/gm)) {
      documented.set(match[2] as string, match[1] as string);
    }
    const fields = ["tenant_id", ...BLOB_COLUMNS, ...DOUBLE_COLUMNS] as const;
    expect(documented.size).toBe(fields.length);
    for (const field of fields) expect(documented.get(field), field).toBe(columnOf(field));
  });

  it("ops/README.md's example audit record shows every field, in the order the log writes them", async () => {
    const readme: string = (await import("../../ops/README.md?raw")).default;
    const example = readme.split("## Audit record")[1]?.match(/```json\n([^`]*)```/)?.[1] ?? "{}";
    const parsed = JSON.parse(example) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(RECORD_FIELDS);
    expect(Object.keys(KEY_SOURCES)).toContain(parsed.key_source);
  });
});

describe("the queries in ops/queries", () => {
  const queries = import.meta.glob("../../ops/queries/*.sql", {
    query: "?raw",
    import: "default",
    eager: true,
  }) as Record<string, string>;
  const files = Object.keys(queries)
    .map((path) => path.split("/").at(-1) as string)
    .sort();

  it("are exactly the ones ops/README.md lists, and every query a document names exists", async () => {
    const opsReadme: string = (await import("../../ops/README.md?raw")).default;
    const readme: string = (await import("../../README.md?raw")).default;
    // The "Queries and alerts" table: one row per file, the file in its first cell.
    const listed = [...opsReadme.matchAll(/^\| `([a-z0-9-]+\.sql)` \|/gm)].map((match) => match[1] as string);
    expect(new Set(listed).size, "a query listed twice").toBe(listed.length);
    expect([...listed].sort()).toEqual(files);
    // Every other mention (the metric names table, the main README, one query's pointer to
    // another) must name a file that exists.
    for (const text of [opsReadme, readme, ...Object.values(queries)]) {
      for (const [name] of text.matchAll(/\b[a-z0-9-]+\.sql\b/g)) expect(files, name).toContain(name);
    }
  });

  const code = (name: string) =>
    (Object.entries(queries).find(([path]) => path.endsWith(`/${name}`))?.[1] ?? "").replace(/--.*$/gm, "");

  it("rate key-cache hits over key lookups: a verified-token cache answer looked up no key", () => {
    expect(code("key-cache-hit-rate.sql")).toMatch(/AND blob7 NOT IN \('', 'token_cache', 'token_cache_stale'\)\n/);
  });

  it("count verified-token cache answers on a stale set as stale-set use, and only there", () => {
    expect(code("stale-key-sets.sql")).toMatch(/AND blob7 IN \('stale', 'token_cache_stale'\)\n/);
  });

  it("tell users apart by issuer as well as subject when looking for privilege probing", () => {
    const sql = code("privilege-probing.sql");
    expect(sql).toContain("blob6 AS issuer_id");
    expect(sql).toContain("GROUP BY tenant_id, issuer_id, user_sub, route");
    expect(sql).toContain("GROUP BY tenant_id, issuer_id, user_sub\n");
  });

  it("look for credential stuffing among exactly the refusals that keep the client IP", () => {
    const ipColumn = BLOB_COLUMNS.indexOf("client_ip");
    const keepingIp = denyReasons()
      .filter(
        (reason) =>
          metricsDataPoint({
            record: record({ decision: "deny", reason, status: 401 }),
            clientIp: "192.0.2.1",
          }).blobs[ipColumn] !== "",
      )
      .sort();
    expect(keepingIp.length).toBeGreaterThan(0);
    for (const name of ["credential-stuffing-by-ip.sql", "credential-stuffing-by-asn.sql"]) {
      // Each `blob2 = '…' OR blob2 = '…' …` chain is one list of reasons; the ASN query repeats its list.
      const lists = [...code(name).matchAll(/blob2 = '[a-z_]+'(?:\s+OR\s+blob2 = '[a-z_]+')*/g)].map(([chain]) =>
        [...chain.matchAll(/'([a-z_]+)'/g)].map((match) => match[1]).sort(),
      );
      expect(lists.length, name).toBeGreaterThan(0);
      for (const list of lists) expect(list, name).toEqual(keepingIp);
    }
  });

  it.each(Object.entries(queries))("%s reads the dataset within a time bound, through columns that exist", (_, sql) => {
    const code = sql.replace(/--.*$/gm, "");
    expect(code).toMatch(/\bFROM portcullis\b/);
    expect(code).toMatch(/timestamp > NOW\(\) - INTERVAL '\d+' (MINUTE|HOUR|DAY)/);
    expect(code).toContain("_sample_interval");
    const known = new Set(["index1", ...BLOB_COLUMNS.map(columnOf), ...DOUBLE_COLUMNS.map(columnOf)]);
    for (const [column] of code.matchAll(/\b(index\d+|blob\d+|double\d+)\b/g)) expect(known).toContain(column);
  });

  it.each(Object.entries(queries))("%s names each column it selects after the field it holds", (_, sql) => {
    for (const [, column, alias] of sql.replace(/--.*$/gm, "").matchAll(/\b(index1|blob\d+|double\d+)\s+AS\s+(\w+)/g)) {
      const field = (INTENTIONAL_RENAMES[alias as string] ?? alias) as Parameters<typeof columnOf>[0];
      expect(columnOf(field), `${column} AS ${alias}`).toBe(column);
    }
  });

  it.each(Object.entries(queries))("%s compares a column only with values that column can hold", (_, sql) => {
    for (const { column, literal } of literalComparisons(sql.replace(/--.*$/gm, ""))) {
      expect(COLUMN_VALUES[column] ?? [""], `${column} compared with '${literal}'`).toContain(literal);
    }
  });

  it.each(Object.entries(queries))("%s counts stored rows with SUM(_sample_interval), never COUNT", (_, sql) => {
    for (const scope of selectScopes(sql.replace(/--.*$/gm, ""))) {
      // A COUNT over a subquery counts its groups, which is what it means to; COUNT(DISTINCT …)
      // counts values. Over the dataset itself, a COUNT counts sampled rows, not requests.
      if (/\bFROM\s+portcullis\b/.test(scope)) expect(scope).not.toMatch(/\bcount(If)?\s*\((?!\s*DISTINCT\b)/i);
    }
  });
});

describe("the query checks", () => {
  // The checks above are only as good as their parsing: each must see what it looks for.
  it("find every literal comparison, whatever its operator", () => {
    expect(
      literalComparisons(
        "WHERE blob1 = 'deny' AND blob2 != '' AND blob7 IN ('a', 'b') AND blob3 NOT IN ('c') AND blob4 <> 'd'",
      ),
    ).toEqual([
      { column: "blob1", literal: "deny" },
      { column: "blob2", literal: "" },
      { column: "blob7", literal: "a" },
      { column: "blob7", literal: "b" },
      { column: "blob3", literal: "c" },
      { column: "blob4", literal: "d" },
    ]);
  });

  it("tell a SELECT over the dataset from one over a subquery", () => {
    expect(
      selectScopes(
        "SELECT a, COUNT() FROM (SELECT b, SUM(_sample_interval) FROM portcullis GROUP BY b) HAVING COUNT() > 1",
      ),
    ).toEqual([
      "SELECT b, SUM(_sample_interval) FROM portcullis GROUP BY b",
      "SELECT a, COUNT() FROM (…) HAVING COUNT() > 1",
    ]);
  });
});

/** Aliases that deliberately differ from the field name (`limit` is an SQL keyword). */
const INTENTIONAL_RENAMES: Record<string, string> = { limit_name: "limit" };

/** Every key source; `satisfies` turns a new `CheckSource` missing here into a compile error. */
const KEY_SOURCES = {
  memory: true,
  kv: true,
  fetch: true,
  stale: true,
  token_cache: true,
  token_cache_stale: true,
} satisfies Record<CheckSource, true>;

/**
 * What a query may compare each column with. Any other column may only be compared with the
 * empty string (absent): a literal on it would need its values listed here first.
 */
const COLUMN_VALUES: Record<string, readonly string[]> = {
  [columnOf("decision")]: ["allow", "deny"],
  [columnOf("reason")]: ["", ...denyReasons()],
  [columnOf("key_source")]: ["", ...Object.keys(KEY_SOURCES)],
};

/** `blobN = '…'`, `!=`, `<>`, `IN (…)` and `NOT IN (…)`: each literal with its column. */
function literalComparisons(sql: string): { column: string; literal: string }[] {
  const found: { column: string; literal: string }[] = [];
  const comparison = /\b(index1|blob\d+)\s*(?:(?:=|!=|<>)\s*'([^']*)'|(?:NOT\s+)?IN\s*\(([^)]*)\))/gi;
  for (const [, column, single, list] of sql.matchAll(comparison)) {
    const literals = single !== undefined ? [single] : [...(list ?? "").matchAll(/'([^']*)'/g)].map((m) => m[1]);
    for (const literal of literals) found.push({ column: column as string, literal: literal as string });
  }
  return found;
}

/** Each SELECT's own text, with the subqueries it reads from cut out as `(…)`; innermost first. */
function selectScopes(sql: string): string[] {
  const scopes: string[] = [];
  const open: string[] = [""];
  for (const ch of sql) {
    if (ch === "(") {
      open.push("");
    } else if (ch === ")" && open.length > 1) {
      const inner = open.pop() as string;
      const isSubquery = /^\s*SELECT\b/i.test(inner);
      if (isSubquery) scopes.push(inner.trim());
      open[open.length - 1] += isSubquery ? "(…)" : `(${inner})`;
    } else {
      open[open.length - 1] += ch;
    }
  }
  scopes.push((open[0] as string).trim());
  return scopes;
}
