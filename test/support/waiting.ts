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
