/**
 * `sluice dev --s3 0` end to end: the first output line names the S3 endpoint; `aws s3 cp` (aws-cli v2)
 * uploads a file holding an SSN through the gateway; the real scan-sensitive function, running in a worker
 * process that `sluice dev` started, sets `has_ssn = true`, which S3 clients then read as
 * `x-amz-meta-sluice-attr-has_ssn` — exactly as for a put through the binding.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevCredentials } from '../../controller/s3/index.ts';
import { awsEnv, run, until } from '../support/s3.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sluiceBin = join(root, 'controller/cli/sluice.mjs');
const KEY_ID = 'AKDEVTEST';
const SECRET = 'dev-test-secret-0123456789';

let work: string;
let dev: ChildProcess | undefined;
let out = '';
let endpoint = '';

describe('s3/dev', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'sluice-s3-dev-'));
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    for (const k of Object.keys(env)) if (k.startsWith('SLUICE_')) delete env[k];
    env.SLUICE_S3_ACCESS_KEY_ID = KEY_ID;
    env.SLUICE_S3_SECRET_ACCESS_KEY = SECRET;
    const p = spawn(process.execPath, [sluiceBin, 'dev', '--data', join(work, 'data'), '--port', '0', '--s3', '0', '--functions', join(root, 'functions')], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    dev = p;
    let err = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-8000)));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`sluice dev did not start in 60 s; stdout: ${out}; stderr: ${err}`)), 60_000);
      p.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (/deployed scan-sensitive/.test(out)) {
          clearTimeout(t);
          resolve();
        }
      });
      p.on('exit', (c) => {
        clearTimeout(t);
        reject(new Error(`sluice dev exited with ${c}; stdout: ${out}; stderr: ${err}`));
      });
    });
    const first = out.split('\n')[0]!;
    const m = /^sluice dev: .*S3 on (http:\/\/127\.0\.0\.1:\d+) \(keys from \$SLUICE_S3_ACCESS_KEY_ID/.exec(first);
    expect(m, first).not.toBeNull();
    endpoint = m![1]!;
  }, 90_000);

  afterAll(async () => {
    if (dev && dev.exitCode === null) {
      const exited = new Promise((r) => dev!.once('exit', r));
      dev.kill('SIGTERM');
      const t = setTimeout(() => dev?.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    }
    if (work) rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it('s3/dev - aws s3 cp of a file holding an SSN ends with has_ssn = true set by scan-sensitive', async () => {
    const env = awsEnv(mkdtempSync(join(work, 'aws-')), SECRET, KEY_ID);
    const file = join(work, 'letter.txt');
    writeFileSync(file, 'Dear HR, my social security number is 123-45-6789. Thanks.\n');
    const clean = join(work, 'clean.txt');
    writeFileSync(clean, 'Nothing to see here.\n');
    for (const [f, k] of [
      [file, 'letter.txt'],
      [clean, 'clean.txt'],
    ] as const) {
      const r = await run('/usr/bin/aws', ['--endpoint-url', endpoint, 's3', 'cp', '--only-show-errors', f, `s3://uploads/s3/${k}`], env);
      expect(r.code, r.stderr).toBe(0);
    }
    const s3 = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET } });
    const meta = await until(
      'scan-sensitive to set has_ssn on both uploads',
      async () => {
        const heads = await Promise.all(['letter.txt', 'clean.txt'].map((k) => s3.send(new HeadObjectCommand({ Bucket: 'uploads', Key: `s3/${k}` }))));
        return heads.every((h) => h.Metadata?.['sluice-attr-has_ssn'] !== undefined) ? heads.map((h) => h.Metadata) : undefined;
      },
      60_000,
    );
    expect(meta[0]).toMatchObject({ 'sluice-attr-has_ssn': 'true', 'sluice-attr-has_ccard': 'false' });
    expect(meta[1]).toMatchObject({ 'sluice-attr-has_ssn': 'false' });
    // The processed-marker the runtime keeps on the object is internal: no client ever sees it.
    expect(Object.keys(meta[0]!).some((k) => k.includes('$') || k.includes('scan-sensitive'))).toBe(false);
    const head = await run('/usr/bin/aws', ['--endpoint-url', endpoint, 's3api', 'head-object', '--bucket', 'uploads', '--key', 's3/letter.txt'], env);
    expect(head.code, head.stderr).toBe(0);
    expect((JSON.parse(head.stdout) as { Metadata: Record<string, string> }).Metadata['sluice-attr-has_ssn']).toBe('true');
    s3.destroy();
  }, 120_000);

  it('s3/dev - the standalone entry (controller/s3/main.ts) serves a credentials file over the same data', async () => {
    const creds = join(work, 'keys.yaml');
    writeFileSync(creds, `- accessKeyId: ${KEY_ID}\n  secretAccessKey: ${SECRET}\n  access: read\n`);
    const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_BACKEND: join(work, 'data'), SLUICE_S3_ADDRESS: '127.0.0.1:0', SLUICE_S3_CREDENTIALS_FILE: creds };
    const p = spawn(process.execPath, ['--import', 'tsx', join(root, 'controller/s3/main.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let buf = '';
      const url = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`main.ts did not start: ${buf}`)), 30_000);
        p.stdout.setEncoding('utf8').on('data', (d: string) => {
          buf += d;
          const m = /"url":"([^"]+)"/.exec(buf);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        });
        p.stderr.setEncoding('utf8').on('data', (d: string) => (buf += d));
      });
      const s3 = new S3Client({ endpoint: url, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET } });
      const h = await s3.send(new HeadObjectCommand({ Bucket: 'uploads', Key: 's3/letter.txt' }));
      expect(h.Metadata?.['sluice-attr-has_ssn']).toBe('true');
      s3.destroy();
    } finally {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    }
  }, 60_000);

  it('s3/dev - without the environment pair, a key pair is generated once and kept with mode 0600', () => {
    const dir = join(work, 'gen');
    const a = ensureDevCredentials(dir, {});
    const b = ensureDevCredentials(dir, {});
    expect(b.credential).toEqual(a.credential);
    expect(a.source).toBe(join(dir, 's3-credentials.json'));
    expect(statSync(a.source).mode & 0o777).toBe(0o600);
    expect(() => ensureDevCredentials(dir, { SLUICE_S3_ACCESS_KEY_ID: 'x' })).toThrow(/both/);
  });
});
