/** checkpoint: the pure arithmetic of position, pending list and exact counters (runtime/checkpoint.ts). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dueRecords } from '../../runtime/batcher.ts';
import { DoneOutcomes, nextCheckpoint, type RecordFate } from '../../runtime/checkpoint.ts';
import type { Checkpoint } from '../../runtime/state.ts';

const fresh = (seq = 10): Checkpoint => ({ seq, pending: [], holds: [], counts: {}, handled: 0, epoch: 1 });
const done = (seq: number, outcome: (typeof DoneOutcomes)[number] = 'ok', key = `k${seq}`): RecordFate => ({ seq, key, outcome });
const retry = (seq: number, counted: boolean, key = `k${seq}`, attempts = 1): RecordFate => ({ seq, key, outcome: 'retry', attempts, firstAt: 100, nextAt: 200, error: { code: 'SLUICE_TIMEOUT', message: 't' }, counted });
const waiting = (seq: number, counted: boolean, key = `k${seq}`): RecordFate => ({ seq, key, outcome: 'waiting', attempts: 0, firstAt: 100, nextAt: 0, counted });

describe('checkpoint', () => {
  it('checkpoint - every terminal outcome finishes the record and the counters add at once', () => {
    for (const o of DoneOutcomes) {
      const n = nextCheckpoint(fresh(), { advanceTo: 11, records: [done(10, o)], counters: { seen: 1 } });
      expect(n, o).toEqual({ seq: 11, pending: [], holds: [], counts: { seen: 1 }, handled: 1, epoch: 1 });
    }
  });

  it('checkpoint - the position never moves back and prev is not modified', () => {
    const prev = fresh(50);
    const copy = structuredClone(prev);
    const n = nextCheckpoint(prev, { advanceTo: 20, records: [] });
    expect(n.seq).toBe(50);
    expect(prev).toEqual(copy);
  });

  it('checkpoint - a failed invocation (no counters) counts nothing and its records go pending', () => {
    const n = nextCheckpoint(fresh(), { advanceTo: 12, records: [retry(10, false), retry(11, false)] });
    expect(n.counts).toEqual({});
    expect(n.holds).toEqual([]);
    expect(n.pending.map((p) => p.seq)).toEqual([10, 11]);
    expect(n.handled).toBe(0);
  });

  it('checkpoint - a commit answered with a timeout holds the counters until the record finishes (applied write: duplicate)', () => {
    // Batch of 3, handler counted 3; record 11's write was applied but answered SLUICE_TIMEOUT.
    const a = nextCheckpoint(fresh(), { advanceTo: 13, records: [done(10), retry(11, true), done(12)], counters: { seen: 3 } });
    expect(a.counts).toEqual({});
    expect(a.holds).toEqual([{ counts: { seen: 3 }, seqs: [11] }]);
    expect(a.pending.map((p) => p.seq)).toEqual([11]);
    // Its re-run does not count (held); its commit meets the marker: duplicate. The hold is released.
    const b = nextCheckpoint(a, { advanceTo: 13, records: [done(11, 'duplicate')] });
    expect(b).toMatchObject({ counts: { seen: 3 }, holds: [], pending: [], handled: 3, seq: 13 });
  });

  it('checkpoint - a refused write: the hold survives further failures and releases on dead letter', () => {
    const a = nextCheckpoint(fresh(), { advanceTo: 11, records: [retry(10, true)], counters: { seen: 1, found: 2 } });
    const b = nextCheckpoint(a, { advanceTo: 11, records: [retry(10, true, 'k10', 2)] });
    expect(b.holds).toEqual([{ counts: { seen: 1, found: 2 }, seqs: [10] }]);
    expect(b.pending[0]!.attempts).toBe(2);
    const c = nextCheckpoint(b, { advanceTo: 11, records: [done(10, 'dead_letter')] });
    expect(c).toMatchObject({ counts: { seen: 1, found: 2 }, holds: [], pending: [], handled: 1 });
  });

  it('checkpoint - records held behind a failed record of their key: counted once, not "4 for 2"', () => {
    // Key a: 10 fails in the handler (not counted: handlers count only records they do not fail), 11 ran
    // fine but waits behind it. The handler counted 1 (for 11).
    const a = nextCheckpoint(fresh(), { advanceTo: 12, records: [retry(10, false, 'a'), waiting(11, true, 'a')], counters: { seen: 1 } });
    expect(a.holds).toEqual([{ counts: { seen: 1 }, seqs: [11] }]);
    // Retry: only 10 is due (11 is of the held kind, and behind it); it runs in a counting invocation.
    const due = dueRecords(a, 1000, 100);
    expect(due).toEqual({ due: [a.pending[0]], counting: true });
    const b = nextCheckpoint(a, { advanceTo: 12, records: [done(10)], counters: { seen: 1 } });
    expect(b.counts).toEqual({ seen: 1 });
    expect(dueRecords(b, 1000, 100)).toEqual({ due: [b.pending[0]], counting: false });
    // 11 re-runs without counting; it commits; the hold adds its 1. Total 2 for 2.
    const c = nextCheckpoint(b, { advanceTo: 12, records: [done(11)] });
    expect(c).toMatchObject({ counts: { seen: 2 }, holds: [], pending: [], handled: 2 });
  });

  it('checkpoint - a hold waits for all its records; holds are independent', () => {
    const a = nextCheckpoint(fresh(), { advanceTo: 14, records: [retry(10, true), done(11), retry(12, true), waiting(13, true, 'k12')], counters: { n: 4 } });
    expect(a.holds).toEqual([{ counts: { n: 4 }, seqs: [10, 12, 13] }]);
    const b = nextCheckpoint(a, { advanceTo: 16, records: [retry(14, true), done(15)], counters: { n: 2 } });
    expect(b.holds).toEqual([
      { counts: { n: 4 }, seqs: [10, 12, 13] },
      { counts: { n: 2 }, seqs: [14] },
    ]);
    const c = nextCheckpoint(b, { advanceTo: 16, records: [done(10), done(12, 'gone'), done(14, 'superseded')] });
    expect(c.counts).toEqual({ n: 2 });
    expect(c.holds).toEqual([{ counts: { n: 4 }, seqs: [13] }]);
    const d = nextCheckpoint(c, { advanceTo: 16, records: [done(13, 'duplicate')] });
    expect(d).toMatchObject({ counts: { n: 6 }, holds: [], pending: [], handled: 6 });
  });

  it('checkpoint - records that never ran (waiting behind their key) and empty counters make no hold', () => {
    const prev: Checkpoint = { ...fresh(), pending: [{ seq: 5, key: 'a', attempts: 1, firstAt: 1, nextAt: 999 }] };
    const n = nextCheckpoint(prev, { advanceTo: 12, records: [waiting(10, false, 'a'), done(11, 'filtered')], counters: {} });
    expect(n.holds).toEqual([]);
    expect(n.pending.map((p) => [p.seq, p.attempts])).toEqual([
      [5, 1],
      [10, 0],
    ]);
    expect(n.handled).toBe(1);
    const m = nextCheckpoint(fresh(), { advanceTo: 11, records: [retry(10, true)], counters: {} });
    expect(m.holds).toEqual([]);
  });

  it('checkpoint - pending stays sorted and keeps untouched records', () => {
    const prev: Checkpoint = {
      ...fresh(30),
      pending: [
        { seq: 3, key: 'x', attempts: 2, firstAt: 1, nextAt: 5 },
        { seq: 20, key: 'y', attempts: 1, firstAt: 1, nextAt: 5 },
      ],
    };
    const n = nextCheckpoint(prev, { advanceTo: 30, records: [retry(20, false, 'y', 2), waiting(31, false, 'x'), retry(25, false, 'z')] });
    expect(n.pending.map((p) => p.seq)).toEqual([3, 20, 25, 31]);
    expect(n.pending[1]).toMatchObject({ attempts: 2, error: { code: 'SLUICE_TIMEOUT' } });
  });

  it('checkpoint - contradictions are refused: a record twice, or a counting run over held counts', () => {
    expect(() => nextCheckpoint(fresh(), { advanceTo: 11, records: [done(10), retry(10, false)] })).toThrow(/reported twice/);
    const a = nextCheckpoint(fresh(), { advanceTo: 11, records: [retry(10, true)], counters: { n: 1 } });
    expect(() => nextCheckpoint(a, { advanceTo: 11, records: [retry(10, true)], counters: { n: 1 } })).toThrow(/counts are held/);
  });

  it('checkpoint - dueRecords: in order, one kind per batch, never ahead of an earlier record of the key', () => {
    const c: Checkpoint = {
      ...fresh(100),
      pending: [
        { seq: 1, key: 'a', attempts: 1, firstAt: 0, nextAt: 50 },
        { seq: 2, key: 'b', attempts: 1, firstAt: 0, nextAt: 500 },
        { seq: 3, key: 'b', attempts: 0, firstAt: 0, nextAt: 0 },
        { seq: 4, key: 'c', attempts: 0, firstAt: 0, nextAt: 0 },
        { seq: 5, key: 'a', attempts: 0, firstAt: 0, nextAt: 0 },
        { seq: 6, key: 'd', attempts: 1, firstAt: 0, nextAt: 10 },
      ],
      holds: [{ counts: { n: 1 }, seqs: [4] }],
    };
    // 2 is not due, so 3 (key b) waits; 4 is held (other kind), so key c waits; 5 follows 1 (key a).
    expect(dueRecords(c, 100, 10).due.map((p) => p.seq)).toEqual([1, 5, 6]);
    expect(dueRecords(c, 100, 2).due.map((p) => p.seq)).toEqual([1, 5]);
    expect(dueRecords({ ...c, pending: c.pending.slice(3) }, 100, 10)).toMatchObject({ counting: false });
    expect(dueRecords({ ...c, pending: c.pending.slice(3) }, 100, 10).due.map((p) => p.seq)).toEqual([4]);
    // At 5 nothing that failed is due; the held record 4 (waiting, nextAt 0) is, and forms a non-counting batch.
    expect(dueRecords(c, 5, 10)).toEqual({ due: [c.pending[3]], counting: false });
  });

  /**
   * A model shard: records with keys, batches formed by dueRecords (retries) or in order (new records),
   * per record a random fate — handler failure, commit failure, commit, duplicate, gone, superseded on
   * re-read — and sometimes a batch that throws; per-key commit order as the committer does it; retries
   * until a max attempt count, then dead letter. The handler counts 1 per record it does not fail.
   * Exact means: when the shard is drained, the total equals the number of distinct records that ran
   * successfully in a counting invocation, and at every step totals + holds = everything counted.
   */
  it('checkpoint - model: counters exact and per-key order kept under every mix of outcomes', () => {
    const fate = fc.constantFrom('ok', 'ok', 'duplicate', 'gone', 'handler_fail', 'commit_fail', 'superseded');
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'b', 'c', 'd'), { minLength: 1, maxLength: 24 }),
        fc.array(fate, { minLength: 200, maxLength: 200 }),
        fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
        fc.integer({ min: 1, max: 6 }),
        (keys, fates, throws, batchSize) => {
          let c = fresh(0);
          let fi = 0;
          let ti = 0;
          const nextFate = () => fates[fi++ % fates.length]!;
          const ranOkCounting = new Set<number>();
          let countedTotal = 0;
          const committed: number[] = [];
          for (let now = 1; now < 400; now++) {
            if (c.seq >= keys.length && c.pending.length === 0) break;
            const { due, counting } = dueRecords(c, now, batchSize);
            const out: RecordFate[] = [];
            let run: { seq: number; key: string; attempt: number; firstAt: number }[] = [];
            let advanceTo = c.seq;
            if (due.length > 0) {
              for (const p of due) {
                // A re-read may find the object changed: superseded, done without the handler.
                if (nextFate() === 'superseded') out.push({ seq: p.seq, key: p.key, outcome: 'superseded' });
                else run.push({ seq: p.seq, key: p.key, attempt: p.attempts + 1, firstAt: p.firstAt });
              }
            } else {
              const waitingKeys = new Set(c.pending.map((p) => p.key));
              for (let s = c.seq; s < Math.min(keys.length, c.seq + batchSize); s++) {
                const key = keys[s]!;
                advanceTo = s + 1;
                if (waitingKeys.has(key)) out.push({ seq: s, key, outcome: 'waiting', attempts: 0, firstAt: now, nextAt: 0, counted: false });
                else run.push({ seq: s, key, attempt: 1, firstAt: now });
              }
            }
            const threw = run.length > 0 && throws[ti++ % throws.length]! && ti % 3 === 0;
            const handlerOk = new Map(run.map((r) => [r.seq, !threw && nextFate() !== 'handler_fail']));
            let counters: Record<string, number> | undefined;
            if (counting && !threw && run.length > 0) {
              const n = run.filter((r) => handlerOk.get(r.seq)).length;
              counters = n > 0 ? { seen: n } : {};
              for (const r of run) if (handlerOk.get(r.seq)) {
                expect(ranOkCounting.has(r.seq), `record ${r.seq} ran in two counting invocations`).toBe(false);
                ranOkCounting.add(r.seq);
              }
              countedTotal += n;
            }
            const failedKeys = new Set<string>();
            for (const r of run) {
              const ok = handlerOk.get(r.seq)!;
              if (failedKeys.has(r.key)) {
                out.push({ seq: r.seq, key: r.key, outcome: 'waiting', attempts: r.attempt - 1, firstAt: r.firstAt, nextAt: 0, counted: ok });
                continue;
              }
              // After a successful handler run, the commit either lands (ok/duplicate/gone) or fails.
              const drawn = ok ? nextFate() : 'handler_fail';
              const f = ok && drawn === 'handler_fail' ? 'commit_fail' : drawn;
              if (f === 'ok' || f === 'duplicate' || f === 'gone' || f === 'superseded') {
                out.push({ seq: r.seq, key: r.key, outcome: f === 'superseded' ? 'ok' : f });
                committed.push(r.seq);
                continue;
              }
              failedKeys.add(r.key);
              if (r.attempt >= 3) out.push({ seq: r.seq, key: r.key, outcome: 'dead_letter' });
              else out.push({ seq: r.seq, key: r.key, outcome: 'retry', attempts: r.attempt, firstAt: r.firstAt, nextAt: now + 1, counted: ok && f === 'commit_fail' });
              if (r.attempt >= 3) committed.push(r.seq);
            }
            c = nextCheckpoint(c, { advanceTo, records: out, ...(counters ? { counters } : {}) });
            // Nothing counted is lost or doubled: totals plus holds are everything the counting invocations counted.
            const heldTotal = c.holds.reduce((n, h) => n + (h.counts.seen ?? 0), 0);
            expect((c.counts.seen ?? 0) + heldTotal).toBe(countedTotal);
          }
          expect(c.pending).toEqual([]);
          expect(c.holds).toEqual([]);
          expect(c.seq).toBe(keys.length);
          expect(c.counts.seen ?? 0).toBe(ranOkCounting.size);
          expect(c.handled).toBe(keys.length);
          // Per-key order: each key's records finished in ascending sequence.
          const pos = new Map(committed.map((s, i) => [s, i]));
          for (const k of new Set(keys)) {
            const seqs = keys.map((kk, s) => (kk === k ? s : -1)).filter((s) => s >= 0 && pos.has(s));
            const order = [...seqs].sort((x, y) => pos.get(x)! - pos.get(y)!);
            expect(order).toEqual(seqs);
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
