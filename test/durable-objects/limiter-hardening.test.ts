// The rate-limit Durable Objects against hostile input and restarts: ids are data, never SQL;
// malformed calls are refused and the object keeps serving; nothing is lost or doubled across a
// flush and a restart; epochs; eviction at the bound keeps what it must.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { LimiterObject } from "../../durable-objects/limiter-object";
import { MAX_COUNTERS } from "../../src/core/limits/counter-table";
import { type CounterRequest, HOLD_MS, holdMsFor, MAX_LIMITER_TIMEOUT_MS } from "../../src/core/limits/limiter-rpc";
import { fakeClockStart, rows, tenantObject } from "../support/limiter-objects";

const perHour: CounterRequest = { id: "c", limit: 5, windowS: 3600 };
const peek = (r: CounterRequest): CounterRequest => ({ ...r, cost: 0 });

afterEach(() => {
  vi.useRealTimers();
});

describe("ids are data, never SQL", () => {
  it("ids with quotes, SQL and JSON survive a flush and a restart unchanged", async () => {
    const stub = tenantObject();
    const ids = [
      `["user","u",5,60,"iss","x'); DROP TABLE counters; --"]`,
      `'"\\\u0000\u2028 OR 1=1`,
      "%' OR id LIKE '%",
    ];
    for (const id of ids) expect((await stub.acquire([{ id, limit: 5, windowS: 3600 }])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await rows(stub)).map((r) => r.id).sort()).toEqual([...ids].sort());
    await evictDurableObject(stub);
    const after = await stub.acquire(ids.map((id) => ({ id, limit: 5, windowS: 3600, cost: 0 })));
    expect(after.counters.map((c) => c.remaining)).toEqual([4, 4, 4]);
  });
});

describe("malformed RPC input", () => {
  const failure = (call: () => Promise<unknown>) =>
    call().then(
      () => "ok",
      (error: Error) => error.message,
    );
  it("rejects NaN, negatives, huge values, too many items, long ids, holes", async () => {
    const stub = tenantObject();
    const bad: unknown[] = [
      [{ id: "x", limit: Number.NaN, windowS: 60 }],
      [{ id: "x", limit: 1, windowS: -1 }],
      [{ id: "x", limit: 1, windowS: 60, cost: -1 }],
      [{ id: "x", limit: 2e9, windowS: 60 }],
      [{ id: "x", limit: 1, windowS: 1e12 }],
      // Not valid Unicode: storage would keep U+FFFD for the lone surrogate.
      [{ id: "a\ud800", limit: 1, windowS: 60 }],
      [{ id: "a\udc00b", limit: 1, windowS: 60 }],
      [{ id: "x".repeat(2049), limit: 1, windowS: 60 }],
      [{ id: 5, limit: 1, windowS: 60 }],
      Array.from({ length: 17 }, (_, i) => ({ id: `x${i}`, limit: 1, windowS: 60 })),
      // biome-ignore lint/suspicious/noSparseArray: a hole
      [, { id: "x", limit: 1, windowS: 60 }],
      "not an array",
    ];
    const answers: string[] = [];
    for (const items of bad) answers.push(await failure(() => stub.acquire(items as never)));
    // Each one refused by the object's own check, not by some other failure on the way.
    expect(answers).toEqual(bad.map(() => "malformed counter request"));
    // Nothing of a refused call was counted: the well-formed counters next to the bad ones are untouched.
    const untouched = await stub.acquire([
      { id: "x", limit: 1, windowS: 60, cost: 0 },
      ...Array.from({ length: 15 }, (_, i) => ({ id: `x${i}`, limit: 1, windowS: 60, cost: 0 })),
    ]);
    expect(untouched.counters.map((c) => c.remaining)).toEqual(Array.from({ length: 16 }, () => 1));
    // The object is still healthy for everyone else afterwards.
    expect((await stub.acquire([perHour])).allowed).toBe(true);
  });

  it("refuses a hold no caller could ask for, and charges nothing for it", async () => {
    const stub = tenantObject();
    const item = { id: "held", limit: 1, windowS: 60 };
    const bad: unknown[] = ["yes", 1.5, -1, 0.5, HOLD_MS - 1, holdMsFor(MAX_LIMITER_TIMEOUT_MS) + 1, 1e12, {}];
    const answers: string[] = [];
    for (const hold of bad) answers.push(await failure(() => stub.acquire([item], hold as never)));
    expect(answers).toEqual(bad.map(() => "malformed counter request"));
    expect((await stub.acquire([{ ...item, cost: 0 }])).counters[0]?.remaining).toBe(1);
    // The longest a budget allows is held, and so is `true` (as a Worker of an earlier release
    // asks during a rolling deploy), each given back exactly.
    for (const hold of [holdMsFor(MAX_LIMITER_TIMEOUT_MS), true]) {
      const held = await stub.acquire([item], hold as never);
      expect(held).toMatchObject({ allowed: true, seq: expect.any(Number) });
      await stub.release([item], held.at, held.epoch, held.seq);
      expect((await stub.acquire([{ ...item, cost: 0 }])).counters[0]?.remaining).toBe(1);
    }
  });

  it("duplicate ids in one call are charged once each and released once each", async () => {
    const stub = tenantObject();
    // The object runs in the test's isolate: its clock is held still, so the release comes at
    // the very time of the charge and gives back each charge in full (a refund keeps what has
    // drained since, and a millisecond would leave 4 below, whatever the code did).
    vi.useFakeTimers({ toFake: ["Date"], now: fakeClockStart() });
    const r = await stub.acquire([perHour, perHour]);
    expect(r.allowed).toBe(true);
    expect((await stub.acquire([peek(perHour)])).counters[0]?.remaining).toBe(3);
    await stub.release([perHour, perHour], r.at, r.epoch);
    expect((await stub.acquire([peek(perHour)])).counters[0]?.remaining).toBe(5);
  });

  it("a release whose time is no number gives nothing back", async () => {
    const stub = tenantObject();
    // Held still, as above: a release of the right time would give the charge back in full.
    vi.useFakeTimers({ toFake: ["Date"], now: fakeClockStart() });
    const r = await stub.acquire([perHour]);
    for (const at of [String(r.at), [r.at], { valueOf: () => r.at }])
      await stub.release([perHour], at as never, r.epoch);
    expect((await stub.acquire([peek(perHour)])).counters[0]?.remaining).toBe(4);
    await stub.release([perHour], r.at, r.epoch);
    expect((await stub.acquire([peek(perHour)])).counters[0]?.remaining).toBe(5);
  });

  it("a release naming another size than the counter's gives nothing back, never more than the charge", async () => {
    const stub = tenantObject();
    vi.useFakeTimers({ toFake: ["Date"], now: fakeClockStart() });
    const item = { id: "sized", limit: 1000, windowS: 60 };
    for (let i = 0; i < 10; i++) await stub.acquire([item]);
    const r = await stub.acquire([item]);
    // At limit 1 the emission interval is a whole minute: given back at that size, the
    // release would erase the other ten requests' charges with its own.
    await stub.release([{ ...item, limit: 1 }], r.at, r.epoch);
    await stub.release([{ ...item, windowS: 3600 }], r.at, r.epoch);
    expect((await stub.acquire([peek(item)])).counters[0]?.remaining).toBe(989);
    await stub.release([item], r.at, r.epoch);
    expect((await stub.acquire([peek(item)])).counters[0]?.remaining).toBe(990);
  });
});

