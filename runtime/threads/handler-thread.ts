/**
 * The handler thread: piscina's worker module (loaded through `bootstrap.mjs`).
 *
 * Once per thread (first task): load the function module, open the backend when bindings need it,
 * build `ctx.data`, run `init`. Per batch: read the batch IN PLACE from its slot of the shared buffer
 * (passed once through `workerData`), hand the handler thin record views, collect effects and write the
 * results into the same slot. With `dispatch: 'task'` each piscina task carries slot numbers and
 * returns status numbers; with `'ring'` one long-lived task per thread takes slots from the shared ring
 * and signals completions through shared memory (see {@link runRing}).
 */
import { pathToFileURL } from 'node:url';
import { threadId, workerData } from 'node:worker_threads';
import { pino, type Logger } from 'pino';
import { ObjectFileCache } from '../../bindings/file/index.ts';
import type { Backend, ObjectBinding } from '../../bindings/types.ts';
import { batchFailure, CounterSet, type BatchEffects } from '../../functions/effects.ts';
import type { BoundBinding, FunctionDefinition, HandlerContext } from '../../functions/types.ts';
import { openBackend, type BackendSpec } from '../backend-spec.ts';
import type { BindingSpec } from '../batch-types.ts';
import { BatchView } from '../handoff/batch-reader.ts';
import { writeResults } from '../handoff/results-writer.ts';
import { ringTake, RingWord, taken, waitAsync } from '../handoff/ring.ts';
import { SLOT_HEADER_BYTES, SlotPhase, SlotWord, stateWord, unclaimed } from '../handoff/slots.ts';
import { bindAll, declaredOnly } from './bound-bindings.ts';
import { SlotRecord, type RecordScope } from './slot-record.ts';

/** What the pool passes to every thread at start (structured-cloned; the buffer is shared). */
export interface HandlerThreadData {
  buffer: SharedArrayBuffer;
  slotBytes: number;
  /** Absolute path of the function module (default export from `defineFunction`). */
  module: string;
  function: string;
  backend: BackendSpec;
  bindings: BindingSpec[];
  /** The function's resolved secrets (`ctx.secrets`). */
  secrets: Record<string, string>;
  logLevel: string;
  /** Origin of the start times written into slot headers (epoch ms). */
  epochMs: number;
  /** The pool's handler timeout: `ctx.signal` aborts and `ctx.deadline` falls no later than this after the start. */
  timeoutMs: number;
  /** The dispatch ring (`dispatch: 'ring'`; see runtime/handoff/ring.ts), and its capacity − 1. */
  ring: SharedArrayBuffer | undefined;
  ringMask: number;
  /** Directory the thread's cache of bodies as files goes in (the pool removes it on close). */
  filesDir: string;
}

/** One task: the slots holding its batches, and the tickets they were published under. */
export interface BatchTask {
  slots: number[];
  tickets: number[];
}

/** The long-lived task of `dispatch: 'ring'`: take slots from the ring until STOP. */
export interface RingTask {
  /** Written into the header of every slot this loop claims (the pool kills its thread by it). */
  runner: number;
  /** Batches handled at once by this loop. */
  concurrency: number;
}

/** What piscina carries to a handler thread. */
export type HandlerTask = BatchTask | RingTask;

/** What a task returns through postMessage, per batch. */
export const TaskStatus = {
  /** Results are in the slot. */
  ok: 0,
  /** The pool gave up on this batch (timeout/abort) before the results were written; nothing written. */
  abandoned: 1,
} as const;

interface Ready {
  def: FunctionDefinition;
  data: Readonly<Record<string, BoundBinding>>;
  secrets: Readonly<Record<string, string>>;
  log: Logger;
  scope: Omit<RecordScope, 'live'>;
}

const config = workerData as HandlerThreadData;
let ready: Ready | undefined;
let starting: Promise<Ready> | undefined;

