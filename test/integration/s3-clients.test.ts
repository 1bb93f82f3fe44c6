/**
 * The S3 gateway driven by the real command-line clients users run — aws-cli v2 (/usr/bin/aws), s3cmd and
 * rclone — each with a temp config against a gateway on loopback over the local backend: make bucket,
 * small and 20 MiB multipart uploads, listing with a delimiter and paging over 2,500 keys, ranged and
 * conditional reads, server-side copy, batch delete, presigned URLs fetched with plain fetch, and a wrong
 * secret (and an unsigned request) refused. The clients run concurrently to keep the file short.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import type { Backend } from '../../bindings/types.ts';
import type { S3Gateway } from '../../controller/s3/index.ts';
import { s3Etag } from '../../controller/s3/object-meta.ts';
import { aws, awsEnv, putMany, rcloneConfig, run, s3cmdConfig, startTestGateway, toolEnv } from '../support/s3.ts';

const MiB = 1024 * 1024;
let dir: string;
let backend: Backend;
let gw: S3Gateway;
let small: string;
let big: string;
let bigMd5: string;
const LIST = 'clients-list';

/** The S3 ETag the gateway answers for an object (what HEAD returns). */
async function gatewayEtag(bucket: string, key: string): Promise<string> {
  const h = await (await backend.objects(bucket)).head(key, { internal: true });
  return h ? s3Etag(h) : '';
}

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.trim() !== '');
}

