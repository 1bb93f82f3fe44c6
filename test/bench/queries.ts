/**
 * Benchmark of `ObjectBinding.query` (issue 7), outside CI.
 *
 * Local (embedded LMDB), N objects' metadata (default 1,000,000; empty bodies; attrs `{has_ssn, n, tag}`
 * with has_ssn true for 1% and tag 't7' for 1%; bucket indexes `has_ssn`, `mtime`), loaded through
 * `put` (so index entries are real), then, each beside a raw lmdb-js loop over the same environment in
 * the same run (interleaved, best of `--runs`):
 * - indexed selective first page: `has_ssn = true` limit 1000, vs raw: range over the index entries
 *   [bucket, attr.has_ssn, boolean, 1, *] collecting the keys, sorting them, reading meta + attrs of the
 *   first 1000;
 * - indexed selective whole result (≈1% = N/100 rows, pages of 1000 by token), vs raw: the same range,
 *   reading meta + attrs of every key;
 * - full un-indexed scan with a where (`tag = 't7'`, whole result by token), vs raw: one merged range
 *   over meta and attrs testing `attrs.tag === 't7'` in JS.
 * Targets: first page ≤ 20 ms, whole ≤ 0.5 s, scan ≤ 2 s, each ≥ 0.5× raw (raw ms / query ms).
 *
 * NATS (default N 100,000; `--nats-n`): selective indexed query (whole result) cold (first query of a
 * process: builds the in-process view from one headers-only pass) and warm, vs today's full-bucket read:
 * the same where without an index, i.e. one pass over every message's value (what getItems/list do).
 *
 * Run: npx tsx test/bench/queries.ts [--n 1000000] [--nats-n 100000] [--only local|nats] [--runs 5]
 * The bench starts its own nats-server on a random 127.0.0.1 port with a temp store; it prints a
 * markdown table on stdout and progress on stderr.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { ObjectBinding, QueryOptions } from '../../bindings/types.ts';
import { compareKeys } from '../../bindings/values.ts';
import { startNatsServer } from '../support/nats-server.ts';

const args = process.argv.slice(2);
const opt = (name: string, d: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : d;
};
const N = Number(opt('n', '1000000'));
const NATS_N = Number(opt('nats-n', '100000'));
const RUNS = Number(opt('runs', '5'));
const only = opt('only', '');
const log = (s: string) => process.stderr.write(`${s}\n`);
const rows: string[] = [];

function attrsOf(i: number) {
  return { has_ssn: i % 100 === 37, n: i, tag: `t${Math.floor(i / 7) % 100}` };
}

async function load(o: ObjectBinding, n: number, inflight: number, budgetMs: number): Promise<number> {
  const t0 = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < n && Date.now() - t0 < budgetMs) {
        const i = next++;
        await o.put(`obj/${String(i).padStart(8, '0')}`, '', { attrs: attrsOf(i) });
        if (i % 100_000 === 0) log(`  loaded ${i} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      }
    }),
  );
  return next;
}

async function whole(o: ObjectBinding, q: QueryOptions): Promise<{ rows: number; pages: number; kind: string }> {
  let token: string | undefined;
  let n = 0;
  let pages = 0;
  let kind = '';
  do {
    const p = await o.query({ ...q, ...(token ? { continuationToken: token } : {}) });
    kind = p.plan.kind;
    n += p.rows.length;
    pages++;
    token = p.nextToken;
  } while (token);
  return { rows: n, pages, kind };
}

async function best(runs: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  let b = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    b = Math.min(b, performance.now() - t);
  }
  return b;
}

async function local(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-qbench-'));
  try {
    const backend = await LocalBackend.open({ dir });
    await backend.createBucket('q', { shards: 8, indexes: ['has_ssn', 'mtime'] });
    const o = await backend.objects('q');
    log(`local: loading ${N} objects`);
    const t0 = Date.now();
    const loaded = await load(o, N, 2000, 900_000);
    log(`local: loaded ${loaded} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const s = backend.store;
    const rawIndexed = (limit: number) => {
      s.fresh();
      const keys: string[] = [];
      for (const k of s.qindex.getKeys({ start: ['q', 'attr.has_ssn', 1, 1] })) {
        if (k[0] !== 'q' || k[1] !== 'attr.has_ssn' || k[2] !== 1 || k[3] !== 1) break;
        keys.push(k[4] as string);
      }
      keys.sort(compareKeys);
      let n = 0;
      for (const k of keys.slice(0, limit)) if (s.meta.get(['q', k]) && s.attrs.get(['q', k]) !== undefined) n++;
      return n;
    };
    const rawScan = () => {
      s.fresh();
      const metas = s.meta.getRange({ start: ['q', ''] })[Symbol.iterator]();
      const attrs = s.attrs.getRange({ start: ['q', ''] })[Symbol.iterator]();
      let a = attrs.next();
      let n = 0;
      for (let m = metas.next(); !m.done; m = metas.next()) {
        if (m.value.key[0] !== 'q') break;
        const key = m.value.key[1] as string;
        while (!a.done && compareKeys(a.value.key[1] as string, key) < 0) a = attrs.next();
        if (!a.done && a.value.key[1] === key && (a.value.value as { tag?: string }).tag === 't7') n++;
      }
      return n;
    };
    const cases: { name: string; target: number; q: () => Promise<unknown>; raw: () => unknown; note: () => Promise<string> }[] = [
      {
        name: `indexed 1% first page (limit 1000)`,
        target: 20,
        q: () => o.query({ where: 'has_ssn = true', limit: 1000 }),
        raw: () => rawIndexed(1000),
        note: async () => {
          const p = await o.query({ where: 'has_ssn = true', limit: 1000 });
          return `${p.rows.length} rows, plan ${p.plan.kind} ${p.plan.index ?? ''}`;
        },
      },
      {
        name: `indexed 1% whole result (pages of 1000)`,
        target: 500,
        q: () => whole(o, { where: 'has_ssn = true', limit: 1000 }),
        raw: () => rawIndexed(Infinity),
        note: async () => {
          const w = await whole(o, { where: 'has_ssn = true', limit: 1000 });
          return `${w.rows} rows in ${w.pages} pages, plan ${w.kind}`;
        },
      },
      {
        name: `un-indexed scan, where tag = 't7' (1%), whole result`,
        target: 2000,
        q: () => whole(o, { where: "tag = 't7'", limit: 1000 }),
        raw: () => rawScan(),
        note: async () => {
          const w = await whole(o, { where: "tag = 't7'", limit: 1000 });
          return `${w.rows} rows in ${w.pages} pages, plan ${w.kind}`;
        },
      },
    ];
    for (const c of cases) {
      log(`local: ${c.name}`);
      // One unmeasured run of each side first (JIT, page cache).
      await c.raw();
      await c.q();
      let q = Infinity;
      let raw = Infinity;
      // Interleaved: raw and query alternate, best of RUNS each, so load changes hit both alike.
      for (let i = 0; i < RUNS; i++) {
        raw = Math.min(raw, await best(1, c.raw));
        q = Math.min(q, await best(1, c.q));
      }
      rows.push(`| local ${loaded.toLocaleString('en-US')} | ${c.name} | ${q.toFixed(1)} ms | ${raw.toFixed(1)} ms | ${(raw / q).toFixed(2)}× | ≤ ${c.target} ms, ≥ 0.5× raw: ${q <= c.target && raw / q >= 0.5 ? 'met' : 'MISSED'} | ${await c.note()} |`);
    }
    await backend.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function nats(): Promise<void> {
  const server = await startNatsServer();
  try {
    const backend = await NatsBackend.open({ servers: server.url });
    await backend.createBucket('q', { shards: 8, indexes: ['has_ssn', 'mtime'] });
    const o = await backend.objects('q');
    log(`nats: loading ${NATS_N} objects`);
    const t0 = Date.now();
    const loaded = await load(o, NATS_N, 256, 600_000);
    log(`nats: loaded ${loaded} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // Today's full-bucket read: the same where without an index reads every message's value.
    const fullRead = await best(Math.min(RUNS, 3), () => whole(o, { where: "tag = 't7'", limit: 10_000 }));
    // A second client: its first query builds the view (cold).
    const other = await NatsBackend.open({ servers: server.url });
    const o2 = await other.objects('q');
    const tc = performance.now();
    const cold = await whole(o2, { where: 'has_ssn = true', limit: 1000 });
    const coldMs = performance.now() - tc;
    const warm = await best(RUNS, () => whole(o2, { where: 'has_ssn = true', limit: 1000 }));
    rows.push(`| nats ${loaded.toLocaleString('en-US')} | today's full-bucket read (un-indexed where, every value) | ${fullRead.toFixed(1)} ms | | | | baseline |`);
    rows.push(`| nats ${loaded.toLocaleString('en-US')} | indexed 1% whole result, cold (builds the view) | ${coldMs.toFixed(1)} ms | | ${(fullRead / coldMs).toFixed(2)}× vs full read | | ${cold.rows} rows, plan ${cold.kind} |`);
    rows.push(`| nats ${loaded.toLocaleString('en-US')} | indexed 1% whole result, warm | ${warm.toFixed(1)} ms | | ${(fullRead / warm).toFixed(2)}× vs full read | ≥ 10×: ${fullRead / warm >= 10 ? 'met' : 'MISSED'} | ${cold.rows} rows |`);
    await other.close();
    await backend.close();
  } finally {
    await server.stop();
  }
}

if (only !== 'nats') await local();
if (only !== 'local') await nats();
process.stdout.write(`| store, objects | query | sluice | raw | raw/sluice | target | notes |\n| --- | --- | --- | --- | --- | --- | --- |\n${rows.join('\n')}\n`);
