/**
 * S3 gateway benchmark (outside CI; bounded in count and time). Run: `npx tsx test/bench/s3.ts`
 * (env BENCH_S3_OBJECTS, default 9000; BENCH_S3_AWS_RUNS, default 3; BENCH_S3_SDK_RUNS, default 7).
 * `npx tsx test/bench/s3.ts --only io` runs part 2 alone (no LIST seeding, no stub). With
 * BENCH_S3_CPU_PROF=<dir> the gateway process writes a CPU profile there when the bench ends.
 *
 * What it measures, each server in its own child process (test/bench/s3-servers.ts), the client here:
 * 1. LIST of 9,000 objects under `prefix/`: `/usr/bin/aws s3 ls s3://bench/prefix/ | wc -l` and an SDK v3
 *    ListObjectsV2 paging loop, against (a) the sluice gateway over the local backend, (b) s3rver (started
 *    with --openssl-legacy-provider, without which it cannot page past 1,000 keys on Node 20), (c) a stub
 *    that answers precomputed pages with no auth — the clients' own parsing floor, which no server beats.
 *    Reported as medians, and the gateway as a ratio to the floor.
 * 2. PUT then GET of 1 KiB objects with 32 requests in flight (SDK v3, keep-alive) against the gateway and
 *    s3rver, and the same through the Object binding in this process (the cost of the HTTP + SigV4 layer).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { createRequire } from 'node:module';
import { LocalBackend } from '../../bindings/local/index.ts';
import { signer } from '../support/s3.ts';

/** autocannon ships no types: the members used here. */
type Cannon = (o: object) => Promise<{ requests: { average: number }; latency: { p99: number }; non2xx: number; errors: number }>;
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon;

const N = Number(process.env.BENCH_S3_OBJECTS ?? 9000);
const AWS_RUNS = Number(process.env.BENCH_S3_AWS_RUNS ?? 3);
const SDK_RUNS = Number(process.env.BENCH_S3_SDK_RUNS ?? 7);
const IO_OPS = Number(process.env.BENCH_S3_IO_OPS ?? 3000);
const IO_MAX_MS = 20_000;
/** `--only io`: the PUT/GET part alone (for iterating on it). */
const ONLY_IO = process.argv.includes('--only') && process.argv[process.argv.indexOf('--only') + 1] === 'io';
const CPU_PROF = process.env.BENCH_S3_CPU_PROF;
const S3RVER_KEY = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
const GATEWAY_KEY = { accessKeyId: 'BENCHKEY', secretAccessKey: 'bench-secret-key' };
/** Credentials by server URL (the stub accepts anything). */
const keyOf = new Map<string, { accessKeyId: string; secretAccessKey: string }>();
const here = fileURLToPath(new URL('.', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'sluice-bench-s3-'));
const children: ChildProcess[] = [];

function start(args: string[], nodeFlags: string[] = []): Promise<string> {
  const p = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', join(here, 's3-servers.ts'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(p);
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`${args[0]} did not start`)), 300_000);
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const m = /"url":"([^"]+)"/.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    p.on('exit', (c) => reject(new Error(`${args[0]} exited with ${c}`)));
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function client(url: string): S3Client {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  return new S3Client({ endpoint: url, region: 'us-east-1', forcePathStyle: true, credentials: keyOf.get(url) ?? GATEWAY_KEY, requestHandler: new NodeHttpHandler({ httpAgent: agent }) });
}

async function sdkList(url: string): Promise<{ ms: number; keys: number }> {
  const c = client(url);
  const times: number[] = [];
  let keys = 0;
  for (let r = 0; r < SDK_RUNS + 1; r++) {
    const t0 = performance.now();
    let token: string | undefined;
    keys = 0;
    do {
      const p = await c.send(new ListObjectsV2Command({ Bucket: 'bench', Prefix: 'prefix/', ContinuationToken: token }));
      keys += p.Contents?.length ?? 0;
      token = p.NextContinuationToken;
    } while (token);
    if (r > 0) times.push(performance.now() - t0); // the first run warms the connection and the JIT
  }
  c.destroy();
  return { ms: median(times), keys };
}

