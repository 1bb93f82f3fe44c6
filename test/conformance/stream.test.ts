/** Stream binding conformance: every test runs against every backend. */
import { describe, expect, it } from 'vitest';
import { shardOf } from '../../bindings/shared.ts';
import type { Cursor, StreamBinding } from '../../bindings/types.ts';
import { Limits } from '../../bindings/values.ts';
import { forEachBackend, tn } from './backends.ts';
import { rejectsWith } from './helpers.ts';
import { readShard } from '../support/poll.ts';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

/** Reads a shard from `cursor` to its end. */
async function drain(s: StreamBinding, cursor: Cursor): Promise<string[]> {
  return (await readShard(s, cursor, cursor.shard, 50)).map((r) => text(r.data));
}

forEachBackend('stream', (ctx) => {
  const t = (what: string) => tn('stream', ctx, what);
  const s = () => ctx.backend.streams();
  const stream = async (shards = 3, retentionMs = 0) => {
    const name = ctx.uid('s');
    await s().create(name, { shards, retentionMs });
    return name;
  };

  describe('create / info / delete', () => {
    it(t('create is idempotent for the same options and refuses different ones'), async () => {
      const name = await stream(3);
      const info = await s().create(name, { shards: 3 });
      expect(info).toMatchObject({ name, shards: 3, retentionMs: 0 });
      expect(info.bounds).toHaveLength(3);
      for (const b of info.bounds) expect(b.first).toBeGreaterThan(b.last);
      await rejectsWith(s().create(name, { shards: 4 }), 'SLUICE_ALREADY_EXISTS');
    });

    it(t('delete removes the stream and its records'), async () => {
      const name = await stream(1);
      await s().putRecords(name, [{ data: 'x', shard: 0 }]);
      expect(await s().delete(name)).toBe(true);
      await rejectsWith(s().info(name), 'SLUICE_STREAM_NOT_FOUND');
      expect(await s().delete(name)).toBe(false);
    });
  });

  describe('putRecords / getRecords', () => {
    it(t('records land on the shard of their partition key, in order, with headers'), async () => {
      const name = await stream(3);
      const recs = Array.from({ length: 30 }, (_, i) => ({ data: `r${i}`, partitionKey: `user-${i % 5}`, headers: { n: String(i) } }));
      const res = await s().putRecords(name, recs);
      res.forEach((r, i) => {
        expect(r.ok).toBe(true);
        if (r.ok) expect(r.shard).toBe(shardOf(`user-${i % 5}`, 3));
      });
      for (let shard = 0; shard < 3; shard++) {
        const cur = await s().seek(name, shard, 'earliest');
        const p = await s().getRecords(cur, { limit: 100 });
        const expected = recs.filter((_, i) => shardOf(`user-${i % 5}`, 3) === shard).map((r) => r.data);
        expect(p.records.map((r) => text(r.data))).toEqual(expected);
        for (let i = 1; i < p.records.length; i++) expect(p.records[i]!.seq).toBeGreaterThan(p.records[i - 1]!.seq);
        for (const r of p.records) {
          expect(r.headers.n).toBe(text(r.data).slice(1));
          expect(r.partitionKey).toMatch(/^user-/);
          expect(r.time).toBeInstanceOf(Date);
          expect(r.shard).toBe(shard);
        }
        expect(p.lag).toBe(0);
      }
    });

    it(t('a bad record fails alone while the others are written'), async () => {
      const name = await stream(2);
      const res = await s().putRecords(name, [
        { data: 'ok1', shard: 0 },
        { data: 'bad', shard: 7 },
        { data: Buffer.alloc(Limits.maxRecordBytes + 1), shard: 0 },
        { data: 'nokey' },
        { data: 'ok2', partitionKey: 'p' },
      ]);
      expect(res.map((r) => r.ok)).toEqual([true, false, false, false, true]);
      expect(res[1]).toMatchObject({ ok: false, error: { code: 'SLUICE_SHARD_INVALID' } });
      expect(res[2]).toMatchObject({ ok: false, error: { code: 'SLUICE_VALUE_TOO_LARGE' } });
      expect(res[3]).toMatchObject({ ok: false, error: { code: 'SLUICE_INVALID_ARGUMENT' } });
      const all = [...(await drain(s(), await s().seek(name, 0, 'earliest'))), ...(await drain(s(), await s().seek(name, 1, 'earliest')))];
      expect(all.sort()).toEqual(['ok1', 'ok2']);
    });

    it(t('ifLastSeq appends only while the shard ends there; of racing writers exactly one wins'), async () => {
      const name = await stream(2);
      // An empty shard ends at 0.
      const [a] = await s().putRecords(name, [{ data: 'a', shard: 0, ifLastSeq: 0 }]);
      expect(a).toMatchObject({ ok: true, shard: 0 });
      const seqA = (a as { seq: number }).seq;
      // A stale condition fails alone, naming the shard; the fresh one is appended.
      const res = await s().putRecords(name, [
        { data: 'stale', shard: 0, ifLastSeq: 0 },
        { data: 'b', shard: 0, ifLastSeq: seqA },
        { data: 'other-shard', shard: 1, ifLastSeq: 0 },
        { data: 'bad', shard: 0, ifLastSeq: -1 },
      ]);
      expect(res.map((r) => r.ok)).toEqual([false, true, true, false]);
      expect(res[0]).toMatchObject({ ok: false, error: { code: 'SLUICE_CONDITION_FAILED' } });
      expect((res[0] as { error: { message: string } }).error.message).toContain('shard 0');
      expect(res[3]).toMatchObject({ ok: false, error: { code: 'SLUICE_INVALID_ARGUMENT' } });
      expect(await drain(s(), await s().seek(name, 0, 'earliest'))).toEqual(['a', 'b']);
      // Ten writers race for the same position: one record lands.
      const info = await s().info(name);
      const last = info.bounds[0]!.last;
      const raced = await Promise.all(Array.from({ length: 10 }, (_, i) => s().putRecords(name, [{ data: `r${i}`, shard: 0, ifLastSeq: last }])));
      expect(raced.filter(([r]) => r!.ok)).toHaveLength(1);
      expect(raced.filter(([r]) => !r!.ok && r!.error.code === 'SLUICE_CONDITION_FAILED')).toHaveLength(9);
      expect(await drain(s(), await s().seek(name, 0, 'earliest'))).toHaveLength(3);
    });

    it(t('the maximum record size is accepted'), async () => {
      const name = await stream(1);
      const res = await s().putRecords(name, [{ data: Buffer.alloc(Limits.maxRecordBytes, 3), shard: 0 }]);
      expect(res[0]!.ok).toBe(true);
      const p = await s().getRecords(await s().seek(name, 0, 'earliest'));
      expect(p.records[0]!.data.byteLength).toBe(Limits.maxRecordBytes);
    });

    it(t('getRecords pages with limit and reports lag'), async () => {
      const name = await stream(1);
      await s().putRecords(name, Array.from({ length: 10 }, (_, i) => ({ data: `m${i}`, shard: 0 })));
      const p1 = await s().getRecords(await s().seek(name, 0, 'earliest'), { limit: 4 });
      expect(p1.records.map((r) => text(r.data))).toEqual(['m0', 'm1', 'm2', 'm3']);
      expect(p1.lag).toBe(6);
      const p2 = await s().getRecords(p1.next, { limit: 4 });
      expect(p2.records.map((r) => text(r.data))).toEqual(['m4', 'm5', 'm6', 'm7']);
      expect(p2.lag).toBe(2);
      const p3 = await s().getRecords(p2.next, { limit: 4 });
      expect(p3.records).toHaveLength(2);
      const p4 = await s().getRecords(p3.next);
      expect(p4.records).toHaveLength(0);
      expect(p4.next).toEqual(p3.next);
    });

    it(t('getRecords with maxWaitMs wakes on a record written by another client'), async () => {
      const name = await stream(1);
      const other = (await ctx.openAnother()).streams();
      const cur = await s().seek(name, 0, 'latest');
      const started = Date.now();
      const pending = s().getRecords(cur, { maxWaitMs: 5000 });
      setTimeout(() => void other.putRecords(name, [{ data: 'late', shard: 0 }]), 100);
      const p = await pending;
      expect(p.records.map((r) => text(r.data))).toEqual(['late']);
      expect(Date.now() - started).toBeLessThan(3000);
      const empty = await s().getRecords(p.next, { maxWaitMs: 100 });
      expect(empty.records).toEqual([]);
    });

    it(t('getRecords rejects when its signal aborts'), async () => {
      const name = await stream(1);
      const ac = new AbortController();
      const pending = s().getRecords(await s().seek(name, 0, 'latest'), { maxWaitMs: 10_000, signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await rejectsWith(pending, 'SLUICE_ABORTED');
    });
  });

  describe('seek', () => {
    it(t('earliest, latest, seq and time'), async () => {
      const name = await stream(1);
      const first = await s().putRecords(name, [{ data: 'a', shard: 0 }, { data: 'b', shard: 0 }]);
      await new Promise((r) => setTimeout(r, 30));
      const mid = new Date();
      await new Promise((r) => setTimeout(r, 30));
      await s().putRecords(name, [{ data: 'c', shard: 0 }]);
      expect(await drain(s(), await s().seek(name, 0, 'earliest'))).toEqual(['a', 'b', 'c']);
      expect(await drain(s(), await s().seek(name, 0, 'latest'))).toEqual([]);
      const seqB = first[1]!.ok ? first[1]!.seq : -1;
      expect(await drain(s(), await s().seek(name, 0, { seq: seqB }))).toEqual(['b', 'c']);
      expect(await drain(s(), await s().seek(name, 0, { time: mid }))).toEqual(['c']);
      expect(await drain(s(), await s().seek(name, 0, { time: Date.now() + 60_000 }))).toEqual([]);
    });

    it(t('bad shards, positions and cursors are refused'), async () => {
      const name = await stream(2);
      await rejectsWith(s().seek(name, 2, 'earliest'), 'SLUICE_SHARD_INVALID');
      await rejectsWith(s().seek(name, -1, 'earliest'), 'SLUICE_SHARD_INVALID');
      await rejectsWith(s().seek(name, 0, 'middle' as 'earliest'), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(s().getRecords({ stream: name, shard: 0, seq: -5 }), 'SLUICE_CURSOR_INVALID');
      await rejectsWith(s().getRecords({ stream: name, shard: 0, seq: 1 }, { limit: 0 }), 'SLUICE_INVALID_ARGUMENT');
    });
  });

  describe('retention', () => {
    it(t('records older than retentionMs are dropped'), async () => {
      const name = await stream(1, 1000);
      await s().putRecords(name, [{ data: 'old', shard: 0 }]);
      await new Promise((r) => setTimeout(r, 1600));
      await s().putRecords(name, [{ data: 'new', shard: 0 }]);
      // NATS expires by age on the server's own clock; give it a moment.
      let got: string[] = [];
      for (let i = 0; i < 30; i++) {
        got = await drain(s(), await s().seek(name, 0, 'earliest'));
        if (got.length === 1) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(got).toEqual(['new']);
    });
  });

  describe('consumer groups', () => {
    it(t('a group starts at earliest, commits per shard and never moves backwards'), async () => {
      const name = await stream(2);
      await s().putRecords(name, Array.from({ length: 6 }, (_, i) => ({ data: `g${i}`, shard: i % 2 })));
      const g = await s().group(name, 'workers');
      const p0 = await g.position(0);
      const page = await s().getRecords(p0, { limit: 2 });
      expect(page.records.map((r) => text(r.data))).toEqual(['g0', 'g2']);
      await g.commit(page.next);
      // Another client of the same group sees the committed position.
      const g2 = await (await ctx.openAnother()).streams().group(name, 'workers');
      expect(await g2.position(0)).toEqual(page.next);
      expect((await g2.position(1)).seq).toBe((await s().seek(name, 1, 'earliest')).seq);
      const older = await g2.commit(p0);
      expect(older).toEqual(page.next);
      expect(await drain(s(), await g.position(0))).toEqual(['g4']);
      // Groups are independent.
      const other = await s().group(name, 'auditors');
      expect(await drain(s(), await other.position(0))).toEqual(['g0', 'g2', 'g4']);
    });

    it(t('unknown streams are refused'), async () => {
      await rejectsWith(s().group(ctx.uid('nope'), 'g'), 'SLUICE_STREAM_NOT_FOUND');
      await rejectsWith(s().putRecords(ctx.uid('nope'), [{ data: 'x', shard: 0 }]), 'SLUICE_STREAM_NOT_FOUND');
      await rejectsWith(s().create('Bad Name'), 'SLUICE_NAME_INVALID');
      await rejectsWith(s().create(ctx.uid('s'), { shards: Limits.maxShards + 1 }), 'SLUICE_INVALID_ARGUMENT');
    });

    it(t('create takes replicas 1..5; outside it SLUICE_INVALID_ARGUMENT naming the stream'), async () => {
      expect((await s().create(ctx.uid('s'), { shards: 1, replicas: 1 })).shards).toBe(1);
      const e = await rejectsWith(s().create(ctx.uid('s'), { replicas: 9 }), 'SLUICE_INVALID_ARGUMENT');
      expect(e.message).toMatch(/stream '[^']+'\.replicas must be an integer from 1 to 5/);
    });
  });
});