describe("persistence", () => {
  it("a flush interleaved with acquires loses and doubles nothing across a restart", async () => {
    const stub = tenantObject();
    await stub.acquire([perHour]);
    await runDurableObjectAlarm(stub);
    await stub.acquire([perHour]);
    await runDurableObjectAlarm(stub);
    await stub.acquire([perHour]);
    await runDurableObjectAlarm(stub);
    await evictDurableObject(stub);
    expect((await stub.acquire([peek(perHour)])).counters[0]?.remaining).toBe(2);
    // The restarted object answers with another epoch, so a release from before cannot refund.
  });

  it("a new instance gets a fresh epoch", async () => {
    const stub = tenantObject();
    const a = await stub.acquire([perHour]);
    await evictDurableObject(stub);
    const b = await stub.acquire([perHour]);
    expect(b.epoch).not.toBe(a.epoch);
  });
});

describe("the counter bound", () => {
  it("eviction keeps the shared and the refused counters, bumps the epoch, and deletes evicted rows", async () => {
    const stub = tenantObject();
    const shared: CounterRequest = { id: `["tenant","t",1000000,3600]`, limit: 1_000_000, windowS: 3600 };
    const refused: CounterRequest = { id: `["user","u",1,3600,"i","victim"]`, limit: 1, windowS: 3600 };
    await stub.acquire([shared, refused]);
    const before = await stub.acquire([shared, refused]);
    expect(before.allowed).toBe(false);
    await runDurableObjectAlarm(stub);
    const epoch0 = (await stub.acquire([peek(shared)])).epoch;
    const info = await runInDurableObject(stub, (instance: LimiterObject) => {
      for (let i = 0; i < MAX_COUNTERS + 10; i++) {
        instance.acquire([shared, { id: `["user","u",5,60,"i","s${i}"]`, limit: 5, windowS: 60 }]);
      }
      return { size: instance.counters.size, epoch: instance.counters.epoch };
    });
    expect(info.size).toBeLessThanOrEqual(MAX_COUNTERS);
    expect(info.epoch).not.toBe(epoch0);
    const after = await stub.acquire([peek(shared), peek(refused)]);
    // Not reset (it drains at 3.6 ms a request while the loop runs, hence a bound).
    expect(after.counters[0]?.remaining).toBeLessThan(1_000_000 - MAX_COUNTERS + 1000);
    // The refused client's counter survived eviction: still nothing left.
    expect(after.counters[1]?.remaining).toBe(0);
    await runDurableObjectAlarm(stub);
    expect((await rows(stub)).length).toBe(info.size);
  });
});
