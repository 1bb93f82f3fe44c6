/** The query planner and the row model (bindings/query): pure functions, no store. */
import { describe, expect, it } from 'vitest';
import { matchesWhere, planQuery, rowOf, stateItem, type ObjectState } from '../../bindings/query/index.ts';
import { resolveIndexes, resolveQuery } from '../../bindings/query/page.ts';
import { truncateForIndex } from '../../bindings/query/fields.ts';
import { compareKeys, isWellFormed } from '../../bindings/values.ts';

const idx = new Set(['attr.has_ssn', 'attr.level', 'mtime', 'size']);
const plan = (w: Parameters<typeof planQuery>[0]) => planQuery(w, idx, false);

const state: ObjectState = { key: 'a.jpg', size: 10, etag: 'e', version: 3, contentType: 'image/jpeg', mtimeMs: 5000, attrs: { has_ssn: true, size: 'big', ['$sluice.fn']: 1 } };

describe('query/plan', () => {
  it('query - equality, IN, BETWEEN, begins_with and ranges on indexed fields use the index', () => {
    expect(plan('has_ssn = true')).toMatchObject({ kind: 'index', parts: [{ field: 'attr.has_ssn', ranges: [{ rank: 1, lo: 1, hi: 1 }] }] });
    expect(plan("level IN ('a', 'b')")).toMatchObject({ kind: 'index', parts: [{ field: 'attr.level' }] });
    expect(plan('size BETWEEN 1 AND 5')).toMatchObject({ kind: 'index', parts: [{ field: 'size', ranges: [{ rank: 2, lo: 1, hi: 5 }] }] });
    expect(plan("begins_with(level, 'hi')")).toMatchObject({ kind: 'index', parts: [{ ranges: [{ rank: 4, prefix: 'hi' }] }] });
    // Either side of the comparison; a number against a timestamp field looks among timestamps.
    expect(plan('1000 < mtime')).toMatchObject({ kind: 'index', parts: [{ field: 'mtime', ranges: [{ rank: 3, lo: 1000 }] }] });
    // An ISO string against mtime is a timestamp range.
    expect(plan("mtime >= '1970-01-01T00:00:01Z'")).toMatchObject({ parts: [{ ranges: [{ rank: 3, lo: 1000 }] }] });
  });

  it('query - AND picks the best indexed conjunct; OR needs every disjunct indexed', () => {
    expect(plan("n > 3 AND level = 'x' AND size > 2")).toMatchObject({ kind: 'index', parts: [{ field: 'attr.level' }] });
    expect(plan("has_ssn = true OR level = 'x'")).toMatchObject({ kind: 'index', parts: [{ field: 'attr.has_ssn' }, { field: 'attr.level' }] });
    expect(plan("has_ssn = true OR n = 1").kind).toBe('scan');
    expect(plan('NOT has_ssn = true').kind).toBe('scan');
    expect(plan('has_ssn <> true').kind).toBe('scan');
    expect(plan('n = 1').kind).toBe('scan');
    expect(plan(undefined).kind).toBe('scan');
    expect(plan("begins_with(key, 'p/')").kind).toBe('key-range');
    expect(plan({ expr: '#f = :v', names: { '#f': 'level' }, values: { ':v': 'x' } })).toMatchObject({ kind: 'index', parts: [{ field: 'attr.level' }] });
  });

  it('query - internal attributes are never planned nor matched unless asked', () => {
    expect(planQuery('`$sluice.fn` = 1', new Set(['attr.$sluice.fn']), false).kind).toBe('scan');
    expect(matchesWhere(state, '`$sluice.fn` = 1')).toBe(false);
    expect(matchesWhere(state, '`$sluice.fn` = 1', true)).toBe(true);
    expect(() => resolveIndexes(['$sluice.x'], 'b')).toThrow(/internal/);
  });

  it('query - the row model: system fields shadow attributes, attr.<name> reaches them, rows rename collisions', () => {
    expect(matchesWhere(state, "size = 10 AND attr.size = 'big' AND content_type = 'image/jpeg' AND mtime = 5000")).toBe(true);
    expect(stateItem(state).attr).toEqual({ has_ssn: true, size: 'big' });
    expect(rowOf(state, { all: true })).toEqual({ key: 'a.jpg', size: 10, mtime: new Date(5000), etag: 'e', content_type: 'image/jpeg', version: 3, has_ssn: true, 'attr.size': 'big' });
    expect(rowOf(state, { all: false, fields: ['attr.size', 'attr.has_ssn', 'version'] })).toEqual({ key: 'a.jpg', 'attr.size': 'big', has_ssn: true, version: 3 });
  });

  it('query - index strings are cut by code points, keeping UTF-8 order monotone', () => {
    const long = '😀'.repeat(100);
    const cut = truncateForIndex(long);
    expect([...cut]).toHaveLength(64);
    expect(isWellFormed(cut)).toBe(true);
    const a = `${'x'.repeat(63)}\uFFFF-tail`;
    const b = `${'x'.repeat(63)}😀-tail`;
    expect(compareKeys(a, b)).toBeLessThan(0);
    expect(compareKeys(truncateForIndex(a), truncateForIndex(b))).toBeLessThanOrEqual(0);
  });

  it('query - options are validated and tokens bound to their query', () => {
    expect(() => resolveQuery('b', { limit: 10_001 })).toThrow(/limit/);
    expect(() => resolveQuery('b', { select: ['*', 'a'] })).toThrow(/cannot be combined/);
    expect(() => resolveQuery('b', { where: 'a = ' })).toThrow(/line 1, column 5/);
    expect(resolveQuery('b', { where: 'a = 1' }).fingerprint).not.toBe(resolveQuery('b', { where: 'a = 2' }).fingerprint);
  });
});
