// Small helpers for tests that wait on the edge: a pause, a bound on a wait, and a promise the
// test settles itself.

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

/**
 * A limiter namespace whose `acquire` answers when the test says: `called` settles once the
 * edge has asked, `answer` is what the test resolves it with.
 */
export function heldLimiter<A>() {
  const called = held<void>();
  const answer = held<A>();
  const namespace = {
    idFromName: (name: string) => name,
    get: () => ({
      acquire: () => {
        called.resolve();
        return answer.promise;
      },
      release: async () => undefined,
    }),
  };
  return { namespace, called, answer };
}
