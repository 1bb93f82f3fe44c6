/** bisect: halving a failed batch until its failing records are isolated (runtime/bisect.ts). */
import { describe, expect, it } from 'vitest';
import { NonRetryableError } from '../../functions/types.ts';
import type { BatchEffects } from '../../functions/effects.ts';
import type { BatchInput, BatchRecordInput } from '../../runtime/batch-types.ts';
import { bisectBudget, runBatch, type RunBatch } from '../../runtime/bisect.ts';

const rec = (key: string, seq: number): BatchRecordInput => ({
  key, type: 'put', source: 'b', shard: 0, seq, version: seq, size: 0, etag: '', mtimeMs: 0, contentType: '', attrs: {}, headers: {}, attempt: 1,
});
const batch = (keys: string[]): BatchInput => ({ function: 'f', source: 'b', shard: 0, batchId: 'f-0-1', deadlineMs: 0, records: keys.map((k, i) => rec(k, i + 1)) });

/** A handler that throws when any record's key is poisoned, else sets `ok` on each and counts them. */
function handler(poison: (k: string) => Error | undefined, calls: string[][]): RunBatch {
  return async (b) => {
    calls.push(b.records.map((r) => r.key));
    for (const r of b.records) {
      const e = poison(r.key);
      if (e) throw e;
    }
    const fx: BatchEffects = { records: b.records.map(() => ({ set: { ok: true }, remove: [], updates: [] })), counters: { seen: b.records.length } };
    return fx;
  };
}

const keys = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`);

describe('bisect', () => {
  it('bisect - isolates one poison record of 100 in at most 1 + 2·⌈log₂ 100⌉ runs; neighbours keep their effects and counts', async () => {
    const calls: string[][] = [];
    const r = await runBatch(handler((k) => (k === 'k37' ? new Error('bad k37') : undefined), calls), batch(keys(100)), { bisect: true, timeoutMs: 1000 });
    expect(r.invocations).toBe(13); // 100 → 50 → 25 → 13 → 6 → 3 → 1: two runs per level
    expect(r.effects.error).toBeUndefined();
    expect(r.effects.counters).toEqual({ seen: 99 });
    r.effects.records.forEach((fx, i) => {
      if (i === 37) expect(fx.failure?.error.message).toBe('bad k37');
      else expect([fx.failure, fx.set]).toEqual([undefined, { ok: true }]);
    });
    // Halves keep batch order; the failing record ran alone once.
    expect(calls.filter((c) => c.length === 1 && c[0] === 'k37')).toHaveLength(1);
    expect(calls.every((c) => c.every((k, i) => i === 0 || Number(k.slice(1)) === Number(c[i - 1]!.slice(1)) + 1))).toBe(true);
  });

  it('bisect - isolates two poison records in different halves', async () => {
    const r = await runBatch(handler((k) => (k === 'k3' || k === 'k60' ? new Error(k) : undefined), []), batch(keys(64)), { bisect: true, timeoutMs: 1000 });
    expect(r.effects.records.flatMap((fx, i) => (fx.failure ? [i] : []))).toEqual([3, 60]);
    expect(r.effects.counters).toEqual({ seen: 62 });
    expect(r.invocations).toBeLessThanOrEqual(bisectBudget(64));
  });

  it('bisect - a batch where every record fails costs at most bisectBudget(n) runs, and fails every record', async () => {
    const calls: string[][] = [];
    const r = await runBatch(handler(() => new Error('backend down'), calls), batch(keys(100)), { bisect: true, timeoutMs: 1000 });
    expect(calls.length).toBe(r.invocations);
    expect(r.invocations).toBeLessThanOrEqual(bisectBudget(100));
    expect(bisectBudget(100)).toBe(29);
    expect(r.effects.records.every((fx) => fx.failure?.error.message === 'backend down')).toBe(true);
    expect(r.effects.counters).toEqual({});
  });

  it('bisect - the failure keeps nonRetryable; a single record and bisect off keep the batch-level error', async () => {
    const poison = (k: string) => (k === 'k1' ? new NonRetryableError('never') : undefined);
    const split = await runBatch(handler(poison, []), batch(keys(4)), { bisect: true, timeoutMs: 1000 });
    expect(split.effects.records[1]?.failure?.nonRetryable).toBe(true);
    const off = await runBatch(handler(poison, []), batch(keys(4)), { bisect: false, timeoutMs: 1000 });
    expect([off.invocations, off.effects.error?.nonRetryable, off.effects.counters]).toEqual([1, true, {}]);
    const one = await runBatch(handler(poison, []), batch(['k1']), { bisect: true, timeoutMs: 1000 });
    expect([one.invocations, one.effects.error?.error.message]).toEqual([1, 'never']);
  });
});
