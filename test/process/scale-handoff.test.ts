/**
 * Controller + local driver with real worker processes: scaling 1 → 4 → 2 while objects keep arriving
 * hands shards off without loss or duplicate effects (DESIGN invariant 4), on every backend; and a
 * worker killed with SIGKILL is restarted by the driver.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { Controller } from '../../controller/controller.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { openStateTable, readCounters } from '../../runtime/state.ts';
import { forEachBackend, tn, type BackendContext } from '../conformance/backends.ts';
import { until } from '../support/poll.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));

function specYaml(ctx: BackendContext, name: string, bucket: string, scaling = '{minReplicas: 1, maxReplicas: 4, maxBatchesInFlight: 8}'): string {
  const c = ctx.childSpec();
  const backend = c.kind === 'local' ? `{kind: local, dir: ${JSON.stringify(c.dir)}}` : `{kind: nats, url: ${JSON.stringify(c.url)}}`;
  return `apiVersion: sluice.dev/v1
kind: Function
metadata: {name: ${name}}
spec:
  handler: ${JSON.stringify(fixture)}
  backend: ${backend}
  triggers: [{object: {bucket: ${bucket}}}]
  batch: {maxRecords: 50, maxWait: 5ms}
  concurrency: {threads: 0}
  scaling: ${scaling}
`;
}

/** A bucket of `shards`, a local driver and a controller the test steps itself (its own rounds are a minute apart); closed after `body`. */
async function withController(
  ctx: BackendContext,
  name: string,
  shards: number,
  body: (x: { bucket: string; fn: string; runDir: string; driver: LocalDriver; controller: Controller }) => Promise<void>,
): Promise<void> {
  const bucket = ctx.uid(name);
  const fn = ctx.uid('fn');
  await ctx.backend.createBucket(bucket, { shards });
  const runDir = mkdtempSync(join(tmpdir(), 'sluice-run-'));
  const driver = new LocalDriver({ runDir, restartDelayMs: 100 });
  const controller = await Controller.open({ backend: ctx.backend, driver, intervalMs: 60_000 });
  try {
    await body({ bucket, fn, runDir, driver, controller });
  } finally {
    await controller.close();
    rmSync(runDir, { recursive: true, force: true });
  }
}

/** One controller round: reconcile, then the function's status and the replicas asked of the driver, noted in `log` as `<label>: desired <n>, lag <lag>`. */
async function round(controller: Controller, driver: LocalDriver, fn: string, log: string[], label: string): Promise<{ desired: number; ratePerSecond: number }> {
  await controller.reconcile();
  const st = await controller.status(fn);
  const desired = (await driver.status(fn))?.desired ?? 0;
  log.push(`${label}: desired ${desired}, lag ${st.lag}`);
  return { desired, ratePerSecond: st.ratePerSecond };
}

