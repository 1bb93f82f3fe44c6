/**
 * Handler threads behind one call: `await pool.run(batch)` writes the batch into a free shared-memory
 * slot, lets a piscina thread handle it in place, and reads the effects back from the same slot.
 * Nothing but a slot number and a status crosses postMessage.
 *
 * Failure model: a handler past `timeoutMs` rejects the run with SLUICE_HANDLER_TIMEOUT and its thread
 * is terminated and replaced (piscina destroys the thread of an aborted running task); a thread that
 * dies or a function that fails to load rejects with SLUICE_HANDLER_FAILED; a handler that throws is
 * NOT a rejection — it comes back as `BatchEffects.error`. The slot is released on every path.
 */
import { fileURLToPath } from 'node:url';
import { isAbsolute } from 'node:path';
import { Piscina } from 'piscina';
import { BindingError, SluiceError } from '../../bindings/errors.ts';
import type { BatchEffects, RecordEffects } from '../../functions/effects.ts';
import type { BackendSpec } from '../backend-spec.ts';
import type { BatchInput, BindingSpec } from '../batch-types.ts';
import { writeBatch } from '../handoff/batch-writer.ts';
import { readResults } from '../handoff/results-reader.ts';
import { resultsReserve, SLOT_HEADER_BYTES, SlotPool } from '../handoff/slots.ts';
import { TaskStatus, type HandlerTask, type HandlerThreadData } from './handler-thread.ts';

/** pino levels accepted by `logLevel`. */
export const LogLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** One of {@link LogLevels}. */
export type LogLevel = (typeof LogLevels)[number];

/** Options of {@link HandlerPool.open}. */
export interface HandlerPoolOptions {
  /** Absolute path of the function module (`export default defineFunction({...})`). */
  module: string;
  /** Function name (in logs and `ctx.function`). */
  function: string;
  /** Handler threads (fixed: min = max). @default 1 */
  threads?: number;
  /** Shared-memory slots, i.e. batches in flight at once. @default threads * 2 */
  slots?: number;
  /** Bytes of one slot (header, batch and results). @default 8 MiB */
  slotBytes?: number;
  /** A handler running longer than this is terminated with its thread (SLUICE_HANDLER_TIMEOUT). @default 30000 */
  timeoutMs?: number;
  /** The backend the threads open for bindings and for bodies not prefetched. */
  backend: BackendSpec;
  /** The bindings the function declares (`ctx.data`). @default [] */
  bindings?: BindingSpec[];
  /**
   * pino level of the handler threads' loggers, one of {@link LogLevels} (typed `string` so worker
   * options pass through; checked at open). @default 'info'
   */
  logLevel?: LogLevel | (string & {});
  /**
   * Batches one thread may hold at once. More than 1 only helps handlers that wait on I/O; measured
   * with CPU-bound handlers it does not raise throughput (test/bench/handoff.ts), and a timeout then
   * also fails the other batches of the terminated thread. @default 1
   */
  concurrentTasksPerThread?: number;
}

/** {@link HandlerPoolOptions} with every default applied; frozen. */
export type ResolvedHandlerPoolOptions = Readonly<Required<HandlerPoolOptions>>;

const MiB = 1024 * 1024;

function invalid(path: string, what: string, got: unknown): BindingError {
  return new BindingError('SLUICE_INVALID_ARGUMENT', `handlerPool.${path} must be ${what}, not ${JSON.stringify(got)}`);
}

function positiveInt(v: unknown, path: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw invalid(path, `an integer in 1..${max}`, v);
  return v;
}

