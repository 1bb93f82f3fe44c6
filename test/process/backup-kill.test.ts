/**
 * The backup example under SIGKILL (issue 7): a real worker process (runtime/worker-main.ts, handler
 * threads, the real functions/backup/function.yaml) copies a bucket to a real S3-protocol server
 * (s3rver) and is killed with SIGKILL twice in the middle of the run, then restarted. At each kill, every
 * object that carries `backed_up_etag` has a copy in the target with exactly those bytes (never attrs
 * without the copy); after the restarts every object is backed up in its current state.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ObjectBinding } from '../../bindings/types.ts';
import { openStateTable, readCounters } from '../../runtime/state.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { backupEnv, backupSpecText, backupWorkerOptions, bodyOf, copyOf, keyOf, pending, targetClient, until } from '../support/backup-fixture.ts';
import { startS3rver, type S3rverHandle } from '../support/s3rver.ts';
import { startWorkerProcess } from '../support/worker-process.ts';

const N = 200;

/** Every object marked backed up has a copy whose MD5 is its backed_up_etag; returns how many are marked. */
async function markedHaveCopies(o: ObjectBinding, c: S3Client, target: string): Promise<number> {
  let marked = 0;
  const bad: string[] = [];
  for (let i = 0; i < N; i++) {
    const a = (await o.getAttrs(keyOf(i))).attrs;
    if (a.backed_up_etag === undefined) continue;
    marked++;
    const copy = await copyOf(c, target, keyOf(i));
    const md5 = copy && createHash('md5').update(copy).digest('hex');
    if (md5 !== a.backed_up_etag) bad.push(`${keyOf(i)}: attrs ${String(a.backed_up_etag)}, copy ${md5 ?? 'missing'}`);
  }
  expect(bad.slice(0, 5)).toEqual([]);
  return marked;
}

let s3: S3rverHandle;
let client: S3Client;
beforeAll(async () => {
  s3 = await startS3rver(['kill-local', 'kill-nats']);
  client = targetClient(s3.endpoint);
}, 30_000);
afterAll(async () => {
  client?.destroy();
  await s3?.stop();
});

forEachBackend('backup', (ctx) => {
  it(
    tn('backup', ctx, `kill: SIGKILL of the worker twice mid-run over ${N} objects never leaves attrs without the copy; after restart all are backed up`),
    async () => {
      const target = `kill-${ctx.name}`;
      const bucket = ctx.uid('src');
      const fn = ctx.uid('bk');
      await ctx.backend.createBucket(bucket, { shards: 4 });
      const o = await ctx.backend.objects(bucket);
      const bodies = new Map<string, Buffer>();
      for (let i = 0; i < N; i++) {
        const b = bodyOf(i, 0);
        bodies.set(keyOf(i), b);
        await o.put(keyOf(i), b);
      }
      // Small batches: many commits, so a kill lands between a copy and its batch's commit. One run
      // (`every: 1h`; the first instant runs at start): after each restart the same run resumes.
      const options = { ...backupWorkerOptions(backupSpecText({ name: fn, bucket, every: '1h', backend: ctx.childSpec(), maxRecords: 10 }), backupEnv(s3.endpoint, target)), leaseTtl: '1s', logLevel: 'warn' };
      const dir = mkdtempSync(join(tmpdir(), 'sluice-backup-kill-'));
      const cfg = join(dir, 'worker.json');
      // The config holds the target's credentials, as the LocalDriver's does: this user only.
      writeFileSync(cfg, JSON.stringify(options), { mode: 0o600 });
      const state = await openStateTable(ctx.backend);
      const copies = async () => (await readCounters(state, fn, 1)).objects_backed_up ?? 0;
      let worker = await startWorkerProcess(cfg);
      try {
        const marks: number[] = [];
        for (const atLeast of [20, 90]) {
          await until(`${atLeast} copies committed`, async () => (await copies()) >= atLeast, 40_000);
          worker.proc.kill('SIGKILL');
          await worker.exit;
          // Dead worker: whatever is marked has its copy with the same bytes.
          marks.push(await markedHaveCopies(o, client, target));
          worker = await startWorkerProcess(cfg);
        }
        // The kills landed mid-run: some objects marked, not all.
        expect(marks[0]).toBeGreaterThan(0);
        expect(marks[0]).toBeLessThan(N);
        await until('every object backed up', async () => (await pending(o)).length === 0, 40_000);
        expect(await markedHaveCopies(o, client, target)).toBe(N);
        for (const [key, body] of bodies) {
          expect((await o.getAttrs(key)).attrs.backed_up_etag, key).toBe((await o.head(key))!.etag);
          expect((await copyOf(client, target, key))?.equals(body), key).toBe(true);
        }
        // The counter is exact across the kills: a record copied and committed but killed before its
        // batch's counters were is delivered again (not filtered by where), and counted once.
        await until('the last counters committed', async () => (await copies()) >= N, 20_000);
        await new Promise((r) => setTimeout(r, 500));
        expect(await copies()).toBe(N);
      } finally {
        worker.proc.kill('SIGTERM');
        await worker.exit;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});
