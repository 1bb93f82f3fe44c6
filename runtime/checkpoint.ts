/**
 * The checkpoint arithmetic, as ONE pure function: `nextCheckpoint(prev, outcome)` → the checkpoint that
 * the shard writes after a step. It carries invariants 2 and 3 (exact counters, per-key order through the
 * pending list), so it has no I/O, no clock and no randomness — the retry policy has already turned every
 * failure into a decision (retry at `nextAt`, or dead-letter) before it is called.
 *
 * ## The counting rule
 *
 * Handlers count per invocation (`ctx.count`), not per record, so a count cannot be split between the
 * records of a batch. The rule that keeps the totals exact anyway:
 *
 * - An invocation that failed as a whole (the handler threw, timed out) counts nothing.
 * - Otherwise its counters are added to the totals **once, when the last record it handled successfully
 *   has finished** — committed, found already committed (`duplicate`: an earlier delivery committed the
 *   effects but its checkpoint was lost), gone, superseded or dead-lettered. When every such record
 *   finished in the same step (the common case) the counters are added at once. When some did not
 *   (their commit failed and is retried, or they wait behind a failed record of their key) the counters
 *   are kept in the checkpoint as a {@link CounterHold} naming those records.
 * - A record named by a hold re-runs later in a **non-counting** invocation (its counts are already in
 *   the hold), never mixed with counting records (runtime/batcher.ts keeps the two apart).
 * - Records the handler itself failed (`record.fail`) are retried in a counting invocation: a handler
 *   counts only records it does not fail (docs/RUNTIME.md).
 *
 * So an attribute write that was applied but answered with a timeout, a refused write and the "4 counted
 * for 2" of records held behind a failed record of their key all count exactly once. Holds move with the
 * position and the pending list in the same conditional write, so a crash loses or keeps all three.
 */
import { BindingError } from '../bindings/errors.ts';
import type { Checkpoint, CounterHold, PendingRecord } from './state.ts';

/** Terminal outcomes of a record in a step: it leaves the shard. */
export const DoneOutcomes = ['ok', 'duplicate', 'gone', 'filtered', 'superseded', 'dead_letter'] as const;
/** One of {@link DoneOutcomes}. */
export type DoneOutcome = (typeof DoneOutcomes)[number];

/** What became of one record the step touched. */
export type RecordFate =
  | { seq: number; key: string; outcome: DoneOutcome }
  | {
      seq: number;
      key: string;
      /** `retry`: failed, runs again at `nextAt`; `waiting`: waits behind an earlier pending record of its key. */
      outcome: 'retry' | 'waiting';
      attempts: number;
      firstAt: number;
      /** Not before this epoch ms (0 for a record that waits behind its key). */
      nextAt: number;
      error?: { code: string; message: string };
      /**
       * True when this step's (counting) invocation handled the record successfully, so the invocation's
       * counters include it: its counters then wait for it in a hold.
       */
      counted: boolean;
    };

/** A pending fate. */
export type PendingFate = Extract<RecordFate, { outcome: 'retry' | 'waiting' }>;

/** Everything a step did, as `nextCheckpoint` needs it. */
export interface BatchOutcome {
  /** Position after this step: the next sequence to read (never moves back). */
  advanceTo: number;
  /** Every record the step touched: new records and retried pending ones, in any order. */
  records: RecordFate[];
  /**
   * The invocation's counters; undefined when it counts nothing (it failed as a whole, no handler ran,
   * or it re-ran records whose counts are held).
   */
  counters?: Record<string, number>;
}

/** True for a fate that leaves the shard. */
export function isDone(f: RecordFate): f is Extract<RecordFate, { outcome: DoneOutcome }> {
  return f.outcome !== 'retry' && f.outcome !== 'waiting';
}

/** Sequences named by the checkpoint's holds: the records whose re-run must not count. */
export function heldSeqs(c: Pick<Checkpoint, 'holds'>): Set<number> {
  const s = new Set<number>();
  for (const h of c.holds) for (const q of h.seqs) s.add(q);
  return s;
}

function add(into: Record<string, number>, counts: Record<string, number>): void {
  for (const [k, v] of Object.entries(counts)) into[k] = (into[k] ?? 0) + v;
}

/**
 * The checkpoint after a step. Pure: `prev` is not modified.
 *
 * Throws SLUICE_INTERNAL when the outcome contradicts the checkpoint (a record reported twice, or a counting
 * invocation over a record whose counts are already held) — a bug in the caller, caught before it can
 * corrupt counters.
 */
export function nextCheckpoint(prev: Readonly<Checkpoint>, outcome: BatchOutcome): Checkpoint {
  const touched = new Set<number>();
  for (const f of outcome.records) {
    if (touched.has(f.seq)) throw new BindingError('SLUICE_INTERNAL', `nextCheckpoint: record ${f.seq} reported twice in one step`);
    touched.add(f.seq);
  }
  const held = heldSeqs(prev);
  const done = new Set<number>();
  const pending: PendingRecord[] = prev.pending.filter((p) => !touched.has(p.seq));
  const waitFor: number[] = [];
  for (const f of outcome.records) {
    if (isDone(f)) {
      done.add(f.seq);
      continue;
    }
    const p: PendingRecord = { seq: f.seq, key: f.key, attempts: f.attempts, firstAt: f.firstAt, nextAt: f.nextAt };
    if (f.error) p.error = { code: f.error.code, message: f.error.message };
    pending.push(p);
    if (outcome.counters && f.counted) {
      if (held.has(f.seq)) throw new BindingError('SLUICE_INTERNAL', `nextCheckpoint: record ${f.seq} ran in a counting invocation while its counts are held`);
      waitFor.push(f.seq);
    }
  }
  pending.sort((a, b) => a.seq - b.seq);

  const counts = { ...prev.counts };
  const holds: CounterHold[] = [];
  // Older holds first: a record that finished releases its share; an empty hold adds its counters.
  for (const h of prev.holds) {
    const seqs = h.seqs.filter((s) => !done.has(s));
    if (seqs.length === 0) add(counts, h.counts);
    else holds.push({ counts: { ...h.counts }, seqs });
  }
  if (outcome.counters && Object.keys(outcome.counters).length > 0) {
    if (waitFor.length === 0) add(counts, outcome.counters);
    else holds.push({ counts: { ...outcome.counters }, seqs: waitFor.sort((a, b) => a - b) });
  }
  return {
    seq: Math.max(prev.seq, outcome.advanceTo),
    pending,
    holds,
    counts,
    // Records that left the shard in this step (any terminal outcome); pending ones count when they finish.
    handled: prev.handled + done.size,
    epoch: prev.epoch,
  };
}