/** Loads the function, its backend and bindings, and runs `init`, once per thread. */
async function start(): Promise<Ready> {
  // stderr, like the worker process's own logger; a synchronous destination, written from this thread.
  const log = pino({ level: config.logLevel, base: { function: config.function, thread: threadId } }, pino.destination(2));
  const mod = (await import(pathToFileURL(config.module).href)) as { default?: unknown };
  const def = mod.default as FunctionDefinition | undefined;
  if (typeof def !== 'object' || def === null || typeof def.handler !== 'function')
    throw new TypeError(`function module ${config.module} must export default defineFunction({ handler })`);
  // The backend is opened once per thread, and only when something needs it: declared bindings now,
  // or later a `data()` whose body was not prefetched.
  let backend: Promise<Backend> | undefined;
  const getBackend = (): Promise<Backend> => {
    if (backend === undefined) {
      const opening = openBackend(config.backend);
      opening.catch(() => (backend = undefined)); // a failed open is tried again by the next caller
      backend = opening;
    }
    return backend;
  };
  // Bodies as files (record.path(), object-files bindings): one cache per thread, made on first use.
  // A file handed out stays at least the handler timeout (plus a margin), so no running batch loses it.
  let cache: Promise<ObjectFileCache> | undefined;
  const files = (): Promise<ObjectFileCache> => {
    if (cache === undefined) {
      const opening = ObjectFileCache.open({ dir: config.filesDir, pinMs: config.timeoutMs + 5_000 });
      opening.catch(() => (cache = undefined));
      cache = opening;
    }
    return cache;
  };
  const data = config.bindings.length > 0 ? await bindAll(await getBackend(), config.bindings, { files }) : declaredOnly({});
  const buckets = new Map<string, Promise<ObjectBinding>>();
  const objects = (bucket: string): Promise<ObjectBinding> => {
    let b = buckets.get(bucket);
    if (b === undefined) {
      b = getBackend().then((be) => be.objects(bucket));
      b.catch(() => buckets.delete(bucket));
      buckets.set(bucket, b);
    }
    return b;
  };
  const secrets = Object.freeze({ ...config.secrets });
  if (def.init !== undefined) await def.init({ function: config.function, log, data, secrets });
  return { def, data, secrets, log, scope: { objects, files, bindings: config.bindings } };
}

function getReady(): Ready | Promise<Ready> {
  if (ready !== undefined) return ready;
  starting ??= start().then(
    (r) => (ready = r),
    (err: unknown) => {
      starting = undefined; // a failed start is retried by the next task
      throw err;
    },
  );
  return starting;
}

/** The per-batch context; logger and signal are made only when the handler asks for them. */
class BatchContext implements HandlerContext {
  readonly function: string;
  readonly shard: number;
  readonly batchId: string;
  readonly data: Readonly<Record<string, BoundBinding>>;
  readonly secrets: Readonly<Record<string, string>>;
  readonly deadline: number;
  readonly counters = new CounterSet();
  readonly count = (name: string, n?: number): void => this.counters.count(name, n);
  readonly #base: Logger;
  #log: Logger | undefined;
  #ac: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(r: Ready, view: BatchView, startedMs: number) {
    this.function = config.function;
    this.shard = view.shard;
    this.batchId = view.batchId;
    this.data = r.data;
    this.secrets = r.secrets;
    // `readonly` is only a type: pin ctx.data so a handler cannot swap in bindings of its own.
    Object.defineProperty(this, 'data', { writable: false, configurable: false });
    // The earlier of the batch's deadline and the pool's timeout (past which the thread is terminated).
    const batchDeadline = view.deadlineMs;
    const timeout = startedMs + config.timeoutMs;
    this.deadline = batchDeadline > 0 && batchDeadline < timeout ? batchDeadline : timeout;
    this.#base = r.log;
  }

  get log(): Logger {
    return (this.#log ??= this.#base.child({ shard: this.shard, batchId: this.batchId }));
  }

  get signal(): AbortSignal {
    if (this.#ac === undefined) {
      const ac = (this.#ac = new AbortController());
      const left = this.deadline - Date.now();
      const reason = (): Error => Object.assign(new Error(`batch '${this.batchId}' reached its deadline`), { name: 'TimeoutError' });
      if (left <= 0) ac.abort(reason());
      else this.#timer = setTimeout(() => ac.abort(reason()), Math.min(left, 2 ** 31 - 1));
    }
    return this.#ac.signal;
  }

  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }
}

