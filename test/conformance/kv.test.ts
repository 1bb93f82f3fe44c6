/** KV binding conformance: every test runs against every backend. */
import { describe, expect, it } from 'vitest';
import { ConditionFailedError } from '../../bindings/errors.ts';
import { Limits } from '../../bindings/values.ts';
import { forEachBackend, tn } from './backends.ts';
import { rejectsWith } from './helpers.ts';

forEachBackend('kv', (ctx) => {
  const t = (what: string) => tn('kv', ctx, what);
  const table = async () => {
    const name = ctx.uid('t');
    await ctx.backend.createTable(name);
    return ctx.backend.kv(name);
  };

  describe('items', () => {
    it(t('putItem then getItem returns the item and its revision'), async () => {
      const kv = await table();
      const w = await kv.putItem('u1', { name: 'Carla', bugs: 3, tags: ['a', 'b'], meta: { x: 1 }, at: new Date(1000), raw: new Uint8Array([9]), none: null, ok: true });
      expect(w.revision).toBeGreaterThan(0);
      const e = await kv.getItem('u1');
      expect(e?.revision).toBe(w.revision);
      expect(e?.item).toMatchObject({ name: 'Carla', bugs: 3, tags: ['a', 'b'], meta: { x: 1 }, none: null, ok: true });
      expect((e?.item.at as Date).getTime()).toBe(1000);
      expect(Array.from(e?.item.raw as Uint8Array)).toEqual([9]);
    });

    it(t('getItem projects attributes and returns undefined for absent keys'), async () => {
      const kv = await table();
      await kv.putItem('p', { a: 1, b: 2, c: 3 });
      expect((await kv.getItem('p', { attrs: ['a', 'c', 'zz'] }))?.item).toEqual({ a: 1, c: 3 });
      expect(await kv.getItem('absent')).toBeUndefined();
    });

    it(t('every write returns a higher revision'), async () => {
      const kv = await table();
      const a = await kv.putItem('r', { n: 1 });
      const b = await kv.updateItem('r', 'SET n = n + 1');
      const c = await kv.putItem('r', { n: 9 });
      expect(b.revision).toBeGreaterThan(a.revision);
      expect(c.revision).toBeGreaterThan(b.revision);
      expect(b.item).toEqual({ n: 2 });
    });

    it(t('updateItem creates an absent item (v3io counter idiom)'), async () => {
      const kv = await table();
      const r = await kv.updateItem('ctr', 'SET ctr = if_not_exists(ctr, 0) + 1');
      expect(r.item).toEqual({ ctr: 1 });
      expect((await kv.updateItem('ctr', 'SET ctr = if_not_exists(ctr, 0) + 1')).item).toEqual({ ctr: 2 });
    });

    it(t('deleteItem removes and reports whether the item existed'), async () => {
      const kv = await table();
      await kv.putItem('d', { a: 1 });
      expect(await kv.deleteItem('d')).toBe(true);
      expect(await kv.getItem('d')).toBeUndefined();
      expect(await kv.deleteItem('d')).toBe(false);
    });

    it(t('unicode keys round-trip'), async () => {
      const kv = await table();
      const keys = ['ключ', '鍵/キー', '😀', 'a.b', '*', '>', 'with space'];
      for (const k of keys) await kv.putItem(k, { k });
      for (const k of keys) expect((await kv.getItem(k))?.item.k).toBe(k);
    });
  });

  describe('conditions', () => {
    it(t('update with stale revision fails and carries the current item'), async () => {
      const kv = await table();
      const a = await kv.putItem('s', { v: 1 });
      await kv.putItem('s', { v: 2 });
      const e = (await rejectsWith(kv.updateItem('s', 'SET v = 3', { ifRevision: a.revision }), 'SLUICE_CONDITION_FAILED')) as ConditionFailedError;
      expect(e).toBeInstanceOf(ConditionFailedError);
      expect(e.current).toEqual({ v: 2 });
      expect(e.revision).toBeGreaterThan(a.revision);
      expect((await kv.getItem('s'))?.item).toEqual({ v: 2 });
    });

    it(t('ifRevision 0 means the item must not exist'), async () => {
      const kv = await table();
      await kv.putItem('n', { v: 1 }, { ifRevision: 0 });
      await rejectsWith(kv.putItem('n', { v: 2 }, { ifRevision: 0 }), 'SLUICE_CONDITION_FAILED');
    });

    it(t('condition expressions guard put, update and delete'), async () => {
      const kv = await table();
      await kv.putItem('car', { name: 'Carla', bugs: 12 });
      await kv.updateItem('car', 'SET bugs = bugs + 1', { condition: "(bugs < 15) AND starts(name, 'Car')" });
      await rejectsWith(kv.updateItem('car', 'SET bugs = 0', { condition: 'bugs > 100' }), 'SLUICE_CONDITION_FAILED');
      await rejectsWith(kv.putItem('car', { x: 1 }, { condition: 'not_exists(name)' }), 'SLUICE_CONDITION_FAILED');
      await rejectsWith(kv.deleteItem('car', { condition: { expr: 'bugs = :b', values: { ':b': 0 } } }), 'SLUICE_CONDITION_FAILED');
      expect((await kv.getItem('car'))?.item).toEqual({ name: 'Carla', bugs: 13 });
      expect(await kv.deleteItem('car', { condition: { expr: '#b = :b', names: { '#b': 'bugs' }, values: { ':b': 13 } } })).toBe(true);
    });

    it(t('a condition on an absent item sees every path missing'), async () => {
      const kv = await table();
      await kv.putItem('new', { a: 1 }, { condition: 'not_exists(a)' });
      const e = (await rejectsWith(kv.updateItem('ghost', 'SET a = 1', { condition: 'exists(a)' }), 'SLUICE_CONDITION_FAILED')) as ConditionFailedError;
      expect(e.current).toBeUndefined();
      expect(await kv.getItem('ghost')).toBeUndefined();
    });

    it(t('condition race: two clients, 50 CAS increments each, none lost'), async () => {
      const kv = await table();
      const other = await (await ctx.openAnother()).kv(kv.table);
      await kv.putItem('hot', { n: 0 });
      const worker = async (c: typeof kv) => {
        let done = 0;
        let conflicts = 0;
        while (done < 50) {
          const cur = (await c.getItem('hot'))!;
          try {
            await c.putItem('hot', { n: (cur.item.n as number) + 1 }, { ifRevision: cur.revision });
            done++;
          } catch (e) {
            expect((e as ConditionFailedError).code).toBe('SLUICE_CONDITION_FAILED');
            conflicts++;
            if (conflicts > 5000) throw new Error('livelock');
          }
        }
      };
      await Promise.all([worker(kv), worker(other), worker(kv), worker(other)]);
      expect((await kv.getItem('hot'))?.item.n).toBe(200);
    });

    it(t('concurrent updateItem ADDs from two clients are all applied'), async () => {
      const kv = await table();
      const other = await (await ctx.openAnother()).kv(kv.table);
      await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? kv : other).updateItem('sum', { expr: 'ADD total :n', values: { ':n': i } })));
      expect((await kv.getItem('sum'))?.item.total).toBe((59 * 60) / 2);
    });
  });

  describe('scan', () => {
    it(t('getItems filters, projects and pages in key order'), async () => {
      const kv = await table();
      for (let i = 0; i < 250; i++) await kv.putItem(`item-${String(i).padStart(3, '0')}`, { i, even: i % 2 === 0, name: `n${i}` });
      const seen: number[] = [];
      let marker: string | undefined;
      let pages = 0;
      do {
        const p = await kv.getItems({ filter: 'even = true AND i >= 100', attrs: ['i'], limit: 30, ...(marker ? { marker } : {}) });
        for (const e of p.items) {
          expect(Object.keys(e.item)).toEqual(['i']);
          seen.push(e.item.i as number);
        }
        marker = p.nextMarker;
        pages++;
      } while (marker !== undefined && pages < 50);
      expect(seen).toEqual(Array.from({ length: 75 }, (_, k) => 100 + 2 * k));
    });

    it(t('parallel scan segments are disjoint and cover the table'), async () => {
      const kv = await table();
      await Promise.all(Array.from({ length: 100 }, (_, i) => kv.putItem(`s${i}`, { i })));
      const all: string[] = [];
      for (let seg = 0; seg < 4; seg++) {
        const p = await kv.getItems({ segment: seg, totalSegments: 4, limit: 1000 });
        all.push(...p.items.map((e) => e.key));
      }
      expect(all.sort()).toEqual(Array.from({ length: 100 }, (_, i) => `s${i}`).sort());
      await rejectsWith(kv.getItems({ segment: 4, totalSegments: 4 }), 'SLUICE_INVALID_ARGUMENT');
    });
  });

  describe('bad input writes nothing', () => {
    it(t('invalid keys, oversized and mistyped items are refused'), async () => {
      const kv = await table();
      await rejectsWith(kv.putItem('', { a: 1 }), 'SLUICE_KEY_INVALID');
      await rejectsWith(kv.putItem('k'.repeat(Limits.maxKeyBytes + 1), { a: 1 }), 'SLUICE_KEY_INVALID');
      await rejectsWith(kv.putItem('big', { b: new Uint8Array(Limits.maxItemBytes) }), 'SLUICE_VALUE_TOO_LARGE');
      await rejectsWith(kv.putItem('bad', { f: Symbol('x') as unknown as string }), 'SLUICE_VALUE_INVALID');
      await rejectsWith(kv.putItem('bad', [1, 2] as unknown as Record<string, number>), 'SLUICE_VALUE_INVALID');
      expect((await kv.getItems()).items).toEqual([]);
    });

    it(t('the maximum item size is accepted'), async () => {
      const kv = await table();
      // name 'b' (1 byte) + map overhead (1) + value: exactly Limits.maxItemBytes in all.
      await kv.putItem('max', { b: new Uint8Array(Limits.maxItemBytes - 1) });
      expect(((await kv.getItem('max'))?.item.b as Uint8Array).byteLength).toBe(Limits.maxItemBytes - 1);
    });

    it(t('an update whose result is too large is refused and changes nothing'), async () => {
      const kv = await table();
      await kv.putItem('grow', { a: new Uint8Array(Limits.maxItemBytes - 100) });
      await rejectsWith(kv.updateItem('grow', { expr: 'SET b = :b', values: { ':b': new Uint8Array(200) } }), 'SLUICE_VALUE_TOO_LARGE');
      expect(Object.keys((await kv.getItem('grow'))!.item)).toEqual(['a']);
    });

    it(t('malformed expressions name their position and write nothing'), async () => {
      const kv = await table();
      const e = await rejectsWith(kv.updateItem('x', 'SET a = (1 +'), 'SLUICE_EXPRESSION_SYNTAX');
      expect(e.message).toMatch(/line 1, column/);
      await rejectsWith(kv.putItem('x', { a: 1 }, { condition: 'a BETWEEN 1' }), 'SLUICE_EXPRESSION_SYNTAX');
      await rejectsWith(kv.getItems({ filter: 'a = ' }), 'SLUICE_EXPRESSION_SYNTAX');
      await rejectsWith(kv.updateItem('x', { expr: 'SET a = :missing', values: {} }), 'SLUICE_EXPRESSION_INVALID');
      expect(await kv.getItem('x')).toBeUndefined();
    });

    it(t('unknown and invalid table names are refused'), async () => {
      await rejectsWith(ctx.backend.kv(ctx.uid('missing')), 'SLUICE_TABLE_NOT_FOUND');
      await rejectsWith(ctx.backend.createTable('UPPER'), 'SLUICE_NAME_INVALID');
      await rejectsWith(ctx.backend.kv('../etc'), 'SLUICE_NAME_INVALID');
    });

    it(t('createTable takes replicas 1..5 and nothing else'), async () => {
      const name = ctx.uid('t');
      await ctx.backend.createTable(name, { replicas: 1 });
      await (await ctx.backend.kv(name)).putItem('k', { a: 1 });
      const e = await rejectsWith(ctx.backend.createTable(ctx.uid('t'), { replicas: 0 }), 'SLUICE_INVALID_ARGUMENT');
      expect(e.message).toMatch(/table '[^']+'\.replicas must be an integer from 1 to 5/);
      await rejectsWith(ctx.backend.createTable(ctx.uid('t'), { shards: 2 } as never), 'SLUICE_INVALID_ARGUMENT');
    });
  });
});
