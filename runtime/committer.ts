/**
 * Committing what handlers declared, exactly once in effect (DESIGN invariant 2): effects → store writes.
 *
 * Per record, ONE conditional attribute write applies the effects together with the function's
 * processed-marker for that object (`$sluice.<function>` = the record's sequence), guarded by "the marker
 * is older than this record" — so a redelivered record never applies twice (`duplicate`). Records of one
 * key commit in order and the first failure of a key stops its later records (`blocked`: they wait behind
 * it, DESIGN invariant 3); keys commit in parallel.
 *
 * A commit failure is logged per record and counted (`sluice_commit_failures_total{code}`); whether it is
 * retried is the retry policy's call (runtime/retry-policy.ts), not the committer's.
 *
 * All of a batch's writes — and the caller's extra ops, the previous step's checkpoint — go to the store
 * in ONE {@link Backend.commitBatch}: one LMDB transaction on local, pipelined CAS appends on NATS.
 *
 * The seam for more effect kinds (effect-mode KV updates, emitted stream records, attributes on other
 * objects): each is one more op from {@link Committer.recordOps}, conditioned on the same
 * (function, record) marker, so the per-record result stays one {@link CommitResult}.
 */
import type { Logger } from 'pino';
import { SluiceError } from '../bindings/errors.ts';
import type { AttrsWriteOp, Backend, ObjectBinding, StreamBinding, WriteOp, WriteOpResult } from '../bindings/types.ts';
import { isEmptyEffect, type BatchEffects, type RecordEffects } from '../functions/effects.ts';
import type { BatchRecordInput } from './batch-types.ts';
import type { EffectWriter } from './effect-writes.ts';
import { commitCause } from './chain.ts';
import type { WorkerMetrics } from './metrics.ts';

/** Attribute holding a function's processed-marker on an object. */
export function markerAttr(fn: string): string {
  return `$sluice.${fn}`;
}

/** Result of committing one record's effects. */
export type EffectOutcome = 'ok' | 'duplicate' | 'gone' | { error: { code: string; message: string } };

/** What happened to one record of a batch at commit. */
export type CommitResult =
  | 'ok'
  | 'duplicate'
  | 'gone'
  /** Not attempted: an earlier record of its key failed in this batch. */
  | 'blocked'
  | { stage: 'handler' | 'commit'; error: { code: string; message: string }; nonRetryable: boolean; retryAfterMs?: number };

/** The attribute op of one record's effects with its processed-marker (undefined: nothing to write). */
export function attrsOp(bucket: string, fn: string, rec: BatchRecordInput, fx: RecordEffects): AttrsWriteOp | undefined {
  if (isEmptyEffect(fx)) return undefined;
  // Its change record names this function and the chain depth (runtime/chain.ts).
  return { type: 'attrs', bucket, key: rec.key, set: fx.set, remove: fx.remove, updates: fx.updates, marker: { attr: markerAttr(fn), seq: rec.seq }, cause: commitCause(fn, rec.cause) };
}

/** The outcome of a record from the results of its ops (the first op is the one conditioned on the marker). */
function outcomeOf(results: readonly WriteOpResult[]): EffectOutcome {
  const bad = results.find((r) => r.status === 'failed');
  if (bad && bad.status === 'failed') return { error: errorOf(bad.error) };
  const first = results[0];
  // The marker is at or past this record: an earlier delivery already committed it.
  if (first?.status === 'condition') return 'duplicate';
  // The object was deleted since: its effects have nothing to land on.
  if (first?.status === 'missing') return 'gone';
  return 'ok';
}

function errorOf(e: Error): { code: string; message: string } {
  return e instanceof SluiceError ? { code: e.code, message: e.message } : { code: 'SLUICE_INTERNAL', message: String(e?.message ?? e) };
}

/** What a committer needs. */
export interface CommitterDeps {
  function: string;
  /** Where the batch's writes go: ONE {@link Backend.commitBatch} per batch. */
  backend: Pick<Backend, 'commitBatch'>;
  /** The trigger's bucket (object triggers); undefined for stream triggers (no attribute effects). */
  objects: ObjectBinding | undefined;
  metrics: WorkerMetrics;
  log: Logger;
  /** Commits `record.effects` declarations (KV, stream, other objects). @default none (such effects fail) */
  effects?: EffectWriter;
}