// Load the function while piscina finishes starting the thread, so the first batch finds it ready.
// Not awaited here: a failure must fail tasks (and be retried), not the thread's bootstrap.
void (async () => {
  try {
    await getReady();
  } catch {
    // Reported by (and retried for) the first task.
  }
})();

/**
 * piscina's task function: handles the batches of the task one after the other (the pool puts every
 * batch that is ready when a thread frees up into one task, so piscina's per-task cost is shared).
 * An empty task only waits for the function to be loaded (the pool's warm-up).
 */
export default async function runTask(task: HandlerTask): Promise<number[]> {
  const r = ready ?? (await getReady());
  if ('runner' in task) return runRing(r, task);
  const statuses: number[] = [];
  for (let k = 0; k < task.slots.length; k++) statuses.push(await runBatch(r, task.slots[k] as number, task.tickets[k] as number, -1));
  return statuses;
}

const headers: Int32Array[] = [];
function headerOf(slot: number): Int32Array {
  return (headers[slot] ??= new Int32Array(config.buffer, slot * config.slotBytes, SLOT_HEADER_BYTES / 4));
}

/**
 * The ring loop: takes (slot, ticket) entries while fewer than `concurrency` batches are running,
 * waits on `HEAD` with `Atomics.waitAsync` when the ring is empty (the thread's event loop keeps
 * running), and after each batch bumps `DONE` and notifies the main thread. Returns at STOP once its
 * batches are done. A batch that throws outside its handler (malformed, results unwritable) is marked
 * ABANDONED by the thread, which main reports as SLUICE_HANDLER_FAILED; the loop goes on.
 */
function runRing(r: Ready, task: RingTask): Promise<number[]> {
  const ctrl = new Int32Array(config.ring as SharedArrayBuffer);
  const mask = config.ringMask;
  return new Promise<number[]>((resolve) => {
    let active = 0;
    let waiting = false;
    const finished = (slot: number, ticket: number, status: number): void => {
      active--;
      if (status === TaskStatus.ok || status === FAILED) {
        Atomics.add(ctrl, RingWord.done, 1);
        Atomics.notify(ctrl, RingWord.done);
      }
      next();
    };
    const next = (): void => {
      while (active < task.concurrency) {
        if (Atomics.load(ctrl, RingWord.stop) !== 0) {
          if (active === 0) resolve([]);
          return;
        }
        if (!ringTake(ctrl, mask)) {
          if (waiting) return;
          const head = Atomics.load(ctrl, RingWord.head);
          if (head !== Atomics.load(ctrl, RingWord.tail)) continue;
          const w = waitAsync(ctrl, RingWord.head, head);
          if (!w.async) continue;
          waiting = true;
          void w.value.then(() => {
            waiting = false;
            // Woken while full (it took entries meanwhile, after finishing others): pass the wake-up
            // on, or an idle thread would sleep while an entry waits for this one.
            if (active >= task.concurrency && Atomics.load(ctrl, RingWord.head) !== Atomics.load(ctrl, RingWord.tail)) Atomics.notify(ctrl, RingWord.head, 1);
            next();
          });
          return;
        }
        const slot = taken.slot;
        const ticket = taken.ticket;
        active++;
        runBatch(r, slot, ticket, task.runner).then(
          (status) => finished(slot, ticket, status),
          () => finished(slot, ticket, failBatch(slot, ticket)),
        );
      }
    };
    next();
  });
}

