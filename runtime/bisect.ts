/**
 * Bisect on a batch failure (Lambda's BisectBatchOnFunctionError, on by default here): when the handler
 * throws for a whole batch, its two halves run again, recursively, until the failing records are
 * isolated. The result is ONE {@link BatchEffects} in the shape the committer already knows: the records
 * of halves that succeeded carry their effects, each isolated failing record carries the failure as a
 * per-record `failure` (as if the handler had called `record.fail`), and the counters are the sum of the
 * halves that succeeded.
 *
 * What follows from that shape, with no other change downstream:
 * - the neighbours of a poison record commit in the same step, at their first attempt;
 * - only the isolated record is retried (its `attempt` is unchanged: the halving runs are not attempts)
 *   and dead-lettered per the retry policy (runtime/retry-policy.ts);
 * - counters stay exact (runtime/checkpoint.ts): a failed half counts nothing, a record failed alone is
 *   retried in a counting invocation, exactly as a `record.fail`ed one is;
 * - per-key order holds: the committer stops a key at its first failed record (`blocked`).
 *
 * Bounded: at most {@link bisectBudget}(n) handler runs per batch (4·⌈log₂ n⌉ + 1: enough to isolate two
 * poison records of any batch). When the budget is spent — a batch where everything fails, a backend
 * outage — the halves not yet resolved keep their failure for all their records, which is what a batch
 * without bisect gets; so a systemic failure costs a bounded number of extra runs, never 2n.
 */
import { SluiceError } from '../bindings/errors.ts';
import { batchFailure, type BatchEffects, type RecordEffects } from '../functions/effects.ts';
import type { BatchInput } from './batch-types.ts';

/** Runs one handler invocation (the worker's HandlerRunner). */
export type RunBatch = (batch: BatchInput) => Promise<BatchEffects>;

/** How a batch runs. */
export interface BisectOptions {
  /** Halve a batch that failed as a whole (spec `bisectOnError`). */
  bisect: boolean;
  /** Each invocation's time limit, for the deadline of the halves. */
  timeoutMs: number;
}

/** What running a batch took. */
export interface BatchRun {
  effects: BatchEffects;
  /** Handler invocations made (1 without a split). */
  invocations: number;
}

const noEffects = (): RecordEffects => ({ set: {}, remove: [], updates: [] });

/** Most handler runs for a batch of `n` records. */
export function bisectBudget(n: number): number {
  return n <= 1 ? 1 : 4 * Math.ceil(Math.log2(n)) + 1;
}

/** One invocation; a throw becomes the batch-level failure (`effects.error`). */
export async function runOnce(run: RunBatch, batch: BatchInput): Promise<BatchEffects> {
  try {
    return await run(batch);
  } catch (e) {
    const failure = batchFailure(e);
    if (e instanceof SluiceError) failure.error.code = e.code;
    return { records: batch.records.map(noEffects), counters: {}, error: failure };
  }
}

/** Runs `batch`, bisecting it when it fails as a whole (see the header). */
export async function runBatch(run: RunBatch, batch: BatchInput, o: BisectOptions): Promise<BatchRun> {
  let left = bisectBudget(batch.records.length);
  let invocations = 0;
  let part = 0;
  const go = async (b: BatchInput, parentFailure?: BatchEffects['error']): Promise<BatchEffects> => {
    // Budget spent: this half is not run again; its records keep the failure of the batch they were in.
    if (left <= 0 && parentFailure) return { records: b.records.map(noEffects), counters: {}, error: parentFailure };
    left--;
    invocations++;
    const fx = await runOnce(run, b);
    // A single record is isolated already.
    if (!fx.error || !o.bisect || b.records.length <= 1 || left <= 0) return fx;
    const mid = Math.ceil(b.records.length / 2);
    const half = (records: BatchInput['records']): BatchInput => ({ ...b, batchId: `${batch.batchId}/${++part}`, deadlineMs: Date.now() + o.timeoutMs, records });
    const a = await go(half(b.records.slice(0, mid)), fx.error);
    const z = await go(half(b.records.slice(mid)), fx.error);
    return merge([a, z]);
  };
  const effects = await go(batch);
  return { effects, invocations };
}

/** The halves' effects as one batch's: a half that failed as a whole gives each of its records the failure. */
function merge(parts: BatchEffects[]): BatchEffects {
  const out: BatchEffects = { records: [], counters: {} };
  for (const p of parts) {
    if (p.error) {
      for (const r of p.records) out.records.push({ ...r, failure: p.error });
      continue;
    }
    out.records.push(...p.records);
    for (const [k, v] of Object.entries(p.counters)) out.counters[k] = (out.counters[k] ?? 0) + v;
  }
  return out;
}
