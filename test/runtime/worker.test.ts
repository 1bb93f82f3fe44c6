/** Runtime: workers over real backends, handlers on the main thread (threads: 0). */
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import { decodeChange } from '../../bindings/shared.ts';
import type { ObjectBinding } from '../../bindings/types.ts';
import { markerAttr } from '../../runtime/committer.ts';
import { openStateTable, readCounters } from '../../runtime/state.ts';
import { Worker } from '../../runtime/worker.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { forEachBackend, tn, type BackendContext } from '../conformance/backends.ts';
import { until as poll } from '../support/poll.ts';

/** Polls every 50 ms (these tests race retries of a few hundred ms). */
const until = (what: string, pred: () => Promise<boolean>, ms = 30_000) => poll(what, pred, ms, 50);

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });

function options(ctx: BackendContext, fn: string, bucket: string, extra: Partial<WorkerOptions> = {}): WorkerOptions {
  return {
    function: fn,
    module: fixture,
    trigger: { type: 'object', bucket },
    backend: ctx.childSpec(),
    threads: 0,
    batch: { maxRecords: 50, maxWait: '5ms' },
    retries: { maxAttempts: 3, initialBackoff: '20ms', maxBackoff: '100ms' },
    leaseTtl: '2s',
    ...extra,
  };
}

async function counters(ctx: BackendContext, fn: string, shards: number) {
  return readCounters(await openStateTable(ctx.backend), fn, shards);
}

