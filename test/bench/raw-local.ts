/**
 * The raw LMDB loop of `test/bench/runtime.ts`'s local part (its header says what it does and does not
 * do against the worker), over any subset of the shards, so that it runs in the bench process (all
 * shards) or as one of several processes on one data directory (each its share of the shards) — the
 * baseline for "N worker processes against one".
 *
 * As a process (`node --import tsx test/bench/raw-local.ts '<json>'`, json = {dir, shards, chunk,
 * contract, bucket, limitMs}): opens the store, prints `ready`, waits for a line on stdin, runs, prints
 * one JSON line {ms, counts, cpuMs: the process's CPU during the loop} and exits (code 1 with the error on stderr when the loop failed).
 */
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LocalBackend } from '../../bindings/local/index.ts';
import { COMMIT_FLAGS } from '../../bindings/local/local-store.ts';
import { changeStreamName, decodeChange, encodeChange, sequencer } from '../../bindings/shared.ts';
import { detectBytes, Found } from '../../functions/scan-sensitive/detect.ts';

/** The processed-marker attribute the raw loop writes (the worker's own marker has its own name). */
export const RAW_MARKER = '$raw';

export interface RawLocalOptions {
  dir: string;
  /** Bucket whose change stream is consumed. */
  bucket: string;
  /** Shards this loop consumes, in this order. */
  shards: number[];
  /** Change records per chunk (one transaction per chunk); the worker's maxRecords. */
  chunk: number;
  /** Also the attribute contract's writes (attrsRevision bump, attrs change record): the baseline. */
  contract: boolean;
  /** The loop fails past this many ms. */
  limitMs: number;
  /** Called with the events counted so far, at most every `progressMs`. */
  onProgress?: (scanned: number) => void;
  progressMs?: number;
}

export interface RawCounts {
  objects_scanned: number;
  has_ssn: number;
  has_ccard: number;
}

/** Runs the loop on an open backend; resolves with its time (ms, without the open) and what it counted. */
export function rawLocalLoop(backend: LocalBackend, o: RawLocalOptions): { ms: number; counts: RawCounts } {
  const s = backend.store;
  const stream = changeStreamName(o.bucket);
  const counts: RawCounts = { objects_scanned: 0, has_ssn: 0, has_ccard: 0 };
  const t0 = performance.now();
  let lastLog = t0;
  for (const shard of o.shards) {
    let seq = 0;
    // Bounded: each pass consumes `chunk` records of a finite shard, and the time limit.
    for (;;) {
      if (performance.now() - t0 > o.limitMs) throw new Error(`raw local loop not done within ${o.limitMs / 1000} s`);
      const work: { k: (string | number)[]; seq: number; found: number }[] = [];
      let last = seq;
      let read = 0;
      for (const { key, value } of s.records.getRange({ start: [stream, shard, seq], end: [stream, shard, Number.MAX_SAFE_INTEGER], limit: o.chunk })) {
        last = key[2] as number;
        read++;
        const c = decodeChange(value.d);
        if (c.type !== 'put') continue;
        const k = [o.bucket, c.key];
        const m = s.meta.get(k);
        if (!m || m.version !== c.version) continue;
        const body = s.bodies.getBinary(k);
        if (!body) continue;
        work.push({ k, seq: last, found: detectBytes(body) });
      }
      if (read === 0) break;
      // The durability of the worker's batch commits ('repairable': data synced, meta page not).
      s.root.transactionSync(() => {
        const ctr = o.contract ? { v: s.counters.get(['v', o.bucket]) ?? 0, q: s.counters.get(['s', stream, shard]) ?? 0 } : { v: 0, q: 0 };
        for (const x of work) {
          const a = s.attrs.get(x.k) ?? {};
          const marker = a[RAW_MARKER];
          if (typeof marker === 'number' && marker >= x.seq) continue;
          const ssn = (x.found & Found.ssn) !== 0;
          const card = (x.found & Found.card) !== 0;
          s.attrs.put(x.k, { ...a, has_ssn: ssn, has_ccard: card, [RAW_MARKER]: x.seq });
          // `contract`: also what ObjectBinding's contract makes every attribute write do (bump
          // attrsRevision in the metadata, append the object's `attrs` change record), written plainly.
          if (o.contract) {
            const m = s.meta.get(x.k)!;
            const meta = { ...m, attrsRevision: m.attrsRevision + 1 };
            s.meta.put(x.k, meta);
            const now = Date.now();
            // Counters handed out in memory and written once per chunk, as the binding's batch write does.
            const v = ++ctr.v;
            const q = ++ctr.q;
            const rec = { bucket: o.bucket, key: x.k[1] as string, type: 'attrs' as const, version: m.version, size: m.size, etag: m.etag, mtime: new Date(now), sequencer: sequencer(v), attrsRevision: meta.attrsRevision, contentType: m.contentType };
            s.records.put([stream, shard, q], { d: encodeChange(rec), p: x.k[1] as string, t: now });
          }
          counts.objects_scanned++;
          if (ssn) counts.has_ssn++;
          if (card) counts.has_ccard++;
        }
        if (o.contract) {
          s.counters.put(['v', o.bucket], ctr.v);
          s.counters.put(['s', stream, shard], ctr.q);
        }
        s.items.put(['sluice-state', `ckpt/raw/${shard}`], { i: { seq: last + 1, counts: { ...counts } }, r: last });
      }, COMMIT_FLAGS.repairable);
      seq = last + 1;
      if (o.onProgress && performance.now() - lastLog >= (o.progressMs ?? 2000)) {
        lastLog = performance.now();
        o.onProgress(counts.objects_scanned);
      }
    }
  }
  return { ms: performance.now() - t0, counts };
}

async function main(): Promise<void> {
  const o = JSON.parse(process.argv[2] ?? '') as RawLocalOptions;
  const backend = await LocalBackend.open({ dir: o.dir });
  try {
    process.stdout.write('ready\n');
    const lines = createInterface({ input: process.stdin });
    await new Promise<void>((resolve, reject) => {
      lines.once('line', () => resolve());
      lines.once('close', () => reject(new Error('stdin closed before the go line')));
    });
    lines.close();
    const cpu0 = process.cpuUsage();
    const r = rawLocalLoop(backend, o);
    const cpu = process.cpuUsage(cpu0);
    process.stdout.write(`${JSON.stringify({ ...r, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
  } finally {
    await backend.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`raw-local: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
