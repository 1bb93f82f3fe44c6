/**
 * The HTTP trigger's handler threads, main side: requests go to the thread with the fewest in flight, in
 * batches — every request dispatched to a thread within one event-loop turn travels in ONE message, and
 * the thread answers a turn's results in one message too (http-thread.ts `serveHttpThread`).
 *
 * Why not piscina (as the event path's batch threads use): a hello-world request costs a task there —
 * its AsyncResource, an AbortSignal and listener for the deadline, its own message each way — and the
 * profile showed that hop at ≈4× the cost of the request itself (8k req/s threaded against 40k inline).
 * An HTTP request is one small message; under load many are ready in the same turn.
 *
 * A request past its deadline rejects with a TimeoutError and its thread is terminated and replaced — a
 * runaway handler cannot be stopped any other way. The other requests running on that thread end with
 * an `ok: false` result (SLUICE_HANDLER_FAILED: their thread was replaced); requests still waiting for
 * a place keep waiting and run on the replacement. A thread takes requests only once it reported its
 * module loaded (a replacement still loading never makes a request wait for it while another thread
 * could run it, and a request that waits past its deadline is answered without touching any thread).
 *
 * Pool and thread talk over a MessageChannel of their own (one port in `workerData`): handler code that
 * posts on the thread's `parentPort` does not reach the pool.
 */
import { MessageChannel, MessagePort, receiveMessageOnPort, Worker, type TransferListItem } from 'node:worker_threads';
import type { Logger } from 'pino';
import { BindingError, serializeError } from '../../bindings/errors.ts';
import { DeadlineWheel, type Deadline } from './deadline-wheel.ts';
import { timeoutError, type HttpPoolRequest, type HttpPoolResult, type HttpTask, type HttpTaskResult, type HttpThreadData, type HttpThreadMessage } from './http-thread.ts';

/** Options of {@link HttpThreadPool}. */
export interface HttpThreadPoolOptions {
  /** The thread entry (http-bootstrap.mjs). */
  filename: string;
  /** Number of handler threads. */
  threads: number;
  /** Requests running at once on one thread; more wait in the pool. */
  concurrency: number;
  /**
   * How long a new thread may take to report its module loaded before it is replaced (a load that hangs
   * must not leave the pool without threads for good). @default 60000
   */
  startTimeoutMs?: number;
  workerData: HttpThreadData;
  log: Logger;
}

interface Pending {
  id: number;
  task: HttpTask;
  transfer: readonly TransferListItem[];
  resolve: (r: HttpTaskResult) => void;
  reject: (e: Error) => void;
  deadline: Deadline | undefined;
  slot: Slot | undefined;
  /** Posted to a thread (its transferables are gone from this thread). */
  posted: boolean;
}

/** One handler thread and what it runs. */
interface Slot {
  worker: Worker;
  port: MessagePort;
  /** The thread reported its module loaded (or failed to): it takes requests. */
  ready: boolean;
  inFlight: Map<number, Pending>;
  /** Dispatched this turn, not yet posted (their transfer lists go with them). */
  batch: Pending[];
  scheduled: boolean;
}

/** Closes the MessagePorts among `transfer` (a streamed body's port never handed to a thread). */
function closePorts(transfer: readonly TransferListItem[]): void {
  for (const t of transfer) if (t instanceof MessagePort) t.close();
}

export class HttpThreadPool {
  readonly #o: HttpThreadPoolOptions;
  readonly #startTimeoutMs: number;
  readonly #slots: Slot[] = [];
  /** Requests waiting for a place on a thread, oldest first. */
  readonly #waiting: Pending[] = [];
  readonly #wheel = new DeadlineWheel();
  #nextId = 1;
  #destroyed = false;

  constructor(o: HttpThreadPoolOptions) {
    this.#o = o;
    this.#startTimeoutMs = o.startTimeoutMs ?? 60_000;
    for (let i = 0; i < Math.max(1, o.threads); i++) this.#slots.push(this.#spawn());
  }

