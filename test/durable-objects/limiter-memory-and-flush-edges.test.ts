// The limiter's memory bound and persistence at their edges: how many counters an eviction
// frees, which ones it keeps (those with pending charges), when an eviction forgets charges
// (and so changes the epoch) and when it does not, which rows a restart loads, and when the
// alarm that saves the counters is due. Each test pins one check of CounterTable's eviction or
// of LimiterObject's flushing by what it does.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FLUSH_INTERVAL_MS, type LimiterObject } from "../../durable-objects/limiter-object";
import { MAX_COUNTERS } from "../../src/core/limits/counter-table";
import type { TenantLimiter } from "../../durable-objects/tenant-limiter";
import { CounterTable } from "../../src/core/limits/counter-table";
import { type CounterRequest, HOLD_MS } from "../../src/core/limits/limiter-rpc";
import { fakeClockStart, rows, tenantObject } from "../support/limiter-objects";

const T0 = 1_800_000_000_000;
const peek = (r: CounterRequest): CounterRequest => ({ ...r, cost: 0 });
const remaining = (table: CounterTable, r: CounterRequest, now: number) =>
  table.acquire([peek(r)], now).counters[0]!.remaining;

function alarmOf(stub: DurableObjectStub<TenantLimiter>) {
  return runInDurableObject(stub, (_i: LimiterObject, state) => state.storage.getAlarm());
}

afterEach(() => {
  vi.useRealTimers();
});

describe("CounterTable: how much an eviction frees", () => {
  it("a table smaller than 100 counters still leaves room for one: an eviction pass per new counter is not paid", () => {
    // 1 % of 10 rounds down to none: the batch is one counter at least.
    const table = new CounterTable(10);
    for (let i = 0; i <= 10; i++) table.acquire([{ id: `c${i}`, limit: 5, windowS: 60 }], T0 + i);
    expect(table.size).toBe(9);
    // The two that stand least ahead (the earliest charged) went; the newest stays.
    expect(table.get("c0")).toBeUndefined();
    expect(table.get("c1")).toBeUndefined();
    expect(table.get("c2")).toBeDefined();
    expect(table.get("c10")).toBeDefined();
  });

  it("dropping expired counters alone back to the batch's room forgets no live charge: give-backs still count", () => {
    const table = new CounterTable(100); // batches of 1: 99 counters after an eviction
    const kept: CounterRequest = { id: "kept", limit: 5, windowS: 60 };
    const charged = table.acquire([kept], T0);
    // Two counters of a second, which have expired by T0 + 1 s, and 97 of a minute: 100 in all.
    for (let i = 0; i < 2; i++) table.acquire([{ id: `brief${i}`, limit: 5, windowS: 1 }], T0);
    for (let i = 0; i < 97; i++) table.acquire([{ id: `long${i}`, limit: 5, windowS: 60 }], T0);
    expect(table.size).toBe(100);
    // One more: 101, and dropping the two expired leaves exactly the 99 wanted.
    table.acquire([{ id: "newcomer", limit: 5, windowS: 60 }], T0 + 1_000);
    expect(table.size).toBe(99);
    expect(table.get("brief0")).toBeUndefined();
    // No live counter was forgotten, so the table's answers keep their epoch and a release of
    // the charge made before still gives it back.
    expect(table.acquire([peek(kept)], T0 + 1_000).epoch).toBe(charged.epoch);
    expect(remaining(table, kept, T0 + 1_000)).toBe(4);
    table.release([kept], charged.at, charged.epoch, T0 + 1_000);
    expect(remaining(table, kept, T0 + 1_000)).toBe(5);
  });
});

describe("CounterTable: holds settling over the bound", () => {
  it("one counter over the bound, made by a settled hold, starts an eviction", () => {
    // Held requests make no counter until they settle: a table whose traffic is all held
    // grows only as holds settle, and must be brought back under its bound then.
    const table = new CounterTable(100); // batches of 1
    for (let i = 0; i < 100; i++) table.acquire([{ id: `h${i}`, limit: 5, windowS: 60 }], T0 + i, HOLD_MS);
    table.settleHolds(T0 + 99 + HOLD_MS);
    expect(table.size).toBe(100);
    table.acquire([{ id: "late", limit: 5, windowS: 60 }], T0 + 100, HOLD_MS);
    table.settleHolds(T0 + 100 + HOLD_MS);
    expect(table.size).toBe(99);
    // The two charged earliest, which stand least ahead, went.
    expect(table.get("h0")).toBeUndefined();
    expect(table.get("h1")).toBeUndefined();
    expect(table.get("late")).toBeDefined();
  });
});

