/**
 * Cron trigger: the ticker appends one tick per schedule instant however many replicas race, honours the
 * catch-up and overlap policies, and a worker delivers the ticks to the handler exactly once (real backends).
 */
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import type { StreamBinding } from '../../bindings/types.ts';
import { openStateTable, readCounters } from '../../runtime/state.ts';
import { CronTicker, decodeTick, type CronSchedule } from '../../runtime/triggers/cron.ts';
import { Worker } from '../../runtime/worker.ts';
import { forEachBackend, tn, type BackendContext } from '../conformance/backends.ts';
import { readShard, until as poll } from '../support/poll.ts';

/** Polls every 50 ms (these tests race retries of a few hundred ms). */
const until = (what: string, pred: () => Promise<boolean>, ms = 30_000) => poll(what, pred, ms, 50);

const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });
const fixture = fileURLToPath(new URL('../fixtures/functions/cron-count.ts', import.meta.url));
const T0 = Date.parse('2026-06-01T12:00:00.000Z');

async function ticks(s: StreamBinding, stream: string): Promise<string[]> {
  return (await readShard(s, stream)).map((r) => decodeTick(r.data).scheduledAt);
}

forEachBackend('cron', (ctx: BackendContext) => {
  const t = (what: string) => tn('cron', ctx, what);
  const setup = async (cron: CronSchedule, clock: { now: number }, busy = false, n = 1) => {
    const stream = ctx.uid('cron');
    const streams = ctx.backend.streams();
    await streams.create(stream, { shards: 1 });
    const tickers = Array.from({ length: n }, () => new CronTicker({ streams, stream, cron, busy: async () => busy, log: quiet, now: () => clock.now }));
    return { stream, streams, tickers };
  };

  it(t('five racing tickers append each instant exactly once'), async () => {
    const clock = { now: T0 };
    const { stream, streams, tickers } = await setup({ schedule: '* * * * * *', catchUp: 'all' }, clock, false, 5);
    for (let s = 1; s <= 6; s++) {
      clock.now = T0 + s * 1000 + 10;
      const rounds = await Promise.all(tickers.map((k) => k.round()));
      // Whoever won, later losers of the same round find nothing new on their next read.
      expect(rounds.reduce((n, r) => n + r.appended.length, 0)).toBeGreaterThanOrEqual(1);
      await Promise.all(tickers.map((k) => k.round()));
    }
    const all = await ticks(streams, stream);
    expect(all).toEqual(Array.from({ length: 6 }, (_, i) => new Date(T0 + (i + 1) * 1000).toISOString()));
  });

  it(t('catchUp: all delivers every missed instant, one only the latest, none only what is on time'), async () => {
    for (const [catchUp, expected] of [
      ['all', ['12:00:01', '12:00:02', '12:00:03', '12:00:04', '12:00:05']],
      ['one', ['12:00:01', '12:00:05']],
      ['none', ['12:00:01', '12:00:05']],
    ] as const) {
      const clock = { now: T0 + 500 };
      const { stream, streams, tickers } = await setup({ schedule: '* * * * * *', catchUp }, clock);
      const k = tickers[0]!;
      clock.now = T0 + 1005;
      await k.round(); // 12:00:01 on time
      clock.now = T0 + 5000 + 500; // 3 instants missed, 12:00:05 on time
      const r = await k.round();
      if (catchUp === 'none') expect(r.skipped.length).toBe(3);
      const got = (await ticks(streams, stream)).map((s) => s.slice(11, 19));
      expect(got, catchUp).toEqual([...expected]);
    }
    // Under none, a newest instant that is already late (the worker came back 3.5 s after it) is dropped too.
    const clock = { now: T0 + 500 };
    const { stream, streams, tickers } = await setup({ schedule: '*/10 * * * * *', catchUp: 'none' }, clock);
    clock.now = T0 + 10_005;
    expect((await tickers[0]!.round()).appended).toEqual([T0 + 10_000]);
    clock.now = T0 + 43_500;
    const late = await tickers[0]!.round();
    expect(late.appended).toEqual([]);
    expect(late.skipped).toEqual([T0 + 20_000, T0 + 30_000, T0 + 40_000]);
    expect(await ticks(streams, stream)).toHaveLength(1);
  });

  it(t('overlap: skip drops an instant while the previous tick is unhandled, queue appends it'), async () => {
    const clockS = { now: T0 + 500 };
    const skip = await setup({ schedule: '* * * * * *', overlap: 'skip' }, clockS, true);
    clockS.now = T0 + 1005;
    await skip.tickers[0]!.round(); // the first tick (nothing before it to be busy with)
    clockS.now = T0 + 2005;
    const r = await skip.tickers[0]!.round();
    expect(r.appended).toEqual([]);
    expect(r.skipped).toEqual([T0 + 2000]);
    clockS.now = T0 + 3005;
    expect((await skip.tickers[0]!.round()).skipped).toEqual([T0 + 3000]);
    expect(await ticks(skip.streams, skip.stream)).toHaveLength(1);

    const clockQ = { now: T0 + 500 };
    const queue = await setup({ schedule: '* * * * * *', overlap: 'queue' }, clockQ, true);
    clockQ.now = T0 + 1005;
    await queue.tickers[0]!.round();
    clockQ.now = T0 + 2005;
    expect((await queue.tickers[0]!.round()).appended).toEqual([T0 + 2000]);
  });

  it(t('two workers with a cron trigger: each instant ticks once and the handler counts each tick once'), async () => {
    const fn = ctx.uid('fn');
    const o = (ordinal: number) => ({
      function: fn,
      module: fixture,
      trigger: { type: 'stream' as const, stream: `cron-${fn}`, cron: { schedule: '* * * * * *', catchUp: 'all' as const, overlap: 'queue' as const } },
      backend: ctx.childSpec(),
      threads: 0,
      ordinal,
      replicas: 2,
      batch: { maxRecords: 50, maxWait: '5ms' },
      leaseTtl: '2s',
    });
    const a = await Worker.start(o(0), { log: quiet });
    const b = await Worker.start(o(1), { log: quiet });
    const streams = ctx.backend.streams();
    try {
      await until('5 ticks', async () => (await ticks(streams, `cron-${fn}`)).length >= 5, 20_000);
    } finally {
      await a.stop();
      await b.stop();
    }
    const all = await ticks(streams, `cron-${fn}`);
    const secs = all.map((s) => Date.parse(s));
    // One per instant: strictly increasing by exactly one second (catchUp all fills any gap).
    for (let i = 1; i < secs.length; i++) expect(secs[i]! - secs[i - 1]!, all.join(',')).toBe(1000);
    const state = await openStateTable(ctx.backend);
    const w = await Worker.start({ ...o(0), replicas: 1, trigger: { ...o(0).trigger, cron: { ...o(0).trigger.cron, catchUp: 'none' as const } } }, { log: quiet });
    try {
      await until('every tick handled', async () => (await readCounters(state, fn, 1)).ticks === (await ticks(streams, `cron-${fn}`)).length, 20_000);
    } finally {
      await w.stop();
    }
  });
});
