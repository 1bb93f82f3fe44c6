/**
 * Handler threads behind one call: `await pool.run(batch)` writes the batch into a free shared-memory
 * slot, lets a piscina thread handle it in place, and reads the effects back from the same slot.
 * Nothing but slot numbers and statuses cross postMessage.
 *
 * Dispatch (`dispatch`):
 * - `'ring'` (default): each thread runs ONE long-lived piscina task, a loop taking (slot, ticket)
 *   entries from a SharedArrayBuffer ring (runtime/handoff/ring.ts) and waiting on it with
 *   `Atomics.waitAsync` when empty; it signals a completion by the slot's state word plus a shared
 *   counter that the main thread `waitAsync`s on. No message crosses per batch; piscina keeps thread
 *   lifecycle (start, replace, terminate). A timeout terminates the thread through the abort signal
 *   of its loop's task; a fresh loop is started on the replacement thread.
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
import { ringCapacity, ringPush, RingWord, ringWords, waitAsync } from '../handoff/ring.ts';
import { resultsReserve, SLOT_HEADER_BYTES, SlotPhase, SlotPool, SlotWord, STARTED_GAVE_UP, STARTED_MS_UNSET, stateWord, unclaimed } from '../handoff/slots.ts';
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

/** A batch written into its slot, waiting for a thread or being handled. */
interface Pending {
  slot: number;
  ticket: number;
  batchId: string;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Queued since (then dispatched since): bounds the wait for its handler to start. */
  sinceMs: number;
  /** The piscina task (or ring loop) whose thread was, or is being, terminated with this batch on it. */
  task: Task | Runner | undefined;
  /** Why the pool gave up on it, when it did. */
  gaveUp: 'running' | 'not-started' | 'aborted' | undefined;
  resolve(status: number): void;
  reject(err: Error): void;
}

/** One piscina task: the batches ready when a thread freed up, handled one after the other. */
interface Task {
  ac: AbortController;
  batches: Pending[];
  /** The batch whose timeout or abort terminated the task's thread. */
  culprit: Pending | undefined;
}

/** A ring loop: one long-lived piscina task on one thread. */
interface Runner {
  id: number;
  ac: AbortController;
  /** The batch whose timeout or abort terminated the loop's thread. */
  culprit: Pending | undefined;
  sinceMs: number;
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
  // ── dispatch 'ring' ──
  readonly #ring: Int32Array | undefined;
  readonly #ringMask: number;
  /** Batches pushed to the ring (taken or not), by slot. */
  readonly #pushed = new Map<number, Pending>();
  /** Live ring loops by id. */
  readonly #runners = new Map<number, Runner>();
  #nextRunner = 0;
  #watching = false;
  /** Loops that failed right after starting, in a row (backs their restart off). */
  #startFailures = 0;

  readonly #filesDir: string;

  private constructor(options: ResolvedHandlerPoolOptions, filesDir: string) {
    this.options = options;
    this.#filesDir = filesDir;
    this.#slots = new SlotPool({ slots: options.slots, slotBytes: options.slotBytes, acquireTimeoutMs: 2 ** 31 - 1 });
    this.#capacity = options.threads * options.concurrentTasksPerThread;
    const ring = options.dispatch === 'ring';
    const capacity = ringCapacity(options.slots);
    this.#ringMask = capacity - 1;
    const ringBuffer = ring ? new SharedArrayBuffer(ringWords(capacity) * 4) : undefined;
    this.#ring = ringBuffer === undefined ? undefined : new Int32Array(ringBuffer);
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
      ring: ringBuffer,
      ringMask: this.#ringMask,
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
    // A batch waits at most for every batch ahead of it, each up to its timeout.
    this.#startBoundMs = options.timeoutMs * Math.ceil(options.slots / this.#capacity) + 60_000;
    // One coarse timer for every batch instead of one per batch: timeouts fire at most ~10% late.
    const every = Math.min(1000, Math.max(5, Math.floor(options.timeoutMs / 10)));
    this.#sweeper = setInterval(() => this.#sweep(), every).unref();
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
    if (pool.#ring !== undefined) for (let i = 0; i < pool.options.threads; i++) pool.#startRunner();
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
      if (this.#ring !== undefined) {
        this.#pushed.set(slot, p);
        if (this.#queue.length > 0 || !ringPush(this.#ring, this.#ringMask, slot, ticket)) this.#queue.push(p);
        this.#watch();
        return;
      }
      this.#queue.push(p);
      this.#pump();
    });
  }

  // ── dispatch 'ring' ──

