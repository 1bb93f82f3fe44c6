/**
 * Runtime on the local store: a record's attribute effects and the checkpoint that counts it commit in
 * ONE store transaction (the checkpoint rides in the batch's own write as its `afterAll` op), so no reader
 * ever sees a record's attributes committed while its shard's counters still miss it — the one-turn path
 * that put → committed latency rests on. The probe reads both in one synchronous snapshot of a second
 * store handle, after every event-loop turn. The position past the skipped `attrs` records of the
 * worker's own commits (not written in a store turn of their own) is written once the shard idles.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { Item } from '../../bindings/types.ts';
import { markerAttr } from '../../runtime/committer.ts';
import { decodeCheckpoint, STATE_TABLE, StateKeys } from '../../runtime/state.ts';
import { Worker } from '../../runtime/worker.ts';
import { until } from '../support/poll.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });
const turn = () => new Promise<void>((r) => setImmediate(r));

it('commit-turn/local - a trickle record and the checkpoint counting it are visible together, never apart', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-commit-turn-'));
  const backend = await LocalBackend.open({ dir });
  const fn = 'turns';
  try {
    await backend.createBucket('b', { shards: 1 });
    const o = await backend.objects('b');
    const w = await Worker.start(
      { function: fn, module: fixture, trigger: { type: 'object', bucket: 'b' }, backend: { kind: 'local', dir }, threads: 0, batch: { maxRecords: 10, maxWait: 0 }, leaseTtl: '5s' },
      { log: quiet },
    );
    const s = backend.store;
    let apart = 0;
    try {
      for (let i = 0; i < 40; i++) {
        const key = `k${i}`;
        await o.put(key, 'x');
        // Bounded: 20 s of turns for this record.
        const end = Date.now() + 20_000;
        for (;;) {
          s.fresh();
          const attrs = s.attrs.get(['b', key]);
          const ck = s.items.get([STATE_TABLE, StateKeys.checkpoint(fn, 0)]);
          const seen = ck ? (decodeCheckpoint(ck.i as Item).counts.seen ?? 0) : 0;
          if (attrs?.[markerAttr(fn)] !== undefined) {
            if (seen < i + 1) apart++;
            if (seen >= i + 1) break;
          }
          if (Date.now() > end) throw new Error(`record ${key} not committed and counted within 20 s (attrs ${JSON.stringify(attrs)}, seen ${seen})`);
          await turn();
        }
      }
      // The checkpoint of the steps that only skipped records (the worker's own `attrs` change records)
      // is not written on its own, but it is written once the shard idles: the position reaches the end.
      const stream = (await o.info()).changeStream;
      await until('the checkpoint past every record of the shard', () => {
        s.fresh();
        const last = s.counters.get(['s', stream, 0]) ?? 0;
        const ck = s.items.get([STATE_TABLE, StateKeys.checkpoint(fn, 0)]);
        return ck !== undefined && decodeCheckpoint(ck.i as Item).seq === last + 1;
      }, 20_000, 20);
    } finally {
      await w.stop();
    }
    expect(apart).toBe(0);
    expect((await o.getAttrs('k39')).attrs.n).toBe(1);
  } finally {
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  }
}, 120_000);
