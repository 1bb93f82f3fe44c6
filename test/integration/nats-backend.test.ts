/**
 * What is specific to the NATS backend, against a real nats-server started by the test: the change
 * record IS the metadata KV message (invariant 1), bodies of lost writes never become visible, keys of
 * any shape survive the subject encoding, stream readers are reused across pages, and a smoke test of
 * each binding. The behaviour every backend shares is in test/conformance.
 */
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { decodeKey, encodeKey } from '../../bindings/nats/nats-names.ts';
import type { ObjectEntry } from '../../bindings/nats/nats-object.ts';
import { codec, decodeChange, shardOf } from '../../bindings/shared.ts';
import { SluiceError } from '../../bindings/errors.ts';
import { compareKeys } from '../../bindings/values.ts';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.ts';

let server: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;
let prefixSeq = 0;
const opened: NatsBackend[] = [];

/** A backend with its own prefix, so tests never see each other's resources. */
async function backend(extra: { inlineBodyMaxBytes?: number; changeHistoryPerKey?: number } = {}): Promise<{ b: NatsBackend; prefix: string }> {
  const prefix = `t${++prefixSeq}`;
  const b = await NatsBackend.open({ servers: server.url, prefix, ...extra });
  opened.push(b);
  return { b, prefix };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return err instanceof SluiceError ? err.code : `not a SluiceError: ${String(err)}`;
  }
  return 'resolved';
}

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  for (const b of opened) await b.close();
  await nc?.close();
  await server?.stop();
});

