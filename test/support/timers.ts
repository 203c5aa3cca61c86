// Which timers a piece of work leaves pending: the edge must set none that outlive its answer.

/** The delays of the timers set while `run` ran and still pending when it settled. */
export async function timersLeftBy<T>(run: () => Promise<T>): Promise<{ result: T; pending: number[] }> {
  const pending = new Map<unknown, number>();
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  const g = globalThis as unknown as Record<string, unknown>;
  g.setTimeout = (fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const id: unknown = realSet(
      (...a: unknown[]) => {
        pending.delete(id);
        fn(...a);
      },
      ms,
      ...args,
    );
    pending.set(id, ms ?? 0);
    return id;
  };
  g.clearTimeout = (id: unknown) => {
    pending.delete(id);
    realClear(id as number);
  };
  try {
    const result = await run();
    return { result, pending: [...pending.values()] };
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
}
