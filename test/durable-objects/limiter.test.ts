import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { LimiterObject } from "../../durable-objects/limiter-object";
import type { RouteLimiter } from "../../durable-objects/route-limiter";
import type { TenantLimiter } from "../../durable-objects/tenant-limiter";
import { type CounterRequest, HOLD_MS } from "../../src/core/limits/limiter-rpc";
import { alarmFailure, rows, tenantObject } from "../support/limiter-objects";

const bindings = env as unknown as { ROUTE_LIMITER: DurableObjectNamespace<RouteLimiter> };

async function admittedOf(attempts: number, attempt: () => Promise<boolean>): Promise<number> {
  const results = await Promise.all(Array.from({ length: attempts }, attempt));
  return results.filter(Boolean).length;
}

function storedRows(stub: DurableObjectStub<TenantLimiter>): Promise<number> {
  return rows(stub).then((saved) => saved.length);
}

const L = 37;
const perHour: CounterRequest = { id: "c", limit: L, windowS: 3600 };

describe("limiter object: concurrency", () => {
  it("admits exactly L of 1,000 concurrent requests", async () => {
    const stub = tenantObject();
    const admitted = await admittedOf(1000, async () => (await stub.acquire([perHour])).allowed);
    expect(admitted).toBe(L);
  });

  it("the same test catches a variant that awaits between reading and writing the counter", async () => {
    const stub = tenantObject();
    // decide() reads, commit() writes; awaiting a timer in between opens the input gate, so
    // other calls decide on the same stale counter.
    const broken = () =>
      runInDurableObject(stub, async (instance: LimiterObject) => {
        const decision = instance.counters.decide([perHour], Date.now());
        await scheduler.wait(0);
        if (decision.result.allowed) instance.counters.commit(decision, Date.now());
        return decision.result.allowed;
      });
    const admitted = await admittedOf(1000, broken);
    expect(admitted).toBeGreaterThan(L);
  });

  it("an await on this object's own storage in between stays exact: input gates hold other calls", async () => {
    const stub = tenantObject();
    const gated = () =>
      runInDurableObject(stub, async (instance: LimiterObject, state) => {
        const decision = instance.counters.decide([perHour], Date.now());
        await state.storage.get("anything");
        if (decision.result.allowed) instance.counters.commit(decision, Date.now());
        return decision.result.allowed;
      });
    expect(await admittedOf(1000, gated)).toBe(L);
  });

  it("composing decide and commit with no await in between is exact (the harness is not the cause)", async () => {
    const stub = tenantObject();
    const composed = () =>
      runInDurableObject(stub, async (instance: LimiterObject) => {
        const decision = instance.counters.decide([perHour], Date.now());
        if (decision.result.allowed) instance.counters.commit(decision, Date.now());
        return decision.result.allowed;
      });
    expect(await admittedOf(1000, composed)).toBe(L);
  });

  it("decides tenant and user limits together: the tenant total is exact and refusals charge nothing", async () => {
    const stub = tenantObject();
    const tenant: CounterRequest = { id: "tenant", limit: 5, windowS: 3600 };
    const user = (who: string): CounterRequest => ({ id: `user:${who}`, limit: 3, windowS: 3600 });
    const admitted = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const who = i % 2 === 0 ? "a" : "b";
        return (await stub.acquire([tenant, user(who)])).allowed ? who : undefined;
      }),
    );
    const a = admitted.filter((w) => w === "a").length;
    const b = admitted.filter((w) => w === "b").length;
    expect(a + b).toBe(5);
    expect(a).toBeLessThanOrEqual(3);
    expect(b).toBeLessThanOrEqual(3);
    // What the counters hold is exactly what was admitted: 995 refusals charged nothing.
    const peek = await stub.acquire([
      { ...tenant, cost: 0 },
      { ...user("a"), cost: 0 },
      { ...user("b"), cost: 0 },
    ]);
    expect(peek.counters.map((c) => c.remaining)).toEqual([0, 3 - a, 3 - b]);
  });

  it("releases a reservation exactly", async () => {
    const stub = tenantObject();
    await stub.acquire([perHour]);
    const reserved = await stub.acquire([perHour]);
    await stub.release([perHour], reserved.at, reserved.epoch);
    const peek = await stub.acquire([{ ...perHour, cost: 0 }]);
    expect(peek.counters[0]?.remaining).toBe(L - 1);
  });

  it("gives nothing back for a release that does not carry what acquire answered", async () => {
    const stub = tenantObject();
    const reserved = await stub.acquire([perHour]);
    await stub.release([perHour]);
    await stub.release([perHour], reserved.at, (reserved.epoch ?? 0) + 1);
    for (const odd of ["soon", (reserved.at ?? 0) + 0.5, null, {}]) {
      await stub.release([perHour], odd as never, reserved.epoch);
    }
    const peek = await stub.acquire([{ ...perHour, cost: 0 }]);
    expect(peek.counters[0]?.remaining).toBe(L - 1);
  });

  it("holds a request for a release to give back exactly, and comes back to charge a hold nobody gave back", async () => {
    const stub = tenantObject();
    const held = await stub.acquire([perHour], true);
    const other = await stub.acquire([perHour], true);
    // Held requests count against the next ones as charges would.
    expect((await stub.acquire([{ ...perHour, cost: 0 }])).counters[0]?.remaining).toBe(L - 2);
    await stub.release([perHour], held.at, held.epoch, held.seq);
    expect((await stub.acquire([{ ...perHour, cost: 0 }])).counters[0]?.remaining).toBe(L - 1);
    // The flush alarm finds the other not yet due: it comes back for it then.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const alarm = await runInDurableObject(stub, (_i: LimiterObject, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThanOrEqual((other.at ?? 0) + HOLD_MS);
  });

  it("route objects behave the same", async () => {
    const stub = bindings.ROUTE_LIMITER.get(bindings.ROUTE_LIMITER.idFromName(crypto.randomUUID()));
    const admitted = await admittedOf(
      200,
      async () => (await stub.acquire([{ id: "r", limit: 9, windowS: 60 }])).allowed,
    );
    expect(admitted).toBe(9);
  });

  it("rejects malformed calls", async () => {
    const stub = tenantObject();
    const failure = (call: () => Promise<unknown>) =>
      call().then(
        () => undefined,
        (error: Error) => error.message,
      );
    const seventeen = Array.from({ length: 17 }, (_, i) => ({ id: `c${i}`, limit: 1, windowS: 60 }));
    expect(await failure(() => stub.acquire([]))).toMatch(/malformed/);
    expect(await failure(() => stub.acquire(seventeen))).toMatch(/malformed/);
    expect(await failure(() => stub.acquire([{ id: "x", limit: 0, windowS: 60 }]))).toMatch(/malformed/);
    expect(await failure(() => stub.release([]))).toMatch(/malformed/);
    expect(await failure(() => stub.release([{ id: "x", limit: 1, windowS: 0 }], 0, 0))).toMatch(/malformed/);
    // Nothing malformed was counted: a well-formed call still finds every counter fresh.
    const admitted = await stub.acquire(seventeen.slice(0, 16));
    expect(admitted.allowed).toBe(true);
    // A hole is malformed too (it survives the call), and a call holding one gives nothing back.
    const holed: unknown[] = [seventeen[0]];
    holed.length = 2;
    expect(await failure(() => stub.release(holed as never, admitted.at, admitted.epoch))).toMatch(/malformed/);
    expect((await stub.acquire([seventeen[0]!])).allowed).toBe(false);
  });
});

