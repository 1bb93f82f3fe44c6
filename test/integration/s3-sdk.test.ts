/**
 * The S3 gateway driven by the real AWS SDK for JavaScript v3 (@aws-sdk/client-s3) on loopback, on both
 * backends (local LMDB, NATS JetStream): buckets, lists over 2,500 keys, ranged and conditional reads,
 * copy, batch delete, 20 MiB multipart with one change record, presigned URLs with plain fetch, every
 * refusal of bad auth, the payload modes (signed, unsigned, aws-chunked with chunk signatures, checksum
 * trailers), virtual-host addressing, and how function-set attributes show.
 */
import { createHash, createHmac } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { LocalBackend } from '../../bindings/local/index.ts';
import { Controller } from '../../controller/controller.ts';
import type { Driver } from '../../controller/driver.ts';
import { startS3Gateway } from '../../controller/s3/index.ts';
import type { S3Gateway } from '../../controller/s3/index.ts';
import { forEachBackend, tn } from '../conformance/backends.ts';
import { KEY, LIMITED, presign, putMany, READONLY, signer, startTestGateway, until } from '../support/s3.ts';

const MiB = 1024 * 1024;

function client(gw: S3Gateway, extra: Partial<S3ClientConfig> = {}, key: { accessKeyId: string; secretAccessKey: string } = KEY): S3Client {
  return new S3Client({ endpoint: gw.url, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey }, maxAttempts: 1, ...extra });
}

/** The HTTP status of a rejected SDK call (and its error name). */
async function status(p: Promise<unknown>): Promise<{ status: number | undefined; name: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as { $metadata?: { httpStatusCode?: number }; name: string; Code?: string };
    return { status: err.$metadata?.httpStatusCode, name: err.Code ?? err.name };
  }
  throw new Error('expected the call to fail');
}