const awsDir = mkdtempSync(join(work, 'aws-'));
writeFileSync(
  join(awsDir, 'credentials'),
  `[gateway]\naws_access_key_id = ${GATEWAY_KEY.accessKeyId}\naws_secret_access_key = ${GATEWAY_KEY.secretAccessKey}\n[s3rver]\naws_access_key_id = ${S3RVER_KEY.accessKeyId}\naws_secret_access_key = ${S3RVER_KEY.secretAccessKey}\n`,
);
writeFileSync(join(awsDir, 'config'), '[profile gateway]\nregion = us-east-1\n[profile s3rver]\nregion = us-east-1\n');
const awsEnv: NodeJS.ProcessEnv = { ...process.env, AWS_CONFIG_FILE: join(awsDir, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(awsDir, 'credentials'), AWS_EC2_METADATA_DISABLED: 'true' };
delete awsEnv.AWS_CA_BUNDLE;

function awsLs(url: string): Promise<{ ms: number; lines: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const profile = keyOf.get(url) === S3RVER_KEY ? 's3rver' : 'gateway';
    const p = spawn('/usr/bin/aws', ['--profile', profile, '--endpoint-url', url, 's3', 'ls', 's3://bench/prefix/'], { env: awsEnv, stdio: ['ignore', 'pipe', 'inherit'] });
    let lines = 0;
    p.stdout.on('data', (d: Buffer) => {
      for (const c of d) if (c === 10) lines++;
    });
    p.on('error', reject);
    p.on('exit', () => resolve({ ms: performance.now() - t0, lines }));
  });
}

async function awsList(url: string): Promise<{ ms: number; lines: number }> {
  const runs: { ms: number; lines: number }[] = [];
  for (let i = 0; i < AWS_RUNS; i++) runs.push(await awsLs(url));
  return { ms: median(runs.map((r) => r.ms)), lines: runs[0]!.lines };
}

/** `ops` calls of `fn(i)` with 32 in flight (stops early at IO_MAX_MS); ops/s. */
async function inFlight(ops: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      for (let i = next++; i < ops && performance.now() - t0 < IO_MAX_MS; i = next++) await fn(i);
    }),
  );
  return Math.min(next, ops) / ((performance.now() - t0) / 1000);
}

async function s3io(url: string): Promise<{ put: number; get: number }> {
  const c = client(url);
  const body = Buffer.alloc(1024, 'x');
  // Warm-up: connections and JIT.
  await inFlight(200, (i) => c.send(new PutObjectCommand({ Bucket: 'io', Key: `w/${i}`, Body: body })));
  const put = await inFlight(IO_OPS, (i) => c.send(new PutObjectCommand({ Bucket: 'io', Key: `k/${i % 1000}`, Body: body })));
  const get = await inFlight(IO_OPS, async (i) => {
    const r = await c.send(new GetObjectCommand({ Bucket: 'io', Key: `k/${i % 1000}` }));
    await r.Body!.transformToByteArray();
  });
  c.destroy();
  return { put, get };
}

/**
 * Server-bound PUT/GET: the SDK client costs more CPU per request than either server on this machine,
 * so the load also comes from autocannon (32 connections) replaying ONE SigV4-signed request — valid
 * for S3 within the 15-minute clock-skew window, and accepted by both servers.
 */