describe("limiter object: persistence", () => {
  it("writes nothing per request: one alarm, due within 2 seconds, batches the changes", async () => {
    const stub = tenantObject();
    const answers = [];
    for (let i = 0; i < 20; i++)
      answers.push(await stub.acquire([perHour, { id: `u${i % 4}`, limit: 10, windowS: 60 }]));
    expect(await storedRows(stub)).toBe(0);
    const alarm = await runInDurableObject(stub, (_i: LimiterObject, state) => state.storage.getAlarm());
    // A restart forgets what the alarm has not saved yet: at most 2 seconds of counting, from
    // the first change not saved (by the object's own clock, as its answer gave it).
    const firstChange = answers[0]!.at!;
    expect(alarm).not.toBeNull();
    expect(alarm).toBeGreaterThan(firstChange);
    expect(alarm).toBeLessThanOrEqual(firstChange + 2000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await storedRows(stub)).toBe(5);
  });

  it("survives a restart once flushed", async () => {
    const stub = tenantObject();
    for (let i = 0; i < 3; i++) await stub.acquire([perHour]);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // The count is in storage, so what the restarted object knows can only have come from there.
    expect(await storedRows(stub)).toBe(1);
    await evictDurableObject(stub);
    const peek = await stub.acquire([{ ...perHour, cost: 0 }]);
    expect(peek.counters[0]?.remaining).toBe(L - 3);
  });

  it("forgets what was admitted since the last flush when restarted (the documented cost)", async () => {
    const stub = tenantObject();
    for (let i = 0; i < 3; i++) await stub.acquire([perHour]);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    for (let i = 0; i < 2; i++) await stub.acquire([perHour]);
    await evictDurableObject(stub);
    const peek = await stub.acquire([{ ...perHour, cost: 0 }]);
    expect(peek.counters[0]?.remaining).toBe(L - 3);
  });

  it("gives nothing back for a reservation the restart forgot: it was refunded by the restart already", async () => {
    const stub = tenantObject();
    for (let i = 0; i < 3; i++) await stub.acquire([perHour]);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // One more is reserved, not yet saved, and the object restarts before its release lands.
    const reserved = await stub.acquire([perHour]);
    expect(reserved.allowed).toBe(true);
    await evictDurableObject(stub);
    await stub.release([perHour], reserved.at, reserved.epoch);
    // The three saved and served requests are still counted.
    const peek = await stub.acquire([{ ...perHour, cost: 0 }]);
    expect(peek.counters[0]?.remaining).toBe(L - 3);
  });

  it("gives nothing back across a restart even when new requests have taken the reservation's place", async () => {
    const stub = tenantObject();
    await stub.acquire([perHour]);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // Reserved a whole emission interval ahead, then forgotten by a restart.
    const reserved = await stub.acquire([perHour]);
    await evictDurableObject(stub);
    // Two requests are served on top of the saved one, in the very slots the reservation had
    // held: its release must not take one of their charges.
    for (let i = 0; i < 2; i++) expect((await stub.acquire([perHour])).allowed).toBe(true);
    await stub.release([perHour], reserved.at, reserved.epoch);
    const peek = await stub.acquire([{ ...perHour, cost: 0 }]);
    expect(peek.counters[0]?.remaining).toBe(L - 3);
  });

  it("keeps the changes of a flush whose write failed, so the alarm's retry saves them", async () => {
    const stub = tenantObject();
    for (let i = 0; i < 3; i++) await stub.acquire([perHour]);
    const failure = await alarmFailure(stub, "SQLITE_FULL");
    // The alarm fails, so the runtime retries it; the retry must still have the counts to write.
    expect(failure).toBe("SQLITE_FULL");
    expect(await storedRows(stub)).toBe(0);
    await runInDurableObject(stub, (instance: LimiterObject) => instance.alarm());
    expect(await storedRows(stub)).toBe(1);
    await evictDurableObject(stub);
    const peek = await stub.acquire([{ ...perHour, cost: 0 }]);
    expect(peek.counters[0]?.remaining).toBe(L - 3);
  });

  it("drops expired counters from memory and storage", async () => {
    const stub = tenantObject();
    const acquired = await stub.acquire([{ id: "brief", limit: 1, windowS: 1 }]);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await storedRows(stub)).toBe(1);
    const [stored] = await rows(stub);
    const alarmAt = await runInDurableObject(stub, (_i: LimiterObject, s) => s.storage.getAlarm());
    // The counter expires one window (a second) after its request, as the object timed it…
    expect(stored?.ms).toBe(acquired.at! + 1000);
    // …and the flush scheduled a clean-up alarm for just then.
    expect(alarmAt).toBe(stored!.ms + 1);
    await scheduler.wait(1100);
    // …which has run by now (or runs here if the runtime has not got to it yet).
    await runDurableObjectAlarm(stub);
    expect(await storedRows(stub)).toBe(0);
    const state = await runInDurableObject(stub, async (instance: LimiterObject, s) => ({
      size: instance.counters.size,
      alarm: await s.storage.getAlarm(),
    }));
    expect(state).toEqual({ size: 0, alarm: null });
  });
});
