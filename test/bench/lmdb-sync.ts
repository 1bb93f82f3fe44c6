/**
 * How many synced LMDB commits this machine's disk does, and what two processes committing at once do
 * to each other — the floor under every local write of sluice (each upload and each worker batch is one
 * synced commit). Raw lmdb-js, no sluice code: P processes (1, then 2) each commit `--commits` (default
 * 2,000) one-put transactions on one environment in a temp directory, in four ways:
 *
 * - `sync`: `transactionSync(cb)` — lmdb-js's default flags, what LocalStore does: the commit writes the
 *   pages, syncs, writes the meta page and syncs it while holding the write lock;
 * - `overlap`: `transactionSync(cb, 3 | NO_SYNC_FLUSH)` with the environment's overlapping sync (lmdb-js's
 *   default off Windows): the write lock is released before the sync, the call still returns after it;
 * - `nometasync`: `transactionSync(cb, 3 | MDB_NOMETASYNC)` — the data pages synced, the meta page written
 *   without a sync of its own (LocalStore's `repairable` writes: the runtime's batch commits);
 * - `async`: `await transaction(cb)` — lmdb-js's write thread commits and syncs, one commit awaited at a
 *   time (the callback runs on the main thread).
 *
 * Per way and process count: commits/s over all processes, mean time per commit, and the mean time a
 * commit waited for the write lock (time from the call to the callback running). Ratios against `sync`
 * with 1 process in the same run. Bounded: 2 × 4 runs of at most `--commits` commits per process, each run
 * 120 s at most. Outside CI:
 *
 *   npx tsx test/bench/lmdb-sync.ts [--commits 2000]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { open } from 'lmdb';
import { COMMIT_FLAGS } from '../../bindings/local/local-store.ts';

type Way = 'sync' | 'overlap' | 'nometasync' | 'async';
const WAYS: Way[] = ['sync', 'overlap', 'nometasync', 'async'];
/** lmdb-js TransactionFlags.NO_SYNC_FLUSH (the store's own flags are COMMIT_FLAGS). */
const NO_SYNC_FLUSH = 0x10000;
const FLAGS: Record<Exclude<Way, 'async'>, number> = { sync: COMMIT_FLAGS.synced, overlap: COMMIT_FLAGS.synced | NO_SYNC_FLUSH, nometasync: COMMIT_FLAGS.repairable };

interface ChildResult {
  ms: number;
  lockWaitMs: number;
  commits: number;
}

async function child(way: Way, dir: string, commits: number): Promise<void> {
  const root = open({ path: join(dir, 'sync.mdb') });
  let lockWaitMs = 0;
  const value = { v: 0, s: 'x'.repeat(100) };
  const t0 = performance.now();
  for (let i = 0; i < commits; i++) {
    const called = performance.now();
    const cb = () => {
      lockWaitMs += performance.now() - called;
      root.put(`k${process.pid}-${i}`, value);
    };
    if (way === 'async') await root.transaction(cb);
    else root.transactionSync(cb, FLAGS[way]);
  }
  const r: ChildResult = { ms: performance.now() - t0, lockWaitMs, commits };
  process.stdout.write(`${JSON.stringify(r)}\n`);
  await root.close();
}

async function run(way: Way, procs: number, commits: number): Promise<{ perSec: number; msPerCommit: number; lockWaitMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-lmdb-sync-'));
  try {
    const results = await Promise.all(
      Array.from({ length: procs }, () =>
        new Promise<ChildResult>((resolve, reject) => {
          const c = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', way, '--dir', dir, '--commits', String(commits)], { stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          const limit = setTimeout(() => c.kill('SIGKILL'), 120_000);
          c.stdout.on('data', (d: Buffer) => (out += d.toString()));
          c.on('exit', (code) => {
            clearTimeout(limit);
            if (code === 0 && out.trim() !== '') resolve(JSON.parse(out.trim()) as ChildResult);
            else reject(new Error(`${way} child exited ${String(code)}: ${out}`));
          });
        }),
      ),
    );
    const ms = Math.max(...results.map((r) => r.ms));
    const total = results.reduce((a, r) => a + r.commits, 0);
    return {
      perSec: total / (ms / 1000),
      msPerCommit: results.reduce((a, r) => a + r.ms / r.commits, 0) / results.length,
      lockWaitMs: results.reduce((a, r) => a + r.lockWaitMs / r.commits, 0) / results.length,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const { values: args } = parseArgs({ options: { child: { type: 'string' }, dir: { type: 'string' }, commits: { type: 'string', default: '2000' } } });
const commits = Math.min(20_000, Math.max(100, Number(args.commits)));
if (args.child !== undefined) {
  await child(args.child as Way, args.dir!, commits);
} else {
  const rows: string[] = [];
  let base: number | undefined;
  for (const procs of [1, 2]) {
    for (const way of WAYS) {
      process.stderr.write(`${way}, ${procs} process(es), ${commits} commits each\n`);
      const r = await run(way, procs, commits);
      base ??= r.perSec;
      rows.push(`| ${way} | ${procs} | ${Math.round(r.perSec).toLocaleString('en-US')} | ${(r.perSec / base).toFixed(2)}× | ${r.msPerCommit.toFixed(3)} | ${r.lockWaitMs.toFixed(3)} |`);
    }
  }
  process.stdout.write(`| way | processes | synced commits/s (all processes) | vs sync, 1 process | ms per commit | ms waiting for the write lock per commit |\n| --- | --- | --- | --- | --- | --- |\n${rows.join('\n')}\n`);
}
