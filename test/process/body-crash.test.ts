/**
 * Crash guarantees of the external body store (local+s3, nats+s3, against s3rver): writer processes
 * that put (every body in S3), overwrite, delete and update attributes are killed with SIGKILL at random
 * instants. Afterwards no object lacks its body, no change record lacks its object, every orphaned body
 * (uploaded but never committed, or replaced but not yet removed) is unreferenced, and one collector
 * run removes exactly the orphans while every object stays readable.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { expect, it } from 'vitest';
import type { CollectOptions, CollectResult } from '../../bindings/body-store.ts';
import type { ChangeRecord } from '../../bindings/types.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { md5, readChanges } from '../conformance/helpers.ts';

const child = fileURLToPath(new URL('./writer-child.ts', import.meta.url));

function startWriter(spec: object, bucket: string, seed: number): { proc: ChildProcess; lines: string[]; exited: Promise<void>; waitFor(n: number, ms: number): Promise<void> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, JSON.stringify(spec), bucket, 'churn', String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => proc.on('exit', () => r()));
  return {
    proc,
    lines,
    exited,
    async waitFor(n, ms) {
      const end = Date.now() + ms;
      while (lines.length < n) {
        if (proc.exitCode !== null) throw new Error(`writer exited with ${proc.exitCode}: ${err}`);
        if (Date.now() > end) throw new Error(`writer wrote ${lines.length} lines in ${ms} ms: ${err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

forEachBackend('bodies', (ctx) => {
  const t = (what: string) => tn('bodies', ctx, what);

  it(
    t('crash: SIGKILL of a writer at 3 random instants leaves no object without its body; the collector removes exactly the orphans'),
    async () => {
      const bucket = ctx.uid('bcrash');
      await ctx.backend.createBucket(bucket, { shards: 4 });
      const spec = ctx.childSpec();
      const b = spec.bodies!;
      let seed = 11;
      let acked = 0;
      for (let round = 0; round < 3; round++) {
        const w = startWriter(spec, bucket, seed++);
        // 'ready' plus a few acks, then a random while more: the kill lands mid-upload, between upload
        // and commit, or between commit and the removal of the replaced body.
        await w.waitFor(6, 60_000);
        await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 300)));
        w.proc.kill('SIGKILL');
        await w.exited;
        for (const l of w.lines) {
          if (l.startsWith('err ')) throw new Error(`writer failed: ${l}`);
          if (l.startsWith('ok ')) acked++;
        }
      }
      expect(acked).toBeGreaterThan(15);

      const o = await ctx.backend.objects(bucket);
      const changes = await readChanges(ctx, o);
      const last = new Map<string, ChangeRecord>();
      for (const c of changes) {
        const p = last.get(c.key);
        if (!p || p.sequencer < c.sequencer) last.set(c.key, c);
      }
      const listed = new Map<string, number>();
      let token: string | undefined;
      do {
        const p = await o.list(token ? { continuationToken: token } : {});
        for (const m of p.objects) listed.set(m.key, m.size);
        token = p.nextToken;
      } while (token);
      expect(listed.size).toBeGreaterThan(0);
      // Every object's body is there, whole, and matches the etag of its newest change record.
      const checkObjects = async () => {
        for (const [key, size] of listed) {
          const g = await o.get(key);
          expect(g.body.byteLength, `body of ${key}`).toBe(size);
          expect(md5(g.body)).toBe(g.etag);
          expect(last.get(key)?.etag).toBe(g.etag);
        }
      };
      await checkObjects();
      for (const [key, c] of last) expect(listed.has(key), `record of ${key} vs its object`).toBe(c.type !== 'delete');

      const s3 = new S3Client({ endpoint: b.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: b.accessKeyId, secretAccessKey: b.secretAccessKey } });
      const stored = async () => {
        const keys: string[] = [];
        let tok: string | undefined;
        do {
          const r = await s3.send(new ListObjectsV2Command({ Bucket: b.bucket, Prefix: `${bucket}/`, ...(tok ? { ContinuationToken: tok } : {}) }));
          for (const x of r.Contents ?? []) keys.push(x.Key!);
          tok = r.IsTruncated ? r.NextContinuationToken : undefined;
        } while (tok);
        return keys;
      };
      try {
        const nonEmpty = [...listed.values()].filter((size) => size > 0).length;
        const before = await stored();
        // At least one body per non-empty object; the rest are orphans of the kills.
        expect(before.length).toBeGreaterThanOrEqual(nonEmpty);
        const collect = (opts: CollectOptions) => (ctx.backend as unknown as { collectBodies(o: CollectOptions): Promise<CollectResult> }).collectBodies(opts);
        // With the default grace period nothing this young is touched.
        const kept = await collect({});
        expect(kept.deleted).toBe(0);
        expect(await stored()).toHaveLength(before.length);
        const r = await collect({ graceMs: 0, maxBodies: 100_000 });
        expect(r.more).toBe(false);
        const after = await stored();
        // Exactly one body per non-empty object is left: every orphan went, no referenced body did.
        expect(after).toHaveLength(nonEmpty);
        expect(r.deleted).toBeGreaterThanOrEqual(before.length - nonEmpty);
        await checkObjects();
        console.log(`${ctx.name}: ${acked} acked writes, ${listed.size} objects, ${before.length - nonEmpty} orphaned bodies collected`);
      } finally {
        s3.destroy();
      }
    },
    240_000,
  );
});
