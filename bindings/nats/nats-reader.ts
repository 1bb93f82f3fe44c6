/**
 * Live shard readers behind `getRecords`: one ephemeral pull consumer per (stream, shard, next
 * sequence), kept between calls so that reading page after page costs one pull per page instead of a
 * consumer per call.
 *
 * A reader is checked out while a call uses it (two concurrent calls on the same cursor get two
 * readers) and put back under the sequence it will deliver next. Readers idle for
 * {@link READER_IDLE_MS} are deleted by a sweep; the server reaps their consumers too
 * (`inactive_threshold`), should this process die. The cache is bounded: past
 * {@link MAX_READERS}, the least recently used reader is closed.
 */
import { BindingError } from '../errors.ts';
import { createEphemeral, deleteConsumer, type NatsContext, pull, PullStatusError, type PulledMsg, seqOf } from './nats-context.ts';

/** A cached reader is closed after this long without use. */
export const READER_IDLE_MS = 30_000;
/** Most cached readers per backend. */
export const MAX_READERS = 256;
/** Server-side reaping of a reader's consumer: a margin past the client-side idle close. */
const CONSUMER_INACTIVE_MS = 2 * READER_IDLE_MS;
/**
 * A reader that has answered "nothing new" for this long asks the stream leader whether that is true.
 * Why: an R1 consumer of an R3 stream is placed on ANY replica and reads that replica's copy; on a
 * replica that is behind (a restarted server catching up) it answers 404 "no messages" — a healthy-looking
 * empty answer, no error, no timeout — while the leader has the records (measured on nats-server 2.9.10:
 * 1.1–1.6 s of empty answers after a restart with 20k records to catch up; a stalled catch-up never ends).
 * Nothing else would ever replace such a consumer.
 */
export const STALE_CHECK_MS = 5_000;

/** One ephemeral consumer positioned at `next` in one shard. */
export class ShardReader {
  readonly jsStream: string;
  readonly filter: string;
  readonly consumer: string;
  /** The sequence the consumer delivers next (records with seq >= next). */
  next: number;
  /** Last delivery sequence seen; deliveries are consecutive unless some were lost. */
  #delivered = 0;
  /** Since when every read came back empty (undefined: the last one delivered). */
  #emptySince: number | undefined;
  /** Nothing was left to deliver after the last read (its last message had no pending, or it was empty). */
  #caughtUp = false;
  lastUsed = Date.now();

  constructor(jsStream: string, filter: string, consumer: string, next: number) {
    this.jsStream = jsStream;
    this.filter = filter;
    this.consumer = consumer;
    this.next = next;
  }

  /**
   * Reads up to `limit` messages: what is there now; when nothing is and `maxWaitMs > 0`, waits up to
   * that long for the first one and returns it (after a read that left nothing pending, it waits at
   * once: a message that came since is then the only one returned). Throws {@link PullStatusError}
   * when the consumer lost deliveries or vanished: the reader must then be discarded.
   */
  async read(ctx: NatsContext, limit: number, maxWaitMs: number, signal: AbortSignal | undefined): Promise<PulledMsg[]> {
    this.lastUsed = Date.now();
    // Caught up at the last read and allowed to wait: straight to the waiting pull, which answers at once
    // when a message came meanwhile — one round trip less per record of a trickle. When messages are
    // pending, the first pull takes up to `limit` of them.
    let msgs = this.#caughtUp && maxWaitMs > 0 ? [] : await pull(ctx, this.jsStream, this.consumer, { batch: limit, signal });
    if (msgs.length === 0 && maxWaitMs > 0) {
      // Wait for ONE message: a larger batch would hold the request open until it filled up. It is
      // returned at once: asking for what else arrived cost a round trip before the first record could
      // be handled (measured: put → committed p50 2.2 → 1.3 ms at 1,000/s, docs/BENCHMARKS.md); the
      // next read takes the rest without waiting, and a worker filling a batch (batch.maxWait) reads on.
      msgs = await pull(ctx, this.jsStream, this.consumer, { batch: 1, expiresMs: maxWaitMs, signal });
    }
    this.#caughtUp = msgs.length === 0 || msgs[msgs.length - 1]!.pending === 0;
    if (msgs.length === 0) await this.#checkStale(ctx);
    else this.#emptySince = undefined;
    for (const m of msgs) {
      if (m.deliverySeq !== this.#delivered + 1)
        throw new PullStatusError(0, `consumer ${this.consumer} delivered ${m.deliverySeq} after ${this.#delivered}: deliveries were lost`);
      this.#delivered = m.deliverySeq;
      this.next = m.seq + 1;
    }
    this.lastUsed = Date.now();
    return msgs;
  }

  /** After {@link STALE_CHECK_MS} of empty reads: throws when the stream leader has a record at or past `next`. */
  async #checkStale(ctx: NatsContext): Promise<void> {
    const now = Date.now();
    this.#emptySince ??= now;
    if (now - this.#emptySince < STALE_CHECK_MS) return;
    this.#emptySince = now;
    const seq = await seqOf(ctx, this.jsStream, { next_by_subj: this.filter, seq: this.next });
    if (seq !== undefined)
      throw new PullStatusError(0, `consumer ${this.consumer} answered "no messages" for ${STALE_CHECK_MS} ms while the stream has ${seq} (>= ${this.next}): it sits on a replica that is behind`);
  }
}

/** The cache of idle readers. */
export class ShardReaders {
  readonly #ctx: NatsContext;
  readonly #idle = new Map<string, ShardReader>();
  #sweep: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(ctx: NatsContext) {
    this.#ctx = ctx;
  }

