/**
 * Process-level tests of DESIGN invariant 1 (no dual writes) and of concurrent writers:
 * real child processes write to the store and are killed with SIGKILL at random instants.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import type { ChangeRecord } from '../../bindings/types.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { readChanges } from '../conformance/helpers.ts';

const child = fileURLToPath(new URL('./writer-child.ts', import.meta.url));

interface Run {
  proc: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
  waitFor(pred: (lines: string[]) => boolean, ms: number): Promise<void>;
}

function startWriter(spec: object, bucket: string, mode: string, seed: number): Run {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, JSON.stringify(spec), bucket, mode, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return {
    proc,
    lines,
    exited,
    async waitFor(pred, ms) {
      const end = Date.now() + ms;
      while (!pred(lines)) {
        if (proc.exitCode !== null) throw new Error(`writer exited with ${proc.exitCode}: ${err}`);
        if (Date.now() > end) throw new Error(`writer did not reach the expected state in ${ms} ms: ${err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

forEachBackend('object', (ctx) => {
  const t = (what: string) => tn('object', ctx, what);

  it(
    t('crash: SIGKILL of a writer at 12 random instants leaves no object without its change record and no record without its object'),
    async () => {
      const bucket = ctx.uid('crash');
      await ctx.backend.createBucket(bucket, { shards: 4 });
      const acked: { op: string; key: string; v: string }[] = [];
      let seed = 7;
      for (let round = 0; round < 12; round++) {
        const w = startWriter(ctx.childSpec(), bucket, 'churn', seed++);
        await w.waitFor((l) => l.includes('ready'), 30_000);
        // Let it write for a random while (after a few acks), then kill it mid-flight.
        await w.waitFor((l) => l.length > 5, 30_000);
        await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 250)));
        w.proc.kill('SIGKILL');
        await w.exited;
        for (const l of w.lines) {
          const [tag, op, key, v] = l.split(' ');
          if (tag === 'ok') acked.push({ op: op!, key: key!, v: v! });
          if (tag === 'err') throw new Error(`writer failed: ${l}`);
        }
      }
      expect(acked.length).toBeGreaterThan(100);

      const o = await ctx.backend.objects(bucket);
      const changes = await readChanges(ctx, o);
      const lastByKey = new Map<string, ChangeRecord>();
      for (const c of changes) {
        const prev = lastByKey.get(c.key);
        if (!prev || prev.sequencer < c.sequencer) lastByKey.set(c.key, c);
      }
      const listed = new Map<string, number>();
      let token: string | undefined;
      do {
        const p = await o.list(token ? { continuationToken: token } : {});
        for (const m of p.objects) listed.set(m.key, m.version);
        token = p.nextToken;
      } while (token);

      // Every object has change records, and its newest one describes exactly this object.
      for (const [key, version] of listed) {
        const last = lastByKey.get(key);
        expect(last, `object ${key} has no change record`).toBeDefined();
        expect(last!.type).not.toBe('delete');
        expect(last!.version).toBe(version);
        const h = (await o.head(key))!;
        expect(last!.attrsRevision).toBe(h.attrsRevision);
        expect(last!.etag).toBe(h.etag);
        // The body is whole and matches the recorded etag.
        const g = await o.get(key);
        expect(g.body.byteLength).toBe(last!.size);
      }
      // Every key whose newest record is not a delete exists.
      for (const [key, c] of lastByKey) {
        if (c.type === 'delete') expect(listed.has(key), `${key} deleted but still listed`).toBe(false);
        else expect(listed.get(key), `record of ${key} without its object`).toBe(c.version);
      }
      // Every acknowledged put was durable: a record with that version exists.
      const putVersions = new Set(changes.filter((c) => c.type === 'put').map((c) => `${c.key}@${c.version}`));
      for (const a of acked.filter((x) => x.op === 'put')) expect(putVersions.has(`${a.key}@${a.v}`), `acked put ${a.key}@${a.v} lost`).toBe(true);
    },
    300_000,
  );

  it(
    t('two processes incrementing one attribute concurrently lose no update'),
    async () => {
      const bucket = ctx.uid('procs');
      await ctx.backend.createBucket(bucket, { shards: 2 });
      const o = await ctx.backend.objects(bucket);
      await o.put('ctr', 'x');
      const a = startWriter(ctx.childSpec(), bucket, 'count', 1);
      const b = startWriter(ctx.childSpec(), bucket, 'count', 2);
      await Promise.all([a.waitFor((l) => l.includes('done'), 120_000), b.waitFor((l) => l.includes('done'), 120_000)]);
      expect((await o.getAttrs('ctr')).attrs.c).toBe(400);
      // The change stream keeps every change, or at least the newest historyPerKey of each key.
      const attrsChanges = (await readChanges(ctx, o)).filter((c) => c.type === 'attrs');
      const { historyPerKey } = await o.info();
      const kept = historyPerKey === 0 ? 400 : Math.min(400, historyPerKey);
      expect(attrsChanges.length).toBeGreaterThanOrEqual(kept);
      const revs = attrsChanges.map((c) => c.attrsRevision);
      expect(new Set(revs).size).toBe(revs.length);
      expect(Math.max(...revs)).toBe(Math.max(...revs.slice(-1)));
      expect(revs.slice(-1)[0]).toBe((await o.getAttrs('ctr')).attrsRevision);
    },
    180_000,
  );
});