/** Validates options at the boundary (errors name the option) and applies defaults. */
export function resolveHandlerPoolOptions(o: HandlerPoolOptions): ResolvedHandlerPoolOptions {
  if (typeof o.module !== 'string' || !isAbsolute(o.module)) throw invalid('module', 'an absolute path', o.module);
  if (typeof o.function !== 'string' || o.function === '') throw invalid('function', 'a non-empty string', o.function);
  const threads = positiveInt(o.threads ?? 1, 'threads', 256);
  const slots = positiveInt(o.slots ?? threads * 2, 'slots', 4096);
  const slotBytes = o.slotBytes ?? 8 * MiB;
  if (!Number.isInteger(slotBytes) || slotBytes % 8 !== 0 || slotBytes < 16 * 1024 || slotBytes > 1024 * MiB)
    throw invalid('slotBytes', 'a multiple of 8 between 16 KiB and 1 GiB', slotBytes);
  const timeoutMs = o.timeoutMs ?? 30_000;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || timeoutMs > 2 ** 31 - 1) throw invalid('timeoutMs', 'a positive number of ms', timeoutMs);
  const backend = o.backend;
  if (typeof backend !== 'object' || backend === null || (backend.kind !== 'local' && backend.kind !== 'nats')) throw invalid('backend', "{ kind: 'local' | 'nats', ... }", backend);
  const bindings = o.bindings ?? [];
  if (!Array.isArray(bindings)) throw invalid('bindings', 'an array', bindings);
  bindings.forEach((b, i) => {
    if (typeof b?.name !== 'string' || !/^[A-Za-z_$][\w$]*$/.test(b.name)) throw invalid(`bindings[${i}].name`, 'an identifier', b?.name);
    if (!['object', 'kv', 'stream', 'file'].includes(b.kind)) throw invalid(`bindings[${i}].kind`, "'object', 'kv', 'stream' or 'file'", b.kind);
    if (typeof b.resource !== 'string' || b.resource === '') throw invalid(`bindings[${i}].resource`, 'a non-empty string', b.resource);
    if (b.access !== 'read' && b.access !== 'read-write') throw invalid(`bindings[${i}].access`, "'read' or 'read-write'", b.access);
  });
  const logLevel = o.logLevel ?? 'info';
  if (!(LogLevels as readonly string[]).includes(logLevel)) throw invalid('logLevel', LogLevels.join(' | '), logLevel);
  const concurrentTasksPerThread = positiveInt(o.concurrentTasksPerThread ?? 1, 'concurrentTasksPerThread', 64);
  return Object.freeze({ module: o.module, function: o.function, threads, slots, slotBytes, timeoutMs, backend, bindings: bindings.map((b) => ({ ...b })), logLevel, concurrentTasksPerThread });
}

/** How busy the pool is. */
export interface PoolOccupancy {
  /** Slots holding a batch. */
  inUse: number;
  slots: number;
}

/** Options of {@link HandlerPool.run}. */
export interface RunOptions {
  /** Cancels the run (waiting for a slot, or running: its thread is then replaced); SLUICE_ABORTED. @default undefined */
  signal?: AbortSignal;
}

/** Options of {@link HandlerPool.close}. */
export interface CloseOptions {
  /** How long in-flight batches may take to finish before their threads are terminated. @default 30000 */
  graceMs?: number;
}

type PoolState = 'open' | 'closing' | 'closed';

const BOOTSTRAP = fileURLToPath(new URL('./bootstrap.mjs', import.meta.url));

/** A fixed set of handler threads fed through shared-memory slots. */
export class HandlerPool {
  readonly options: ResolvedHandlerPoolOptions;
  readonly #slots: SlotPool;
  readonly #piscina: Piscina<HandlerTask, number>;
  readonly #inflight = new Set<Promise<unknown>>();
  #state: PoolState = 'open';