forEachBackend('controller', (ctx) => {
  const t = (what: string) => tn('controller', ctx, what);

  it(
    t('scale handoff 1 → 4 → 2 while events flow: nothing lost, nothing applied twice'),
    async () => {
      const bucket = ctx.uid('handoff');
      const fn = ctx.uid('fn');
      const shards = 8;
      await ctx.backend.createBucket(bucket, { shards });
      const o = await ctx.backend.objects(bucket);
      const runDir = mkdtempSync(join(tmpdir(), 'sluice-run-'));
      const driver = new LocalDriver({ runDir, restartDelayMs: 100 });
      const controller = await Controller.open({ backend: ctx.backend, driver, intervalMs: 60_000 });
      const state = await openStateTable(ctx.backend);
      const owners = async () => {
        const out = new Set<string>();
        for (let s = 0; s < shards; s++) {
          const l = (await state.getItem(`lease/${fn}/${s}`))?.item as { owner?: string; expiresAt?: number } | undefined;
          if (l?.owner && (l.expiresAt ?? 0) > Date.now()) out.add(l.owner);
        }
        return out;
      };
      let written = 0;
      let stop = false;
      const writer = (async () => {
        while (!stop && written < 20_000) {
          await Promise.all(Array.from({ length: 20 }, (_, j) => o.put(`o-${written + j}`, 'x'.repeat(j))));
          written += 20;
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      try {
        await controller.deploy(specYaml(ctx, fn, bucket), runDir);
        await until('one worker owns every shard', async () => (await owners()).size === 1, 30_000);
        await controller.scale(fn, 4);
        await until('four workers own the shards', async () => (await owners()).size === 4, 60_000);
        expect((await driver.status(fn))?.desired).toBe(4);
        await new Promise((r) => setTimeout(r, 500));
        await controller.scale(fn, 2);
        await until('two workers own the shards', async () => (await owners()).size === 2 && driver.pids(fn).size === 2, 60_000);
        stop = true;
        await writer;
        const total = written;
        await until(`${total} handled`, async () => (await readCounters(state, fn, shards)).seen === total, 120_000);
        const bad: string[] = [];
        for (let i = 0; i < total; i += 1) {
          const a = (await o.getAttrs(`o-${i}`)).attrs;
          if (a.n !== 1) bad.push(`o-${i}: n=${String(a.n)}`);
          if (bad.length > 10) break;
        }
        expect(bad).toEqual([]);
        // The commits' own attrs change records are consumed (and skipped) too, so the lag drains to 0.
        await until('lag 0', async () => (await controller.status(fn)).lag === 0, 30_000);
        const status = await controller.status(fn);
        expect(status.counters.seen).toBe(total);
        expect(status.shards).toHaveLength(shards);
      } finally {
        stop = true;
        await writer.catch(() => undefined);
        await controller.close();
        rmSync(runDir, { recursive: true, force: true });
      }
    },
    300_000,
  );

  it(
    t('the autoscaler activates from zero on lag, scales up, and back to zero when idle'),
    async () => {
      await withController(ctx, 'auto', 4, async ({ bucket, fn, runDir, driver, controller }) => {
        const decisions: string[] = [];
        await controller.deploy(
          specYaml(ctx, fn, bucket, '{minReplicas: 0, maxReplicas: 3, targetLagPerReplica: 100, scaleToZeroAfter: 1s, stabilization: {scaleDown: 0s}}'),
          runDir,
        );
        // Deploy starts one replica; with no records the controller scales it to zero after the idle time.
        await new Promise((r) => setTimeout(r, 1200));
        await controller.reconcile();
        await controller.reconcile();
        expect((await driver.status(fn))?.desired).toBe(0);
        const o = await ctx.backend.objects(bucket);
        await Promise.all(Array.from({ length: 250 }, (_, i) => o.put(`a-${i}`, 'x')));
        await controller.reconcile();
        const up = (await driver.status(fn))!.desired;
        decisions.push(`after 250 records: ${up}`);
        expect(up).toBe(3);
        const state = await openStateTable(ctx.backend);
        await until('all handled', async () => (await readCounters(state, fn, 4)).seen === 250, 60_000);
        await until('lag 0', async () => (await controller.status(fn)).lag === 0, 30_000);
        await new Promise((r) => setTimeout(r, 1100));
        await controller.reconcile();
        await controller.reconcile();
        expect((await driver.status(fn))?.desired, decisions.join('; ')).toBe(0);
      });
    },
    180_000,
  );

  it(
    t('the autoscaler keeps one replica that keeps up with a trickle (a rate observed while keeping up is not a capacity)'),
    async () => {
      await withController(ctx, 'trickle', 4, async ({ bucket, fn, runDir, driver, controller }) => {
        const decisions: string[] = [];
        await controller.deploy(specYaml(ctx, fn, bucket, '{minReplicas: 1, maxReplicas: 4}'), runDir);
        await until('worker ready', async () => (await driver.status(fn))?.ready === 1, 60_000);
        const o = await ctx.backend.objects(bucket);
        const state = await openStateTable(ctx.backend);
        // About 5 records/s for 8 s, a reconcile round after each: the worker handles each within
        // milliseconds, so every round sees it keep up (incoming ≈ handled), with the rounds' timing
        // putting incoming a little above handled in some of them.
        let rate = 0;
        for (let i = 0; i < 40; i++) {
          await o.put(`t-${i}`, 'x');
          await new Promise((r) => setTimeout(r, 200));
          rate = Math.max(rate, (await round(controller, driver, fn, decisions, String(i))).ratePerSecond);
        }
        expect((await driver.status(fn))?.desired, decisions.join('; ')).toBe(1);
        expect(decisions.filter((d) => !/desired 1,/.test(d))).toEqual([]);
        // The status still reports the rate handled.
        expect(rate).toBeGreaterThan(0);
        await until('all handled', async () => (await readCounters(state, fn, 4)).seen === 40, 60_000);
      });
    },
    120_000,
  );

  it(
    t('the autoscaler adds replicas when the incoming rate exceeds what a busy replica handles, below the lag target'),
    async () => {
      await withController(ctx, 'flood', 2, async ({ bucket, fn, runDir, driver, controller }) => {
        const decisions: string[] = [];
        // The lag target is out of reach: only the rate can scale this function.
        await controller.deploy(specYaml(ctx, fn, bucket, '{minReplicas: 1, maxReplicas: 3, targetLagPerReplica: 100000}'), runDir);
        await until('worker ready', async () => (await driver.status(fn))?.ready === 1, 60_000);
        const o = await ctx.backend.objects(bucket);
        // 'slow' keys take 50 ms each: one replica over two shards handles about 40/s; 80/s arrive.
        let n = 0;
        let most = 1;
        for (const end = Date.now() + 6000; Date.now() < end && most < 2; ) {
          await Promise.all(Array.from({ length: 8 }, () => o.put(`slow-${n++}`, 'x')));
          await new Promise((r) => setTimeout(r, 100));
          if (n % 40 === 0) most = Math.max(most, (await round(controller, driver, fn, decisions, String(n))).desired);
        }
        expect(most, decisions.join('; ')).toBeGreaterThanOrEqual(2);
      });
    },
    120_000,
  );

  it(
    t('the local driver restarts a killed worker with backoff'),
    async () => {
      await withController(ctx, 'restart', 2, async ({ bucket, fn, runDir, driver, controller }) => {
        await controller.deploy(specYaml(ctx, fn, bucket), runDir);
        await until('worker ready', async () => (await driver.status(fn))?.ready === 1, 30_000);
        const pid = driver.pids(fn).get(0)!;
        process.kill(pid, 'SIGKILL');
        await until('worker restarted', async () => {
          const s = await driver.status(fn);
          return s?.ready === 1 && s.replicas[0]!.restarts === 1 && driver.pids(fn).get(0) !== pid;
        }, 30_000);
        const o = await ctx.backend.objects(bucket);
        await o.put('after-restart', 'x');
        await until('handled after restart', async () => (await o.getAttrs('after-restart')).attrs.n === 1, 30_000);
        writeFileSync(join(runDir, 'done'), '');
      });
    },
    120_000,
  );
});
