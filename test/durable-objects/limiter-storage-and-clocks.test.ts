// The rate-limit Durable Objects' state across what Cloudflare puts an object through: a deploy
// (every object restarts), an object nobody calls again, and a Worker whose clock is not the
// object's.
//
// README ("Rate limits": "Where counters live", "Failure modes"). Restarts are simulated as the
// other limiter tests do: `evictDurableObject`, after which the next call builds a new instance
// over the same SQLite storage. The objects run in the test's isolate, so a faked `Date` is
// their clock too.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { LimiterObject } from "../../durable-objects/limiter-object";
import type { RouteLimiter } from "../../durable-objects/route-limiter";
import type { CounterRequest, LimiterRpc } from "../../src/core/limits/limiter-rpc";
import { basePolicy, harness, marker, originSaw } from "../support/harness";
import { fakeClockStart, realLimiter } from "../support/limiter-objects";

const routeLimiters = (env as unknown as { ROUTE_LIMITER: DurableObjectNamespace<RouteLimiter> }).ROUTE_LIMITER;

afterEach(() => {
  vi.useRealTimers();
});

describe("an object nobody calls again", () => {
  // A public route with an `ip` limit and no ceiling has an object per route and client address;
  // a token without a tenant an object per issuer and subject. Cloudflare keeps an object for
  // good once anything was written to its storage (its table, an alarm) unless it calls
  // `storage.deleteAll()`: deleting the rows, or dropping the table, leaves it in existence.
  it("once its last counter has expired, the cleanup alarm gives all of its storage back: no table, no alarm left", async () => {
    const t0 = fakeClockStart();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const address = "192.0.2.41";
    const route = `public-${crypto.randomUUID().slice(0, 8)}`;
    const stub = routeLimiters.get(routeLimiters.idFromName(JSON.stringify(["route", route, address])));
    const item: CounterRequest = { id: JSON.stringify(["ip", "per-ip", 5, 60, address]), limit: 5, windowS: 60 };
    expect((await stub.acquire([item])).allowed).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // The address never comes back; the next deploy restarts the object, and only the alarm its
    // last instance set wakes it again, once the counter has expired (one emission interval on).
    await evictDurableObject(stub);
    const cleanupAt = await runInDurableObject(stub, (_i: LimiterObject, state) => state.storage.getAlarm());
    expect(cleanupAt).toBe(t0 + 12_000 + 1);
    vi.setSystemTime(cleanupAt!);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const left = await runInDurableObject(stub, async (instance: LimiterObject, state) => ({
      counters: instance.counters.size,
      schema: state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master").toArray(),
      alarm: await state.storage.getAlarm(),
    }));
    // Not only the rows: were the table, its indexes and the alarm's metadata to stay, every
    // address, tenant and tenant-less subject ever counted would keep an object (≈ 20 KB) for good.
    expect(left).toEqual({ counters: 0, schema: [], alarm: null });
  });
});

describe("a Worker whose clock is not the objects'", () => {
  // The Worker runs on one machine and each object on another: an hour ahead or behind here,
  // the object's clock faked only while it answers. Nothing the Worker does may mix its own
  // clock with the object's: the give-back names the object's own time of decision, and the
  // wait a 429 gives is the object's.
  for (const skewMs of [3_600_000, -3_600_000]) {
    it(`a client that leaves is given its request back, and a 429 says the object's wait, with the object ${skewMs > 0 ? "ahead" : "behind"} by an hour`, async () => {
      const t0 = fakeClockStart();
      vi.useFakeTimers({ toFake: ["Date"], now: t0 });
      const route = `skew-${crypto.randomUUID().slice(0, 8)}`;
      const address = "192.0.2.58";
      let controller: AbortController | undefined;
      const onObjectClock = async <T>(call: () => Promise<T>): Promise<T> => {
        vi.setSystemTime(t0 + skewMs);
        try {
          return await call();
        } finally {
          vi.setSystemTime(t0);
        }
      };
      const edge = harness(
        basePolicy({
          settings: { limiter_timeout_ms: 2000 },
          routes: [
            {
              name: route,
              methods: ["GET"],
              path: `/${route}/**`,
              auth: "public",
              upstream: "echo",
              limits: [{ name: "per-ip", key: "ip", limit: 2, window_s: 3600 }],
            },
          ],
        }),
        {},
        {
          ROUTE_LIMITER: realLimiter("ROUTE_LIMITER", (stub: LimiterRpc) => ({
            acquire: async (items, hold) => {
              const answer = await onObjectClock(() => stub.acquire(items, hold));
              // The client hangs up just as the object's answer comes back.
              controller?.abort();
              controller = undefined;
              return answer;
            },
            release: (items, at, epoch, seq) => onObjectClock(() => stub.release(items, at, epoch, seq)),
          })),
        },
      );
      const m = marker();
      const send = async (leaving = false) => {
        controller = leaving ? new AbortController() : undefined;
        const headers = { "cf-connecting-ip": address, "x-test-marker": m };
        const init: RequestInit = controller ? { headers, signal: controller.signal } : { headers };
        const response = await edge.fetch(new Request(`https://edge.test/${route}/x`, init));
        const retryAfter = response.headers.get("retry-after");
        await response.body?.cancel();
        return [response.status, retryAfter];
      };
      expect(await send()).toEqual([200, null]);
      expect(await send(true)).toEqual([499, null]);
      // Given back in full: the object's clock has not moved since it charged. (Stamped with the
      // Worker's clock instead, the give-back would read as an hour old with the object ahead, and
      // give nothing: this request would be refused.)
      expect(await send()).toEqual([200, null]);
      // Two an hour, both spent at one instant of the object's clock: the next is half an hour away.
      expect(await send()).toEqual([429, "1800"]);
      expect(edge.audit.map((r) => [r.decision, r.reason])).toEqual([
        ["allow", null],
        ["deny", "client_closed"],
        ["allow", null],
        ["deny", "rate_limited"],
      ]);
      expect(await originSaw(m)).toHaveLength(2);
    });
  }
});
