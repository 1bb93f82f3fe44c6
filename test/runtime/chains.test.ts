/**
 * Runtime: chaining without loops (issue 8 items 4 and 6) — a function never receives the change records
 * of its own commits unless it opts in (`selfTrigger`), chains across functions stop with a dead letter
 * (SLUICE_HOP_LIMIT) at `maxHops`, and a batch whose handler throws is bisected so only the poison record
 * is retried and dead-lettered. Real backends, real workers (handlers on the main thread).
 */
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import { SluiceError } from '../../bindings/errors.ts';
import { openStateTable, readCounters, StateReader } from '../../runtime/state.ts';
import { Worker } from '../../runtime/worker.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { forEachBackend, tn, type BackendContext } from '../conformance/backends.ts';
import { until } from '../support/sluice-process.ts';

const touch = fileURLToPath(new URL('../fixtures/functions/chain-touch.ts', import.meta.url));
const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });

/** Polls `pred` until it holds (test/support's `until`, for a boolean predicate). */
const waitFor = (what: string, pred: () => Promise<boolean>) => until(what, async () => ((await pred()) ? true : undefined), 30_000, 25);

function options(ctx: BackendContext, fn: string, bucket: string, extra: Partial<WorkerOptions> = {}): WorkerOptions {
  return {
    function: fn,
    module: touch,
    trigger: { type: 'object', bucket, events: ['put', 'attrs'] },
    backend: ctx.childSpec(),
    threads: 0,
    batch: { maxRecords: 100, maxWait: '5ms' },
    retries: { maxAttempts: 3, initialBackoff: '20ms', maxBackoff: '100ms' },
    leaseTtl: '2s',
    ...extra,
  };
}

async function runs(ctx: BackendContext, fn: string, shards = 1): Promise<number> {
  return (await readCounters(await openStateTable(ctx.backend), fn, shards)).runs ?? 0;
}

/** Every dead letter of `fn` (JSON), in order. */
export async function deadLetters(ctx: BackendContext, fn: string): Promise<{ key: string; attempts: number; error: { code: string; message: string } }[]> {
  const s = ctx.backend.streams();
  let info;
  try {
    info = await s.info(`dlq-${fn}`);
  } catch (e) {
    if (e instanceof SluiceError && e.code === 'SLUICE_STREAM_NOT_FOUND') return [];
    throw e;
  }
  const out = [];
  for (let shard = 0; shard < info.shards; shard++) {
    const page = await s.getRecords({ stream: `dlq-${fn}`, shard, seq: 0 }, { limit: 1000 });
    for (const r of page.records) out.push(JSON.parse(Buffer.from(r.data).toString('utf8')));
  }
  return out;
}

/** True when no shard of `fn` has pending records or held counters. */
async function drained(ctx: BackendContext, fn: string, shards = 1): Promise<boolean> {
  const r = new StateReader(await openStateTable(ctx.backend));
  for (let s = 0; s < shards; s++) {
    const c = await r.checkpoint(fn, s);
    if (!c || c.pending.length > 0 || c.holds.length > 0) return false;
  }
  return true;
}

/** Waits until `read` gives the same value for `quietMs` (the system settled), and returns it. */
async function settled<T>(read: () => Promise<T>, quietMs = 1500, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  let last = JSON.stringify(await read());
  let since = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const now = JSON.stringify(await read());
    if (now !== last) [last, since] = [now, Date.now()];
    else if (Date.now() - since >= quietMs) return JSON.parse(now) as T;
    if (Date.now() > end) throw new Error(`did not settle: ${now}`);
  }
}

