/**
 * One owned shard: a loop of steps, each `batcher → handler → committer → retry policy → nextCheckpoint →
 * one checkpoint write`. The runner only wires these units together and owns the shard's lifecycle; the
 * rules live in the units:
 *
 * - runtime/batcher.ts — which records run next (due retries first, per-key gating, batch limits);
 * - runtime/committer.ts — effects → conditional store writes, per key in order;
 * - runtime/retry-policy.ts — retry when, or dead-letter;
 * - runtime/checkpoint.ts — the pure arithmetic of position, pending list and exact counters.
 *
 * At-least-once delivery, exactly-once effect: effects commit (conditioned on the processed-marker) before
 * the checkpoint that moves past them; a crash in between re-delivers, and the marker makes the
 * re-delivery a no-op (`duplicate`).
 *
 * Normally the checkpoint of step N is computed before N's commit, as if every record lands, and goes
 * into N's own store write as its last op (`afterAll`: written only when every effect landed) — ONE LMDB
 * transaction per step on local, so a record is committed and checkpointed in one store turn (on NATS
 * only for a trickle, see #runAndCommit). When that
 * cannot be (a handler failure, dead letters to write first, a record failing in the write), the real
 * checkpoint is computed after the commit and, when more records are already waiting (the source's lag
 * after the pull), written together with the effects of step N+1, otherwise at once. This is
 * safe: checkpoint N is issued only after N's effects committed (at-least-once), checkpoints are written
 * in order (each awaits the one before, and the revision CAS chains them), and effects of N+1 committed
 * before checkpoint N are re-delivered after a crash and meet their marker (`duplicate`, counted once by
 * the counting rule since the lost checkpoints took their counts with them). A failed write puts the
 * runner back on the last durable checkpoint, so nothing is skipped.
 */
import type { Logger } from 'pino';
import { SluiceError } from '../bindings/errors.ts';
import type { StreamBinding } from '../bindings/types.ts';
import type { BatchInput } from './batch-types.ts';
import { Batcher, sleep, type Step } from './batcher.ts';
import { runBatch } from './bisect.ts';
import { nextCheckpoint, type RecordFate } from './checkpoint.ts';
import { Committer, writeDeadLetters, type CommitResult, type DeadLetter } from './committer.ts';
import type { WorkerMetrics } from './metrics.ts';
import type { RecordSource } from './records.ts';
import { decideRetry } from './retry-policy.ts';
import type { HandlerRunner } from './runner.ts';
import type { Semaphore } from './semaphore.ts';
import { CheckpointStore, type Checkpoint, type Lease, type PendingRecord } from './state.ts';
import type { KvBinding } from '../bindings/types.ts';
import type { ResolvedWorkerOptions } from './worker-options.ts';

export { MAX_PENDING } from './batcher.ts';
export { sleep } from './batcher.ts';

/** Most steps a shard runs on one batch credit (see the loop). */
const MAX_CHAIN = 8;

/** What a shard runner needs from its worker. */
export interface ShardDeps {
  o: ResolvedWorkerOptions;
  /** Where dead letters go. */
  streams: StreamBinding;
  state: KvBinding;
  /** Where the trigger's records come from. */
  source: RecordSource;
  committer: Committer;
  runner: HandlerRunner;
  credits: Semaphore;
  metrics: WorkerMetrics;
  log: Logger;
}

/** Lifecycle of a shard runner. */
export type ShardState = 'starting' | 'running' | 'stopping' | 'stopped' | 'lost' | 'failed';

/** Same position, pending list, holds and counts (what a checkpoint written ahead must match). */
function sameCheckpoint(a: Checkpoint, b: Checkpoint): boolean {
  return a.seq === b.seq && a.handled === b.handled && a.epoch === b.epoch && JSON.stringify([a.pending, a.holds, a.counts]) === JSON.stringify([b.pending, b.holds, b.counts]);
}