describe("CounterTable: a counter with pending charges at the bound", () => {
  it("is kept over counters further ahead that have none: its hold is still given back exactly, its charge before it still counted", () => {
    const table = new CounterTable(100); // batches of 1
    // One request of 100 a minute (0.01 of it ahead: the least of all), then one held on top.
    const light: CounterRequest = { id: "light", limit: 100, windowS: 60 };
    expect(table.acquire([light], T0).allowed).toBe(true);
    const held = table.acquire([light], T0, HOLD_MS);
    expect(held).toMatchObject({ allowed: true, seq: expect.any(Number) });
    // 99 clients at 1 of 5 a minute (0.2 ahead), and one more: 101, two must go.
    for (let i = 0; i < 99; i++) table.acquire([{ id: `c${i}`, limit: 5, windowS: 60 }], T0);
    table.acquire([{ id: "newcomer", limit: 5, windowS: 60 }], T0);
    expect(table.size).toBe(99);
    expect(table.get("light")).toBeDefined();
    // The hold comes back: the first request is still counted.
    table.release([light], held.at, held.epoch, T0, held.seq);
    expect(remaining(table, light, T0)).toBe(99);
  });
});

describe("CounterTable: an evicted counter in storage", () => {
  it("is among the changes to save: the next flush deletes its row", () => {
    const table = new CounterTable(100); // batches of 1
    for (let i = 0; i < 100; i++) table.acquire([{ id: `c${i}`, limit: 5, windowS: 60 }], T0 + i);
    // All saved, as a flush would.
    table.markSaved(table.pendingChanges(T0 + 100));
    expect(table.pendingChanges(T0 + 100)).toEqual({ upserts: [], deletes: [] });
    table.acquire([{ id: "newcomer", limit: 5, windowS: 60 }], T0 + 100);
    // The two that stand least ahead went: their rows must go too, or a restart would load
    // them back beside the counters that took their place.
    expect(table.get("c0")).toBeUndefined();
    expect(table.get("c1")).toBeUndefined();
    const changes = table.pendingChanges(T0 + 100);
    expect(changes.deletes.sort()).toEqual(["c0", "c1"]);
    expect(changes.upserts.map(([id]) => id)).toEqual(["newcomer"]);
  });
});

describe("CounterTable: a give-back after the clock stepped back further than a hold lasts", () => {
  it("still finds its hold: one decided ahead of the clock is not due, and is given back exactly", () => {
    // 10 per 100 s: each request stands 10 s on the counter.
    const c: CounterRequest = { id: "stepped", limit: 10, windowS: 100 };
    const table = new CounterTable();
    const held = table.acquire([c], T0, HOLD_MS);
    expect(held).toMatchObject({ allowed: true, seq: expect.any(Number) });
    // The give-back arrives with the object's clock stepped back 3 s (more than HOLD_MS).
    table.release([c], held.at, held.epoch, T0 - 3_000, held.seq);
    expect(table.get(c.id)).toBeUndefined();
    expect(remaining(table, c, T0 - 3_000)).toBe(10);
  });
});

