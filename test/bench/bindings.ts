/**
 * Benchmark of the Object binding on both backends, each operation beside a raw baseline of the store
 * underneath, measured in the same process.
 *
 * What it measures, per backend (local = embedded LMDB, nats = NATS JetStream):
 * - `put`         ops/s of `ObjectBinding.put` of 1 KiB bodies to fresh keys (N ops, a fixed number in flight);
 * - `get`         ops/s of `ObjectBinding.get` of those objects (whole body);
 * - `updateAttrs` ops/s of `updateAttrs(key, 'SET n = if_not_exists(n, 0) + 1')`, each object once;
 * - `list 9k`     median ms of 20 `list({limit: 10000})` of a bucket holding exactly 9,000 objects.
 *
 * Baseline, in the same run: the equivalent work done directly on the store without sluice — lmdb-js on
 * a separate LMDB environment in its own temp dir (same `open()` defaults as LocalStore; writes resolve
 * once flushed, as LocalStore's transactionSync commits are), or `@nats-io/kv` on separate KV buckets of
 * the same nats-server over a second connection — with the same N, the same bodies and the same number
 * in flight. The output states exactly what each raw baseline does (`RAW_DOES`).
 *
 * Raw and binding phases run right before / after each other, interleaved: each op is split into
 * `--rounds` rounds over consecutive key ranges, and the side that goes first alternates from round to
 * round (list: run by run), so load changes of a shared machine hit both sides alike; per-round ratios
 * are printed under the table to show the noise. Both sides get an unmeasured warm-up first.
 *
 * Reported (stdout, a markdown table; progress lines go to stderr): binding and raw figures and their
 * ratio in throughput terms (for list: raw ms / binding ms), against the targets of the issue: every
 * binding op ≥ 0.7× its raw baseline; the local list of 9,000 objects ≤ 15 ms. Exit code 1 when a
 * phase failed or hit its time limit (a MISSED target alone is a result, not a failure).
 *
 * Bounds: every loop is bounded in count; a side's phases of one op share a 60 s budget after which no
 * more operations start (the figure then covers the operations done and the row says so); operations
 * still pending 15 s later are abandoned.
 *
 * How to run (outside CI; needs nats-server on PATH or NATS_SERVER_BIN; only loopback traffic — the
 * bench starts its own nats-server on a random 127.0.0.1 port with a temp store, and stops it):
 *
 *   npm run bench:bindings
 *   npm run bench:bindings -- --only local --ops get,list --local-n 50000
 *
 * Options: --only local|nats, --ops put,get,update,list (get/update populate their objects unmeasured
 * when put is left out), --local-n 20000, --local-inflight 256, --nats-n 20000, --nats-inflight 64,
 * --rounds 5, --list-runs 20.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Kvm, type KV } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { open, type Database } from 'lmdb';
import { Packr } from 'msgpackr';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { Backend, ObjectBinding } from '../../bindings/types.ts';
import { startNatsServer, type NatsServerHandle } from '../support/nats-server.ts';

// ───────────────────────────────────────── Settings ─────────────────────────────────────────

const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    ops: { type: 'string', default: 'put,get,update,list' },
    'local-n': { type: 'string', default: '20000' },
    'local-inflight': { type: 'string', default: '256' },
    'nats-n': { type: 'string', default: '20000' },
    'nats-inflight': { type: 'string', default: '64' },
    'list-runs': { type: 'string', default: '20' },
    rounds: { type: 'string', default: '5' },
  },
  strict: true,
});

function intArg(name: keyof typeof args, min: number, max: number): number {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${String(args[name])}`);
  return v;
}

const OPS = ['put', 'get', 'update', 'list'] as const;
type Op = (typeof OPS)[number];
const wanted = new Set((args.ops ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''));
for (const o of wanted) if (!(OPS as readonly string[]).includes(o)) throw new Error(`--ops: unknown op '${o}' (known: ${OPS.join(', ')})`);
if (args.only !== undefined && args.only !== 'local' && args.only !== 'nats') throw new Error(`--only must be 'local' or 'nats', got '${args.only}'`);

const BODY_BYTES = 1024;
const LIST_OBJECTS = 9000;
const LIST_RUNS = intArg('list-runs', 1, 1000);
/** Interleaved rounds per op (raw and binding alternate which goes first). */
const ROUNDS = intArg('rounds', 1, 100);
const LIST_WARMUP_RUNS = 3;
/** A phase stops launching operations after this long. */
const PHASE_LIMIT_MS = 60_000;
/** …and is abandoned when its operations are still pending this long after that. */
const STUCK_GRACE_MS = 15_000;
/** A phase stops after this many failed operations (a broken backend should not take 60 s to show). */
const MAX_FAILURES = 20;
const PROGRESS_EVERY_MS = 2000;
const RATIO_TARGET = 0.7;
const LOCAL_LIST_TARGET_MS = 15;

