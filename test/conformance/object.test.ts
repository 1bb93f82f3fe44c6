/** Object binding conformance: every test runs against every backend. */
import { describe, expect, it } from 'vitest';
import { ConditionFailedError, type SluiceError } from '../../bindings/errors.ts';
import { Limits } from '../../bindings/values.ts';
import { forEachBackend, tn } from './backends.ts';
import { md5, readChanges, rejectsWith } from './helpers.ts';

const bytes = (s: string) => Buffer.from(s, 'utf8');

forEachBackend('object', (ctx) => {
  const t = (what: string) => tn('object', ctx, what);
  const bucket = async (shards = 4) => {
    const name = ctx.uid('b');
    await ctx.backend.createBucket(name, { shards });
    return ctx.backend.objects(name);
  };

  describe('put / get / head / delete', () => {
    it(t('put then get returns body, metadata and attributes'), async () => {
      const o = await bucket();
      const res = await o.put('a/b.txt', 'hello', { contentType: 'text/plain', attrs: { n: 1, ok: true, when: new Date(5000), raw: new Uint8Array([1, 2]) } });
      expect(res.etag).toBe(md5('hello'));
      expect(res.version).toBeGreaterThan(0);
      const g = await o.get('a/b.txt');
      expect(Buffer.from(g.body).toString()).toBe('hello');
      expect(g.size).toBe(5);
      expect(g.etag).toBe(res.etag);
      expect(g.version).toBe(res.version);
      expect(g.contentType).toBe('text/plain');
      expect(g.mtime).toBeInstanceOf(Date);
      expect(Math.abs(g.mtime.getTime() - Date.now())).toBeLessThan(60_000);
      expect(g.attrs.n).toBe(1);
      expect(g.attrs.ok).toBe(true);
      expect((g.attrs.when as Date).getTime()).toBe(5000);
      expect(Array.from(g.attrs.raw as Uint8Array)).toEqual([1, 2]);
    });

    it(t('a second put replaces body and attributes and raises the version'), async () => {
      const o = await bucket();
      const a = await o.put('k', 'one', { attrs: { x: 1 } });
      const b = await o.put('k', 'two!');
      expect(b.version).toBeGreaterThan(a.version);
      const g = await o.get('k');
      expect(Buffer.from(g.body).toString()).toBe('two!');
      expect(g.attrs).toEqual({});
      expect(g.contentType).toBe('application/octet-stream');
    });

    it(t('get of a missing key fails with SLUICE_NOT_FOUND and head returns undefined'), async () => {
      const o = await bucket();
      await rejectsWith(o.get('nope'), 'SLUICE_NOT_FOUND');
      expect(await o.head('nope')).toBeUndefined();
      await rejectsWith(o.getAttrs('nope'), 'SLUICE_NOT_FOUND');
    });

    it(t('head returns metadata and attributes without the body'), async () => {
      const o = await bucket();
      await o.put('h', bytes('12345678'), { attrs: { a: 'b' } });
      const h = await o.head('h');
      expect(h).toMatchObject({ key: 'h', size: 8, etag: md5('12345678'), attrs: { a: 'b' } });
      expect(h && 'body' in h).toBe(false);
    });

    it(t('range reads return the requested bytes'), async () => {
      const o = await bucket();
      await o.put('r', '0123456789');
      const part = await o.get('r', { range: { start: 2, end: 5 } });
      expect(Buffer.from(part.body).toString()).toBe('234');
      expect(part.range).toEqual({ start: 2, end: 5 });
      expect(Buffer.from((await o.get('r', { range: { start: 7 } })).body).toString()).toBe('789');
      expect(Buffer.from((await o.get('r', { range: { end: 3 } })).body).toString()).toBe('012');
      expect(Buffer.from((await o.get('r', { range: { start: 8, end: 100 } })).body).toString()).toBe('89');
      await rejectsWith(o.get('r', { range: { start: 11 } }), 'SLUICE_RANGE_INVALID');
      await rejectsWith(o.get('r', { range: { start: 5, end: 2 } }), 'SLUICE_RANGE_INVALID');
    });

    it(t('getStream yields the whole body in chunks'), async () => {
      const o = await bucket();
      const big = Buffer.alloc(3 * 1024 * 1024 + 17);
      for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
      await o.put('big', big);
      const { head, body } = await o.getStream('big');
      expect(head.size).toBe(big.length);
      const parts: Buffer[] = [];
      for await (const c of body) parts.push(Buffer.from(c));
      expect(Buffer.concat(parts).equals(big)).toBe(true);
    });

    it(t('delete removes the object and reports whether it existed'), async () => {
      const o = await bucket();
      await o.put('d', 'x');
      expect(await o.delete('d')).toBe(true);
      expect(await o.head('d')).toBeUndefined();
      expect(await o.delete('d')).toBe(false);
    });

    it(t('an empty body is a valid object'), async () => {
      const o = await bucket();
      const r = await o.put('empty', new Uint8Array(0));
      expect(r.etag).toBe(md5(''));
      const g = await o.get('empty');
      expect(g.body.byteLength).toBe(0);
      expect(g.size).toBe(0);
    });

    it(t('unicode keys round-trip'), async () => {
      const o = await bucket();
      const keys = ['ünïcödé/файл.txt', '日本語/キー', 'emoji/😀🎉', 'spaces and + signs=%', 'dots/../not/a/path', '*', '>', 'a.b.c'];
      for (const k of keys) await o.put(k, k);
      for (const k of keys) expect(Buffer.from((await o.get(k)).body).toString()).toBe(k);
      const l = await o.list();
      expect(l.objects.map((x) => x.key).sort()).toEqual([...keys].sort());
    });
  });

  describe('conditions', () => {
    it(t('ifNoneMatch * creates only when absent'), async () => {
      const o = await bucket();
      await o.put('c', 'first', { ifNoneMatch: '*' });
      const e = await rejectsWith(o.put('c', 'second', { ifNoneMatch: '*' }), 'SLUICE_CONDITION_FAILED');
      expect(e).toBeInstanceOf(ConditionFailedError);
      expect(Buffer.from((await o.get('c')).body).toString()).toBe('first');
    });

    it(t('ifMatch writes only over the matching etag'), async () => {
      const o = await bucket();
      const a = await o.put('m', 'v1');
      await o.put('m', 'v2', { ifMatch: a.etag });
      await rejectsWith(o.put('m', 'v3', { ifMatch: a.etag }), 'SLUICE_CONDITION_FAILED');
      await rejectsWith(o.put('absent', 'v', { ifMatch: a.etag }), 'SLUICE_CONDITION_FAILED');
      expect(Buffer.from((await o.get('m')).body).toString()).toBe('v2');
    });

    it(t('delete with a stale ifMatch fails and keeps the object'), async () => {
      const o = await bucket();
      await o.put('dm', 'v1');
      await rejectsWith(o.delete('dm', { ifMatch: md5('other') }), 'SLUICE_CONDITION_FAILED');
      expect(await o.head('dm')).toBeDefined();
      expect(await o.delete('dm', { ifMatch: md5('v1') })).toBe(true);
    });

    it(t('condition race: of 20 concurrent ifNoneMatch puts exactly one wins'), async () => {
      const o = await bucket();
      const other = await (await ctx.openAnother()).objects(o.bucket);
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? o : other).put('race', `w${i}`, { ifNoneMatch: '*' })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect((r.reason as SluiceError).code).toBe('SLUICE_CONDITION_FAILED');
    });
  });

  describe('attributes', () => {
    it(t('updateAttrs applies SET, ADD and REMOVE atomically and bumps the revision'), async () => {
      const o = await bucket();
      await o.put('u', 'x', { attrs: { stale: 1, n: 1 } });
      const before = await o.getAttrs('u');
      const r = await o.updateAttrs('u', { expr: 'SET has_ssn = :t ADD n :one REMOVE stale', values: { ':t': true, ':one': 2 } });
      expect(r.attrs).toEqual({ has_ssn: true, n: 3 });
      expect(r.attrsRevision).toBeGreaterThan(before.attrsRevision);
      expect((await o.getAttrs('u')).attrs).toEqual({ has_ssn: true, n: 3 });
      // The body and version are untouched by an attribute update.
      const h = await o.head('u');
      expect(h?.size).toBe(1);
    });

    it(t('updateAttrs with a failing condition changes nothing and carries the current attrs'), async () => {
      const o = await bucket();
      await o.put('uc', 'x', { attrs: { n: 5 } });
      const e = (await rejectsWith(o.updateAttrs('uc', 'SET n = n + 1', { condition: 'n > 10' }), 'SLUICE_CONDITION_FAILED')) as ConditionFailedError;
      expect(e.current).toEqual({ n: 5 });
      expect((await o.getAttrs('uc')).attrs).toEqual({ n: 5 });
      await o.updateAttrs('uc', 'SET n = n + 1', { condition: 'n = 5' });
      expect((await o.getAttrs('uc')).attrs).toEqual({ n: 6 });
    });

    it(t('concurrent counters from two clients lose no increment'), async () => {
      const o = await bucket();
      await o.put('ctr', 'x');
      const other = await (await ctx.openAnother()).objects(o.bucket);
      await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? o : other).updateAttrs('ctr', 'SET c = if_not_exists(c, 0) + 1')));
      expect((await o.getAttrs('ctr')).attrs.c).toBe(40);
    });

    it(t('updateAttrs with several expressions applies them in order as one change'), async () => {
      const o = await bucket(1);
      await o.put('multi', 'x', { attrs: { n: 1 } });
      const r = await o.updateAttrs('multi', ['SET n = n + 1', 'SET m = n', 'REMOVE n'], {
        condition: 'n = 1',
      });
      expect(r.attrs).toEqual({ m: 2 });
      const ch = await readChanges(ctx, o);
      expect(ch.map((c) => c.type)).toEqual(['put', 'attrs']);
      await rejectsWith(o.updateAttrs('multi', []), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(o.updateAttrs('multi', ['SET a = 1', 'SET = 2']), 'SLUICE_EXPRESSION_SYNTAX');
      expect((await o.getAttrs('multi')).attrs).toEqual({ m: 2 });
    });

    it(t('updateAttrs on a missing object fails with SLUICE_NOT_FOUND'), async () => {
      const o = await bucket();
      await rejectsWith(o.updateAttrs('ghost', 'SET a = 1'), 'SLUICE_NOT_FOUND');
    });

    it(t('a 100x100 JPEG-sized thumbnail fits in one attribute'), async () => {
      const o = await bucket();
      const thumb = new Uint8Array(12 * 1024).map((_, i) => i & 0xff);
      await o.put('img.jpg', 'jpeg', { attrs: { thumb } });
      await o.updateAttrs('img.jpg', { expr: 'SET thumb2 = :t', values: { ':t': thumb } });
      const a = await o.getAttrs('img.jpg');
      expect(Buffer.from(a.attrs.thumb2 as Uint8Array).equals(Buffer.from(thumb))).toBe(true);
    });
  });

  describe('listing', () => {
    it(t('list returns keys in UTF-8 byte order with metadata'), async () => {
      const o = await bucket();
      const keys = ['b', 'a', 'ä', '\uE000', '😀', 'Z', 'a/b', 'a0'];
      for (const k of keys) await o.put(k, k);
      const l = await o.list();
      const expected = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      expect(l.objects.map((x) => x.key)).toEqual(expected);
      expect(l.objects[0]).toMatchObject({ size: expected[0]!.length, etag: md5(expected[0]!) });
      expect(l.nextToken).toBeUndefined();
    });

    it(t('prefix, delimiter and startAfter'), async () => {
      const o = await bucket();
      for (const k of ['photos/2020/a.jpg', 'photos/2020/b.jpg', 'photos/2021/c.jpg', 'photos/top.jpg', 'docs/x.txt', 'photosx']) await o.put(k, 'x');
      const l = await o.list({ prefix: 'photos/', delimiter: '/' });
      expect(l.commonPrefixes).toEqual(['photos/2020/', 'photos/2021/']);
      expect(l.objects.map((x) => x.key)).toEqual(['photos/top.jpg']);
      const top = await o.list({ delimiter: '/' });
      expect(top.commonPrefixes).toEqual(['docs/', 'photos/']);
      expect(top.objects.map((x) => x.key)).toEqual(['photosx']);
      const after = await o.list({ prefix: 'photos/', startAfter: 'photos/2020/b.jpg' });
      expect(after.objects.map((x) => x.key)).toEqual(['photos/2021/c.jpg', 'photos/top.jpg']);
    });

    it(t('pagination over 10,000 keys returns each key once, in order'), async () => {
      const o = await bucket(8);
      const n = 10_000;
      const keys = Array.from({ length: n }, (_, i) => `k/${(i * 7919) % n}`.padEnd(8, '_'));
      for (let i = 0; i < n; i += 500) await Promise.all(keys.slice(i, i + 500).map((k) => o.put(k, '')));
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await o.list(token === undefined ? { limit: 1000 } : { limit: 1000, continuationToken: token });
        seen.push(...page.objects.map((x) => x.key));
        token = page.nextToken;
        pages++;
      } while (token !== undefined && pages < 20);
      expect(pages).toBe(10);
      expect(seen).toEqual([...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
      // Delimiter pages over the same keys: one common prefix.
      const d = await o.list({ delimiter: '/', limit: 10 });
      expect(d.commonPrefixes).toEqual(['k/']);
      expect(d.objects).toEqual([]);
    }, 180_000);

    it(t('pagination with a delimiter counts common prefixes toward the limit'), async () => {
      const o = await bucket();
      for (const k of ['a/1', 'a/2', 'b/1', 'c', 'd/1', 'e']) await o.put(k, 'x');
      const p1 = await o.list({ delimiter: '/', limit: 2 });
      expect([...p1.commonPrefixes, ...p1.objects.map((x) => x.key)]).toEqual(['a/', 'b/']);
      const p2 = await o.list({ delimiter: '/', limit: 2, continuationToken: p1.nextToken! });
      expect([...p2.commonPrefixes, ...p2.objects.map((x) => x.key)].sort()).toEqual(['c', 'd/']);
      const p3 = await o.list({ delimiter: '/', limit: 2, continuationToken: p2.nextToken! });
      expect(p3.objects.map((x) => x.key)).toEqual(['e']);
      expect(p3.nextToken).toBeUndefined();
    });

    it(t('a continuation token from another listing is refused'), async () => {
      const o = await bucket();
      for (const k of ['a', 'b', 'c']) await o.put(k, 'x');
      const p = await o.list({ limit: 1 });
      await rejectsWith(o.list({ limit: 1, prefix: 'z', continuationToken: p.nextToken! }), 'SLUICE_CURSOR_INVALID');
      await rejectsWith(o.list({ continuationToken: 'not-a-token!' }), 'SLUICE_CURSOR_INVALID');
    });
  });

  describe('change records', () => {
    it(t('put, attrs and delete each append one change record on the key shard'), async () => {
      const o = await bucket(4);
      const p = await o.put('doc.txt', 'abc', { contentType: 'text/plain' });
      await o.updateAttrs('doc.txt', 'SET seen = true');
      await o.delete('doc.txt');
      const ch = (await readChanges(ctx, o)).filter((c) => c.key === 'doc.txt');
      expect(ch.map((c) => c.type)).toEqual(['put', 'attrs', 'delete']);
      expect(ch[0]).toMatchObject({ bucket: o.bucket, key: 'doc.txt', version: p.version, size: 3, etag: p.etag, contentType: 'text/plain' });
      expect(ch[0]!.mtime).toBeInstanceOf(Date);
      expect(ch[1]!.attrsRevision).toBeGreaterThan(ch[0]!.attrsRevision);
      expect(ch[2]).toMatchObject({ size: 0, etag: '' });
      // Sequencers strictly increase per key.
      expect(ch[0]!.sequencer < ch[1]!.sequencer && ch[1]!.sequencer < ch[2]!.sequencer).toBe(true);
    });

    it(t('a write\'s cause is stamped into its change record; a bad cause is refused and writes nothing'), async () => {
      const o = await bucket(2);
      await o.put('c.txt', 'abc', { cause: { fn: 'image-meta', hop: 1 } });
      await o.updateAttrs('c.txt', 'SET seen = true', { cause: { fn: 'geo-index', hop: 2 } });
      await o.updateAttrs('c.txt', { expr: 'SET by = :u', values: { ':u': 'user' } });
      await o.delete('c.txt', { cause: { fn: 'cleanup', hop: 3 } });
      const ch = (await readChanges(ctx, o)).filter((c) => c.key === 'c.txt');
      expect(ch.map((c) => [c.type, c.cause])).toEqual([
        ['put', { fn: 'image-meta', hop: 1 }],
        ['attrs', { fn: 'geo-index', hop: 2 }],
        ['attrs', undefined],
        ['delete', { fn: 'cleanup', hop: 3 }],
      ]);
      await o.put('d.txt', 'x');
      for (const cause of [{ fn: 'Bad Name', hop: 1 }, { fn: 'ok', hop: -1 }, { fn: 'ok', hop: 1.5 }, 'fn'])
        await rejectsWith(o.updateAttrs('d.txt', 'SET a = 1', { cause: cause as never }), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(o.put('e.txt', 'x', { cause: { fn: '', hop: 0 } }), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(o.delete('d.txt', { cause: { hop: 0 } as never }), 'SLUICE_INVALID_ARGUMENT');
      expect((await readChanges(ctx, o)).filter((c) => c.key !== 'c.txt').map((c) => [c.key, c.type])).toEqual([['d.txt', 'put']]);
    });

    it(t('failed conditional writes append no change record'), async () => {
      const o = await bucket(2);
      await o.put('only', 'x', { ifNoneMatch: '*' });
      await rejectsWith(o.put('only', 'y', { ifNoneMatch: '*' }), 'SLUICE_CONDITION_FAILED');
      await rejectsWith(o.updateAttrs('only', 'SET a = 1', { condition: 'exists(nope)' }), 'SLUICE_CONDITION_FAILED');
      expect(await o.delete('missing')).toBe(false);
      expect((await readChanges(ctx, o)).map((c) => c.type)).toEqual(['put']);
    });

    it(t('the change stream is readable through the Stream binding with lag'), async () => {
      const o = await bucket(1);
      for (let i = 0; i < 5; i++) await o.put(`k${i}`, 'x');
      const info = await o.info();
      const s = ctx.backend.streams();
      const cur = await s.seek(info.changeStream, 0, 'earliest');
      const page = await s.getRecords(cur, { limit: 2 });
      expect(page.records).toHaveLength(2);
      expect(page.lag).toBe(3);
      expect(page.records[0]!.partitionKey).toBe('k0');
      await rejectsWith(s.putRecords(info.changeStream, [{ data: 'x', shard: 0 }]), 'SLUICE_INVALID_ARGUMENT');
    });
  });

  describe('bad input writes nothing', () => {
    it(t('invalid keys are refused with SLUICE_KEY_INVALID'), async () => {
      const o = await bucket();
      for (const k of ['', 'a\u0000b', 'tab\there', 'x'.repeat(Limits.maxKeyBytes + 1), 'é'.repeat(513), 'lone\uD800'])
        await rejectsWith(o.put(k, 'x'), 'SLUICE_KEY_INVALID');
      await rejectsWith(o.get(''), 'SLUICE_KEY_INVALID');
      expect((await o.list()).objects).toEqual([]);
      expect(await readChanges(ctx, o)).toEqual([]);
    });

    it(t('the maximum key length is accepted'), async () => {
      const o = await bucket();
      const k = 'k'.repeat(Limits.maxKeyBytes);
      await o.put(k, 'x');
      expect((await o.head(k))?.key).toBe(k);
    });

    it(t('the maximum body size is accepted and one byte more is refused'), async () => {
      const o = await bucket();
      const max = Buffer.alloc(Limits.maxObjectBytes, 1);
      const r = await o.put('max', max);
      expect((await o.head('max'))?.size).toBe(Limits.maxObjectBytes);
      expect(r.etag).toBe(md5(max));
      await rejectsWith(o.put('over', Buffer.alloc(Limits.maxObjectBytes + 1)), 'SLUICE_VALUE_TOO_LARGE');
      expect(await o.head('over')).toBeUndefined();
    }, 120_000);

    it(t('oversized and mistyped attributes are refused'), async () => {
      const o = await bucket();
      await rejectsWith(o.put('a', 'x', { attrs: { big: new Uint8Array(Limits.maxAttrValueBytes + 1) } }), 'SLUICE_VALUE_TOO_LARGE');
      const many = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`a${i}`, new Uint8Array(Limits.maxAttrValueBytes - 10)]));
      await rejectsWith(o.put('a', 'x', { attrs: many }), 'SLUICE_VALUE_TOO_LARGE');
      await rejectsWith(o.put('a', 'x', { attrs: { f: (() => 1) as unknown as number } }), 'SLUICE_VALUE_INVALID');
      await rejectsWith(o.put('a', 'x', { attrs: { u: undefined as unknown as number } }), 'SLUICE_VALUE_INVALID');
      await rejectsWith(o.put('a', 'x', { attrs: { n: Number.NaN } }), 'SLUICE_VALUE_INVALID');
      expect(await o.head('a')).toBeUndefined();
      await o.put('a', 'x', { attrs: { ok: 1 } });
      await rejectsWith(o.updateAttrs('a', { expr: 'SET big = :b', values: { ':b': new Uint8Array(Limits.maxAttrValueBytes + 1) } }), 'SLUICE_VALUE_TOO_LARGE');
      expect((await o.getAttrs('a')).attrs).toEqual({ ok: 1 });
    });

    it(t('malformed expressions are refused with their position'), async () => {
      const o = await bucket();
      await o.put('e', 'x', { attrs: { n: 1 } });
      const e = await rejectsWith(o.updateAttrs('e', 'SET n = = 2'), 'SLUICE_EXPRESSION_SYNTAX');
      expect(e.message).toMatch(/line 1, column \d+/);
      await rejectsWith(o.updateAttrs('e', 'SET n = 2', { condition: 'n <' }), 'SLUICE_EXPRESSION_SYNTAX');
      expect((await o.getAttrs('e')).attrs).toEqual({ n: 1 });
    });

    it(t('unknown and invalid bucket names are refused'), async () => {
      await rejectsWith(ctx.backend.objects(ctx.uid('missing')), 'SLUICE_BUCKET_NOT_FOUND');
      await rejectsWith(ctx.backend.createBucket('Bad_Name'), 'SLUICE_NAME_INVALID');
      await rejectsWith(ctx.backend.createBucket(ctx.uid('b'), { shards: 0 }), 'SLUICE_INVALID_ARGUMENT');
      const name = ctx.uid('b');
      await ctx.backend.createBucket(name, { shards: 2 });
      await ctx.backend.createBucket(name, { shards: 2 });
      await rejectsWith(ctx.backend.createBucket(name, { shards: 3 }), 'SLUICE_ALREADY_EXISTS');
    });

    it(t('replicas: 1..5 is accepted (local keeps one copy), outside it SLUICE_INVALID_ARGUMENT naming the bucket'), async () => {
      const name = ctx.uid('b');
      await ctx.backend.createBucket(name, { shards: 1, replicas: 1 });
      await (await ctx.backend.objects(name)).put('k', 'v');
      for (const replicas of [0, 6, 2.5]) {
        const e = await rejectsWith(ctx.backend.createBucket(ctx.uid('b'), { replicas }), 'SLUICE_INVALID_ARGUMENT');
        expect(e.message).toMatch(/bucket '[^']+'\.replicas must be an integer from 1 to 5/);
      }
    });

    it(t('a wrong body type is refused'), async () => {
      const o = await bucket();
      await rejectsWith(o.put('x', 42 as unknown as string), 'SLUICE_INVALID_ARGUMENT');
      await rejectsWith(o.put('x', 'y', { contentType: '' }), 'SLUICE_INVALID_ARGUMENT');
    });
  });
});
