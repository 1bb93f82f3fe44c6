/**
 * Shared-memory slots: ONE SharedArrayBuffer of `slots × slotBytes`, each slot carrying one batch
 * message and, after it, that batch's results message.
 *
 * Slot layout: a 64-byte header of Int32 words, then the batch message, then (8-aligned) the results.
 *
 * | word | meaning |
 * | --- | --- |
 * | 0 `STATE` | `ticket << 4 \| phase`, changed with Atomics: the hand-over protocol below |
 * | 1 `BATCH_LEN` | bytes of the batch message (at {@link SLOT_HEADER_BYTES}) |
 * | 2 `RESULTS_OFF` | offset of the results message from the slot start |
 * | 3 `RESULTS_LEN` | bytes of the results message |
 * | 4 `STARTED` | {@link unclaimed}`(t)` when assigned; the thread claims the ticket by compareExchange to `t` |
 * | 5 `STARTED_MS` | when it started, ms after the pool's epoch ({@link STARTED_MS_UNSET} until written, after `STARTED`) |
 * | 6 `RUNNER` | id of the ring runner that claimed it (-1 until written, before `STARTED_MS`) |
 *
 * Protocol (why a ticket: a handler thread that timed out is terminated asynchronously and may still
 * be running for a moment; it must never write into a slot that already serves the next batch):
 * main writes the batch and stores `ASSIGNED|t`; the handler thread claims the slot for its results
 * with compareExchange `ASSIGNED|t → WRITING|t` (failing when main abandoned the batch or the slot
 * moved on), writes, then stores `DONE|t`. Main gives up on a batch with compareExchange
 * `ASSIGNED|t → ABANDONED|t`; when the thread is mid-write it waits for `DONE|t` before reusing the slot.
 *
 * Who runs a ticket is decided on `STARTED`: a thread claims it with compareExchange
 * `unclaimed(t) → t` before running the handler; main gives up on a batch not yet started with
 * compareExchange `unclaimed(t) → GAVE_UP`. Exactly one of the two wins, so a batch main gave up on is
 * never run, and a stale queue entry (same slot, older ticket) never matches.
 */
import { BindingError, SluiceError } from '../../bindings/errors.ts';

/** Bytes of the per-slot header. */
export const SLOT_HEADER_BYTES = 64;
/** Header word indexes (Int32). */
export const SlotWord = { state: 0, batchLen: 1, resultsOff: 2, resultsLen: 3, started: 4, startedMs: 5, runner: 6 } as const;
/** `STARTED` of an assigned ticket nobody claimed yet (negative: never a ticket). */
export function unclaimed(ticket: number): number {
  return -1 - (ticket & 0xffffff);
}
/** `STARTED` once main gave up on a ticket before any thread claimed it. */
export const STARTED_GAVE_UP = -0x7fffffff;
/** `STARTED_MS` before the claiming thread wrote it. */
export const STARTED_MS_UNSET = -0x80000000;
/** Phases of a slot's state word. */
export const SlotPhase = { free: 0, assigned: 1, writing: 2, done: 3, abandoned: 4 } as const;
/** One of {@link SlotPhase}. */
export type SlotPhase = (typeof SlotPhase)[keyof typeof SlotPhase];

/** The state word of a ticket in a phase (tickets wrap at 2^24). */
export function stateWord(ticket: number, phase: SlotPhase): number {
  return ((ticket & 0xffffff) << 4) | phase;
}

/** Options of {@link SlotPool}. */
export interface SlotPoolOptions {
  /** Number of slots: the most batches in flight at once. @default 2 */
  slots?: number;
  /** Bytes of one slot, header, batch and results included; a multiple of 8, at least 4096. @default 8 MiB */
  slotBytes?: number;
  /** Longest wait of {@link SlotPool.acquire} for a free slot; then it rejects with SLUICE_TIMEOUT. @default 60000 */
  acquireTimeoutMs?: number;
}

