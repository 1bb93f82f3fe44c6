/**
 * `sluice dev` live reload, end to end with real processes: a function on a bucket of 8 shards whose
 * handler imports a module from OUTSIDE its folder; editing that module rolls the function to a new
 * revision (the old workers drain and commit, the new code takes over) and the test measures the time
 * from the edit to the first record handled by the new code. An edit that does not load is refused
 * with SLUICE_HANDLER_LOAD and file:line:column, and the running revision keeps handling records.
 * No record is lost or handled twice across the reloads (attribute n is exactly 1 everywhere).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LocalBackend } from '../../bindings/local/index.ts';
import type { FunctionStatus } from '../../controller/control-plane.ts';
import { handlerSource, measureReload, put, reloadProject, tagOf, writeReloadProject } from '../support/reload-fixture.ts';
import { run, startDev, until, type Dev } from '../support/sluice-process.ts';

const work = mkdtempSync(join(tmpdir(), 'sluice-reload-'));
const { data, functions, handler, lib } = reloadProject(work);

let dev: Dev | undefined;
let backend: LocalBackend | undefined;

afterAll(async () => {
  await dev?.stop();
  await backend?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('dev reload', () => {
  it('dev reload - an edit of an imported module outside the function folder rolls 8 shards to the new code; a broken edit keeps the old revision', async () => {
    const project = await writeReloadProject(work);
    backend = project.backend;
    const objects = project.objects;

    dev = await startDev({ data, cwd: work, extra: ['--functions', functions] });
    await dev.waitFor(/deployed tagger \(revision 1\)/);
    const keys: string[] = [await put(objects, 'warm-up')];
    await until('warm-up tagged v1', async () => ((await tagOf(objects, 'warm-up')).tag === 'v1' ? true : undefined), 30_000, 50);

    // The edit; then a record every 50 ms until one is handled by the new code.
    const d = dev;
    const reloadMs = await measureReload({ objects, lib, tag: 'v2', keys, prefix: 'during', context: () => `dev: ${d.out().slice(-2000)}` });
    await dev.waitFor(/reloaded tagger: revision 1 → 2/);
    const phases = /deployed revision 2 \((.*)\)/.exec(dev.out())?.[1] ?? '';
    process.stdout.write(`dev reload: 8 shards, edit → first record handled by the new code in ${reloadMs} ms (${phases})\n`);
    // Looser than the 3 s target (test/bench/reload.ts measures the median of 5 reloads, docs/BENCHMARKS.md):
    // 8 s in CI; 30 s on a development machine shared with other suites (11 s measured at load average 18
    // on 2 cores, nearly all of it the new worker's boot). Old code never reloads: measureReload times out.
    expect(reloadMs).toBeLessThan(process.env.CI ? 8_000 : 30_000);

    // A broken edit: refused with the file, line and column; revision 2 keeps running.
    const mark = dev.out().length;
    writeFileSync(handler, handlerSource('').replace('r.setAttrs({', 'r.setAttrs({{'));
    const refused = await dev.waitFor(/cannot deploy .*function\.yaml: (.*) \(SLUICE_HANDLER_LOAD\)/, 30_000, mark);
    expect(refused[1]).toContain(`${handler}:7:`);
    keys.push(await put(objects, 'after-broken-edit'));
    await until('a record handled by revision 2 after the refused edit', async () => ((await tagOf(objects, 'after-broken-edit')).tag === 'v2' ? true : undefined));
    const st = await run(['status', 'tagger', '--json', '--data', data, '--server', dev.server]);
    expect(st.code, st.stderr).toBe(0);
    const status = JSON.parse(st.stdout) as FunctionStatus;
    expect(status.revision).toBe(2);
    expect(status.lastError?.message).toMatch(/does not load/);

    // The fix: revision 3, and it runs.
    writeFileSync(handler, handlerSource('-fixed'));
    await dev.waitFor(/reloaded tagger: revision 2 → 3/, 30_000, mark);
    keys.push(await put(objects, 'after-fix'));
    await until('a record handled by revision 3', async () => ((await tagOf(objects, 'after-fix')).tag === 'v2-fixed' ? true : undefined));

    // Exactly once across every rollout: each record's ADD applied once.
    for (const k of keys) {
      const a = await until(`${k} handled`, async () => {
        const x = await tagOf(objects, k);
        return x.n === undefined ? undefined : x;
      });
      expect(a.n, k).toBe(1);
    }
  }, 150_000);
});
