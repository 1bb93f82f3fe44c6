/**
 * The console as its own process (controller/console/main.ts, the Kubernetes entry) against a real
 * platform in this process: it reads status through the gRPC control API with the token and objects
 * from the backend; without the token it gives nothing. Plus redrive of a stream-trigger dead letter:
 * the original record is appended again to the function's trigger stream.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPlatform, type Platform } from '../../controller/platform.ts';
import { redriveDeadLetter } from '../../controller/redrive.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const handler = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const TOKEN = 'standalone-console-token-42';

let work: string;
let platform: Platform;
let child: ChildProcess | undefined;
let url = '';

describe('console/standalone', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'sluice-console-standalone-'));
    const dir = join(work, 'data');
    platform = await startPlatform({ backend: { kind: 'local', dir }, port: 0, tokens: [TOKEN] });
    await platform.backend.createBucket('uploads', { shards: 2 });
    await platform.controller.deploy(['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', '  name: counter', 'spec:', `  handler: ${handler}`, '  triggers:', '    - object:', '        bucket: uploads'].join('\n'), work);
    const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_TOKEN: TOKEN, SLUICE_SERVER: `127.0.0.1:${platform.server.port}`, SLUICE_BACKEND: dir, SLUICE_CONSOLE_ADDRESS: '127.0.0.1:0' };
    const p = spawn(process.execPath, ['--import', 'tsx', join(root, 'controller/console/main.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child = p;
    let out = '';
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`console did not start; stdout ${out}; stderr ${err}`)), 45_000);
      p.on('exit', (c) => (clearTimeout(t), reject(new Error(`console exited ${c}: ${err}`))));
      p.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const m = /"event":"ready","url":"([^"]+)"/.exec(out);
        if (m) (clearTimeout(t), resolve(m[1]!));
      });
    });
  }, 90_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    await platform?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('console/standalone - serves status through the control API with the token, nothing without it', async () => {
    expect((await fetch(new URL('api/functions', url))).status).toBe(401);
    const auth = { authorization: `Bearer ${TOKEN}` };
    const fns = await (async () => {
      for (let i = 0; i < 100; i++) {
        const r = (await (await fetch(new URL('api/functions', url), { headers: auth })).json()) as { functions: { name: string; revision: number; shards: unknown[] }[] };
        if (r.functions.length > 0) return r.functions;
        await new Promise((res) => setTimeout(res, 200));
      }
      throw new Error('no function sampled');
    })();
    expect(fns.map((f) => [f.name, f.revision, f.shards.length])).toEqual([['counter', 1, 2]]);
    expect(((await (await fetch(new URL('api/buckets', url), { headers: auth })).json()) as { buckets: string[] }).buckets).toEqual(['uploads']);
  });

  it('console/standalone - redrive of a stream dead letter appends the original record to the trigger stream again', async () => {
    const streams = platform.backend.streams();
    await streams.create('events', { shards: 2 });
    const [put] = await streams.putRecords('events', [{ data: 'payload-1', partitionKey: 'k1', headers: { a: 'b' } }]);
    if (!put?.ok) throw new Error('put failed');
    const out = await redriveDeadLetter(platform.backend, { function: 'f', source: 'events', shard: put.shard, seq: put.seq, key: 'k1' });
    expect(out.status).toBe('requeued');
    if (out.status !== 'requeued') return;
    expect(out.shard).toBe(put.shard);
    expect(out.seq).toBeGreaterThan(put.seq);
    const page = await streams.getRecords({ stream: 'events', shard: out.shard, seq: out.seq }, { limit: 1 });
    expect(Buffer.from(page.records[0]!.data).toString()).toBe('payload-1');
    expect(page.records[0]!.headers).toMatchObject({ a: 'b', 'sluice-redrive-of': `${put.shard}/${put.seq}` });
    expect(await redriveDeadLetter(platform.backend, { function: 'f', source: 'events', shard: put.shard, seq: 999, key: 'k1' })).toMatchObject({ status: 'gone' });
    expect(await redriveDeadLetter(platform.backend, { function: 'f', source: (await (await platform.backend.objects('uploads')).info()).changeStream, shard: 0, seq: 1, key: 'missing' })).toMatchObject({ status: 'gone' });
  });
});
