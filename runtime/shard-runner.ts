/**
 * One owned shard: pull records, form micro-batches, run the handler, commit, checkpoint.
 *
 * Per-key order (DESIGN invariant 3): a failed record goes to the checkpoint's `pending` list with its
 * backoff; later records of the same key join the list behind it instead of running; records of other
 * keys go on. The checkpoint's position moves past everything fetched, so the shard never blocks.
 * At-least-once delivery, exactly-once effect: effects commit (conditioned on the processed-marker)
 * before the checkpoint that moves past them; a crash in between re-delivers, and the marker makes the
 * re-delivery a no-op.
 */
import type { Logger } from 'pino';
import { SluiceError } from '../bindings/errors.ts';
import type { ObjectBinding, StreamBinding, StreamRecord } from '../bindings/types.ts';
import { batchFailure, type BatchEffects, type RecordEffects } from '../functions/effects.ts';
import type { BatchInput, BatchRecordInput } from './batch-types.ts';
import { commitObjectEffects, writeDeadLetters, type DeadLetter } from './committer.ts';
import type { WorkerMetrics } from './metrics.ts';
import type { Fetched, RecordSource } from './records.ts';
import type { HandlerRunner } from './runner.ts';
import type { Semaphore } from './semaphore.ts';
import { CheckpointStore, type Checkpoint, type Lease, type PendingRecord } from './state.ts';
import type { KvBinding } from '../bindings/types.ts';
import type { ResolvedWorkerOptions } from './worker-options.ts';

/** Most pending records per shard; beyond it the shard stops fetching new records (backpressure). */
export const MAX_PENDING = 1000;
/** Longest idle wait for new records, so stop requests and due retries are seen promptly. */
const IDLE_WAIT_MS = 200;

/** What a shard runner needs from its worker. */
export interface ShardDeps {
  o: ResolvedWorkerOptions;
  streams: StreamBinding;
  /** Name of the stream feeding the trigger (the bucket's change stream or the user stream). */
  stream: string;
  objects: ObjectBinding | undefined;
  state: KvBinding;
  source: RecordSource;
  runner: HandlerRunner;
  credits: Semaphore;
  metrics: WorkerMetrics;
  log: Logger;
}

/** Lifecycle of a shard runner. */
export type ShardState = 'starting' | 'running' | 'stopping' | 'stopped' | 'lost' | 'failed';

/** What happened to one record of a batch at commit. */
type CommitResult = 'ok' | 'duplicate' | 'gone' | 'blocked' | { error: { code: string; message: string }; nonRetryable: boolean; retryAfterMs?: number };

/** Runs one shard until stopped or until its lease is lost. */
export class ShardRunner {
  readonly shard: number;
  readonly lease: Lease;
  #d: ShardDeps;
  #state: ShardState = 'starting';
  #ac = new AbortController();
  #done: Promise<void> = Promise.resolve();
  #ckpt: CheckpointStore;
  #c: Checkpoint | undefined;
  #batchNo = 0;
  #positionAt = 0;
  #positionBusy = false;

  constructor(deps: ShardDeps, shard: number, lease: Lease) {
    this.#d = deps;
    this.shard = shard;
    this.lease = lease;
    this.#ckpt = new CheckpointStore(deps.state, deps.o.function, shard);
  }

  get state(): ShardState {
    return this.#state;
  }

  /** The last committed checkpoint (for status and tests). */
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

  /** Resolves when the loop has ended (stopped, lost or failed). */
  get finished(): Promise<void> {
    return this.#done;
  }

