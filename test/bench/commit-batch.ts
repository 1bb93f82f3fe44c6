/**
 * Benchmark of the local batch write (Backend.commitBatch) against the path it replaced, in one run:
 * 500 attribute effects with processed-markers on 500 distinct 1 KiB objects (8 shards) committed
 * (a) as 500 `updateAttrs` calls issued in one turn (the store's group commit puts them in ONE LMDB
 * transaction too, but each is its own closure, promise, expression parse and counter read/write) and
 * (b) as ONE `commitBatch` of 500 ops. 20 rounds, alternating which side goes first; prints the mean
 * wall time per batch and the ratio. Same durability on both sides (synced commits). Bounded: 4,000
 * objects, 40 batches. Outside CI:
 *
 *   npx tsx test/bench/commit-batch.ts
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalBackend } from '../../bindings/local/index.ts';
import { attrsOpExpressions } from '../../bindings/write-batch.ts';
import type { AttrsWriteOp } from '../../bindings/types.ts';
const b = await LocalBackend.open({ dir: mkdtempSync(join(tmpdir(), 'cb-')) });
await b.createBucket('u', { shards: 8 });
const o = await b.objects('u');
const N = 500;
for (let i = 0; i < 4000; i++) await o.put(`k${i}`, 'x'.repeat(1024));
let seq = 1;
const ops = (base: number): AttrsWriteOp[] => Array.from({ length: N }, (_, i) => ({ type: 'attrs', bucket: 'u', key: `k${(base + i) % 4000}`, set: { has_ssn: true, has_ccard: false }, remove: [], updates: [], marker: { attr: '$sluice.f', seq: seq++ } }));
const t = { old: 0, batch: 0 };
for (let r = 0; r < 20; r++) {
  for (const side of r % 2 ? (['old', 'batch'] as const) : (['batch', 'old'] as const)) {
    const list = ops(r * N);
    const t0 = performance.now();
    if (side === 'batch') await b.commitBatch(list);
    else await Promise.all(list.map((op) => { const { updates, condition } = attrsOpExpressions(op); return o.updateAttrs(op.key, updates, condition ? { condition } : {}); }));
    t[side] += performance.now() - t0;
  }
}
console.log(`per 500-record batch: one-by-one updateAttrs ${(t.old / 20).toFixed(2)} ms, commitBatch ${(t.batch / 20).toFixed(2)} ms, ratio ${(t.old / t.batch).toFixed(2)}x`);
await b.close();
