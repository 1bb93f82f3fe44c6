/**
 * Streamed HTTP bodies between a worker's main thread and its HTTP handler threads: one MessagePort per
 * streamed body, chunks transferred (not copied) with a credit window for backpressure.
 *
 * Why a window and not one message per pull: a round trip per chunk costs a thread hop each way
 * (≈20-50 µs); with up to {@link WINDOW_BYTES} in flight the sender keeps going while the receiver acks,
 * and memory per streamed body stays bounded by the window whatever the body's size. Acks are sent as
 * the receiver's consumer pulls a chunk, so a slow consumer (a handler hashing slowly, a client reading
 * slowly) stops the sender, and through it the socket or object-store read that feeds it.
 *
 * Wire: sender → receiver `{h}` (response head, once, first), `{d: Uint8Array}`, `{e: true}` (end),
 * `{x: {code, message}}` (error); receiver → sender `{a: bytes}`. Either side closing the port ends the
 * other: a receiver that stops reading (`break`, a disconnected client) releases the sender.
 */
import type { MessagePort } from 'node:worker_threads';
import { BindingError, type ErrorCode } from '../../bindings/errors.ts';

/** Most bytes sent and not yet consumed on one stream. */
export const WINDOW_BYTES = 1024 * 1024;
/** Chunks larger than this are split (a 16 MiB chunk from a handler must not defeat the window). */
const MAX_CHUNK_BYTES = 256 * 1024;

/** A streamed response's status line and headers, sent before its first chunk. */
export interface StreamHead {
  status: number;
  headers: Record<string, string>;
}

type ToReceiver = { h: StreamHead } | { d: Uint8Array } | { e: true } | { x: { code: ErrorCode; message: string } };
type ToSender = { a: number };

/** Options of {@link sendStream}. */
export interface SendStreamOptions {
  /** Sent before the first chunk (responses). @default none */
  head?: StreamHead;
  /** Epoch ms after which the stream is cut with SLUICE_HANDLER_TIMEOUT. @default none */
  deadlineMs?: number;
}

/** Copies a chunk into its own ArrayBuffer when it shares one (a pooled socket buffer must not be transferred). */
function own(c: Uint8Array): Uint8Array {
  return c.byteOffset === 0 && c.byteLength === c.buffer.byteLength && !(c.buffer instanceof SharedArrayBuffer) ? c : new Uint8Array(c);
}

/**
 * Sends `source` over `port` and closes it. Resolves when done: all sent, the receiver gone, or the
 * source failed (then the receiver's iteration throws). Never rejects.
 */
export async function sendStream(port: MessagePort, source: AsyncIterable<Uint8Array>, options: SendStreamOptions = {}): Promise<void> {
  let inFlight = 0;
  let closed = false;
  let wake: (() => void) | undefined;
  const onAck = (m: ToSender) => {
    inFlight -= m.a;
    wake?.();
  };
  const onClose = () => {
    closed = true;
    wake?.();
  };
  port.on('message', onAck);
  port.once('close', onClose);
  const post = (m: ToReceiver, transfer?: ArrayBuffer[]) => {
    if (!closed) port.postMessage(m, transfer);
  };
  const it = source[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  if (options.deadlineMs !== undefined) {
    timer = setTimeout(() => {
      post({ x: { code: 'SLUICE_HANDLER_TIMEOUT', message: 'the body stream ran past the timeout' } });
      onClose();
    }, Math.max(0, options.deadlineMs - Date.now()));
  }
  try {
    if (options.head) post({ h: options.head });
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      if (!(r.value instanceof Uint8Array)) throw new BindingError('SLUICE_INVALID_ARGUMENT', 'a streamed body must yield Uint8Array chunks');
      for (let off = 0; off < r.value.byteLength; off += MAX_CHUNK_BYTES) {
        // Wait for room: the receiver acks what its consumer took.
        while (!closed && inFlight >= WINDOW_BYTES) await new Promise<void>((resolve) => (wake = resolve));
        if (closed) break;
        const c = own(r.value.subarray(off, Math.min(off + MAX_CHUNK_BYTES, r.value.byteLength)));
        inFlight += c.byteLength;
        post({ d: c }, [c.buffer as ArrayBuffer]);
      }
      if (closed) break;
    }
    post({ e: true });
  } catch (e) {
    const err = e as { code?: unknown; message?: unknown };
    post({ x: { code: typeof err.code === 'string' && err.code.startsWith('SLUICE_') ? (err.code as ErrorCode) : 'SLUICE_INTERNAL', message: String(err.message ?? e) } });
  } finally {
    if (timer) clearTimeout(timer);
    // Releases the source (a socket stops reading, an object-store read ends).
    if (closed) await it.return?.().catch(() => undefined);
    port.off('message', onAck);
    port.off('close', onClose);
    port.close();
  }
}

/**
 * The receiving end: chunks as the consumer pulls them. With `head`, resolves the stream's head first
 * (responses). `break` closes the port (the sender stops).
 */
export class StreamReceiver implements AsyncIterable<Uint8Array> {
  readonly #port: MessagePort;
  readonly #queue: ToReceiver[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #head: Promise<StreamHead>;
  #resolveHead!: (h: StreamHead) => void;
  #rejectHead!: (e: Error) => void;

  constructor(port: MessagePort) {
    this.#port = port;
    this.#head = new Promise((resolve, reject) => {
      this.#resolveHead = resolve;
      this.#rejectHead = reject;
    });
    this.#head.catch(() => undefined);
    port.on('message', (m: ToReceiver) => {
      if ('h' in m) return this.#resolveHead(m.h);
      // A stream that fails before its head fails the head (a resolved head stays resolved).
      if ('x' in m) this.#rejectHead(new BindingError(m.x.code, m.x.message));
      this.#queue.push(m);
      this.#wake?.();
    });
    port.once('close', () => {
      this.#rejectHead(new BindingError('SLUICE_ABORTED', 'the body stream was closed before its head'));
      this.#queue.push({ x: { code: 'SLUICE_ABORTED', message: 'the body stream was closed before its end' } });
      this.#wake?.();
    });
  }

  /** The head a response stream starts with (rejects when the stream fails first). */
  head(): Promise<StreamHead> {
    return this.#head;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    try {
      while (!this.#ended) {
        const m = this.#queue.shift();
        if (m === undefined) {
          await new Promise<void>((resolve) => (this.#wake = resolve));
          this.#wake = undefined;
          continue;
        }
        if ('d' in m) {
          this.#port.postMessage({ a: m.d.byteLength } satisfies ToSender);
          yield m.d;
        } else if ('e' in m) this.#ended = true;
        else if ('x' in m) {
          this.#ended = true;
          throw new BindingError(m.x.code, m.x.message);
        }
      }
    } finally {
      this.#ended = true;
      this.#port.close();
    }
  }
}
