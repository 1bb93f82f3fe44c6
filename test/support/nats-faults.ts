/**
 * What the NATS fault tests (test/process/nats-cluster.test.ts, nats-outage.test.ts) share: uploads
 * retried until acknowledged, the check that every acknowledged upload was handled exactly once, the
 * wait for the counters to catch up with the attributes, the dead-letter count, a per-shard stall probe, and the diagnostics printed when a check fails.
 */
import { BindingError } from '../../bindings/errors.ts';
import type { Backend, ObjectBinding } from '../../bindings/types.ts';
import type { LocalDriver } from '../../controller/local-driver.ts';
import { openStateTable, readCounters, StateReader } from '../../runtime/index.ts';

/** Puts `key` create-only until it is acknowledged; a retry of a put that had landed reads as CONDITION_FAILED. */
export async function putUntilAcked(o: ObjectBinding, key: string, codes: Map<string, number>, deadline: number): Promise<void> {
  for (;;) {
    try {
      await o.put(key, `body of ${key}`, { ifNoneMatch: '*' });
      return;
    } catch (e) {
      if (!(e instanceof BindingError)) throw new Error(`put ${key} failed without a sluice code: ${String(e)}`, { cause: e });
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
      if (e.code === 'SLUICE_CONDITION_FAILED') return; // an earlier attempt landed
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Acknowledged keys whose attribute `n` is not exactly 1 (at most 11, stopping at the first applied twice). */
export async function notExactlyOnce(o: ObjectBinding, keys: readonly string[]): Promise<string[]> {
  const bad: string[] = [];
  for (const k of keys) {
    const n = (await o.getAttrs(k)).attrs.n;
    if (n !== 1) bad.push(`${k}: n=${String(n)}`);
    if (bad.length > 10 || (n !== undefined && n !== 1)) break;
  }
  return bad;
}

/**
 * Reads the function's `seen` counter until it reaches `expected` (at most `ms`, every 100 ms). Counters
 * live in the checkpoint, written after the effects it counts (invariant 3): once every attribute is
 * visible a shard's last checkpoint may still be on its way (it rides with the next write or the idle
 * flush, and right after a fault that write may wait for a leader), so the tests wait for it — and
 * `max`, the highest value read, lets them fail on any count above one per record.
 */
export async function countersCaughtUp(backend: Backend, fn: string, shards: number, expected: number, ms = 30_000): Promise<{ seen: number; max: number; waitedMs: number }> {
  const state = await openStateTable(backend);
  const t0 = Date.now();
  let seen = 0;
  let max = 0;
  // Bounded: at most ms / 100 reads.
  for (;;) {
    seen = (await readCounters(state, fn, shards)).seen ?? 0;
    max = Math.max(max, seen);
    if (seen >= expected || Date.now() - t0 > ms) return { seen, max, waitedMs: Date.now() - t0 };
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Records on the function's dead-letter stream (a record of an acknowledged upload there was never handled). */
export async function deadLetters(backend: Backend, fn: string): Promise<number> {
  const info = await backend.streams().info(`dlq-${fn}`);
  return info.bounds.reduce((n, b) => n + Math.max(0, b.last - b.first + 1), 0);
}

/**
 * Samples, every `everyMs`, each shard's checkpoint against the head of its change stream and keeps
 * the longest time a shard had records waiting while its position did not move: the processing pause
 * the fault tests bound (an upload pause says nothing about a shard that silently stopped).
 */
export class ShardStallProbe {
  #longestMs = 0;
  #worst = -1;
  #stop = false;
  readonly #done: Promise<void>;

  constructor(backend: Backend, fn: string, bucket: string, shards: number, everyMs = 250) {
    this.#done = this.#run(backend, fn, bucket, shards, everyMs);
  }

  async #run(backend: Backend, fn: string, bucket: string, shards: number, everyMs: number): Promise<void> {
    const reader = new StateReader(await openStateTable(backend));
    const streams = backend.streams();
    const since: (number | undefined)[] = new Array(shards).fill(undefined);
    const seen: number[] = new Array(shards).fill(-1);
    while (!this.#stop) {
      const now = Date.now();
      for (let s = 0; s < shards; s++) {
        try {
          const at = (await reader.checkpoint(fn, s))?.seq ?? 0;
          const head = (await streams.seek(`$changes.${bucket}`, s, 'latest')).seq;
          if (at >= head) since[s] = undefined; // caught up
          else if (at !== seen[s] || since[s] === undefined) since[s] = now; // moving (or just fell behind)
          else if (now - since[s]! > this.#longestMs) [this.#longestMs, this.#worst] = [now - since[s]!, s];
          seen[s] = at;
        } catch {
          // The backend is unreachable from here too (a node down): the sample is skipped, not counted.
        }
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  /** Stops sampling; the longest pause seen and its shard. */
  async stop(): Promise<{ longestMs: number; shard: number }> {
    this.#stop = true;
    await this.#done;
    return { longestMs: this.#longestMs, shard: this.#worst };
  }
}

/** Prints what a failed fault test needs: every worker's shard status, and its warnings and errors. */
export async function printDiagnostics(label: string, driver: LocalDriver, fn: string): Promise<void> {
  for (const t of driver.metricsTargets()) {
    const body = await fetch(`${t.url}/readyz`).then((r) => r.text(), (e: unknown) => String(e));
    process.stdout.write(`${label} DIAG worker ${t.ordinal}: ${body}\n`);
  }
  const lines = driver.logs(fn).filter((l) => l.level !== 'info' && l.level !== 'debug' && l.message !== 'commit of a record failed');
  for (const l of lines.slice(-40)) process.stdout.write(`${label} DIAG log ${JSON.stringify(l).slice(0, 600)}\n`);
}
