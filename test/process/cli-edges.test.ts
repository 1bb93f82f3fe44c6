/**
 * The CLI's rough edges, as real processes: bad JSON in `kv put` is SLUICE_VALUE_INVALID (exit 4);
 * `objects mb --shards abc` is bad usage (exit 2); `objects ls --json` keeps the next-page token and
 * `--token` continues from it; `objects rm`; `objects rb` (empty only, never a bucket in use); a folder upload with one oversized file reports every
 * file's outcome (text and --json) and exits 4; `sluice logs … | head` ends quietly (EPIPE).
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { LocalBackend } from '../../bindings/local/index.ts';
import { ExitCodes } from '../../controller/cli/context.ts';
import { childEnv, run, sluiceBin, startDev, until, type Dev } from '../support/sluice-process.ts';

const work = mkdtempSync(join(tmpdir(), 'sluice-edges-'));
const data = join(work, 'data');
let dev: Dev;
const sluice = (args: string[]) => run(['--data', data, '--server', dev.server, ...args]);

beforeAll(async () => {
  const fn = join(work, 'functions', 'chatty');
  mkdirSync(fn, { recursive: true });
  const handler = fileURLToPath(new URL('../fixtures/functions/chatty.ts', import.meta.url));
  writeFileSync(join(fn, 'function.yaml'), ['apiVersion: sluice.dev/v1', 'kind: Function', 'metadata:', '  name: chatty', 'spec:', `  handler: ${handler}`, '  triggers:', '    - object:', '        bucket: uploads', '  batch: {maxWait: 5ms}', ''].join('\n'));
  dev = await startDev({ data, cwd: work, extra: ['--functions', join(work, 'functions')] });
  await dev.waitFor(/deployed chatty \(revision 1\)/, 90_000);
}, 180_000);

afterAll(async () => {
  await dev?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('cli edges', () => {
  it.concurrent('cli edges - kv put with bad JSON is SLUICE_VALUE_INVALID, exit 4, and writes nothing', async ({ expect }) => {
    const [bad, arr, ok] = await Promise.all([
      sluice(['kv', 'put', 'notes', 'k', '{not json', '--create']),
      sluice(['kv', 'put', 'notes', 'k', '[1,2]', '--create']),
      sluice(['kv', 'put', 'notes', 'k2', '{"a":1}', '--create']),
    ]);
    expect(bad.code, bad.stderr).toBe(ExitCodes.invalid);
    expect(bad.stderr).toMatch(/not valid JSON.*\(SLUICE_VALUE_INVALID\)/);
    expect(arr.code).toBe(ExitCodes.invalid);
    expect(arr.stderr).toMatch(/must be a JSON object, got an array/);
    expect(ok.code, ok.stderr).toBe(ExitCodes.ok);
    expect((await sluice(['kv', 'get', 'notes', 'k'])).code).toBe(ExitCodes.notFound);
  }, 240_000);

  it.concurrent('cli edges - objects mb --shards abc (or 0) is bad usage, exit 2', async ({ expect }) => {
    const [abc, zero] = await Promise.all([sluice(['objects', 'mb', 'b1', '--shards', 'abc']), sluice(['objects', 'mb', 'b1', '--shards', '0'])]);
    expect(abc.code).toBe(ExitCodes.usage);
    expect(abc.stderr).toMatch(/--shards.*must be an integer/);
    expect(zero.code).toBe(ExitCodes.usage);
  }, 240_000);

  it.concurrent('cli edges - objects ls --json keeps the next-page token, --token continues; objects rm deletes', async ({ expect }) => {
    const b = await LocalBackend.open({ dir: data });
    try {
      await b.createBucket('paged', { shards: 1 });
      const o = await b.objects('paged');
      for (const k of ['a', 'b', 'c']) await o.put(k, new TextEncoder().encode(k));
    } finally {
      await b.close();
    }
    const p1 = await sluice(['objects', 'ls', 'paged', '--limit', '2', '--json']);
    expect(p1.code, p1.stderr).toBe(ExitCodes.ok);
    const page1 = JSON.parse(p1.stdout) as { objects: { key: string }[]; nextToken?: string };
    expect(page1.objects.map((x) => x.key)).toEqual(['a', 'b']);
    expect(typeof page1.nextToken).toBe('string');
    const p2 = JSON.parse((await sluice(['objects', 'ls', 'paged', '--limit', '2', '--token', page1.nextToken!, '--json'])).stdout) as { objects: { key: string }[]; nextToken?: string };
    expect(p2.objects.map((x) => x.key)).toEqual(['c']);
    expect(p2.nextToken).toBeUndefined();

    const rm = await sluice(['objects', 'rm', 'paged', 'a', 'b']);
    expect(rm.code, rm.stderr).toBe(ExitCodes.ok);
    expect(rm.stdout).toBe('deleted paged/a\ndeleted paged/b\n');
    const again = await sluice(['objects', 'rm', 'paged', 'a']);
    expect(again.code).toBe(ExitCodes.notFound);
    const left = JSON.parse((await sluice(['objects', 'ls', 'paged', '--json'])).stdout) as { objects: { key: string }[] };
    expect(left.objects.map((x) => x.key)).toEqual(['c']);
  }, 240_000);

  it.concurrent('cli edges - objects rb removes an empty bucket; refuses a full one (exit 7) and one a deployed function triggers on (exit 7)', async ({ expect }) => {
    const mb = await sluice(['objects', 'mb', 'to-remove', '--shards', '2']);
    expect(mb.code, mb.stderr).toBe(ExitCodes.ok);
    const put = await sluice(['objects', 'put', 'to-remove', fileURLToPath(import.meta.url)]);
    expect(put.code, put.stderr).toBe(ExitCodes.ok);
    const full = await sluice(['objects', 'rb', 'to-remove']);
    expect(full.code, full.stderr).toBe(ExitCodes.conflict);
    expect(full.stderr).toMatch(/still holds objects.*\(SLUICE_BUCKET_NOT_EMPTY\)/);
    const key = JSON.parse((await sluice(['objects', 'ls', 'to-remove', '--json'])).stdout) as { objects: { key: string }[] };
    expect((await sluice(['objects', 'rm', 'to-remove', key.objects[0]!.key])).code).toBe(ExitCodes.ok);
    const rb = await sluice(['objects', 'rb', 'to-remove']);
    expect(rb.code, rb.stderr).toBe(ExitCodes.ok);
    expect(rb.stdout).toBe('removed bucket to-remove\n');
    expect((await sluice(['objects', 'ls', 'to-remove'])).code).toBe(ExitCodes.notFound);
    expect((await sluice(['objects', 'rb', 'to-remove'])).code).toBe(ExitCodes.notFound);
    // `uploads` is chatty's trigger bucket (empty or not, it stays).
    const used = await sluice(['objects', 'rb', 'uploads']);
    expect(used.code, used.stderr).toBe(ExitCodes.conflict);
    expect(used.stderr).toMatch(/used by deployed function 'chatty' \(trigger\).*\(SLUICE_BUCKET_IN_USE\)/);
    expect((await sluice(['objects', 'ls', 'uploads'])).code).toBe(ExitCodes.ok);
  }, 240_000);

  it.concurrent('cli edges - a folder upload with one oversized file reports every file, exit 4 (text and --json)', async ({ expect }) => {
    const folder = join(work, 'up');
    mkdirSync(folder);
    writeFileSync(join(folder, 'a.txt'), 'alpha');
    writeFileSync(join(folder, 'c.txt'), 'gamma');
    // 65 MiB (sparse): past the 64 MiB an object holds.
    const fd = openSync(join(folder, 'b-big.bin'), 'w');
    ftruncateSync(fd, 65 * 1024 * 1024);
    closeSync(fd);
    const text = await sluice(['objects', 'put', 'uploads', folder, '--prefix', 'edge/']);
    expect(text.code, text.stderr).toBe(ExitCodes.invalid);
    const lines = text.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^put uploads\/edge\/a\.txt 5 bytes etag=\w+ version=\d+$/);
    expect(lines[1]).toMatch(/^failed uploads\/edge\/b-big\.bin 68157440 bytes: .*\(SLUICE_VALUE_TOO_LARGE\)$/);
    expect(lines[2]).toMatch(/^put uploads\/edge\/c\.txt 5 bytes/);
    expect(text.stderr).toMatch(/1 of 3 files were not uploaded: edge\/b-big\.bin/);
    const json = await sluice(['objects', 'put', 'uploads', folder, '--prefix', 'edge2/', '--json']);
    expect(json.code).toBe(ExitCodes.invalid);
    const res = JSON.parse(json.stdout) as { key: string; error?: { code: string } }[];
    expect(res.map((r) => [r.key, r.error?.code ?? 'ok'])).toEqual([
      ['edge2/a.txt', 'ok'],
      ['edge2/b-big.bin', 'SLUICE_VALUE_TOO_LARGE'],
      ['edge2/c.txt', 'ok'],
    ]);
    expect((JSON.parse(json.stderr) as { error: { code: string } }).error.code).toBe('SLUICE_VALUE_TOO_LARGE');
  }, 240_000);

  it.concurrent('cli edges - sluice logs | head ends quietly (EPIPE is the end of the output)', async ({ expect }) => {
    const b = await LocalBackend.open({ dir: data });
    try {
      const o = await b.objects('uploads');
      for (let i = 0; i < 10; i++) await o.put(`chat-${i}`, new TextEncoder().encode('x'));
    } finally {
      await b.close();
    }
    // 100 lines of 2 KB: more than a pipe holds, so the writes outlive `head`.
    await until('100 log lines', async () => {
      const r = await sluice(['logs', 'chatty', '--json']);
      return r.stdout.split('\n').length > 100 ? true : undefined;
    }, 90_000, 1000);
    const cmd = `set -o pipefail; '${process.execPath}' '${sluiceBin}' --data '${data}' --server ${dev.server} logs chatty | head -n 2`;
    const r = await run(['-c', cmd], { cmd: 'bash', cwd: work, env: childEnv() });
    expect(r.stdout.trim().split('\n')).toHaveLength(2);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  }, 240_000);
});
