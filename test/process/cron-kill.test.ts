/**
 * Cron trigger with real worker processes under the controller: while replicas are SIGKILLed and the
 * function is scaled 2 → 3 → 1, every schedule instant ticks exactly once (consecutive seconds, none twice)
 * and the handler's exact counter equals the number of ticks.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { Controller } from '../../controller/controller.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import type { StreamBinding } from '../../bindings/types.ts';
import { CheckpointStore, openStateTable, readCounters } from '../../runtime/state.ts';
import { decodeTick } from '../../runtime/triggers/cron.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { readShard, until } from '../support/poll.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/cron-count.ts', import.meta.url));

async function ticks(s: StreamBinding, stream: string, seqs: number[] = []): Promise<number[]> {
  const records = await readShard(s, stream);
  seqs.push(...records.map((r) => r.seq));
  return records.map((r) => Date.parse(decodeTick(r.data).scheduledAt));
}

forEachBackend('cron', (ctx) => {
  it(
    tn('cron', ctx, 'SIGKILLed replicas and scaling 2 → 3 → 1: each instant ticks once, each tick is counted once'),
    async () => {
      const fn = ctx.uid('fn');
      const runDir = mkdtempSync(join(tmpdir(), 'sluice-run-'));
      const driver = new LocalDriver({ runDir, restartDelayMs: 100 });
      const controller = await Controller.open({ backend: ctx.backend, driver, intervalMs: 60_000 });
      const c = ctx.childSpec();
      const backend = c.kind === 'local' ? `{kind: local, dir: ${JSON.stringify(c.dir)}}` : `{kind: nats, url: ${JSON.stringify(c.url)}}`;
      const streams = ctx.backend.streams();
      const stream = `cron-${fn}`;
      try {
        await controller.deploy(
          `apiVersion: sluice.dev/v1
kind: Function
metadata: {name: ${fn}}
spec:
  handler: ${JSON.stringify(fixture)}
  backend: ${backend}
  triggers: [{cron: {schedule: "* * * * * *", catchUp: all, overlap: queue}}]
  batch: {maxRecords: 50, maxWait: 5ms}
  concurrency: {threads: 0}
  scaling: {minReplicas: 1, maxReplicas: 3}
`,
          runDir,
        );
        await controller.scale(fn, 2);
        const has = (n: number) => async () => (await streams.info(stream).then(() => ticks(streams, stream), () => [])).length >= n;
        await until('3 ticks', has(3), 30_000);
        process.kill(driver.pids(fn).get(0)!, 'SIGKILL');
        await until('6 ticks', has(6), 30_000);
        await controller.scale(fn, 3);
        process.kill(driver.pids(fn).get(1)!, 'SIGKILL');
        await until('9 ticks', has(9), 30_000);
        await controller.scale(fn, 1);
        await until('12 ticks', has(12), 30_000);
        // A killed owner's lease must expire before its shard moves: handling catches up after that.
        const state = await openStateTable(ctx.backend);
        await until('10 ticks handled', async () => ((await readCounters(state, fn, 1)).ticks ?? 0) >= 10, 60_000);
        // Stop the workers, then compare: every tick in the stream handled exactly once.
        await controller.remove(fn);
        const seqs: number[] = [];
        const all = await ticks(streams, stream, seqs);
        for (let i = 1; i < all.length; i++) expect(all[i]! - all[i - 1]!, `ticks ${all.map((t) => new Date(t).toISOString().slice(17, 19)).join(',')}`).toBe(1000);
        const counted = (await readCounters(state, fn, 1)).ticks ?? 0;
        // Exact: the counter equals the ticks the checkpoint has passed (later ones wait for the next run).
        const ckpt = await new CheckpointStore(state, fn, 0).load(1, 0);
        expect(ckpt.pending).toEqual([]);
        expect(counted).toBe(seqs.filter((q) => q < ckpt.seq).length);
        expect(counted).toBeGreaterThanOrEqual(10);
      } finally {
        await controller.close();
        rmSync(runDir, { recursive: true, force: true });
      }
    },
    180_000,
  );
});
