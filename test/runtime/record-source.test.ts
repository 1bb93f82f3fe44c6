/**
 * Runtime: the RecordSource seam. A trigger that is not a stream (here: numbered ticks held in memory, as a
 * cron or query trigger would produce them) feeds the same batcher → handler → committer → checkpoint path
 * through `RecordSource` alone, and gets per-key order, retries and exact counters from it. The handler
 * runs through the real InlineRunner; state and dead letters live in a real local backend.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { BatchRecordInput } from '../../runtime/batch-types.ts';
import { Committer } from '../../runtime/committer.ts';
import { WorkerMetrics } from '../../runtime/metrics.ts';
import type { Fetched, PullOptions, RecordSource } from '../../runtime/records.ts';
import { InlineRunner } from '../../runtime/runner.ts';
import { Semaphore } from '../../runtime/semaphore.ts';
import { ShardRunner } from '../../runtime/shard-runner.ts';
import { Leases, openStateTable, readCounters } from '../../runtime/state.ts';
import { resolveWorkerOptions } from '../../runtime/worker-options.ts';

const heldFn = fileURLToPath(new URL('../fixtures/functions/rt-held.ts', import.meta.url));

/** Ticks 1..n of one shard; tick i has key `k<i % 3>` and payload 'fail-twice' when i is 4. */
class TickSource implements RecordSource {
  readonly name = 'ticks';
  readonly #n: number;
  positions: number[] = [];

  constructor(n: number) {
    this.#n = n;
  }

  #tick(seq: number, attempt: number): Fetched {
    const body = Buffer.from(seq === 4 ? 'fail-twice' : `tick ${seq}`);
    const input: BatchRecordInput = { key: `k${seq % 3}`, type: 'record', source: this.name, shard: 0, seq, version: 0, size: body.byteLength, etag: '', mtimeMs: Date.now(), contentType: 'text/plain', attrs: {}, headers: {}, attempt, body };
    return { seq, key: input.key, input, bytes: body.byteLength };
  }

  async start(): Promise<number> {
    return 1;
  }

  async pull(_shard: number, from: number, o: PullOptions): Promise<{ records: Fetched[]; lag: number }> {
    const out: Fetched[] = [];
    for (let s = from; s <= this.#n && out.length < o.limit; s++) out.push(this.#tick(s, 1));
    if (out.length === 0) await new Promise((r) => setTimeout(r, Math.min(o.waitMs, 20)));
    return { records: out, lag: Math.max(0, this.#n - (from + out.length) + 1) };
  }

  async reread(_shard: number, seqs: number[], attempt: (seq: number) => number): Promise<(Fetched | undefined)[]> {
    return seqs.map((s) => (s <= this.#n ? this.#tick(s, attempt(s)) : undefined));
  }

  async commitPosition(_shard: number, seq: number): Promise<void> {
    this.positions.push(seq);
  }
}

it('runtime/local - a non-stream RecordSource feeds the same batch → handler → committer → checkpoint path', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-src-'));
  const backend = await LocalBackend.open({ dir });
  try {
    const o = resolveWorkerOptions({
      function: 'ticks-fn',
      module: heldFn,
      trigger: { type: 'stream', stream: 'unused' },
      backend: { kind: 'local', dir },
      threads: 0,
      batch: { maxRecords: 4, maxWait: 0 },
      retries: { maxAttempts: 5, initialBackoff: '10ms', maxBackoff: '20ms' },
    });
    const log = pino({ level: 'silent' });
    const state = await openStateTable(backend);
    const metrics = new WorkerMetrics(o.function);
    const source = new TickSource(12);
    const runner = await InlineRunner.open(o, backend, log);
    const lease = (await new Leases(state, o.function, 'test', 10_000).acquire(0))!;
    const shard = new ShardRunner(
      { o, streams: backend.streams(), state, source, committer: new Committer({ function: o.function, backend, objects: undefined, metrics, log }), runner, credits: new Semaphore(1), metrics, log },
      0,
      lease,
    );
    shard.start();
    const end = Date.now() + 20_000;
    while (!(shard.checkpoint && shard.checkpoint.seq === 13 && shard.checkpoint.pending.length === 0 && (await readCounters(state, o.function, 1)).seen === 12)) {
      if (Date.now() > end) throw new Error(`not drained: ${JSON.stringify(shard.checkpoint)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await shard.stop();
    // Tick 4 failed twice (key k1 held ticks 7 and 10 behind it): every tick still counted exactly once.
    expect(await readCounters(state, o.function, 1)).toEqual({ seen: 12 });
    expect(shard.checkpoint).toMatchObject({ seq: 13, pending: [], holds: [], handled: 12 });
    expect((await metrics.retries.get()).values[0]?.value).toBe(2);
    expect(source.positions.at(-1)).toBe(13);
  } finally {
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  }
});