forEachBackend('runtime', (ctx) => {
  const t = (what: string) => tn('runtime', ctx, what);

  it(t('a worker handles every put once: attributes, marker and exact counters'), async () => {
    const bucket = ctx.uid('rt');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 4 });
    const o = await ctx.backend.objects(bucket);
    for (let i = 0; i < 200; i++) await o.put(`k${i}`, 'x'.repeat(i));
    const w = await Worker.start(options(ctx, fn, bucket), { log: quiet });
    try {
      expect(w.ownedShards.length).toBeGreaterThanOrEqual(0);
      await until('200 seen', async () => (await counters(ctx, fn, 4)).seen === 200);
      for (let i = 0; i < 200; i += 17) {
        const a = (await o.getAttrs(`k${i}`)).attrs;
        expect(a.n).toBe(1);
        expect(a.len).toBe(i);
        expect(typeof (await o.getAttrs(`k${i}`, { internal: true })).attrs[markerAttr(fn)]).toBe('number');
        expect(a[markerAttr(fn)]).toBeUndefined();
      }
      // New puts while running are handled too.
      await o.put('late', 'abc');
      await until('late handled', async () => (await o.getAttrs('late')).attrs.n === 1);
      expect((await counters(ctx, fn, 4)).seen).toBe(201);
      expect(w.ownedShards).toEqual([0, 1, 2, 3]);
    } finally {
      expect(await w.stop()).toBe(true);
    }
  });

  it(t('poison records are retried, then dead-lettered with their error, while the rest commits'), async () => {
    const bucket = ctx.uid('rt');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    const o = await ctx.backend.objects(bucket);
    await o.put('poison-1', 'p');
    for (let i = 0; i < 20; i++) await o.put(`ok-${i}`, 'fine');
    await o.put('flaky-1', 'f');
    const w = await Worker.start(options(ctx, fn, bucket), { log: quiet });
    try {
      await until('21 seen', async () => (await counters(ctx, fn, 2)).seen === 21);
      expect((await o.getAttrs('flaky-1')).attrs.n).toBe(1);
      const dlq = ctx.backend.streams();
      let letters: { key: string; attempts: number; error: { message: string } }[] = [];
      await until('dead letter', async () => {
        const p = await dlq.getRecords(await dlq.seek(`dlq-${fn}`, 0, 'earliest'), { limit: 100 });
        letters = p.records.map((r) => JSON.parse(Buffer.from(r.data).toString()));
        return letters.length > 0;
      });
      expect(letters).toHaveLength(1);
      expect(letters[0]).toMatchObject({ key: 'poison-1', attempts: 3 });
      expect(letters[0]!.error.message).toContain('poisoned poison-1');
      expect((await o.getAttrs('poison-1')).attrs.n).toBeUndefined();
    } finally {
      await w.stop();
    }
  });

  it(t('a failing record blocks only later records of its own key'), async () => {
    const bucket = ctx.uid('rt');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    await o.put('flaky-a', 'v1');
    await o.put('other', 'x');
    const w = await Worker.start(options(ctx, fn, bucket, { retries: { maxAttempts: 5, initialBackoff: '300ms', maxBackoff: '300ms' } }), { log: quiet });
    try {
      await until('both handled', async () => (await o.getAttrs('flaky-a')).attrs.n === 1 && (await o.getAttrs('other')).attrs.n === 1, 10_000);
      // 'other' (same shard, later) committed while 'flaky-a' waited for its retries: the shard's change
      // stream orders the commits (one attrs record per commit), so no wall-clock race decides this test.
      const info = await o.info();
      const p = await ctx.backend.streams().getRecords(await ctx.backend.streams().seek(info.changeStream, 0, 'earliest'));
      const commits = p.records.map((r) => decodeChange(r.data)).filter((c) => c.type === 'attrs').map((c) => c.key);
      expect(commits).toEqual(['other', 'flaky-a']);
    } finally {
      await w.stop();
    }
  });

  it(t('two workers holding overlapping leases never apply one effect twice'), async () => {
    const bucket = ctx.uid('rt');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    const o: ObjectBinding = await ctx.backend.objects(bucket);
    const a = await Worker.start(options(ctx, fn, bucket, { id: 'worker-a' }), { log: quiet });
    const state = await openStateTable(ctx.backend);
    let b: Worker | undefined;
    try {
      await until('a owns both shards', async () => a.ownedShards.length === 2);
      const writes = Array.from({ length: 100 }, (_, i) => o.put(`slowish-${i}`, 'x'));
      // Simulate A stalling past its lease: mark both leases expired so B takes them with a higher epoch
      // while A still runs; A learns of it only when its next checkpoint write fails.
      for (const s of [0, 1]) {
        const cur = (await state.getItem(`lease/${fn}/${s}`))!;
        await state.putItem(`lease/${fn}/${s}`, { ...cur.item, expiresAt: 0 }, { ifRevision: cur.revision });
      }
      b = await Worker.start(options(ctx, fn, bucket, { id: 'worker-b' }), { log: quiet });
      await Promise.all(writes);
      await until('100 seen', async () => (await counters(ctx, fn, 2)).seen === 100, 60_000);
      for (let i = 0; i < 100; i++) expect((await o.getAttrs(`slowish-${i}`)).attrs.n, `slowish-${i}`).toBe(1);
      await new Promise((r) => setTimeout(r, 300));
      expect((await counters(ctx, fn, 2)).seen).toBe(100);
      expect(b.ownedShards).toEqual([0, 1]);
    } finally {
      await a.stop();
      await b?.stop();
    }
  });

  it(t('stream triggers deliver user records with exact counters'), async () => {
    const stream = ctx.uid('st');
    const fn = ctx.uid('fn');
    await ctx.backend.streams().create(stream, { shards: 3 });
    await ctx.backend.streams().putRecords(stream, Array.from({ length: 90 }, (_, i) => ({ data: `r${i}`, partitionKey: `p${i % 7}` })));
    const w = await Worker.start({ ...options(ctx, fn, 'unused'), trigger: { type: 'stream', stream } }, { log: quiet });
    try {
      await until('90 seen', async () => (await counters(ctx, fn, 3)).seen === 90);
    } finally {
      await w.stop();
    }
  });

  it(t('the change stream of an attrs commit is not re-delivered to a put-only function'), async () => {
    const bucket = ctx.uid('rt');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    await o.put('one', 'x');
    const w = await Worker.start(options(ctx, fn, bucket), { log: quiet });
    try {
      await until('handled', async () => (await o.getAttrs('one')).attrs.n === 1);
      await new Promise((r) => setTimeout(r, 200));
      expect((await counters(ctx, fn, 1)).seen).toBe(1);
      const info = await o.info();
      const p = await ctx.backend.streams().getRecords(await ctx.backend.streams().seek(info.changeStream, 0, 'earliest'));
      expect(p.records.map((r) => decodeChange(r.data).type)).toEqual(['put', 'attrs']);
    } finally {
      await w.stop();
    }
  });
});