describe('s3/clients', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-s3-clients-'));
    backend = await LocalBackend.open({ dir: join(dir, 'data') });
    gw = await startTestGateway(backend);
    small = join(dir, 'small.txt');
    writeFileSync(small, 'hello from a real client\n');
    big = join(dir, 'big.bin');
    const data = randomBytes(20 * MiB);
    writeFileSync(big, data);
    bigMd5 = createHash('md5').update(data).digest('hex');
    // 2,500 keys under p/ plus one sub-prefix: every client lists them page by page (1,000 a page).
    await backend.createBucket(LIST);
    const objects = await backend.objects(LIST);
    await putMany((k) => objects.put(k, 'v'), [...Array.from({ length: 2500 }, (_, i) => `p/k${String(i).padStart(5, '0')}`), 'p/sub/a', 'p/sub/b']);
  });
  afterAll(async () => {
    await gw?.close();
    await backend?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.concurrent('s3/clients - aws-cli v2: mb, cp small and 20 MiB multipart, ls over 2,500 keys, range, conditional, copy, batch delete, presign, refusals', async ({ expect }) => {
    const env = awsEnv(mkdtempSync(join(dir, 'aws-')));
    const ok = async (args: string[]) => {
      const r = await aws(gw, env, args);
      expect(r.code, `aws ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    await ok(['s3', 'mb', 's3://aws-bucket']);
    await ok(['s3', 'cp', '--only-show-errors', small, 's3://aws-bucket/dir/small.txt']);
    await ok(['s3', 'cp', '--only-show-errors', big, 's3://aws-bucket/big.bin']);
    const head = JSON.parse(await ok(['s3api', 'head-object', '--bucket', 'aws-bucket', '--key', 'big.bin'])) as { ETag: string; ContentLength: number };
    expect(head.ContentLength).toBe(20 * MiB);
    expect(head.ETag).toMatch(/^"[0-9a-f]{32}-3"$/);
    const back = join(dir, 'aws-big.bin');
    await ok(['s3', 'cp', '--only-show-errors', 's3://aws-bucket/big.bin', back]);
    expect(createHash('md5').update(readFileSync(back)).digest('hex')).toBe(bigMd5);
    const ls = lines(await ok(['s3', 'ls', `s3://${LIST}/p/`]));
    expect(ls.length).toBe(2501);
    expect(ls.filter((l) => /PRE sub\/$/.test(l)).length).toBe(1);
    const part = join(dir, 'aws-range.txt');
    await ok(['s3api', 'get-object', '--bucket', 'aws-bucket', '--key', 'dir/small.txt', '--range', 'bytes=6-9', part]);
    expect(readFileSync(part, 'utf8')).toBe('from');
    const etag = `"${createHash('md5').update(readFileSync(small)).digest('hex')}"`;
    const nm = await aws(gw, env, ['s3api', 'get-object', '--bucket', 'aws-bucket', '--key', 'dir/small.txt', '--if-none-match', etag, join(dir, 'aws-nm.txt')]);
    expect(nm.code).not.toBe(0);
    expect(nm.stderr).toMatch(/304|Not Modified/);
    await ok(['s3', 'cp', '--only-show-errors', 's3://aws-bucket/dir/small.txt', 's3://aws-bucket/dir/copy.txt']);
    const url = (await ok(['s3', 'presign', 's3://aws-bucket/dir/copy.txt', '--expires-in', '300'])).trim();
    const got = await fetch(url);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe('hello from a real client\n');
    const del = JSON.parse(await ok(['s3api', 'delete-objects', '--bucket', 'aws-bucket', '--delete', JSON.stringify({ Objects: [{ Key: 'dir/small.txt' }, { Key: 'dir/copy.txt' }] })])) as { Deleted: unknown[] };
    expect(del.Deleted.length).toBe(2);
    expect((await (await backend.objects('aws-bucket')).list({ prefix: 'dir/' })).objects).toEqual([]);
    const wrong = await aws(gw, awsEnv(mkdtempSync(join(dir, 'aws-bad-')), 'not-the-right-secret'), ['s3', 'ls', 's3://aws-bucket']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain('SignatureDoesNotMatch');
    const anon = await aws(gw, env, ['--no-sign-request', 's3', 'ls', 's3://aws-bucket']);
    expect(anon.code).not.toBe(0);
    expect(anon.stderr).toContain('AccessDenied');
  }, 180_000);

  it.concurrent('s3/clients - s3cmd: mb, put small and 20 MiB multipart, ls over 2,500 keys, copy, batch delete, wrong secret', async ({ expect }) => {
    const cfg = s3cmdConfig(dir, gw);
    const env = toolEnv();
    const ok = async (args: string[]) => {
      const r = await run('s3cmd', ['-c', cfg, '--no-progress', ...args], env);
      expect(r.code, `s3cmd ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    await ok(['mb', 's3://s3cmd-bucket']);
    expect(await ok(['ls'])).toContain('s3://s3cmd-bucket');
    await ok(['put', small, 's3://s3cmd-bucket/dir/small.txt']);
    await ok(['put', big, 's3://s3cmd-bucket/big.bin']);
    const info = await ok(['info', 's3://s3cmd-bucket/big.bin']);
    expect(info).toMatch(/File size:\s+20971520/);
    // s3cmd shows its own MD5 attribute; the stored S3 ETag tells that the upload went in 3 parts.
    expect((await gatewayEtag('s3cmd-bucket', 'big.bin'))).toMatch(/^[0-9a-f]{32}-3$/);
    const back = join(dir, 's3cmd-big.bin');
    await ok(['get', '--force', 's3://s3cmd-bucket/big.bin', back]);
    expect(createHash('md5').update(readFileSync(back)).digest('hex')).toBe(bigMd5);
    const ls = lines(await ok(['ls', `s3://${LIST}/p/`]));
    expect(ls.length).toBe(2501);
    expect(ls.some((l) => /DIR\s+s3:\/\/clients-list\/p\/sub\/$/.test(l))).toBe(true);
    await ok(['cp', 's3://s3cmd-bucket/dir/small.txt', 's3://s3cmd-bucket/dir/copy.txt']);
    const got = join(dir, 's3cmd-copy.txt');
    await ok(['get', '--force', 's3://s3cmd-bucket/dir/copy.txt', got]);
    expect(readFileSync(got, 'utf8')).toBe('hello from a real client\n');
    await ok(['del', '--recursive', '--force', 's3://s3cmd-bucket/dir/']);
    expect(lines(await ok(['ls', 's3://s3cmd-bucket/dir/']))).toEqual([]);
    const wrong = await run('s3cmd', ['-c', s3cmdConfig(dir, gw, 'not-the-right-secret'), 'ls', 's3://s3cmd-bucket'], env);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr + wrong.stdout).toMatch(/SignatureDoesNotMatch|403/);
  }, 120_000);

  it.concurrent('s3/clients - rclone: mkdir, copy small and 20 MiB multipart, lsf over 2,500 keys (v1 markers), range, server-side copy, link, wrong secret', async ({ expect }) => {
    const cfg = rcloneConfig(dir, gw);
    const env = toolEnv();
    const ok = async (args: string[]) => {
      const r = await run('rclone', ['--config', cfg, ...args], env);
      expect(r.code, `rclone ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    await ok(['mkdir', 'gw:rclone-bucket']);
    await ok(['copyto', small, 'gw:rclone-bucket/dir/small.txt']);
    // Lower the multipart cutoff so the 20 MiB file goes up in 5 MiB parts.
    await ok(['copyto', '--s3-upload-cutoff', '5M', '--s3-chunk-size', '5M', big, 'gw:rclone-bucket/big.bin']);
    await ok(['check', '--one-way', dir, 'gw:rclone-bucket', '--include', '/big.bin']);
    expect(await gatewayEtag('rclone-bucket', 'big.bin')).toMatch(/^[0-9a-f]{32}-4$/);
    expect(await ok(['md5sum', 'gw:rclone-bucket/big.bin'])).toContain(bigMd5);
    const lsf = lines(await ok(['lsf', `gw:${LIST}/p/`]));
    expect(lsf.length).toBe(2501);
    expect(lsf).toContain('sub/');
    expect(await ok(['cat', '--offset', '6', '--count', '4', 'gw:rclone-bucket/dir/small.txt'])).toBe('from');
    await ok(['copyto', 'gw:rclone-bucket/dir/small.txt', 'gw:rclone-bucket/dir/copy.txt']);
    expect(await ok(['cat', 'gw:rclone-bucket/dir/copy.txt'])).toBe('hello from a real client\n');
    const link = (await ok(['link', '--expire', '1h', 'gw:rclone-bucket/dir/copy.txt'])).trim();
    const got = await fetch(link);
    expect(got.status).toBe(200);
    expect(await got.text()).toBe('hello from a real client\n');
    await ok(['delete', 'gw:rclone-bucket/dir']);
    expect(lines(await ok(['lsf', 'gw:rclone-bucket/dir']))).toEqual([]);
    const wrong = await run('rclone', ['--config', rcloneConfig(dir, gw, 'not-the-right-secret'), '--retries', '1', '--low-level-retries', '1', 'lsf', 'gw:rclone-bucket'], env);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/SignatureDoesNotMatch|403/);
  }, 120_000);
});
