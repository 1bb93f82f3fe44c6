/**
 * Bucket lifecycle conformance (Backend.listBuckets / deleteBucket), on every backend and with the s3
 * body store: a listed bucket carries its configuration and creation time; only an empty bucket is
 * deleted (SLUICE_BUCKET_NOT_EMPTY otherwise, nothing removed); a deleted bucket is gone for every
 * client, and one made again under its name starts empty with an empty change stream.
 */
import { expect, it } from 'vitest';
import { forEachBackend, tn } from './backends.ts';
import { readChanges, rejectsWith } from './helpers.ts';

forEachBackend('buckets', (ctx) => {
  const t = (what: string) => tn('buckets', ctx, what);

  it(t('listBuckets names every bucket in order with its shards, indexes and creation time'), async () => {
    const before = Date.now();
    const a = ctx.uid('lb-b');
    const b = ctx.uid('lb-a');
    await ctx.backend.createBucket(a, { shards: 3 });
    await ctx.backend.createBucket(b, { shards: 2, indexes: ['mtime'] });
    const all = await ctx.backend.listBuckets();
    const names = all.map((x) => x.name);
    expect(names).toEqual([...names].sort());
    const la = all.find((x) => x.name === a)!;
    const lb = all.find((x) => x.name === b)!;
    expect(la).toMatchObject({ name: a, shards: 3, indexes: [] });
    expect(lb).toMatchObject({ name: b, shards: 2, indexes: ['mtime'] });
    expect(la.changeStream).toBe((await (await ctx.backend.objects(a)).info()).changeStream);
    expect(la.created).toBeInstanceOf(Date);
    expect(la.created.getTime()).toBeGreaterThanOrEqual(before - 60_000);
    expect(la.created.getTime()).toBeLessThanOrEqual(Date.now() + 60_000);
    // Another client sees the same list.
    const other = await ctx.openAnother();
    expect((await other.listBuckets()).map((x) => x.name)).toEqual(expect.arrayContaining([a, b]));
  });

  it(t('deleteBucket refuses a bucket holding an object and removes nothing'), async () => {
    const name = ctx.uid('db-full');
    await ctx.backend.createBucket(name, { shards: 2 });
    const o = await ctx.backend.objects(name);
    await o.put('keep/me.txt', 'x'.repeat(2000));
    const e = await rejectsWith(ctx.backend.deleteBucket(name), 'SLUICE_BUCKET_NOT_EMPTY');
    expect(e.message).toContain(name);
    expect(Buffer.from((await o.get('keep/me.txt')).body).toString()).toBe('x'.repeat(2000));
    expect((await ctx.backend.listBuckets()).some((x) => x.name === name)).toBe(true);
  });

  it(t('deleteBucket removes an emptied bucket for every client; unknown buckets are SLUICE_BUCKET_NOT_FOUND'), async () => {
    const name = ctx.uid('db-empty');
    await ctx.backend.createBucket(name, { shards: 2 });
    const o = await ctx.backend.objects(name);
    await o.put('a', 'one');
    await o.put('b', 'two'.repeat(1000));
    await o.delete('a');
    await o.delete('b');
    await ctx.backend.deleteBucket(name);
    expect((await ctx.backend.listBuckets()).some((x) => x.name === name)).toBe(false);
    await rejectsWith(ctx.backend.objects(name), 'SLUICE_BUCKET_NOT_FOUND');
    const other = await ctx.openAnother();
    await rejectsWith(other.objects(name), 'SLUICE_BUCKET_NOT_FOUND');
    await rejectsWith(ctx.backend.deleteBucket(name), 'SLUICE_BUCKET_NOT_FOUND');
    await rejectsWith(ctx.backend.deleteBucket(ctx.uid('never')), 'SLUICE_BUCKET_NOT_FOUND');
    await rejectsWith(ctx.backend.deleteBucket('Not A Name'), 'SLUICE_NAME_INVALID');
  });

  it(t('a bucket made again after deleteBucket starts empty, with other shards if asked, and an empty change stream'), async () => {
    const name = ctx.uid('db-again');
    await ctx.backend.createBucket(name, { shards: 2 });
    const o = await ctx.backend.objects(name);
    await o.put('old', 'old body');
    await o.delete('old');
    await ctx.backend.deleteBucket(name);
    const info = await ctx.backend.createBucket(name, { shards: 4 });
    expect(info.shards).toBe(4);
    const again = await ctx.backend.objects(name);
    expect((await again.list({})).objects).toEqual([]);
    expect(await again.head('old')).toBeUndefined();
    expect(await readChanges(ctx, again)).toEqual([]);
    await again.put('new', 'fresh');
    const changes = await readChanges(ctx, again);
    expect(changes.map((c) => `${c.type} ${c.key}`)).toEqual(['put new']);
  });
});
