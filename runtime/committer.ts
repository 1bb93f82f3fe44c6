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
 * The seam for more effect kinds (effect-mode KV updates, emitted stream records, attributes on other
 * objects): each is one more write inside {@link Committer.commitRecord}, conditioned on the same
 * (function, record) marker, so the per-record result stays one {@link CommitResult}.
 */
import type { Logger } from 'pino';
import { SluiceError } from '../bindings/errors.ts';
import type { Expression, ObjectBinding, StreamBinding, Value } from '../bindings/types.ts';
import { isEmptyEffect, type BatchEffects, type RecordEffects } from '../functions/effects.ts';
import type { BatchRecordInput } from './batch-types.ts';
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

/** The update expressions of one record's effects plus the marker write. */
export function effectUpdates(fx: RecordEffects, fn: string, seq: number): Expression[] {
  const names: Record<string, string> = { '#m': markerAttr(fn) };
  const values: Record<string, Value> = { ':seq': seq };
  const set: string[] = ['#m = :seq'];
  let i = 0;
  for (const [k, v] of Object.entries(fx.set)) {
    names[`#s${i}`] = k;
    values[`:s${i}`] = v;
    set.push(`#s${i} = :s${i}`);
    i++;
  }
  const remove = fx.remove.map((k, j) => {
    names[`#r${j}`] = k;
    return `#r${j}`;
  });
  const first: Expression = { expr: `SET ${set.join(', ')}${remove.length ? ` REMOVE ${remove.join(', ')}` : ''}`, names, values };
  return [first, ...fx.updates];
}

/** Commits one object record's attribute effects with its marker. */
export async function commitObjectEffects(objects: ObjectBinding, fn: string, rec: BatchRecordInput, fx: RecordEffects): Promise<EffectOutcome> {
  if (isEmptyEffect(fx)) return 'ok';
  try {
    await objects.updateAttrs(rec.key, effectUpdates(fx, fn, rec.seq), {
      // Its change record names this function and the chain depth (runtime/chain.ts).
      cause: commitCause(fn, rec.cause),
      condition: { expr: 'not_exists(#m) OR #m < :seq', names: { '#m': markerAttr(fn) }, values: { ':seq': rec.seq } },
    });
    return 'ok';
  } catch (e) {
    if (e instanceof SluiceError) {
      // The marker is at or past this record: an earlier delivery already committed it.
      if (e.code === 'SLUICE_CONDITION_FAILED') return 'duplicate';
      // The object was deleted since: its effects have nothing to land on.
      if (e.code === 'SLUICE_NOT_FOUND') return 'gone';
      return { error: { code: e.code, message: e.message } };
    }
    return { error: { code: 'SLUICE_INTERNAL', message: String((e as Error)?.message ?? e) } };
  }
}

/** What a committer needs. */
export interface CommitterDeps {
  function: string;
  /** The trigger's bucket (object triggers); undefined for stream triggers (no attribute effects). */
  objects: ObjectBinding | undefined;
  metrics: WorkerMetrics;
  log: Logger;
}

/** Turns a batch's declared effects into store writes. */
export class Committer {
  readonly #d: CommitterDeps;

  constructor(deps: CommitterDeps) {
    this.#d = deps;
  }

  /**
   * Commits each record's effects: records of one key in order (stopping at the first failure, the rest
   * of that key are `blocked`), keys in parallel. Handler failures (the batch's or the record's) are
   * reported as failures without a write.
   */
  async commitBatch(records: readonly BatchRecordInput[], effects: BatchEffects, shard: number): Promise<CommitResult[]> {
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
          const f = effects.error ?? effects.records[i]?.failure;
          if (f) {
            out[i] = { stage: 'handler', error: { code: f.error.code, message: f.error.message }, nonRetryable: f.nonRetryable, ...(f.retryAfterMs !== undefined ? { retryAfterMs: f.retryAfterMs } : {}) };
            failed = true;
            continue;
          }
          const r = await this.commitRecord(records[i]!, effects.records[i]!);
          if (typeof r === 'object') {
            out[i] = { stage: 'commit', error: r.error, nonRetryable: false };
            failed = true;
            this.#d.metrics.commitFailures.inc({ code: r.error.code });
            this.#d.log.warn({ shard, seq: records[i]!.seq, key: records[i]!.key, code: r.error.code, error: r.error.message }, 'commit of a record failed');
          } else out[i] = r;
        }
      }),
    );
    return out;
  }

  /** Commits one record's effects (attribute effects on its object; stream records have none to write). */
  async commitRecord(rec: BatchRecordInput, fx: RecordEffects): Promise<EffectOutcome> {
    if (this.#d.objects && rec.type !== 'record') return commitObjectEffects(this.#d.objects, this.#d.function, rec, fx);
    return 'ok';
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
