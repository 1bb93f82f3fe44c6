/**
 * Scheduled query trigger, end to end (issue 7): 100,000 objects on the embedded store, 10 % matching;
 * one worker with a query trigger (`every: 1h`, so its first run starts at once). Measures the time from
 * the run's tick (its recorded start) until the handler has seen — and the committer committed — all
 * 10,000 matches, beside the same run's selection alone (`objects.query` paged over the bucket, the floor
 * a run cannot beat) in the same process.
 *
 * Run: `npx tsx test/bench/query-trigger.ts [objects]` (default 100000; THREADS and MAX_RECORDS set the
 * worker's handler threads, default 1, and batch size, default 500). Outside CI.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { openBackend } from '../../runtime/backend-spec.ts';
import { openStateTable, readCounters, StateReader } from '../../runtime/state.ts';
import { runStreamName } from '../../runtime/triggers/query.ts';
import { Worker } from '../../runtime/worker.ts';

const N = Number(process.argv[2] ?? 100_000);
const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-qt-'));
const backend = await openBackend({ kind: 'local', dir });
try {
  await backend.createBucket('docs', { shards: 4 });
  const o = await backend.objects('docs');
  const t0 = Date.now();
  const batch: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) {
    batch.push(o.put(`doc/${String(i).padStart(7, '0')}`, 'x', i % 10 === 0 ? { attrs: { pick: true } } : {}));
    if (batch.length >= 1000) {
      await Promise.all(batch.splice(0));
      if (i % 20_000 === 19_999) process.stdout.write(`  loaded ${i + 1}/${N} (${Math.round(((i + 1) / (Date.now() - t0)) * 1000)}/s)\n`);
    }
  }
  await Promise.all(batch);
  const where = 'pick = true';
  // The floor: the run's selection alone, paged as the scheduler pages it (500 rows a page).
  const s0 = performance.now();
  let rows = 0;
  let token: string | undefined;
  do {
    const p = await o.query({ where, select: ['size', 'etag', 'version', 'mtime', 'content_type'], limit: 500, ...(token ? { continuationToken: token } : {}) });
    rows += p.rows.length;
    token = p.nextToken;
  } while (token);
  const selectMs = performance.now() - s0;
  const fn = 'bench-qt';
  const w = await Worker.start(
    {
      function: fn,
      module: fixture,
      trigger: { type: 'object', bucket: 'docs', events: ['put'], where, feed: runStreamName(fn), query: { where, everyMs: 3_600_000 } },
      backend: { kind: 'local', dir },
      threads: Number(process.env.THREADS ?? 1),
      batch: { maxRecords: Number(process.env.MAX_RECORDS ?? 500), maxWait: '5ms' },
    },
    { log: pino({ level: 'silent' }) },
  );
  const state = await openStateTable(backend);
  const reader = new StateReader(state);
  const expected = Math.ceil(N / 10);
  const deadline = Date.now() + 120_000;
  let seen = 0;
  while (seen < expected && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    seen = (await readCounters(state, fn, 1)).seen ?? 0;
  }
  const done = Date.now();
  const run = (await reader.queryRuns(fn))[0];
  await w.stop();
  const tickMs = run ? done - Date.parse(run.startedAt) : NaN;
  process.stdout.write(
    `query trigger, ${N} objects (${rows} matching): selection alone ${selectMs.toFixed(0)} ms; tick → all ${seen} handled and committed ${tickMs} ms ` +
      `(${(tickMs / selectMs).toFixed(2)}× the selection; target ≤ 2000 ms: ${tickMs <= 2000 ? 'met' : 'MISSED'}); run matched ${run?.matched}\n`,
  );
} finally {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
}