/** A raw HTTP request (headers exactly as given, including Host). */
function raw(gw: S3Gateway, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: '127.0.0.1', port: gw.port, method, path, headers }, (res) => {
      let b = '';
      res.setEncoding('utf8').on('data', (d: string) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

/** Signs a request with the SDK's own signer; returns its headers (with Authorization). */
async function signed(gw: S3Gateway, method: string, path: string, headers: Record<string, string>, date = new Date()): Promise<Record<string, string>> {
  const r = await signer().sign({ method, protocol: 'http:', hostname: '127.0.0.1', port: gw.port, path, query: {}, headers: { host: `127.0.0.1:${gw.port}`, ...headers } }, { signingDate: date });
  return r.headers as Record<string, string>;
}

/** An aws-chunked body with chunk signatures chained from `seed` (the algorithm of the AWS docs). */
function chunkedBody(data: Buffer, chunk: number, seed: string, amzDate: string, tamper = false): Buffer {
  const day = amzDate.slice(0, 8);
  const scope = `${day}/us-east-1/s3/aws4_request`;
  let k: Buffer = createHmac('sha256', `AWS4${KEY.secretAccessKey}`).update(day).digest();
  for (const s of ['us-east-1', 's3', 'aws4_request']) k = createHmac('sha256', k).update(s).digest();
  const empty = createHash('sha256').update('').digest('hex');
  const parts: Buffer[] = [];
  let prev = seed;
  for (let off = 0; ; off += chunk) {
    const piece = data.subarray(off, Math.min(off + chunk, data.length));
    const sts = `AWS4-HMAC-SHA256-PAYLOAD\n${amzDate}\n${scope}\n${prev}\n${empty}\n${createHash('sha256').update(piece).digest('hex')}`;
    prev = createHmac('sha256', k).update(sts).digest('hex');
    const sent = tamper && off === 0 ? Buffer.from(piece).fill(0x7a, 0, 1) : piece;
    parts.push(Buffer.from(`${piece.length.toString(16)};chunk-signature=${prev}\r\n`), sent, Buffer.from('\r\n'));
    if (piece.length === 0) break;
  }
  return Buffer.concat(parts);
}

forEachBackend('s3/sdk', (ctx) => {
  let gw: S3Gateway;
  let s3: S3Client;
  let bucket: string;

  beforeAll(async () => {
    gw = await startTestGateway(ctx.backend);
    s3 = client(gw);
    bucket = ctx.uid('sdk');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  });
  afterAll(async () => {
    s3?.destroy();
    await gw?.close();
  });

  it(tn('s3/sdk', ctx, 'bucket lifecycle: create, head, list, location, versioning, BucketNotEmpty, delete, revive'), async () => {
    const b = ctx.uid('life');
    await s3.send(new CreateBucketCommand({ Bucket: b }));
    expect((await s3.send(new HeadBucketCommand({ Bucket: b }))).$metadata.httpStatusCode).toBe(200);
    expect((await s3.send(new ListBucketsCommand({}))).Buckets?.map((x) => x.Name)).toContain(b);
    expect((await s3.send(new GetBucketLocationCommand({ Bucket: b }))).LocationConstraint).toBeUndefined();
    expect((await s3.send(new GetBucketVersioningCommand({ Bucket: b }))).Status).toBeUndefined();
    expect(await status(s3.send(new CreateBucketCommand({ Bucket: b })))).toMatchObject({ status: 409, name: 'BucketAlreadyOwnedByYou' });
    await s3.send(new PutObjectCommand({ Bucket: b, Key: 'x', Body: 'x' }));
    expect(await status(s3.send(new DeleteBucketCommand({ Bucket: b })))).toMatchObject({ status: 409, name: 'BucketNotEmpty' });
    await s3.send(new DeleteObjectsCommand({ Bucket: b, Delete: { Objects: [{ Key: 'x' }] } }));
    await s3.send(new DeleteBucketCommand({ Bucket: b }));
    expect((await status(s3.send(new HeadBucketCommand({ Bucket: b })))).status).toBe(404);
    expect(await status(s3.send(new ListObjectsV2Command({ Bucket: b })))).toMatchObject({ status: 404, name: 'NoSuchBucket' });
    expect((await s3.send(new ListBucketsCommand({}))).Buckets?.map((x) => x.Name)).not.toContain(b);
    // Deleted in the backend too, not only hidden from S3 clients.
    expect((await ctx.backend.listBuckets()).map((x) => x.name)).not.toContain(b);
    await expect(ctx.backend.objects(b)).rejects.toMatchObject({ code: 'SLUICE_BUCKET_NOT_FOUND' });
    // A bucket made outside the gateway is listed at once.
    const outside = ctx.uid('outside');
    await ctx.backend.createBucket(outside, { shards: 1 });
    expect((await s3.send(new ListBucketsCommand({}))).Buckets?.map((x) => x.Name)).toContain(outside);
    await s3.send(new CreateBucketCommand({ Bucket: b }));
    expect((await s3.send(new ListObjectsV2Command({ Bucket: b }))).KeyCount).toBe(0);
    expect(await status(s3.send(new CreateBucketCommand({ Bucket: 'Bad_Name' })))).toMatchObject({ status: 400, name: 'InvalidBucketName' });
    expect(await status(s3.send(new CreateBucketCommand({ Bucket: 'sluice-s3-parts' })))).toMatchObject({ status: 400, name: 'InvalidBucketName' });
  });

  it(tn('s3/sdk', ctx, 'DeleteBucket of a bucket a deployed function triggers on is 409 OperationAborted (SLUICE_BUCKET_IN_USE); after the function is removed it deletes'), async () => {
    const b = ctx.uid('used');
    await s3.send(new CreateBucketCommand({ Bucket: b }));
    // Only the functions table matters here: a driver that runs nothing.
    const idle: Driver = { kind: 'local', apply: async () => undefined, scale: async () => undefined, remove: async () => true, status: async () => undefined, close: async () => undefined };
    const controller = await Controller.open({ backend: ctx.backend, driver: idle, intervalMs: 60_000 });
    const handler = fileURLToPath(new URL('../fixtures/functions/chatty.ts', import.meta.url));
    const name = ctx.uid('fn');
    try {
      await controller.deploy(`apiVersion: sluice.dev/v1\nkind: Function\nmetadata: {name: ${name}}\nspec:\n  handler: ${JSON.stringify(handler)}\n  triggers: [{object: {bucket: ${b}}}]\n`, tmpdir());
      const refused = await status(s3.send(new DeleteBucketCommand({ Bucket: b })));
      expect(refused).toMatchObject({ status: 409, name: 'OperationAborted' });
      expect((await s3.send(new ListBucketsCommand({}))).Buckets?.map((x) => x.Name)).toContain(b);
      await controller.remove(name);
      await s3.send(new DeleteBucketCommand({ Bucket: b }));
      expect((await ctx.backend.listBuckets()).map((x) => x.name)).not.toContain(b);
    } finally {
      await controller.close();
    }
  }, 60_000);

  it(tn('s3/sdk', ctx, 'put and get: metadata, content type, ranges, conditionals, response overrides, Content-MD5'), async () => {
    const body = 'hello, sluice gateway';
    const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', Body: body, ContentType: 'text/plain', Metadata: { owner: 'ann' }, CacheControl: 'max-age=60' }));
    const etag = createHash('md5').update(body).digest('hex');
    expect(put.ETag).toBe(`"${etag}"`);
    const g = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt' }));
    expect(await g.Body!.transformToString()).toBe(body);
    expect(g).toMatchObject({ ContentType: 'text/plain', Metadata: { owner: 'ann' }, CacheControl: 'max-age=60', ETag: `"${etag}"`, ContentLength: body.length });
    const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', Range: 'bytes=7-12' }));
    expect(await r.Body!.transformToString()).toBe('sluice');
    expect(r.ContentRange).toBe(`bytes 7-12/${body.length}`);
    const suffix = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', Range: 'bytes=-7' }));
    expect(await suffix.Body!.transformToString()).toBe('gateway');
    expect(await status(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', Range: 'bytes=500-' })))).toMatchObject({ status: 416, name: 'InvalidRange' });
    expect((await status(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', IfNoneMatch: `"${etag}"` })))).status).toBe(304);
    expect((await status(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', IfMatch: '"0000"' })))).status).toBe(412);
    expect((await status(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', IfModifiedSince: new Date(Date.now() + 3600_000) })))).status).toBe(304);
    expect((await status(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', IfUnmodifiedSince: new Date(Date.now() - 3600_000) })))).status).toBe(412);
    const ok = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/a b+c.txt', IfMatch: `"${etag}"`, ResponseContentType: 'application/x-test', ResponseContentDisposition: 'attachment' }));
    expect(ok).toMatchObject({ ContentType: 'application/x-test', ContentDisposition: 'attachment' });
    await ok.Body!.transformToString();
    expect(await status(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/missing' })))).toMatchObject({ status: 404, name: 'NoSuchKey' });
    expect(await status(s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'rw/md5', Body: 'abc', ContentMD5: createHash('md5').update('abd').digest('base64') })))).toMatchObject({
      status: 400,
      name: 'BadDigest',
    });
    expect((await status(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'rw/md5' })))).status).toBe(404);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'rw/md5', Body: 'abc', ContentMD5: createHash('md5').update('abc').digest('base64') }));
    // Handlers read user metadata from the object's attributes.
    const objects = await ctx.backend.objects(bucket);
    expect((await objects.getAttrs('rw/a b+c.txt')).attrs['x-amz-meta']).toEqual({ owner: 'ann' });
  });

  it(tn('s3/sdk', ctx, 'list: 2,500 keys paged by V2 and V1, delimiter, start-after, versions, url encoding'), async () => {
    const b = ctx.uid('list');
    await s3.send(new CreateBucketCommand({ Bucket: b }));
    const objects = await ctx.backend.objects(b);
    const keys = Array.from({ length: 2500 }, (_, i) => `p/k${String(i).padStart(5, '0')}`);
    const extra = ['p/sub/1', 'p/sub/2', 'p/zz/1', 'q/x y+z'];
    await putMany((k) => objects.put(k, 'v'), [...keys, ...extra], ctx.name === 'nats' ? 48 : 16);
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: b, Prefix: 'p/k', ContinuationToken: token }));
      seen.push(...(r.Contents ?? []).map((c) => c.Key!));
      expect(r.KeyCount).toBe(r.Contents?.length);
      token = r.NextContinuationToken;
      expect(r.IsTruncated).toBe(token !== undefined);
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(seen).toEqual(keys);
    const d = await s3.send(new ListObjectsV2Command({ Bucket: b, Prefix: 'p/', Delimiter: '/', StartAfter: 'p/k02495', FetchOwner: true }));
    expect(d.Contents?.map((c) => c.Key)).toEqual(keys.slice(2496));
    expect(d.CommonPrefixes?.map((c) => c.Prefix)).toEqual(['p/sub/', 'p/zz/']);
    expect(d.Contents?.[0]?.Owner?.ID).toBe('sluice');
    const v1: string[] = [];
    let marker: string | undefined;
    for (;;) {
      const r = await s3.send(new ListObjectsCommand({ Bucket: b, Prefix: 'p/', Delimiter: '/', Marker: marker, MaxKeys: 999 }));
      v1.push(...(r.Contents ?? []).map((c) => c.Key!), ...(r.CommonPrefixes ?? []).map((c) => c.Prefix!));
      if (!r.IsTruncated) break;
      marker = r.NextMarker;
    }
    expect(v1.sort()).toEqual([...keys, 'p/sub/', 'p/zz/'].sort());
    const few = await s3.send(new ListObjectsV2Command({ Bucket: b, Prefix: 'p/', Delimiter: '/', MaxKeys: 7 }));
    expect([few.KeyCount, few.MaxKeys, few.IsTruncated, few.Contents?.at(-1)?.Key]).toEqual([7, 7, true, 'p/k00006']);
    const none = await s3.send(new ListObjectsV2Command({ Bucket: b, Prefix: 'p/', MaxKeys: 0 }));
    expect([none.KeyCount, none.IsTruncated]).toEqual([0, false]);
    const enc = await s3.send(new ListObjectsV2Command({ Bucket: b, Prefix: 'q/', EncodingType: 'url' }));
    expect(enc.Contents?.map((c) => decodeURIComponent(c.Key!))).toEqual(['q/x y+z']);
    const vs = await s3.send(new ListObjectVersionsCommand({ Bucket: b, Prefix: 'p/sub/' }));
    expect(vs.Versions?.map((v) => [v.Key, v.VersionId, v.IsLatest])).toEqual([
      ['p/sub/1', 'null', true],
      ['p/sub/2', 'null', true],
    ]);
  });

  it(tn('s3/sdk', ctx, 'copy with metadata directive, and batch delete'), async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'cp/src', Body: 'copy me', ContentType: 'text/x-src', Metadata: { a: '1' } }));
    const c1 = await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: 'cp/same', CopySource: `${bucket}/cp/src` }));
    expect(c1.CopyObjectResult?.ETag).toBe(`"${createHash('md5').update('copy me').digest('hex')}"`);
    expect(await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cp/same' }))).toMatchObject({ ContentType: 'text/x-src', Metadata: { a: '1' } });
    await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: 'cp/new', CopySource: `${bucket}/cp/src`, MetadataDirective: 'REPLACE', ContentType: 'text/x-new', Metadata: { b: '2' } }));
    expect(await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'cp/new' }))).toMatchObject({ ContentType: 'text/x-new', Metadata: { b: '2' } });
    expect((await status(s3.send(new CopyObjectCommand({ Bucket: bucket, Key: 'cp/x', CopySource: `${bucket}/cp/src`, CopySourceIfMatch: '"nope"' })))).status).toBe(412);
    const del = await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'cp/src' }, { Key: 'cp/same' }, { Key: 'cp/never-existed' }] } }));
    expect(del.Deleted?.map((x) => x.Key).sort()).toEqual(['cp/never-existed', 'cp/same', 'cp/src']);
    const left = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'cp/' }));
    expect(left.Contents?.map((x) => x.Key)).toEqual(['cp/new']);
  });

  it(tn('s3/sdk', ctx, 'multipart: 20 MiB in 3 parts, ETag <md5>-3, one change record; list, copy part, abort, too-small part'), async () => {
    const data = Buffer.alloc(20 * MiB);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE(i, i);
    const key = 'mp/big.bin';
    const objects = await ctx.backend.objects(bucket);
    const info = await objects.info();
    const streams = ctx.backend.streams();
    const before = (await streams.info(info.changeStream)).bounds.map((x) => x.last);
    const up = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: 'application/x-big', Metadata: { kind: 'big' } }));
    const id = up.UploadId!;
    const sizes = [8 * MiB, 8 * MiB, 4 * MiB];
    const etags: string[] = [];
    let off = 0;
    for (let i = 0; i < sizes.length; i++) {
      const r = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: id, PartNumber: i + 1, Body: data.subarray(off, off + sizes[i]!) }));
      etags.push(r.ETag!);
      off += sizes[i]!;
    }
    const parts = await s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: id }));
    expect(parts.Parts?.map((p) => [p.PartNumber, p.Size, p.ETag])).toEqual(sizes.map((s, i) => [i + 1, s, etags[i]]));
    expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.map((u) => u.UploadId)).toContain(id);
    const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: id, MultipartUpload: { Parts: etags.map((e, i) => ({ ETag: e, PartNumber: i + 1 })) } }));
    const md5s = createHash('md5');
    for (const e of etags) md5s.update(Buffer.from(e.replace(/"/g, ''), 'hex'));
    const want = `"${md5s.digest('hex')}-3"`;
    expect(done.ETag).toBe(want);
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head).toMatchObject({ ETag: want, ContentLength: 20 * MiB, ContentType: 'application/x-big', Metadata: { kind: 'big' } });
    const got = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());
    expect(got.equals(data)).toBe(true);
    // The whole upload is one put of the key: exactly one change record for it in the bucket's change stream.
    let records = 0;
    for (let shard = 0; shard < info.shards; shard++) {
      const r = await streams.getRecords({ stream: info.changeStream, shard, seq: before[shard]! + 1 }, { limit: 10_000 });
      for (const rec of r.records) if (rec.partitionKey === key || new TextDecoder().decode(rec.data).includes(key)) records++;
    }
    expect(records).toBe(1);
    expect(await status(s3.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: id })))).toMatchObject({ status: 404, name: 'NoSuchUpload' });

    const up2 = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'mp/copied' }));
    const p1 = await s3.send(new UploadPartCopyCommand({ Bucket: bucket, Key: 'mp/copied', UploadId: up2.UploadId, PartNumber: 1, CopySource: `${bucket}/${key}`, CopySourceRange: `bytes=0-${5 * MiB - 1}` }));
    const p2 = await s3.send(new UploadPartCopyCommand({ Bucket: bucket, Key: 'mp/copied', UploadId: up2.UploadId, PartNumber: 2, CopySource: `${bucket}/${key}`, CopySourceRange: `bytes=${5 * MiB}-${6 * MiB - 1}` }));
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'mp/copied', UploadId: up2.UploadId, MultipartUpload: { Parts: [{ ETag: p1.CopyPartResult!.ETag, PartNumber: 1 }, { ETag: p2.CopyPartResult!.ETag, PartNumber: 2 }] } }));
    const copied = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'mp/copied' }))).Body!.transformToByteArray());
    expect(copied.equals(data.subarray(0, 6 * MiB))).toBe(true);

    const up3 = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'mp/small' }));
    const s1 = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'mp/small', UploadId: up3.UploadId, PartNumber: 1, Body: 'tiny' }));
    const s2 = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'mp/small', UploadId: up3.UploadId, PartNumber: 2, Body: 'tiny' }));
    const parts3 = { Parts: [{ ETag: s1.ETag, PartNumber: 1 }, { ETag: s2.ETag, PartNumber: 2 }] };
    expect(await status(s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'mp/small', UploadId: up3.UploadId, MultipartUpload: parts3 })))).toMatchObject({ status: 400, name: 'EntityTooSmall' });
    expect(await status(s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'mp/small', UploadId: up3.UploadId, MultipartUpload: { Parts: [{ ETag: '"00"', PartNumber: 1 }] } })))).toMatchObject({ status: 400, name: 'InvalidPart' });
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'mp/small', UploadId: up3.UploadId }));
    expect(await status(s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'mp/small', UploadId: up3.UploadId, PartNumber: 3, Body: 'x' })))).toMatchObject({ status: 404, name: 'NoSuchUpload' });
    expect((await status(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'mp/small' })))).status).toBe(404);
  });

  it(tn('s3/sdk', ctx, 'presigned GET and PUT work with plain fetch; expired, tampered and unsigned requests are refused'), async () => {
    const put = await fetch(await presign(gw, 'PUT', bucket, 'pre/file.txt'), { method: 'PUT', body: 'presigned body' });
    expect(put.status).toBe(200);
    const get = await fetch(await presign(gw, 'GET', bucket, 'pre/file.txt'));
    expect(get.status).toBe(200);
    expect(await get.text()).toBe('presigned body');
    const wrong = await fetch(await presign(gw, 'GET', bucket, 'pre/file.txt', 300, 'not-the-secret-at-all'));
    expect(wrong.status).toBe(403);
    expect(await wrong.text()).toContain('<Code>SignatureDoesNotMatch</Code>');
    const url = await presign(gw, 'GET', bucket, 'pre/file.txt', 1);
    await new Promise((r) => setTimeout(r, 2100));
    const expired = await fetch(url);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toContain('expired');
    const other = (await presign(gw, 'GET', bucket, 'pre/file.txt')).replace('pre/file.txt', 'pre/other.txt');
    expect((await fetch(other)).status).toBe(403);
    const anon = await fetch(`${gw.url}/${bucket}/pre/file.txt`);
    expect(anon.status).toBe(403);
    expect(await anon.text()).toContain('<Code>AccessDenied</Code>');
    expect((await fetch(`${gw.url}/${bucket}/pre/new.txt`, { method: 'PUT', body: 'x' })).status).toBe(403);
    expect((await fetch(`${gw.url}/`)).status).toBe(403);
  });

  it(tn('s3/sdk', ctx, 'auth: wrong secret, unknown key, clock skew, read-only and bucket-limited keys are refused'), async () => {
    const bad = client(gw, {}, { accessKeyId: KEY.accessKeyId, secretAccessKey: 'wrong-secret-wrong-secret' });
    expect(await status(bad.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/md5' })))).toMatchObject({ status: 403, name: 'SignatureDoesNotMatch' });
    expect(await status(bad.send(new PutObjectCommand({ Bucket: bucket, Key: 'auth/x', Body: 'x' })))).toMatchObject({ status: 403, name: 'SignatureDoesNotMatch' });
    const unknown = client(gw, {}, { accessKeyId: 'AKNOBODY', secretAccessKey: 'whatever-whatever' });
    expect(await status(unknown.send(new ListBucketsCommand({})))).toMatchObject({ status: 403, name: 'InvalidAccessKeyId' });
    const ro = client(gw, {}, READONLY);
    expect((await ro.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/md5' }))).$metadata.httpStatusCode).toBe(200);
    expect(await status(ro.send(new PutObjectCommand({ Bucket: bucket, Key: 'auth/x', Body: 'x' })))).toMatchObject({ status: 403, name: 'AccessDenied' });
    await s3.send(new CreateBucketCommand({ Bucket: 'only-this' })).catch(() => undefined);
    const lim = client(gw, {}, LIMITED);
    await lim.send(new PutObjectCommand({ Bucket: 'only-this', Key: 'x', Body: 'x' }));
    expect(await status(lim.send(new GetObjectCommand({ Bucket: bucket, Key: 'rw/md5' })))).toMatchObject({ status: 403, name: 'AccessDenied' });
    expect((await lim.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name)).toEqual(['only-this']);
    const skewed = await signed(gw, 'GET', `/${bucket}/rw/md5`, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, new Date(Date.now() - 20 * 60_000));
    const r = await raw(gw, 'GET', `/${bucket}/rw/md5`, skewed);
    expect(r.status).toBe(403);
    expect(r.body).toContain('<Code>RequestTimeTooSkewed</Code>');
    const fresh = await signed(gw, 'GET', `/${bucket}/rw/md5`, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' });
    expect((await raw(gw, 'GET', `/${bucket}/rw/md5`, fresh)).status).toBe(200);
    expect((await raw(gw, 'GET', `/${bucket}/rw/md5?x=1`, fresh)).status).toBe(403);
    bad.destroy();
    unknown.destroy();
    ro.destroy();
    lim.destroy();
  });

  it(tn('s3/sdk', ctx, 'payload modes: aws-chunked with chunk signatures, SDK checksum trailers, bad checksums refused'), async () => {
    const data = Buffer.alloc(200_000, 'q');
    data.write('sluice', 70_000);
    const path = `/${bucket}/modes/chunked.bin`;
    const amzDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
    const probe = chunkedBody(data, 65536, '0'.repeat(64), amzDate);
    const base = { 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD', 'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': String(data.length), 'content-length': String(probe.length), 'x-amz-date': amzDate };
    const h = await signed(gw, 'PUT', path, base, new Date(Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8), +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15))));
    const seed = /Signature=([0-9a-f]{64})/.exec(h.authorization!)![1]!;
    const ok = await raw(gw, 'PUT', path, h, chunkedBody(data, 65536, seed, amzDate));
    expect(ok.status).toBe(200);
    const got = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'modes/chunked.bin' }))).Body!.transformToByteArray());
    expect(got.equals(data)).toBe(true);
    const forged = await raw(gw, 'PUT', `/${bucket}/modes/forged.bin`, await signed(gw, 'PUT', `/${bucket}/modes/forged.bin`, base), chunkedBody(data, 65536, seed, amzDate, true));
    expect(forged.status).toBe(403);
    expect((await status(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'modes/forged.bin' })))).status).toBe(404);

    // SDK defaults: a stream body goes as STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer.
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'modes/trailer.bin', Body: Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]), ContentLength: data.length }));
    for (const alg of ['CRC32C', 'SHA256', 'CRC32'] as const) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `modes/${alg}.bin`, Body: data, ChecksumAlgorithm: alg }));
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'modes/trailer.bin' }))).ContentLength).toBe(data.length);
    const body = Buffer.from('5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n');
    const th = await signed(gw, 'PUT', `/${bucket}/modes/badsum`, {
      'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
      'content-encoding': 'aws-chunked',
      'x-amz-trailer': 'x-amz-checksum-crc32',
      'x-amz-decoded-content-length': '5',
      'content-length': String(body.length),
    });
    const bad = await raw(gw, 'PUT', `/${bucket}/modes/badsum`, th, body);
    expect(bad.status).toBe(400);
    expect(bad.body).toContain('<Code>BadDigest</Code>');
    // A declared length past the object bound is refused before the body is read, and nothing is stored.
    const big = await signed(gw, 'PUT', `/${bucket}/modes/huge`, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'content-length': String(65 * 1024 * 1024) });
    const huge = await raw(gw, 'PUT', `/${bucket}/modes/huge`, big, Buffer.alloc(0));
    expect(huge.status).toBe(400);
    expect(huge.body).toContain('<Code>EntityTooLarge</Code>');
    expect((await status(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'modes/huge' })))).status).toBe(404);
    const sh = await signed(gw, 'PUT', `/${bucket}/modes/badsha`, { 'x-amz-content-sha256': createHash('sha256').update('other').digest('hex'), 'content-length': '5' });
    expect((await raw(gw, 'PUT', `/${bucket}/modes/badsha`, sh, Buffer.from('hello'))).body).toContain('XAmzContentSHA256Mismatch');
  });

  it(tn('s3/sdk', ctx, 'virtual-host-style addressing: <bucket>.localhost'), async () => {
    // Resolve every name to 127.0.0.1 so `<bucket>.localhost` reaches the gateway without DNS setup.
    const agent = new Agent({ keepAlive: true, lookup: (_h, opts, cb) => (opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) });
    const vh = client(gw, { endpoint: `http://localhost:${gw.port}`, forcePathStyle: false, requestHandler: new NodeHttpHandler({ httpAgent: agent }) });
    await vh.send(new PutObjectCommand({ Bucket: bucket, Key: 'vh/a.txt', Body: 'virtual' }));
    expect(await (await vh.send(new GetObjectCommand({ Bucket: bucket, Key: 'vh/a.txt' }))).Body!.transformToString()).toBe('virtual');
    expect((await vh.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'vh/' }))).Contents?.map((c) => c.Key)).toEqual(['vh/a.txt']);
    vh.destroy();
    agent.destroy();
  });

  it(tn('s3/sdk', ctx, 'attributes set by functions show as x-amz-meta-sluice-attr-* and tags; internal ones never'), async () => {
    // A client cannot forge a function's verdict through metadata named like an attribute header.
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'attrs/doc.txt', Body: 'x', Metadata: { owner: 'bo', 'sluice-attr-has_ssn': 'false' } }));
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'attrs/doc.txt' }))).Metadata).toEqual({ owner: 'bo' });
    const objects = await ctx.backend.objects(bucket);
    await objects.updateAttrs('attrs/doc.txt', { expr: 'SET has_ssn = :t, score = :n, #m = :m', names: { '#m': '$sluice.scan-sensitive' }, values: { ':t': true, ':n': 0.5, ':m': 42 } });
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'attrs/doc.txt' }));
    expect(head.Metadata).toEqual({ owner: 'bo', 'sluice-attr-has_ssn': 'true', 'sluice-attr-score': '0.5' });
    const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: 'attrs/doc.txt' }));
    expect(tags.TagSet?.map((t) => [t.Key, t.Value]).sort()).toEqual([
      ['has_ssn', 'true'],
      ['score', '0.5'],
    ]);
  });
});

