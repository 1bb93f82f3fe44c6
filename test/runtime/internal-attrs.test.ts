/**
 * Internal attributes (`$sluice.*`: processed-markers) never reach users, and attribute effects on a
 * record without an object are refused at the call. Each test fails on the code before the change:
 * reads returned the marker, and `setAttrs` on a stream record was dropped silently at commit.
 */
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import { ConditionFailedError, SluiceError } from '../../bindings/errors.ts';
import { markerAttr } from '../../runtime/committer.ts';
import { guardObject } from '../../runtime/threads/bound-bindings.ts';
import { Worker } from '../../runtime/worker.ts';
import { EffectsCollector } from '../../functions/effects.ts';
import { invokeHandler } from '../../functions/testing.ts';
import { defineFunction } from '../../functions/types.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { until as poll } from '../support/poll.ts';

/** Polls every 50 ms (these tests race retries of a few hundred ms). */
const until = (what: string, pred: () => Promise<boolean>, ms = 30_000) => poll(what, pred, ms, 50);

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });

const internalNames = (attrs: object): string[] => Object.keys(attrs).filter((k) => k.startsWith('$sluice.'));

forEachBackend('internal-attrs', (ctx) => {
  const t = (what: string) => tn('internal-attrs', ctx, what);

  it(t('reads hide $sluice.* attributes unless internal is asked for'), async () => {
    const bucket = ctx.uid('ia');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    await o.put('k', 'body', { attrs: { color: 'red' } });
    const set = await o.updateAttrs('k', { expr: 'SET #m = :v, size_class = :s', names: { '#m': '$sluice.fn-a' }, values: { ':v': 7, ':s': 'small' } });
    expect(set.attrs).toEqual({ color: 'red', size_class: 'small' });
    expect((await o.getAttrs('k')).attrs).toEqual({ color: 'red', size_class: 'small' });
    expect((await o.head('k'))!.attrs).toEqual({ color: 'red', size_class: 'small' });
    expect((await o.get('k')).attrs).toEqual({ color: 'red', size_class: 'small' });
    expect((await o.getStream('k')).head.attrs).toEqual({ color: 'red', size_class: 'small' });
    // The runtime's path still sees (and conditions still evaluate on) the marker.
    expect((await o.getAttrs('k', { internal: true })).attrs['$sluice.fn-a']).toBe(7);
    expect((await o.head('k', { internal: true }))!.attrs['$sluice.fn-a']).toBe(7);
    expect((await o.get('k', { internal: true })).attrs['$sluice.fn-a']).toBe(7);
    const err = await o
      .updateAttrs('k', { expr: 'SET x = :x', values: { ':x': 1 } }, { condition: { expr: '#m < :v', names: { '#m': '$sluice.fn-a' }, values: { ':v': 3 } } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConditionFailedError);
    // The current attributes a failed condition carries are user-facing too.
    expect(internalNames((err as ConditionFailedError).current as object)).toEqual([]);
  });

  it(t("a handler's bound object binding cannot ask for internal attributes"), async () => {
    const bucket = ctx.uid('ia');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    await o.put('k', 'body');
    await o.updateAttrs('k', { expr: 'SET #m = :v', names: { '#m': '$sluice.fn-b' }, values: { ':v': 1 } });
    const bound = guardObject(o, { name: 'photos', kind: 'object', resource: bucket, access: 'read' });
    expect((await bound.getAttrs('k', { internal: true })).attrs).toEqual({});
    expect((await bound.head('k', { internal: true }))!.attrs).toEqual({});
    expect((await bound.get('k', { internal: true })).attrs).toEqual({});
  });

  it(t("a worker's processed-marker lands but user reads never show it"), async () => {
    const bucket = ctx.uid('ia');
    const fn = ctx.uid('fn');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    const o = await ctx.backend.objects(bucket);
    for (let i = 0; i < 10; i++) await o.put(`k${i}`, 'x'.repeat(i));
    const w = await Worker.start(
      {
        function: fn,
        module: fixture,
        trigger: { type: 'object', bucket },
        backend: ctx.childSpec(),
        threads: 0,
        batch: { maxRecords: 50, maxWait: '5ms' },
        leaseTtl: '2s',
      },
      { log: quiet },
    );
    try {
      await until('all handled', async () => {
        for (let i = 0; i < 10; i++) if ((await o.getAttrs(`k${i}`)).attrs.n !== 1) return false;
        return true;
      });
      for (let i = 0; i < 10; i++) {
        const a = (await o.getAttrs(`k${i}`)).attrs;
        expect(a).toEqual({ n: 1, len: i });
        expect(internalNames((await o.head(`k${i}`))!.attrs)).toEqual([]);
        expect(typeof (await o.getAttrs(`k${i}`, { internal: true })).attrs[markerAttr(fn)]).toBe('number');
      }
    } finally {
      await w.stop();
    }
  });
});

it('effects - setAttrs, removeAttrs and update on a stream record are SLUICE_INVALID_ARGUMENT at the call', async () => {
  for (const call of [
    (r: { setAttrs(a: object): void }) => r.setAttrs({ seen: true }),
    (r: { removeAttrs(...n: string[]): void }) => r.removeAttrs('seen'),
    (r: { update(e: { expr: string }): void }) => r.update({ expr: 'REMOVE seen' }),
  ]) {
    const fn = defineFunction({
      handler(records) {
        for (const r of records) call(r as never);
      },
    });
    const res = await invokeHandler(fn, [{ key: 'p', type: 'record', body: '{}' }]);
    expect(res.error?.error.code).toBe('SLUICE_INVALID_ARGUMENT');
    expect(res.error?.error.message).toMatch(/stream record has no object/);
  }
  // The collector the handler threads use is the same class: the check holds there too.
  expect(() => new EffectsCollector('p', 'record').setAttrs({ a: 1 })).toThrow(SluiceError);
  // Object records keep working.
  const ok = new EffectsCollector('o', 'put');
  ok.setAttrs({ a: 1 });
  expect(ok.effects.set).toEqual({ a: 1 });
});

it("effects - attribute names with the runtime's $sluice. prefix are refused, and nothing of the call is applied", () => {
  const c = new EffectsCollector('o', 'put');
  expect(() => c.setAttrs({ fine: 1, '$sluice.other-fn': 99 })).toThrow(/reserved for the runtime/);
  expect(() => c.removeAttrs(['fine', '$sluice.other-fn'])).toThrow(/reserved for the runtime/);
  expect(c.effects).toEqual({ set: {}, remove: [], updates: [] });
});
