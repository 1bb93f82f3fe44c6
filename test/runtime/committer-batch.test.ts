/**
 * Runtime: the committer's one-write-per-batch mapping, on a real local store — per-record outcomes
 * from the per-op results (ok / duplicate / gone / commit error / blocked), records of one key chained
 * (a failed write blocks the later records of its key, also those with nothing to write; a duplicate does
 * not), other keys unaffected, and the caller's extra op (the checkpoint) committed in the same call.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { RecordEffects } from '../../functions/effects.ts';
import type { BatchRecordInput } from '../../runtime/batch-types.ts';
import { Committer, markerAttr } from '../../runtime/committer.ts';
import { WorkerMetrics } from '../../runtime/metrics.ts';

let dir = '';
let backend: LocalBackend;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-committer-'));
  backend = await LocalBackend.open({ dir });
});
afterAll(async () => {
  await backend.close();
  await rm(dir, { recursive: true, force: true });
});

const rec = (key: string, seq: number): BatchRecordInput => ({ key, type: 'put', source: 'b', shard: 0, seq, version: 1, size: 1, etag: '', mtimeMs: 0, contentType: 'text/plain', attrs: {}, headers: {}, attempt: 1 });
const fx = (set: RecordEffects['set'] = {}): RecordEffects => ({ set, remove: [], updates: [] });

it('runtime/local - committer: one commitBatch per batch; per-key chains; outcomes as before', async () => {
  await backend.createBucket('b', { shards: 1 });
  await backend.createTable('t');
  const o = await backend.objects('b');
  for (const k of ['a', 'dup', 'c']) await o.put(k, 'x');
  await o.updateAttrs('dup', { expr: 'SET #m = :v', names: { '#m': markerAttr('f') }, values: { ':v': 100 } });
  const metrics = new WorkerMetrics('f');
  let calls = 0;
  const counting = { commitBatch: (...a: Parameters<LocalBackend['commitBatch']>) => (calls++, backend.commitBatch(...a)) };
  const committer = new Committer({ function: 'f', backend: counting, objects: o, metrics, log: pino({ level: 'silent' }) });
  const records = [rec('a', 1), rec('a', 2), rec('a', 3), rec('a', 4), rec('dup', 5), rec('dup', 101), rec('gone', 6), rec('c', 7)];
  const effects = {
    records: [fx({ x: 'x'.repeat(300_000) }), fx(), fx({ y: 1 }), fx({ z: 1 }), fx({ d: 1 }), fx({ d: 2 }), fx({ g: 1 }), fx({ ok: true })],
    counters: {},
  };
  const { results, extra } = await committer.commitBatch(records, effects, 0, [{ type: 'putItem', table: 't', key: 'ck', item: { seq: 8 }, ifRevision: 0 }]);
  expect(calls).toBe(1);
  expect(results.slice(0, 4).map((r) => (typeof r === 'object' ? `${r.stage}:${r.error.code}` : r))).toEqual(['commit:SLUICE_VALUE_TOO_LARGE', 'blocked', 'blocked', 'blocked']);
  expect(results.slice(4)).toEqual(['duplicate', 'ok', 'gone', 'ok']);
  expect(extra.map((r) => r.status)).toEqual(['ok']);
  const attrs = async (k: string) => (await o.getAttrs(k, { internal: true })).attrs;
  expect(await attrs('a')).toEqual({});
  expect(await attrs('dup')).toEqual({ [markerAttr('f')]: 101, d: 2 });
  expect(await attrs('c')).toEqual({ [markerAttr('f')]: 7, ok: true });
  expect((await (await backend.kv('t')).getItem('ck'))?.item).toEqual({ seq: 8 });
});