const SETTINGS = {
  local: { n: intArg('local-n', 1, 1_000_000), inflight: intArg('local-inflight', 1, 10_000) },
  nats: { n: intArg('nats-n', 1, 1_000_000), inflight: intArg('nats-inflight', 1, 10_000) },
} as const;

const UPDATE = 'SET n = if_not_exists(n, 0) + 1';
const CONTENT_TYPE = 'application/octet-stream';
/** Raw baselines store a fixed etag: computing MD5 is work the binding does, not the store. */
const FIXED_ETAG = '0123456789abcdef0123456789abcdef';
const packr = new Packr({ useRecords: false, moreTypes: false, structuredClone: false, mapsAsObjects: true, variableMapSize: true });

/** What each raw baseline does, printed with the results. */
const RAW_DOES: Record<'local' | 'nats', Record<Op, string>> = {
  local: {
    put:
      'lmdb-js async meta.put([b,k], {size,etag,version,contentType,mtime,attrsRevision}) + bodies.put([b,k], 1 KiB) ' +
      '+ records.put([stream,shard,seq], {d: msgpack(change record), p, t}), awaited together, then `await root.flushed` — ' +
      '3 records per op like the binding\'s meta + body + change record, durable when resolved like the binding. ' +
      '(The binding also reads the current meta, bumps 2 counters and computes the MD5 etag, in one transactionSync per event-loop turn.)',
    get: 'meta.get([b,k]) + bodies.get([b,k]), synchronous. (The binding also reads attrs and resets the read snapshot first.)',
    update:
      'meta.get + attrs.get, n+1 in JS, then async meta.put + attrs.put + records.put(change record) awaited together, then ' +
      '`await root.flushed` — 3 records per op, like the binding. (The binding also bumps 2 counters and evaluates the parsed expression.)',
    list: `meta.getRange({start: [b, '']}) over the ${LIST_OBJECTS} keys of the bucket, collecting {key, value} into an array`,
  },
  nats: {
    put: 'kv.put(key, msgpack({meta fields, attrs, 1 KiB body})) — one message, like the binding. (The binding reads the key first, then publishes with a CAS expectation.)',
    get: 'kv.get(key): direct get of the last message, no decode',
    update: 'kv.get(key), msgpack decode, n+1, encode, kv.update(key, value, revision): read + CAS write of the whole entry (1 KiB body included), like the binding',
    list: `kv.keys() iterated to the end over the ${LIST_OBJECTS} keys (headers-only ordered consumer), nothing else`,
  },
};

// ───────────────────────────────────────── Harness ──────────────────────────────────────────

const benchStart = performance.now();

