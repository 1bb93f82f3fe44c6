/**
 * A worker's ownership loop sleeps ttl/3 between rounds; a rescale (SIGUSR2 under the local driver: also
 * how a reload's new workers learn that the old ones released their leases) cuts that sleep short. A
 * wake-up that arrived while a round was RUNNING used to be dropped, and the shards then waited the
 * whole ttl/3 (10 s here). The round is made slow and deterministic by a state table whose lease reads
 * wait until the test lets them go.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import type { Backend, KvBinding } from '../../bindings/types.ts';
import { openBackend } from '../../runtime/backend-spec.ts';
import { Worker } from '../../runtime/worker.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { until } from '../support/poll.ts';

const quiet = pino({ level: process.env.SLUICE_TEST_LOG ?? 'silent' });
const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sluice-wake-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A backend whose KV reads of lease keys, while `hold.on` is set, answer only once `gate` resolves. */
function slowLeases(real: Backend, hold: { on: boolean; entered: () => void; gate: Promise<void> }): Backend {
  const wrapKv = (kv: KvBinding): KvBinding =>
    new Proxy(kv, {
      get(t, p) {
        if (p === 'getItem')
          return async (...a: Parameters<KvBinding['getItem']>) => {
            // Read now, answer later: the round goes on with what the lease was when it read it.
            const got = await t.getItem(...a);
            if (hold.on && String(a[0]).includes('lease')) {
              hold.entered();
              await hold.gate;
            }
            return got;
          };
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
  return new Proxy(real, {
    get(t, p) {
      if (p === 'kv') return async (...a: Parameters<Backend['kv']>) => wrapKv(await t.kv(...a));
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  });
}

it('runtime/local - ownership: a rescale that arrives while a round runs is not lost (the shard is taken at once, not after ttl/3)', async () => {
  const setup = await openBackend({ kind: 'local', dir });
  await setup.createBucket('wake', { shards: 1 });
  await setup.close();
  const options = (id: string): WorkerOptions => ({ function: 'wake', id, module: fixture, trigger: { type: 'object', bucket: 'wake' }, backend: { kind: 'local', dir }, threads: 0, leaseTtl: '30s', httpPort: -1 });
  const a = await Worker.start(options('a'), { log: quiet });
  let b: Worker | undefined;
  try {
    await until('a owns the shard', () => a.ownedShards.length === 1);
    let release!: () => void;
    let entered!: () => void;
    const inRound = new Promise<void>((r) => (entered = r));
    const hold = { on: false, entered: () => entered(), gate: new Promise<void>((r) => (release = r)) };
    b = await Worker.start(options('b'), { log: quiet, openBackend: async (spec) => slowLeases(await openBackend(spec), hold) });
    // b's first round found the lease held by a; now make its next round stop inside the lease read.
    await new Promise((r) => setTimeout(r, 200));
    hold.on = true;
    b.rescale(1, 0); // wakes b's sleep: a round starts and blocks in the lease read
    await inRound;
    // While that round runs: a releases the lease, and the wake-up that says so arrives.
    await a.stop();
    b.rescale(1, 0);
    hold.on = false;
    release();
    const t0 = Date.now();
    // The blocked round saw a's live lease; only the next round (at once, or 10 s later when the wake-up was lost) takes it.
    await until('b owns the shard', () => b!.ownedShards.length === 1, 20_000, 20);
    expect(Date.now() - t0).toBeLessThan(3000);
  } finally {
    await b?.stop();
    await a.stop();
  }
}, 60_000);