/** Runs one shard until stopped or until its lease is lost. */
export class ShardRunner {
  readonly shard: number;
  readonly lease: Lease;
  #d: ShardDeps;
  #state: ShardState = 'starting';
  #ac = new AbortController();
  #done: Promise<void> = Promise.resolve();
  #ckpt: CheckpointStore;
  #batcher: Batcher;
  /** The latest checkpoint (possibly not yet written; see the header). */
  #c: Checkpoint | undefined;
  /** The last checkpoint written. */
  #durable: Checkpoint | undefined;
  /** #c has not been written yet. */
  #unsaved = false;
  /**
   * #c is unwritten but moved only past records that need nothing (filtered, superseded — e.g. the
   * `attrs` change records of this function's own commits): it rides with the next step's write, or is
   * written when the shard idles (at most the batcher's idle wait later), not in a store turn of its own.
   * Safe: an unwritten position only means those records are read (and skipped) again after a crash.
   */
  #lazy = false;
  #batchNo = 0;
  #positionAt = 0;
  #positionBusy = false;
  /** When the step (or start, or error backoff) in progress began; undefined while waiting for a credit or idle. */
  #busySince: number | undefined = Date.now();
  /** What the runner is doing now, for the stall watchdog's log line. */
  #phase = 'start';
  /** When the last step finished, and when the position last moved (epoch ms). */
  #lastStepAt = 0;
  #lastAdvanceAt = 0;
  #seenSeq = 0;

  constructor(deps: ShardDeps, shard: number, lease: Lease) {
    this.#d = deps;
    this.shard = shard;
    this.lease = lease;
    this.#ckpt = new CheckpointStore(deps.state, deps.o.function, shard);
    this.#batcher = new Batcher(deps.source, shard, deps.o.batch);
  }

  get state(): ShardState {
    return this.#state;
  }

  /** The latest checkpoint (for status and tests; written at the latest with the next batch's effects). */
  get checkpoint(): Readonly<Checkpoint> | undefined {
    return this.#c;
  }

  start(): void {
    this.#done = this.#loop();
  }