function log(msg: string): void {
  process.stderr.write(`[${((performance.now() - benchStart) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}

function pad(i: number): string {
  return String(i).padStart(7, '0');
}

function describeError(err: unknown): string {
  if (err instanceof Error) return `${(err as { code?: unknown }).code ? `${String((err as { code?: unknown }).code)}: ` : ''}${err.message}`;
  return String(err);
}

/** The outcome of one measured phase of N operations. */
interface OpsPhase {
  done: number;
  failed: number;
  ms: number;
  opsPerSec: number;
  aborted: boolean;
  error: string | undefined;
}

/**
 * Runs `op(0..n-1)` with up to `inflight` operations in flight (a fixed pool of workers, each taking the
 * next index when its previous operation settled), with progress lines, the 60 s launch limit and the
 * stuck-phase guard.
 */
async function runOps(label: string, n: number, inflight: number, op: (i: number) => Promise<unknown>, budgetMs = PHASE_LIMIT_MS): Promise<OpsPhase> {
  const t0 = performance.now();
  const deadline = t0 + budgetMs;
  let next = 0;
  let done = 0;
  let failed = 0;
  let stop = false;
  let aborted = false;
  let error: string | undefined;
  const ticker = setInterval(() => log(`  ${label}: ${done}/${n} (${Math.floor((100 * done) / n)}%)`), PROGRESS_EVERY_MS);
  const worker = async (): Promise<void> => {
    // Bounded by n: every pass takes a fresh index.
    while (!stop && next < n) {
      if (performance.now() > deadline) {
        aborted = true;
        stop = true;
        break;
      }
      const i = next++;
      try {
        await op(i);
        done++;
      } catch (err) {
        failed++;
        error ??= describeError(err);
        if (failed >= MAX_FAILURES) stop = true;
      }
    }
  };
  let guard: NodeJS.Timeout | undefined;
  const stuck = new Promise<'stuck'>((resolve) => {
    guard = setTimeout(() => resolve('stuck'), budgetMs + STUCK_GRACE_MS);
  });
  const outcome = await Promise.race([Promise.all(Array.from({ length: Math.min(inflight, n) }, worker)).then(() => 'ok' as const), stuck]);
  clearTimeout(guard);
  clearInterval(ticker);
  if (outcome === 'stuck') {
    // Workers still waiting on a hung operation launch nothing more once it settles.
    stop = true;
    aborted = true;
    error ??= `${next - done - failed} operations still pending ${STUCK_GRACE_MS / 1000} s after the time limit`;
  }
  const ms = performance.now() - t0;
  const r: OpsPhase = { done, failed, ms, opsPerSec: done / (ms / 1000), aborted, error };
  log(
    `  ${label}: ${done} ops in ${(ms / 1000).toFixed(2)} s = ${fmtInt(r.opsPerSec)} ops/s` +
      `${aborted ? ' (ABORTED at the time limit)' : ''}${failed ? ` — ${failed} FAILED, first: ${error}` : ''}`,
  );
  return r;
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what} did not finish in ${ms / 1000} s`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function fmtInt(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a';
}

// ──────────────────────────────────────── Contenders ────────────────────────────────────────

/** One side of a comparison: the binding, or the raw store. */
interface Side {
  /** Writes the i-th object of key set `set` (fresh keys per set). */
  put(set: string, i: number): Promise<unknown>;
  /** Reads the i-th object of the measured set. */
  get(i: number): Promise<unknown>;
  /** Increments attribute n of the i-th object of the measured set. */
  update(i: number): Promise<unknown>;
  /** Writes the i-th object of the list bucket. */
  fillList(i: number): Promise<unknown>;
  /** Lists the list bucket; returns the number of entries. */
  list(): Promise<number>;
}

/** Key set the measured puts of both sides write and get / update read (each side in its own store). */
const MEASURED = 'a';

/** The binding side over any backend: the same calls whatever the backend. */
function bindingSide(bench: ObjectBinding, listBucket: ObjectBinding, body: Buffer): Side {
  const measuredKey = (i: number) => `${MEASURED}-${pad(i)}`;
  return {
    put: (set, i) => bench.put(`${set}-${pad(i)}`, body),
    async get(i) {
      const r = await bench.get(measuredKey(i));
      if (r.body.byteLength !== BODY_BYTES) throw new Error(`get ${measuredKey(i)}: ${r.body.byteLength} bytes`);
    },
    update: (i) => bench.updateAttrs(measuredKey(i), UPDATE),
    fillList: (i) => listBucket.put(`obj-${pad(i)}`, body),
    async list() {
      const r = await listBucket.list({ limit: 10_000 });
      return r.objects.length + r.commonPrefixes.length;
    },
  };
}

const BENCH_BUCKET = 'bench';
const LIST_BUCKET = 'list9k';
const SHARDS = 8;

interface RawMeta {
  size: number;
  etag: string;
  version: number;
  contentType: string;
  mtime: number;
  attrsRevision: number;
}

/** The raw LMDB side: a separate environment laid out like LocalStore (meta, bodies, attrs, records). */
function rawLocalSide(dir: string, body: Buffer): { side: Side; close(): Promise<void> } {
  mkdirSync(dir, { recursive: true });
  const root = open({ path: join(dir, 'raw.mdb'), maxDbs: 16 });
  const meta: Database<RawMeta, (string | number)[]> = root.openDB({ name: 'meta' });
  const bodies: Database<Buffer, (string | number)[]> = root.openDB({ name: 'bodies', encoding: 'binary' });
  const attrs: Database<Record<string, unknown>, (string | number)[]> = root.openDB({ name: 'attrs' });
  const records: Database<{ d: Uint8Array; p: string; t: number }, (string | number)[]> = root.openDB({ name: 'records' });
  const stream = `$changes.${BENCH_BUCKET}`;
  let seq = 0;
  // lmdb-js resolves an async write once committed and flushes afterwards (overlappingSync, its default
  // on Linux), whereas LocalStore's transactionSync returns only once flushed: wait for the flush too,
  // so both sides promise the same durability.
  const durable = async (writes: Promise<boolean>[]): Promise<void> => {
    await Promise.all(writes);
    await root.flushed;
  };
  const changeRecord = (bucket: string, key: string, type: string, m: RawMeta, now: number) => ({
    d: packr.pack({ bucket, key, type, version: m.version, size: m.size, etag: m.etag, mtime: new Date(now), sequencer: m.version.toString(16).padStart(16, '0'), attrsRevision: m.attrsRevision, contentType: m.contentType }),
    p: key,
    t: now,
  });
  const write = (bucket: string, key: string, i: number): Promise<unknown> => {
    const k = [bucket, key];
    const now = Date.now();
    const s = ++seq;
    const m: RawMeta = { size: body.byteLength, etag: FIXED_ETAG, version: s, contentType: CONTENT_TYPE, mtime: now, attrsRevision: 1 };
    return durable([meta.put(k, m), bodies.put(k, body), records.put([stream, i % SHARDS, s], changeRecord(bucket, key, 'put', m, now))]);
  };
  const side: Side = {
    put: (set, i) => write(BENCH_BUCKET, `${set}-${pad(i)}`, i),
    async get(i) {
      const k = [BENCH_BUCKET, `${MEASURED}-${pad(i)}`];
      const m = meta.get(k);
      const b = bodies.get(k);
      if (!m || b?.byteLength !== BODY_BYTES) throw new Error(`raw get ${k[1]}: missing`);
    },
    async update(i) {
      const key = `${MEASURED}-${pad(i)}`;
      const k = [BENCH_BUCKET, key];
      const m = meta.get(k);
      if (!m) throw new Error(`raw update ${key}: missing`);
      const a = attrs.get(k) ?? {};
      const next = { ...a, n: (typeof a.n === 'number' ? a.n : 0) + 1 };
      const m2: RawMeta = { ...m, attrsRevision: m.attrsRevision + 1 };
      const now = Date.now();
      return durable([meta.put(k, m2), attrs.put(k, next), records.put([stream, i % SHARDS, ++seq], changeRecord(BENCH_BUCKET, key, 'attrs', m2, now))]);
    },
    fillList: (i) => write(LIST_BUCKET, `obj-${pad(i)}`, i),
    async list() {
      const out: { key: string; value: RawMeta }[] = [];
      for (const { key, value } of meta.getRange({ start: [LIST_BUCKET, ''] })) {
        if (key[0] !== LIST_BUCKET) break;
        out.push({ key: key[1] as string, value });
      }
      return out.length;
    },
  };
  return { side, close: () => root.close() };
}

/** The raw JetStream KV side: two KV buckets of the same server, over a connection of its own. */
async function rawNatsSide(url: string, body: Buffer): Promise<{ side: Side; close(): Promise<void> }> {
  const nc = await connect({ servers: url, name: 'sluice-bench-raw' });
  const kvm = new Kvm(nc);
  // History 64 like the binding's object KV buckets (OBJECT_HISTORY).
  const kv: KV = await kvm.create('rawbench', { history: 64 });
  const kvList: KV = await kvm.create('rawlist9k', { history: 64 });
  let seq = 0;
  const value = (key: string, version: number, attrs: Record<string, unknown>, attrsRevision: number) => {
    const now = new Date();
    return packr.pack({ type: 'put', key, size: body.byteLength, etag: FIXED_ETAG, version, contentType: CONTENT_TYPE, mtime: now, time: now, attrs, attrsRevision, body });
  };
  // Keys `<shard>.<name>` like the binding's `<shard>.<base64url(key)>`.
  const measuredKey = (i: number) => `${i % SHARDS}.${MEASURED}-${pad(i)}`;
  const side: Side = {
    put: (set, i) => kv.put(`${i % SHARDS}.${set}-${pad(i)}`, value(`${set}-${pad(i)}`, ++seq, {}, 1)),
    async get(i) {
      const e = await kv.get(measuredKey(i));
      if (!e || e.value.byteLength < BODY_BYTES) throw new Error(`raw get ${measuredKey(i)}: missing`);
    },
    async update(i) {
      const k = measuredKey(i);
      const e = await kv.get(k);
      if (!e) throw new Error(`raw update ${k}: missing`);
      const v = packr.unpack(e.value) as { attrs: Record<string, unknown>; attrsRevision: number; time: Date };
      v.attrs = { ...v.attrs, n: (typeof v.attrs.n === 'number' ? v.attrs.n : 0) + 1 };
      v.attrsRevision++;
      v.time = new Date();
      return kv.update(k, packr.pack(v), e.revision);
    },
    fillList: (i) => kvList.put(`${i % SHARDS}.obj-${pad(i)}`, value(`obj-${pad(i)}`, ++seq, {}, 1)),
    async list() {
      let n = 0;
      for await (const _k of await kvList.keys()) n++;
      return n;
    },
  };
  return { side, close: () => nc.close() };
}

// ───────────────────────────────────────── Comparison ───────────────────────────────────────

/** One row of the results. */
interface Row {
  backend: 'local' | 'nats';
  op: string;
  unit: 'ops/s' | 'ms';
  binding: number;
  raw: number;
  /** Binding / raw in throughput terms. */
  ratio: number;
  target: string;
  met: boolean;
  /** How the figures spread (per-round ratios, or list min / max). */
  spread: string;
  notes: string[];
}

/** Totals of one side over the rounds of an op. */
interface Totals {
  done: number;
  failed: number;
  ms: number;
  aborted: boolean;
  error: string | undefined;
}

function sideNotes(who: string, t: Totals): string[] {
  const out: string[] = [];
  if (t.aborted) out.push(`${who} stopped at the ${PHASE_LIMIT_MS / 1000} s limit after ${t.done} ops`);
  if (t.error !== undefined) out.push(`${who} had ${t.failed || 'a'} failure(s): ${t.error}`);
  return out;
}

/**
 * Measures one op on both sides in ROUNDS interleaved rounds over consecutive index ranges, alternating
 * which side goes first, so that load changes of a shared machine hit both sides alike.
 */
async function compareOps(backend: 'local' | 'nats', op: 'put' | 'get' | 'update', binding: Side, raw: Side, n: number, inflight: number): Promise<Row> {
  const name = op === 'update' ? 'updateAttrs' : op;
  const call = (s: Side, set: string, i: number) => (op === 'put' ? s.put(set, i) : op === 'get' ? s.get(i) : s.update(i));
  const warm = Math.max(1, Math.min(1000, Math.floor(n / 10)));
  const rounds = Math.min(ROUNDS, n);
  const chunk = Math.ceil(n / rounds);
  log(`${backend} ${name}: N=${n} per side in ${rounds} interleaved rounds, ${inflight} in flight; warm-up ${warm} ops per side`);
  // Warm-up: JIT, caches, server-side state. put warms on a key set of its own; get / update on the first keys.
  await runOps(`${backend} ${name} warm-up raw`, warm, inflight, (i) => call(raw, 'w', i), PHASE_LIMIT_MS);
  await runOps(`${backend} ${name} warm-up binding`, warm, inflight, (i) => call(binding, 'w', i), PHASE_LIMIT_MS);
  const totals: Record<'raw' | 'binding', Totals> = {
    raw: { done: 0, failed: 0, ms: 0, aborted: false, error: undefined },
    binding: { done: 0, failed: 0, ms: 0, aborted: false, error: undefined },
  };
  const roundRatios: number[] = [];
  // Bounded: `rounds` iterations; a side's rounds share one 60 s budget.
  for (let r = 0; r < rounds; r++) {
    const start = r * chunk;
    const count = Math.min(chunk, n - start);
    if (count <= 0 || totals.raw.aborted || totals.binding.aborted) break;
    const rate: Partial<Record<'raw' | 'binding', number>> = {};
    for (const who of r % 2 === 0 ? (['raw', 'binding'] as const) : (['binding', 'raw'] as const)) {
      const t = totals[who];
      const p = await runOps(`${backend} ${name} ${who} round ${r + 1}/${rounds}`, count, inflight, (i) => call(who === 'raw' ? raw : binding, MEASURED, start + i), PHASE_LIMIT_MS - t.ms);
      t.done += p.done;
      t.failed += p.failed;
      t.ms += p.ms;
      t.aborted ||= p.aborted;
      t.error ??= p.error;
      rate[who] = p.done / (p.ms / 1000);
    }
    if (rate.raw !== undefined && rate.binding !== undefined) {
      roundRatios.push(rate.binding / rate.raw);
      log(`${backend} ${name} round ${r + 1}/${rounds}: binding ${fmtInt(rate.binding)} ops/s, raw ${fmtInt(rate.raw)} ops/s → ${fmtRatio(rate.binding / rate.raw)}×`);
    }
  }
  const bindingRate = totals.binding.done / (totals.binding.ms / 1000);
  const rawRate = totals.raw.done / (totals.raw.ms / 1000);
  const ratio = bindingRate / rawRate;
  const failed = totals.raw.failed + totals.binding.failed > 0;
  return {
    backend,
    op: name,
    unit: 'ops/s',
    binding: bindingRate,
    raw: rawRate,
    ratio,
    target: `≥ ${RATIO_TARGET.toFixed(2)}×`,
    met: !failed && ratio >= RATIO_TARGET,
    spread: `per-round ratios ${roundRatios.map((x) => x.toFixed(2)).join(', ')} (${totals.binding.done} ops per side)`,
    notes: [...sideNotes('raw', totals.raw), ...sideNotes('binding', totals.binding)],
  };
}

/**
 * Fills each side's list bucket with exactly LIST_OBJECTS objects, then times LIST_RUNS listings per
 * side, alternating raw and binding run by run (after LIST_WARMUP_RUNS unmeasured ones each).
 */
async function compareList(backend: 'local' | 'nats', binding: Side, raw: Side, inflight: number): Promise<Row[]> {
  log(`${backend} list: filling a bucket with exactly ${LIST_OBJECTS} objects on each side`);
  const fr = await runOps(`${backend} list fill raw`, LIST_OBJECTS, inflight, (i) => raw.fillList(i), PHASE_LIMIT_MS);
  const fb = await runOps(`${backend} list fill binding`, LIST_OBJECTS, inflight, (i) => binding.fillList(i), PHASE_LIMIT_MS);
  if (fr.done !== LIST_OBJECTS || fb.done !== LIST_OBJECTS) throw new Error(`${backend} list: could not fill the buckets (${fr.error ?? fb.error ?? 'time limit'})`);
  log(`${backend} list: ${LIST_WARMUP_RUNS} warm-up + ${LIST_RUNS} timed runs per side, alternating`);
  const samples: Record<'raw' | 'binding', number[]> = { raw: [], binding: [] };
  const deadline = performance.now() + PHASE_LIMIT_MS;
  let error: string | undefined;
  let aborted = false;
  // Bounded: warm-up + runs iterations, and the 60 s limit.
  outer: for (let i = 0; i < LIST_WARMUP_RUNS + LIST_RUNS; i++) {
    if (performance.now() > deadline) {
      aborted = true;
      break;
    }
    for (const who of i % 2 === 0 ? (['raw', 'binding'] as const) : (['binding', 'raw'] as const)) {
      const t = performance.now();
      try {
        const got = await withTimeout((who === 'raw' ? raw : binding).list(), PHASE_LIMIT_MS + STUCK_GRACE_MS, `${backend} list ${who}`);
        if (got !== LIST_OBJECTS) throw new Error(`listed ${got} entries, expected ${LIST_OBJECTS}`);
      } catch (err) {
        error = `${who}: ${describeError(err)}`;
        break outer;
      }
      if (i >= LIST_WARMUP_RUNS) samples[who].push(performance.now() - t);
      // One listing per event-loop turn, as callers issue them (lmdb-js renews its read snapshot per turn).
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  const stats = (xs: number[]) => `min ${Math.min(...xs).toFixed(2)} / median ${median(xs).toFixed(2)} / max ${Math.max(...xs).toFixed(2)} ms`;
  log(`${backend} list binding: ${stats(samples.binding)} over ${samples.binding.length} runs`);
  log(`${backend} list raw:     ${stats(samples.raw)} over ${samples.raw.length} runs`);
  const b = median(samples.binding);
  const rw = median(samples.raw);
  const ok = error === undefined;
  const notes = [...(aborted ? [`stopped at the ${PHASE_LIMIT_MS / 1000} s limit`] : []), ...(error ? [`failed: ${error}`] : [])];
  const base = { backend, unit: 'ms' as const, binding: b, raw: rw, ratio: rw / b, spread: `binding ${stats(samples.binding)}; raw ${stats(samples.raw)} (${samples.binding.length} runs each)` };
  const rows: Row[] = [{ ...base, op: `list ${LIST_OBJECTS / 1000}k`, target: `≥ ${RATIO_TARGET.toFixed(2)}×`, met: ok && base.ratio >= RATIO_TARGET, notes }];
  if (backend === 'local')
    rows.push({ ...base, op: `list ${LIST_OBJECTS / 1000}k (absolute)`, target: `≤ ${LOCAL_LIST_TARGET_MS} ms`, met: ok && b <= LOCAL_LIST_TARGET_MS, spread: '', notes: [] });
  return rows;
}

/** Runs the wanted ops of one backend; get / update need the objects put writes, list fills its own bucket. */
async function benchBackend(backend: 'local' | 'nats', binding: Side, raw: Side): Promise<Row[]> {
  const { n, inflight } = SETTINGS[backend];
  const rows: Row[] = [];
  if (wanted.has('put')) rows.push(await compareOps(backend, 'put', binding, raw, n, inflight));
  else if (wanted.has('get') || wanted.has('update')) {
    log(`${backend}: writing the ${n} objects get/update read (unmeasured)`);
    await runOps(`${backend} populate raw`, n, inflight, (i) => raw.put(MEASURED, i));
    await runOps(`${backend} populate binding`, n, inflight, (i) => binding.put(MEASURED, i));
  }
  if (wanted.has('get')) rows.push(await compareOps(backend, 'get', binding, raw, n, inflight));
  if (wanted.has('update')) rows.push(await compareOps(backend, 'update', binding, raw, n, inflight));
  if (wanted.has('list')) rows.push(...(await compareList(backend, binding, raw, inflight)));
  return rows;
}

async function openBinding(b: Backend): Promise<{ bench: ObjectBinding; list: ObjectBinding }> {
  await b.createBucket(BENCH_BUCKET, { shards: SHARDS });
  await b.createBucket(LIST_BUCKET, { shards: SHARDS });
  return { bench: await b.objects(BENCH_BUCKET), list: await b.objects(LIST_BUCKET) };
}

// ─────────────────────────────────────────── Runs ───────────────────────────────────────────

async function benchLocal(body: Buffer): Promise<Row[]> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bench-local-'));
  tempDirs.add(dir);
  log(`local: binding store in ${join(dir, 'binding')}, raw LMDB env in ${join(dir, 'raw')}`);
  const backend = await LocalBackend.open({ dir: join(dir, 'binding') });
  const raw = rawLocalSide(join(dir, 'raw'), body);
  try {
    const b = await openBinding(backend);
    return await benchBackend('local', bindingSide(b.bench, b.list, body), raw.side);
  } finally {
    await backend.close().catch(() => undefined);
    await raw.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  }
}

let natsServer: NatsServerHandle | undefined;
/** Temp dirs to remove when interrupted. */
const tempDirs = new Set<string>();

async function benchNats(body: Buffer): Promise<Row[]> {
  natsServer = await startNatsServer();
  log(`nats: nats-server at ${natsServer.url} (store ${natsServer.storeDir})`);
  let backend: NatsBackend | undefined;
  let raw: { side: Side; close(): Promise<void> } | undefined;
  try {
    backend = await NatsBackend.open({ servers: natsServer.url, prefix: 'bench' });
    raw = await rawNatsSide(natsServer.url, body);
    const b = await openBinding(backend);
    return await benchBackend('nats', bindingSide(b.bench, b.list, body), raw.side);
  } finally {
    await backend?.close().catch(() => undefined);
    await raw?.close().catch(() => undefined);
    await natsServer.stop();
    natsServer = undefined;
  }
}

function machine(): string[] {
  let nats = 'not found';
  try {
    nats = execFileSync(process.env.NATS_SERVER_BIN ?? 'nats-server', ['--version'], { encoding: 'utf8', timeout: 5000 }).trim();
  } catch {
    // reported as not found
  }
  return [
    `date: ${new Date().toISOString()}`,
    `cpu: ${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown'}`,
    `memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `node: ${process.version}, ${nats}`,
    `load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')} (other work on the machine skews absolute figures; the interleaving keeps the ratios fair)`,
    `settings: local N=${SETTINGS.local.n} (${SETTINGS.local.inflight} in flight), nats N=${SETTINGS.nats.n} (${SETTINGS.nats.inflight} in flight), ` +
      `body ${BODY_BYTES} B, ${ROUNDS} rounds, list ${LIST_OBJECTS} objects × ${LIST_RUNS} runs (median), phase limit ${PHASE_LIMIT_MS / 1000} s`,
  ];
}

/** Two decimals, or three when two would round onto the target and hide which side of it the ratio is. */
function fmtRatio(x: number): string {
  return Math.abs(x - RATIO_TARGET) < 0.005 ? x.toFixed(3) : x.toFixed(2);
}

function report(rows: Row[]): string {
  const fmt = (v: number, unit: Row['unit']) => (unit === 'ms' ? `${v.toFixed(2)} ms` : `${fmtInt(v)} ops/s`);
  const lines = [
    '| backend | op | binding | raw baseline | ratio (binding / raw) | target | result |',
    '|---|---|---:|---:|---:|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.backend} | ${r.op} | ${fmt(r.binding, r.unit)} | ${fmt(r.raw, r.unit)} | ${fmtRatio(r.ratio)}× | ${r.target} | ${r.met ? 'met' : 'MISSED'} |`,
    ),
    '',
    `Spread (ops: ${ROUNDS} interleaved rounds per side, alternating which side goes first; list: runs alternating):`,
    ...rows.filter((r) => r.spread !== '').map((r) => `- ${r.backend} ${r.op}: ${r.spread}`),
    '',
    'What each raw baseline does:',
    ...(['local', 'nats'] as const).flatMap((b) =>
      rows.some((r) => r.backend === b) ? OPS.filter((o) => wanted.has(o)).map((o) => `- ${b} ${o === 'update' ? 'updateAttrs' : o}: ${RAW_DOES[b][o]}`) : [],
    ),
  ];
  const notes = rows.flatMap((r) => r.notes.map((n) => `- ${r.backend} ${r.op}: ${n}`));
  if (notes.length > 0) lines.push('', 'Problems:', ...notes);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const info = machine();
  for (const l of info) log(l);
  // Random bytes: nothing on the way can compress them.
  const body = Buffer.alloc(BODY_BYTES);
  for (let i = 0; i < BODY_BYTES; i++) body[i] = (Math.random() * 256) | 0;
  const rows: Row[] = [];
  const failures: string[] = [];
  for (const backend of ['local', 'nats'] as const) {
    if (args.only !== undefined && args.only !== backend) continue;
    try {
      rows.push(...(await (backend === 'local' ? benchLocal(body) : benchNats(body))));
    } catch (err) {
      failures.push(`${backend}: ${describeError(err)}`);
      log(`${backend}: FAILED — ${describeError(err)}`);
    }
  }
  info.push(`load average at end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`, `duration: ${((performance.now() - benchStart) / 1000).toFixed(0)} s`);
  process.stdout.write(`\n${info.map((l) => `- ${l}`).join('\n')}\n\n${report(rows)}\n`);
  if (failures.length > 0) process.stdout.write(`\nBackends that could not be measured:\n${failures.map((f) => `- ${f}`).join('\n')}\n`);
  process.exitCode = failures.length > 0 || rows.some((r) => r.notes.length > 0) ? 1 : 0;
}

// Ctrl-C: never leave the nats-server or temp dirs behind.
process.once('SIGINT', () => {
  log('interrupted: stopping');
  const stops = [natsServer?.stop(), ...[...tempDirs].map((d) => rm(d, { recursive: true, force: true }))];
  void Promise.allSettled(stops).finally(() => process.exit(130));
});

await main();
// Stray timers of abandoned (stuck) phases must not keep the process alive.
process.exit();
