/**
 * The backup example (functions/backup) in a real worker on both backends, copying to a real
 * S3-protocol server (s3rver on loopback): a scheduled query run copies every object (same bytes) and
 * marks it; after some objects get new bodies, the next runs copy exactly those again and leave the
 * others alone. The spec is the real functions/backup/function.yaml (every shortened), its secrets
 * resolved from an environment, so this also proves that secrets reach the handler threads.
 */
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { S3Client } from '@aws-sdk/client-s3';
import { openStateTable, readCounters, StateKeys } from '../../runtime/state.ts';
import type { QueryRun } from '../../runtime/triggers/query.ts';
import { Worker } from '../../runtime/worker.ts';
import { forEachBackend, tn, type BackendContext } from '../conformance/backends.ts';
import { backupEnv, backupSpecText, backupWorkerOptions, bodyOf, copyOf, keyOf, pending, targetClient, until } from '../support/backup-fixture.ts';
import { startS3rver, type S3rverHandle } from '../support/s3rver.ts';

const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });
const N = 200;
const EVERY_MS = 3000;

let s3: S3rverHandle;
let client: S3Client;
beforeAll(async () => {
  s3 = await startS3rver(['bk-local', 'bk-nats']);
  client = targetClient(s3.endpoint);
}, 30_000);
afterAll(async () => {
  client?.destroy();
  await s3?.stop();
});

forEachBackend('backup', (ctx: BackendContext) => {
  it(tn('backup', ctx, "where compares an attribute with a system field: backed_up_etag <> etag selects unmarked and stale objects"), async () => {
    const bucket = ctx.uid('w');
    await ctx.backend.createBucket(bucket, { shards: 2 });
    const o = await ctx.backend.objects(bucket);
    for (const k of ['fresh', 'current', 'stale', 'nulled']) await o.put(k, `body of ${k}`);
    const etag = (await o.head('current'))!.etag;
    await o.updateAttrs('current', { expr: 'SET backed_up_etag = :e', values: { ':e': etag } });
    await o.updateAttrs('stale', { expr: 'SET backed_up_etag = :e', values: { ':e': 'an-old-etag' } });
    await o.updateAttrs('nulled', { expr: 'SET backed_up_etag = :e', values: { ':e': null } });
    expect(await pending(o)).toEqual(['fresh', 'nulled', 'stale']);
    // And the other way round: only the object whose attribute equals its etag.
    expect((await o.query({ where: 'backed_up_etag = etag' })).rows.map((r) => r.key)).toEqual(['current']);
  });

  it(
    tn('backup', ctx, `a worker backs up ${N} objects with their bytes and attrs; after 5 new bodies only those are copied again`),
    async () => {
      const target = `bk-${ctx.name}`;
      const bucket = ctx.uid('src');
      const fn = ctx.uid('bk');
      await ctx.backend.createBucket(bucket, { shards: 4 });
      const o = await ctx.backend.objects(bucket);
      const bodies = new Map<string, Buffer>();
      for (let i = 0; i < N; i++) {
        const b = bodyOf(i, 0);
        bodies.set(keyOf(i), b);
        await o.put(keyOf(i), b, { contentType: 'application/x-test' });
      }
      const opts = { ...backupWorkerOptions(backupSpecText({ name: fn, bucket, every: `${EVERY_MS}ms`, backend: ctx.childSpec() }), backupEnv(s3.endpoint, target)), leaseTtl: '2s', logLevel: 'silent' };
      expect(opts.secrets).toMatchObject({ 'backup-bucket': target });
      const state = await openStateTable(ctx.backend);
      const copies = async () => (await readCounters(state, fn, 1)).objects_backed_up ?? 0;
      const w = await Worker.start(opts, { log: quiet });
      try {
        await until('every object backed up', async () => (await pending(o)).length === 0);
        for (const [key, body] of bodies) {
          const a = (await o.getAttrs(key)).attrs;
          const h = (await o.head(key))!;
          expect(a.backed_up_etag, key).toBe(h.etag);
          expect(typeof a.backed_up_at === 'string' && !Number.isNaN(Date.parse(a.backed_up_at)), key).toBe(true);
          expect((await copyOf(client, target, key))?.equals(body), key).toBe(true);
        }
        expect(await copies()).toBeGreaterThanOrEqual(N);

        // Settled: no copy for a whole period and a run that started after the last copy finished.
        let before = await copies();
        await until('no more copies', async () => {
          await new Promise((r) => setTimeout(r, EVERY_MS + 500));
          const now = await copies();
          const quiet = now === before;
          before = now;
          return quiet;
        });
        const at = new Map<string, unknown>();
        for (const key of bodies.keys()) at.set(key, (await o.getAttrs(key)).attrs.backed_up_at);

        const changed = [3, 50, 77, 125, 199].map(keyOf);
        for (const key of changed) {
          const i = Number(key.slice(-8, -4));
          const b = bodyOf(i, 1);
          bodies.set(key, b);
          await o.put(key, b);
        }
        await until('the changed objects backed up again', async () => (await pending(o)).length === 0);
        // One more period: nothing else gets copied.
        await new Promise((r) => setTimeout(r, EVERY_MS + 1000));
        expect(await copies()).toBe(before + changed.length);
        for (const [key, body] of bodies) {
          const a = (await o.getAttrs(key)).attrs;
          expect(a.backed_up_etag, key).toBe((await o.head(key))!.etag);
          if (changed.includes(key)) expect(Date.parse(String(a.backed_up_at)), key).toBeGreaterThan(Date.parse(String(at.get(key))));
          else expect(a.backed_up_at, key).toBe(at.get(key));
          expect((await copyOf(client, target, key))?.equals(body), key).toBe(true);
        }
        const runs = (await state.getItem(StateKeys.queryRuns(fn)))?.item.runs as unknown as QueryRun[];
        expect(runs.length).toBeGreaterThanOrEqual(2);
        expect(runs.some((r) => r.matched === N)).toBe(true);
      } finally {
        await w.stop();
      }
    },
    90_000,
  );
});