/** Status of a batch the thread could not handle (ring mode: marked ABANDONED by the thread). */
const FAILED = 2;

function failBatch(slot: number, ticket: number): number {
  const h = headerOf(slot);
  const abandoned = stateWord(ticket, SlotPhase.abandoned);
  if (Atomics.load(h, SlotWord.state) === abandoned) return FAILED;
  for (const phase of [SlotPhase.assigned, SlotPhase.writing] as const)
    if (Atomics.compareExchange(h, SlotWord.state, stateWord(ticket, phase), abandoned) === stateWord(ticket, phase)) return FAILED;
  return TaskStatus.abandoned;
}

async function runBatch(r: Ready, slot: number, ticket: number, runner: number): Promise<number> {
  const at = slot * config.slotBytes;
  const header = headerOf(slot);
  if (Atomics.load(header, SlotWord.state) !== stateWord(ticket, SlotPhase.assigned)) return TaskStatus.abandoned;
  // Claim the ticket: fails when main gave up on it first, or when this is a stale ring entry.
  const free = unclaimed(ticket);
  if (Atomics.compareExchange(header, SlotWord.started, free, ticket) !== free) return TaskStatus.abandoned;
  // The handler's clock starts now (the pool's timeout measures the handler, not the thread's start
  // or the batches before it in the task).
  const startedMs = Date.now();
  Atomics.store(header, SlotWord.runner, runner);
  Atomics.store(header, SlotWord.startedMs, startedMs - config.epochMs);
  const batchLen = header[SlotWord.batchLen] as number;
  const view = new BatchView(new Uint8Array(config.buffer, at + SLOT_HEADER_BYTES, batchLen));

  const scope: RecordScope = { live: true, objects: r.scope.objects, files: r.scope.files, bindings: config.bindings };
  const n = view.length;
  const records = new Array<SlotRecord>(n);
  for (let i = 0; i < n; i++) records[i] = new SlotRecord(view.record(i), scope);
  const ctx = new BatchContext(r, view, startedMs);
  let error: BatchEffects['error'];
  try {
    await r.def.handler(records, ctx);
  } catch (err) {
    error = batchFailure(err);
  } finally {
    scope.live = false;
    ctx.dispose();
  }

  const effects: BatchEffects = { records: records.map((x) => x.declared), counters: ctx.counters.values };
  if (error !== undefined) effects.error = error;
  return publish(header, ticket, at, batchLen, effects);
}

/** Claims the slot for this ticket's results and writes them; a batch the pool gave up on is left alone. */
function publish(header: Int32Array, ticket: number, at: number, batchLen: number, effects: BatchEffects): number {
  const assigned = stateWord(ticket, SlotPhase.assigned);
  if (Atomics.compareExchange(header, SlotWord.state, assigned, stateWord(ticket, SlotPhase.writing)) !== assigned) return TaskStatus.abandoned;
  const off = SLOT_HEADER_BYTES + ((batchLen + 7) & ~7);
  const dst = new Uint8Array(config.buffer, at + off, config.slotBytes - off);
  let len: number;
  try {
    len = writeResults(dst, effects);
  } catch (err) {
    // The effects do not fit (SLUICE_SLOT_OVERFLOW): the batch fails as a whole. The verdict fits the
    // reserve the pool keeps after the batch (without its stack if need be).
    const verdict = batchFailure(err);
    try {
      len = writeResults(dst, { records: [], counters: {}, error: verdict });
    } catch {
      delete verdict.error.stack;
      try {
        len = writeResults(dst, { records: [], counters: {}, error: verdict });
      } catch (again) {
        Atomics.store(header, SlotWord.state, stateWord(ticket, SlotPhase.abandoned));
        throw again;
      }
    }
  }
  header[SlotWord.resultsOff] = off;
  header[SlotWord.resultsLen] = len;
  Atomics.store(header, SlotWord.state, stateWord(ticket, SlotPhase.done));
  return TaskStatus.ok;
}