describe("LimiterObject: when the alarm that saves the counters is due", () => {
  it("later requests do not put the flush off: the alarm the first change set stands", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "steady", limit: 100, windowS: 60 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    expect(await alarmOf(stub)).toBe(t0 + FLUSH_INTERVAL_MS);
    // A request every half interval: were each to push the alarm on, a steady client would
    // keep every change in memory only, for a restart to forget.
    for (const later of [1_000, 1_500, 1_999]) {
      vi.setSystemTime(t0 + later);
      expect((await stub.acquire([item])).allowed).toBe(true);
      expect(await alarmOf(stub)).toBe(t0 + FLUSH_INTERVAL_MS);
    }
  });

  it("a give-back after the last flush is saved within a flush interval, not only when the counter expires", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "given-back", limit: 5, windowS: 3600 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    const second = await stub.acquire([item]);
    expect(second.allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // Saved two requests (720 s each); the cleanup alarm is for when the counter expires.
    expect(await rows(stub)).toEqual([{ id: "given-back", ms: t0 + 1_440_000, frac: 0, den: 5 }]);
    expect(await alarmOf(stub)).toBe(t0 + 1_440_000 + 1);
    // Given back at the very time of its charge (the clock held still), so in full.
    await stub.release([item], second.at, second.epoch);
    expect(await alarmOf(stub)).toBe(t0 + FLUSH_INTERVAL_MS);
    vi.setSystemTime(t0 + FLUSH_INTERVAL_MS);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await rows(stub)).toEqual([{ id: "given-back", ms: t0 + 720_000, frac: 0, den: 5 }]);
    // A restart now knows the request was given back.
    await evictDurableObject(stub);
    expect((await stub.acquire([peek(item)])).counters[0]?.remaining).toBe(4);
  });

  it("a refused request changes nothing, so it sets no alarm: a refused flood costs no writes", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const spent: CounterRequest = { id: "spent", limit: 1, windowS: 3600 };
    expect((await stub.acquire([spent])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await alarmOf(stub)).toBe(t0 + 3_600_000 + 1);
    vi.setSystemTime(t0 + 1_000);
    const refused = await stub.acquire([spent]);
    expect(refused).toMatchObject({ allowed: false, counters: [{ allowed: false, remaining: 0 }] });
    // Still only the cleanup alarm: no flush was asked for, since there is nothing to save.
    expect(await alarmOf(stub)).toBe(t0 + 3_600_000 + 1);
  });

  it("a give-back that leaves the object no counter is saved within a flush interval too: storage given back", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "only", limit: 5, windowS: 3600 };
    const admitted = await stub.acquire([item]);
    expect(admitted.allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await alarmOf(stub)).toBe(t0 + 720_000 + 1);
    // Given back in full: the object has no counter left, and its row must go.
    await stub.release([item], admitted.at, admitted.epoch);
    expect(await alarmOf(stub)).toBe(t0 + FLUSH_INTERVAL_MS);
    vi.setSystemTime(t0 + FLUSH_INTERVAL_MS);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await rows(stub)).toEqual([]);
    expect(await alarmOf(stub)).toBeNull();
  });

  it("the first change after the alarm gave storage back sets a new alarm, and is saved by it", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "again", limit: 5, windowS: 60 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    vi.setSystemTime(t0 + 12_001);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await alarmOf(stub)).toBeNull();
    // The client comes back after the cleanup: the alarm that ran is no longer pending.
    vi.setSystemTime(t0 + 20_000);
    expect((await stub.acquire([item])).allowed).toBe(true);
    expect(await alarmOf(stub)).toBe(t0 + 20_000 + FLUSH_INTERVAL_MS);
    vi.setSystemTime(t0 + 20_000 + FLUSH_INTERVAL_MS);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await rows(stub)).toEqual([{ id: "again", ms: t0 + 32_000, frac: 0, den: 5 }]);
  });

  it("an alarm the runtime failed to set is set again by the next change", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "unset", limit: 5, windowS: 3600 };
    // The runtime cannot be made to fail setting an alarm on demand: replaced for one call.
    await runInDurableObject(stub, async (instance: LimiterObject, state) => {
      const setAlarm = state.storage.setAlarm;
      state.storage.setAlarm = () => Promise.reject(new Error("storage overloaded"));
      try {
        expect(instance.acquire([item]).allowed).toBe(true);
        // The failure is only known once the write's promise settles.
        await scheduler.wait(1);
      } finally {
        state.storage.setAlarm = setAlarm;
      }
    });
    expect(await alarmOf(stub)).toBeNull();
    vi.setSystemTime(t0 + 500);
    expect((await stub.acquire([item])).allowed).toBe(true);
    // Else nothing would come to save either change until some later request.
    expect(await alarmOf(stub)).toBe(t0 + 500 + FLUSH_INTERVAL_MS);
  });

  it("the cleanup alarm is for the counter that expires last, not the first", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const minute: CounterRequest = { id: "minute", limit: 5, windowS: 60 };
    const hour: CounterRequest = { id: "hour", limit: 5, windowS: 3600 };
    const second: CounterRequest = { id: "second", limit: 5, windowS: 10 };
    expect((await stub.acquire([minute, hour, second])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await alarmOf(stub)).toBe(t0 + 720_000 + 1);
    // Woken early by the first to expire, the object would sweep it and sleep again; woken only
    // at the last one's expiry, it finds them all gone and gives its storage back.
    vi.setSystemTime(t0 + 720_000 + 1);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await rows(stub)).toEqual([]);
    expect(await alarmOf(stub)).toBeNull();
  });
});

