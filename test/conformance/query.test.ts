/** Object metadata query conformance (`ObjectBinding.query`): every test runs against every backend. */
import { describe, expect, it } from 'vitest';
import { matchesWhere, type ObjectState } from '../../bindings/query/index.ts';
import type { Expression, ObjectBinding, QueryOptions, QueryResult, QueryRow } from '../../bindings/types.ts';
import { forEachBackend, tn } from './backends.ts';
import { rejectsWith } from './helpers.ts';

/** Every row of a query, following tokens; checks no key repeats. */
async function all(o: ObjectBinding, q: QueryOptions): Promise<{ rows: QueryRow[]; pages: QueryResult[] }> {
  const rows: QueryRow[] = [];
  const pages: QueryResult[] = [];
  let token: string | undefined;
  for (let i = 0; i < 1000; i++) {
    const p = await o.query({ ...q, ...(token ? { continuationToken: token } : {}) });
    pages.push(p);
    rows.push(...p.rows);
    token = p.nextToken;
    if (!token) break;
  }
  expect(new Set(rows.map((r) => r.key)).size).toBe(rows.length);
  return { rows, pages };
}

/** The keys a brute-force evaluation over every object's head selects, in key order. */
async function brute(o: ObjectBinding, where: Expression): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const p = await o.list(token ? { continuationToken: token } : {});
    for (const m of p.objects) {
      const h = (await o.head(m.key))!;
      const s: ObjectState = { key: h.key, size: h.size, etag: h.etag, version: h.version, contentType: h.contentType, mtimeMs: h.mtime.getTime(), attrs: h.attrs };
      if (matchesWhere(s, where)) keys.push(h.key);
    }
    token = p.nextToken;
  } while (token);
  return keys;
}

