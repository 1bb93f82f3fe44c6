/**
 * Forming the next micro-batch of a shard, and per-key gating (DESIGN invariant 3).
 *
 * - Due retries go before new records. They are taken in sequence order, never ahead of an earlier pending
 *   record of their key, and never mixing records whose counts are held (runtime/checkpoint.ts: they re-run
 *   without counting) with records that count — the first due record decides which kind this batch is.
 * - Otherwise new records are pulled from the {@link RecordSource}: up to `maxRecords`, waiting for the first
 *   (at most until the next retry is due), then up to `maxWait` to fill the batch, and cut at `maxBytes`
 *   (records past the cut are pulled again next time).
 * - A new record whose key waits behind a pending record joins the pending list instead of running.
 *
 * The batcher only reads; what becomes of each record is decided after the handler and the commit.
 */
import type { BatchRecordInput } from './batch-types.ts';
import { heldSeqs, type RecordFate } from './checkpoint.ts';
import type { RecordSource } from './records.ts';
import type { Checkpoint, PendingRecord } from './state.ts';

/** Most pending records per shard; beyond it the shard stops pulling new records (backpressure). */
export const MAX_PENDING = 1000;
/** Longest idle wait for new records, so stop requests and due retries are seen promptly. */
export const IDLE_WAIT_MS = 200;

/** Batch limits (from the trigger's `batch` options). */
export interface BatchLimits {
  maxRecords: number;
  maxBytes: number;
  maxWaitMs: number;
}

/** One record to run, with the pending entry it retries (if any). */
export interface ToRun {
  input: BatchRecordInput;
  /** The pending record this is an attempt of; undefined for a new record. */
  retry?: PendingRecord;
}

/** The work of one shard step. */
export interface Step {
  /** True when the handler's counters of this batch count (false: a re-run of records whose counts are held). */
  counting: boolean;
  /** The checkpoint position after this step. */
  advanceTo: number;
  /** Records for the handler, in shard order. */
  run: ToRun[];
  /** Records already decided: filtered, superseded, or waiting behind their key. */
  fates: RecordFate[];
  /** Pending records the source no longer has (they are dead-lettered). */
  expired: PendingRecord[];
  /** Records the source refused to run (past the hop limit, runtime/chain.ts): dead-lettered with `error`. */
  refused: (PendingRecord & { error: { code: string; message: string } })[];
  /** Records behind the head of the shard after this pull (new-record steps only). */
  lag?: number;
}

/** Pending records due now, in order, never ahead of an earlier pending record of their key, one kind only. */
export function dueRecords(c: Pick<Checkpoint, 'pending' | 'holds'>, now: number, max: number): { due: PendingRecord[]; counting: boolean } {
  const held = heldSeqs(c);
  const out: PendingRecord[] = [];
  const blocked = new Set<string>();
  let kind: boolean | undefined;
  for (const p of c.pending) {
    if (out.length >= max) break;
    if (blocked.has(p.key)) continue;
    const isHeld = held.has(p.seq);
    if (p.nextAt > now || (kind !== undefined && kind !== isHeld)) {
      // Not now, or of the other kind: later records of its key must wait too.
      blocked.add(p.key);
      continue;
    }
    kind = isHeld;
    out.push(p);
  }
  return { due: out, counting: kind !== true };
}

/** Forms the steps of one shard. */
export class Batcher {
  readonly #source: RecordSource;
  readonly #shard: number;
  readonly #limits: BatchLimits;

  constructor(source: RecordSource, shard: number, limits: BatchLimits) {
    this.#source = source;
    this.#shard = shard;
    this.#limits = limits;
  }

  /**
   * The next step from checkpoint `c`; undefined when there is nothing to do (after waiting a while, unless
   * `noWait`: then at once, so the caller can write its checkpoint before it idles).
   */
  async next(c: Readonly<Checkpoint>, now: number, signal: AbortSignal, noWait = false): Promise<Step | undefined> {
    const { due, counting } = dueRecords(c, now, this.#limits.maxRecords);
    if (due.length > 0) return this.#retry(c, due, counting);
    if (c.pending.length >= MAX_PENDING) {
      if (!noWait) await sleep(IDLE_WAIT_MS, signal);
      return undefined;
    }
    return this.#fresh(c, now, signal, noWait);
  }

  async #retry(c: Readonly<Checkpoint>, due: PendingRecord[], counting: boolean): Promise<Step> {
    const bySeq = new Map(due.map((p) => [p.seq, p]));
    const got = await this.#source.reread(
      this.#shard,
      due.map((p) => p.seq),
      (seq) => (bySeq.get(seq)?.attempts ?? 0) + 1,
    );
    const step: Step = { counting, advanceTo: c.seq, run: [], fates: [], expired: [], refused: [] };
    got.forEach((f, i) => {
      const p = due[i]!;
      if (!f) step.expired.push(p);
      else if (f.dead) step.refused.push({ ...p, error: f.dead });
      else if (!f.input) step.fates.push({ seq: f.seq, key: f.key, outcome: f.skip ?? 'superseded' });
      else step.run.push({ input: f.input, retry: p });
    });
    return step;
  }

  async #fresh(c: Readonly<Checkpoint>, now: number, signal: AbortSignal, noWait: boolean): Promise<Step | undefined> {
    const { maxRecords, maxBytes, maxWaitMs } = this.#limits;
    const nextDue = c.pending.reduce((m, p) => Math.min(m, p.nextAt), Infinity);
    const waitMs = noWait ? 0 : Math.max(0, Math.min(IDLE_WAIT_MS, nextDue - now));
    const { records, lag } = await this.#source.pull(this.#shard, c.seq, { limit: maxRecords, waitMs, fillMs: maxWaitMs, signal });
    if (records.length === 0) return { counting: true, advanceTo: c.seq, run: [], fates: [], expired: [], refused: [], lag };
    // Keep the batch within maxBytes: records past the cut are pulled again next time.
    let bytes = 0;
    let cut = records.length;
    for (let i = 0; i < records.length; i++) {
      bytes += records[i]!.bytes;
      if (bytes > maxBytes && i > 0) {
        cut = i;
        break;
      }
    }
    const kept = records.slice(0, cut);
    const step: Step = { counting: true, advanceTo: kept[kept.length - 1]!.seq + 1, run: [], fates: [], expired: [], refused: [], lag: lag + (records.length - cut) };
    // New records whose key waits behind a pending record join the pending list instead of running.
    const waitingKeys = new Set(c.pending.map((p) => p.key));
    for (const f of kept) {
      // A refused record (hop limit) behind a pending one of its key waits like any other (per-key order).
      if (!f.input && !f.dead) step.fates.push({ seq: f.seq, key: f.key, outcome: f.skip ?? 'filtered' });
      else if (waitingKeys.has(f.key)) step.fates.push({ seq: f.seq, key: f.key, outcome: 'waiting', attempts: 0, firstAt: now, nextAt: 0, counted: false });
      else if (f.dead) step.refused.push({ seq: f.seq, key: f.key, attempts: 1, firstAt: now, nextAt: 0, error: f.dead });
      else if (f.input) step.run.push({ input: f.input });
    }
    return step;
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
