/**
 * Child process of test/bench/s3.ts: starts ONE server and prints `{"url":…}` when it listens.
 *   s3-servers.ts gateway <dir> <objects>   sluice gateway over a local backend in <dir>, seeded with
 *                                          <objects> keys `prefix/<n>` in bucket `bench` (through the binding)
 *   s3-servers.ts s3rver <dir>              s3rver (run with --openssl-legacy-provider to page past 1,000 keys)
 *   s3-servers.ts stub <objects>            a floor: answers ListObjectsV2 from precomputed pages, no auth
 * Each server runs in its own process so that the client in the parent never shares a core with it.
 */
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { LocalBackend } from '../../bindings/local/index.ts';
import { startS3Gateway } from '../../controller/s3/index.ts';

/** The gateway's key in the benchmark (s3rver has its own fixed S3RVER/S3RVER). */
const BENCH_KEY = { accessKeyId: 'BENCHKEY', secretAccessKey: 'bench-secret-key' } as const;
const [mode, arg1, arg2] = process.argv.slice(2);

function keys(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `prefix/${String(i).padStart(6, '0')}`);
}

if (mode === 'gateway') {
  const backend = await LocalBackend.open({ dir: arg1! });
  await backend.createBucket('bench');
  await backend.createBucket('io');
  const b = await backend.objects('bench');
  const all = keys(Number(arg2));
  for (let i = 0; i < all.length; i += 64) await Promise.all(all.slice(i, i + 64).map((k) => b.put(k, 'x')));
  const gw = await startS3Gateway({ backend, address: '127.0.0.1:0', credentials: [BENCH_KEY] });
  // Exit normally on SIGTERM so that `--cpu-prof` writes its profile.
  process.once('SIGTERM', () => process.exit(0));
  process.stdout.write(`${JSON.stringify({ url: gw.url })}\n`);
} else if (mode === 's3rver') {
  // s3rver ships no types; load it untyped and describe the two members used.
  const S3rver = createRequire(import.meta.url)('s3rver') as new (o: object) => { run(): Promise<{ port: number }> };
  const s = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: arg1, configureBuckets: [{ name: 'bench' }, { name: 'io' }] });
  const a = await s.run();
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${a.port}` })}\n`);
} else if (mode === 'stub') {
  // Pages exactly as the gateway shapes them (1,000 keys, continuation token = next index), built once.
  const all = keys(Number(arg1));
  const now = new Date().toISOString();
  const page = (start: number, url: boolean): Buffer => {
    const slice = all.slice(start, start + 1000);
    const next = start + 1000 < all.length ? `<NextContinuationToken>${start + 1000}</NextContinuationToken>` : '';
    const contents = slice
      .map((k) => `<Contents><Key>${url ? encodeURIComponent(k).replace(/%2F/g, '/') : k}</Key><LastModified>${now}</LastModified><ETag>&quot;9dd4e461268c8034f5c8564e155c67a6&quot;</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>`)
      .join('');
    return Buffer.from(
      `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bench</Name><Prefix>prefix/</Prefix><Delimiter>/</Delimiter><MaxKeys>1000</MaxKeys>${url ? '<EncodingType>url</EncodingType>' : ''}<KeyCount>${slice.length}</KeyCount><IsTruncated>${next !== ''}</IsTruncated>${next}${contents}</ListBucketResult>`,
    );
  };
  const pages = new Map<string, Buffer>();
  for (let s = 0; s < all.length; s += 1000) for (const url of [false, true]) pages.set(`${s}:${url}`, page(s, url));
  const server = createServer((req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    const body = pages.get(`${Number(q.get('continuation-token') ?? 0)}:${q.get('encoding-type') === 'url'}`) ?? pages.get('0:false')!;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/xml', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => {
    const a = server.address() as { port: number };
    process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${a.port}` })}\n`);
  });
} else {
  process.stderr.write('usage: s3-servers.ts gateway <dir> <n> | s3rver <dir> | stub <n>\n');
  process.exit(2);
}
