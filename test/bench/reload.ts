/**
 * Benchmark: live reload under `sluice dev` — the time from an edit of a module a handler imports to
 * the first record handled by the new code, for a function on a bucket of 8 shards (the project of
 * test/process/dev-reload.test.ts, test/support/reload-fixture.ts). Five reloads in one `sluice dev`;
 * prints each with the phases the dev log reports (sandbox load, new workers ready, old drained, shard
 * takeover) and the median. Target (issue 12): ≤ 3 s locally. The baseline in the same run is a cold
 * start of the same function (`sluice dev` start → first record handled), which pays the same worker
 * boot without a sandbox or a handover.
 *
 * Run: `npx tsx test/bench/reload.ts [reloads]` (default 5; not in CI; about a minute).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { measureReload, put, reloadProject, tagOf, writeReloadProject } from '../support/reload-fixture.ts';
import { startDev, until } from '../support/sluice-process.ts';

const RELOADS = Number(process.argv[2] ?? 5);
const TARGET_MS = 3000;
const log = (s: string) => process.stdout.write(`${s}\n`);
const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};

const work = mkdtempSync(join(tmpdir(), 'sluice-bench-reload-'));
const { data, functions, lib } = reloadProject(work);
const { backend, objects } = await writeReloadProject(work);
const load0 = loadavg()[0]!;
const t0 = Date.now();
const dev = await startDev({ data, cwd: work, extra: ['--functions', functions, '--no-ui', '--no-http', '--s3', '0', '--metrics', '127.0.0.1:0'] });
try {
  const keys = [await put(objects, 'cold')];
  await until('the first record handled', async () => ((await tagOf(objects, 'cold')).tag === 'v1' ? true : undefined), 90_000, 50);
  const coldMs = Date.now() - t0;
  log(`cold start (sluice dev start → first record handled): ${coldMs} ms`);
  const times: number[] = [];
  for (let i = 0; i < RELOADS; i++) {
    const mark = dev.out().length;
    const ms = await measureReload({ objects, lib, tag: `v${i + 2}`, keys, prefix: `r${i}`, context: () => dev.out().slice(-2000) });
    // The takeover line comes in the background; give it a moment so the phases are complete.
    await dev.waitFor(/owns all \d+ shards, \d+ ms/, 10_000, mark).catch(() => undefined);
    const out = dev.out().slice(mark);
    const phases = /deployed revision \d+ \((.*)\)/.exec(out)?.[1] ?? '?';
    const takeover = /owns all (\d+) shards, (\d+) ms/.exec(out);
    log(`reload ${i + 1}: ${ms} ms edit → new code (${phases}${takeover ? `; all ${takeover[1]} shards taken ${takeover[2]} ms after the sandbox began` : ''})`);
    times.push(ms);
    // Let the old revision's processes finish exiting before the next edit.
    await new Promise((r) => setTimeout(r, 1000));
  }
  const m = median(times);
  log(`\nmedian of ${RELOADS} reloads: ${m} ms (target ≤ ${TARGET_MS} ms: ${m <= TARGET_MS ? 'MET' : 'MISSED'}); min ${Math.min(...times)}, max ${Math.max(...times)}; cold start ${coldMs} ms; load average ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}`);
} finally {
  await dev.stop();
  await backend.close();
  rmSync(work, { recursive: true, force: true });
}
