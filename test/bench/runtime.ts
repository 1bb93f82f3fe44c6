/**
 * Benchmark of the runtime's event path, end to end: objects uploaded → change records → Worker
 * (fetch, prefetch, handler, conditional commit with processed-marker, checkpoint) → attributes, with
 * the example function `functions/scan-sensitive`, each part beside a raw baseline of the store
 * underneath measured in the same run.
 *
 * Parts (choose with the first argument: local | nats | latency | all; default all):
 *
 * - `local` — end to end on the embedded store. N (default 100,000) 1 KiB text objects (generated,
 *   about 10% with an SSN, 5% with a Luhn-valid card number, plus near misses) are uploaded to bucket
 *   `uploads` with 8 shards, unmeasured; the data directory is then copied once per contender so each
 *   starts from the same bytes. For each of `--threads` (default 0,1: main thread, one handler thread;
 *   1 only when runtime/threads/handler-pool.ts imports) a Worker is started in this process
 *   (`Worker.start(options, {log})`, maxRecords 500, batchesInFlight 8, maxWait 20ms) and timed from
 *   the moment `start` resolved (backend and handler threads open, as the raw loops are timed from
 *   after their setup; until 2026-12-03 from the `start` call, which counted a handler thread's ≈ 0.6 s
 *   start against threads ≥ 1) until the function's counter `objects_scanned` (readCounters over the
 *   checkpoints, polled every 20 ms through a second handle) reaches N. Result: events/s = N / that
 *   time. The counters `has_ssn` / `has_ccard` must equal what the detector finds in the generated
 *   bodies, or the run fails. Then `--processes` (default 2) worker processes (runtime/worker-main.ts,
 *   replicas 2, threads 0) on a copy of the same data, timed from the first one's `ready` line: the
 *   way one function uses both cores without handler threads.
 *   Beside it, on another copy, the raw loop below in `--processes` processes (test/bench/raw-local.ts;
 *   process i takes the shards s with s mod count = i, all start on one go line once each has its store
 *   open): what this machine and store give that many processes doing the raw loop's work, the ceiling
 *   of the process-scaling target (added 2026-12-03).
 *   Baseline (raw loop, same process, its own copy of the data, opened as a LocalBackend whose
 *   `store` — the LMDB env and databases the binding uses — is driven directly): for each shard, in
 *   chunks of maxRecords change records read with `records.getRange` in stream order, msgpack-decode
 *   each record (`decodeChange`), `meta.get` + `bodies.getBinary` (skip when the version moved), run
 *   the same detector `detectBytes`, then ONE `transactionSync` per chunk (with the durability of the
 *   worker's batch commits, `COMMIT_FLAGS.repairable`: data pages synced, the meta page not — since
 *   2026-12-02, when the worker's commits became repairable) that, per record, reads
 *   `attrs.get`, checks the processed-marker condition (`$raw` absent or < seq, in JS) and puts the
 *   attrs with `has_ssn`, `has_ccard` and the marker, plus one checkpoint put (position + counters)
 *   into the `items` table — and what the attribute contract obliges every attribute write to do, written
 *   plainly: the metadata's `attrsRevision` bump and the object's `attrs` change record (counters handed
 *   out in memory per chunk, as the binding's batch write does). What it does NOT do that the worker does:
 *   no lease, no group position, no expression parsing, no handler API objects; it is one synchronous
 *   loop on one thread. It runs before and after the workers (fresh copies); the baseline is the mean of
 *   the two. Until 2026-12-02 the baseline skipped the two contract writes (≈40 % of the loop's time):
 *   that loop did less than the same work, so it is printed as a reference only ("plain raw loop").
 *   Targets (issue 9): ≥ 0.6× the raw loop; 2 worker processes ≥ 50,000 events/s and ≥ 1.6× one.
 *
 * - `nats` — the same on NATS JetStream (this bench starts its own nats-server on a random loopback
 *   port with a temp store). N (default 50,000, about 10-20 s per contender on 2 cores) objects go to
 *   bucket `uploads` (one per worker run, under its own resource prefix) and, with the same bodies, to
 *   buckets `rawuploads-before` / `rawuploads-after` (baseline), all through the Object binding,
 *   unmeasured. Worker: maxRecords 100, batchesInFlight 8.
 *   Baseline: a raw JetStream durable pull consumer (headers only, explicit ack) over the KV stream of
 *   the raw bucket — the bucket's change feed — via `@nats-io/jetstream` `consume()`, on a connection
 *   of its own with the backend's options; per put message, with as many messages in flight as the
 *   worker has records in flight (min(batchesInFlight, 8 shards) × maxRecords = 800): `kv.get(key)`
 *   (`@nats-io/kv`, direct get), msgpack decode, `detectBytes`, marker check, set attrs + marker,
 *   encode, `kv.update(key, value, revision)` (CAS), `msg.ack()`. It runs before and after the
 *   workers; the baseline is the mean. Target (issue 9): ≥ 0.8× raw.
 *
 * - `latency` — put → committed attributes at `--rate` (default 1,000) puts/s for `--latency-secs`
 *   (default 10) s, local and NATS, worker with maxRecords 100, batchesInFlight 8, maxWait 0, after a
 *   500-put warm-up. A watcher reads the bucket's change stream (every shard) and takes each key's
 *   first `attrs` change record: latency = the record's commit timestamp (local: the store's write
 *   time, ms resolution; NATS: the server's storage time) minus the time just before `put` was called.
 *   The watcher's own observation time is reported too (it adds the watcher's poll/pull delay), and
 *   so are this process's CPU use and event-loop delay. `--latency-worker` (default `process,in-process`)
 *   runs each measurement twice: with the worker in a process of its own (runtime/worker-main.ts, as
 *   `sluice dev` and Kubernetes run it: the put commits in this process, the worker learns of it through
 *   the store's cross-process change notification) and with the worker in this process beside the load
 *   generator and the watcher (they share one event loop; the round-5 figures were taken so).
 *   p50 and p99 over all puts of the window; a put never seen counts as a miss and fails the run.
 *   Targets (issue 9): p99 ≤ 3 ms local, ≤ 12 ms NATS.
 *
 * With each worker run the bench prints where the shard runners spent their time: fetch (getRecords),
 * prepare (ChangeDecoder.prepare: decode + prefetch), handler and commit (the worker's prom-client
 * histograms) and checkpoint (CheckpointStore.save: only the checkpoints written on their own — a
 * trickle, the tail of a burst; since Backend.commitBatch the others ride in the next batch's commit and
 * are inside "commit"), by wrapping those prototypes in this process (runtime files are not changed); also the time of the group-position publishes (streams.group +
 * commit), which run off the batch path. Sums are over all shard runners, per batch and as a share of
 * min(batchesInFlight, 8) × elapsed; "other/credit wait" is the rest.
 *
 * Bounds: every loop is bounded in count (N, rate × secs, polls) and in time (each end-to-end run
 * 180 s, each latency run secs + 20 s, uploads 300 s); progress lines go to stderr every 2 s; the
 * markdown table goes to stdout. Exit code 1 when a run failed (a MISSED target alone is a result).
 * Only loopback traffic.
 *
 * How to run (outside CI; needs nats-server on PATH or NATS_SERVER_BIN for nats / latency):
 *
 *   npx tsx test/bench/runtime.ts [local|nats|latency|all]
 *   npx tsx test/bench/runtime.ts local --local-n 50000 --threads 0 --local-max-records 250
 *
 * Options: --local-n 100000, --nats-n 50000, --threads 0,1, --processes 2, --local-max-records 500,
 * --local-inflight 8, --nats-max-records 100, --nats-inflight 8, --rate 1000, --latency-secs 10,
 * --latency-targets local,nats, --latency-worker process,in-process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nanos } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { patchNatsRequests } from '../../bindings/nats/nats-request-patch.ts';
import { LocalBackend } from '../../bindings/local/index.ts';
import { LocalStream } from '../../bindings/local/local-stream.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { NatsStream } from '../../bindings/nats/nats-stream.ts';
import { changeStreamName, codec, decodeChange } from '../../bindings/shared.ts';
import type { Backend, Cursor, ObjectBinding, StreamBinding } from '../../bindings/types.ts';
import { detectBytes, Found } from '../../functions/scan-sensitive/detect.ts';
import { RAW_MARKER, rawLocalLoop, type RawCounts, type RawLocalOptions } from './raw-local.ts';
import type { BackendSpec } from '../../runtime/backend-spec.ts';
import { ChangeDecoder } from '../../runtime/records.ts';
import { CheckpointStore, openStateTable, readCounters } from '../../runtime/state.ts';
import { Worker } from '../../runtime/worker.ts';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.ts';

// ───────────────────────────────────────── Settings ─────────────────────────────────────────

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'local-n': { type: 'string', default: '100000' },
    'nats-n': { type: 'string', default: '50000' },
    threads: { type: 'string', default: '0,1' },
    processes: { type: 'string', default: '2' },
    'local-max-records': { type: 'string', default: '500' },
    'local-inflight': { type: 'string', default: '8' },
    'nats-max-records': { type: 'string', default: '100' },
    'nats-inflight': { type: 'string', default: '8' },
    rate: { type: 'string', default: '1000' },
    'latency-secs': { type: 'string', default: '10' },
    'latency-targets': { type: 'string', default: 'local,nats' },
    'latency-worker': { type: 'string', default: 'process,in-process' },
  },
  strict: true,
});

function intArg(name: keyof typeof args, min: number, max: number): number {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${String(args[name])}`);
  return v;
}

const PARTS = ['local', 'nats', 'latency'] as const;
type Part = (typeof PARTS)[number];
const mode = positionals[0] ?? 'all';
if (positionals.length > 1 || !['all', ...PARTS].includes(mode)) throw new Error(`usage: runtime.ts [local|nats|latency|all], got ${positionals.join(' ')}`);
const parts = new Set<Part>(mode === 'all' ? PARTS : [mode as Part]);

const LOCAL_N = intArg('local-n', 1, 2_000_000);
const NATS_N = intArg('nats-n', 1, 500_000);
const THREADS = (args.threads ?? '').split(',').filter((s) => s !== '').map((s) => {
  const t = Number(s);
  if (!Number.isInteger(t) || t < 0 || t > 16) throw new Error(`--threads takes integers 0..16, got '${s}'`);
  return t;
});
const PROCESSES = intArg('processes', 0, 16);
const LOCAL_MAX_RECORDS = intArg('local-max-records', 1, 10_000);
const LOCAL_INFLIGHT = intArg('local-inflight', 1, 1024);
const NATS_MAX_RECORDS = intArg('nats-max-records', 1, 10_000);
const NATS_INFLIGHT = intArg('nats-inflight', 1, 1024);
const RATE = intArg('rate', 1, 100_000);
const LATENCY_SECS = intArg('latency-secs', 1, 600);
const LATENCY_TARGETS = new Set((args['latency-targets'] ?? '').split(',').filter((s) => s !== ''));
for (const t of LATENCY_TARGETS) if (t !== 'local' && t !== 'nats') throw new Error(`--latency-targets takes local,nats, got '${t}'`);
const LATENCY_WORKER = (args['latency-worker'] ?? '').split(',').filter((s) => s !== '') as LatencyWhere[];
for (const t of LATENCY_WORKER) if (t !== 'process' && t !== 'in-process') throw new Error(`--latency-worker takes process,in-process, got '${t}'`);

const SHARDS = 8;
const BUCKET = 'uploads';
const RAW_BUCKET = 'rawuploads';
const FN = 'scan-sensitive';
const MODULE = fileURLToPath(new URL('../../functions/scan-sensitive/index.ts', import.meta.url));
const WORKER_MAIN = fileURLToPath(new URL('../../runtime/worker-main.ts', import.meta.url));
const RAW_LOCAL_MAIN = fileURLToPath(new URL('./raw-local.ts', import.meta.url));
const BODY_BYTES = 1024;
const BODY_POOL = 1000;
/** An end-to-end run stops waiting after this long. */
const RUN_LIMIT_MS = 180_000;
const UPLOAD_LIMIT_MS = 300_000;
const PROGRESS_EVERY_MS = 2000;
const POLL_MS = 20;
// Targets of issue 9 (the previous round's were 100k events/s and 0.5× local, 0.7× NATS, p99 5 / 20 ms).
/** Events/s of PROCESSES worker processes on the local backend. */
const TARGET_LOCAL_EPS = 50_000;
/** PROCESSES worker processes against one (multi-core scaling). */
const TARGET_PROCESS_SCALING = 1.6;
const TARGET_LOCAL_RATIO = 0.6;
const TARGET_NATS_RATIO = 0.8;
const TARGET_P99_LOCAL_MS = 3;
const TARGET_P99_NATS_MS = 12;