  static #key(jsStream: string, filter: string, next: number): string {
    return `${jsStream}\u0000${filter}\u0000${next}`;
  }

  /** Takes the idle reader positioned at `next`, if any. */
  take(jsStream: string, filter: string, next: number): ShardReader | undefined {
    const k = ShardReaders.#key(jsStream, filter, next);
    const r = this.#idle.get(k);
    if (r) this.#idle.delete(k);
    return r;
  }

  /** Creates a reader (a new consumer) starting at `next`. */
  async open(jsStream: string, filter: string, next: number, headersOnly: boolean): Promise<ShardReader> {
    if (this.#closed) throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', 'the nats backend is closed');
    const consumer = await createEphemeral(this.#ctx, jsStream, {
      kind: 'read',
      filter,
      start: { seq: next },
      headersOnly,
      idleMs: CONSUMER_INACTIVE_MS,
    });
    return new ShardReader(jsStream, filter, consumer, Math.max(1, next));
  }

  /** Returns a reader to the cache under the position it reads next. */
  put(r: ShardReader): void {
    if (this.#closed) return void this.discard(r);
    const k = ShardReaders.#key(r.jsStream, r.filter, r.next);
    if (this.#idle.has(k)) return void this.discard(r);
    this.#idle.set(k, r);
    if (this.#idle.size > MAX_READERS) {
      // Map order is insertion order: the first entry is the one put back longest ago.
      const [oldest] = this.#idle;
      if (oldest) {
        this.#idle.delete(oldest[0]);
        void this.discard(oldest[1]);
      }
    }
    this.#sweep ??= setInterval(() => this.#evictIdle(), READER_IDLE_MS / 3).unref();
  }

  /** Deletes a reader's consumer (best effort). */
  async discard(r: ShardReader): Promise<void> {
    await deleteConsumer(this.#ctx, r.jsStream, r.consumer);
  }

  /** Closes every idle reader of a stream (it was deleted). */
  dropStream(jsStream: string): void {
    for (const [k, r] of this.#idle) if (r.jsStream === jsStream) this.#idle.delete(k);
  }

  /** Number of idle readers (for tests). */
  get size(): number {
    return this.#idle.size;
  }

  #evictIdle(): void {
    const cutoff = Date.now() - READER_IDLE_MS;
    for (const [k, r] of this.#idle) {
      if (r.lastUsed < cutoff) {
        this.#idle.delete(k);
        void this.discard(r);
      }
    }
    if (this.#idle.size === 0 && this.#sweep) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  /** Deletes every idle reader; later `put`s discard. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = undefined;
    const all = [...this.#idle.values()];
    this.#idle.clear();
    await Promise.all(all.map((r) => this.discard(r)));
  }
}
