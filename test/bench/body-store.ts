/**
 * Benchmark of the s3 body store: put and get of 1 KiB and 1 MiB objects through the Object binding with
 * bodies in S3 (s3rver, `inlineMaxBytes: 0`), beside the same backend with its native body store
 * (LMDB inline / NATS KV + Object Store) and beside the raw S3 server (SDK PutObject / GetObject of the
 * same bodies to the same s3rver), all in the same run.
 *
 * Output: a markdown table (stdout) of ops/s and MiB/s per case, with the ratio s3-store / native and
 * s3-store / raw-S3. Progress on stderr.
 *
 * Bounds: per case N ops (1 KiB: 400, 1 MiB: 40), 16 in flight, and a 30 s budget per phase after which
 * no more operations start (the row then says so). Needs nats-server on PATH.
 *
 * Run: npx tsx test/bench/body-store.ts
 */
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BodyStoreOptions } from '../../bindings/body-store.ts';
import { LocalBackend } from '../../bindings/local/index.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import type { Backend } from '../../bindings/types.ts';
import { startNatsServer } from '../support/nats-server.ts';
import { S3rverCredentials, startS3rver } from '../support/s3rver.ts';

const IN_FLIGHT = 16;
const BUDGET_MS = 30_000;
const SIZES = [
  { label: '1 KiB', bytes: 1024, n: 400 },
  { label: '1 MiB', bytes: 1024 * 1024, n: 40 },
];

interface Phase {
  opsPerS: number;
  done: number;
  cut: boolean;
}

/** Runs `op(i)` for i < n with IN_FLIGHT lanes; stops starting new ops after the budget. */
async function phase(n: number, op: (i: number) => Promise<unknown>): Promise<Phase> {
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < n && performance.now() - t0 < BUDGET_MS) {
      const i = next++;
      await op(i);
      done++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const s = (performance.now() - t0) / 1000;
  return { opsPerS: done / s, done, cut: done < n };
}

const log = (s: string) => process.stderr.write(`${s}\n`);

const s3 = await startS3rver();
const nats = await startNatsServer();
const dirs: string[] = [];
const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3rverCredentials, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
await client.send(new CreateBucketCommand({ Bucket: 'bodies' }));
await client.send(new CreateBucketCommand({ Bucket: 'raw' }));
const bodies: BodyStoreOptions = { kind: 's3', endpoint: s3.endpoint, bucket: 'bodies', accessKeyId: S3rverCredentials.accessKeyId, secretAccessKey: S3rverCredentials.secretAccessKey, inlineMaxBytes: 0, gcIntervalMs: 0 };

const open = async (name: string): Promise<Backend> => {
  if (name.startsWith('local')) {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-bench-bodies-'));
    dirs.push(dir);
    return LocalBackend.open({ dir, ...(name.endsWith('+s3') ? { bodies } : {}) });
  }
  return NatsBackend.open({ servers: nats.url, ...(name.endsWith('+s3') ? { bodies } : {}) });
};

const rows: string[] = [];
const results = new Map<string, Phase>();
try {
  for (const size of SIZES) {
    const body = randomBytes(size.bytes);
    const raw = { put: await phase(size.n, (i) => client.send(new PutObjectCommand({ Bucket: 'raw', Key: `r${size.bytes}/${i}`, Body: body, ContentLength: body.byteLength }))) } as Record<string, Phase>;
    raw.get = await phase(size.n, async (i) => (await client.send(new GetObjectCommand({ Bucket: 'raw', Key: `r${size.bytes}/${i}` }))).Body!.transformToByteArray());
    log(`raw s3 ${size.label}: put ${raw.put!.opsPerS.toFixed(0)}/s get ${raw.get!.opsPerS.toFixed(0)}/s`);
    for (const name of ['local', 'local+s3', 'nats', 'nats+s3']) {
      const b = await open(name);
      const bucket = `bench-${size.bytes}-${name.replace('+', '-')}`;
      await b.createBucket(bucket);
      const o = await b.objects(bucket);
      const put = await phase(size.n, (i) => o.put(`k${i}`, body));
      const get = await phase(Math.min(size.n, put.done), (i) => o.get(`k${i}`));
      results.set(`${name} ${size.label} put`, put);
      results.set(`${name} ${size.label} get`, get);
      log(`${name} ${size.label}: put ${put.opsPerS.toFixed(0)}/s get ${get.opsPerS.toFixed(0)}/s`);
      await b.close();
    }
    for (const op of ['put', 'get'] as const) {
      for (const backend of ['local', 'nats']) {
        const native = results.get(`${backend} ${size.label} ${op}`)!;
        const ext = results.get(`${backend}+s3 ${size.label} ${op}`)!;
        const r = raw[op]!;
        const mib = (p: Phase) => ((p.opsPerS * size.bytes) / 2 ** 20).toFixed(1);
        const cut = [native, ext, r].some((p) => p.cut) ? ' (budget hit)' : '';
        rows.push(
          `| ${op} ${size.label} | ${backend} | ${native.opsPerS.toFixed(0)} (${mib(native)} MiB/s) | ${ext.opsPerS.toFixed(0)} (${mib(ext)} MiB/s) | ${r.opsPerS.toFixed(0)} | ${(ext.opsPerS / native.opsPerS).toFixed(2)}× | ${(ext.opsPerS / r.opsPerS).toFixed(2)}×${cut} |`,
        );
      }
    }
  }
  console.log(`| op | backend | native body store ops/s | s3 body store ops/s | raw s3rver ops/s | s3 / native | s3 / raw |`);
  console.log(`|---|---|---|---|---|---|---|`);
  for (const r of rows) console.log(r);
} finally {
  client.destroy();
  await nats.stop();
  await s3.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
}
