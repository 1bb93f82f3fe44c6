/**
 * Handler threads behind one call: `await pool.run(batch)` writes the batch into a free shared-memory
 * slot, lets a piscina thread handle it in place, and reads the effects back from the same slot.
 * Nothing but slot numbers and statuses cross postMessage.
 *
 * Dispatch (`dispatch`):
 * - `'ring'` (default, runtime/threads/ring-dispatch.ts): each thread runs ONE long-lived piscina task,
 *   a loop fed through a SharedArrayBuffer ring; no message crosses per batch.
 * - `'task'`: at most `threads × concurrentTasksPerThread` piscina tasks run at once; batches written
 *   while every place is taken wait in the pool's queue (bounded by the slots), and a freed place
 *   takes all of them (shared out evenly among free places) as ONE task, handled one after the other —
 *   under load this spreads piscina's per-task cost (≈20 µs of main-thread CPU here) over several batches.
 *
 * Failure model: a handler past `timeoutMs` rejects the run with SLUICE_HANDLER_TIMEOUT and its thread
 * is terminated and replaced (piscina destroys the thread of an aborted running task); a thread that
 * dies or a function that fails to load rejects with SLUICE_HANDLER_FAILED; a handler that throws is
 * NOT a rejection — it comes back as `BatchEffects.error`. The slot is released on every path.
 * `timeoutMs` counts from the moment the thread starts the handler (written into the slot header),
 * not from dispatch; a batch that shared its task (ring: its thread) with one that timed out loses its
 * thread too and rejects with SLUICE_HANDLER_FAILED, unless it had already finished (then its results
 * are used).
 */
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { isAbsolute } from 'node:path';
import { Piscina } from 'piscina';
import { BindingError } from '../../bindings/errors.ts';
import { makeObjectFilesDir } from '../../bindings/file/index.ts';
import type { BatchEffects, RecordEffects } from '../../functions/effects.ts';
import type { BackendSpec } from '../backend-spec.ts';
import type { BatchInput, BindingSpec } from '../batch-types.ts';
import { writeBatch } from '../handoff/batch-writer.ts';
import { readResults } from '../handoff/results-reader.ts';
import { resultsReserve, SLOT_HEADER_BYTES, SlotPool, SlotWord } from '../handoff/slots.ts';
import { TaskStatus, type HandlerTask, type HandlerThreadData } from './handler-thread.ts';
import { RingDispatch, type DispatchUnit, type Pending } from './ring-dispatch.ts';

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
  /** The function's resolved secrets (`ctx.secrets`), passed to the threads in `workerData`, never logged. @default {} */
  secrets?: Readonly<Record<string, string>>;
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
  /**
   * How batches reach the threads: `'ring'`, one long-lived loop per thread fed through a shared
   * ring (no message per batch), or `'task'`, one piscina task per batch (or per group of batches
   * queued together). Same behaviour and failure model; `'ring'` measured faster
   * (test/bench/handoff.ts). @default 'ring'
   */
  dispatch?: 'ring' | 'task';
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
  const secrets = o.secrets ?? {};
  if (typeof secrets !== 'object' || secrets === null || Object.values(secrets).some((v) => typeof v !== 'string')) throw invalid('secrets', 'an object of strings', '(not shown)');
  const logLevel = o.logLevel ?? 'info';
  if (!(LogLevels as readonly string[]).includes(logLevel)) throw invalid('logLevel', LogLevels.join(' | '), logLevel);
  const concurrentTasksPerThread = positiveInt(o.concurrentTasksPerThread ?? 1, 'concurrentTasksPerThread', 64);
  const dispatch = o.dispatch ?? 'ring';
  if (dispatch !== 'ring' && dispatch !== 'task') throw invalid('dispatch', "'ring' or 'task'", dispatch);
  return Object.freeze({ module: o.module, function: o.function, threads, slots, slotBytes, timeoutMs, backend, bindings: bindings.map((b) => ({ ...b })), secrets: Object.freeze({ ...secrets }), logLevel, concurrentTasksPerThread, dispatch });
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

