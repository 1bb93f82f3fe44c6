/**
 * Query triggers on real backends: a scheduled run delivers exactly the matching objects through the run
 * stream; a run cut short resumes where it stopped (nothing skipped, nothing twice), racing replicas append
 * each match once, later runs pick up what changed; a continuous trigger delivers changes whose new state
 * matches `where`.
 */
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import { decodeChange } from '../../bindings/change-record.ts';
import type { StreamBinding } from '../../bindings/types.ts';
import { openStateTable, readCounters, StateKeys } from '../../runtime/state.ts';
import { QueryScheduler, runStreamName, type QueryRun } from '../../runtime/triggers/query.ts';
import { Worker } from '../../runtime/worker.ts';
import { forEachBackend, tn, type BackendContext } from '../conformance/backends.ts';
import { readShard, until as poll } from '../support/poll.ts';

/** Polls every 50 ms (these tests race retries of a few hundred ms). */
const until = (what: string, pred: () => Promise<boolean>, ms = 30_000) => poll(what, pred, ms, 50);

const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });
const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));

async function runKeys(s: StreamBinding, stream: string): Promise<string[]> {
  return (await readShard(s, stream)).map((r) => decodeChange(r.data).key);
}

forEachBackend('query-trigger', (ctx: BackendContext) => {
  const t = (what: string) => tn('query-trigger', ctx, what);

  /** A bucket of n objects; every tenth has `pick = true`. */
  const bucketWith = async (n: number) => {
    const bucket = ctx.uid('q');
    await ctx.backend.createBucket(bucket, { shards: 4 });
    const o = await ctx.backend.objects(bucket);
    for (let i = 0; i < n; i++) {
      const key = `k${String(i).padStart(4, '0')}`;
      await o.put(key, `body-${i}`);
      if (i % 10 === 0) await o.updateAttrs(key, { expr: 'SET pick = :t', values: { ':t': true } });
    }
    const expected = Array.from({ length: n }, (_, i) => i).filter((i) => i % 10 === 0).map((i) => `k${String(i).padStart(4, '0')}`);
    return { bucket, o, expected };
  };
  const scheduler = async (bucket: string, fn: string, clock: { now: number }, pageSize = 7) => {
    const streams = ctx.backend.streams();
    const stream = runStreamName(fn);
    await streams.create(stream, { shards: 1 }).catch(() => undefined);
    return new QueryScheduler({ function: fn, objects: await ctx.backend.objects(bucket), streams, stream, state: await openStateTable(ctx.backend), query: { where: 'pick = true', everyMs: 60_000, pageSize }, log: quiet, now: () => clock.now });
  };

  it(t('a run cut short after any page resumes in a new scheduler: every match once, in order'), async () => {
    const { bucket, expected } = await bucketWith(200);
    for (const cutAfter of [1, 2]) {
      const fn = ctx.uid('fn');
      const clock = { now: 120_000 + 5 };
      const a = await scheduler(bucket, fn, clock);
      for (let i = 0; i < cutAfter; i++) await a.round();
      const b = await scheduler(bucket, fn, clock); // a fresh process: no memory of the run
      for (let i = 0; i < 20 && !(await b.round()).finished; i++);
      expect(await runKeys(ctx.backend.streams(), runStreamName(fn))).toEqual(expected);
      const runs = (await (await openStateTable(ctx.backend)).getItem(StateKeys.queryRuns(fn)))?.item.runs as unknown as QueryRun[];
      expect(runs[0]).toMatchObject({ id: new Date(120_000).toISOString(), matched: expected.length });
      expect(runs[0]!.finishedAt).toBeDefined();
      // The same instant does not run again; the next one does, and delivers the matches again.
      expect((await b.round()).run).toBeUndefined();
      clock.now = 180_000 + 5;
      for (let i = 0; i < 20 && !(await b.round()).finished; i++);
      expect(await runKeys(ctx.backend.streams(), runStreamName(fn))).toEqual([...expected, ...expected]);
    }
  });

  it(t('three racing schedulers append each match of a run exactly once'), async () => {
    const { bucket, expected } = await bucketWith(150);
    const fn = ctx.uid('fn');
    const clock = { now: 60_000 + 5 };
    const all = await Promise.all([0, 1, 2].map(() => scheduler(bucket, fn, clock, 4)));
    for (let i = 0; i < 40; i++) {
      const rounds = await Promise.all(all.map((s) => s.round()));
      if (rounds.every((r) => r.run === undefined || r.finished)) break;
    }
    expect(await runKeys(ctx.backend.streams(), runStreamName(fn))).toEqual(expected);
  });

  it(t('a worker with a scheduled query trigger handles exactly the matching objects, once'), async () => {
    const { bucket, o, expected } = await bucketWith(120);
    const fn = ctx.uid('fn');
    const w = await Worker.start(
      {
        function: fn,
        module: fixture,
        trigger: { type: 'object', bucket, events: ['put'], where: 'pick = true', feed: runStreamName(fn), query: { where: 'pick = true', everyMs: 3_600_000, pageSize: 50 } },
        backend: ctx.childSpec(),
        threads: 0,
        batch: { maxRecords: 50, maxWait: '5ms' },
        leaseTtl: '2s',
      },
      { log: quiet },
    );
    try {
      await until('matches handled', async () => (await readCounters(await openStateTable(ctx.backend), fn, 1)).seen === expected.length);
    } finally {
      await w.stop();
    }
    for (let i = 0; i < 120; i++) {
      const key = `k${String(i).padStart(4, '0')}`;
      expect((await o.getAttrs(key)).attrs.n, key).toBe(i % 10 === 0 ? 1 : undefined);
    }
  });

  it(t('a continuous query trigger delivers the changes whose new state matches where'), async () => {
    const bucket = ctx.uid('c');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    const o = await ctx.backend.objects(bucket);
    const fn = ctx.uid('fn');
    const w = await Worker.start(
      { function: fn, module: fixture, trigger: { type: 'object', bucket, events: ['put'], where: 'size >= 10' }, backend: ctx.childSpec(), threads: 0, batch: { maxRecords: 50, maxWait: '5ms' }, leaseTtl: '2s' },
      { log: quiet },
    );
    try {
      for (let i = 0; i < 40; i++) await o.put(`c${i}`, 'x'.repeat(i % 20));
      await until('matches handled', async () => (await readCounters(await openStateTable(ctx.backend), fn, 2)).seen === 20);
    } finally {
      await w.stop();
    }
    for (let i = 0; i < 40; i++) expect((await o.getAttrs(`c${i}`)).attrs.n, `c${i}`).toBe(i % 20 >= 10 ? 1 : undefined);
  });
});