forEachBackend('query', (ctx) => {
  const t = (what: string) => tn('query', ctx, what);

  /** A bucket of 60 objects: k00..k59, size = i bytes, attrs n = i, has_ssn every 3rd, level by i mod 4, tag. */
  async function seeded(indexes: string[] = []): Promise<ObjectBinding> {
    const name = ctx.uid('q');
    await ctx.backend.createBucket(name, { shards: 4, indexes });
    const o = await ctx.backend.objects(name);
    await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        o.put(`k${String(i).padStart(2, '0')}`, 'x'.repeat(i), {
          contentType: i % 2 ? 'text/plain' : 'image/jpeg',
          attrs: { n: i, has_ssn: i % 3 === 0, level: ['low', 'mid', 'high', 'top'][i % 4]!, tag: `t${i % 5}`, ...(i === 7 ? { size: 'big' } : {}), ['$sluice.fn']: i },
        }),
      ),
    );
    return o;
  }

  describe('rows and fields', () => {
    it(t('rows hold key, every system field and the attributes; internal attributes never appear'), async () => {
      const o = await seeded();
      const { rows } = await all(o, { where: 'n = 7' });
      expect(rows).toHaveLength(1);
      const r = rows[0]!;
      expect(r.key).toBe('k07');
      expect(r.size).toBe(7);
      expect(r.mtime).toBeInstanceOf(Date);
      expect(typeof r.etag).toBe('string');
      expect(r.content_type).toBe('text/plain');
      expect(typeof r.version).toBe('number');
      expect(r.n).toBe(7);
      // An attribute named like a system field comes back as attr.<name>.
      expect(r['attr.size']).toBe('big');
      expect(Object.keys(r).some((k) => k.includes('$sluice'))).toBe(false);
    });

    it(t('select returns key plus the named fields only'), async () => {
      const o = await seeded();
      const { rows } = await all(o, { where: 'n < 2', select: ['size', 'level', 'attr.n', 'missing'] });
      expect(rows).toEqual([
        { key: 'k00', size: 0, level: 'low', n: 0 },
        { key: 'k01', size: 1, level: 'mid', n: 1 },
      ]);
    });

    it(t('where addresses system fields and attributes (attr.<name> for a collision)'), async () => {
      const o = await seeded();
      expect((await all(o, { where: "size >= 58 AND content_type = 'image/jpeg'" })).rows.map((r) => r.key)).toEqual(['k58']);
      expect((await all(o, { where: "attr.size = 'big'" })).rows.map((r) => r.key)).toEqual(['k07']);
      expect((await all(o, { where: "size = 'big'" })).rows).toHaveLength(0);
      expect((await all(o, { where: "begins_with(key, 'k5') AND has_ssn = true" })).rows.map((r) => r.key)).toEqual(['k51', 'k54', 'k57']);
      const since = new Date(Date.now() - 3_600_000).toISOString();
      expect((await all(o, { where: { expr: 'mtime > :t', values: { t: since } } })).rows).toHaveLength(60);
    });

    it(t('internal attributes cannot be matched unless includeInternal is set'), async () => {
      const o = await seeded();
      expect((await all(o, { where: '`$sluice.fn` = 3' })).rows).toHaveLength(0);
      expect((await all(o, { where: 'exists(attr.`$sluice.fn`)' })).rows).toHaveLength(0);
      const r = await all(o, { where: '`$sluice.fn` = 3', includeInternal: true });
      expect(r.rows.map((x) => x.key)).toEqual(['k03']);
      expect(r.rows[0]!['$sluice.fn']).toBe(3);
    });
  });

  describe('pages and order', () => {
    it(t('pages in key order resume by token without gaps or repeats'), async () => {
      const o = await seeded();
      const { rows, pages } = await all(o, { where: 'n >= 5', limit: 7 });
      expect(rows.map((r) => r.key)).toEqual(Array.from({ length: 55 }, (_, i) => `k${String(i + 5).padStart(2, '0')}`));
      expect(pages.length).toBe(8);
      expect(pages.slice(0, -1).every((p) => p.rows.length === 7)).toBe(true);
    });

    it(t('orderBy any field, both directions, ties by key, paged'), async () => {
      const o = await seeded();
      const desc = await all(o, { orderBy: { field: 'size', direction: 'desc' }, limit: 9, select: ['size'] });
      expect(desc.rows.map((r) => r.size)).toEqual(Array.from({ length: 60 }, (_, i) => 59 - i));
      const byLevel = await all(o, { orderBy: { field: 'level' }, limit: 8, select: ['level'] });
      const expected = Array.from({ length: 60 }, (_, i) => ({ key: `k${String(i).padStart(2, '0')}`, level: ['low', 'mid', 'high', 'top'][i % 4]! })).sort(
        (a, b) => (a.level < b.level ? -1 : a.level > b.level ? 1 : a.key < b.key ? -1 : 1),
      );
      expect(byLevel.rows).toEqual(expected);
      const keysDesc = await all(o, { where: "begins_with(key, 'k1')", orderBy: { field: 'key', direction: 'desc' }, limit: 3, select: ['key'] });
      expect(keysDesc.rows.map((r) => r.key)).toEqual(['k19', 'k18', 'k17', 'k16', 'k15', 'k14', 'k13', 'k12', 'k11', 'k10']);
    });

    it(t('prefix narrows the rows'), async () => {
      const o = await seeded();
      expect((await all(o, { prefix: 'k4', where: 'has_ssn = true' })).rows.map((r) => r.key)).toEqual(['k42', 'k45', 'k48']);
    });
  });

  describe('indexes', () => {
    const wheres: Expression[] = [
      'has_ssn = true',
      "level = 'high'",
      'n > 50',
      'n BETWEEN 10 AND 14',
      "level IN ('low', 'top')",
      "begins_with(tag, 't3')",
      'has_ssn = true AND n < 20',
      "level = 'mid' OR has_ssn = true",
      'size < 3',
      { expr: 'mtime >= :t', values: { t: new Date(0) } },
      "attr.size = 'big'",
    ];

    it(t('indexed queries say so in plan and return exactly what a brute-force evaluation returns'), async () => {
      const o = await seeded(['has_ssn', 'level', 'n', 'tag', 'mtime', 'attr.size', 'size']);
      expect((await o.info()).indexes).toEqual(['attr.has_ssn', 'attr.level', 'attr.n', 'attr.size', 'attr.tag', 'mtime', 'size']);
      for (const w of wheres) {
        const { rows, pages } = await all(o, { where: w, limit: 4 });
        expect(pages[0]!.plan.kind, JSON.stringify(w)).toBe('index');
        expect(rows.map((r) => r.key), JSON.stringify(w)).toEqual(await brute(o, w));
      }
      // A selective query examines its candidates, not the bucket.
      const p = await o.query({ where: "level = 'high' AND n < 12" });
      expect(p.plan.index).toBe('attr.level');
      expect(p.plan.examined).toBeLessThanOrEqual(15);
    });

    it(t('index entries follow attribute updates, replacing puts and deletes'), async () => {
      const o = await seeded(['has_ssn', 'level']);
      await o.updateAttrs('k03', { expr: 'SET has_ssn = :f', values: { f: false } });
      await o.updateAttrs('k04', 'REMOVE level');
      await o.put('k06', 'replaced', { attrs: { level: 'high' } });
      await o.delete('k09');
      const ssn = (await all(o, { where: 'has_ssn = true' })).rows.map((r) => r.key);
      expect(ssn).not.toContain('k03');
      expect(ssn).not.toContain('k06');
      expect(ssn).not.toContain('k09');
      expect(ssn).toEqual(await brute(o, 'has_ssn = true'));
      const high = (await all(o, { where: "level = 'high'" })).rows.map((r) => r.key);
      expect(high).toContain('k06');
      expect(high).toEqual(await brute(o, "level = 'high'"));
      expect((await all(o, { where: "level = 'low'" })).rows.map((r) => r.key)).not.toContain('k04');
    });

    it(t('un-indexed where scans; key conditions use the key order'), async () => {
      const o = await seeded(['level']);
      const scan = await o.query({ where: 'n > 50' });
      expect(scan.plan.kind).toBe('scan');
      expect(scan.rows).toHaveLength(9);
      const negated = await o.query({ where: "NOT level = 'high'" });
      expect(negated.plan.kind).toBe('scan');
      const kr = await o.query({ where: "begins_with(key, 'k2')" });
      expect(kr.plan.kind).toBe('key-range');
      expect(kr.rows).toHaveLength(10);
    });
  });

  describe('bad input', () => {
    it(t('a malformed where is SLUICE_EXPRESSION_SYNTAX with a position'), async () => {
      const o = await seeded();
      const e = await rejectsWith(o.query({ where: 'n = = 3' }), 'SLUICE_EXPRESSION_SYNTAX');
      expect(e.message).toMatch(/line 1, column \d+/);
    });

    it(t('bad options are SLUICE_INVALID_ARGUMENT; a foreign token is SLUICE_CURSOR_INVALID'), async () => {
      const o = await seeded();
      await rejectsWith(o.query({ limit: 0 }), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(o.query({ select: [] }), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(o.query({ orderBy: { field: 'n', direction: 'up' as 'asc' } }), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(o.query({ bogus: 1 } as QueryOptions), 'SLUICE_INVALID_ARGUMENT');
      const p = await o.query({ limit: 2 });
      await rejectsWith(o.query({ limit: 2, where: 'n > 1', continuationToken: p.nextToken! }), 'SLUICE_CURSOR_INVALID');
      await rejectsWith(o.query({ continuationToken: 'garbage!' }), 'SLUICE_CURSOR_INVALID');
    });

    it(t('indexes are validated and fixed at creation'), async () => {
      const name = ctx.uid('qi');
      await rejectsWith(ctx.backend.createBucket(name, { indexes: ['key'] }), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(ctx.backend.createBucket(name, { indexes: ['$sluice.fn'] }), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(ctx.backend.createBucket(name, { indexes: 'mtime' as unknown as string[] }), 'SLUICE_INVALID_ARGUMENT');
      await ctx.backend.createBucket(name, { indexes: ['mtime', 'has_ssn'] });
      await ctx.backend.createBucket(name, { indexes: ['has_ssn', 'mtime'] });
      await rejectsWith(ctx.backend.createBucket(name, { indexes: ['mtime'] }), 'SLUICE_ALREADY_EXISTS');
    });
  });
});
