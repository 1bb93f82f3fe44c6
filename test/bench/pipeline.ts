/**
 * Benchmark of an object pipeline: `functions/image-meta` on N (default 500) generated 1920×1080 JPEGs
 * (EXIF with camera, time and GPS), against a raw loop doing the same sharp + exif-reader work on the
 * same images with the same concurrency, in the same run. Result: images/s for each, and the ratio.
 * Target (issue 8): the worker ≥ 0.9× the raw loop.
 *
 * - Images: generated once per run (a gradient with deterministic noise, so JPEG sizes are realistic,
 *   ~200-400 KiB at quality 85), written to a temp directory, and uploaded to bucket `photos` (8 shards)
 *   of a fresh local data directory (`--backend nats`: a nats-server this bench starts on a random
 *   loopback port) — unmeasured.
 * - Worker: `Worker.start` in this process with the function's own settings (threads `--threads`,
 *   default 1 as in function.yaml; maxRecords 32; batchesInFlight threads × 2), timed until the function's counter `images`
 *   (readCounters over the checkpoints, polled every 50 ms) reaches N — from the moment `Worker.start`
 *   resolved (its threads have loaded the module: the raw loop's module load is not timed either) and,
 *   reported beside it, from the `start` call. The
 *   worker reads each body by path: `record.path()` materialises it from the store into a file, sharp
 *   opens the file (bodies are above the 64 KiB inline limit, so each is streamed from the bucket), and
 *   the committer writes the 7 attributes with the processed-marker.
 * - Raw loop: `describeImage` (the function's own sharp + exif-reader code: metadata, EXIF parse, an
 *   oriented 100 px JPEG thumbnail) on the same files in the temp directory, `threads × PARALLEL` at
 *   once (the handler runs PARALLEL = 8 images at once per batch, one batch per thread), in this process — no store, no commit, no file step.
 * - Raw loop with the file step: the same, but each body is first read from a bucket of the same store
 *   and written to a file by the runtime's ObjectFileCache (what `record.path()` does), to separate
 *   the file step from the rest of the runtime. Printed per round.
 * - Order: raw, raw with file step, worker; twice (each worker on its own bucket); reported per round and as the best
 *   of each, since the machine is shared and loaded.
 *
 * Run: `npx tsx test/bench/pipeline.ts [--n 500] [--threads 1] [--backend local|nats]`. Bounded: N
 * images, and each contender stops with an error after 10 minutes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import sharp from 'sharp';
import { ObjectFileCache } from '../../bindings/file/index.ts';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { Backend } from '../../bindings/types.ts';
import { describeImage, PARALLEL } from '../../functions/image-meta/index.ts';
import { exifOf } from '../../functions/image-meta/fixtures/make-fixtures.ts';
import { openStateTable, readCounters } from '../../runtime/state.ts';
import { Worker } from '../../runtime/worker.ts';
import { startNatsServer } from '../support/nats-server.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : dflt;
};
const N = Number(arg('n', '500'));
const THREADS = Number(arg('threads', '1'));
const BACKEND = arg('backend', 'local');
const LIMIT_MS = 10 * 60_000;
const W = 1920;
const H = 1080;
const module = fileURLToPath(new URL('../../functions/image-meta/index.ts', import.meta.url));
const log = (s: string) => process.stdout.write(`${s}\n`);

/** One 1920×1080 JPEG: gradient plus noise (seeded by `i`), with camera, time and a GPS position. */
async function image(i: number): Promise<Buffer> {
  const px = Buffer.alloc(W * H * 3);
  let s = (i + 1) * 2654435761;
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      const n = (s >>> 26) - 32;
      const o = (y * W + x) * 3;
      px[o] = Math.max(0, Math.min(255, ((x * 255) / W + n) | 0));
      px[o + 1] = Math.max(0, Math.min(255, ((y * 255) / H + n) | 0));
      px[o + 2] = Math.max(0, Math.min(255, ((i * 37) % 256) + n));
    }
  const exif = exifOf({ make: 'Canon', model: 'Canon EOS R5', taken: '2024:05:06 07:08:09', offset: '+02:00', lat: 40 + (i % 100) / 100, lon: -74 + (i % 50) / 100 });
  return sharp(px, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 85 }).withExif(exif).toBuffer();
}

/** The raw loop; with `file`, each image first goes through the worker's file step (store → file). */
async function raw(paths: string[], concurrency: number, file?: (i: number) => Promise<string>): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  const deadline = Date.now() + LIMIT_MS;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < paths.length) {
        if (Date.now() > deadline) throw new Error('raw loop ran past 10 minutes');
        const i = next++;
        const { attrs } = await describeImage(`img-${i}.jpg`, file ? await file(i) : (paths[i] as string));
        if (attrs.width !== W || attrs.latitude === undefined) throw new Error(`raw: wrong attributes for image ${i}`);
        done++;
      }
    }),
  );
  if (done !== paths.length) throw new Error('raw loop did not describe every image');
  return performance.now() - t0;
}

/** Worker timings (ms): from the start call, and from the moment `Worker.start` resolved (threads loaded). */
interface WorkerTimes {
  total: number;
  ready: number;
}

