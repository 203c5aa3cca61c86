// A client's upload streamed to the origin as it arrives, watched: how it ended decides what
// the forward stage answers and records (the origin had the whole request, the client broke
// off, the origin stopped taking it).

import { TIMED_OUT, withDeadline } from "../core/deadline";

/**
 * How an upload ended: whole, the client's body broke off, the client's body ended short of the
 * length it declared, the origin's end closed, or the origin took no part of it within the budget.
 */
export type UploadEnd = "whole" | "client" | "mismatch" | "origin" | "stalled";

/**
 * Streams the client's body through without buffering it, and tells how that ended (a loop
 * of our own rather than `pipeTo`, which fails the same way whichever side failed). `ended`
 * hears of it at once, to tear the origin request down unless the body went whole; `end`
 * settles with it, and `handedOn` as soon as the origin has the whole request (with a declared
 * length's last byte, before the body's end is read) or the upload ended otherwise. Each write and the close must be taken within `budgetMs`: an origin that
 * reads nothing must not hold the request for ever.
 */
export function watchedBody(
  source: ReadableStream,
  clientSignal: AbortSignal,
  length: number | undefined,
  budgetMs: number,
  answered: () => boolean,
  ended: (how: UploadEnd) => void,
): { body: ReadableStream; end: Promise<UploadEnd>; handedOn: Promise<UploadEnd> } {
  // The runtime's own byte stream, not a JavaScript TransformStream: when the client breaks
  // off, the runtime's pump of a JavaScript stream into the subrequest left an uncaught
  // "Network connection lost" rejection behind it, twice per aborted upload. Of the declared
  // length, when there is one: the origin then gets Content-Length, not a chunked upload that
  // some origins refuse (411) or cannot size-check; a body cut short fails the stream.
  const { readable, writable } = length === undefined ? new IdentityTransformStream() : new FixedLengthStream(length);
  const reader = source.getReader();
  const writer = writable.getWriter();
  // Bytes of the declared length not yet handed on: at 0 the origin has the whole request.
  let left = length;
  let handedOn = false;
  // Settles once: with the last declared byte, or else with how the upload ended.
  let handOn!: (how: UploadEnd) => void;
  const settled = new Promise<UploadEnd>((resolve) => {
    handOn = resolve;
  });
  const pump = async (): Promise<UploadEnd> => {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
        // A client gone before its upload was whole is recorded as refused at once (see the
        // audit stage): what it had sent before is never completed to the origin.
        if (clientSignal.aborted && !handedOn) throw 0;
      } catch {
        // A declared-length body handed on whole is whole, whatever happens to its end.
        if (handedOn) {
          writer.close().catch(() => undefined);
          return "whole";
        }
        writer.abort().catch(() => undefined);
        return "client";
      }
      if (left !== undefined && !chunk.done && chunk.value.byteLength > left) {
        // Past its declared length: the body is what was declared (as HTTP frames it); the
        // rest is dropped, and the next read finds the end.
        reader.cancel().catch(() => undefined);
        chunk = left > 0 ? { done: false, value: chunk.value.subarray(0, left) } : { done: true, value: undefined };
      }
      if (left !== undefined && left > 0 && chunk.done) {
        // Short of its declared length: the client's fault, never passed on as a whole body.
        writer.abort().catch(() => undefined);
        return "mismatch";
      }
      try {
        const step = chunk.done ? writer.close() : writer.write(chunk.value);
        // Until the origin answers; then taking its body is its own affair. Once it has every
        // declared byte, only the end is left: the request is whole whatever becomes of that.
        if ((await withDeadline(step, budgetMs)) === TIMED_OUT) {
          if (handedOn) return "whole";
          if (!answered()) return "stalled";
          await step;
        }
        if (chunk.done) return "whole";
        // With its last declared byte the origin has the whole request, before the end is read;
        // unless the client left while that part was being handed on (its record says refused
        // already: the next read tears the origin request down).
        if (left !== undefined) {
          left -= chunk.value.byteLength;
          if (left === 0 && !clientSignal.aborted) {
            handedOn = true;
            handOn("whole");
            ended("whole");
          }
        }
      } catch {
        reader.cancel().catch(() => undefined);
        return handedOn ? "whole" : "origin";
      }
    }
  };
  const end = pump();
  end.then((how) => {
    handOn(how);
    ended(how);
  });
  return { body: readable, end, handedOn: settled };
}