  /** Runs `task` on a handler thread; rejects with a TimeoutError at `task.deadlineMs` (the thread is replaced). */
  run(task: HttpTask, transfer: readonly TransferListItem[] = []): Promise<HttpTaskResult> {
    if (this.#destroyed) {
      closePorts(transfer);
      return Promise.reject(new BindingError('SLUICE_BACKEND_UNAVAILABLE', 'the HTTP handler threads are shut down'));
    }
    return new Promise<HttpTaskResult>((resolve, reject) => {
      const p: Pending = { id: this.#nextId++, task, transfer, resolve, reject, deadline: undefined, slot: undefined, posted: false };
      // A warm-up too: it waits for a thread that loaded, at most until its deadline.
      p.deadline = this.#wheel.at(task.deadlineMs, () => this.#expire(p));
      if (!this.#place(p)) this.#waiting.push(p);
    });
  }

  /** Requests running on threads and waiting for one, and threads that take requests (for tests and metrics). */
  get load(): { running: number; waiting: number; readyThreads: number } {
    let running = 0;
    let readyThreads = 0;
    for (const s of this.#slots) {
      running += s.inFlight.size;
      if (s.ready) readyThreads++;
    }
    return { running, waiting: this.#waiting.length, readyThreads };
  }

  /** Terminates every thread; running and waiting requests reject. */
  async destroy(): Promise<void> {
    this.#destroyed = true;
    const gone = new BindingError('SLUICE_BACKEND_UNAVAILABLE', 'the HTTP handler threads are shut down');
    for (const p of this.#waiting.splice(0)) this.#settle(p, undefined, gone);
    await Promise.all(
      this.#slots.map(async (s) => {
        for (const p of [...s.inFlight.values()]) this.#settle(p, undefined, gone);
        s.inFlight.clear();
        s.batch = [];
        s.port.close();
        await s.worker.terminate();
      }),
    );
  }

  #spawn(): Slot {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(this.#o.filename, { workerData: { ...this.#o.workerData, port: port2 }, transferList: [port2] });
    const slot: Slot = { worker, port: port1, ready: false, inFlight: new Map(), batch: [], scheduled: false };
    const onMessage = (m: HttpThreadMessage): void => {
      if (Array.isArray(m)) this.#onResults(slot, m);
      else if (m !== null && typeof m === 'object' && m.t === 'ready') {
        slot.ready = true;
        clearTimeout(startBound);
        this.#pump();
      }
    };
    port1.on('message', onMessage);
    const startBound = setTimeout(() => {
      if (slot.ready || this.#destroyed || this.#slots.indexOf(slot) < 0) return;
      this.#o.log.error({ startTimeoutMs: this.#startTimeoutMs }, 'http handler thread did not load its module in time; replacing it');
      this.#replace(slot, 'its handler thread did not start in time');
    }, this.#startTimeoutMs);
    startBound.unref();
    let failure: Error | undefined;
    worker.on('error', (e) => {
      failure = e;
      this.#o.log.error({ err: e }, 'http handler thread failed');
    });
    worker.on('exit', (code) => {
      clearTimeout(startBound);
      // Results the thread posted before it died are still answers.
      for (let m = receiveMessageOnPort(port1); m !== undefined; m = receiveMessageOnPort(port1)) onMessage(m.message as HttpThreadMessage);
      port1.close();
      const i = this.#slots.indexOf(slot);
      // Terminated by #replace or destroy(): already handled.
      if (i < 0 || this.#destroyed) return;
      if (!slot.ready) {
        // Died while starting (its bootstrap failed, not the function's module: a module that does not
        // load still reports ready, and its requests answer the load error). Requests that no ready
        // thread can take fail instead of waiting for a thread that may never start; the replacement
        // comes after a pause, not in a tight loop.
        this.#o.log.error({ code }, 'http handler thread exited while starting; starting another in 1 s');
        if (!this.#slots.some((s) => s.ready)) {
          const error = new BindingError('SLUICE_HANDLER_FAILED', `the HTTP handler thread exited while starting (code ${code})${failure ? `: ${failure.message}` : ''}`);
          for (const p of this.#waiting.splice(0)) this.#settle(p, undefined, error);
        }
        setTimeout(() => {
          if (!this.#destroyed && this.#slots.indexOf(slot) >= 0) this.#replace(slot, 'its handler thread exited');
        }, 1000).unref();
        return;
      }
      this.#o.log.warn({ code }, 'http handler thread exited; replacing it');
      this.#replace(slot, 'its handler thread exited');
    });
    return slot;
  }

  /**
   * Puts `p` on the least-loaded ready thread with room (posted at the end of this turn, with the rest of
   * the turn's requests for that thread). False when none has room: the caller queues it. A request whose
   * deadline passed while it waited is answered here, without a thread (true: it is done with).
   */
  #place(p: Pending): boolean {
    if (p.task.deadlineMs <= Date.now()) {
      this.#settle(p, undefined, timeoutError());
      return true;
    }
    let best: Slot | undefined;
    for (const s of this.#slots) if (s.ready && s.inFlight.size < this.#o.concurrency && (best === undefined || s.inFlight.size < best.inFlight.size)) best = s;
    if (best === undefined) return false;
    p.slot = best;
    best.inFlight.set(p.id, p);
    best.batch.push(p);
    if (!best.scheduled) {
      best.scheduled = true;
      const slot = best;
      setImmediate(() => this.#send(slot));
    }
    return true;
  }

  #send(s: Slot): void {
    s.scheduled = false;
    if (s.batch.length === 0 || this.#slots.indexOf(s) < 0) return;
    const batch = s.batch;
    s.batch = [];
    const wire: HttpPoolRequest[] = [];
    const transfer: TransferListItem[] = [];
    for (const p of batch) {
      wire.push({ id: p.id, task: p.task });
      for (const t of p.transfer) transfer.push(t);
    }
    try {
      s.port.postMessage(wire, transfer);
      for (const p of batch) p.posted = true;
    } catch {
      // One request's transfer list is bad (a detached buffer, a closed port): send them one by one, so
      // that only the bad one fails.
      for (const p of batch) {
        try {
          s.port.postMessage([{ id: p.id, task: p.task }], [...p.transfer]);
          p.posted = true;
        } catch (e) {
          s.inFlight.delete(p.id);
          this.#settle(p, { ok: false, error: serializeError(new BindingError('SLUICE_INTERNAL', `the request could not be passed to its handler thread: ${(e as Error).message}`)) });
        }
      }
      this.#pump();
    }
  }

  #onResults(s: Slot, results: HttpPoolResult[]): void {
    for (const res of results) {
      const p = typeof res?.id === 'number' ? s.inFlight.get(res.id) : undefined;
      if (p === undefined) {
        // Answered after its deadline: the caller has its 504; a streamed answer's port is dropped.
        if (res?.r instanceof MessagePort) res.r.close();
        continue;
      }
      s.inFlight.delete(res.id);
      this.#settle(p, res.r);
    }
    this.#pump();
  }

  #settle(p: Pending, r: HttpTaskResult | undefined, e?: Error): void {
    p.deadline?.cancel();
    p.slot = undefined;
    // Never handed to a thread: its streamed body's port is still here and must end the sender.
    if (!p.posted) closePorts(p.transfer);
    if (e !== undefined) p.reject(e);
    else p.resolve(r!);
  }

  /** Moves waiting requests onto threads with room (oldest first). */
  #pump(): void {
    while (this.#waiting.length > 0 && this.#place(this.#waiting[0]!)) this.#waiting.shift();
  }

  #expire(p: Pending): void {
    const slot = p.slot;
    if (slot === undefined) {
      const i = this.#waiting.indexOf(p);
      if (i >= 0) this.#waiting.splice(i, 1);
      this.#settle(p, undefined, timeoutError());
      return;
    }
    slot.inFlight.delete(p.id);
    const unsent = slot.batch.indexOf(p);
    if (unsent >= 0) {
      // Not sent yet (dispatched this turn): it never reached the thread, which keeps running.
      slot.batch.splice(unsent, 1);
      this.#settle(p, undefined, timeoutError());
      this.#pump();
      return;
    }
    this.#settle(p, undefined, timeoutError());
    this.#replace(slot, 'another request on its handler thread ran past its timeout, and the thread was replaced');
  }

  /** Terminates `slot`'s thread (if still running), fails what ran on it, and starts a replacement. */
  #replace(slot: Slot, why: string): void {
    const i = this.#slots.indexOf(slot);
    if (i < 0) return;
    this.#slots[i] = this.#spawn();
    slot.port.close();
    void slot.worker.terminate();
    // Dispatched this turn but not yet sent: they never reached the old thread, so they go back to the
    // front of the queue and run on a thread that is ready.
    const unsent = slot.batch;
    slot.batch = [];
    for (const p of unsent) {
      slot.inFlight.delete(p.id);
      p.slot = undefined;
    }
    const error = serializeError(new BindingError('SLUICE_HANDLER_FAILED', `the request did not finish: ${why}`));
    for (const p of slot.inFlight.values()) this.#settle(p, { ok: false, error });
    slot.inFlight.clear();
    this.#waiting.unshift(...unsent);
    this.#pump();
  }
}