  /** Stops fetching, lets the batch in flight finish and commit, then resolves. */
  async stop(): Promise<void> {
    if (this.#state === 'running' || this.#state === 'starting') this.#state = 'stopping';
    this.#ac.abort();
    await this.#done;
  }

  /**
   * How long the current step has been running (0 while waiting for a credit, which is other shards'
   * work, not a stall of this one), and what it is doing. The worker's watchdog replaces a runner whose
   * step outlasts its bound: every backend call has its own timeout, so a step that does not end is a
   * defect somewhere, and a shard must not stay silent because of it.
   */
  busy(now = Date.now()): { ms: number; phase: string; lastStepAt: number; lastAdvanceAt: number } {
    return { ms: this.#busySince === undefined ? 0 : now - this.#busySince, phase: this.#phase, lastStepAt: this.#lastStepAt, lastAdvanceAt: this.#lastAdvanceAt };
  }

  /** Gives the runner up without waiting for it (it is stuck): aborts its waits; its lease's next epoch fences any late write. */
  abandon(): void {
    if (this.#state === 'running' || this.#state === 'starting') this.#transition('failed');
    this.#ac.abort();
  }

  /** Resolves when the loop has ended (stopped, lost or failed). */
  get finished(): Promise<void> {
    return this.#done;
  }

  #transition(to: ShardState): void {
    this.#d.log.debug({ shard: this.shard, from: this.#state, to }, 'shard state');
    this.#state = to;
  }

  async #loop(): Promise<void> {
    try {
      this.#phase = 'start';
      const start = await this.#d.source.start(this.shard);
      // Claim the checkpoint under this epoch at once: an older owner's next write now fails.
      this.#phase = 'claim';
      this.#c = this.#durable = await this.#ckpt.claim(start, this.lease.epoch);
      this.#seenSeq = this.#c.seq;
      this.#lastStepAt = this.#lastAdvanceAt = Date.now();
      if (this.#state === 'starting') this.#transition('running');
      let errors = 0;
      while (this.#state === 'running') {
        this.#busySince = undefined;
        this.#phase = 'credit';
        try {
          await this.#d.credits.acquire(this.#ac.signal);
        } catch {
          break;
        }
        this.#busySince = Date.now();
        try {
          // Keep the credit while a checkpoint is unwritten: the next step writes it with its effects
          // (or at once when there is nothing to do), so it never waits for a credit of its own. At most
          // MAX_CHAIN steps, so a busy shard does not starve the others when credits are fewer than shards.
          let n = 0;
          do {
            this.#busySince = Date.now();
            await this.#step();
            this.#stepped();
          } while (this.#unsaved && !this.#lazy && ++n < MAX_CHAIN && this.#state === 'running');
          this.#phase = 'checkpoint';
          if (!this.#lazy) await this.#flush();
          errors = 0;
        } catch (e) {
          if (e instanceof SluiceError && e.code === 'SLUICE_LEASE_LOST') throw e;
          if (this.#ac.signal.aborted) break;
          // A backend hiccup: log, back off (up to 5 s) and try again; nothing was checkpointed.
          errors++;
          this.#d.log.warn({ shard: this.shard, phase: this.#phase, err: e }, 'shard step failed; retrying');
          this.#phase = 'backoff';
          this.#busySince = Date.now();
          await sleep(Math.min(5000, 100 * 2 ** Math.min(errors, 6)), this.#ac.signal);
        } finally {
          this.#d.credits.release();
        }
      }
      // Drain: the last step's checkpoint is written before the shard is handed over.
      try {
        await this.#flush();
      } catch (e) {
        if (e instanceof SluiceError && e.code === 'SLUICE_LEASE_LOST') throw e;
        this.#d.log.warn({ shard: this.shard, err: e }, 'final checkpoint write failed; its records are re-delivered');
      }
      this.#transition('stopped');
      await this.#waitPosition();
    } catch (e) {
      if (e instanceof SluiceError && e.code === 'SLUICE_LEASE_LOST') {
        this.#d.log.warn({ shard: this.shard, epoch: this.lease.epoch }, 'lease lost; shard stopped');
        this.#transition('lost');
      } else {
        this.#d.log.error({ shard: this.shard, err: e }, 'shard failed');
        this.#transition('failed');
      }
    }
  }

  /** Records a finished step (and whether the position moved) for the watchdog, status and metrics. */
  #stepped(): void {
    const now = Date.now();
    const label = { shard: String(this.shard) };
    this.#lastStepAt = now;
    this.#d.metrics.shardLastStep.set(label, now / 1000);
    const seq = this.#c?.seq ?? 0;
    if (seq > this.#seenSeq) {
      this.#seenSeq = seq;
      this.#lastAdvanceAt = now;
      this.#d.metrics.shardLastAdvance.set(label, now / 1000);
    }
  }

  /** Publishes the final position on stop (after any publish in flight). */
  async #waitPosition(): Promise<void> {
    while (this.#positionBusy) await sleep(5);
    await this.#publishPosition(true);
  }

  /** Writes the latest checkpoint if it is not written yet; on failure falls back to the last written one. */
  async #flush(): Promise<void> {
    if (!this.#unsaved) return;
    const c = this.#c!;
    this.#unsaved = false;
    this.#lazy = false;
    try {
      await this.#ckpt.save(c);
    } catch (e) {
      // Not written (or unknown): continue from the last durable checkpoint; what came after it is
      // re-delivered and meets its markers.
      this.#c = this.#durable;
      throw e;
    }
    this.#durable = c;
    this.#publishPosition(false);
  }

  async #step(): Promise<void> {
    const { o, metrics } = this.#d;
    const c = this.#c!;
    // Nothing but skipped records is unwritten in `c` (a lazy checkpoint may only ever hold those: one
    // with counts or pending records is written promptly, so counters follow effects at once).
    const onlySkippedUnsaved = !this.#unsaved || this.#lazy;
    // With a checkpoint to write, do not wait for records: write it first when there are none.
    this.#phase = 'pull';
    const step = await this.#batcher.next(c, Date.now(), this.#ac.signal, this.#unsaved && !this.#lazy);
    if (step?.lag !== undefined) metrics.lag.set({ shard: String(this.shard) }, step.lag + c.pending.length);
    if (!step || (step.run.length === 0 && step.fates.length === 0 && step.expired.length === 0 && step.refused.length === 0)) {
      await this.#flush();
      return;
    }

    const now = Date.now();
    const fates: RecordFate[] = [...step.fates];
    const dead: DeadLetter[] = step.expired.map((p) => this.#letter(p, p.attempts, { code: 'SLUICE_NOT_FOUND', message: `record ${p.seq} expired from source '${this.#d.source.name}' before it could be retried` }));
    for (const p of step.expired) fates.push({ seq: p.seq, key: p.key, outcome: 'dead_letter' });
    for (const p of step.refused) {
      dead.push(this.#letter(p, p.attempts, p.error));
      fates.push({ seq: p.seq, key: p.key, outcome: 'dead_letter' });
    }
    // A step without effects (only filtered or superseded records) need not write the previous checkpoint:
    // the next one includes it.
    const ran = step.run.length > 0 ? await this.#runAndCommit(step, now, fates, dead) : undefined;
    const counters = ran?.counters;

    if (dead.length > 0) {
      this.#phase = 'dead-letter';
      await writeDeadLetters(this.#d.streams, o.retries.deadLetterStream, dead);
      metrics.deadLetters.inc(dead.length);
      this.#d.log.warn({ shard: this.shard, records: dead.map((d) => ({ seq: d.seq, key: d.key, attempts: d.attempts, error: d.error.code })) }, 'records dead-lettered');
    }
    const next = nextCheckpoint(c, { advanceTo: step.advanceTo, records: fates, ...(counters ? { counters } : {}) });
    if (counters) metrics.countUser(counters);
    for (const f of fates) if (f.outcome !== 'waiting') metrics.count(f.outcome);
    if (ran?.landed) {
      // This step's checkpoint committed with its effects (the common case): nothing left to write.
      if (sameCheckpoint(next, ran.landed)) {
        this.#c = this.#durable = ran.landed;
        this.#publishPosition(false);
        return;
      }
      // Cannot happen (the write lands only when every record did); write the real one rather than trust it.
      this.#d.log.error({ shard: this.shard, seq: next.seq }, 'checkpoint written with the effects differs from the outcome; writing the outcome');
    }
    this.#c = next;
    this.#unsaved = true;
    // Only skipped records: no store turn of its own (see #lazy).
    if (onlySkippedUnsaved && !ran && dead.length === 0 && fates.every((f) => f.outcome === 'filtered' || f.outcome === 'superseded')) {
      this.#lazy = true;
      return;
    }
    this.#lazy = false;
    // Defer the write to the next step's effects only when records are known to be waiting; otherwise
    // (a trickle, the tail of a burst, a retry step) write it now, so counters follow effects at once.
    if (!(step.lag !== undefined && step.lag > 0)) await this.#flush();
  }

  /**
   * Runs the handler over the step's records and commits their effects; pushes each record's fate (and
   * dead letter) and returns the counters that count (undefined: the batch failed, or it re-ran records
   * whose counts are held).
   */
  async #runAndCommit(step: Step, now: number, fates: RecordFate[], dead: DeadLetter[]): Promise<{ counters: Record<string, number> | undefined; landed?: Checkpoint }> {
    const { o, metrics } = this.#d;
    const batch: BatchInput = {
      function: o.function,
      source: step.run[0]!.input.source,
      shard: this.shard,
      batchId: `${o.function}-${this.shard}-${this.lease.epoch}-${++this.#batchNo}`,
      deadlineMs: Date.now() + o.timeoutMs,
      records: step.run.map((x) => x.input),
    };
    this.#phase = 'handler';
    metrics.batchSize.observe(batch.records.length);
    const endHandler = metrics.handlerSeconds.startTimer();
    // A batch that throws is halved until its failing records are isolated (runtime/bisect.ts).
    const ran = await runBatch((b) => this.#d.runner.run(b), batch, { bisect: o.bisectOnError, timeoutMs: o.timeoutMs });
    const effects = ran.effects;
    endHandler();
    if (ran.invocations > 1) this.#d.log.warn({ shard: this.shard, batchId: batch.batchId, invocations: ran.invocations, failed: effects.records.filter((r) => r.failure).length }, 'bisected a failed batch');
    if (effects.error) this.#d.log.warn({ shard: this.shard, batchId: batch.batchId, error: effects.error.error.message }, 'handler failed the batch');
    this.#phase = 'commit';
    const endCommit = metrics.commitSeconds.startTimer();
    // The effects and a checkpoint go to the store as ONE batch of writes (one LMDB transaction on local,
    // pipelined appends on NATS); the checkpoint's own result decides as #flush would.
    const counting = step.counting && !effects.error ? effects.counters : undefined;
    // Ahead only when nothing is decided against it already (no handler failure, no dead letter to write
    // first) — and on NATS only for a trickle: there the checkpoint op waits for the effects' CAS round
    // trip, so with records waiting it rides with the next step's effects instead (overlapping round
    // trips), while on local it costs nothing (the same transaction).
    const clean = dead.length === 0 && !effects.error && !effects.records.some((r) => r?.failure) && (this.#d.o.backend.kind === 'local' || !(step.lag !== undefined && step.lag > 0));
    // An unwritten checkpoint needs no write of its own when this step's checkpoint (which includes it)
    // is written ahead: it CASes on the same last written revision.
    const ckpt = this.#unsaved && !clean ? this.#c! : undefined;
    this.#unsaved = false;
    this.#lazy = false;
    // This step's own checkpoint, computed as if every record lands (ok, duplicate and gone are the same
    // to it), goes into the same write as the effects, after all of them (`afterAll`): one store turn per
    // step, and a trickle's record is checkpointed in the transaction that commits it. When a record
    // fails in the write, the op is skipped and the real checkpoint is written as before.
    const spec = clean
      ? nextCheckpoint(this.#c!, { advanceTo: step.advanceTo, records: [...fates, ...step.run.map((x): RecordFate => ({ seq: x.input.seq, key: x.input.key, outcome: 'ok' }))], ...(counting ? { counters: counting } : {}) })
      : undefined;
    let results: CommitResult[];
    let landed: Checkpoint | undefined;
    try {
      const committed = await this.#d.committer.commitBatch(batch.records, effects, this.shard, ckpt ? [this.#ckpt.saveOp(ckpt)] : [], spec ? this.#ckpt.saveOp(spec) : undefined);
      if (ckpt) await this.#ckpt.settle(ckpt, committed.extra[0]!);
      if (spec && committed.tail && committed.tail.status !== 'skipped') {
        await this.#ckpt.settle(spec, committed.tail);
        landed = spec;
      }
      results = committed.results;
    } catch (e) {
      // Not written (or unknown): continue from the last durable checkpoint (see #flush).
      if (ckpt || spec) this.#c = this.#durable;
      throw e;
    } finally {
      endCommit();
    }
    if (ckpt) {
      this.#durable = ckpt;
      this.#publishPosition(false);
    }
    const after = Date.now();
    results.forEach((r, i) => {
      const { input, retry: prev } = step.run[i]!;
      const base = { seq: input.seq, key: input.key };
      if (r === 'ok' || r === 'duplicate' || r === 'gone') {
        fates.push({ ...base, outcome: r });
        return;
      }
      // Ran fine in the handler (its counts are in this batch's counters) but did not commit.
      const ranOk = !effects.error && !effects.records[i]?.failure;
      if (r === 'blocked') {
        fates.push({ ...base, outcome: 'waiting', attempts: prev?.attempts ?? 0, firstAt: prev?.firstAt ?? now, nextAt: 0, counted: ranOk });
        return;
      }
      const attempts = input.attempt;
      const firstAt = prev?.firstAt ?? now;
      const d = decideRetry(o.retries, r, attempts, firstAt, after);
      if (d.action === 'dead_letter') {
        dead.push(this.#letter({ seq: input.seq, key: input.key, attempts, firstAt, nextAt: 0 }, attempts, r.error));
        fates.push({ ...base, outcome: 'dead_letter' });
        return;
      }
      metrics.retries.inc();
      fates.push({ ...base, outcome: 'retry', attempts, firstAt, nextAt: d.nextAt, error: { code: r.error.code, message: r.error.message }, counted: ranOk && r.stage === 'commit' });
    });
    return { counters: counting, ...(landed ? { landed } : {}) };
  }

  /**
   * Commits the consumer-group position (lowest pending sequence) for observers — lag tooling, other
   * consumers of the group. The checkpoint is the truth, so this is neither awaited by the batch loop nor
   * done more than once a second (measured: it was a third store turn on every batch's path).
   */
  #publishPosition(force: boolean): Promise<void> {
    const c = this.#durable;
    if (!c || (!force && Date.now() - this.#positionAt < 1000) || this.#positionBusy) return Promise.resolve();
    this.#positionAt = Date.now();
    this.#positionBusy = true;
    const low = c.pending.length > 0 ? Math.min(c.pending[0]!.seq, c.seq) : c.seq;
    return this.#d.source
      .commitPosition(this.shard, low)
      .catch((e: unknown) => this.#d.log.debug({ err: e }, 'group commit failed'))
      .finally(() => (this.#positionBusy = false));
  }

  #letter(p: PendingRecord, attempts: number, error: { code: string; message: string }): DeadLetter {
    return {
      function: this.#d.o.function,
      source: this.#d.source.name,
      shard: this.shard,
      seq: p.seq,
      key: p.key,
      type: this.#d.o.trigger.type === 'stream' ? 'record' : 'object',
      version: 0,
      attempts,
      firstAttemptAt: new Date(p.firstAt).toISOString(),
      deadAt: new Date().toISOString(),
      error,
    };
  }
}
