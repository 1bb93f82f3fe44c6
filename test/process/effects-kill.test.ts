/**
 * Fault test of effects beyond the triggering object (runtime/effect-writes.ts, DESIGN invariant 2):
 * a real worker process (handler threads over shared memory) is SIGKILLed repeatedly while a function
 * applies, per record, an effect-mode KV update `ADD count :one` on one of 30 counter items shared by
 * records of many keys and shards, and an effect-mode stream emit `<key>#<version>`. Afterwards every
 * counter must equal exactly the number of records that target it, and every emitted record must
 * exist exactly once in the stream — after any number of crashes and redeliveries. Both backends.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { openStateTable, readCounters } from '../../runtime/state.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { readAll } from '../support/streams.ts';
import { killRepeatedly, startWorkerProcess } from '../support/worker-process.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-effects.ts', import.meta.url));
const TOTAL = Number(process.env.SLUICE_EFFECTS_KILL_RECORDS ?? 1500);
const ITEMS = 30;

forEachBackend('runtime', (ctx) => {
  const t = (what: string) => tn('runtime', ctx, what);

  it(
    t(`effects kill: SIGKILL during ${TOTAL} records — effect-mode KV counters exact, every emitted record once`),
    async () => {
      const bucket = ctx.uid('fxk');
      const table = ctx.uid('counts');
      const out = ctx.uid('out');
      const fn = ctx.uid('fn');
      const shards = 4;
      await ctx.backend.createBucket(bucket, { shards });
      await ctx.backend.createTable(table);
      const streams = ctx.backend.streams();
      await streams.create(out, { shards: 2 });
      const o = await ctx.backend.objects(bucket);
      const dir = mkdtempSync(join(tmpdir(), 'sluice-fxkill-'));
      const cfg = join(dir, 'worker.json');
      const options: WorkerOptions = {
        function: fn,
        module: fixture,
        trigger: { type: 'object', bucket },
        backend: ctx.childSpec(),
        bindings: [
          { name: 'counts', kind: 'kv', resource: table, access: 'read-write' },
          { name: 'out', kind: 'stream', resource: out, access: 'read-write' },
        ],
        threads: 1,
        batch: { maxRecords: 50, maxWait: '5ms' },
        leaseTtl: '1s',
        logLevel: 'warn',
      };
      writeFileSync(cfg, JSON.stringify(options));
      let worker = await startWorkerProcess(cfg);
      let kills = 0;
      let done = 0;
      const total = TOTAL;
      const upload = (async () => {
        const lanes = 16;
        let next = 0;
        await Promise.all(
          Array.from({ length: lanes }, async () => {
            while (next < total) {
              await o.put(`obj-${next++}`, 'x');
              done++;
            }
          }),
        );
      })();
      try {
        ({ worker, kills } = await killRepeatedly(worker, cfg, { busy: () => done < total, minKills: 4, maxKills: 20, minPauseMs: 200, jitterMs: 500 }));
        await upload;
        const state = await openStateTable(ctx.backend);
        const end = Date.now() + 120_000;
        let seen = 0;
        while (Date.now() < end) {
          seen = (await readCounters(state, fn, shards)).seen ?? 0;
          if (seen >= total) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        expect(kills).toBeGreaterThanOrEqual(4);
        expect(seen).toBe(total);
        const kv = await ctx.backend.kv(table);
        const bad: string[] = [];
        for (let c = 0; c < ITEMS; c++) {
          const e = await kv.getItem(`c-${c}`);
          const want = Math.floor(total / ITEMS) + (c < total % ITEMS ? 1 : 0);
          if (e?.item.count !== want) bad.push(`c-${c}: count=${String(e?.item.count)}, want ${want}`);
          // The effect markers are internal: a user read never shows them.
          if (e !== undefined && Object.keys(e.item).some((n) => n.startsWith('$sluice.'))) bad.push(`c-${c}: marker visible`);
        }
        expect(bad.slice(0, 10)).toEqual([]);
        const emitted = await readAll(streams, out);
        const counts = new Map<string, number>();
        for (const d of emitted) counts.set(d, (counts.get(d) ?? 0) + 1);
        const twice = [...counts].filter(([, n]) => n > 1).map(([d, n]) => `${d} ×${n}`);
        expect(twice.slice(0, 10)).toEqual([]);
        expect(counts.size).toBe(total);
        expect(emitted.length).toBe(total);
      } finally {
        worker.proc.kill('SIGTERM');
        await worker.exit;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    180_000,
  );
});
