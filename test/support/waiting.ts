// Small helpers for tests that wait on the edge: a pause, a bound on a wait, a promise the
// test settles itself, and real parts (a limiter object, an origin) held until the test says.

/**
 * Waits for a request's deferred work as the runtime does for ctx.waitUntil: work deferred while
 * earlier work runs (a refresh hands over its KV writes only once the issuer answered) is waited
 * for too. A snapshot of the list would leave those writes in flight, unseen by the next read.
 */
export async function settleDeferred(pending: Promise<unknown>[]): Promise<void> {
  while (pending.length > 0) await Promise.allSettled(pending.splice(0));
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with what `work` gives, or "hung" after `ms`. */
export function within<T>(work: Promise<T>, ms: number): Promise<T | "hung"> {
  return Promise.race([work, new Promise<"hung">((resolve) => setTimeout(resolve, ms, "hung"))]);
}

/** A promise the test settles itself. */
export function held<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

/** The calls the edge makes on a rate-limit object (`LimiterRpc` in src/core/limits/counter-table.ts). */
interface LimiterStub {
  acquire(items: unknown[], hold?: boolean): Promise<{ allowed: boolean }>;
  release(items: unknown[], at?: number, epoch?: number, seq?: number): Promise<void>;
}

/**
 * A real limiter namespace (a Durable Object binding of the test env) whose `acquire` calls
 * wait for the test: `called` settles once the edge has asked, and the call goes on to the
 * real object only when the test resolves `go`, so the answer is the object's own;
 * `answered` settles with the first such answer.
 */
export function heldLimiter(real: DurableObjectNamespace) {
  const called = held<void>();
  const go = held<void>();
  const answered = held<{ allowed: boolean }>();
  const namespace = {
    idFromName: (name: string) => real.idFromName(name),
    get: (id: DurableObjectId) => {
      const stub = real.get(id) as unknown as LimiterStub;
      return {
        acquire: async (items: unknown[], hold?: boolean) => {
          called.resolve();
          await go.promise;
          const answer = await stub.acquire(items, hold);
          answered.resolve(answer);
          return answer;
        },
        release: (items: unknown[], at?: number, epoch?: number, seq?: number) => stub.release(items, at, epoch, seq),
      };
    },
  };
  return { namespace, called, go, answered };
}

/**
 * A service binding in front of a real origin (`base`, e.g. the echo origin): each request
 * goes on to it as the edge sent it, path, query, headers and body; `settled` says whether
 * the origin answered (it had the whole request) or the request failed (torn down), and an
 * answer is handed back to the edge only when the test resolves `release`.
 */
export function heldOrigin(base: string) {
  const settled = held<"answered" | "failed">();
  const release = held<void>();
  const binding = {
    fetch: async (target: string, init?: RequestInit) => {
      const url = new URL(target);
      let answer: Response;
      try {
        answer = await fetch(`${base}${url.pathname}${url.search}`, init);
      } catch (error) {
        settled.resolve("failed");
        throw error;
      }
      settled.resolve("answered");
      await release.promise;
      return answer;
    },
  };
  return { binding, settled, release };
}
