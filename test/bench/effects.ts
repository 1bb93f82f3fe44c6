/**
 * Benchmark: the cost of effect-mode writes (`record.effects`, runtime/effect-writes.ts) against the
 * same writes done directly through the bindings, in the same run, on both backends.
 *
 * Per record, both sides do the same work: one KV item update (`ADD count :one` on one of 100 shared
 * items, `--items`; 0 = one item per record) and one stream append (the record's key, to a 4-shard stream).
 * - `direct`: `kv.updateItem(item, expr)` then `streams.putRecords(stream, [record])` — what a handler
 *   calling `ctx.data` does (at-least-once);
 * - `effects`: `EffectWriter.commit(record, [kv update, stream emit])` — what the committer does for a
 *   handler declaring them through `record.effects` (exactly once: the update carries a marker
 *   condition + marker SET, the append a dedupeId checked by the store).
 * Records are committed with the same number in flight on both sides (the committer commits keys in
 * parallel); sides alternate per round so machine load hits both alike. Reported: records/s of each
 * side and the ratio `direct / effects` of the time per record (target ≤ 1.3×).
 *
 * Bounds: N records per side per round, R rounds, each round capped at 60 s.
 *
 *   npx tsx test/bench/effects.ts                     # both backends, N=3000, 3 rounds
 *   npx tsx test/bench/effects.ts --only local --n 10000
 * Needs nats-server on PATH (started on a random 127.0.0.1 port with a temp store) for the nats rows.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { Backend } from '../../bindings/types.ts';
import type { BatchRecordInput } from '../../runtime/batch-types.ts';
import { EffectWriter } from '../../runtime/effect-writes.ts';
import { startNatsServer } from '../support/nats-server.ts';

const { values: args } = parseArgs({ options: { only: { type: 'string' }, n: { type: 'string' }, rounds: { type: 'string' }, inflight: { type: 'string' }, items: { type: 'string' } } });
const N = Number(args.n ?? 3000);
const ROUNDS = Number(args.rounds ?? 3);
const INFLIGHT = Number(args.inflight ?? 64);
/** Distinct KV items the records update (0: one per record — no item shared by several triggering keys). */
const ITEMS = Number(args.items ?? 100);
const item = (round: number, i: number): string => (ITEMS > 0 ? `item-${i % ITEMS}` : `item-${round}-${i}`);
const one = { expr: 'ADD #c :one', names: { '#c': 'count' }, values: { ':one': 1 } };

async function lanes(n: number, work: (i: number) => Promise<void>): Promise<number> {
  const t0 = performance.now();
  const deadline = Date.now() + 60_000;
  let next = 0;
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (next < n && Date.now() < deadline) await work(next++);
    }),
  );
  return (performance.now() - t0) / Math.max(1, next);
}

async function bench(name: string, backend: Backend): Promise<{ name: string; direct: number; effects: number; ratios: number[] }> {
  const table = `fx-bench-${Date.now().toString(36)}`;
  const stream = `${table}-out`;
  await backend.createTable(table);
  await backend.streams().create(stream, { shards: 4 });
  const kv = await backend.kv(table);
  const streams = backend.streams();
  const w = new EffectWriter('bench', [
    { name: 'places', kind: 'kv', resource: table, access: 'read-write' },
    { name: 'out', kind: 'stream', resource: stream, access: 'read-write' },
  ], backend, pino({ level: 'silent' }));
  let seq = 0;
  const rec = (key: string): BatchRecordInput => ({ key, type: 'put', source: 'bench', shard: 0, seq: ++seq, version: 1, size: 0, etag: '', mtimeMs: 0, contentType: '', attrs: {}, headers: {}, attempt: 1 });
  const direct = async (round: number) =>
    lanes(N, async (i) => {
      const key = `d${round}-${i}`;
      await kv.updateItem(item(round, i), one);
      const r = await streams.putRecords(stream, [{ data: key, partitionKey: key }]);
      if (!r[0]?.ok) throw new Error('append failed');
    });
  const effects = async (round: number) =>
    lanes(N, async (i) => {
      const key = `e${round}-${i}`;
      const out = await w.commit(rec(key), [
        { kind: 'kv', binding: 'places', key: item(round, i), update: one },
        { kind: 'stream', binding: 'out', data: key, partitionKey: key },
      ]);
      if (out !== 'ok') throw new Error(`commit failed: ${JSON.stringify(out)}`);
    });
  await direct(-1);
  await effects(-1); // warm-up, unmeasured
  let d = 0;
  let e = 0;
  const ratios: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let dm: number;
    let em: number;
    if (r % 2 === 0) {
      dm = await direct(r);
      em = await effects(r);
    } else {
      em = await effects(r);
      dm = await direct(r);
    }
    d += dm;
    e += em;
    ratios.push(em / dm);
    process.stderr.write(`${name} round ${r}: direct ${(1000 / dm).toFixed(0)} rec/s, effects ${(1000 / em).toFixed(0)} rec/s\n`);
  }
  return { name, direct: d / ROUNDS, effects: e / ROUNDS, ratios };
}

const rows: Awaited<ReturnType<typeof bench>>[] = [];
if (args.only !== 'nats') {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-fxbench-'));
  const b = await LocalBackend.open({ dir });
  rows.push(await bench('local', b));
  await b.close();
  rmSync(dir, { recursive: true, force: true });
}
if (args.only !== 'local') {
  const server = await startNatsServer();
  const b = await NatsBackend.open({ servers: server.url, prefix: 'fxbench' });
  try {
    rows.push(await bench('nats', b));
  } finally {
    await b.close();
    await server.stop();
  }
}
console.log(`\n| backend | direct (rec/s) | effect mode (rec/s) | effects / direct time per record | target ≤ 1.3× | per-round ratios |`);
console.log(`|---|---|---|---|---|---|`);
for (const r of rows) {
  const ratio = r.effects / r.direct;
  console.log(`| ${r.name} | ${(1000 / r.direct).toFixed(0)} | ${(1000 / r.effects).toFixed(0)} | ${ratio.toFixed(2)}× | ${ratio <= 1.3 ? 'met' : 'MISSED'} | ${r.ratios.map((x) => x.toFixed(2)).join(', ')} |`);
}
console.log(`\nN=${N} records per side per round, ${ROUNDS} rounds, ${INFLIGHT} in flight, items=${ITEMS || 'one per record'}; each record = 1 KV update + 1 stream append.`);
process.exit(0);