  private constructor(options: ResolvedHandlerPoolOptions) {
    this.options = options;
    this.#slots = new SlotPool({ slots: options.slots, slotBytes: options.slotBytes, acquireTimeoutMs: 2 ** 31 - 1 });
    const workerData: HandlerThreadData = {
      buffer: this.#slots.buffer,
      slotBytes: options.slotBytes,
      module: options.module,
      function: options.function,
      backend: options.backend,
      bindings: options.bindings,
      logLevel: options.logLevel,
    };
    this.#piscina = new Piscina<HandlerTask, number>({
      filename: BOOTSTRAP,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      concurrentTasksPerWorker: options.concurrentTasksPerThread,
      // In-flight tasks never exceed the slots, so the queue is bounded by them.
      maxQueue: options.slots,
      // 'async': an idle thread waits with Atomics.waitAsync, so its event loop keeps running (a NATS
      // connection in the thread keeps answering pings); 'sync' would block it between batches.
      atomics: 'async',
      workerData,
    });
    // A thread dying between tasks is reported here (piscina replaces it); during a task, the task rejects.
    this.#piscina.on('error', () => {});
  }

  /** Starts the threads (each loads the function and runs `init` before its first batch). */
  static async open(options: HandlerPoolOptions): Promise<HandlerPool> {
    return new HandlerPool(resolveHandlerPoolOptions(options));
  }

  get occupancy(): PoolOccupancy {
    const o = this.#slots.occupancy;
    return { inUse: o.inUse, slots: o.slots };
  }

  /** Handles one batch on a handler thread; resolves with its effects (a handler's throw is `error`). */
  run(batch: BatchInput, opts: RunOptions = {}): Promise<BatchEffects> {
    if (this.#state !== 'open') return Promise.reject(new BindingError('SLUICE_ABORTED', `handler pool of '${this.options.function}' is ${this.#state}`));
    const p = this.#run(batch, opts.signal);
    this.#inflight.add(p);
    const forget = (): void => void this.#inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  async #run(batch: BatchInput, signal: AbortSignal | undefined): Promise<BatchEffects> {
    const slots = this.#slots;
    const slot = await slots.acquire(signal === undefined ? {} : { signal });
    let ticket = -1;
    let delivered = false;
    try {
      const region = slots.bytes(slot).subarray(SLOT_HEADER_BYTES, slots.slotBytes - resultsReserve(batch.records.length));
      ticket = slots.assign(slot, writeBatch(region, batch));
      const status = await this.#dispatch(slot, ticket, batch, signal);
      const bytes = status === TaskStatus.ok ? slots.results(slot, ticket) : undefined;
      if (bytes === undefined) throw new BindingError('SLUICE_HANDLER_FAILED', `handler thread of '${this.options.function}' returned no results for batch '${batch.batchId}'`);
      const effects = readResults(bytes);
      delivered = true;
      // A batch-level failure written without per-record entries (results overflow): one empty entry per record.
      if (effects.records.length !== batch.records.length) effects.records = batch.records.map((): RecordEffects => ({ set: {}, remove: [], updates: [] }));
      return effects;
    } finally {
      if (delivered || ticket < 0) slots.release(slot);
      else void slots.abandon(slot, ticket);
    }
  }

  /** Runs the task with the timeout; maps piscina's failures to sluice's codes. */
  async #dispatch(slot: number, ticket: number, batch: BatchInput, signal: AbortSignal | undefined): Promise<number> {
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, this.options.timeoutMs);
    const onAbort = (): void => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.#piscina.run({ slot, ticket }, { signal: ac.signal });
    } catch (err) {
      const where = `batch '${batch.batchId}' of '${this.options.function}'`;
      if (timedOut)
        throw new BindingError('SLUICE_HANDLER_TIMEOUT', `${where} ran past ${this.options.timeoutMs} ms; its handler thread was terminated and replaced`, {
          details: { timeoutMs: this.options.timeoutMs },
        });
      if (signal?.aborted) throw new BindingError('SLUICE_ABORTED', `${where} was aborted; its handler thread was terminated and replaced`, { cause: signal.reason });
      throw new BindingError('SLUICE_HANDLER_FAILED', `${where}: handler thread failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Stops taking batches, lets in-flight ones finish for up to `graceMs`, then terminates the threads
   * (in-flight batches still running then reject with SLUICE_HANDLER_FAILED).
   */
  async close(options: CloseOptions = {}): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    const graceMs = options.graceMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
    const drained = Promise.allSettled([...this.#inflight]).then(() => 'drained' as const);
    const how = await Promise.race([drained, grace]);
    clearTimeout(timer);
    if (how === 'timeout') {
      this.#slots.rejectWaiters(new SluiceError('SLUICE_ABORTED', `handler pool of '${this.options.function}' closed`));
      await this.#piscina.destroy();
    } else await this.#piscina.close();
    this.#state = 'closed';
  }
}