describe('nats - backend', () => {
  it('nats - connect failure to a closed port is SLUICE_BACKEND_UNAVAILABLE naming the URL', async () => {
    const url = `nats://127.0.0.1:1`;
    const err = await NatsBackend.open({ servers: url }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('SLUICE_BACKEND_UNAVAILABLE');
    expect((err as SluiceError).message).toContain(url);
  });

  it('nats - bad options are rejected before connecting', async () => {
    expect(await codeOf(NatsBackend.open({ servers: server.url, prefix: 'a.b' }))).toBe('SLUICE_INVALID_ARGUMENT');
    expect(await codeOf(NatsBackend.open({ servers: server.url, replicas: 0 }))).toBe('SLUICE_INVALID_ARGUMENT');
    expect(await codeOf(NatsBackend.open({ servers: server.url, inlineBodyMaxBytes: -1 }))).toBe('SLUICE_INVALID_ARGUMENT');
  });

  it('nats - unknown bucket, table and stream have their own codes; calls after close are unavailable', async () => {
    const { b } = await backend();
    expect(b.kind).toBe('nats');
    expect(await codeOf(b.objects('nope'))).toBe('SLUICE_BUCKET_NOT_FOUND');
    expect(await codeOf(b.kv('nope'))).toBe('SLUICE_TABLE_NOT_FOUND');
    expect(await codeOf(b.streams().info('nope'))).toBe('SLUICE_STREAM_NOT_FOUND');
    expect(await codeOf(b.streams().info('$changes.nope'))).toBe('SLUICE_STREAM_NOT_FOUND');
    await b.close();
    await b.close();
    expect(await codeOf(b.objects('x'))).toBe('SLUICE_BACKEND_UNAVAILABLE');
  });

  it('nats - resources live under the prefix', async () => {
    const { b, prefix } = await backend();
    await b.createBucket('pics', { shards: 2 });
    await b.createTable('items');
    await b.streams().create('events', { shards: 3, retentionMs: 60_000 });
    const names: string[] = [];
    for await (const n of jsm.streams.names()) names.push(n);
    expect(names).toEqual(expect.arrayContaining([`KV_${prefix}_obj_pics`, `OBJ_${prefix}_body_pics`, `KV_${prefix}_kv_items`, `${prefix}_st_events`, `KV_${prefix}_meta`]));
    const si = await jsm.streams.info(`${prefix}_st_events`);
    expect(si.config.subjects).toEqual([`${prefix}.st.events.*`]);
    expect(si.config.max_age).toBe(60_000 * 1_000_000);
  });
});

describe('nats - objects', () => {
  it('nats - smoke: put, get, range, head, list, attrs, delete', async () => {
    const { b } = await backend();
    await b.createBucket('smoke', { shards: 4 });
    const o = await b.objects('smoke');
    const put = await o.put('docs/a.txt', 'hello world', { contentType: 'text/plain', attrs: { n: 1 } });
    expect(put.etag).toBe('5eb63bbbe01eeed093cb22bb8f5acdc3');
    const got = await o.get('docs/a.txt', { range: { start: 6 } });
    expect(text(got.body)).toBe('world');
    expect(got).toMatchObject({ size: 11, contentType: 'text/plain', attrs: { n: 1 }, attrsRevision: 1, version: put.version });
    const up = await o.updateAttrs('docs/a.txt', { expr: 'SET n = n + :one, tag = :t', values: { ':one': 1, ':t': 'x' } }, { condition: 'n = 1' });
    expect(up).toEqual({ attrs: { n: 2, tag: 'x' }, attrsRevision: 2 });
    const failed = await o.updateAttrs('docs/a.txt', 'REMOVE tag', { condition: 'n = 1' }).catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: 'SLUICE_CONDITION_FAILED', current: { n: 2, tag: 'x' }, revision: 2 });
    expect((await o.head('docs/a.txt'))?.version).toBe(put.version);
    expect((await o.list({ prefix: 'docs/' })).objects.map((m) => m.key)).toEqual(['docs/a.txt']);
    expect(await o.delete('docs/a.txt')).toBe(true);
    expect(await o.delete('docs/a.txt')).toBe(false);
    expect(await o.head('docs/a.txt')).toBeUndefined();
    expect(await codeOf(o.get('docs/a.txt'))).toBe('SLUICE_NOT_FOUND');
    expect((await o.list()).objects).toEqual([]);
  });

  it('nats - large bodies go to the Object Store and stream in chunks', async () => {
    const { b, prefix } = await backend({ inlineBodyMaxBytes: 1024 });
    await b.createBucket('big', { shards: 2 });
    const o = await b.objects('big');
    const body = new Uint8Array(300_000).map((_, i) => (i * 7) & 255);
    await o.put('blob', body);
    const whole = await o.get('blob');
    expect(Buffer.compare(whole.body, body)).toBe(0);
    const part = await o.get('blob', { range: { start: 131_000, end: 131_100 } });
    expect(Buffer.compare(part.body, body.subarray(131_000, 131_100))).toBe(0);
    const { body: chunks } = await o.getStream('blob', { range: { start: 10, end: 290_000 } });
    const parts: Uint8Array[] = [];
    for await (const c of chunks) parts.push(c);
    expect(parts.length).toBeGreaterThan(1);
    expect(Buffer.compare(Buffer.concat(parts), body.subarray(10, 290_000))).toBe(0);
    // Replacing the object removes the old body; deleting it removes the last one.
    await o.put('blob', body.subarray(0, 5000));
    const store = await new Objm(nc).open(`${prefix}_body_big`);
    expect((await store.list()).length).toBe(1);
    await o.delete('blob');
    expect((await store.list()).length).toBe(0);
    expect((await jsm.streams.info(`OBJ_${prefix}_body_big`)).state.messages).toBe(0);
  });

  it('nats - the change record is the same KV message as the metadata', async () => {
    const { b, prefix } = await backend();
    await b.createBucket('inv1', { shards: 4 });
    const o = await b.objects('inv1');
    const kvStreamName = `KV_${prefix}_obj_inv1`;
    const key = 'photos/cat.jpg';
    const shard = shardOf(key, 4);
    const p1 = await o.put(key, 'v1', { attrs: { a: 1 } });
    await o.updateAttrs(key, { expr: 'SET b = :t', values: { ':t': true } });
    const p2 = await o.put(key, 'v2');
    await o.delete(key);
    // Exactly one stream message per change: no second write anywhere.
    const si = await jsm.streams.info(kvStreamName);
    expect(si.state.messages).toBe(4);
    const s = b.streams();
    const r = await s.getRecords(await s.seek('$changes.inv1', shard, 'earliest'), { limit: 100 });
    expect(r.records.map((x) => decodeChange(x.data).type)).toEqual(['put', 'attrs', 'put', 'delete']);
    for (const rec of r.records) {
      // The change record at seq N is the raw KV message N: same subject, same fields.
      const raw = await jsm.streams.getMessage(kvStreamName, { seq: rec.seq });
      expect(raw?.subject).toBe(`$KV.${prefix}_obj_inv1.${shard}.${encodeKey(key)}`);
      const entry = codec.unpack(raw!.data) as ObjectEntry;
      const change = decodeChange(rec.data);
      expect(rec.partitionKey).toBe(key);
      expect(entry.key).toBe(key);
      expect(entry.type).toBe(change.type);
      expect(entry.etag).toBe(change.etag);
      expect(entry.attrsRevision).toBe(change.attrsRevision);
      expect(change.version).toBe(entry.version || rec.seq);
      expect(change.sequencer).toBe(rec.seq.toString(16).padStart(16, '0'));
    }
    expect(r.records.map((x) => decodeChange(x.data).version)).toEqual([p1.version, p1.version, p2.version, p2.version]);
    // Change records carry neither the inline body nor the attributes.
    expect(r.records.every((x) => x.data.byteLength < 300)).toBe(true);
  });

  it('nats - the change stream keeps changeHistoryPerKey changes per key (64 by default), 0 keeps all', async () => {
    const changesOf = async (b: NatsBackend, bucket: string) => {
      const s = b.streams();
      return (await s.getRecords(await s.seek(`$changes.${bucket}`, 0, 'earliest'), { limit: 1000 })).records.map((r) => decodeChange(r.data));
    };
    for (const [history, kept] of [[undefined, 64], [0, 81]] as const) {
      const { b } = await backend(history === undefined ? {} : { changeHistoryPerKey: history });
      await b.createBucket('hist', { shards: 1 });
      const o = await b.objects('hist');
      await o.put('hot', 'x');
      for (let i = 0; i < 80; i++) await o.updateAttrs('hot', { expr: 'SET n = :i', values: { ':i': i } });
      await o.put('cold', 'y');
      const changes = await changesOf(b, 'hist');
      const hot = changes.filter((c) => c.key === 'hot');
      expect(hot.length).toBe(kept);
      // What is kept is the newest changes, consecutive; other keys are untouched.
      expect(hot.map((c) => c.attrsRevision)).toEqual(Array.from({ length: kept }, (_, i) => 81 - kept + 1 + i));
      expect(changes.filter((c) => c.key === 'cold').length).toBe(1);
    }
  });

  it('nats - a body uploaded for a write that loses its CAS is removed and never visible', async () => {
    const { b, prefix } = await backend({ inlineBodyMaxBytes: 0 });
    await b.createBucket('race', { shards: 1 });
    const o = await b.objects('race');
    const first = await o.put('k', 'original');
    // Eight writers all hold the same etag; exactly one can commit, the others lose the CAS after
    // having uploaded their bodies.
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => o.put('k', `writer ${i}`, { ifMatch: first.etag })));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won.length).toBe(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as SluiceError).code).toBe('SLUICE_CONDITION_FAILED');
    const winner = text((await o.get('k')).body);
    expect(winner).toMatch(/^writer \d$/);
    const store = await new Objm(nc).open(`${prefix}_body_race`);
    const bodies = (await store.list()).filter((i) => !i.deleted);
    expect(bodies.length).toBe(1);
    expect(text((await store.getBlob(bodies[0]!.name))!)).toBe(winner);

    // A crash between upload and commit leaves an unreferenced body: not an object, no change record.
    await store.putBlob({ name: `${encodeKey('ghost')}/crashed` }, new TextEncoder().encode('orphan'));
    expect(await o.head('ghost')).toBeUndefined();
    expect((await o.list()).objects.map((m) => m.key)).toEqual(['k']);
    const info = await b.streams().info('$changes.race');
    expect(info.bounds[0]!.last).toBe(2);
  });

  it('nats - keys of any shape round-trip through the subject encoding', async () => {
    const { b } = await backend();
    await b.createBucket('keys', { shards: 3 });
    const o = await b.objects('keys');
    const keys = ['a/b c', '..', '.', 'a.b', '*', '>', 'a.*.>', '😀 emoji', 'ü/ñ/日本', '$KV.x', 'x'.repeat(1024), 'é'.repeat(512), '\u{10FFFF}z'];
    for (const k of keys) expect(decodeKey(encodeKey(k))).toBe(k);
    for (const k of keys) expect(encodeKey(k)).toMatch(/^[A-Za-z0-9_-]+$/);
    await Promise.all(keys.map((k) => o.put(k, `body of ${k}`)));
    for (const k of keys) expect(text((await o.get(k)).body)).toBe(`body of ${k}`);
    const listed = (await o.list()).objects.map((m) => m.key);
    expect(listed).toEqual([...keys].sort(compareKeys));
    const seen: string[] = [];
    const s = b.streams();
    for (let shard = 0; shard < 3; shard++) {
      const r = await s.getRecords(await s.seek('$changes.keys', shard, 'earliest'), { limit: 100 });
      for (const rec of r.records) {
        expect(shardOf(rec.partitionKey!, 3)).toBe(shard);
        seen.push(decodeChange(rec.data).key);
      }
    }
    expect(seen.sort(compareKeys)).toEqual([...keys].sort(compareKeys));
    expect(await codeOf(o.put('x'.repeat(1025), 'too long'))).toBe('SLUICE_KEY_INVALID');
  });

  it('nats - 10,000 keys list in pages of 1000', async () => {
    const { b } = await backend();
    await b.createBucket('many', { shards: 8 });
    const o = await b.objects('many');
    const keys = Array.from({ length: 10_000 }, (_, i) => `k/${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 256) await Promise.all(keys.slice(i, i + 256).map((k) => o.put(k, 'x')));
    const got: string[] = [];
    let token: string | undefined;
    let pages = 0;
    const t0 = Date.now();
    do {
      const page = await o.list(token === undefined ? { limit: 1000 } : { limit: 1000, continuationToken: token });
      got.push(...page.objects.map((m) => m.key));
      token = page.nextToken;
      pages++;
    } while (token !== undefined);
    const msPerPage = (Date.now() - t0) / pages;
    expect(pages).toBe(10);
    expect(got).toEqual(keys);
    expect(msPerPage).toBeLessThan(2000);
  }, 120_000);
});

describe('nats - kv', () => {
  it('nats - smoke: put, get, conditions, update, delete, scan', async () => {
    const { b } = await backend();
    await b.createTable('smoke');
    await b.createTable('smoke');
    const kv = await b.kv('smoke');
    const w1 = await kv.putItem('u1', { name: 'ann', n: 1, when: new Date(5), raw: new Uint8Array([1, 2]) });
    expect(await kv.getItem('u1', { attrs: ['name'] })).toEqual({ key: 'u1', item: { name: 'ann' }, revision: w1.revision });
    expect(await codeOf(kv.putItem('u1', { n: 9 }, { ifRevision: 0 }))).toBe('SLUICE_CONDITION_FAILED');
    const up = await kv.updateItem('u1', { expr: 'SET n = n + :one', values: { ':one': 1 } }, { ifRevision: w1.revision });
    expect(up.item.n).toBe(2);
    const created = await kv.updateItem('u2', { expr: 'SET n = :z', values: { ':z': 0 } });
    expect(created.item).toEqual({ n: 0 });
    const e = await kv.deleteItem('u1', { condition: 'n = 1' }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'SLUICE_CONDITION_FAILED', revision: up.revision });
    expect((await kv.getItems({ filter: 'n > 0' })).items.map((i) => i.key)).toEqual(['u1']);
    expect(await kv.deleteItem('u1')).toBe(true);
    expect(await kv.deleteItem('u1')).toBe(false);
    expect(await kv.getItem('u1')).toBeUndefined();
    const again = await kv.putItem('u1', { n: 3 }, { ifRevision: 0 });
    expect(again.revision).toBeGreaterThan(up.revision);
  });

  it('nats - scans page by marker and split into segments', async () => {
    const { b } = await backend();
    await b.createTable('scan');
    const kv = await b.kv('scan');
    await Promise.all(Array.from({ length: 50 }, (_, i) => kv.putItem(`k${String(i).padStart(2, '0')}`, { i })));
    const all: string[] = [];
    for (let seg = 0; seg < 3; seg++) {
      let marker: string | undefined;
      do {
        const page = await kv.getItems({ segment: seg, totalSegments: 3, limit: 7, ...(marker === undefined ? {} : { marker }) });
        all.push(...page.items.map((x) => x.key));
        marker = page.nextMarker;
      } while (marker !== undefined);
    }
    expect(all.sort()).toEqual(Array.from({ length: 50 }, (_, i) => `k${String(i).padStart(2, '0')}`));
  });
});

describe('nats - streams', () => {
  it('nats - smoke: create, put, seek, read, info, delete', async () => {
    const { b } = await backend();
    const s = b.streams();
    await s.create('ev', { shards: 2 });
    expect((await s.create('ev', { shards: 2 })).shards).toBe(2);
    expect(await codeOf(s.create('ev', { shards: 3 }))).toBe('SLUICE_ALREADY_EXISTS');
    expect(await codeOf(s.create('$changes.x'))).toBe('SLUICE_INVALID_ARGUMENT');
    expect(await codeOf(s.putRecords('$changes.x', []))).toBe('SLUICE_INVALID_ARGUMENT');
    const res = await s.putRecords('ev', [
      { data: 'a', partitionKey: 'user\n1', headers: { trace: 't1', 'Nats-Msg-Id': 'same', pad: ' x ' } },
      { data: 'b', shard: 1, headers: { 'Nats-Msg-Id': 'same' } },
      { data: 'c', shard: 9 },
    ]);
    expect(res[2]).toMatchObject({ ok: false, error: { code: 'SLUICE_SHARD_INVALID' } });
    expect(res.filter((r) => r.ok).length).toBe(2);
    const info = await s.info('ev');
    const shardA = shardOf('user\n1', 2);
    expect(info.bounds[shardA]!.last).toBeGreaterThan(0);
    const r = await s.getRecords(await s.seek('ev', shardA, 'earliest'));
    const rec = r.records.find((x) => text(x.data) === 'a');
    // A user header named like a NATS header is stored escaped (no deduplication), blanks survive.
    expect(rec).toMatchObject({ partitionKey: 'user\n1', headers: { trace: 't1', 'Nats-Msg-Id': 'same', pad: ' x ' } });
    expect(r.lag).toBe(0);
    const latest = await s.seek('ev', shardA, 'latest');
    expect((await s.getRecords(latest)).records).toEqual([]);
    const byTime = await s.seek('ev', shardA, { time: Date.now() + 60_000 });
    expect(byTime.seq).toBe(latest.seq);
    expect(await s.delete('ev')).toBe(true);
    expect(await s.delete('ev')).toBe(false);
  });

  it('nats - records of one shard keep the order of putRecords', async () => {
    const { b } = await backend();
    const s = b.streams();
    await s.create('order', { shards: 4 });
    const res = await s.putRecords('order', Array.from({ length: 1000 }, (_, i) => ({ data: String(i), partitionKey: 'one-key' })));
    const seqs = res.map((r) => (r.ok ? r.seq : -1));
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
  });

  it('nats - reading page after page reuses one consumer', async () => {
    const { b, prefix } = await backend();
    const s = b.streams();
    await s.create('pages', { shards: 1 });
    await s.putRecords('pages', Array.from({ length: 50 }, (_, i) => ({ data: String(i), shard: 0 })));
    const consumersOf = async () => {
      const names: string[] = [];
      for await (const c of jsm.consumers.list(`${prefix}_st_pages`)) names.push(c.name);
      return names.sort();
    };
    let cursor = await s.seek('pages', 0, 'earliest');
    const got: string[] = [];
    let first: string[] = [];
    for (let page = 0; page < 6; page++) {
      const r = await s.getRecords(cursor, { limit: 10 });
      got.push(...r.records.map((x) => text(x.data)));
      expect(r.lag).toBe(Math.max(0, 40 - page * 10));
      cursor = r.next;
      // The same single consumer serves every page.
      if (page === 0) first = await consumersOf();
      else expect(await consumersOf()).toEqual(first);
    }
    expect(first.length).toBe(1);
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
    // Rewinding needs a second consumer at the old position; the first stays cached.
    await s.getRecords(await s.seek('pages', 0, { seq: 3 }), { limit: 1 });
    const both = await consumersOf();
    expect(both.length).toBe(2);
    expect(both).toEqual(expect.arrayContaining(first));
    // close() deletes the cached consumers.
    await b.close();
    const left = [];
    for await (const c of jsm.consumers.list(`${prefix}_st_pages`)) left.push(c.name);
    expect(left).toEqual([]);
  });

  it('nats - maxWaitMs waits for the first record, and no longer', async () => {
    const { b } = await backend();
    const s = b.streams();
    await s.create('wait', { shards: 1 });
    const cursor = await s.seek('wait', 0, 'latest');
    let t0 = Date.now();
    expect((await s.getRecords(cursor, { maxWaitMs: 0 })).records).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(500);
    setTimeout(() => void s.putRecords('wait', [{ data: 'late', shard: 0 }]), 300);
    t0 = Date.now();
    const r = await s.getRecords(cursor, { maxWaitMs: 5000 });
    expect(r.records.map((x) => text(x.data))).toEqual(['late']);
    expect(Date.now() - t0).toBeLessThan(3000);
    t0 = Date.now();
    expect((await s.getRecords(r.next, { maxWaitMs: 400 })).records).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
  });

  it('nats - group positions never move backwards and do not survive re-creating the stream', async () => {
    const { b } = await backend();
    const s = b.streams();
    await s.create('grp', { shards: 2 });
    await s.putRecords('grp', [{ data: 'x', shard: 1 }]);
    const g = await s.group('grp', 'workers');
    expect(await g.position(1)).toEqual({ stream: 'grp', shard: 1, seq: 1 });
    expect(await g.commit({ stream: 'grp', shard: 1, seq: 7 })).toEqual({ stream: 'grp', shard: 1, seq: 7 });
    expect(await g.commit({ stream: 'grp', shard: 1, seq: 4 })).toEqual({ stream: 'grp', shard: 1, seq: 7 });
    const all = await Promise.all([9, 12, 10, 11].map((seq) => g.commit({ stream: 'grp', shard: 1, seq })));
    expect(all.length).toBe(4);
    expect((await (await s.group('grp', 'workers')).position(1)).seq).toBe(12);
    expect(await codeOf(g.commit({ stream: 'other', shard: 1, seq: 1 }))).toBe('SLUICE_CURSOR_INVALID');
    await s.delete('grp');
    await s.create('grp', { shards: 2 });
    expect((await (await s.group('grp', 'workers')).position(1)).seq).toBe(1);
  });

  it('nats - a change-stream group reads what the bucket wrote', async () => {
    const { b } = await backend();
    await b.createBucket('feed', { shards: 1 });
    const o = await b.objects('feed');
    await o.put('a', '1');
    await o.put('b', '2');
    const s = b.streams();
    const g = await s.group('$changes.feed', 'thumbs');
    const r = await s.getRecords(await g.position(0), { limit: 1 });
    expect(decodeChange(r.records[0]!.data).key).toBe('a');
    expect(r.lag).toBe(1);
    await g.commit(r.next);
    const r2 = await s.getRecords(await g.position(0));
    expect(r2.records.map((x) => x.partitionKey)).toEqual(['b']);
    expect(await codeOf(s.delete('$changes.feed'))).toBe('SLUICE_INVALID_ARGUMENT');
  });
});

describe('nats - files', () => {
  it('nats - files() is the shared filesystem binding', async () => {
    const { b } = await backend();
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'sluice-nats-files-'));
    try {
      const f = await b.files(join(dir, 'root'));
      await f.writeFile('a/b.txt', 'hi');
      expect(text(await f.readFile('a/b.txt'))).toBe('hi');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