/** Options of {@link SlotPool.acquire}. */
export interface AcquireOptions {
  /** Gives up waiting; rejects with SLUICE_ABORTED. @default undefined */
  signal?: AbortSignal;
  /** Overrides the pool's `acquireTimeoutMs` for this call. @default the pool's */
  timeoutMs?: number;
}

/** How full the pool is. */
export interface SlotOccupancy {
  inUse: number;
  slots: number;
  /** Callers waiting in {@link SlotPool.acquire}. */
  waiting: number;
}

interface Waiter {
  resolve(slot: number): void;
  reject(err: Error): void;
}

/** Header view and byte view of one slot of a slot buffer (usable from any thread). */
export function slotViews(buffer: SharedArrayBuffer, slotBytes: number, slot: number): { header: Int32Array; bytes: Uint8Array } {
  const at = slot * slotBytes;
  return { header: new Int32Array(buffer, at, SLOT_HEADER_BYTES / 4), bytes: new Uint8Array(buffer, at, slotBytes) };
}

/**
 * Bytes kept free after the batch for its results: enough for a results message in which no record
 * declared anything (32 bytes per record) plus a batch-level error, so the handler's verdict always
 * fits even when its effects do not.
 */
export function resultsReserve(records: number): number {
  return 4096 + 32 * records;
}

const MiB = 1024 * 1024;

/** A fixed set of slots over one SharedArrayBuffer, handed out to one batch at a time. */
export class SlotPool {
  readonly buffer: SharedArrayBuffer;
  readonly slots: number;
  readonly slotBytes: number;
  readonly #acquireTimeoutMs: number;
  readonly #free: number[] = [];
  readonly #busy: Uint8Array;
  readonly #waiters: Waiter[] = [];
  readonly #headers: Int32Array[] = [];
  readonly #bytes: Uint8Array[] = [];
  #ticket = 0;