  /**
   * Waits (Atomics.waitAsync on DONE) while batches are in the ring, settling those whose state word
   * says done (or abandoned by their thread), and moving batches the full ring left queued into it.
   */
  #watch(): void {
    const ring = this.#ring as Int32Array;
    if (this.#watching) return;
    while (this.#pushed.size > 0) {
      const seen = Atomics.load(ring, RingWord.done);
      this.#reap();
      if (this.#pushed.size === 0) return;
      const w = waitAsync(ring, RingWord.done, seen);
      if (w.async) {
        this.#watching = true;
        void w.value.then(() => {
          this.#watching = false;
          this.#watch();
        });
        return;
      }
    }
  }

  #reap(): void {
    const slots = this.#slots;
    for (const b of this.#pushed.values()) {
      const s = Atomics.load(slots.header(b.slot), SlotWord.state);
      if (s === stateWord(b.ticket, SlotPhase.done)) this.#settle(b, TaskStatus.ok, undefined);
      else if (s === stateWord(b.ticket, SlotPhase.abandoned) && b.gaveUp === undefined)
        this.#settle(b, -1, new Error('the handler thread could not handle the batch (malformed message or results not writable)'));
    }
    const ring = this.#ring as Int32Array;
    while (this.#queue.length > 0) {
      const b = this.#queue[0] as Pending;
      if (!ringPush(ring, this.#ringMask, b.slot, b.ticket)) break;
      this.#queue.shift();
    }
  }

  #startRunner(): void {
    if (this.#state === 'closed') return;
    const runner: Runner = { id: this.#nextRunner, ac: new AbortController(), culprit: undefined, sinceMs: Date.now() };
    this.#nextRunner = (this.#nextRunner + 1) & 0x7fffffff;
    this.#runners.set(runner.id, runner);
    const task: HandlerTask = { runner: runner.id, concurrency: this.options.concurrentTasksPerThread };
    this.#piscina.run(task, { signal: runner.ac.signal }).then(
      () => this.#runnerEnded(runner, undefined),
      (err: unknown) => this.#runnerEnded(runner, err ?? new Error('handler thread failed')),
    );
  }

  /** A loop returned (STOP) or its thread died (crash, timeout kill, failed start): fail what it held, start another. */
  #runnerEnded(runner: Runner, err: unknown): void {
    this.#runners.delete(runner.id);
    const why = err ?? new Error('handler thread stopped');
    let held = 0;
    for (const b of this.#pushed.values()) {
      const h = this.#slots.header(b.slot);
      if (Atomics.load(h, SlotWord.started) === b.ticket && Atomics.load(h, SlotWord.runner) === runner.id) {
        held++;
        b.task = runner;
        this.#settle(b, -1, why);
      }
    }
    if (err === undefined || this.#state === 'closed' || Atomics.load(this.#ring as Int32Array, RingWord.stop) !== 0) return;
    // A loop that failed on its own within a second of starting (the function's load or init failed
    // on a new thread): restart it with back-off; with no loop left, fail the batches waiting for one.
    const failedAtStart = runner.culprit === undefined && held === 0 && Date.now() - runner.sinceMs < 1000;
    this.#startFailures = failedAtStart ? this.#startFailures + 1 : 0;
    if (failedAtStart && this.#runners.size === 0) for (const b of [...this.#pushed.values()]) if (this.#unstarted(b)) this.#settle(b, -1, why);
    const delay = this.#startFailures === 0 ? 0 : Math.min(5000, 50 * 2 ** Math.min(this.#startFailures, 7));
    if (delay === 0) this.#startRunner();
    else setTimeout(() => this.#startRunner(), delay).unref();
  }

  /** Takes back a batch no thread has claimed (it will never run); false when a thread has. */
  #unstarted(b: Pending): boolean {
    const k = this.#queue.indexOf(b);
    if (k >= 0) {
      this.#queue.splice(k, 1);
      return true;
    }
    const free = unclaimed(b.ticket);
    return Atomics.compareExchange(this.#slots.header(b.slot), SlotWord.started, free, STARTED_GAVE_UP) === free;
  }

  /** Terminates the thread running `b` (through its loop's task); retried by the sweep until the loop is known. */
  #kill(b: Pending): void {
    const runner = this.#runners.get(Atomics.load(this.#slots.header(b.slot), SlotWord.runner));
    if (runner === undefined) return; // the id is written right after the claim: the sweep tries again
    b.task = runner;
    runner.culprit ??= b;
    runner.ac.abort();
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
    if (this.#ring !== undefined && !this.#pushed.delete(b.slot)) return; // settled already
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
      if (this.#unstarted(b)) this.#settle(b, -1, undefined);
      else this.#kill(b);
      return;
    }
    const task = b.task;
    if (task === undefined) {
      this.#queue = this.#queue.filter((q) => q !== b);
      this.#settle(b, -1, undefined);
      return;
    }
    (task as Task).culprit ??= b;
    task.ac.abort();
  }

  /** Gives up on batches whose handler ran past `timeoutMs`, or did not start within the start bound. */
  #sweep(): void {
    const now = Date.now();
    if (this.#ring !== undefined) {
      for (const b of [...this.#pushed.values()]) {
        if (b.gaveUp !== undefined) {
          this.#kill(b); // claimed but its loop's id was not yet written when given up on
          continue;
        }
        const h = this.#slots.header(b.slot);
        const ms = Atomics.load(h, SlotWord.startedMs);
        if (Atomics.load(h, SlotWord.started) === b.ticket) {
          if (ms !== STARTED_MS_UNSET && now - (this.#epochMs + ms) > this.options.timeoutMs) this.#giveUp(b, 'running');
        } else if (now - b.sinceMs > this.#startBoundMs) this.#giveUp(b, 'not-started');
      }
      // Also moves batches a full ring left queued: threads skipping stale entries bump no DONE.
      this.#reap();
      return;
    }
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
      if (ring !== undefined) {
        Atomics.store(ring, RingWord.stop, 1);
        for (const b of [...this.#pushed.values()])
          if (this.#unstarted(b)) {
            this.#pushed.delete(b.slot);
            b.reject(closed);
          }
      }
      for (const b of this.#queue.splice(0)) b.reject(closed);
      await this.#piscina.destroy();
    } else {
      if (ring !== undefined) {
        Atomics.store(ring, RingWord.stop, 1);
        Atomics.notify(ring, RingWord.head);
      }
      await this.#piscina.close();
    }
    // Every thread's bodies-as-files cache lives in here, terminated threads' too.
    await rm(this.#filesDir, { recursive: true, force: true }).catch(() => undefined);
    this.#state = 'closed';
  }
}
