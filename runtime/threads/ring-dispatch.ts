/**
 * The `'ring'` dispatch of a {@link import('./handler-pool.ts').HandlerPool} (its default): each thread
 * runs ONE long-lived piscina task, a loop taking (slot, ticket) entries from a SharedArrayBuffer ring
 * (runtime/handoff/ring.ts) and waiting on it with `Atomics.waitAsync` when empty; it signals a
 * completion by the slot's state word plus a shared counter that the main thread `waitAsync`s on. No
 * message crosses per batch; piscina keeps thread lifecycle (start, replace, terminate). A timeout
 * terminates the thread through the abort signal of its loop's task; a fresh loop is started on the
 * replacement thread.
 *
 * Split from handler-pool.ts (which keeps options, slots, the `'task'` dispatch and the failure model
 * shared by both) so that each file reads as one mechanism; the pool is this class's {@link RingHost}.
 */
import type { Piscina } from 'piscina';
import { ringCapacity, ringPush, RingWord, ringWords, waitAsync } from '../handoff/ring.ts';
import { SlotPhase, SlotWord, STARTED_GAVE_UP, STARTED_MS_UNSET, stateWord, unclaimed, type SlotPool } from '../handoff/slots.ts';
import { TaskStatus, type HandlerTask } from './handler-thread.ts';

/** What terminated a batch's thread: a piscina task of the `'task'` dispatch, or a ring loop. */
export interface DispatchUnit {
  ac: AbortController;
  /** The batch whose timeout or abort terminated the unit's thread. */
  culprit: Pending | undefined;
}

/** A batch written into its slot, waiting for a thread or being handled. */
export interface Pending {
  slot: number;
  ticket: number;
  batchId: string;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Queued since (then dispatched since): bounds the wait for its handler to start. */
  sinceMs: number;
  /** The piscina task (or ring loop) whose thread was, or is being, terminated with this batch on it. */
  task: DispatchUnit | undefined;
  /** Why the pool gave up on it, when it did. */
  gaveUp: 'running' | 'not-started' | 'aborted' | undefined;
  resolve(status: number): void;
  reject(err: Error): void;
}

/** A ring loop: one long-lived piscina task on one thread. */
interface Runner extends DispatchUnit {
  id: number;
  sinceMs: number;
}

/** What the ring needs of its pool. */
export interface RingHost {
  readonly slots: SlotPool;
  readonly piscina: Piscina<HandlerTask, number[]>;
  readonly concurrentTasksPerThread: number;
  readonly timeoutMs: number;
  /** How long a batch may wait for its handler to start. */
  readonly startBoundMs: number;
  /** The pool is closed: no loop is (re)started. */
  closed(): boolean;
  /** Settles a batch (the ring has forgotten it already, see {@link RingDispatch.forget}). */
  settle(b: Pending, status: number, err: unknown): void;
  giveUp(b: Pending, why: NonNullable<Pending['gaveUp']>): void;
}

export class RingDispatch {
  /** The ring's words, shared with the threads (in their workerData). */
  readonly buffer: SharedArrayBuffer;
  readonly mask: number;
  readonly #ring: Int32Array;
  readonly #host: RingHost;
  /** Batches the full ring could not take yet, oldest first (at most `slots`: each holds one). */
  readonly #queue: Pending[] = [];
  /** Batches pushed to the ring (taken or not), by slot. */
  readonly #pushed = new Map<number, Pending>();
  /** Live ring loops by id. */
  readonly #runners = new Map<number, Runner>();
  #nextRunner = 0;
  #watching = false;
  /** Loops that failed right after starting, in a row (backs their restart off). */
  #startFailures = 0;

  constructor(slots: number, host: RingHost) {
    const capacity = ringCapacity(slots);
    this.mask = capacity - 1;
    this.buffer = new SharedArrayBuffer(ringWords(capacity) * 4);
    this.#ring = new Int32Array(this.buffer);
    this.#host = host;
  }

  /** Starts one loop per thread (after the pool's threads have loaded the function). */
  startRunners(threads: number): void {
    for (let i = 0; i < threads; i++) this.#startRunner();
  }

