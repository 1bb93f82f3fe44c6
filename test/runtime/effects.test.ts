/**
 * Effects beyond the triggering object (`record.effects`, runtime/effect-writes.ts): declaration
 * checks at the call (least privilege, bad input), the harness showing declared effects, and the
 * commit applying each effect exactly once per triggering record on both backends — KV items, other
 * objects (through their normal attribute write), emitted stream records (dedupeId) — with the
 * markers hidden from user reads.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { BatchRecordInput } from '../../runtime/batch-types.ts';
import { EffectWriter } from '../../runtime/effect-writes.ts';
import type { ExtraEffect } from '../../functions/effects.ts';
import { invokeHandler } from '../../functions/testing.ts';
import { defineFunction } from '../../functions/types.ts';
import { readResults } from '../../runtime/handoff/results-reader.ts';
import { writeResults } from '../../runtime/handoff/results-writer.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { readAll } from '../support/streams.ts';

const quiet = pino({ level: 'silent' });
const one = { expr: 'ADD #c :one', names: { '#c': 'count' }, values: { ':one': 1 } };
const specBindings = [
  { name: 'places', kind: 'kv', access: 'read-write' },
  { name: 'ro', kind: 'kv', access: 'read' },
  { name: 'out', kind: 'stream', access: 'read-write' },
  { name: 'photos', kind: 'object', access: 'read-write' },
];

function rec(key: string, seq: number, o: Partial<BatchRecordInput> = {}): BatchRecordInput {
  return { key, type: 'put', source: 'src', shard: 0, seq, version: seq, size: 0, etag: '', mtimeMs: 0, contentType: '', attrs: {}, headers: {}, attempt: 1, ...o };
}

describe('effects/declare', () => {
  it('effects/declare - the harness shows kv, stream and object effects in declaration order', async () => {
    const fn = defineFunction({
      handler(records) {
        for (const r of records) {
          r.effects.kv('places').update(`p-${r.key}`, one);
          r.effects.stream('out').put({ data: r.key, partitionKey: r.key, headers: { a: 'b' } });
          r.effects.object('photos').updateAttrs('other.jpg', { expr: 'SET seen = :t', values: { ':t': true } });
        }
      },
    });
    const res = await invokeHandler(fn, [{ key: 'a' }], { bindings: specBindings });
    expect(res.error).toBeUndefined();
    expect(res.byKey('a')?.extra).toEqual([
      { kind: 'kv', binding: 'places', key: 'p-a', update: one },
      { kind: 'stream', binding: 'out', data: 'a', partitionKey: 'a', headers: { a: 'b' } },
      { kind: 'object', binding: 'photos', key: 'other.jpg', update: { expr: 'SET seen = :t', values: { ':t': true } } },
    ]);
  });

  const refused: [string, (r: Parameters<Parameters<typeof defineFunction>[0]['handler']>[0][number]) => void, string][] = [
    ['an undeclared binding is SLUICE_ACCESS_DENIED', (r) => r.effects.kv('nope').update('k', one), 'SLUICE_ACCESS_DENIED'],
    ['a read-only binding is SLUICE_ACCESS_DENIED', (r) => r.effects.kv('ro').update('k', one), 'SLUICE_ACCESS_DENIED'],
    ['a binding of another kind is SLUICE_INVALID_ARGUMENT', (r) => r.effects.stream('places').put({ data: 'x' }), 'SLUICE_INVALID_ARGUMENT'],
    ['a $sluice.* name is SLUICE_INVALID_ARGUMENT', (r) => r.effects.kv('places').update('k', { expr: 'SET #m = :v', names: { '#m': '$sluice.x' }, values: { ':v': 1 } }), 'SLUICE_INVALID_ARGUMENT'],
    ['a malformed update is SLUICE_EXPRESSION_SYNTAX', (r) => r.effects.object('photos').updateAttrs('k', 'SET = 1'), 'SLUICE_EXPRESSION_SYNTAX'],
    ['an empty key is SLUICE_KEY_INVALID', (r) => r.effects.kv('places').update('', one), 'SLUICE_KEY_INVALID'],
    ['stream data of the wrong type is SLUICE_INVALID_ARGUMENT', (r) => r.effects.stream('out').put({ data: 5 as unknown as string }), 'SLUICE_INVALID_ARGUMENT'],
  ];
  for (const [what, call, code] of refused)
    it(`effects/declare - ${what}, and declares nothing`, async () => {
      let caught: unknown;
      const fn = defineFunction({
        handler(records) {
          try {
            call(records[0]!);
          } catch (e) {
            caught = e;
          }
        },
      });
      const res = await invokeHandler(fn, [{ key: 'a' }], { bindings: specBindings });
      expect((caught as { code?: string })?.code).toBe(code);
      expect(res.byKey('a')?.extra ?? []).toEqual([]);
    });
});

describe('effects/handoff', () => {
  it('effects/handoff - declared effects travel back from a handler thread in the results message', () => {
    const extra: ExtraEffect[] = [
      { kind: 'kv', binding: 'places', key: 'k', update: one },
      { kind: 'stream', binding: 'out', data: new Uint8Array([1, 2, 3]), partitionKey: 'p', headers: { h: 'v' } },
      { kind: 'object', binding: 'photos', key: 'o', update: 'SET a = 1' },
    ];
    const buf = new Uint8Array(64 * 1024);
    writeResults(buf, { records: [{ set: { x: 1 }, remove: [], updates: [], extra }, { set: {}, remove: [], updates: [] }], counters: { n: 2 } });
    const back = readResults(buf);
    expect(back.records[0]!.extra).toEqual(extra);
    expect(back.records[0]!.extra![1]).toMatchObject({ data: new Uint8Array([1, 2, 3]) });
    expect(back.records[1]!.extra).toBeUndefined();
    expect(back.records[0]!.set).toEqual({ x: 1 });
  });
});

forEachBackend('effects', (ctx) => {
  const t = (what: string) => tn('effects', ctx, what);

  it(t('commit: a redelivered record applies its kv, object and stream effects once; other records apply theirs'), async () => {
    const table = ctx.uid('tbl');
    const bucket = ctx.uid('bkt');
    const stream = ctx.uid('out');
    await ctx.backend.createTable(table);
    await ctx.backend.createBucket(bucket, { shards: 1 });
    await ctx.backend.streams().create(stream, { shards: 1 });
    const objects = await ctx.backend.objects(bucket);
    await objects.put('other.jpg', 'x', { attrs: { color: 'red' } });
    const w = new EffectWriter(
      'fx',
      [
        { name: 'places', kind: 'kv', resource: table, access: 'read-write' },
        { name: 'photos', kind: 'object', resource: bucket, access: 'read-write' },
        { name: 'out', kind: 'stream', resource: stream, access: 'read-write' },
        { name: 'ro', kind: 'kv', resource: table, access: 'read' },
      ],
      ctx.backend,
      quiet,
    );
    const extra = (tag: string): ExtraEffect[] => [
      { kind: 'kv', binding: 'places', key: 'total', update: one },
      { kind: 'kv', binding: 'places', key: 'total', update: one },
      { kind: 'object', binding: 'photos', key: 'other.jpg', update: one },
      { kind: 'stream', binding: 'out', data: tag },
      { kind: 'object', binding: 'photos', key: 'missing.jpg', update: one },
    ];
    // Record a@1 three times (redeliveries), then b@2 (another key, same items), then a@3.
    for (let i = 0; i < 3; i++) expect(await w.commit(rec('a', 1), extra('a1'))).toBe('ok');
    expect(await w.commit(rec('b', 2), extra('b2'))).toBe('ok');
    expect(await w.commit(rec('b', 2), extra('b2'))).toBe('ok');
    expect(await w.commit(rec('a', 3), extra('a3'))).toBe('ok');
    const kv = await ctx.backend.kv(table);
    const item = await kv.getItem('total');
    expect(item?.item).toEqual({ count: 6 }); // two updates per record, three records; markers hidden
    const attrs = (await objects.getAttrs('other.jpg')).attrs;
    expect(attrs).toEqual({ color: 'red', count: 3 });
    expect((await readAll(ctx.backend.streams(), stream)).sort()).toEqual(['a1', 'a3', 'b2']);
    // Least privilege holds at commit too (the declarations crossed a thread boundary).
    expect(await w.commit(rec('c', 4), [{ kind: 'kv', binding: 'ro', key: 'k', update: one }])).toMatchObject({ error: { code: 'SLUICE_ACCESS_DENIED' } });
    expect(await w.commit(rec('c', 4), [{ kind: 'kv', binding: 'zzz', key: 'k', update: one }])).toMatchObject({ error: { code: 'SLUICE_ACCESS_DENIED' } });
    // A failing effect fails the record; a retry applies it and skips the ones already applied.
    const bad: ExtraEffect[] = [
      { kind: 'kv', binding: 'places', key: 'total', update: one },
      { kind: 'kv', binding: 'places', key: 'str', update: { expr: 'ADD s :one', values: { ':one': 1 } } },
    ];
    await kv.putItem('str', { s: 'text' });
    expect(await w.commit(rec('d', 5), bad)).toMatchObject({ error: { code: 'SLUICE_EXPRESSION_INVALID' } });
    await kv.putItem('str', { s: 10 });
    expect(await w.commit(rec('d', 5), bad)).toBe('ok');
    expect((await kv.getItem('total'))?.item.count).toBe(7);
    expect((await kv.getItem('str'))?.item).toMatchObject({ s: 11 });
  });

  it(t('stream: a repeated dedupeId appends once and answers the first seq with duplicate'), async () => {
    const s = ctx.backend.streams();
    const name = ctx.uid('dd');
    await s.create(name, { shards: 1 });
    const a = await s.putRecords(name, [{ data: 'x', shard: 0, dedupeId: 'id-1' }, { data: 'y', shard: 0, dedupeId: 'id-2' }]);
    const b = await s.putRecords(name, [{ data: 'x', shard: 0, dedupeId: 'id-1' }, { data: 'z', shard: 0 }]);
    expect(a.map((r) => r.ok)).toEqual([true, true]);
    expect(b[0]).toEqual({ ok: true, shard: 0, seq: a[0]!.ok ? a[0]!.seq : -1, duplicate: true });
    expect((await readAll(s, name)).sort()).toEqual(['x', 'y', 'z']);
    const bad = await s.putRecords(name, [{ data: 'x', shard: 0, dedupeId: '' }]);
    expect(bad[0]).toMatchObject({ ok: false, error: { code: 'SLUICE_INVALID_ARGUMENT' } });
  });
});