async function worker(backend: Backend, spec: { kind: 'local'; dir: string } | { kind: 'nats'; url: string }, bodies: Buffer[], round: number): Promise<WorkerTimes> {
  const bucket = `photos-${round}`;
  const fn = `image-meta-bench-${round}`;
  await backend.createBucket(bucket, { shards: 8 });
  const o = await backend.objects(bucket);
  for (let i = 0; i < bodies.length; i += 16) await Promise.all(bodies.slice(i, i + 16).map((b, j) => o.put(`img-${i + j}.jpg`, b, { contentType: 'image/jpeg' })));
  const state = await openStateTable(backend);
  const t0 = performance.now();
  const w = await Worker.start(
    {
      function: fn,
      module,
      trigger: { type: 'object', bucket, events: ['put'] },
      backend: spec,
      threads: THREADS,
      batchesInFlight: THREADS * 2,
      batch: { maxRecords: 32, maxWait: '50ms' },
      timeout: '120s',
      httpPort: -1,
    },
    { log: pino({ level: 'warn' }) },
  );
  const tReady = performance.now();
  try {
    const deadline = Date.now() + LIMIT_MS;
    let first: number | undefined;
    for (;;) {
      const c = await readCounters(state, fn, 8);
      if (first === undefined && (c.images ?? 0) > 0) {
        first = performance.now() - t0;
        log(`  worker round ${round}: Worker.start took ${(tReady - t0).toFixed(0)} ms (threads load tsx, sharp and the module); first images committed ${(first - (tReady - t0)).toFixed(0)} ms after`);
      }
      if ((c.images ?? 0) >= bodies.length) break;
      if ((c.failed ?? 0) > 0) throw new Error(`worker: ${c.failed} images failed`);
      if (Date.now() > deadline) throw new Error(`worker ran past 10 minutes (${c.images ?? 0} of ${bodies.length})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const end = performance.now();
    const ms = { total: end - t0, ready: end - tReady };
    // Spot check: the attributes really landed.
    const a = (await o.getAttrs('img-7.jpg')).attrs;
    if (a.width !== W || a.height !== H || !(a.thumbnail instanceof Uint8Array)) throw new Error('worker: attributes missing on img-7.jpg');
    return ms;
  } finally {
    await w.stop();
  }
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'sluice-bench-pipeline-'));
  let stopNats: (() => Promise<void>) | undefined;
  try {
    log(`pipeline bench: ${N} images ${W}×${H}, threads ${THREADS}, backend ${BACKEND}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} (2 cores, shared)`);
    const t0 = performance.now();
    const bodies: Buffer[] = [];
    const paths: string[] = [];
    for (let i = 0; i < N; i++) {
      const b = await image(i);
      bodies.push(b);
      const p = join(tmp, `img-${i}.jpg`);
      await writeFile(p, b);
      paths.push(p);
    }
    const mean = bodies.reduce((s, b) => s + b.byteLength, 0) / N;
    log(`generated in ${((performance.now() - t0) / 1000).toFixed(1)} s, mean ${(mean / 1024).toFixed(0)} KiB`);

    let backend: Backend;
    let spec: { kind: 'local'; dir: string } | { kind: 'nats'; url: string };
    if (BACKEND === 'nats') {
      const server = await startNatsServer();
      stopNats = () => server.stop();
      spec = { kind: 'nats', url: server.url };
      backend = await NatsBackend.open({ servers: server.url });
    } else {
      const dir = join(tmp, 'data');
      spec = { kind: 'local', dir };
      backend = await LocalBackend.open({ dir });
    }
    const rows: { round: number; raw: number; worker: number; workerTotal: number }[] = [];
    // A third contender separating the file step: the raw loop, but each body read from a bucket of the
    // same store and written to a file by the runtime's own ObjectFileCache first (as record.path() does).
    await backend.createBucket('raw-files', { shards: 8 });
    const rawBucket = await backend.objects('raw-files');
    for (let i = 0; i < N; i += 16) await Promise.all(bodies.slice(i, i + 16).map((b, j) => rawBucket.put(`img-${i + j}.jpg`, b)));
    try {
      for (const round of [1, 2]) {
        const r = await raw(paths, THREADS * PARALLEL);
        const cache = await ObjectFileCache.open({ dir: tmp });
        const rf = await raw(paths, THREADS * PARALLEL, (i) => cache.materialize('raw-files', `img-${i}.jpg`, { objects: rawBucket }));
        await cache.close();
        log(`  round ${round}: raw with the file step ${((N * 1000) / rf).toFixed(1)} images/s (raw ${((N * 1000) / r).toFixed(1)})`);
        const w = await worker(backend, spec, bodies, round);
        rows.push({ round, raw: (N * 1000) / r, worker: (N * 1000) / w.ready, workerTotal: (N * 1000) / w.total });
        log(
          `round ${round}: raw ${((N * 1000) / r).toFixed(1)} images/s; worker ${((N * 1000) / w.ready).toFixed(1)} images/s once started (ratio ${(r / w.ready).toFixed(2)}), ` +
            `${((N * 1000) / w.total).toFixed(1)} images/s including its start (ratio ${(r / w.total).toFixed(2)}); load ${loadavg()[0]!.toFixed(1)}`,
        );
      }
    } finally {
      await backend.close();
    }
    const bestRaw = Math.max(...rows.map((x) => x.raw));
    const bestWorker = Math.max(...rows.map((x) => x.worker));
    const bestTotal = Math.max(...rows.map((x) => x.workerTotal));
    log(`best: raw ${bestRaw.toFixed(1)} images/s, worker ${bestWorker.toFixed(1)} images/s once started (ratio ${(bestWorker / bestRaw).toFixed(2)}, target ≥ 0.9), ${bestTotal.toFixed(1)} including start (ratio ${(bestTotal / bestRaw).toFixed(2)})`);
  } finally {
    await stopNats?.();
    await rm(tmp, { recursive: true, force: true });
  }
}

await main();
