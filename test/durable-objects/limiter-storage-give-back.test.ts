// Limiter objects give their storage back once their last counter has expired, whatever path
// led there. Cloudflare keeps an object for good once anything is in its storage; setting an
// alarm alone writes the runtime's `_cf_METADATA` table, so "nothing stored" is checked by the
// schema being empty, as limiter-storage-and-clocks.test.ts does.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { LimiterObject } from "../../durable-objects/limiter-object";
import type { CounterRequest } from "../../src/core/limits/limiter-rpc";
import { fakeClockStart, tenantObject } from "../support/limiter-objects";

afterEach(() => {
  vi.useRealTimers();
});

/** What an object holds, in memory and in storage. */
const left = (stub: ReturnType<typeof tenantObject>) =>
  runInDurableObject(stub, async (instance: LimiterObject, state) => ({
    counters: instance.counters.size,
    schema: state.storage.sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master")
      .toArray()
      .map((row) => row.name),
    alarm: await state.storage.getAlarm(),
  }));

describe("an object whose counters all went before any was saved", () => {
  // Its acquire set an alarm (so storage holds the alarm's metadata) but its flush finds no
  // counter left: the object never made its table, and must still give the metadata back.
  it("a counter that expires before the first flush (a per-second limit) leaves nothing stored", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "per-second", limit: 1, windowS: 1 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    // The flush interval (2 s) is longer than the counter lives (1 s).
    vi.setSystemTime(t0 + 2_000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await left(stub)).toEqual({ counters: 0, schema: [], alarm: null });
  });

  it("a request given back in full before the first flush leaves nothing stored", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "given-back", limit: 5, windowS: 60 };
    const admitted = await stub.acquire([item]);
    expect(admitted.allowed).toBe(true);
    // Another object refused the request: this one gives it back, and has no counter left.
    await stub.release([item], admitted.at, admitted.epoch);
    expect((await left(stub)).counters).toBe(0);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await left(stub)).toEqual({ counters: 0, schema: [], alarm: null });
  });
});

describe("the alarm that gives storage back", () => {
  it("one whose deleteAll fails gives it back on the runtime's retry", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "retried", limit: 5, windowS: 60 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await left(stub)).schema).toContain("counters");
    vi.setSystemTime(t0 + 60_000);
    // The runtime cannot be made to fail a deleteAll on demand: replaced for this one alarm.
    const failure = await runInDurableObject(stub, async (instance: LimiterObject, state) => {
      const deleteAll = state.storage.deleteAll;
      state.storage.deleteAll = () => Promise.reject(new Error("storage overloaded"));
      try {
        await instance.alarm();
        return undefined;
      } catch (error) {
        return (error as Error).message;
      } finally {
        state.storage.deleteAll = deleteAll;
      }
    });
    expect(failure).toBe("storage overloaded");
    // The runtime retries a failed alarm.
    // (Called directly, as the runtime's retry would: the cleanup alarm set by the first flush
    // is still pending here, so only the schema is asked about.)
    await runInDurableObject(stub, (instance: LimiterObject) => instance.alarm());
    expect((await left(stub)).schema).toEqual([]);
  });

  it("a request arriving while it runs is counted, saved by the next alarm, and that alarm is kept", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const stub = tenantObject();
    const item: CounterRequest = { id: "during-cleanup", limit: 5, windowS: 60 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    vi.setSystemTime(t0 + 60_000);
    // The input gate holds the acquire back while deleteAll is awaited; had it slipped in, the
    // alarm it set would have been deleted with the rest, and its counter never saved.
    const [, admitted] = await Promise.all([runDurableObjectAlarm(stub), stub.acquire([item])]);
    expect(admitted.allowed).toBe(true);
    // Which of the two the object takes first is the runtime's to choose: either way the
    // request's change must have an alarm to save it.
    expect((await left(stub)).alarm).not.toBeNull();
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const saved = await runInDurableObject(stub, (_i: LimiterObject, state) =>
      state.storage.sql.exec<{ id: string }>("SELECT id FROM counters").toArray(),
    );
    expect(saved.map((row) => row.id)).toEqual(["during-cleanup"]);
  });
});