/** A batch's commit: one result per record, and the results of the caller's extra ops (the checkpoint). */
export interface BatchCommit {
  results: CommitResult[];
  extra: WriteOpResult[];
  /**
   * The result of the `tail` op: `ok` only when every record's writes landed (ok, duplicate or gone);
   * `skipped` when a record failed before or in the write (the tail was then not written).
   */
  tail?: WriteOpResult;
}

/** Turns a batch's declared effects into store writes. */
export class Committer {
  readonly #d: CommitterDeps;

  constructor(deps: CommitterDeps) {
    this.#d = deps;
  }

  /**
   * Commits each record's effects in ONE {@link Backend.commitBatch} (one LMDB transaction on local;
   * pipelined CAS appends on NATS) together with `extra` (the previous step's checkpoint): records of one
   * key chained in order (`after`: a failed write skips the later records of its key, `blocked`), keys
   * independent. Handler failures (the batch's or the record's) are failures without a write, and block
   * the later records of their key.
   *
   * `tail` (the checkpoint of THIS step, computed as if every record lands) goes last, marked `afterAll`:
   * it is written in the same store write only when every record's writes land, and is not sent at all
   * when a record already failed before the write (its effects, a handler failure).
   */
  async commitBatch(records: readonly BatchRecordInput[], effects: BatchEffects, shard: number, extra: readonly WriteOp[] = [], tail?: WriteOp): Promise<BatchCommit> {
    const out: CommitResult[] = new Array(records.length);
    const early = await this.#commitExtra(records, effects);
    const ops: WriteOp[] = [];
    /** Per record with writes: [first op, end) in `ops`. */
    const spans: ([number, number] | undefined)[] = new Array(records.length);
    /** Per key: the last op written for it (the next record of the key chains to it), or 'failed' (handler). */
    const last = new Map<string, number | 'failed'>();
    /** Per record without writes of its own: the key's earlier op it waits behind. */
    const waitsFor: (number | undefined)[] = new Array(records.length);
    records.forEach((rec, i) => {
      const prev = last.get(rec.key);
      if (prev === 'failed') {
        out[i] = 'blocked';
        return;
      }
      const f = effects.error ?? effects.records[i]?.failure;
      if (f) {
        out[i] = { stage: 'handler', error: { code: f.error.code, message: f.error.message }, nonRetryable: f.nonRetryable, ...(f.retryAfterMs !== undefined ? { retryAfterMs: f.retryAfterMs } : {}) };
        last.set(rec.key, 'failed');
        return;
      }
      const bad = early.get(i);
      if (bad) {
        out[i] = { stage: 'commit', error: bad, nonRetryable: false };
        this.#failed(shard, rec, bad);
        last.set(rec.key, 'failed');
        return;
      }
      const mine = this.recordOps(rec, effects.records[i]!);
      if (mine.length === 0) {
        // Nothing to write, but it still waits for the key's earlier write: blocked when that one fails.
        if (prev === undefined) out[i] = 'ok';
        else waitsFor[i] = prev;
        return;
      }
      const base = ops.length;
      // The record's ops chain to the key's previous write; within the record they chain to its first op.
      mine.forEach((op, j) => ops.push({ ...op, ...(j === 0 ? (prev !== undefined ? { after: prev } : {}) : { after: base }) }));
      spans[i] = [base, ops.length];
      last.set(rec.key, ops.length - 1);
    });
    const first = ops.length;
    ops.push(...extra);
    // A record decided before the write (handler failure, failed effect, blocked): the tail's premise is off.
    const sendTail = tail !== undefined && !out.some((r) => r !== 'ok' && r !== 'duplicate' && r !== 'gone');
    if (sendTail) ops.push({ ...tail, afterAll: true });
    // Repairable: a system crash may undo this write only together with the checkpoint that passes its
    // records (same write), so they are delivered again — locally one disk sync per batch instead of two.
    const results = ops.length > 0 ? await this.#d.backend.commitBatch(ops, { durability: 'repairable' }) : [];
    records.forEach((rec, i) => {
      const span = spans[i];
      const w = waitsFor[i];
      if (w !== undefined) out[i] = results[w]?.status === 'failed' || results[w]?.status === 'skipped' ? 'blocked' : 'ok';
      if (!span) return;
      const mine = results.slice(span[0], span[1]);
      if (mine[0]?.status === 'skipped') {
        out[i] = 'blocked';
        return;
      }
      const r = outcomeOf(mine);
      if (typeof r === 'object') {
        out[i] = { stage: 'commit', error: r.error, nonRetryable: false };
        this.#failed(shard, rec, r.error);
      } else out[i] = r;
    });
    const commit: BatchCommit = { results: out, extra: results.slice(first, first + extra.length) };
    if (tail !== undefined) commit.tail = sendTail ? results[results.length - 1]! : { status: 'skipped' };
    return commit;
  }

