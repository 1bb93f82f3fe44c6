/**
 * Conformance: `Backend.commitBatch` — per-op conditions and results (one op failing its condition does
 * not fail the others), the processed-marker, `after` chains (a failed op skips its successors, a
 * condition or missing object does not), `afterAll` (the same over every earlier op), and a write read back after a prefetch-style read (NATS CASes on
 * the remembered revision; a stale one is re-done on a fresh read).
 */
import { expect, it } from 'vitest';
import { ConditionFailedError } from '../../bindings/errors.ts';
import type { WriteOp } from '../../bindings/types.ts';
import { forEachBackend, tn } from './backends.ts';

forEachBackend('batch', (ctx) => {
  const t = (what: string) => tn('batch', ctx, what);

  it(t('every op gets its own result; a failed condition or missing object fails only its op'), async () => {
    const bucket = ctx.uid('cb');
    const table = ctx.uid('ct');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    await ctx.backend.createTable(table);
    const o = await ctx.backend.objects(bucket);
    await o.put('a', 'A');
    await o.put('b', 'B', { attrs: { m: 5 } });
    const kv = await ctx.backend.kv(table);
    const { revision } = await kv.putItem('ck', { n: 1 });
    const ops: WriteOp[] = [
      { type: 'attrs', bucket, key: 'a', set: { x: 1 }, marker: { attr: 'm', seq: 3 } },
      { type: 'attrs', bucket, key: 'b', set: { x: 1 }, marker: { attr: 'm', seq: 3 } },
      { type: 'attrs', bucket, key: 'gone', set: { x: 1 } },
      { type: 'putItem', table, key: 'ck', item: { n: 2 }, ifRevision: revision + 1000 },
      { type: 'putItem', table, key: 'ck2', item: { n: 1 }, ifRevision: 0 },
      { type: 'attrs', bucket, key: 'a', remove: ['x'], updates: [{ expr: 'SET y = :v', values: { ':v': 'z' } }], marker: { attr: 'm', seq: 4 }, after: 0 },
    ];
    const r = await ctx.backend.commitBatch(ops);
    expect(r.map((x) => x.status)).toEqual(['ok', 'condition', 'missing', 'condition', 'ok', 'ok']);
    expect(r[1]!.status === 'condition' && r[1]!.error).toBeInstanceOf(ConditionFailedError);
    expect((await o.getAttrs('a')).attrs).toEqual({ m: 4, y: 'z' });
    expect((await o.getAttrs('b')).attrs).toEqual({ m: 5 });
    expect((await kv.getItem('ck'))?.item).toEqual({ n: 1 });
    expect((await kv.getItem('ck2'))?.item).toEqual({ n: 1 });
    // The attrs change records were appended with the writes: the put of a, two attrs changes of a.
    const { changeStream, shards } = await o.info();
    let ofA = 0;
    for (let s = 0; s < shards; s++) ofA += (await ctx.backend.streams().getRecords({ stream: changeStream, shard: s, seq: 0 }, { limit: 100 })).records.filter((rec) => rec.partitionKey === 'a').length;
    expect(ofA).toBe(3);
  });

  it(t('an op after a failed or skipped op is skipped and writes nothing; invalid ops fail alone'), async () => {
    const bucket = ctx.uid('cb');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    await o.put('k', 'K');
    await o.put('j', 'J');
    const r = await ctx.backend.commitBatch([
      // Too large: fails at the store's size check.
      { type: 'attrs', bucket, key: 'k', set: { big: 'x'.repeat(500_000) } },
      { type: 'attrs', bucket, key: 'k', set: { after: 1 }, after: 0 },
      { type: 'attrs', bucket, key: 'k', set: { after: 2 }, after: 1 },
      { type: 'attrs', bucket, key: 'j', set: { ok: true } },
      { type: 'attrs', bucket, key: 'j', set: { bad: 1 }, updates: [{ expr: 'SET = oops' }] },
      { type: 'attrs', bucket: 'No Such Bucket!', key: 'j', set: { x: 1 } },
      { type: 'attrs', bucket, key: 'j', set: { x: 1 }, after: 9 },
    ]);
    expect(r.map((x) => x.status)).toEqual(['failed', 'skipped', 'skipped', 'ok', 'failed', 'failed', 'failed']);
    expect((await o.getAttrs('k')).attrs).toEqual({});
    expect((await o.getAttrs('j')).attrs).toEqual({ ok: true });
  });

  it(t('an afterAll op runs after every earlier op: written when none failed (condition and missing do not stop it), skipped otherwise'), async () => {
    const bucket = ctx.uid('cb');
    const table = ctx.uid('ct');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    await ctx.backend.createTable(table);
    const o = await ctx.backend.objects(bucket);
    const kv = await ctx.backend.kv(table);
    await o.put('a', 'A');
    await o.put('b', 'B', { attrs: { m: 9 } });
    const landed = await ctx.backend.commitBatch([
      { type: 'attrs', bucket, key: 'a', set: { x: 1 }, marker: { attr: 'm', seq: 3 } },
      { type: 'attrs', bucket, key: 'b', set: { x: 1 }, marker: { attr: 'm', seq: 3 } },
      { type: 'attrs', bucket, key: 'gone', set: { x: 1 } },
      { type: 'putItem', table, key: 'ck', item: { n: 1 }, ifRevision: 0, afterAll: true },
    ]);
    expect(landed.map((x) => x.status)).toEqual(['ok', 'condition', 'missing', 'ok']);
    expect((await kv.getItem('ck'))?.item).toEqual({ n: 1 });
    const stopped = await ctx.backend.commitBatch([
      { type: 'attrs', bucket, key: 'a', set: { y: 1 } },
      { type: 'attrs', bucket, key: 'b', set: { big: 'x'.repeat(500_000) } },
      { type: 'putItem', table, key: 'ck2', item: { n: 1 }, ifRevision: 0, afterAll: true },
    ]);
    expect(stopped.map((x) => x.status)).toEqual(['ok', 'failed', 'skipped']);
    expect(await kv.getItem('ck2')).toBeUndefined();
    expect((await o.getAttrs('a')).attrs).toEqual({ m: 3, x: 1, y: 1 });
    const bad = await ctx.backend.commitBatch([{ type: 'putItem', table, key: 'ck3', item: { n: 1 }, afterAll: 'yes' as unknown as boolean }]);
    expect(bad[0]!.status).toBe('failed');
  });

  it(t('a write after a read by another client sees the other client\'s write (no stale revision wins)'), async () => {
    const bucket = ctx.uid('cb');
    await ctx.backend.createBucket(bucket, { shards: 1 });
    const o = await ctx.backend.objects(bucket);
    await o.put('k', 'K');
    await o.head('k', { internal: true }); // the prefetch: NATS remembers this state
    const other = await ctx.openAnother();
    await (await other.objects(bucket)).updateAttrs('k', { expr: 'SET m = :v', values: { ':v': 9 } });
    // The remembered state has no marker; the store has m = 9: the op must see the store's.
    const r = await ctx.backend.commitBatch([{ type: 'attrs', bucket, key: 'k', set: { x: 1 }, marker: { attr: 'm', seq: 3 } }]);
    expect(r[0]!.status).toBe('condition');
    const r2 = await ctx.backend.commitBatch([{ type: 'attrs', bucket, key: 'k', set: { x: 1 }, marker: { attr: 'm', seq: 10 } }]);
    expect(r2[0]!.status).toBe('ok');
    expect((await o.getAttrs('k')).attrs).toEqual({ m: 10, x: 1 });
    // A put over a key this client never saw (another client made it) still lands, with the next attrsRevision.
    await (await other.objects(bucket)).put('fresh', 'one', { attrs: { a: 1 } });
    await o.put('fresh', 'two');
    expect(Buffer.from((await o.get('fresh')).body).toString()).toBe('two');
    expect((await o.head('fresh'))?.attrsRevision).toBe(2);
  });
});