  constructor(options: SlotPoolOptions = {}) {
    const slots = options.slots ?? 2;
    const slotBytes = options.slotBytes ?? 8 * MiB;
    const acquireTimeoutMs = options.acquireTimeoutMs ?? 60_000;
    if (!Number.isInteger(slots) || slots < 1 || slots > 4096) throw new BindingError('SLUICE_INVALID_ARGUMENT', `slots must be an integer in 1..4096, not ${String(slots)}`);
    if (!Number.isInteger(slotBytes) || slotBytes < 4096 || slotBytes % 8 !== 0 || slotBytes > 1024 * MiB)
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `slotBytes must be a multiple of 8 in 4096..1 GiB, not ${String(slotBytes)}`);
    if (!(acquireTimeoutMs > 0)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `acquireTimeoutMs must be positive, not ${String(acquireTimeoutMs)}`);
    this.slots = slots;
    this.slotBytes = slotBytes;
    this.#acquireTimeoutMs = acquireTimeoutMs;
    this.buffer = new SharedArrayBuffer(slots * slotBytes);
    this.#busy = new Uint8Array(slots);
    // Lowest index first: the same few slots stay warm in cache when load is light.
    for (let i = slots - 1; i >= 0; i--) {
      this.#free.push(i);
      const v = slotViews(this.buffer, slotBytes, i);
      this.#headers.push(v.header);
      this.#bytes.push(v.bytes);
    }
    this.#headers.reverse();
    this.#bytes.reverse();
  }

  get occupancy(): SlotOccupancy {
    return { inUse: this.slots - this.#free.length, slots: this.slots, waiting: this.#waiters.length };
  }

  /** A free slot's index; waits (FIFO) while every slot is busy, at most `timeoutMs`, cancellable. */
  acquire(options: AcquireOptions = {}): Promise<number> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(aborted(signal));
    const i = this.#free.pop();
    if (i !== undefined) {
      this.#busy[i] = 1;
      return Promise.resolve(i);
    }
    const timeoutMs = options.timeoutMs ?? this.#acquireTimeoutMs;
    return new Promise<number>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const k = this.#waiters.indexOf(w);
        if (k >= 0) this.#waiters.splice(k, 1);
      };
      const w: Waiter = {
        resolve: (slot) => {
          done();
          resolve(slot);
        },
        reject: (err) => {
          done();
          reject(err);
        },
      };
      const onAbort = (): void => w.reject(aborted(signal as AbortSignal));
      const timer = setTimeout(
        () => w.reject(new BindingError('SLUICE_TIMEOUT', `no shared-memory slot became free within ${timeoutMs} ms (all ${this.slots} busy)`)),
        timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(w);
    });
  }

  /** Returns slot `i` to the pool (or straight to the longest waiter). */
  release(i: number): void {
    if (this.#busy[i] !== 1) throw new BindingError('SLUICE_INVALID_ARGUMENT', `slot ${i} is not in use`);
    Atomics.store(this.header(i), SlotWord.state, SlotPhase.free);
    const w = this.#waiters[0];
    if (w !== undefined) {
      w.resolve(i); // stays busy, now the waiter's
      return;
    }
    this.#busy[i] = 0;
    this.#free.push(i);
  }

  /** Rejects every waiting acquire (used when the owner shuts down). */
  rejectWaiters(err: Error): void {
    for (const w of [...this.#waiters]) w.reject(err);
  }

  header(i: number): Int32Array {
    return this.#headers[i] as Int32Array;
  }

  /** The whole slot's bytes (header included). */
  bytes(i: number): Uint8Array {
    return this.#bytes[i] as Uint8Array;
  }

  /** Publishes a batch of `batchLen` bytes written at {@link SLOT_HEADER_BYTES}; returns its ticket. */
  assign(i: number, batchLen: number): number {
    const h = this.header(i);
    const ticket = (this.#ticket = (this.#ticket + 1) & 0xffffff);
    h[SlotWord.batchLen] = batchLen;
    h[SlotWord.resultsOff] = 0;
    h[SlotWord.resultsLen] = 0;
    h[SlotWord.runner] = -1;
    h[SlotWord.startedMs] = STARTED_MS_UNSET;
    h[SlotWord.started] = unclaimed(ticket);
    Atomics.store(h, SlotWord.state, stateWord(ticket, SlotPhase.assigned));
    return ticket;
  }

  /** The results message of a finished ticket, or undefined when the thread did not finish writing it. */
  results(i: number, ticket: number): Uint8Array | undefined {
    const h = this.header(i);
    if (Atomics.load(h, SlotWord.state) !== stateWord(ticket, SlotPhase.done)) return undefined;
    const off = h[SlotWord.resultsOff] as number;
    return this.bytes(i).subarray(off, off + (h[SlotWord.resultsLen] as number));
  }

  /**
   * Takes a ticket back from a handler thread that will not deliver (timed out, crashed, aborted),
   * then releases the slot. Resolves once the slot is reusable: at once, unless the thread was
   * mid-way writing results, in which case it waits for that write to end (at most `maxWaitMs`; by
   * then the thread has been terminated).
   */
  async abandon(i: number, ticket: number, maxWaitMs = 1000): Promise<void> {
    const h = this.header(i);
    const prev = Atomics.compareExchange(h, SlotWord.state, stateWord(ticket, SlotPhase.assigned), stateWord(ticket, SlotPhase.abandoned));
    const writing = stateWord(ticket, SlotPhase.writing);
    // Rare (the thread was past its handler when it was given up on): poll briefly rather than block.
    for (let waited = 0; prev === writing && Atomics.load(h, SlotWord.state) === writing && waited < maxWaitMs; waited += 2) {
      await new Promise((r) => setTimeout(r, 2));
    }
    this.release(i);
  }
}

function aborted(signal: AbortSignal): SluiceError {
  return new BindingError('SLUICE_ABORTED', 'waiting for a shared-memory slot was aborted', { cause: signal.reason });
}
