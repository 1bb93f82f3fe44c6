/**
 * Index/state atomicity under SIGKILL (DESIGN invariant 1 applied to query indexes): a child process
 * churns puts, attribute updates and deletes on a bucket with indexes and is killed at random instants.
 * Afterwards every index entry must describe an existing object's current state and every object's
 * state must have all its entries (local: compared raw, entry by entry), and every indexed query must
 * return exactly what a brute-force evaluation over every object returns (both backends).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { stateOf } from '../../bindings/local/local-query.ts';
import { indexEntries, matchesWhere, type ObjectState } from '../../bindings/query/index.ts';
import type { Attrs, ObjectBinding, QueryRow } from '../../bindings/types.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';

const child = fileURLToPath(new URL('./query-writer-child.ts', import.meta.url));
const INDEXES = ['flag', 'gen', 'lvl', 'mtime'];

async function runAndKill(spec: object, bucket: string, seed: number): Promise<number> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, JSON.stringify(spec), bucket, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let acks = 0;
  let err = '';
  let ready = false;
  proc.stdout!.on('data', (d: Buffer) => {
    const s = d.toString();
    if (s.includes('ready')) ready = true;
    acks += s.split('\nok ').length - 1 + (s.startsWith('ok ') ? 1 : 0);
    if (s.includes('err ')) err += s;
  });
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => proc.on('exit', () => r()));
  const end = Date.now() + 60_000;
  // Kill after the writer is running and has acked a few writes, at a random instant.
  while (!(ready && acks > 5)) {
    if (proc.exitCode !== null) throw new Error(`writer exited early: ${err}`);
    if (Date.now() > end) throw new Error(`writer never got going: ${err}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 250)));
  proc.kill('SIGKILL');
  await exited;
  if (err.includes('err ')) throw new Error(`writer failed: ${err}`);
  return acks;
}

async function states(o: ObjectBinding): Promise<ObjectState[]> {
  const out: ObjectState[] = [];
  let token: string | undefined;
  do {
    const p = await o.list(token ? { continuationToken: token } : {});
    for (const m of p.objects) {
      const h = await o.head(m.key);
      if (h) out.push({ key: h.key, size: h.size, etag: h.etag, version: h.version, contentType: h.contentType, mtimeMs: h.mtime.getTime(), attrs: h.attrs });
    }
    token = p.nextToken;
  } while (token);
  return out;
}

forEachBackend('query', (ctx) => {
  it(
    tn('query', ctx, 'crash: SIGKILL of a writer at 8 random instants leaves no index entry without its state and no state without its entries'),
    async () => {
      const bucket = ctx.uid('qcrash');
      await ctx.backend.createBucket(bucket, { shards: 4, indexes: INDEXES });
      let acks = 0;
      for (let round = 0; round < 8; round++) acks += await runAndKill(ctx.childSpec(), bucket, 11 + round);
      expect(acks).toBeGreaterThan(50);

      const o = await ctx.backend.objects(bucket);
      const all = await states(o);
      expect(all.length).toBeGreaterThan(10);

      if (ctx.backend instanceof LocalBackend) {
        // Raw comparison: the entries in the store are exactly the entries the stored state implies.
        const store = ctx.backend.store;
        store.fresh();
        const want = new Set<string>();
        for (const { key, value } of store.meta.getRange({ start: [bucket, ''] })) {
          if (key[0] !== bucket) break;
          const k = key[1] as string;
          const s = stateOf(k, value, store.attrs.get([bucket, k]) as Attrs | undefined);
          for (const e of indexEntries(s, (await o.info()).indexes)) want.add(JSON.stringify([e.field, e.v[0], e.v[1], k]));
        }
        const have = new Set<string>();
        for (const k of store.qindex.getKeys({ start: [bucket] })) {
          if (k[0] !== bucket) break;
          have.add(JSON.stringify(k.slice(1)));
        }
        expect([...have].filter((x) => !want.has(x)), 'index entries without their state').toEqual([]);
        expect([...want].filter((x) => !have.has(x)), 'state without its index entries').toEqual([]);
      }

      for (const where of ['flag = true', "lvl = 'high'", 'gen > 500000', "lvl IN ('low', 'top') AND flag = false", { expr: 'mtime <= :t', values: { t: new Date() } }]) {
        const rows: QueryRow[] = [];
        let token: string | undefined;
        let kind = '';
        do {
          const p = await o.query({ where, select: ['key'], limit: 50, ...(token ? { continuationToken: token } : {}) });
          kind = p.plan.kind;
          rows.push(...p.rows);
          token = p.nextToken;
        } while (token);
        expect(kind).toBe('index');
        expect(rows.map((r) => r.key), JSON.stringify(where)).toEqual(all.filter((s) => matchesWhere(s, where)).map((s) => s.key));
      }
    },
    300_000,
  );
});