forEachBackend('runtime', (ctx) => {
  const t = (what: string) => tn('runtime', ctx, what);

  it(t('chains - a function triggered by attribute changes does not re-trigger itself with its own commits'), async () => {
    const bucket = ctx.uid('ch');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    const w = await Worker.start(options(ctx, fn, bucket), { log: quiet });
    try {
      await o.put('img-1', 'x');
      await waitFor('handled once', async () => (await runs(ctx, fn)) >= 1);
      // Before self-trigger suppression this looped: 49 runs in 10 s on one object.
      expect(await settled(() => runs(ctx, fn))).toBe(1);
      expect((await o.getAttrs('img-1')).attrs[`runs_${fn}`]).toBe(1);
      // A user's attribute change (no cause) still triggers it.
      await o.updateAttrs('img-1', { expr: 'SET note = :n', values: { ':n': 'hi' } });
      await waitFor('handled the user change', async () => (await runs(ctx, fn)) >= 2);
      expect(await settled(() => runs(ctx, fn))).toBe(2);
      expect(await drained(ctx, fn)).toBe(true);
      // Dropped records still advance the checkpoint and count as filtered.
      const filtered = (await w.metrics.events.get()).values.find((v) => v.labels.outcome === 'filtered')?.value ?? 0;
      expect(filtered).toBeGreaterThanOrEqual(2);
    } finally {
      await w.stop();
    }
  });

  it(t('chains - selfTrigger opts in to its own changes; the hop limit stops the loop with a dead letter'), async () => {
    const bucket = ctx.uid('ch');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    const w = await Worker.start(options(ctx, fn, bucket, { trigger: { type: 'object', bucket, events: ['put', 'attrs'], selfTrigger: true }, maxHops: 3 }), { log: quiet });
    try {
      await o.put('loop', 'x');
      await waitFor('a dead letter', async () => (await deadLetters(ctx, fn)).length >= 1);
      // hops 0 (the put), 1 and 2 run; the record of hop 3 is dead-lettered instead of running.
      expect(await settled(() => runs(ctx, fn))).toBe(3);
      expect((await o.getAttrs('loop')).attrs[`runs_${fn}`]).toBe(3);
      const dl = await deadLetters(ctx, fn);
      expect(dl).toHaveLength(1);
      expect(dl[0]!.key).toBe('loop');
      expect(dl[0]!.error.code).toBe('SLUICE_HOP_LIMIT');
      expect(dl[0]!.error.message).toContain('3');
      expect(await drained(ctx, fn)).toBe(true);
    } finally {
      await w.stop();
    }
  });

  it(t('chains - two functions triggering each other stop at maxHops with a dead letter'), async () => {
    const bucket = ctx.uid('ch');
    const a = ctx.uid('fa');
    const b = ctx.uid('fb');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    const wa = await Worker.start(options(ctx, a, bucket, { maxHops: 4 }), { log: quiet });
    const wb = await Worker.start(options(ctx, b, bucket, { trigger: { type: 'object', bucket, events: ['attrs'] }, maxHops: 4 }), { log: quiet });
    try {
      await o.put('ping', 'x');
      // put → A (commit hop 1) → B (hop 2) → A (hop 3) → B (hop 4) → A: dead letter at hop 4.
      await waitFor('a dead letter', async () => (await deadLetters(ctx, a)).length + (await deadLetters(ctx, b)).length >= 1);
      const both = await settled(async () => [await runs(ctx, a), await runs(ctx, b)]);
      expect(both).toEqual([2, 2]);
      const attrs = (await o.getAttrs('ping')).attrs;
      expect([attrs[`runs_${a}`], attrs[`runs_${b}`]]).toEqual([2, 2]);
      const dl = await deadLetters(ctx, a);
      expect(dl.map((d) => d.error.code)).toEqual(['SLUICE_HOP_LIMIT']);
      expect(await deadLetters(ctx, b)).toEqual([]);
    } finally {
      await Promise.all([wa.stop(), wb.stop()]);
    }
  });

  it(t('chains - stream records carry their cause: a stream trigger skips its own, dead-letters past maxHops'), async () => {
    const stream = ctx.uid('cs');
    const fn = ctx.uid('fn');
    const s = ctx.backend.streams();
    await s.create(stream, { shards: 1 });
    const res = await s.putRecords(stream, [
      { data: 'user', partitionKey: 'a' },
      { data: 'own', partitionKey: 'b', cause: { fn, hop: 1 } },
      { data: 'other', partitionKey: 'c', cause: { fn: 'upstream', hop: 2 }, headers: { h: 'v' } },
      { data: 'deep', partitionKey: 'd', cause: { fn: 'upstream', hop: 4 } },
    ]);
    expect(res.every((r) => r.ok)).toBe(true);
    // The cause reads back as a field, never as a user header.
    const back = (await s.getRecords({ stream, shard: 0, seq: 0 }, { limit: 10 })).records;
    expect(back.map((r) => [r.cause, r.headers])).toEqual([
      [undefined, {}],
      [{ fn, hop: 1 }, {}],
      [{ fn: 'upstream', hop: 2 }, { h: 'v' }],
      [{ fn: 'upstream', hop: 4 }, {}],
    ]);
    const bad = await s.putRecords(stream, [{ data: 'x', partitionKey: 'x', cause: { fn: 'Bad Name', hop: -1 } }]);
    expect(bad[0]).toMatchObject({ ok: false, error: { code: 'SLUICE_INVALID_ARGUMENT' } });
    const w = await Worker.start(options(ctx, fn, '', { trigger: { type: 'stream', stream }, maxHops: 4 }), { log: quiet });
    try {
      await waitFor('a dead letter', async () => (await deadLetters(ctx, fn)).length >= 1);
      await waitFor('drained', () => drained(ctx, fn));
      expect(await runs(ctx, fn)).toBe(2);
      expect((await deadLetters(ctx, fn)).map((d) => [d.key, d.error.code])).toEqual([['d', 'SLUICE_HOP_LIMIT']]);
    } finally {
      await w.stop();
    }
  });

  it(t('bisect - a poison record in a batch of 100: the other 99 commit on the first pass, the poison one is dead-lettered'), async () => {
    const bucket = ctx.uid('bi');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    const keys = Array.from({ length: 100 }, (_, i) => (i === 37 ? 'k37-poison' : `k${i}`));
    for (const k of keys) await o.put(k, 'x');
    const w = await Worker.start(options(ctx, fn, bucket, { trigger: { type: 'object', bucket }, batch: { maxRecords: 100, maxWait: '200ms' } }), { log: quiet });
    try {
      await waitFor('a dead letter', async () => (await deadLetters(ctx, fn)).length >= 1);
      await waitFor('drained', () => drained(ctx, fn));
      expect(await runs(ctx, fn)).toBe(99);
      for (const k of keys) expect((await o.getAttrs(k)).attrs[`runs_${fn}`], k).toBe(k.includes('poison') ? undefined : 1);
      const dl = await deadLetters(ctx, fn);
      expect(dl.map((d) => [d.key, d.attempts])).toEqual([['k37-poison', 3]]);
      expect(dl[0]!.error.message).toContain('poisoned k37-poison');
      const events = (await w.metrics.events.get()).values;
      // Every neighbour committed once, at its first attempt: only the poison record was retried (twice).
      expect(events.find((v) => v.labels.outcome === 'ok')?.value).toBe(99);
      expect((await w.metrics.retries.get()).values[0]?.value).toBe(2);
    } finally {
      await w.stop();
    }
  });

  it(t('bisect - bisectOnError: false retries the whole batch (Lambda default behaviour)'), async () => {
    const bucket = ctx.uid('bi');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    const keys = ['a', 'b-poison', 'c', 'd'];
    for (const k of keys) await o.put(k, 'x');
    const w = await Worker.start(options(ctx, fn, bucket, { trigger: { type: 'object', bucket }, batch: { maxRecords: 100, maxWait: '200ms' }, bisectOnError: false }), { log: quiet });
    try {
      await waitFor('the poison record dead-lettered', async () => (await deadLetters(ctx, fn)).some((d) => d.key === 'b-poison'));
      await waitFor('drained', () => drained(ctx, fn));
      // The whole batch failed on the first pass: all four were scheduled for a retry (with bisect: one).
      expect((await w.metrics.retries.get()).values[0]?.value).toBeGreaterThanOrEqual(4);
      // Each neighbour either committed on a later retry without the poison record or was dead-lettered with it.
      const dead = new Set((await deadLetters(ctx, fn)).map((d) => d.key));
      for (const k of ['a', 'c', 'd']) expect(dead.has(k) || (await o.getAttrs(k)).attrs[`runs_${fn}`] === 1, k).toBe(true);
    } finally {
      await w.stop();
    }
  });
});
