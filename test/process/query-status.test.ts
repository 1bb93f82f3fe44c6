/**
 * A scheduled query trigger under the controller (real worker processes): `status` shows the run history
 * (id, started, finished, matched, processed, failed) and the control API carries it, and the worker's /metrics count
 * the runs and the objects they selected.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { Controller } from '../../controller/controller.ts';
import { statusFromWire, statusToWire } from '../../controller/grpc/protos.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { until as poll } from '../support/poll.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));

/** Polls; a probe that fails is "not yet". */
const until = <T>(what: string, f: () => Promise<T | undefined>, ms = 60_000) => poll(what, () => f().catch(() => undefined), ms, 200);

forEachBackend('query-status', (ctx) => {
  it(
    tn('query-status', ctx, 'status shows the run history with matched, processed and failed; /metrics count runs and matches'),
    async () => {
      const bucket = ctx.uid('qs');
      const fn = ctx.uid('fn');
      await ctx.backend.createBucket(bucket, { shards: 2 });
      const o = await ctx.backend.objects(bucket);
      for (let i = 0; i < 60; i++) await o.put(`k${i}`, i % 6 === 0 ? 'pick me' : 'x');
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
  triggers: [{query: {bucket: ${bucket}, where: "size = 7", every: 1h}}]
  concurrency: {threads: 0}
`,
          runDir,
        );
        const s = await until('run handled', async () => {
          const st = await controller.status(fn);
          const r = st.queryRuns?.[0];
          // status reads the counters and the run history in two reads: wait until both show the run.
          return r && r.finishedAt !== undefined && r.processed === 10 && (st.counters.seen ?? 0) >= 10 ? st : undefined;
        });
        const run = s.queryRuns![0]!;
        expect(run).toMatchObject({ matched: 10, processed: 10, failed: 0 });
        expect(Date.parse(run.id)).toBeLessThanOrEqual(Date.parse(run.startedAt));
        expect(s.counters.seen).toBe(10);
        // The control API carries the history unchanged (what `sluice status` prints).
        expect(statusFromWire(statusToWire(s)).queryRuns).toEqual(s.queryRuns);
        const targets = driver.metricsTargets().filter((t) => t.function === fn);
        expect(targets.length).toBe(1);
        const text = await (await fetch(`${targets[0]!.url}/metrics`)).text();
        expect(text).toMatch(/sluice_query_runs_total\{[^}]*\} 1/);
        expect(text).toMatch(/sluice_query_matched_total\{[^}]*\} 10/);
      } finally {
        await controller.close();
        rmSync(runDir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