// ───────────────────────────────────────── Harness ──────────────────────────────────────────

const benchStart = performance.now();
const quiet = pino({ level: process.env.SLUICE_BENCH_LOG ?? 'warn' }, pino.destination(2));

function log(msg: string): void {
  process.stderr.write(`[${((performance.now() - benchStart) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}

function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function fmtInt(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a';
}

function describeError(err: unknown): string {
  if (err instanceof Error) return `${(err as { code?: unknown }).code ? `${String((err as { code?: unknown }).code)}: ` : ''}${err.message}`;
  return String(err);
}

/** CPU time (user + system, ms) a process has used, from /proc (Linux); NaN elsewhere. */
function procCpuMs(pid: number | undefined): number {
  try {
    // Fields after the command name: state is field 3, utime 14, stime 15 (clock ticks, 100 per second).
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Runs op(0..n-1) with `inflight` at once; bounded by n and `limitMs`; progress lines. */
async function runPool(label: string, n: number, inflight: number, op: (i: number) => Promise<unknown>, limitMs = UPLOAD_LIMIT_MS): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  let firstError: unknown;
  const ticker = setInterval(() => log(`  ${label}: ${done}/${n}`), PROGRESS_EVERY_MS);
  try {
    await Promise.all(
      Array.from({ length: Math.min(inflight, n) }, async () => {
        // Bounded by n: every pass takes a fresh index; a failure or the time limit stops every lane.
        while (next < n && firstError === undefined) {
          if (performance.now() - t0 > limitMs) throw new Error(`${label}: not done within ${limitMs / 1000} s (${done}/${n})`);
          const i = next++;
          try {
            await op(i);
            done++;
          } catch (err) {
            firstError ??= err;
          }
        }
      }),
    );
  } finally {
    clearInterval(ticker);
  }
  if (firstError !== undefined) throw new Error(`${label}: ${describeError(firstError)}`, { cause: firstError });
  const ms = performance.now() - t0;
  log(`  ${label}: ${n} in ${(ms / 1000).toFixed(2)} s = ${fmtInt(n / (ms / 1000))}/s`);
  return ms;
}

// ─────────────────────────────────────────── Data ───────────────────────────────────────────

/** mulberry32: a small seeded PRNG, so every run uploads the same bytes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = 'the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their has would when if so no will can more other what time up out only about into than them some could its then two first any new may also after like these our over such even most made before must well through back years where much your way down should because each just those people state how too little good very make world still see own men work long here get both between life being under never day same another know while last might us great old year off come since against go came right used take three'.split(' ');

function luhnDigit(digits: string): number {
  // The check digit that makes `digits` + d pass Luhn.
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

/** BODY_POOL bodies of exactly 1 KiB: prose, ~10% with an SSN, ~5% with a card number, some near misses. */
function makeBodies(): Buffer[] {
  const rnd = prng(20240607);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const out: Buffer[] = [];
  for (let b = 0; b < BODY_POOL; b++) {
    const parts: string[] = [];
    const inserts: string[] = [];
    if (rnd() < 0.1) {
      const area = String(int(1, 665)).padStart(3, '0');
      const sep = rnd() < 0.7 ? '-' : ' ';
      inserts.push(`SSN ${area}${sep}${String(int(1, 99)).padStart(2, '0')}${sep}${String(int(1, 9999)).padStart(4, '0')}`);
    }
    if (rnd() < 0.05) {
      let d = '4';
      for (let i = 0; i < 14; i++) d += String(int(0, 9));
      d += String(luhnDigit(d));
      const sep = rnd() < 0.5 ? ' ' : '';
      inserts.push(`card ${d.slice(0, 4)}${sep}${d.slice(4, 8)}${sep}${d.slice(8, 12)}${sep}${d.slice(12)}`);
    }
    // Near misses: phone numbers, order ids, dates — digit runs the exact scanner has to reject.
    if (rnd() < 0.3) inserts.push(`call 555-${int(100, 999)}-${int(1000, 9999)}`);
    if (rnd() < 0.3) inserts.push(`order ${int(10_000_000, 99_999_999)}`);
    let len = 0;
    while (len < BODY_BYTES) {
      const w = inserts.length > 0 && rnd() < 0.05 ? inserts.shift()! : WORDS[int(0, WORDS.length - 1)]!;
      parts.push(w);
      len += w.length + 1;
    }
    for (const w of inserts) parts.splice(int(0, parts.length), 0, w);
    out.push(Buffer.from(parts.join(' ').padEnd(BODY_BYTES, '.').slice(0, BODY_BYTES)));
  }
  return out;
}

const bodies = makeBodies();
const keyOf = (i: number) => `doc/${String(i).padStart(7, '0')}.txt`;

/** What the detector finds in the first n objects: the counters a correct run ends with. */
function expected(n: number): { scanned: number; ssn: number; card: number } {
  const per = bodies.map((b) => detectBytes(b));
  let ssn = 0;
  let card = 0;
  for (let i = 0; i < n; i++) {
    const f = per[i % BODY_POOL]!;
    if (f & Found.ssn) ssn++;
    if (f & Found.card) card++;
  }
  return { scanned: n, ssn, card };
}

async function upload(label: string, o: ObjectBinding, n: number, inflight: number): Promise<void> {
  await runPool(`upload ${label}`, n, inflight, (i) => o.put(keyOf(i), bodies[i % BODY_POOL]!, { contentType: 'text/plain' }));
}

// ─────────────────────────────────────── Phase timing ───────────────────────────────────────

/** Wall time the shard runners spent per phase (summed over runners), collected by wrapped prototypes. */
const phases = { fetch: 0, fetchCalls: 0, prepare: 0, checkpoint: 0, group: 0, on: false };

function resetPhases(): void {
  Object.assign(phases, { fetch: 0, fetchCalls: 0, prepare: 0, checkpoint: 0, group: 0 });
}

/** Wraps an async prototype method so that, while `phases.on`, its wall time adds to `add`. */
function timeMethod(proto: object, name: string, add: (ms: number) => void): void {
  const p = proto as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const orig = p[name]!;
  p[name] = function timed(this: unknown, ...a: unknown[]): Promise<unknown> {
    if (!phases.on) return orig.apply(this, a);
    const t = performance.now();
    const r = orig.apply(this, a);
    const done = () => add(performance.now() - t);
    r.then(done, done);
    return r;
  };
}

timeMethod(ChangeDecoder.prototype, 'prepare', (ms) => (phases.prepare += ms));
timeMethod(CheckpointStore.prototype, 'save', (ms) => (phases.checkpoint += ms));
for (const proto of [LocalStream.prototype, NatsStream.prototype]) {
  timeMethod(proto, 'getRecords', (ms) => {
    phases.fetch += ms;
    phases.fetchCalls++;
  });
  // streams.group(...) then group.commit(...): the observer position the runner writes after each batch.
  const p = proto as unknown as { group: (...a: unknown[]) => Promise<{ commit: (...a: unknown[]) => Promise<unknown> }> };
  const orig = p.group;
  p.group = async function timedGroup(this: unknown, ...a: unknown[]) {
    if (!phases.on) return orig.apply(this, a);
    const t = performance.now();
    const g = await orig.apply(this, a);
    phases.group += performance.now() - t;
    const commit = g.commit.bind(g);
    g.commit = async (...c: unknown[]) => {
      const t2 = performance.now();
      try {
        return await commit(...c);
      } finally {
        phases.group += performance.now() - t2;
      }
    };
    return g;
  };
}

interface HistogramSum {
  sum: number;
  count: number;
}

async function histogram(w: Worker, name: string): Promise<HistogramSum> {
  const m = (await w.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name) as { values: { metricName?: string; value: number }[] } | undefined;
  const get = (suffix: string) => m?.values.find((v) => v.metricName === `${name}${suffix}`)?.value ?? 0;
  return { sum: get('_sum'), count: get('_count') };
}

async function outcomes(w: Worker): Promise<string> {
  const m = (await w.metrics.registry.getMetricsAsJSON()).find((x) => x.name === 'sluice_events_total') as { values: { labels: { outcome?: string }; value: number }[] } | undefined;
  return (m?.values ?? [])
    .filter((v) => v.value > 0)
    .map((v) => `${v.labels.outcome}=${v.value}`)
    .join(' ');
}

// ──────────────────────────────────────── Results ───────────────────────────────────────────

interface Row {
  measure: string;
  result: string;
  baseline: string;
  ratio: string;
  target: string;
  met: boolean;
  failed?: string;
}

const rows: Row[] = [];
const notes: string[] = [];
let failures = 0;

function fail(measure: string, err: unknown): void {
  failures++;
  const m = describeError(err);
  log(`FAILED ${measure}: ${m}`);
  rows.push({ measure, result: 'failed', baseline: '', ratio: '', target: '', met: false, failed: m });
}

// ───────────────────────────────────── End to end (worker) ──────────────────────────────────

interface E2E {
  events: number;
  ms: number;
  firstCommitMs: number;
  eps: number;
  breakdown: string;
}

/**
 * Starts a Worker on `spec` and waits until the counter objects_scanned reaches n; checks the
 * detector counters against `exp`; returns the rate and where the shard runners spent their time.
 */
async function runWorker(
  label: string,
  spec: BackendSpec,
  counters: () => Promise<Record<string, number>>,
  exp: { scanned: number; ssn: number; card: number },
  o: { threads: number; maxRecords: number; inflight: number },
): Promise<E2E> {
  resetPhases();
  phases.on = true;
  // For --cpu-prof: the run's window on the profiler's (monotonic) clock, to cut the profile to it.
  const mark = (what: string) => process.env.SLUICE_BENCH_MARKS && log(`  ${label}: mark ${what} ${process.hrtime.bigint() / 1000n} us`);
  mark('start');
  const tStart = performance.now();
  const w = await Worker.start(
    {
      function: FN,
      module: MODULE,
      trigger: { type: 'object', bucket: BUCKET },
      backend: spec,
      threads: o.threads,
      batch: { maxRecords: o.maxRecords, maxWait: '20ms' },
      batchesInFlight: o.inflight,
      leaseTtl: '30s',
      shutdownGrace: '20s',
      logLevel: 'warn',
    },
    { log: quiet },
  );
  // Timed from here, as the raw loops are timed from after their setup (connection, consumer, KV
  // handle): opening the backend and the handler threads (≈ 0.6 s for a thread loading the function
  // through the TypeScript loader) is reported as "worker started in", not counted against throughput.
  const t0 = performance.now();
  const started = t0 - tStart;
  const cpu0 = process.cpuUsage();
  let cpuAtDone: NodeJS.CpuUsage | undefined;
  let scanned = 0;
  let c: Record<string, number> = {};
  let firstCommitMs = Number.NaN;
  let doneMs = Number.NaN;
  let lastLog = performance.now();
  try {
    // Bounded: RUN_LIMIT_MS / POLL_MS polls at most.
    while (scanned < exp.scanned) {
      if (performance.now() - t0 > RUN_LIMIT_MS) throw new Error(`${label}: ${scanned}/${exp.scanned} scanned after ${RUN_LIMIT_MS / 1000} s`);
      await sleep(POLL_MS);
      c = await counters();
      scanned = c.objects_scanned ?? 0;
      if (scanned >= exp.scanned) {
        doneMs = performance.now() - t0;
        cpuAtDone = process.cpuUsage(cpu0);
      }
      if (scanned > 0 && Number.isNaN(firstCommitMs)) firstCommitMs = performance.now() - t0;
      if (performance.now() - lastLog >= PROGRESS_EVERY_MS) {
        lastLog = performance.now();
        log(`  ${label}: ${scanned}/${exp.scanned} scanned, ${fmtInt(scanned / ((performance.now() - t0) / 1000))}/s so far`);
      }
    }
  } finally {
    mark('end');
    phases.on = false;
    const elapsed = performance.now() - t0;
    const [h, cm, bs] = await Promise.all([histogram(w, 'sluice_handler_seconds'), histogram(w, 'sluice_commit_seconds'), histogram(w, 'sluice_batch_records')]);
    const out = await outcomes(w);
    const stopT = performance.now();
    const clean = await w.stop();
    log(`  ${label}: worker stopped in ${fmtInt(performance.now() - stopT)} ms${clean ? '' : ' (NOT clean)'}; outcomes ${out}`);
    // The group position is published off the batch path (not awaited), so it is not runner time.
    const busy = phases.fetch + phases.prepare + h.sum * 1000 + cm.sum * 1000 + phases.checkpoint;
    const runnerMs = Math.min(SHARDS, o.inflight) * elapsed;
    const pct = (x: number) => `${((100 * x) / runnerMs).toFixed(0)}%`;
    const per = (x: number) => (bs.count > 0 ? (x / bs.count).toFixed(2) : 'n/a');
    lastBreakdown =
      `${bs.count} batches, ${bs.count > 0 ? (bs.sum / bs.count).toFixed(0) : 0} records each; ms per batch (share of ${Math.min(SHARDS, o.inflight)} runners × elapsed): ` +
      `fetch ${per(phases.fetch)} (${pct(phases.fetch)}, ${phases.fetchCalls} getRecords calls), prepare ${per(phases.prepare)} (${pct(phases.prepare)}), ` +
      `handler ${per(h.sum * 1000)} (${pct(h.sum * 1000)}), commit ${per(cm.sum * 1000)} (${pct(cm.sum * 1000)}), ` +
      `checkpoint ${per(phases.checkpoint)} (${pct(phases.checkpoint)}), ` +
      `group-position publishes ${per(phases.group)} (off the batch path), ` +
      `other/credit wait ${pct(Math.max(0, runnerMs - busy))}; worker started in ${fmtInt(started)} ms` +
      (cpuAtDone ? `; process CPU ${fmtInt((cpuAtDone.user + cpuAtDone.system) / 1000)} ms = ${((cpuAtDone.user + cpuAtDone.system) / exp.scanned).toFixed(0)} µs per event, ${((100 * (cpuAtDone.user + cpuAtDone.system)) / 1000 / doneMs).toFixed(0)}% of one core` : '');
    log(`  ${label}: ${lastBreakdown}`);
  }
  const ms = doneMs;
  if ((c.has_ssn ?? 0) !== exp.ssn || (c.has_ccard ?? 0) !== exp.card || scanned !== exp.scanned)
    throw new Error(`${label}: counters ${JSON.stringify(c)} but the detector finds scanned=${exp.scanned} has_ssn=${exp.ssn} has_ccard=${exp.card}`);
  const eps = exp.scanned / (ms / 1000);
  log(`  ${label}: ${exp.scanned} events in ${(ms / 1000).toFixed(2)} s = ${fmtInt(eps)} events/s (first commit seen at ${fmtInt(firstCommitMs)} ms)`);
  return { events: exp.scanned, ms, firstCommitMs, eps, breakdown: lastBreakdown };
}

let lastBreakdown = '';

async function handlerPoolLoads(): Promise<boolean> {
  try {
    await import('../../runtime/threads/handler-pool.ts');
    return true;
  } catch (err) {
    log(`handler-pool does not import (${describeError(err)}): threads >= 1 skipped`);
    return false;
  }
}

// ─────────────────────────────────────────── Local ──────────────────────────────────────────

/**
 * The raw loop on the same store layout (see the header): change records → meta + body → detector →
 * one transactionSync per chunk with conditional attrs puts and a checkpoint put.
 */
async function rawLocal(dir: string, exp: { scanned: number; ssn: number; card: number }, chunk: number, contract = false): Promise<{ ms: number; eps: number }> {
  const backend = await LocalBackend.open({ dir });
  let r: { ms: number; counts: RawCounts };
  try {
    const shards = Array.from({ length: SHARDS }, (_, i) => i);
    r = rawLocalLoop(backend, { dir, bucket: BUCKET, shards, chunk, contract, limitMs: RUN_LIMIT_MS, progressMs: PROGRESS_EVERY_MS, onProgress: (n) => log(`  raw local: ${n}/${exp.scanned}`) });
  } finally {
    await backend.close();
  }
  checkRawCounts('raw local', r.counts, exp);
  const eps = exp.scanned / (r.ms / 1000);
  log(`  raw local: ${exp.scanned} in ${(r.ms / 1000).toFixed(2)} s = ${fmtInt(eps)} events/s`);
  return { ms: r.ms, eps };
}

function checkRawCounts(label: string, counts: RawCounts, exp: { scanned: number; ssn: number; card: number }): void {
  if (counts.objects_scanned !== exp.scanned || counts.has_ssn !== exp.ssn || counts.has_ccard !== exp.card)
    throw new Error(`${label}: counted ${JSON.stringify(counts)}, expected ${JSON.stringify(exp)}`);
}

/**
 * The raw loop (with the contract writes) in `count` processes on one data directory, process i taking
 * the shards s with s mod count = i — what the worker processes split (replicas `count`). Timed from
 * the go line sent to all of them (each has its store open and printed `ready`) until the last one
 * is done; the counts of all must add up to what the detector finds.
 */
async function rawLocalProcesses(dir: string, exp: { scanned: number; ssn: number; card: number }, chunk: number, count: number): Promise<{ eps: number; cpuMs: number[] }> {
  const children: ChildProcess[] = [];
  const outputs: string[] = [];
  const doneAt: number[] = [];
  let stderr = '';
  try {
    const exits = [];
    for (let i = 0; i < count; i++) {
      const shards = Array.from({ length: SHARDS }, (_, s) => s).filter((s) => s % count === i);
      const o: RawLocalOptions = { dir, bucket: BUCKET, shards, chunk, contract: true, limitMs: RUN_LIMIT_MS };
      const ch = spawn(process.execPath, ['--import', 'tsx', RAW_LOCAL_MAIN, JSON.stringify(o)], { stdio: ['pipe', 'pipe', 'pipe'] });
      outputs.push('');
      ch.stdout!.on('data', (d: Buffer) => {
        outputs[i] += d.toString();
        // Done when its result line (after `ready`) is in: before it closes its store and exits.
        if (doneAt[i] === undefined && outputs[i]!.split('\n').length > 2) doneAt[i] = performance.now();
      });
      ch.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      exits.push(new Promise<number | null>((r) => ch.once('exit', (code) => r(code))));
      children.push(ch);
    }
    const startBy = performance.now() + 60_000;
    // Bounded: 60 s for the processes to open the store.
    while (!outputs.every((x) => x.startsWith('ready\n'))) {
      if (performance.now() > startBy || children.some((c) => c.exitCode !== null)) throw new Error(`raw local processes: not all ready; stderr: ${stderr}`);
      await sleep(10);
    }
    const t0 = performance.now();
    for (const ch of children) ch.stdin!.write('go\n');
    // Bounded: each loop fails itself past RUN_LIMIT_MS; 10 s more for the processes to exit.
    let limit: NodeJS.Timeout | undefined;
    const codes = await Promise.race([
      Promise.all(exits),
      new Promise<never>((_, reject) => (limit = setTimeout(() => reject(new Error(`raw local processes: not done within ${RUN_LIMIT_MS / 1000 + 10} s`)), RUN_LIMIT_MS + 10_000))),
    ]).finally(() => clearTimeout(limit));
    codes.forEach((code, i) => {
      if (code !== 0 || doneAt[i] === undefined) throw new Error(`raw local process ${i} exited ${String(code)}; stderr: ${stderr}`);
    });
    const ms = Math.max(...doneAt) - t0;
    const total: RawCounts = { objects_scanned: 0, has_ssn: 0, has_ccard: 0 };
    const cpu: number[] = [];
    for (const out of outputs) {
      const r = JSON.parse(out.split('\n')[1]!) as { counts: RawCounts; cpuMs: number };
      total.objects_scanned += r.counts.objects_scanned;
      total.has_ssn += r.counts.has_ssn;
      total.has_ccard += r.counts.has_ccard;
      cpu.push(r.cpuMs);
    }
    checkRawCounts(`raw local ${count} processes`, total, exp);
    const eps = exp.scanned / (ms / 1000);
    log(`  raw local ${count} processes: ${exp.scanned} in ${(ms / 1000).toFixed(2)} s = ${fmtInt(eps)} events/s; CPU ${cpu.map((x) => `${fmtInt(x)} ms`).join(' + ')}`);
    return { eps, cpuMs: cpu };
  } finally {
    for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
  }
}

/** Starts worker process `ordinal` of `replicas` (runtime/worker-main.ts) with `config`; stdout and stderr piped. */
function spawnWorker(config: Record<string, unknown>, ordinal: number, replicas: number): ChildProcess {
  // SLUICE_BENCH_CPU_PROF=<dir>: each worker process writes a CPU profile there (how the profiles in
  // docs/BENCHMARKS.md were taken).
  const prof = process.env.SLUICE_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SLUICE_BENCH_CPU_PROF}`] : [];
  return spawn(process.execPath, [...prof, '--import', 'tsx', WORKER_MAIN], {
    env: { ...process.env, SLUICE_WORKER_CONFIG: JSON.stringify(config), SLUICE_ORDINAL: String(ordinal), SLUICE_REPLICAS: String(replicas) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** SIGTERM (the worker drains and releases its leases), SIGKILL past 25 s; resolves once it exited. */
async function stopChild(ch: ChildProcess): Promise<void> {
  if (ch.exitCode !== null || ch.signalCode !== null) return;
  const exited = new Promise<void>((r) => ch.once('exit', () => r()));
  ch.kill('SIGTERM');
  const t = setTimeout(() => ch.kill('SIGKILL'), 25_000);
  await exited;
  clearTimeout(t);
}

/**
 * `count` worker processes (runtime/worker-main.ts, replicas = count, ordinals 0..count-1, threads 0)
 * on one data directory: the way a function uses more than one core without handler threads. Timed
 * from the first process's `ready` line (each process first compiles its TypeScript) to N scanned.
 */
async function runProcesses(label: string, dir: string, counters: () => Promise<Record<string, number>>, exp: { scanned: number; ssn: number; card: number }, count: number): Promise<{ eps: number; readySpreadMs: number }> {
  const children: ChildProcess[] = [];
  const readyAt: number[] = [];
  /** Each process's CPU time when it became ready (what it spent compiling and starting is not the run's). */
  const cpuAtReady = new Map<number, number>();
  let stderr = '';
  try {
    for (let i = 0; i < count; i++) {
      const config = {
        function: FN,
        module: MODULE,
        trigger: { type: 'object', bucket: BUCKET },
        backend: { kind: 'local', dir },
        replicas: count,
        ordinal: i,
        threads: 0,
        batch: { maxRecords: LOCAL_MAX_RECORDS, maxWait: '20ms' },
        batchesInFlight: Math.max(1, Math.ceil(LOCAL_INFLIGHT / count)),
        leaseTtl: '30s',
        logLevel: 'warn',
      };
      const child = spawnWorker(config, i, count);
      child.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('"event":"ready"')) {
          readyAt.push(performance.now());
          cpuAtReady.set(i, procCpuMs(child.pid));
        }
      });
      child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
      children.push(child);
    }
    const startBy = performance.now() + 60_000;
    // Bounded: 60 s for the processes to come up.
    while (readyAt.length < count) {
      if (performance.now() > startBy || children.some((c) => c.exitCode !== null)) throw new Error(`${label}: ${readyAt.length}/${count} processes ready; stderr: ${stderr}`);
      await sleep(10);
    }
    const t0 = Math.min(...readyAt);
    let scanned = 0;
    let c: Record<string, number> = {};
    let lastLog = performance.now();
    // Bounded: RUN_LIMIT_MS / POLL_MS polls at most.
    while (scanned < exp.scanned) {
      if (performance.now() - t0 > RUN_LIMIT_MS) throw new Error(`${label}: ${scanned}/${exp.scanned} scanned after ${RUN_LIMIT_MS / 1000} s; stderr: ${stderr}`);
      await sleep(POLL_MS);
      c = await counters();
      scanned = c.objects_scanned ?? 0;
      if (performance.now() - lastLog >= PROGRESS_EVERY_MS) {
        lastLog = performance.now();
        log(`  ${label}: ${scanned}/${exp.scanned} scanned`);
      }
    }
    const ms = performance.now() - t0;
    const cpu = children.map((ch, i) => procCpuMs(ch.pid) - (cpuAtReady.get(i) ?? Number.NaN));
    if ((c.has_ssn ?? 0) !== exp.ssn || (c.has_ccard ?? 0) !== exp.card || scanned !== exp.scanned)
      throw new Error(`${label}: counters ${JSON.stringify(c)} but the detector finds scanned=${exp.scanned} has_ssn=${exp.ssn} has_ccard=${exp.card}`);
    const eps = exp.scanned / (ms / 1000);
    const readySpreadMs = Math.max(...readyAt) - t0;
    const cpuTotal = cpu.reduce((a, b) => a + b, 0);
    const cpuNote = `worker CPU since each one's ready line ${cpu.map((x) => `${fmtInt(x)} ms`).join(' + ')} = ${((1000 * cpuTotal) / exp.scanned).toFixed(0)} µs per event; ${cpu.map((x) => `${((100 * x) / ms).toFixed(0)}%`).join(' / ')} of one core each over the run`;
    log(`  ${label}: ${cpuNote}`);
    notes.push(`${label}: ${cpuNote}; processes ready within ${fmtInt(readySpreadMs)} ms of each other`);
    log(`  ${label}: ${exp.scanned} events in ${(ms / 1000).toFixed(2)} s = ${fmtInt(eps)} events/s (processes ready within ${fmtInt(readySpreadMs)} ms of each other)`);
    return { eps, readySpreadMs };
  } finally {
    await Promise.all(children.map(stopChild));
  }
}

async function benchLocal(threads: number[]): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'sluice-bench-rt-'));
  const exp = expected(LOCAL_N);
  log(`local: N=${LOCAL_N} 1 KiB objects, ${SHARDS} shards, maxRecords ${LOCAL_MAX_RECORDS}, batchesInFlight ${LOCAL_INFLIGHT}; expecting has_ssn=${exp.ssn} has_ccard=${exp.card}; data in ${root}`);
  try {
    const seed = join(root, 'seed');
    {
      const b = await LocalBackend.open({ dir: seed });
      await b.createBucket(BUCKET, { shards: SHARDS });
      await upload('local', await b.objects(BUCKET), LOCAL_N, 1000);
      await b.close();
    }
    // The raw loop runs before and after the workers (each on a fresh copy); the baseline is their
    // mean, so a load change on a shared machine does not favour one side.
    const raws: number[] = [];
    const runRaw = async (which: string) => {
      try {
        const dir = join(root, `raw-${which}`);
        cpSync(seed, dir, { recursive: true });
        log(`local raw loop (${which})`);
        raws.push((await rawLocal(dir, exp, LOCAL_MAX_RECORDS, true)).eps);
        await rm(dir, { recursive: true, force: true });
      } catch (err) {
        fail(`local raw loop (${which})`, err);
      }
    };
    await runRaw('before');
    const results: { t: number; r: E2E }[] = [];
    for (const t of threads) {
      const measure = `local end to end, threads: ${t} (events/s)`;
      try {
        const dir = join(root, `threads-${t}`);
        cpSync(seed, dir, { recursive: true });
        const reader = await LocalBackend.open({ dir });
        const state = await openStateTable(reader);
        log(`local worker, threads: ${t}`);
        try {
          const r = await runWorker(`local threads ${t}`, { kind: 'local', dir }, () => readCounters(state, FN, SHARDS), exp, { threads: t, maxRecords: LOCAL_MAX_RECORDS, inflight: LOCAL_INFLIGHT });
          results.push({ t, r });
          notes.push(`local threads ${t}: ${r.breakdown}`);
        } finally {
          await reader.close();
          await rm(dir, { recursive: true, force: true });
        }
      } catch (err) {
        fail(measure, err);
      }
    }
    let procs: { eps: number; readySpreadMs: number } | undefined;
    if (PROCESSES > 1) {
      const measure = `local end to end, ${PROCESSES} worker processes × threads: 0 (events/s)`;
      const dir = join(root, 'processes');
      try {
        cpSync(seed, dir, { recursive: true });
        const reader = await LocalBackend.open({ dir });
        try {
          const state = await openStateTable(reader);
          log(`local, ${PROCESSES} worker processes`);
          procs = await runProcesses(`local ${PROCESSES} processes`, dir, () => readCounters(state, FN, SHARDS), exp, PROCESSES);
        } finally {
          await reader.close();
        }
      } catch (err) {
        fail(measure, err);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    // The same split without sluice: what this machine and store give two processes doing the raw
    // loop's work, the ceiling of the process-scaling target.
    let rawProcs: { eps: number; cpuMs: number[] } | undefined;
    if (PROCESSES > 1) {
      const dir = join(root, 'raw-processes');
      try {
        cpSync(seed, dir, { recursive: true });
        log(`local raw loop, ${PROCESSES} processes`);
        rawProcs = await rawLocalProcesses(dir, exp, LOCAL_MAX_RECORDS, PROCESSES);
      } catch (err) {
        fail(`local raw loop, ${PROCESSES} processes`, err);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    await runRaw('after');
    // Not the baseline: the loop WITHOUT the writes the attribute contract requires (the baseline until
    // 2026-12-02), to show what that required work costs.
    let plain = Number.NaN;
    try {
      const dir = join(root, 'raw-plain');
      cpSync(seed, dir, { recursive: true });
      log('plain raw loop (without the contract writes: reference only)');
      plain = (await rawLocal(dir, exp, LOCAL_MAX_RECORDS, false)).eps;
      notes.push(`plain raw loop, without the attribute contract's writes (attrsRevision in meta, one attrs change record per write; reference, not the baseline): ${fmtInt(plain)} events/s`);
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      fail('plain raw loop', err);
    }
    const raw = raws.length > 0 ? raws.reduce((a, b) => a + b, 0) / raws.length : Number.NaN;
    notes.push(`local raw loop (with the contract writes): ${raws.map(fmtInt).join(' (before) and ')} (after) events/s; baseline = mean`);
    for (const { t, r } of results) notes.push(`local threads ${t} against the plain raw loop (reference): ${(r.eps / plain).toFixed(2)}×`);
    for (const { t, r } of results) {
      const ratio = r.eps / raw;
      rows.push({
        measure: `local end to end, threads: ${t} (events/s)`,
        result: fmtInt(r.eps),
        baseline: `${fmtInt(raw)} (raw LMDB loop with the contract writes)`,
        ratio: Number.isNaN(ratio) ? 'n/a' : `${ratio.toFixed(2)}×`,
        target: `≥ ${TARGET_LOCAL_RATIO}×`,
        met: ratio >= TARGET_LOCAL_RATIO,
      });
    }
    if (procs) {
      const ratio = procs.eps / raw;
      const one = results.find((x) => x.t === 0)?.r.eps;
      const scaling = one ? procs.eps / one : Number.NaN;
      notes.push(`local ${PROCESSES} processes vs 1 (threads 0): ${Number.isNaN(scaling) ? 'n/a' : `${scaling.toFixed(2)}×`} (target ≥ ${TARGET_PROCESS_SCALING}×)`);
      if (rawProcs) {
        const cpuUs = (1000 * rawProcs.cpuMs.reduce((a, b) => a + b, 0)) / exp.scanned;
        notes.push(`local raw loop in ${PROCESSES} processes (each its share of the shards, same data): ${fmtInt(rawProcs.eps)} events/s = ${(rawProcs.eps / raw).toFixed(2)}× the raw loop in one; CPU ${rawProcs.cpuMs.map((x) => `${fmtInt(x)} ms`).join(' + ')} = ${cpuUs.toFixed(0)} µs per event; sluice's ${PROCESSES} processes = ${(procs.eps / rawProcs.eps).toFixed(2)}× it`);
      }
      rows.push({
        measure: `local end to end, ${PROCESSES} worker processes × threads: 0 (events/s)`,
        result: fmtInt(procs.eps),
        baseline: `${fmtInt(raw)} (raw LMDB loop with the contract writes, 1 thread)`,
        ratio: `${ratio.toFixed(2)}×`,
        target: `≥ ${fmtInt(TARGET_LOCAL_EPS)} and ≥ ${TARGET_PROCESS_SCALING}× one process`,
        met: procs.eps >= TARGET_LOCAL_EPS && scaling >= TARGET_PROCESS_SCALING,
      });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

// ─────────────────────────────────────────── NATS ───────────────────────────────────────────

/** The raw JetStream loop over the change feed of `rawuploads` (see the header). */
async function rawNats(url: string, bucket: string, exp: { scanned: number; ssn: number; card: number }, inflight: number): Promise<{ ms: number; eps: number }> {
  // Same connection options as the NatsBackend (no per-request async stack traces).
  // The same client as the worker's: nats.js with the backend's request patch (one throwaway Error per
  // answered request skipped, bindings/nats/nats-request-patch.ts) — it is process-wide, applied here too.
  // Its connection is not corked (bindings/nats/nats-write-patch.ts is per connection and sluice's own;
  // its first, process-wide and uncapped version made this loop 7-21 % faster, 2026-12-03,
  // docs/BENCHMARKS.md round 11).
  patchNatsRequests();
  const nc = await connect({ servers: url, name: 'sluice-bench-raw', noAsyncTraces: true });
  const kvBucket = `sluice_obj_${bucket}`;
  const stream = `KV_${kvBucket}`;
  const prefix = `$KV.${kvBucket}.`;
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await jsm.consumers.add(stream, {
      durable_name: 'rawbench',
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: `${prefix}>`,
      headers_only: true,
      max_ack_pending: inflight * 2,
      ack_wait: nanos(60_000),
    });
    const kv = await new Kvm(nc).open(kvBucket);
    const consumer = await js.consumers.get(stream, 'rawbench');
    const counts = { scanned: 0, ssn: 0, card: 0 };
    let handled = 0;
    let active = 0;
    let firstError: unknown;
    let wake: (() => void) | undefined;
    const t0 = performance.now();
    const ticker = setInterval(() => log(`  raw nats: ${counts.scanned}/${exp.scanned}`), PROGRESS_EVERY_MS);
    const msgs = await consumer.consume({ max_messages: inflight });
    const deadline = setTimeout(() => {
      firstError ??= new Error(`raw nats loop not done within ${RUN_LIMIT_MS / 1000} s`);
      void msgs.close();
    }, RUN_LIMIT_MS);
    const one = async (m: { subject: string; seq: number; headers?: { get(k: string): string } | undefined; ack(): void }): Promise<void> => {
      const summary = m.headers?.get('Sluice-Change');
      // This loop's own attrs updates carry no change summary; they are feed records, not uploads.
      const type = summary ? (JSON.parse(summary) as { t: string }).t : '';
      if (type === 'put') {
        const key = m.subject.slice(prefix.length);
        const e = await kv.get(key);
        if (e && e.revision === m.seq) {
          const entry = codec.unpack(e.value) as { type: string; attrs: Record<string, unknown>; attrsRevision: number; time: Date; body: Uint8Array };
          const found = detectBytes(entry.body);
          const marker = entry.attrs[RAW_MARKER];
          if (!(typeof marker === 'number' && marker >= m.seq)) {
            const ssn = (found & Found.ssn) !== 0;
            const card = (found & Found.card) !== 0;
            entry.attrs = { ...entry.attrs, has_ssn: ssn, has_ccard: card, [RAW_MARKER]: m.seq };
            entry.type = 'attrs';
            entry.attrsRevision++;
            entry.time = new Date();
            await kv.update(key, codec.pack(entry), e.revision);
            counts.scanned++;
            if (ssn) counts.ssn++;
            if (card) counts.card++;
          }
        }
      }
      m.ack();
    };
    // Bounded: the consumer delivers the finite feed; the loop ends once every upload was handled.
    for await (const m of msgs) {
      while (active >= inflight) await new Promise<void>((r) => (wake = r));
      active++;
      one(m)
        .catch((err: unknown) => (firstError ??= err))
        .finally(() => {
          active--;
          handled++;
          wake?.();
          wake = undefined;
          if (counts.scanned >= exp.scanned || firstError !== undefined) void msgs.close();
        });
      if (counts.scanned >= exp.scanned || firstError !== undefined) break;
    }
    // Bounded by `inflight` settling operations.
    while (active > 0) await new Promise<void>((r) => (wake = r));
    clearTimeout(deadline);
    clearInterval(ticker);
    if (firstError !== undefined) throw firstError;
    const ms = performance.now() - t0;
    if (counts.scanned !== exp.scanned || counts.ssn !== exp.ssn || counts.card !== exp.card) throw new Error(`raw nats: counted ${JSON.stringify(counts)}, expected ${JSON.stringify(exp)} (${handled} messages)`);
    const eps = exp.scanned / (ms / 1000);
    log(`  raw nats: ${exp.scanned} in ${(ms / 1000).toFixed(2)} s = ${fmtInt(eps)} events/s (${inflight} in flight)`);
    await jsm.consumers.delete(stream, 'rawbench').catch(() => undefined);
    return { ms, eps };
  } finally {
    await nc.close();
  }
}

async function benchNats(server: NatsServerHandle, threads: number[]): Promise<void> {
  const exp = expected(NATS_N);
  const rawInflight = Math.min(SHARDS, NATS_INFLIGHT) * NATS_MAX_RECORDS;
  log(`nats: N=${NATS_N}, maxRecords ${NATS_MAX_RECORDS}, batchesInFlight ${NATS_INFLIGHT} (raw loop: ${rawInflight} in flight); expecting has_ssn=${exp.ssn} has_ccard=${exp.card}`);
  const backend = await NatsBackend.open({ servers: server.url });
  try {
    // The raw loop runs before and after the workers, each on a bucket of its own; baseline = mean.
    const raws: number[] = [];
    const runRaw = async (which: string) => {
      try {
        const bucket = `${RAW_BUCKET}-${which}`;
        await backend.createBucket(bucket, { shards: SHARDS });
        await upload(`nats raw bucket (${which})`, await backend.objects(bucket), NATS_N, 64);
        log(`nats raw loop (${which})`);
        raws.push((await rawNats(server.url, bucket, exp, rawInflight)).eps);
      } catch (err) {
        fail(`nats raw loop (${which})`, err);
      }
    };
    await runRaw('before');
    const results: { t: number; r: E2E }[] = [];
    for (const t of threads) {
      const measure = `NATS end to end, threads: ${t} (events/s)`;
      // A fresh prefix per run: its own bucket, state table and streams.
      const prefix = `t${t}`;
      const b = await NatsBackend.open({ servers: server.url, prefix });
      try {
        await b.createBucket(BUCKET, { shards: SHARDS });
        await upload(`nats threads ${t}`, await b.objects(BUCKET), NATS_N, 64);
        const st = await openStateTable(b);
        log(`nats worker, threads: ${t}`);
        const r = await runWorker(`nats threads ${t}`, { kind: 'nats', url: server.url, prefix }, () => readCounters(st, FN, SHARDS), exp, { threads: t, maxRecords: NATS_MAX_RECORDS, inflight: NATS_INFLIGHT });
        results.push({ t, r });
        notes.push(`nats threads ${t}: ${r.breakdown}`);
      } catch (err) {
        fail(measure, err);
      } finally {
        await b.close();
      }
    }
    await runRaw('after');
    const raw = raws.length > 0 ? raws.reduce((a, b) => a + b, 0) / raws.length : Number.NaN;
    notes.push(`nats raw loop: ${raws.map(fmtInt).join(' (before) and ')} (after) events/s with ${rawInflight} in flight; baseline = mean`);
    for (const { t, r } of results) {
      const ratio = r.eps / raw;
      rows.push({
        measure: `NATS end to end, threads: ${t} (events/s)`,
        result: fmtInt(r.eps),
        baseline: `${fmtInt(raw)} (raw JetStream consumer + KV get/CAS)`,
        ratio: Number.isNaN(ratio) ? 'n/a' : `${ratio.toFixed(2)}×`,
        target: `≥ ${TARGET_NATS_RATIO}×`,
        met: ratio >= TARGET_NATS_RATIO,
      });
    }
  } finally {
    await backend.close();
  }
}

// ────────────────────────────────────────── Latency ─────────────────────────────────────────

interface Latency {
  n: number;
  missed: number;
  commit: { p50: number; p99: number; max: number };
  observed: { p50: number; p99: number };
  achievedRate: number;
}

/** Watches every shard of a change stream from its end; calls onAttrs(key, commitTimeMs) per attrs record. */
function watch(streams: StreamBinding, stream: string, onAttrs: (key: string, commitMs: number) => void): { stop(): Promise<void> } {
  const ac = new AbortController();
  const loops = Array.from({ length: SHARDS }, async (_, shard) => {
    let cursor: Cursor = await streams.seek(stream, shard, 'latest');
    // Bounded by the abort at the end of the run.
    while (!ac.signal.aborted) {
      let page;
      try {
        page = await streams.getRecords(cursor, { limit: 1000, maxWaitMs: 100, signal: ac.signal });
      } catch (err) {
        if (ac.signal.aborted) return;
        // A pull that timed out on a loaded machine is retried (seen at load 19 on 2 cores: it crashed the
        // bench); a put never observed still counts as a miss.
        if ((err as { code?: unknown }).code === 'SLUICE_TIMEOUT') continue;
        throw err;
      }
      for (const r of page.records) {
        const c = decodeChange(r.data);
        if (c.type === 'attrs') onAttrs(c.key, r.time.getTime());
      }
      cursor = page.next;
    }
  });
  return {
    async stop() {
      ac.abort();
      await Promise.allSettled(loops);
    },
  };
}

/** Where the latency run's worker runs: beside the load generator, or in a process of its own (as deployed). */
type LatencyWhere = 'in-process' | 'process';

/** The latency run's worker, wherever it runs. */
interface LatencyWorker {
  /** Resolves once the worker can take records (in-process: owns every shard; process: its ready line). */
  ready(): Promise<void>;
  /** The first call marks the window's start; later calls describe the worker's batches since ('' where they cannot be read). */
  figures(): Promise<string>;
  /** CPU ms the worker used since `ready` (NaN when it shares this process: counted in this process's). */
  cpuMs(): number;
  stop(): Promise<void>;
}

async function inProcessLatencyWorker(label: string, config: Parameters<typeof Worker.start>[0]): Promise<LatencyWorker> {
  const w = await Worker.start(config, { log: quiet });
  let b0: HistogramSum | undefined;
  return {
    async ready() {
      const readyBy = performance.now() + 15_000;
      // Bounded: 15 s.
      while (w.ownedShards.length < SHARDS) {
        if (performance.now() > readyBy) throw new Error(`${label}: worker owns ${w.ownedShards.length}/${SHARDS} shards after 15 s`);
        await sleep(20);
      }
    },
    async figures() {
      const [h, cm, b1] = await Promise.all([histogram(w, 'sluice_handler_seconds'), histogram(w, 'sluice_commit_seconds'), histogram(w, 'sluice_batch_records')]);
      if (!b0) {
        b0 = b1;
        return '';
      }
      return (
        `${b1.count - b0.count} batches of ${((b1.sum - b0.sum) / Math.max(1, b1.count - b0.count)).toFixed(1)} records in the window; ` +
        `handler ${((1000 * h.sum) / Math.max(1, h.count)).toFixed(2)} ms, commit ${((1000 * cm.sum) / Math.max(1, cm.count)).toFixed(2)} ms per batch (incl. warm-up, ${b1.count} batches)`
      );
    },
    cpuMs: () => Number.NaN,
    async stop() {
      await w.stop();
    },
  };
}

async function processLatencyWorker(label: string, config: Record<string, unknown>): Promise<LatencyWorker> {
  const child = spawnWorker(config, 0, 1);
  let stderr = '';
  let readyLine = false;
  let cpu0 = Number.NaN;
  child.stdout!.on('data', (d: Buffer) => {
    if (d.toString().includes('"event":"ready"')) readyLine = true;
  });
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  return {
    async ready() {
      const startBy = performance.now() + 60_000;
      // Bounded: 60 s (the process compiles its TypeScript first).
      while (!readyLine) {
        if (performance.now() > startBy || child.exitCode !== null) throw new Error(`${label}: the worker process is not ready; stderr: ${stderr}`);
        await sleep(10);
      }
      cpu0 = procCpuMs(child.pid);
    },
    figures: async () => '',
    cpuMs: () => procCpuMs(child.pid) - cpu0,
    stop: () => stopChild(child),
  };
}

async function latencyRun(label: string, backend: Backend, spec: BackendSpec, threads: number, where: LatencyWhere): Promise<Latency> {
  const bucket = `lat-t${threads}-${where}`;
  await backend.createBucket(bucket, { shards: SHARDS });
  const o = await backend.objects(bucket);
  const config = {
    function: FN,
    module: MODULE,
    trigger: { type: 'object' as const, bucket },
    backend: spec,
    threads,
    batch: { maxRecords: 100, maxWait: 0 },
    batchesInFlight: SHARDS,
    leaseTtl: '30s',
    shutdownGrace: '20s',
    logLevel: 'warn' as const,
  };
  const w = where === 'in-process' ? await inProcessLatencyWorker(label, config) : await processLatencyWorker(label, config);
  const putAt = new Map<string, number>();
  const commitLat: number[] = [];
  const obsLat: number[] = [];
  /** put called → its promise resolved (the put's own commit, as the uploader sees it). */
  const putLat: number[] = [];
  const watcher = watch(backend.streams(), changeStreamName(bucket), (key, commitMs) => {
    const p = putAt.get(key);
    if (p === undefined) return;
    putAt.delete(key);
    commitLat.push(commitMs - p);
    obsLat.push(nowMs() - p);
  });
  try {
    // Ready; then a short unmeasured warm-up at the same rate (a worker process takes its shards during it).
    await w.ready();
    const send = async (prefix: string, total: number): Promise<number> => {
      const t0 = performance.now();
      let i = 0;
      let lastLog = t0;
      const inflight = new Set<Promise<unknown>>();
      // Bounded: `total` puts, paced at RATE per second (each due put is sent as soon as its time came).
      while (i < total) {
        const due = Math.min(total, Math.floor(((performance.now() - t0) * RATE) / 1000) + 1);
        for (; i < due; i++) {
          const key = `${prefix}/${String(i).padStart(7, '0')}`;
          const at = nowMs();
          const p = o.put(key, bodies[i % BODY_POOL]!, { contentType: 'text/plain' });
          putAt.set(key, at);
          void p.then(() => putLat.push(nowMs() - at));
          inflight.add(p);
          void p.finally(() => inflight.delete(p));
        }
        if (inflight.size > 5000) throw new Error(`${label}: ${inflight.size} puts pending: the backend does not keep up with ${RATE}/s`);
        if (performance.now() - lastLog >= PROGRESS_EVERY_MS) {
          lastLog = performance.now();
          log(`  ${label} ${prefix}: ${i}/${total} put, ${commitLat.length} committed`);
        }
        await sleep(1);
      }
      await Promise.all(inflight);
      return total / ((performance.now() - t0) / 1000);
    };
    const waitAll = async (limitMs: number) => {
      const end = performance.now() + limitMs;
      // Bounded by limitMs.
      while (putAt.size > 0 && performance.now() < end) await sleep(20);
    };
    const warm = Math.min(500, RATE);
    await send('warm', warm);
    await waitAll(30_000);
    if (putAt.size > 0) throw new Error(`${label}: ${putAt.size} of ${warm} warm-up puts not committed within 30 s (shards not taken?)`);
    await w.figures();
    commitLat.length = 0;
    obsLat.length = 0;
    putLat.length = 0;
    putAt.clear();
    const total = RATE * LATENCY_SECS;
    // How busy this process (load generator and watcher, and the worker when in-process) was meanwhile.
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const cpu0 = process.cpuUsage();
    const workerCpu0 = w.cpuMs();
    const wall0 = performance.now();
    const achievedRate = await send('measured', total);
    await waitAll(20_000);
    loop.disable();
    const wallMs = performance.now() - wall0;
    const cpu = process.cpuUsage(cpu0);
    const cpuPct = (100 * (cpu.user + cpu.system)) / 1000 / wallMs;
    const workerCpuPct = (100 * (w.cpuMs() - workerCpu0)) / wallMs;
    const missed = putAt.size;
    const c = [...commitLat].sort((a, b) => a - b);
    const ob = [...obsLat].sort((a, b) => a - b);
    const pl = [...putLat].sort((a, b) => a - b);
    const r: Latency = {
      n: c.length,
      missed,
      commit: { p50: percentile(c, 50), p99: percentile(c, 99), max: c[c.length - 1] ?? Number.NaN },
      observed: { p50: percentile(ob, 50), p99: percentile(ob, 99) },
      achievedRate,
    };
    const figures = await w.figures();
    notes.push(
      `${label}: ${r.n} puts at ${fmtInt(achievedRate)}/s; commit latency p50 ${r.commit.p50.toFixed(1)} / p99 ${r.commit.p99.toFixed(1)} / max ${r.commit.max.toFixed(1)} ms; ` +
        `observed by the watcher p50 ${r.observed.p50.toFixed(1)} / p99 ${r.observed.p99.toFixed(1)} ms; ` +
        `the put itself (called → resolved) p50 ${percentile(pl, 50).toFixed(1)} / p99 ${percentile(pl, 99).toFixed(1)} ms; ` +
        (figures ? `${figures}; ` : '') +
        `bench process CPU ${cpuPct.toFixed(0)}% of one core` +
        (Number.isFinite(workerCpuPct) ? `, worker process ${workerCpuPct.toFixed(0)}%` : ' (worker included)') +
        `; bench event-loop delay p50 ${(loop.percentile(50) / 1e6).toFixed(1)} / p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms`,
    );
    log(`  ${notes[notes.length - 1]}`);
    if (missed > 0) throw new Error(`${label}: ${missed} puts never showed committed attributes within 20 s`);
    return r;
  } finally {
    await watcher.stop();
    await w.stop();
  }
}

async function benchLatency(server: NatsServerHandle | undefined, threads: number[]): Promise<void> {
  for (const target of ['local', 'nats'] as const) {
    if (!LATENCY_TARGETS.has(target)) continue;
    for (const t of threads)
      for (const where of LATENCY_WORKER) {
        const measure = `${target === 'local' ? 'local' : 'NATS'} put → committed attrs p99, threads: ${t}, worker ${where === 'process' ? 'in its own process' : 'in the bench process'} (ms)`;
        let root: string | undefined;
        let backend: Backend | undefined;
        try {
          let spec: BackendSpec;
          if (target === 'local') {
            root = await mkdtemp(join(tmpdir(), 'sluice-bench-lat-'));
            mkdirSync(root, { recursive: true });
            backend = await LocalBackend.open({ dir: root });
            spec = { kind: 'local', dir: root };
          } else {
            const prefix = `lat${t}${where === 'process' ? 'p' : ''}`;
            backend = await NatsBackend.open({ servers: server!.url, prefix });
            spec = { kind: 'nats', url: server!.url, prefix };
          }
          log(`latency ${target}, threads: ${t}, worker ${where}: ${RATE}/s for ${LATENCY_SECS} s`);
          const r = await latencyRun(`latency ${target} threads ${t} worker ${where}`, backend, spec, t, where);
          const targetMs = target === 'local' ? TARGET_P99_LOCAL_MS : TARGET_P99_NATS_MS;
          rows.push({
            measure,
            result: `p99 ${r.commit.p99.toFixed(1)} (p50 ${r.commit.p50.toFixed(1)})`,
            baseline: '—',
            ratio: '—',
            target: `p99 ≤ ${targetMs} ms`,
            met: r.commit.p99 <= targetMs,
          });
        } catch (err) {
          fail(measure, err);
        } finally {
          await backend?.close().catch(() => undefined);
          if (root) await rm(root, { recursive: true, force: true });
        }
      }
  }
}

// ─────────────────────────────────────────── Main ───────────────────────────────────────────

async function main(): Promise<void> {
  const threads = [...THREADS];
  if (threads.some((t) => t > 0) && !(await handlerPoolLoads())) threads.splice(0, threads.length, ...threads.filter((t) => t === 0));
  const load0 = loadavg()[0]!;
  log(`runtime bench: parts ${[...parts].join(', ')}; threads ${threads.join(', ')}; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}; load average ${load0.toFixed(1)}`);
  let server: NatsServerHandle | undefined;
  try {
    if (parts.has('local')) await benchLocal(threads);
    if (parts.has('nats') || (parts.has('latency') && LATENCY_TARGETS.has('nats'))) {
      server = await startNatsServer();
      log(`nats-server at ${server.url}`);
    }
    if (parts.has('nats')) await benchNats(server!, threads);
    if (parts.has('latency')) await benchLatency(server, threads);
  } finally {
    await server?.stop();
  }
  const out: string[] = [];
  out.push('| measure | result | baseline (same run) | ratio | target | met |');
  out.push('|---|---|---|---|---|---|');
  for (const r of rows) out.push(`| ${r.measure} | ${r.result} | ${r.baseline} | ${r.ratio} | ${r.target} | ${r.failed ? `FAILED: ${r.failed}` : r.met ? 'met' : 'MISSED'} |`);
  out.push('');
  for (const n of notes) out.push(`- ${n}`);
  out.push(`- load average ${load0.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end`);
  process.stdout.write(`${out.join('\n')}\n`);
  process.exitCode = failures > 0 ? 1 : 0;
}

await main();