  #transition(to: ShardState): void {
    this.#d.log.debug({ shard: this.shard, from: this.#state, to }, 'shard state');
    this.#state = to;
  }

  async #loop(): Promise<void> {
    const { streams, stream } = this.#d;
    try {
      const start = await streams.seek(stream, this.shard, 'earliest');
      // Claim the checkpoint under this epoch at once: an older owner's next write now fails.
      this.#c = await this.#ckpt.claim(start.seq, this.lease.epoch);
      if (this.#state === 'starting') this.#transition('running');
      let errors = 0;
      while (this.#state === 'running') {
        try {
          await this.#d.credits.acquire(this.#ac.signal);
        } catch {
          break;
        }
        try {
          await this.#step();
          errors = 0;
        } catch (e) {
          if (e instanceof SluiceError && e.code === 'SLUICE_LEASE_LOST') throw e;
          if (this.#ac.signal.aborted) break;
          // A backend hiccup: log, back off (up to 5 s) and try again; nothing was checkpointed.
          errors++;
          this.#d.log.warn({ shard: this.shard, err: e }, 'shard step failed; retrying');
          await sleep(Math.min(5000, 100 * 2 ** Math.min(errors, 6)), this.#ac.signal);
        } finally {
          this.#d.credits.release();
        }
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

  /** Publishes the final position on stop (after any publish in flight). */
  async #waitPosition(): Promise<void> {
    while (this.#positionBusy) await sleep(5);
    await this.#publishPosition(true);
  }

  /** Pending records due now, in order, never ahead of an earlier pending record of their key. */
  #due(now: number): PendingRecord[] {
    const out: PendingRecord[] = [];
    const blocked = new Set<string>();
    for (const p of this.#c!.pending) {
      if (out.length >= this.#d.o.batch.maxRecords) break;
      if (blocked.has(p.key)) continue;
      if (p.nextAt <= now) out.push(p);
      else blocked.add(p.key);
    }
    return out;
  }

  async #readOne(seq: number): Promise<StreamRecord | undefined> {
    const r = await this.#d.streams.getRecords({ stream: this.#d.stream, shard: this.shard, seq }, { limit: 1 });
    const rec = r.records[0];
    return rec && rec.seq === seq ? rec : undefined;
  }

  /** Fetches new records: waits for the first, then up to maxWaitMs more to fill the batch. */
  async #fetch(): Promise<{ recs: StreamRecord[]; lag: number }> {
    const { o, streams, stream } = this.#d;
    const c = this.#c!;
    const nextDue = c.pending.reduce((m, p) => Math.min(m, p.nextAt), Infinity);
    const wait = Math.max(0, Math.min(IDLE_WAIT_MS, nextDue - Date.now()));
    let page = await streams.getRecords({ stream, shard: this.shard, seq: c.seq }, { limit: o.batch.maxRecords, maxWaitMs: wait, signal: this.#ac.signal });
    const recs = [...page.records];
    const t0 = Date.now();
    while (recs.length > 0 && recs.length < o.batch.maxRecords && o.batch.maxWaitMs > 0) {
      const left = o.batch.maxWaitMs - (Date.now() - t0);
      if (left <= 0 || this.#ac.signal.aborted) break;
      page = await streams.getRecords(page.next, { limit: o.batch.maxRecords - recs.length, maxWaitMs: left, signal: this.#ac.signal });
      if (page.records.length === 0) break;
      recs.push(...page.records);
    }
    return { recs, lag: page.lag };
  }

  async #step(): Promise<void> {
    const { o, metrics } = this.#d;
    const c = this.#c!;
    const now = Date.now();
    const due = this.#due(now);
    let fetched: Fetched[];
    let advanceTo = c.seq;
    const retrying = new Map<number, PendingRecord>();
    const expired: PendingRecord[] = [];
    if (due.length > 0) {
      const recs: StreamRecord[] = [];
      for (const p of due) {
        const r = await this.#readOne(p.seq);
        if (r) {
          recs.push(r);
          retrying.set(p.seq, p);
        } else expired.push(p);
      }
      fetched = await this.#d.source.prepare(recs, (seq) => (retrying.get(seq)?.attempts ?? 0) + 1);
    } else {
      if (c.pending.length >= MAX_PENDING) {
        await sleep(IDLE_WAIT_MS, this.#ac.signal);
        return;
      }
      const { recs, lag } = await this.#fetch();
      metrics.lag.set({ shard: String(this.shard) }, lag + c.pending.length);
      if (recs.length === 0) return;
      fetched = await this.#d.source.prepare(recs, () => 1);
      // Keep the batch within maxBytes: records past the cut are fetched again next time.
      let bytes = 0;
      let cut = fetched.length;
      for (let i = 0; i < fetched.length; i++) {
        bytes += fetched[i]!.bytes;
        if (bytes > o.batch.maxBytes && i > 0) {
          cut = i;
          break;
        }
      }
      fetched = fetched.slice(0, cut);
      advanceTo = fetched[fetched.length - 1]!.seq + 1;
    }

    // Fresh records whose key waits behind a pending record join the pending list instead of running.
    const waitingKeys = new Set(c.pending.filter((p) => !retrying.has(p.seq)).map((p) => p.key));
    const newPending: PendingRecord[] = [];
    const toRun: { f: Fetched; input: BatchRecordInput }[] = [];
    for (const f of fetched) {
      if (!f.input) {
        metrics.count(retrying.has(f.seq) ? 'superseded' : 'filtered');
        continue;
      }
      if (!retrying.has(f.seq) && waitingKeys.has(f.key)) {
        newPending.push({ seq: f.seq, key: f.key, attempts: 0, firstAt: now, nextAt: 0 });
        continue;
      }
      toRun.push({ f, input: f.input });
    }

    const dead: DeadLetter[] = expired.map((p) => this.#letter(p, p.attempts, { code: 'SLUICE_NOT_FOUND', message: `record ${p.seq} expired from stream '${this.#d.stream}' before it could be retried` }));
    let counters: Record<string, number> = {};
    if (toRun.length > 0) {
      const batch: BatchInput = {
        function: o.function,
        source: toRun[0]!.input.source,
        shard: this.shard,
        batchId: `${o.function}-${this.shard}-${this.lease.epoch}-${++this.#batchNo}`,
        deadlineMs: Date.now() + o.timeoutMs,
        records: toRun.map((x) => x.input),
      };
      metrics.batchSize.observe(batch.records.length);
      const endHandler = metrics.handlerSeconds.startTimer();
      let effects: BatchEffects;
      try {
        effects = await this.#d.runner.run(batch);
      } catch (e) {
        const failure = batchFailure(e);
        if (e instanceof SluiceError) failure.error.code = e.code;
        effects = { records: batch.records.map(() => ({ set: {}, remove: [], updates: [] })), counters: {}, error: failure };
      }
      endHandler();
      if (effects.error) this.#d.log.warn({ shard: this.shard, batchId: batch.batchId, error: effects.error.error.message }, 'handler failed the batch');
      else counters = effects.counters;
      const endCommit = metrics.commitSeconds.startTimer();
      const results = await this.#commitEffects(batch.records, effects);
      endCommit();
      results.forEach((r, i) => {
        const input = batch.records[i]!;
        const prev = retrying.get(input.seq);
        if (r === 'ok' || r === 'duplicate' || r === 'gone') {
          metrics.count(r);
          return;
        }
        if (r === 'blocked') {
          newPending.push({ seq: input.seq, key: input.key, attempts: prev?.attempts ?? 0, firstAt: prev?.firstAt ?? now, nextAt: 0 });
          return;
        }
        const attempts = input.attempt;
        const firstAt = prev?.firstAt ?? now;
        const error = { code: r.error.code, message: r.error.message };
        if (r.nonRetryable || attempts >= o.retries.maxAttempts || Date.now() - firstAt >= o.retries.maxRecordAgeMs) {
          dead.push(this.#letter({ seq: input.seq, key: input.key, attempts, firstAt, nextAt: 0 }, attempts, error));
          return;
        }
        metrics.count('retry');
        metrics.retries.inc();
        newPending.push({ seq: input.seq, key: input.key, attempts, firstAt, nextAt: Date.now() + (r.retryAfterMs ?? this.#backoff(attempts)), error });
      });
    }

    if (dead.length > 0) {
      await writeDeadLetters(this.#d.streams, o.retries.deadLetterStream, dead);
      metrics.count('dead_letter', dead.length);
      metrics.deadLetters.inc(dead.length);
      this.#d.log.warn({ shard: this.shard, records: dead.map((d) => ({ seq: d.seq, key: d.key, attempts: d.attempts, error: d.error.code })) }, 'records dead-lettered');
    }
    const handled = new Set([...retrying.keys(), ...expired.map((p) => p.seq)]);
    const stillPending = new Set(newPending.map((p) => p.seq));
    const next: Checkpoint = {
      seq: Math.max(c.seq, advanceTo),
      pending: [...c.pending.filter((p) => !handled.has(p.seq)), ...newPending].sort((a, b) => a.seq - b.seq),
      counts: { ...c.counts },
      // Records that left the shard in this step: finished (any outcome) or expired; pending ones count when they finish.
      handled: c.handled + fetched.filter((f) => !stillPending.has(f.seq)).length + expired.length,
      epoch: c.epoch,
    };
    for (const [k, v] of Object.entries(counters)) next.counts[k] = (next.counts[k] ?? 0) + v;
    await this.#ckpt.save(next);
    metrics.countUser(counters);
    this.#c = next;
    this.#publishPosition(false);
  }

  /**
   * Commits the consumer-group position (lowest pending sequence) for observers — lag tooling, other
   * consumers of the group. The checkpoint is the truth, so this is neither awaited by the batch loop nor
   * done more than once a second (measured: it was a third store turn on every batch's path).
   */
  #publishPosition(force: boolean): Promise<void> {
    const c = this.#c;
    if (!c || (!force && Date.now() - this.#positionAt < 1000) || this.#positionBusy) return Promise.resolve();
    this.#positionAt = Date.now();
    this.#positionBusy = true;
    const low = c.pending.length > 0 ? Math.min(c.pending[0]!.seq, c.seq) : c.seq;
    return this.#d.streams
      .group(this.#d.stream, this.#d.o.function)
      .then((g) => g.commit({ stream: this.#d.stream, shard: this.shard, seq: low }))
      .then(() => undefined)
      .catch((e: unknown) => this.#d.log.debug({ err: e }, 'group commit failed'))
      .finally(() => (this.#positionBusy = false));
  }

  /**
   * Commits each record's effects: records of one key in order (stopping at the first failure, the rest
   * of that key wait), keys in parallel.
   */
  async #commitEffects(records: BatchRecordInput[], effects: BatchEffects): Promise<CommitResult[]> {
    const out: CommitResult[] = new Array(records.length);
    const byKey = new Map<string, number[]>();
    records.forEach((r, i) => {
      const l = byKey.get(r.key);
      if (l) l.push(i);
      else byKey.set(r.key, [i]);
    });
    await Promise.all(
      [...byKey.values()].map(async (idxs) => {
        let failed = false;
        for (const i of idxs) {
          if (failed) {
            out[i] = 'blocked';
            continue;
          }
          const f = effects.error ?? effects.records[i]!.failure;
          if (f) {
            out[i] = { error: { code: f.error.code, message: f.error.message }, nonRetryable: f.nonRetryable, ...(f.retryAfterMs !== undefined ? { retryAfterMs: f.retryAfterMs } : {}) };
            failed = true;
            continue;
          }
          const r = await this.#commitOne(records[i]!, effects.records[i]!);
          if (typeof r === 'object') {
            out[i] = { error: r.error, nonRetryable: r.permanent };
            failed = true;
          } else out[i] = r;
        }
      }),
    );
    return out;
  }

  async #commitOne(rec: BatchRecordInput, fx: RecordEffects) {
    if (this.#d.objects && rec.type !== 'record') return commitObjectEffects(this.#d.objects, this.#d.o.function, rec, fx);
    return 'ok' as const;
  }

  #backoff(attempts: number): number {
    const { initialBackoffMs, maxBackoffMs } = this.#d.o.retries;
    const base = Math.min(maxBackoffMs, initialBackoffMs * 2 ** (attempts - 1));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  #letter(p: PendingRecord, attempts: number, error: { code: string; message: string }): DeadLetter {
    return {
      function: this.#d.o.function,
      source: this.#d.stream,
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

/** Sleeps, ending early (without throwing) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
