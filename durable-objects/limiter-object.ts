// The Durable Object behind both limiter kinds: a table of GCRA counters decided in memory
// and persisted in batches. Deciding never touches storage, so a request costs no write
// and the read-decide-write of every counter happens with no `await` in between (the
// object's single thread makes each `acquire` atomic, and no concurrent call can slip in).
//
// Persistence: a change schedules an alarm FLUSH_INTERVAL_MS later (one alarm call per
// interval, not per request); the alarm writes the changed counters to SQLite in one
// transaction and deletes expired ones. A restart (deploy, eviction, crash) therefore forgets
// at most the requests admitted since the last flush: each counter affected can admit up to
// that many requests again, never more than one extra burst (`limit`) per counter, and only
// if the burst fell inside that interval. A counter whose TAT has passed is the same as no
// counter, so idle counters are dropped from memory and from storage; an object left with
// none gives all its storage back (see #flush). A flush whose write fails keeps its changes
// pending and throws, so the runtime's alarm retry writes them.

import { DurableObject } from "cloudflare:workers";
import { CounterTable, MAX_COUNTERS } from "../src/core/limits/counter-table";
import {
  type AcquireResult,
  checkCounterRequests,
  checkHold,
  type CounterRequest,
} from "../src/core/limits/limiter-rpc";

/** How long a change may stay in memory only. */
export const FLUSH_INTERVAL_MS = 2_000;

interface CounterRow extends Record<string, SqlStorageValue> {
  id: string;
  ms: number;
  frac: number;
  den: number;
}

export class LimiterObject extends DurableObject {
  /** The in-memory counters. Public for tests that compose `decide` and `commit` themselves. */
  readonly counters = new CounterTable(MAX_COUNTERS);
  /** When the alarm is set for, as far as this instance knows. */
  #alarmAt: number | undefined;
  /** Whether the counters table exists: made with the first counter saved, gone with the last. */
  #stored: boolean;

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env as never);
    // Live counters; storage holds no more than the table's bound (the latest TATs first, were
    // it ever to hold more). None, and no table, for an object that has saved nothing yet.
    let rows: Iterable<CounterRow> = [];
    try {
      rows = ctx.storage.sql.exec<CounterRow>(
        "SELECT * FROM counters WHERE ms >= ? ORDER BY ms DESC LIMIT ?",
        Date.now(),
        MAX_COUNTERS,
      );
      this.#stored = true;
    } catch (error) {
      // Only a missing table means nothing was saved: starting empty after any other failure
      // would admit every counter's burst again, and the next flush overwrite what was saved.
      if (!String(error).includes("no such table")) throw error;
      this.#stored = false;
    }
    for (const row of rows) this.counters.load(row.id, { ms: row.ms, frac: row.frac, den: row.den });
  }

  /**
   * Check every counter and charge them all only if all admit the request. Synchronous on
   * purpose: nothing can interleave between reading and writing a counter.
   */
  acquire(items: CounterRequest[], hold?: number | boolean): AcquireResult {
    checkCounterRequests(items);
    const holdMs = checkHold(hold);
    const now = Date.now();
    const result = this.counters.acquire(items, now, holdMs);
    // A hold is charged when due, by the flush if no call comes first.
    if (result.allowed) this.#scheduleFlush(now);
    return result;
  }

  /** Give back a request admitted by `acquire` that another object refused: `at`, `epoch` and `seq` as it answered. */
  release(items: CounterRequest[], at?: number, epoch?: number, seq?: number): void {
    checkCounterRequests(items);
    const now = Date.now();
    this.counters.release(items, at, epoch, now, seq);
    this.#scheduleFlush(now);
  }

  override async alarm(): Promise<void> {
    this.#alarmAt = undefined;
    await this.#flush(Date.now());
  }

  async #flush(now: number): Promise<void> {
    const holdDue = this.counters.settleHolds(now);
    const latest = this.counters.sweep(now);
    const changes = this.counters.pendingChanges(now);
    const sql = this.ctx.storage.sql;
    // Nothing left to count: every byte goes, so that an object used once (one per client
    // address of a route limited per address, say) does not stay, and cost, for ever. The
    // table comes back with the next counter saved.
    // Also without a table: the alarm alone leaves the runtime's own metadata. Marked saved
    // only once it is all gone: a failed deleteAll throws, and the alarm's retry does it again.
    if (latest === undefined && holdDue === undefined && this.counters.size === 0 && changes.upserts.length === 0) {
      await this.ctx.storage.deleteAll();
      this.counters.markSaved(changes);
      this.#stored = false;
      return;
    }
    if (!this.#stored) {
      sql.exec(
        "CREATE TABLE IF NOT EXISTS counters (id TEXT PRIMARY KEY, ms INT NOT NULL, frac INT NOT NULL, den INT NOT NULL)",
      );
      sql.exec("CREATE INDEX IF NOT EXISTS counters_by_ms ON counters (ms)");
      this.#stored = true;
    }
    this.ctx.storage.transactionSync(() => {
      // A row is a whole counter keyed by its id, so replacing it is the upsert.
      for (const [id, tat] of changes.upserts) {
        sql.exec("REPLACE INTO counters (id, ms, frac, den) VALUES (?, ?, ?, ?)", id, tat.ms, tat.frac, tat.den);
      }
      for (const id of changes.deletes) sql.exec("DELETE FROM counters WHERE id = ?", id);
      sql.exec("DELETE FROM counters WHERE ms < ?", now);
    });
    // Only now: had the transaction thrown, the changes would still be pending for the retry.
    this.counters.markSaved(changes);
    // Come back when the last counter has expired, to clear storage of an idle object, or
    // for holds nobody gave back, no sooner than a flush interval (a call settles those due
    // before it anyway; an alarm per hold would be a write per request).
    const next = Math.min(
      holdDue === undefined ? Infinity : Math.max(holdDue, now + FLUSH_INTERVAL_MS),
      latest === undefined ? Infinity : latest + 1,
    );
    if (next < Infinity) this.#setAlarm(next);
  }

  #scheduleFlush(now: number): void {
    const due = now + FLUSH_INTERVAL_MS;
    if (this.#alarmAt !== undefined && this.#alarmAt <= due) return;
    this.#setAlarm(due);
  }

  #setAlarm(at: number): void {
    this.#alarmAt = at;
    // Unconfirmed: the response that triggered the flush does not wait for this write.
    this.ctx.storage.setAlarm(at, { allowUnconfirmed: true }).catch(() => {
      if (this.#alarmAt === at) this.#alarmAt = undefined;
    });
  }
}
