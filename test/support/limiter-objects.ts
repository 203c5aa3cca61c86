// The test env's real rate-limit Durable Objects, reached into: what they saved, a failing save, replaced calls.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { LimiterObject } from "../../durable-objects/limiter-object";
import type { TenantLimiter } from "../../durable-objects/tenant-limiter";
import type { LimiterRpc } from "../../src/core/limits/limiter-rpc";

export type LimiterBinding = "TENANT_LIMITER" | "ROUTE_LIMITER";

export function limiterNamespace(binding: LimiterBinding): DurableObjectNamespace {
  return (env as unknown as Record<LimiterBinding, DurableObjectNamespace>)[binding];
}

const tenantLimiters = (env as unknown as { TENANT_LIMITER: DurableObjectNamespace<TenantLimiter> }).TENANT_LIMITER;

/** A tenant limiter object; by default a new name, so no other test's counters are in it. */
export function tenantObject(name = crypto.randomUUID()) {
  return tenantLimiters.get(tenantLimiters.idFromName(name));
}

/** The counters the object has saved (not what it holds in memory only); none before its first save or after its last counter expired, when it has no table. */
export function rows(stub: DurableObjectStub<TenantLimiter>) {
  return runInDurableObject(stub, (_i: LimiterObject, state) => {
    const tables = state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'counters'").toArray();
    if (tables.length === 0) return [];
    return state.storage.sql
      .exec<{ id: string; ms: number; frac: number; den: number }>("SELECT * FROM counters")
      .toArray();
  });
}

/**
 * Runs the object's alarm with its save throwing `saveError` (as a full or busy database would:
 * the runtime cannot be made to fail one on demand); without it, a plain run. Resolves with the
 * message the alarm failed with, or undefined: what the failure left behind is the test's to check.
 */
export function alarmFailure(stub: DurableObjectStub<TenantLimiter>, saveError?: string): Promise<string | undefined> {
  return runInDurableObject(stub, async (instance: LimiterObject, state) => {
    const transactionSync = state.storage.transactionSync;
    if (saveError !== undefined)
      state.storage.transactionSync = () => {
        throw new Error(saveError);
      };
    try {
      await instance.alarm();
      return undefined;
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    } finally {
      state.storage.transactionSync = transactionSync;
    }
  });
}

/**
 * The real limiter objects of `binding`, reached through stubs whose calls `change` replaces:
 * for the failures a real object cannot produce on demand (an error, an answer that comes too late).
 */
export function realLimiter(binding: LimiterBinding, change: (stub: LimiterRpc) => Partial<LimiterRpc>) {
  const real = limiterNamespace(binding);
  return {
    idFromName: (name: string) => real.idFromName(name),
    get(id: DurableObjectId): LimiterRpc {
      const stub = real.get(id) as unknown as LimiterRpc;
      return {
        acquire: (items, hold) => stub.acquire(items, hold),
        release: (items, at, epoch, seq) => stub.release(items, at, epoch, seq),
        ...change(stub),
      };
    },
  };
}

/**
 * Where a test that fakes `Date` starts its clock: a day ahead of the real one. The runtime
 * fires an object's alarms by the real clock, so an alarm set from a clock at the real time
 * (a flush 2 s on) could go off by itself mid-test on a slow machine, and the test would no
 * longer decide when the object flushes. Set from this start, no alarm is due while it runs.
 */
export function fakeClockStart(): number {
  return Date.now() + 86_400_000;
}
