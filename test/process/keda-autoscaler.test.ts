/**
 * `scaling.autoscaler: keda` hands the replica count to KEDA: the controller (real worker processes through
 * the local driver) never scales such a function itself, neither to zero when idle nor up on lag, while a
 * `sluice`-scaled function under the same load does (scale-handoff.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { Controller } from '../../controller/controller.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));

forEachBackend('controller', (ctx) => {
  it(
    tn('controller', ctx, 'autoscaler keda: the controller leaves the replica count alone when idle and under lag'),
    async () => {
      const bucket = ctx.uid('keda');
      const fn = ctx.uid('fn');
      await ctx.backend.createBucket(bucket, { shards: 4 });
      const runDir = mkdtempSync(join(tmpdir(), 'sluice-run-'));
      const driver = new LocalDriver({ runDir, restartDelayMs: 100 });
      const controller = await Controller.open({ backend: ctx.backend, driver, intervalMs: 60_000 });
      const c = ctx.childSpec();
      const backend = c.kind === 'local' ? `{kind: local, dir: ${JSON.stringify(c.dir)}}` : `{kind: nats, url: ${JSON.stringify(c.url)}}`;
      try {
        await controller.deploy(
          `apiVersion: sluice.dev/v1
kind: Function
metadata: {name: ${fn}}
spec:
  handler: ${JSON.stringify(fixture)}
  backend: ${backend}
  triggers: [{object: {bucket: ${bucket}}}]
  concurrency: {threads: 0}
  scaling: {minReplicas: 0, maxReplicas: 3, targetLagPerReplica: 10, scaleToZeroAfter: 1s, stabilization: {scaleDown: 0s}, autoscaler: keda}
`,
          runDir,
        );
        // The sluice autoscaler would take this idle function to zero here ...
        await new Promise((r) => setTimeout(r, 1200));
        await controller.reconcile();
        await controller.reconcile();
        expect((await driver.status(fn))?.desired).toBe(1);
        // ... and to 3 replicas with 250 records of lag (targetLagPerReplica 10).
        const o = await ctx.backend.objects(bucket);
        await Promise.all(Array.from({ length: 250 }, (_, i) => o.put(`k-${i}`, 'x')));
        await controller.reconcile();
        expect((await driver.status(fn))?.desired).toBe(1);
      } finally {
        await controller.close();
        rmSync(runDir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
