/**
 * Replication factor per bucket, table and stream, on a real 3-node JetStream cluster on loopback
 * (test/support/nats-server.ts `startNatsCluster`), and `sluice dev` given all three URLs.
 *
 * Checked: the factor asked for at creation (backend API and `--replicas` of the CLI) is exactly the
 * `num_replicas` of every JetStream stream behind the resource (a bucket's KV stream and its body
 * Object Store; a table's KV stream; a user stream); without one, the backend's default (R3: the
 * server is clustered); bad values are SLUICE_INVALID_ARGUMENT naming the resource and field, and the
 * CLI exits with the invalid-input code; reads see the writes just made on an R1 and an R3 bucket
 * (single-entry reads go to the leader on a cluster). Then `sluice dev --data nats://a,nats://b,nats://c`
 * runs a function that handles an upload made through the CLI.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BindingError } from '../../bindings/errors.ts';
import { NatsBackend } from '../../bindings/nats/index.ts';
import { NatsNames } from '../../bindings/nats/nats-names.ts';
import { ExitCodes } from '../../controller/cli/context.ts';
import { startNatsCluster, type NatsClusterHandle } from '../support/nats-server.ts';
import { childEnv, run, startDev, until } from '../support/sluice-process.ts';

const fixture = fileURLToPath(new URL('../fixtures/functions/rt-count.ts', import.meta.url));
const names = new NatsNames('sluice');
let cluster: NatsClusterHandle;
let backend: NatsBackend;
let nc: NatsConnection;
let jsm: JetStreamManager;
const work = mkdtempSync(join(tmpdir(), 'sluice-replicas-'));
const env = childEnv({ SLUICE_TOKEN: 'replicas-test-token' });

const replicasOf = async (stream: string) => (await jsm.streams.info(stream)).config.num_replicas;
const kvStreamOf = (kvBucket: string) => `KV_${kvBucket}`;
const objStreamOf = (store: string) => `OBJ_${store}`;

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  // The JetStream meta leader may still be in election: creating the meta bucket is retried.
  for (let i = 0; ; i++) {
    try {
      backend = await NatsBackend.open({ servers: cluster.urls });
      break;
    } catch (e) {
      if (i > 120) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  nc = await connect({ servers: cluster.urls.split(',') });
  jsm = await jetstreamManager(nc);
}, 120_000);

afterAll(async () => {
  await backend?.close();
  await nc?.close();
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('nats replicas', () => {
  it('replicas/nats - a bucket, table and stream get exactly the factor asked for; the default is R3 on a cluster', async () => {
    expect(backend.replicas).toBe(3);
    await backend.createBucket('r1', { shards: 2, replicas: 1 });
    await backend.createBucket('r3', { shards: 2, replicas: 3 });
    await backend.createBucket('rdefault', { shards: 2 });
    expect(await replicasOf(kvStreamOf(names.objectKv('r1')))).toBe(1);
    expect(await replicasOf(objStreamOf(names.bodyStore('r1')))).toBe(1);
    expect(await replicasOf(kvStreamOf(names.objectKv('r3')))).toBe(3);
    expect(await replicasOf(objStreamOf(names.bodyStore('r3')))).toBe(3);
    expect(await replicasOf(kvStreamOf(names.objectKv('rdefault')))).toBe(3);

    await backend.createTable('t1', { replicas: 1 });
    await backend.createTable('t2', { replicas: 2 });
    expect(await replicasOf(kvStreamOf(names.tableKv('t1')))).toBe(1);
    expect(await replicasOf(kvStreamOf(names.tableKv('t2')))).toBe(2);

    await backend.streams().create('s1', { shards: 2, replicas: 1 });
    await backend.streams().create('s3', { shards: 2, replicas: 3 });
    expect(await replicasOf(names.userStream('s1'))).toBe(1);
    expect(await replicasOf(names.userStream('s3'))).toBe(3);

    // Read-your-writes on both factors (the next read sees the write just acknowledged).
    for (const b of ['r1', 'r3']) {
      const o = await backend.objects(b);
      for (let i = 0; i < 20; i++) {
        await o.put(`k${i}`, `v${i}`);
        expect((await o.head(`k${i}`))?.size).toBe(`v${i}`.length);
      }
    }
    const t = await backend.kv('t1');
    await t.putItem('a', { n: 1 });
    expect((await t.getItem('a'))?.item).toEqual({ n: 1 });
  }, 60_000);

  it('replicas/nats - a factor outside 1..5 is SLUICE_INVALID_ARGUMENT naming the resource, and creates nothing', async () => {
    const cases: [string, () => Promise<unknown>][] = [
      ["bucket 'bad0'.replicas", () => backend.createBucket('bad0', { replicas: 0 })],
      ["bucket 'bad6'.replicas", () => backend.createBucket('bad6', { replicas: 6 })],
      ["table 'badt'.replicas", () => backend.createTable('badt', { replicas: 1.5 })],
      ["stream 'bads'.replicas", () => backend.streams().create('bads', { replicas: -1 })],
    ];
    for (const [path, call] of cases) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, path).toBeInstanceOf(BindingError);
      expect((err as BindingError).code).toBe('SLUICE_INVALID_ARGUMENT');
      expect((err as BindingError).message).toContain(path);
    }
    await expect(backend.objects('bad0')).rejects.toMatchObject({ code: 'SLUICE_BUCKET_NOT_FOUND' });
    await expect(backend.createTable('badt2', { unknown: 1 } as never)).rejects.toMatchObject({ code: 'SLUICE_INVALID_ARGUMENT' });
  });

  it('replicas/cli - --replicas on objects mb, kv put --create and stream put --create; a bad value exits with the invalid-input code', async () => {
    const data = ['--data', cluster.urls];
    const mb = await run([...data, 'objects', 'mb', 'cli1', '--shards', '2', '--replicas', '1'], { env });
    expect(mb.code, mb.stderr).toBe(0);
    expect(await replicasOf(kvStreamOf(names.objectKv('cli1')))).toBe(1);
    const kv = await run([...data, 'kv', 'put', 'clit', 'k', '{"a":1}', '--create', '--replicas', '1'], { env });
    expect(kv.code, kv.stderr).toBe(0);
    expect(await replicasOf(kvStreamOf(names.tableKv('clit')))).toBe(1);
    const st = await run([...data, 'stream', 'put', 'clis', 'x', '--create', '2', '--replicas', '3'], { env });
    expect(st.code, st.stderr).toBe(0);
    expect(await replicasOf(names.userStream('clis'))).toBe(3);
    const bad = await run([...data, 'objects', 'mb', 'cli9', '--replicas', '9'], { env });
    expect(bad.code).toBe(ExitCodes.invalid);
    expect(bad.stderr).toMatch(/bucket 'cli9'\.replicas must be an integer from 1 to 5.*SLUICE_INVALID_ARGUMENT/);
  }, 240_000);

  it('dev/nats cluster - sluice dev --data nats://a,nats://b,nats://c runs a function that handles an upload', async () => {
    const dir = join(work, 'fns', 'count');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'function.yaml'),
      `apiVersion: sluice.dev/v1
kind: Function
metadata: {name: clustered}
spec:
  handler: ${JSON.stringify(fixture)}
  backend: {kind: nats, url: ${JSON.stringify(cluster.urls)}}
  triggers: [{object: {bucket: devup, replicas: 3}}]
  batch: {maxWait: 5ms}
  concurrency: {threads: 0}
`,
    );
    const dev = await startDev({ data: cluster.urls, cwd: work, env, extra: ['--functions', join(work, 'fns'), '--no-ui', '--no-http', '--s3', '0', '--metrics', '127.0.0.1:0'] });
    try {
      // The watcher deploys the folder's function and creates its trigger bucket (R3, as declared).
      await until('the trigger bucket', async () => (await backend.objects('devup').then(() => true, () => undefined)), 90_000, 250);
      expect(await replicasOf(kvStreamOf(names.objectKv('devup')))).toBe(3);
      const file = join(work, 'hello.txt');
      writeFileSync(file, 'hello');
      await until(
        'the CLI upload',
        async () => {
          const up = await run(['--data', cluster.urls, 'objects', 'put', 'devup', file], { env });
          return up.code === 0 ? true : undefined;
        },
        120_000,
        500,
      );
      const o = await backend.objects('devup');
      await until('the handler to commit n = 1', async () => ((await o.getAttrs('hello.txt')).attrs.n === 1 ? true : undefined), 120_000, 200);
    } finally {
      await dev.stop();
    }
  }, 360_000);
});
