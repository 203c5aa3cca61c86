// Whether a local port has nothing listening, for the tests that start and stop the stack.

/** Whether the connection to 127.0.0.1:`port` is refused: nothing listens there. A timeout is not. */
export async function refused(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
    await response.arrayBuffer();
    return false;
  } catch (error) {
    return (error as { cause?: { code?: string } }).cause?.code === "ECONNREFUSED";
  }
}
