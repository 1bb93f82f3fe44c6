/**
 * Benchmark: sluice on a 3-node JetStream cluster on loopback (test/support/nats-server.ts
 * `startNatsCluster`), with 1, 2 and 4 worker processes (local driver, threads 0, the whole server
 * list given to every worker), and the cost of R3 against R1 in the same run (each replication factor
 * has its own resource prefix, so every stream and KV bucket of that run — change feed, bodies, state
 * — has that factor).
 *
 * Per configuration: a fresh bucket of 8 shards; N (default 2,000; `SLUICE_BENCH_N`) small objects
 * uploaded by this process with 50 puts in flight while the workers run; throughput = N / time from
 * the first put until the function's counter `seen` reaches N. Then latency: 100 puts one at a time,
 * each timed from the put until its attribute `n` is 1 (polled every 5 ms): p50 / p99.
 * Baseline in the same run: the raw put rate of the uploader alone (no workers) at the same factor.
 *
 * Bounded: the whole run stops starting configurations after `SLUICE_BENCH_BUDGET_MS` (default 180 s);
 * a configuration not run is printed as skipped.
 *
 * Run: `npx tsx test/bench/cluster.ts` (needs nats-server 2.9+; ≤ 3 min plus the last configuration; not in CI).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { LocalDriver } from '../../controller/local-driver.ts';
import { loadFunctionSpec } from '../../controller/spec/index.ts';
import { openStateTable, readCounters } from '../../runtime/index.ts';
import { startNatsCluster } from '../support/nats-server.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const N = Number(process.env.SLUICE_BENCH_N ?? 2000);
const budgetMs = Number(process.env.SLUICE_BENCH_BUDGET_MS ?? 180_000);
const began = Date.now();
const overBudget = () => Date.now() - began > budgetMs;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function openWhenReady(urls: string, replicas: number, prefix: string): Promise<NatsBackend> {
  for (let i = 0; ; i++) {
    try {
      return await NatsBackend.open({ servers: urls, replicas, prefix });
    } catch (e) {
      if (i > 120) throw e;
      await sleep(500);
    }
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const cluster = await startNatsCluster(3);
const work = mkdtempSync(join(tmpdir(), 'sluice-bench-cluster-'));
const rows: string[] = [];
try {
  // R1 and R3 side by side for each worker count, so a time budget cut leaves pairs to compare.
  const backends = new Map<number, NatsBackend>();
  for (const replicas of [1, 3]) {
    const backend = await openWhenReady(cluster.urls, replicas, `bench_r${replicas}`);
    backends.set(replicas, backend);
    // Baseline: raw uploads alone.
    await backend.createBucket('raw', { shards: 8 });
    const raw = await backend.objects('raw');
    const t0 = Date.now();
    for (let i = 0; i < N; i += 50) await Promise.all(Array.from({ length: Math.min(50, N - i) }, (_, j) => raw.put(`r-${i + j}`, 'x'.repeat(100))));
    const rawRate = Math.round(N / ((Date.now() - t0) / 1000));
    rows.push(`| R${replicas} | uploads alone (baseline) | ${rawRate} puts/s | — | — |`);
  }
  for (const workers of [1, 2, 4]) {
    for (const [replicas, backend] of backends) {
      if (overBudget()) {
        rows.push(`| R${replicas} | ${workers} worker${workers > 1 ? 's' : ''} | skipped (time budget) | — | — |`);
        continue;
      }
      const bucket = `b${workers}`;
      const fn = `bench-r${replicas}-w${workers}`;
      await backend.createBucket(bucket, { shards: 8 });
      const driver = new LocalDriver({ runDir: join(work, fn) });
      try {
        await driver.apply(
          loadFunctionSpec(`apiVersion: sluice.dev/v1
kind: Function
metadata: {name: ${fn}}
spec:
  handler: ${JSON.stringify(fixture)}
  backend: {kind: nats, url: ${JSON.stringify(cluster.urls)}, prefix: bench_r${replicas}, replicas: ${replicas}}
  triggers: [{object: {bucket: ${bucket}}}]
  batch: {maxRecords: 100, maxWait: 5ms}
  concurrency: {threads: 0}
  scaling: {minReplicas: ${workers}, maxReplicas: ${workers}}
`),
          work,
        );
        await driver.scale(fn, workers);
        const end = Date.now() + 120_000;
        while ((await driver.status(fn))?.ready !== workers) {
          if (Date.now() > end) throw new Error(`${fn}: workers not ready`);
          await sleep(100);
        }
        await sleep(1500); // leases settle across the workers
        const o = await backend.objects(bucket);
        const state = await openStateTable(backend);
        const start = Date.now();
        for (let i = 0; i < N; i += 50) await Promise.all(Array.from({ length: Math.min(50, N - i) }, (_, j) => o.put(`k-${i + j}`, 'x'.repeat(100))));
        while (((await readCounters(state, fn, 8)).seen ?? 0) < N) {
          if (Date.now() - start > 120_000) throw new Error(`${fn}: not done in 120 s`);
          await sleep(20);
        }
        const rate = Math.round(N / ((Date.now() - start) / 1000));
        const lat: number[] = [];
        for (let i = 0; i < 100; i++) {
          const k = `lat-${i}`;
          const t = performance.now();
          await o.put(k, 'x');
          while ((await o.getAttrs(k)).attrs.n !== 1) await sleep(5);
          lat.push(performance.now() - t);
        }
        rows.push(`| R${replicas} | ${workers} worker${workers > 1 ? 's' : ''} | ${rate} events/s | ${pct(lat, 50).toFixed(1)} ms | ${pct(lat, 99).toFixed(1)} ms |`);
        process.stdout.write(`${rows.at(-1)}\n`);
      } finally {
        await driver.close();
      }
    }
  }
  for (const b of backends.values()) await b.close();
} finally {
  await cluster.stop();
  rmSync(work, { recursive: true, force: true });
}
process.stdout.write(`\n| factor | configuration | throughput | put→commit p50 | p99 |\n|---|---|---|---|---|\n${rows.join('\n')}\n`);
