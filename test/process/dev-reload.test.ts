/**
 * `sluice dev` live reload, end to end with real processes: a function on a bucket of 8 shards whose
 * handler imports a module from OUTSIDE its folder; editing that module rolls the function to a new
 * revision (the old workers drain and commit, the new code takes over) and the test measures the time
 * from the edit to the first record handled by the new code. An edit that does not load is refused
 * with SLUICE_HANDLER_LOAD and file:line:column, and the running revision keeps handling records.
 * No record is lost or handled twice across the reloads (attribute n is exactly 1 everywhere).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { ObjectBinding } from '../../bindings/types.ts';
import type { FunctionStatus } from '../../controller/control-plane.ts';
import { repoRoot, run, startDev, until, type Dev } from '../support/sluice-process.ts';

const work = mkdtempSync(join(tmpdir(), 'sluice-reload-'));
const data = join(work, 'data');
const fnDir = join(work, 'functions', 'tagger');
const handler = join(fnDir, 'index.ts');
const lib = join(work, 'lib', 'tag.ts');

const handlerSource = (suffix: string) => `import { defineFunction } from '${join(repoRoot, 'functions/types.ts')}';
import { TAG } from '../../lib/tag.ts';

export default defineFunction({
  async handler(records, ctx) {
    for (const r of records) {
      r.setAttrs({ tag: TAG + '${suffix}' });
      r.update({ expr: 'ADD n :one', values: { ':one': 1 } });
      ctx.count('seen');
    }
  },
});
`;

let dev: Dev | undefined;
let backend: LocalBackend | undefined;

afterAll(async () => {
  await dev?.stop();
  await backend?.close();
  rmSync(work, { recursive: true, force: true });
});

/** Puts `key` and returns it; the bucket's change stream feeds the function. */
async function put(b: ObjectBinding, key: string): Promise<string> {
  await b.put(key, new TextEncoder().encode(key));
  return key;
}

async function tagOf(b: ObjectBinding, key: string): Promise<{ tag?: unknown; n?: unknown }> {
  return (await b.getAttrs(key)).attrs as { tag?: unknown; n?: unknown };
}

describe('dev reload', () => {
  it('dev reload - an edit of an imported module outside the function folder rolls 8 shards to the new code; a broken edit keeps the old revision', async () => {
    writeFileSync(join(work, 'package.json'), '{"type":"module"}\n');
    mkdirSync(fnDir, { recursive: true });
    mkdirSync(join(work, 'lib'));
    writeFileSync(lib, "export const TAG = 'v1';\n");
    writeFileSync(handler, handlerSource(''));
    writeFileSync(
      join(fnDir, 'function.yaml'),
      ['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', '  name: tagger', 'spec:', '  handler: index.ts', '  triggers:', '    - object:', '        bucket: uploads', '  batch: {maxWait: 5ms}', '  scaling: {minReplicas: 1, maxReplicas: 1}', ''].join('\n'),
    );
    backend = await LocalBackend.open({ dir: data });
    await backend.createBucket('uploads', { shards: 8 });
    const objects = await backend.objects('uploads');

    dev = await startDev({ data, cwd: work, extra: ['--functions', join(work, 'functions')] });
    await dev.waitFor(/deployed tagger \(revision 1\)/);
    const keys: string[] = [await put(objects, 'warm-up')];
    await until('warm-up tagged v1', async () => ((await tagOf(objects, 'warm-up')).tag === 'v1' ? true : undefined), 30_000, 50);

    // The edit; then a record every 50 ms until one is handled by the new code.
    const t0 = Date.now();
    writeFileSync(lib, "export const TAG = 'v2';\n");
    let reloadMs = 0;
    for (let i = 0; reloadMs === 0; i++) {
      if (Date.now() - t0 > 45_000) throw new Error(`no record handled by the new code 45 s after the edit; dev: ${dev.out().slice(-2000)}`);
      keys.push(await put(objects, `during-${i}`));
      for (const k of keys.slice(-40)) if ((await tagOf(objects, k)).tag === 'v2') reloadMs = Date.now() - t0;
      await new Promise((r) => setTimeout(r, 50));
    }
    await dev.waitFor(/reloaded tagger: revision 1 → 2/);
    const phases = /deployed revision 2 \((.*)\)/.exec(dev.out())?.[1] ?? '';
    process.stdout.write(`dev reload: 8 shards, edit → first record handled by the new code in ${reloadMs} ms (${phases})\n`);
    // Generous for a loaded CI machine (measured 14 s at load average 32 on 2 cores); the target (3 s
    // locally) is measured above and in docs/BENCHMARKS.md. Old code never reloads: the loop above times out.
    expect(reloadMs).toBeLessThan(30_000);

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