/** One piscina task: the batches ready when a thread freed up, handled one after the other. */
interface Task extends DispatchUnit {
  batches: Pending[];
}

/** A fixed set of handler threads fed through shared-memory slots. */
export class HandlerPool {
  readonly options: ResolvedHandlerPoolOptions;
  readonly #slots: SlotPool;
  readonly #piscina: Piscina<HandlerTask, number[]>;
  readonly #inflight = new Set<Promise<unknown>>();
  /** Batches waiting for a thread (at most `slots`: each holds one). */
  #queue: Pending[] = [];
  readonly #tasks = new Set<Task>();
  /** piscina tasks allowed at once: one per thread and concurrent task. */
  readonly #capacity: number;
  readonly #epochMs = Date.now();
  /** How long a batch may wait for its handler to start (queued behind others, thread starting). */
  readonly #startBoundMs: number;
  readonly #sweeper: NodeJS.Timeout;
  #state: PoolState = 'open';
  /** Dispatch 'ring' (undefined with 'task'). */
  readonly #ring: RingDispatch | undefined;

  readonly #filesDir: string;

  private constructor(options: ResolvedHandlerPoolOptions, filesDir: string) {
    this.options = options;
    this.#filesDir = filesDir;
    this.#slots = new SlotPool({ slots: options.slots, slotBytes: options.slotBytes, acquireTimeoutMs: 2 ** 31 - 1 });
    this.#capacity = options.threads * options.concurrentTasksPerThread;
    const ring = options.dispatch === 'ring';
    // Before the ring: its host reads it.
    this.#startBoundMs = options.timeoutMs * Math.ceil(options.slots / this.#capacity) + 60_000;
    this.#ring = ring ? this.#ringDispatch(options) : undefined;
    const workerData: HandlerThreadData = {
      buffer: this.#slots.buffer,
      slotBytes: options.slotBytes,
      module: options.module,
      function: options.function,
      backend: options.backend,
      bindings: options.bindings,
      secrets: { ...options.secrets },
      logLevel: options.logLevel,
      epochMs: this.#epochMs,
      timeoutMs: options.timeoutMs,
      ring: this.#ring?.buffer,
      ringMask: this.#ring?.mask ?? 0,
      filesDir,
    };
    this.#piscina = new Piscina<HandlerTask, number[]>({
      filename: BOOTSTRAP,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      // Ring: one loop per thread, which takes up to concurrentTasksPerThread batches itself.
      concurrentTasksPerWorker: ring ? 1 : options.concurrentTasksPerThread,
      // The pool queues batches itself and hands piscina at most `capacity` tasks (plus the warm-up).
      maxQueue: this.#capacity + options.threads,
      // 'async': an idle thread waits with Atomics.waitAsync, so its event loop keeps running (a NATS
      // connection in the thread keeps answering pings); 'sync' would block it between batches
      // (and measured slower here: test/bench/handoff.ts).
      atomics: 'async',
      workerData,
    });
    // A thread dying between tasks is reported here (piscina replaces it); during a task, the task rejects.
    this.#piscina.on('error', () => {});
    // One coarse timer for every batch instead of one per batch: timeouts fire at most ~10% late.
    const every = Math.min(1000, Math.max(5, Math.floor(options.timeoutMs / 10)));
    this.#sweeper = setInterval(() => this.#sweep(), every).unref();
  }

  /** The ring dispatch, on this pool's slots and threads. */
  #ringDispatch(options: ResolvedHandlerPoolOptions): RingDispatch {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- piscina is made after the ring (its workerData holds the ring)
    const pool = this;
    return new RingDispatch(options.slots, {
      slots: this.#slots,
      get piscina() {
        return pool.#piscina;
      },
      concurrentTasksPerThread: options.concurrentTasksPerThread,
      timeoutMs: options.timeoutMs,
      // A batch waits at most for every batch ahead of it, each up to its timeout.
      startBoundMs: this.#startBoundMs,
      closed: () => this.#state === 'closed',
      settle: (b, status, err) => this.#settle(b, status, err),
      giveUp: (b, why) => this.#giveUp(b, why),
    });
  }

  /**
   * Starts the threads and waits until the function has loaded (and run `init`) on them, so a module
   * that does not load fails here with SLUICE_HANDLER_FAILED rather than on the first batch.
   */
  static async open(options: HandlerPoolOptions): Promise<HandlerPool> {
    const resolved = resolveHandlerPoolOptions(options);
    const pool = new HandlerPool(resolved, await makeObjectFilesDir());
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), pool.#startBoundMs);
    try {
      await Promise.all(Array.from({ length: pool.options.threads }, () => pool.#piscina.run({ slots: [], tickets: [] }, { signal: ac.signal })));
    } catch (err) {
      await pool.close({ graceMs: 0 });
      const what = `function '${pool.options.function}' (${pool.options.module})`;
      if (ac.signal.aborted) throw new BindingError('SLUICE_HANDLER_TIMEOUT', `${what} did not load and init within ${pool.#startBoundMs} ms`);
      // What crosses the thread boundary may be a clone without Error's prototype: read its message.
      const m = err instanceof Error ? err.message : typeof (err as { message?: unknown })?.message === 'string' ? (err as { message: string }).message : JSON.stringify(err) ?? String(err);
      throw new BindingError('SLUICE_HANDLER_FAILED', `${what} failed to load: ${m}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    pool.#ring?.startRunners(pool.options.threads);
    return pool;
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
      const status = await this.#submit(slot, ticket, batch.batchId, signal);
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

  /** Queues a published batch for a thread; resolves with the thread's status for it. */
  #submit(slot: number, ticket: number, batchId: string, signal: AbortSignal | undefined): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const p: Pending = { slot, ticket, batchId, signal, onAbort: undefined, sinceMs: Date.now(), task: undefined, gaveUp: undefined, resolve, reject };
      if (signal !== undefined) {
        p.onAbort = () => this.#giveUp(p, 'aborted');
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      if (this.#ring !== undefined) return this.#ring.push(p);
      this.#queue.push(p);
      this.#pump();
    });
  }

  /** Hands queued batches to free threads, sharing them out evenly among the free task places. */
  #pump(): void {
    let free = this.#capacity - this.#tasks.size;
    while (free > 0 && this.#queue.length > 0) {
      const take = Math.ceil(this.#queue.length / free);
      this.#dispatch(this.#queue.splice(0, take));
      free--;
    }
  }

  #dispatch(batches: Pending[]): void {
    const task: Task = { ac: new AbortController(), batches, culprit: undefined };
    const now = Date.now();
    for (const b of batches) {
      b.task = task;
      b.sinceMs = now;
    }
    this.#tasks.add(task);
    this.#piscina.run({ slots: batches.map((b) => b.slot), tickets: batches.map((b) => b.ticket) }, { signal: task.ac.signal }).then(
      (statuses) => {
        this.#endTask(task);
        batches.forEach((b, i) => this.#settle(b, statuses[i] ?? TaskStatus.abandoned, undefined));
      },
      (err: unknown) => {
        this.#endTask(task);
        for (const b of batches) this.#settle(b, -1, err);
      },
    );
  }

  #endTask(task: Task): void {
    this.#tasks.delete(task);
    this.#pump();
  }

  #settle(b: Pending, status: number, err: unknown): void {
    if (this.#ring !== undefined && !this.#ring.forget(b)) return; // settled already
    if (b.onAbort !== undefined) b.signal?.removeEventListener('abort', b.onAbort);
    if (b.gaveUp === undefined) {
      if (err === undefined) return b.resolve(status);
      // The thread died after finishing this batch (e.g. a later batch of its task timed out): its
      // results are complete in the slot, so it still succeeds.
      if (this.#slots.results(b.slot, b.ticket) !== undefined) return b.resolve(TaskStatus.ok);
    }
    b.reject(this.#failure(b, err));
  }

  /** The error a batch's run rejects with. */
  #failure(b: Pending, err: unknown): BindingError {
    const where = `batch '${b.batchId}' of '${this.options.function}'`;
    const replaced = 'its handler thread was terminated and replaced';
    switch (b.gaveUp) {
      case 'running':
        return new BindingError('SLUICE_HANDLER_TIMEOUT', `${where} ran past ${this.options.timeoutMs} ms; ${replaced}`, { details: { timeoutMs: this.options.timeoutMs } });
      case 'not-started':
        return new BindingError('SLUICE_HANDLER_TIMEOUT', `${where} did not start within ${this.#startBoundMs} ms`, { details: { timeoutMs: this.#startBoundMs } });
      case 'aborted':
        return new BindingError('SLUICE_ABORTED', `${where} was aborted${b.task === undefined ? '' : `; ${replaced}`}`, { cause: b.signal?.reason });
    }
    const culprit = b.task?.culprit;
    if (culprit !== undefined && culprit !== b)
      return new BindingError('SLUICE_HANDLER_FAILED', `${where} shared a handler thread with batch '${culprit.batchId}', whose ${culprit.gaveUp === 'aborted' ? 'abort' : 'timeout'} terminated it`);
    return new BindingError('SLUICE_HANDLER_FAILED', `${where}: handler thread failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }

  /**
   * Gives up on a batch: still queued, it leaves the queue; dispatched, its task is aborted, which
   * makes piscina terminate the thread (and start a replacement).
   */
  #giveUp(b: Pending, why: NonNullable<Pending['gaveUp']>): void {
    if (b.gaveUp !== undefined) return;
    b.gaveUp = why;
    if (this.#ring !== undefined) {
      if (this.#ring.unstarted(b)) this.#settle(b, -1, undefined);
      else this.#ring.kill(b);
      return;
    }
    const task = b.task;
    if (task === undefined) {
      this.#queue = this.#queue.filter((q) => q !== b);
      this.#settle(b, -1, undefined);
      return;
    }
    task.culprit ??= b;
    task.ac.abort();
  }

  /** Gives up on batches whose handler ran past `timeoutMs`, or did not start within the start bound. */
  #sweep(): void {
    const now = Date.now();
    if (this.#ring !== undefined) return this.#ring.sweep(now, this.#epochMs);
    for (const b of this.#queue) if (now - b.sinceMs > this.#startBoundMs) this.#giveUp(b, 'not-started');
    for (const task of this.#tasks) {
      for (const b of task.batches) {
        if (b.gaveUp !== undefined) continue;
        const h = this.#slots.header(b.slot);
        if (Atomics.load(h, SlotWord.started) === b.ticket) {
          if (now - (this.#epochMs + (h[SlotWord.startedMs] as number)) > this.options.timeoutMs) this.#giveUp(b, 'running');
        } else if (now - b.sinceMs > this.#startBoundMs) this.#giveUp(b, 'not-started');
      }
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
    clearInterval(this.#sweeper);
    const ring = this.#ring;
    if (how === 'timeout') {
      const closed = new BindingError('SLUICE_ABORTED', `handler pool of '${this.options.function}' closed before the batch ran`);
      this.#slots.rejectWaiters(closed);
      ring?.stopNow(closed);
      for (const b of this.#queue.splice(0)) b.reject(closed);
      await this.#piscina.destroy();
    } else {
      ring?.stop();
      await this.#piscina.close();
    }
    // Every thread's bodies-as-files cache lives in here, terminated threads' too.
    await rm(this.#filesDir, { recursive: true, force: true }).catch(() => undefined);
    this.#state = 'closed';
  }
}
