/**
 * Fault tests of the runtime (DESIGN invariant 2): a real worker process is killed with SIGKILL at
 * random moments while 20,000 objects are uploaded and processed, restarted each time; afterwards
 * every object must carry exactly one application of its effects (`n = 1`, `len = size`), the
 * function's counters must be exact, and nothing may be missing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { openStateTable, readCounters } from '../../runtime/state.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { killRepeatedly, startWorkerProcess } from '../support/worker-process.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const N = Number(process.env.SLUICE_KILL_OBJECTS ?? 20_000);

forEachBackend('runtime', (ctx) => {
  const t = (what: string) => tn('runtime', ctx, what);

  it(
    t(`kill: SIGKILL of the worker at random moments during ${N} uploads loses nothing and applies nothing twice`),
    async () => {
      const bucket = ctx.uid('kill');
      const fn = ctx.uid('fn');
      const shards = 4;
      await ctx.backend.createBucket(bucket, { shards });
      const o = await ctx.backend.objects(bucket);
      const dir = mkdtempSync(join(tmpdir(), 'sluice-kill-'));
      const cfg = join(dir, 'worker.json');
      const options: WorkerOptions = {
        function: fn,
        module: fixture,
        trigger: { type: 'object', bucket },
        backend: ctx.childSpec(),
        // The production path: handler threads over shared-memory slots.
        threads: 1,
        batch: { maxRecords: 100, maxWait: '5ms' },
        leaseTtl: '1s',
        logLevel: 'warn',
      };
      writeFileSync(cfg, JSON.stringify(options));
      let worker = await startWorkerProcess(cfg);
      let kills = 0;
      let uploaded = 0;
      const upload = (async () => {
        const lanes = 32;
        let next = 0;
        await Promise.all(
          Array.from({ length: lanes }, async () => {
            while (next < N) {
              const i = next++;
              await o.put(`obj-${i}`, 'z'.repeat(i % 97));
              uploaded++;
            }
          }),
        );
      })();
      try {
        // Kill at random moments while uploads run, and once more after they finished.
        ({ worker, kills } = await killRepeatedly(worker, cfg, { busy: () => uploaded < N, minKills: 4, maxKills: 41, minPauseMs: 150, jitterMs: 600 }));
        await upload;
        const state = await openStateTable(ctx.backend);
        const end = Date.now() + 240_000;
        let seen = 0;
        while (Date.now() < end) {
          seen = (await readCounters(state, fn, shards)).seen ?? 0;
          if (seen >= N) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        expect(kills).toBeGreaterThanOrEqual(4);
        expect(seen).toBe(N);
        // Every object: exactly one application of its effects.
        const bad: string[] = [];
        let next = 0;
        await Promise.all(
          Array.from({ length: 32 }, async () => {
            while (next < N) {
              const i = next++;
              const a = (await o.getAttrs(`obj-${i}`)).attrs;
              if (a.n !== 1 || a.len !== i % 97) bad.push(`obj-${i}: n=${String(a.n)} len=${String(a.len)}`);
            }
          }),
        );
        expect(bad.slice(0, 10)).toEqual([]);
        // Counters stay exact after things settle.
        await new Promise((r) => setTimeout(r, 500));
        expect((await readCounters(state, fn, shards)).seen).toBe(N);
      } finally {
        worker.proc.kill('SIGTERM');
        const code = await worker.exit;
        expect(code).toBe(0);
        rmSync(dir, { recursive: true, force: true });
      }
    },
    600_000,
  );
});