  #failed(shard: number, rec: BatchRecordInput, error: { code: string; message: string }): void {
    this.#d.metrics.commitFailures.inc({ code: error.code });
    this.#d.log.warn({ shard, seq: rec.seq, key: rec.key, code: error.code, error: error.message }, 'commit of a record failed');
  }

  /**
   * Effects beyond the triggering object (`record.effects`: KV items, stream emits, other objects) commit
   * BEFORE the batch's write: the triggering object's marker in that write is the record's "done" mark, so
   * a crash in between leaves effects that carry their own markers / dedupe ids, and the redelivery skips
   * them (runtime/effect-writes.ts). Records of one key go in order (their markers are per triggering key:
   * a later record applied first would make the earlier one look like a duplicate); the first failure of a
   * key stops its later records, as in the batch write. Keys run in parallel.
   * @returns the records whose effects failed, by index
   */
  async #commitExtra(records: readonly BatchRecordInput[], effects: BatchEffects): Promise<Map<number, { code: string; message: string }>> {
    const failed = new Map<number, { code: string; message: string }>();
    if (effects.error) return failed;
    const byKey = new Map<string, number[]>();
    records.forEach((rec, i) => {
      if (!effects.records[i]?.extra?.length) return;
      const l = byKey.get(rec.key);
      if (l) l.push(i);
      else byKey.set(rec.key, [i]);
    });
    if (byKey.size === 0) return failed;
    // Handler failures stop their key too: a record after one must not apply its effects ahead of it.
    const stop = new Map<string, number>();
    records.forEach((rec, i) => {
      if (effects.records[i]?.failure && !stop.has(rec.key)) stop.set(rec.key, i);
    });
    await Promise.all(
      [...byKey].map(async ([key, idxs]) => {
        for (const i of idxs) {
          if (i > (stop.get(key) ?? Infinity)) return;
          const fx = effects.records[i]!;
          const r = this.#d.effects
            ? await this.#d.effects.commit(records[i]!, fx.extra!)
            : { error: { code: 'SLUICE_INTERNAL', message: `record '${key}' declared effects but the committer has no effect writer` } };
          if (typeof r === 'object') {
            failed.set(i, r.error);
            return;
          }
        }
      }),
    );
    return failed;
  }

  /**
   * The writes of one record's effects (attribute effects on its object with the processed-marker; stream
   * records have none). The seam for more effect kinds: append their ops here, each conditioned on the
   * same (function, record) marker; the record keeps ONE {@link CommitResult}.
   */
  recordOps(rec: BatchRecordInput, fx: RecordEffects): WriteOp[] {
    if (!this.#d.objects || rec.type === 'record') return [];
    const op = attrsOp(this.#d.objects.bucket, this.#d.function, rec, fx);
    return op ? [op] : [];
  }
}

/** A dead letter as stored on the dead-letter stream (JSON). */
export interface DeadLetter {
  function: string;
  source: string;
  shard: number;
  seq: number;
  key: string;
  type: string;
  version: number;
  attempts: number;
  firstAttemptAt: string;
  deadAt: string;
  error: { code: string; message: string };
}

/** Writes dead letters; throws when the stream refuses any of them (the checkpoint then keeps them pending). */
export async function writeDeadLetters(streams: StreamBinding, stream: string, letters: DeadLetter[]): Promise<void> {
  for (let i = 0; i < letters.length; i += 500) {
    const chunk = letters.slice(i, i + 500);
    const res = await streams.putRecords(
      stream,
      chunk.map((l) => ({ data: JSON.stringify(l), partitionKey: l.key || String(l.seq), headers: { 'content-type': 'application/json', 'sluice-function': l.function } })),
    );
    const bad = res.find((r) => !r.ok);
    if (bad && !bad.ok) throw new SluiceError('SLUICE_INTERNAL', `dead-letter stream '${stream}' refused a record: ${bad.error.message}`);
  }
}
