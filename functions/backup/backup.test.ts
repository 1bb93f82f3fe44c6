/**
 * The backup handler through the public harness, against a REAL S3-protocol server (s3rver, a child
 * process on loopback started here): copies land with the same bytes, attributes are declared only
 * after the copy, and a copy that cannot happen fails just its record (retried by the runtime).
 */
import { createHash, randomBytes } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3rver, S3rverCredentials, type S3rverHandle } from '../../test/support/s3rver.ts';
import { invokeHandler } from '../testing.ts';
import fn from './index.ts';
import { BackupSecrets } from './target.ts';

let s3: S3rverHandle;
let client: S3Client;

beforeAll(async () => {
  s3 = await startS3rver(['backups']);
  client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3rverCredentials });
}, 30_000);
afterAll(async () => {
  client?.destroy();
  await s3?.stop();
});

function secrets(over: Record<string, string> = {}): Record<string, string> {
  return {
    [BackupSecrets.endpoint]: s3.endpoint,
    [BackupSecrets.bucket]: 'backups',
    [BackupSecrets.region]: 'us-east-1',
    [BackupSecrets.accessKeyId]: S3rverCredentials.accessKeyId,
    [BackupSecrets.secretAccessKey]: S3rverCredentials.secretAccessKey,
    ...over,
  };
}

async function stored(key: string): Promise<{ body: Buffer; contentType: string | undefined; meta: Record<string, string> }> {
  const g = await client.send(new GetObjectCommand({ Bucket: 'backups', Key: key }));
  return { body: Buffer.from(await g.Body!.transformToByteArray()), contentType: g.ContentType, meta: g.Metadata ?? {} };
}

const md5 = (b: Uint8Array | string) => createHash('md5').update(b).digest('hex');

describe('backup', () => {
  it('backup - copies inline and non-inline bodies with the same bytes, then sets backed_up_etag and backed_up_at', async () => {
    const big = randomBytes(300_000);
    const before = Date.now();
    const r = await invokeHandler(
      fn,
      [
        { key: 'docs/a.txt', body: 'hello', contentType: 'text/plain' },
        { key: 'img/b.bin', body: big, inline: false },
        { key: 'empty', body: '' },
        { key: 'gone', type: 'delete' },
      ],
      { secrets: secrets() },
    );
    expect(r.error).toBeUndefined();
    for (const [key, body] of [['docs/a.txt', 'hello'], ['img/b.bin', big], ['empty', '']] as const) {
      const e = r.byKey(key)!;
      expect(e.failure, key).toBeUndefined();
      expect(e.set.backed_up_etag, key).toBe(md5(body));
      const at = Date.parse(String(e.set.backed_up_at));
      expect(at, key).toBeGreaterThanOrEqual(before - 1);
      expect(at, key).toBeLessThanOrEqual(Date.now());
      const s = await stored(key);
      expect(s.body.equals(Buffer.from(body)), key).toBe(true);
      expect(s.meta['sluice-etag'], key).toBe(md5(body));
    }
    expect((await stored('docs/a.txt')).contentType).toBe('text/plain');
    // A delete record is not backed up and declares nothing.
    expect(r.byKey('gone')).toEqual({ set: {}, remove: [], updates: [] });
    expect(r.counters).toEqual({ objects_backed_up: 3, bytes_backed_up: 5 + big.length });
  });

  it('backup - the backup-prefix secret puts a prefix before every copied key', async () => {
    const r = await invokeHandler(fn, [{ key: 'p.txt', body: 'prefixed' }], { secrets: secrets({ [BackupSecrets.prefix]: 'nightly/' }) });
    expect(r.error).toBeUndefined();
    expect((await stored('nightly/p.txt')).body.toString()).toBe('prefixed');
  });

  it('backup - a body that changed since selection (etag differs) is left unmarked for the next run, not failed', async () => {
    const r = await invokeHandler(fn, [{ key: 'moved.txt', body: 'new body', etag: md5('old body') }], { secrets: secrets() });
    expect(r.error).toBeUndefined();
    expect(r.byKey('moved.txt')).toEqual({ set: {}, remove: [], updates: [] });
    expect(r.counters).toEqual({ backup_changed_since_selection: 1 });
    await expect(client.send(new HeadObjectCommand({ Bucket: 'backups', Key: 'moved.txt' }))).rejects.toThrow();
  });

  it('backup - a copy the store refuses (unknown access key, missing bucket) fails only its record and sets no attribute', async () => {
    for (const over of [{ [BackupSecrets.accessKeyId]: 'WRONG' }, { [BackupSecrets.bucket]: 'no-such-bucket' }]) {
      const r = await invokeHandler(fn, [{ key: 'f1.txt', body: 'one' }, { key: 'f2.txt', body: 'two', inline: false }], { secrets: secrets(over) });
      expect(r.error).toBeUndefined();
      for (const key of ['f1.txt', 'f2.txt']) {
        const e = r.byKey(key)!;
        expect(e.set, key).toEqual({});
        expect(e.failure?.nonRetryable, key).toBe(false);
        expect(e.failure?.error.message.length, key).toBeGreaterThan(0);
      }
      expect(r.counters).toEqual({ backup_copy_failed: 2 });
    }
    // The error names no secret value.
    const r = await invokeHandler(fn, [{ key: 'f3.txt', body: 'x' }], { secrets: secrets({ [BackupSecrets.accessKeyId]: 'WRONG', [BackupSecrets.secretAccessKey]: 'sekrit-value-123' }) });
    expect(JSON.stringify(r)).not.toContain('sekrit-value-123');
  });

  it('backup - a store that is down fails the records (retryable), one good record beside them still copies', async () => {
    const down = await invokeHandler(fn, [{ key: 'd.txt', body: 'down' }], { secrets: secrets({ [BackupSecrets.endpoint]: 'http://127.0.0.1:1' }) });
    expect(down.byKey('d.txt')?.failure?.nonRetryable).toBe(false);
    expect(down.byKey('d.txt')?.set).toEqual({});
    const mixed = await invokeHandler(fn, [{ key: 'ok.txt', body: 'fine' }, { key: 'bad.txt', body: 'x', etag: 'not-its-md5' }], { secrets: secrets() });
    expect(mixed.byKey('ok.txt')?.set.backed_up_etag).toBe(md5('fine'));
    expect(mixed.byKey('bad.txt')?.set).toEqual({});
  });

  it('backup - a missing secret fails init with a non-retryable error naming the secret', async () => {
    const s = secrets();
    delete s[BackupSecrets.bucket];
    const r = await invokeHandler(fn, [{ key: 'x', body: 'x' }], { secrets: s });
    expect(r.error?.nonRetryable).toBe(true);
    expect(r.error?.error.message).toContain('backup-bucket');
  });
});
