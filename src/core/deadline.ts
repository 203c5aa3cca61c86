// "Wait for this, but no longer than that": a race against a timer, cleared as soon as either
// side settles. The timer belongs to the caller's request, so it fires even when the awaited
// work was started by another request that is gone.

export const TIMED_OUT: unique symbol = Symbol("timed out");

/** `work`'s value, or TIMED_OUT once `ms` have passed; a rejection of `work` passes through. */
export async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  // Assigned by the executor, which runs at once.
  let timer!: ReturnType<typeof setTimeout>;
  const deadline = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