  /** Hands a published batch to the loops. */
  push(p: Pending): void {
    this.#pushed.set(p.slot, p);
    if (this.#queue.length > 0 || !ringPush(this.#ring, this.mask, p.slot, p.ticket)) this.#queue.push(p);
    // While a waitAsync is pending, completions since the last reap are settled here too: its wake-up
    // runs only when the event loop next polls, which on a busy main thread (a NATS worker's) is ≈ 15 ms
    // after the thread finished; every push is a chance to learn of them sooner (measured: a batch's
    // handler phase 12–16 → 7–9 ms, docs/BENCHMARKS.md round 10).
    if (this.#watching) {
      if (Atomics.load(this.#ring, RingWord.done) !== this.#reaped) this.#reap();
    } else this.#watch();
  }

  /** Forgets a batch being settled; false when it was settled already. */
  forget(b: Pending): boolean {
    return this.#pushed.delete(b.slot);
  }

  /**
   * Waits (Atomics.waitAsync on DONE) while batches are in the ring, settling those whose state word
   * says done (or abandoned by their thread), and moving batches the full ring left queued into it.
   */
  #watch(): void {
    const ring = this.#ring;
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

  /** DONE as of the last {@link #reap}. */
  #reaped = 0;

  #reap(): void {
    this.#reaped = Atomics.load(this.#ring, RingWord.done);
    const slots = this.#host.slots;
    for (const b of this.#pushed.values()) {
      const s = Atomics.load(slots.header(b.slot), SlotWord.state);
      if (s === stateWord(b.ticket, SlotPhase.done)) this.#host.settle(b, TaskStatus.ok, undefined);
      else if (s === stateWord(b.ticket, SlotPhase.abandoned) && b.gaveUp === undefined)
        this.#host.settle(b, -1, new Error('the handler thread could not handle the batch (malformed message or results not writable)'));
    }
    while (this.#queue.length > 0) {
      const b = this.#queue[0] as Pending;
      if (!ringPush(this.#ring, this.mask, b.slot, b.ticket)) break;
      this.#queue.shift();
    }
  }

  #startRunner(): void {
    if (this.#host.closed()) return;
    const runner: Runner = { id: this.#nextRunner, ac: new AbortController(), culprit: undefined, sinceMs: Date.now() };
    this.#nextRunner = (this.#nextRunner + 1) & 0x7fffffff;
    this.#runners.set(runner.id, runner);
    const task: HandlerTask = { runner: runner.id, concurrency: this.#host.concurrentTasksPerThread };
    this.#host.piscina.run(task, { signal: runner.ac.signal }).then(
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
      const h = this.#host.slots.header(b.slot);
      if (Atomics.load(h, SlotWord.started) === b.ticket && Atomics.load(h, SlotWord.runner) === runner.id) {
        held++;
        b.task = runner;
        this.#host.settle(b, -1, why);
      }
    }
    if (err === undefined || this.#host.closed() || Atomics.load(this.#ring, RingWord.stop) !== 0) return;
    // A loop that failed on its own within a second of starting (the function's load or init failed
    // on a new thread): restart it with back-off; with no loop left, fail the batches waiting for one.
    const failedAtStart = runner.culprit === undefined && held === 0 && Date.now() - runner.sinceMs < 1000;
    this.#startFailures = failedAtStart ? this.#startFailures + 1 : 0;
    if (failedAtStart && this.#runners.size === 0) for (const b of [...this.#pushed.values()]) if (this.unstarted(b)) this.#host.settle(b, -1, why);
    const delay = this.#startFailures === 0 ? 0 : Math.min(5000, 50 * 2 ** Math.min(this.#startFailures, 7));
    if (delay === 0) this.#startRunner();
    else setTimeout(() => this.#startRunner(), delay).unref();
  }

  /** Takes back a batch no thread has claimed (it will never run); false when a thread has. */
  unstarted(b: Pending): boolean {
    const k = this.#queue.indexOf(b);
    if (k >= 0) {
      this.#queue.splice(k, 1);
      return true;
    }
    const free = unclaimed(b.ticket);
    return Atomics.compareExchange(this.#host.slots.header(b.slot), SlotWord.started, free, STARTED_GAVE_UP) === free;
  }

  /** Terminates the thread running `b` (through its loop's task); retried by the sweep until the loop is known. */
  kill(b: Pending): void {
    const runner = this.#runners.get(Atomics.load(this.#host.slots.header(b.slot), SlotWord.runner));
    if (runner === undefined) return; // the id is written right after the claim: the sweep tries again
    b.task = runner;
    runner.culprit ??= b;
    runner.ac.abort();
  }

  /** Gives up on batches whose handler ran past `timeoutMs`, or did not start within the start bound. */
  sweep(now: number, epochMs: number): void {
    for (const b of [...this.#pushed.values()]) {
      if (b.gaveUp !== undefined) {
        this.kill(b); // claimed but its loop's id was not yet written when given up on
        continue;
      }
      const h = this.#host.slots.header(b.slot);
      const ms = Atomics.load(h, SlotWord.startedMs);
      if (Atomics.load(h, SlotWord.started) === b.ticket) {
        if (ms !== STARTED_MS_UNSET && now - (epochMs + ms) > this.#host.timeoutMs) this.#host.giveUp(b, 'running');
      } else if (now - b.sinceMs > this.#host.startBoundMs) this.#host.giveUp(b, 'not-started');
    }
    // Also moves batches a full ring left queued: threads skipping stale entries bump no DONE.
    this.#reap();
  }

  /** Tells the loops to return once their batches are done (a graceful close). */
  stop(): void {
    Atomics.store(this.#ring, RingWord.stop, 1);
    Atomics.notify(this.#ring, RingWord.head);
  }

  /** Stops the loops and rejects with `closed` every batch no thread has claimed (a close past its grace). */
  stopNow(closed: Error): void {
    Atomics.store(this.#ring, RingWord.stop, 1);
    for (const b of [...this.#pushed.values()])
      if (this.unstarted(b)) {
        this.#pushed.delete(b.slot);
        b.reject(closed);
      }
  }
}
