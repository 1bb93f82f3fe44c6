/**
 * Fault test (c) of issue 10 and the local driver's restart backoff, with real worker processes on
 * the local backend:
 * - rescale signals (SIGUSR2) sent while workers are still starting, and one of them SIGKILLed while
 *   starting: no worker dies of the signal, every shard ends up owned, nothing is lost or applied twice;
 * - the restart backoff resets after a healthy run (kills spaced further apart than `healthyAfterMs`
 *   restart after the first delay each time) and still grows for a crash loop.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { LocalDriver } from '../../controller/local-driver.ts';
import { loadFunctionSpec } from '../../controller/spec/index.ts';
import { openBackend, openStateTable, readCounters } from '../../runtime/index.ts';
import { until } from '../support/poll.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'sluice-race-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function spec(name: string, bucket: string): ReturnType<typeof loadFunctionSpec> {
  return loadFunctionSpec(`apiVersion: sluice.dev/v1
kind: Function
metadata: {name: ${name}}
spec:
  handler: ${JSON.stringify(fixture)}
  triggers: [{object: {bucket: ${bucket}}}]
  batch: {maxRecords: 50, maxWait: 5ms}
  concurrency: {threads: 0}
  scaling: {minReplicas: 1, maxReplicas: 4}
`);
}

it('driver - SIGUSR2 during scale-up while workers start, one SIGKILLed while starting: none dies of the signal, every shard owned', async () => {
  const data = join(work, 'race');
  const backend = await openBackend({ kind: 'local', dir: data });
  const fn = 'racer';
  const shards = 8;
  await backend.createBucket('race', { shards });
  const driver = new LocalDriver({ runDir: join(data, 'run'), localDir: data, restartDelayMs: 100 });
  const exits: string[] = [];
  driver.events.on('exit', (name: string, ordinal: number, how: number | string) => exits.push(`${ordinal}:${String(how)}`));
  try {
    const state = await openStateTable(backend);
    const owners = async () => {
      const out = new Set<string>();
      for (let s = 0; s < shards; s++) {
        const l = (await state.getItem(`lease/${fn}/${s}`))?.item as { owner?: string; expiresAt?: number } | undefined;
        if (l?.owner && (l.expiresAt ?? 0) > Date.now()) out.add(l.owner);
        else return new Set<string>();
      }
      return out;
    };
    await driver.apply(spec(fn, 'race'), work);
    await driver.scale(fn, 1);
    await until('one worker ready', async () => (await driver.status(fn))?.ready === 1, 60_000);
    const o = await backend.objects('race');
    await Promise.all(Array.from({ length: 100 }, (_, i) => o.put(`a-${i}`, 'x')));
    // Scale up, then keep rescaling while the new workers load their modules: each rescale signals
    // every live worker, the starting ones included (the race that used to kill them).
    await driver.scale(fn, 4);
    let killed = false;
    for (let i = 0; i < 40; i++) {
      await driver.scale(fn, 4);
      if (i === 5 && !killed) {
        const pid = driver.pids(fn).get(3);
        try {
          if (pid !== undefined) killed = process.kill(pid, 'SIGKILL');
        } catch {
          // already dead (of the signal, on the old code): the exits check below names it
        }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(exits.filter((e) => e.includes('SIGUSR2')), 'workers that died of the rescale signal').toEqual([]);
    expect(killed).toBe(true);
    await until('four ready workers own every shard', async () => (await owners()).size === 4 && (await driver.status(fn))?.ready === 4, 90_000);
    await Promise.all(Array.from({ length: 100 }, (_, i) => o.put(`b-${i}`, 'x')));
    await until('200 handled', async () => (await readCounters(state, fn, shards)).seen === 200, 60_000);
    // The only exit is the SIGKILL we sent; nobody died of SIGUSR2.
    expect(exits).toEqual(['3:SIGKILL']);
    for (const k of [...Array.from({ length: 100 }, (_, i) => `a-${i}`), ...Array.from({ length: 100 }, (_, i) => `b-${i}`)]) expect((await o.getAttrs(k)).attrs.n, k).toBe(1);
  } finally {
    await driver.close();
    await backend.close();
  }
}, 240_000);

it('driver - restart backoff resets after a healthy run and grows in a crash loop', async () => {
  const data = join(work, 'backoff');
  const backend = await openBackend({ kind: 'local', dir: data });
  const fn = 'crashy';
  await backend.createBucket('crash', { shards: 1 });
  const driver = new LocalDriver({ runDir: join(data, 'run'), localDir: data, restartDelayMs: 200, healthyAfterMs: 1500 });
  const delays = () => driver.logs(fn).flatMap((l) => /restarting in (\d+) ms/.exec(l.message)?.[1] ?? []).map(Number);
  try {
    await driver.apply(spec(fn, 'crash'), work);
    await driver.scale(fn, 1);
    const readyPid = async (not: number | undefined) => {
      await until('worker ready', async () => (await driver.status(fn))?.ready === 1 && driver.pids(fn).get(0) !== not, 60_000);
      return driver.pids(fn).get(0)!;
    };
    let pid = await readyPid(undefined);
    // Healthy runs (ready, then > healthyAfterMs) between kills: every restart waits the first delay.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 1700));
      process.kill(pid, 'SIGKILL');
      pid = await readyPid(pid);
    }
    expect(delays()).toEqual([200, 200, 200]);
    // A crash loop (each new process killed as soon as it exists) still backs off. The current worker
    // first runs past healthyAfterMs, so the loop starts a fresh streak: 200, then 400, 800.
    await new Promise((r) => setTimeout(r, 1700));
    for (let i = 0; i < 3; i++) {
      process.kill(pid, 'SIGKILL');
      await until('restart scheduled', () => delays().length === 4 + i, 30_000);
      const prev = pid;
      await until('respawned', () => driver.pids(fn).get(0) !== undefined && driver.pids(fn).get(0) !== prev, 30_000);
      pid = driver.pids(fn).get(0)!;
    }
    expect(delays().slice(3)).toEqual([200, 400, 800]);
  } finally {
    await driver.close();
    await backend.close();
  }
}, 180_000);
