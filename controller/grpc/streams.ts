/**
 * Serving server-streaming calls from AsyncIterables: cancellation, backpressure and shutdown in one
 * place, shared by `Control.Logs` and `ExternalScaler.StreamIsActive`.
 */
import { once } from 'node:events';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { SluiceError } from '../../bindings/errors.ts';
import { toServiceError } from './status.ts';

/**
 * The open streams of a server, so that `close()` can end them: a follow-mode Logs call or a KEDA
 * StreamIsActive call never ends on its own, and would hold a graceful shutdown open forever.
 */
export class OpenStreams {
  readonly #open = new Set<AbortController>();
  #closing = false;

  /** Registers a stream; its controller is aborted at once if the server is already closing. */
  add(ac: AbortController): () => void {
    this.#open.add(ac);
    if (this.#closing) ac.abort(closingError());
    return () => this.#open.delete(ac);
  }

  /** Aborts every open stream; they end with UNAVAILABLE so clients know to reconnect. */
  closeAll(): void {
    this.#closing = true;
    for (const ac of this.#open) ac.abort(closingError());
  }
}

function closingError(): SluiceError {
  return new SluiceError('SLUICE_BACKEND_UNAVAILABLE', 'the control server is shutting down');
}

/**
 * Runs `run` for a server-streaming call with a signal that aborts when the client cancels or the
 * server closes, then ends the call: OK when `run` returns, the mapped error status when it throws
 * or the server closed, nothing when the client has gone.
 */
export function serveStream<Req, Res>(call: ServerWritableStream<Req, Res>, streams: OpenStreams, run: (signal: AbortSignal) => Promise<void>): void {
  const ac = new AbortController();
  const onCancel = (): void => ac.abort(new SluiceError('SLUICE_ABORTED', 'the client cancelled the call'));
  call.once('cancelled', onCancel);
  const untrack = streams.add(ac);
  const finish = (err?: unknown): void => {
    untrack();
    call.off('cancelled', onCancel);
    if (call.cancelled) return; // nobody to tell
    if (err === undefined) call.end();
    else call.emit('error', toServiceError(err));
  };
  // Through then(): a source that throws synchronously still ends the call with its status.
  Promise.resolve()
    .then(() => run(ac.signal))
    .then(
      () => finish(ac.signal.aborted ? ac.signal.reason : undefined),
      (err: unknown) => finish(ac.signal.aborted ? ac.signal.reason : err),
    );
}

/**
 * Writes `source` to `call` until the source ends or `signal` aborts. `map` turns an item into a
 * message, or `undefined` to skip it. Waits for 'drain' when the transport's buffer is full, so a slow
 * client holds back the source instead of growing memory.
 */
export async function pump<T, Res>(source: AsyncIterable<T>, call: ServerWritableStream<unknown, Res>, signal: AbortSignal, map: (item: T) => Res | undefined): Promise<void> {
  if (signal.aborted) return;
  const it = source[Symbol.asyncIterator]();
  // Resolves when the signal aborts; raced against every wait so a pending next() or a drain that
  // never comes (the client went away) cannot hold the call open.
  let onAbort: () => void = () => {};
  const aborted = new Promise<typeof ABORTED>((resolve) => {
    onAbort = () => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    for (;;) {
      const next = it.next();
      // If abort wins the race, this next() may still settle later; keep its rejection handled.
      next.catch(() => {});
      const r = await Promise.race([next, aborted]);
      if (r === ABORTED || r.done === true) return;
      const msg = map(r.value);
      if (msg !== undefined && !call.write(msg)) {
        const drained = once(call, 'drain').then(() => undefined, () => undefined);
        if ((await Promise.race([drained, aborted])) === ABORTED) return;
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    // Not awaited: an async generator suspended in an await finishes return() only when that await
    // settles, which for a follow-mode source may be never. The source's own signal handling (logs
    // takes the same signal) is what releases it promptly.
    it.return?.().catch(() => {});
  }
}

const ABORTED = Symbol('aborted');
