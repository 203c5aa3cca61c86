// A client's large upload for tests of an origin that answers without reading it: the edge
// must give the rest up (cancel it) rather than stream it all, or hold its answer back.

import { held } from "./waiting";

/**
 * `total` zero bytes in 64 KiB parts; `givenUp` is kept once the edge cancels the body, and
 * `sent()` tells how many bytes it had taken by then.
 */
export function largeBody(total: number): {
  body: ReadableStream<Uint8Array>;
  givenUp: Promise<void>;
  sent: () => number;
} {
  let sent = 0;
  const givenUp = held<void>();
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      sent += 1 << 16;
      controller.enqueue(new Uint8Array(1 << 16));
    },
    cancel() {
      givenUp.resolve();
    },
  });
  return { body, givenUp: givenUp.promise, sent: () => sent };
}