describe("LimiterObject: what a flush leaves to save", () => {
  const pending = (stub: DurableObjectStub<TenantLimiter>) =>
    runInDurableObject(stub, (instance: LimiterObject) => instance.counters.pendingChanges(Date.now()));

  it("nothing once saved: the next flush writes only what changed since", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const kept: CounterRequest = { id: "kept", limit: 5, windowS: 3600 };
    const given: CounterRequest = { id: "given", limit: 5, windowS: 3600 };
    expect((await stub.acquire([kept])).allowed).toBe(true);
    const admitted = await stub.acquire([given]);
    await stub.release([given], admitted.at, admitted.epoch);
    expect(await pending(stub)).toEqual({
      upserts: [["kept", { ms: t0 + 720_000, frac: 0, den: 5 }]],
      deletes: ["given"],
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await pending(stub)).toEqual({ upserts: [], deletes: [] });
  });

  it("nothing once the alarm gave all storage back", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "given", limit: 5, windowS: 3600 };
    const admitted = await stub.acquire([item]);
    await stub.release([item], admitted.at, admitted.epoch);
    expect(await pending(stub)).toEqual({ upserts: [], deletes: ["given"] });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await alarmOf(stub)).toBeNull();
    expect(await pending(stub)).toEqual({ upserts: [], deletes: [] });
  });
});

describe("LimiterObject: a counter live by a fraction of a millisecond at the flush", () => {
  it("is saved, not deleted as expired by the same flush", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    // 7 a minute: one request stands 8 571 3/7 ms. Flushed at t0 + 8 571, it is still live.
    const item: CounterRequest = { id: "fraction", limit: 7, windowS: 60 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    vi.setSystemTime(t0 + 8_571);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await rows(stub)).toEqual([{ id: "fraction", ms: t0 + 8_571, frac: 3, den: 7 }]);
    expect(await alarmOf(stub)).toBe(t0 + 8_572);
  });
});

describe("LimiterObject: what a restart loads", () => {
  it("the latest live rows, no more than the bound: not the earliest, and no expired one", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    // The object makes its table with its first save.
    expect((await stub.acquire([{ id: "first", limit: 5, windowS: 3600 }])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // Storage holding more than the bound (it never should: this is the start-up's guard), and
    // an expired row the flush has not deleted yet, written as the object writes its rows.
    await runInDurableObject(stub, (_i: LimiterObject, state) => {
      state.storage.transactionSync(() => {
        for (let i = 0; i < MAX_COUNTERS + 1; i++) {
          state.storage.sql.exec(
            "REPLACE INTO counters (id, ms, frac, den) VALUES (?, ?, ?, ?)",
            `r${i}`,
            t0 + 60_000 + i,
            0,
            5,
          );
        }
        state.storage.sql.exec(
          "REPLACE INTO counters (id, ms, frac, den) VALUES (?, ?, ?, ?)",
          "expired",
          t0 - 1,
          0,
          5,
        );
      });
    });
    await evictDurableObject(stub);
    const loaded = await runInDurableObject(stub, (instance: LimiterObject) => ({
      size: instance.counters.size,
      earliest: [instance.counters.get("r0"), instance.counters.get("r1")],
      latest: instance.counters.get(`r${MAX_COUNTERS}`),
      first: instance.counters.get("first"),
      expired: instance.counters.get("expired"),
    }));
    // "first" stands an hour ahead, the latest of all; the two rows that expire soonest go.
    expect(loaded).toEqual({
      size: MAX_COUNTERS,
      earliest: [undefined, undefined],
      latest: { ms: t0 + 60_000 + MAX_COUNTERS, frac: 0, den: 5 },
      first: { ms: t0 + 720_000, frac: 0, den: 5 },
      expired: undefined,
    });
  });

  it("an expired row is not loaded: a restart's table holds only live counters", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const brief: CounterRequest = { id: "brief", limit: 1, windowS: 1 };
    const long: CounterRequest = { id: "long", limit: 5, windowS: 3600 };
    expect((await stub.acquire([brief, long])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await rows(stub)).length).toBe(2);
    // A millisecond after the brief counter expired (at its TAT exactly it is loaded, harmlessly:
    // a counter at its TAT decides as none).
    vi.setSystemTime(t0 + 1_001);
    await evictDurableObject(stub);
    const loaded = await runInDurableObject(stub, (instance: LimiterObject) => ({
      size: instance.counters.size,
      brief: instance.counters.get("brief"),
    }));
    expect(loaded).toEqual({ size: 1, brief: undefined });
  });
});