describe('s3/limits', () => {
  it('s3/limits - bodies held at once are bounded: a PUT past maxInflightBodyBytes gets 503 SlowDown, then succeeds once room frees', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-s3-limits-'));
    const backend = await LocalBackend.open({ dir });
    const gw = await startS3Gateway({ backend, address: '127.0.0.1:0', credentials: [KEY], maxObjectBytes: 64 * 1024, maxInflightBodyBytes: 100 * 1024 });
    const s3 = client(gw);
    try {
      await s3.send(new CreateBucketCommand({ Bucket: 'lim' }));
      // A slow upload of 60 KiB: headers and 1 KiB sent, the rest held back.
      const path = '/lim/slow';
      const h = await signed(gw, 'PUT', path, { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'content-length': String(60 * 1024) });
      const sock = connect(gw.port, '127.0.0.1');
      await once(sock, 'connect');
      sock.write(`PUT ${path} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`);
      sock.write(Buffer.alloc(1024, 'a'));
      let reply = '';
      sock.setEncoding('utf8').on('data', (d: string) => (reply += d));
      await until('the gateway to hold the slow body', async () => (gw.bodyBytesHeld === 60 * 1024 ? true : undefined));
      const body = Buffer.alloc(60 * 1024, 'b');
      const refused = await status(s3.send(new PutObjectCommand({ Bucket: 'lim', Key: 'fast', Body: body })));
      expect(refused, reply).toEqual({ status: 503, name: 'SlowDown' });
      expect((await status(s3.send(new HeadObjectCommand({ Bucket: 'lim', Key: 'fast' })))).status).toBe(404);
      sock.write(Buffer.alloc(59 * 1024, 'a'));
      await until('the slow upload to finish', async () => (/^HTTP\/1\.1 200/.test(reply) ? true : undefined));
      sock.destroy();
      await until('the reservation to be released', async () => (gw.bodyBytesHeld === 0 ? true : undefined));
      await s3.send(new PutObjectCommand({ Bucket: 'lim', Key: 'fast', Body: body }));
      expect((await s3.send(new HeadObjectCommand({ Bucket: 'lim', Key: 'slow' }))).ContentLength).toBe(60 * 1024);
    } finally {
      s3.destroy();
      await gw.close();
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