async function cannon(url: string, method: 'PUT' | 'GET', key: { accessKeyId: string; secretAccessKey: string }): Promise<{ rps: number; p99Ms: number; non2xx: number }> {
  const u = new URL(url);
  const path = '/io/cannon/k';
  const body = Buffer.alloc(1024, 'y');
  const headers: Record<string, string> = { host: u.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
  if (method === 'PUT') headers['content-type'] = 'application/octet-stream';
  const signed = await signer(key.secretAccessKey, key.accessKeyId).sign({ method, protocol: 'http:', hostname: u.hostname, port: Number(u.port), path, query: {}, headers });
  const r = await autocannon({ url: `${url}${path}`, method, connections: 32, duration: 5, headers: signed.headers as Record<string, string>, ...(method === 'PUT' ? { body: body.toString() } : {}) });
  if (r.errors > 0 || r.non2xx > 0) process.stderr.write(`${method} ${url}: ${r.errors} errors, ${r.non2xx} non-2xx\n`);
  return { rps: r.requests.average, p99Ms: r.latency.p99, non2xx: r.non2xx };
}

async function bindingIo(): Promise<{ put: number; get: number }> {
  const backend = await LocalBackend.open({ dir: join(work, 'binding') });
  await backend.createBucket('io');
  const b = await backend.objects('io');
  const body = Buffer.alloc(1024, 'x');
  await inFlight(200, (i) => b.put(`w/${i}`, body));
  const put = await inFlight(IO_OPS, (i) => b.put(`k/${i % 1000}`, body));
  const get = await inFlight(IO_OPS, (i) => b.get(`k/${i % 1000}`));
  await backend.close();
  return { put, get };
}

try {
  const objects = ONLY_IO ? 0 : N;
  const [gateway, s3rver, stub] = await Promise.all([
    start(['gateway', join(work, 'gw'), String(objects)], CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF] : []),
    start(['s3rver', join(work, 's3rver')], ['--openssl-legacy-provider']),
    ONLY_IO ? undefined : start(['stub', String(N)]),
  ]);
  keyOf.set(s3rver, S3RVER_KEY);
  // Seed s3rver through its own API (it has no other way in).
  const seed = client(s3rver);
  const keys = Array.from({ length: objects }, (_, i) => `prefix/${String(i).padStart(6, '0')}`);
  for (let i = 0; i < keys.length; i += 32) await Promise.all(keys.slice(i, i + 32).map((k) => seed.send(new PutObjectCommand({ Bucket: 'bench', Key: k, Body: 'x' }))));
  seed.destroy();

  const out: Record<string, unknown> = { objects, awsRuns: AWS_RUNS, sdkRuns: SDK_RUNS, ioOps: IO_OPS };
  if (stub !== undefined)
    for (const [name, url] of [
      ['stub', stub],
      ['gateway', gateway],
      ['s3rver', s3rver],
    ] as const) {
      out[`sdk_list_${name}`] = await sdkList(url);
      out[`aws_ls_${name}`] = await awsList(url);
      process.stderr.write(`${name} list done\n`);
    }
  out.io_gateway = await s3io(gateway);
  out.io_s3rver = await s3io(s3rver);
  out.io_binding = await bindingIo();
  for (const [name, url, key] of [
    ['gateway', gateway, GATEWAY_KEY],
    ['s3rver', s3rver, S3RVER_KEY],
  ] as const) {
    out[`cannon_put_${name}`] = await cannon(url, 'PUT', key);
    out[`cannon_get_${name}`] = await cannon(url, 'GET', key);
  }
  const r = (a: string, b: string, f: 'ms') => ((out[a] as Record<string, number>)[f]! / (out[b] as Record<string, number>)[f]!).toFixed(2);
  const rate = (k: string, f: 'rps' | 'put' | 'get') => (out[k] as Record<string, number>)[f]!;
  out.io_ratios = {
    cannon_put_gateway_over_s3rver: (rate('cannon_put_gateway', 'rps') / rate('cannon_put_s3rver', 'rps')).toFixed(2),
    cannon_get_gateway_over_s3rver: (rate('cannon_get_gateway', 'rps') / rate('cannon_get_s3rver', 'rps')).toFixed(2),
    sdk_put_gateway_over_s3rver: (rate('io_gateway', 'put') / rate('io_s3rver', 'put')).toFixed(2),
    sdk_get_gateway_over_s3rver: (rate('io_gateway', 'get') / rate('io_s3rver', 'get')).toFixed(2),
    cannon_put_gateway_over_binding: (rate('cannon_put_gateway', 'rps') / rate('io_binding', 'put')).toFixed(2),
    cannon_get_gateway_over_binding: (rate('cannon_get_gateway', 'rps') / rate('io_binding', 'get')).toFixed(2),
  };
  if (stub !== undefined) out.ratios = {
    sdk_gateway_over_floor: r('sdk_list_gateway', 'sdk_list_stub', 'ms'),
    sdk_s3rver_over_gateway: r('sdk_list_s3rver', 'sdk_list_gateway', 'ms'),
    aws_gateway_over_floor: r('aws_ls_gateway', 'aws_ls_stub', 'ms'),
    aws_s3rver_over_gateway: r('aws_ls_s3rver', 'aws_ls_gateway', 'ms'),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
} finally {
  for (const c of children) c.kill('SIGTERM');
  // A profiling gateway writes its profile on exit: wait for it.
  if (CPU_PROF) await new Promise((r) => (children[0]!.exitCode !== null ? r(undefined) : children[0]!.once('exit', r)));
  rmSync(work, { recursive: true, force: true });
}
