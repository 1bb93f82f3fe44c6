/**
 * The CLI with the s3 body store: `$SLUICE_BODIES` (JSON) makes `sluice objects put/get` keep bodies in a
 * real s3rver; `sluice objects gc` removes orphaned bodies; a malformed value exits with the "invalid
 * input" code and names the variable.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { S3BodyStore } from '../../bindings/s3/index.ts';
import { ExitCodes } from '../../controller/cli/context.ts';
import { S3rverCredentials, startS3rver, type S3rverHandle } from '../support/s3rver.ts';

const sluiceBin = fileURLToPath(new URL('../../controller/cli/sluice.mjs', import.meta.url));
let server: S3rverHandle;
let dir: string;
let client: S3Client;

function sluice(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const e: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const k of Object.keys(e)) if (k.startsWith('SLUICE_')) delete e[k];
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [sluiceBin, '--data', join(dir, 'data'), ...args], { env: { ...e, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'sluice-body-cli-'));
  client = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3rverCredentials });
  await client.send(new CreateBucketCommand({ Bucket: 'cli-bodies' }));
}, 60_000);

afterAll(async () => {
  client?.destroy();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('bodies/cli - SLUICE_BODIES keeps the bodies of `sluice objects put` in S3 and `objects get` reads them back', async () => {
  const env = {
    SLUICE_BODIES: JSON.stringify({ kind: 's3', endpoint: server.endpoint, bucket: 'cli-bodies', accessKeyId: S3rverCredentials.accessKeyId, secretAccessKey: S3rverCredentials.secretAccessKey, inlineMaxBytes: 0 }),
  };
  const file = join(dir, 'a.txt');
  writeFileSync(file, 'hello from the cli');
  // The bucket in-process: each CLI start costs seconds on a loaded CI machine.
  const b = await LocalBackend.open({ dir: join(dir, 'data') });
  await b.createBucket('up');
  await b.close();
  const put = await sluice(['objects', 'put', 'up', file], env);
  expect(put.code, put.stderr).toBe(ExitCodes.ok);
  const listed = await client.send(new ListObjectsV2Command({ Bucket: 'cli-bodies', Prefix: 'up/' }));
  expect(listed.Contents ?? []).toHaveLength(1);
  const get = await sluice(['objects', 'get', 'up', 'a.txt'], env);
  expect(get.code, get.stderr).toBe(ExitCodes.ok);
  expect(get.stdout).toBe('hello from the cli');
  // Without the body store the CLI says why it cannot read the body.
  const plain = await sluice(['objects', 'get', 'up', 'a.txt'], {});
  expect(plain.code).toBe(ExitCodes.unavailable);
  expect(plain.stderr).toContain("option 'bodies'");

  // An orphan, as a crash between upload and commit leaves it; `objects gc` removes it and only it.
  const store = await S3BodyStore.open(JSON.parse(env.SLUICE_BODIES) as Parameters<typeof S3BodyStore.open>[0]);
  await store.put('up', 'a.txt', Buffer.from('orphan'));
  await store.close();
  const young = await sluice(['--json', 'objects', 'gc'], env);
  expect(young.code, young.stderr).toBe(ExitCodes.ok);
  expect(JSON.parse(young.stdout)).toMatchObject({ deleted: 0, young: 1 });
  const gc = await sluice(['objects', 'gc', '--grace', '1ms'], env);
  expect(gc.code, gc.stderr).toBe(ExitCodes.ok);
  expect(gc.stdout).toContain('removed 1 unreferenced');
  const left = (await client.send(new ListObjectsV2Command({ Bucket: 'cli-bodies', Prefix: 'up/' }))).Contents ?? [];
  expect(left.map((o) => o.Key)).toEqual((listed.Contents ?? []).map((o) => o.Key));
  const bad = await sluice(['objects', 'gc', '--grace', 'soon'], env);
  expect(bad.code).toBe(ExitCodes.invalid);
  expect(bad.stderr).toContain('--grace');
}, 120_000);

it('bodies/cli - a malformed SLUICE_BODIES exits with the invalid-input code and names the variable', async () => {
  const r = await sluice(['objects', 'ls', 'up'], { SLUICE_BODIES: '{not json' });
  expect(r.code).toBe(ExitCodes.invalid);
  expect(r.stderr).toContain('SLUICE_BODIES');
  const r2 = await sluice(['objects', 'ls', 'up'], { SLUICE_BODIES: '{"kind":"s3"}' });
  expect(r2.code).toBe(ExitCodes.invalid);
  expect(r2.stderr).toContain('endpoint');
}, 60_000);
