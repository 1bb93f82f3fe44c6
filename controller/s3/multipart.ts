/**
 * Multipart uploads. Parts are staged as objects of the hidden `sluice-s3-parts` bucket (durable, in the
 * backend, shared by gateway replicas); the upload itself is an item of `sluice-s3-uploads`. Complete
 * assembles the parts and writes the final object with ONE put, so the target bucket sees one change
 * record and its functions run once — never per part. The ETag is S3's `<md5 of the part md5s>-<n>`,
 * kept with the object (see object-meta.ts) because the binding's own etag is the body MD5.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readBody, readSmallBody } from './body.ts';
import { bucketOf, intParam, keyOf, OWNER, quote, sendEmpty, sendXml, unquote, type Handler, type S3Context } from './context.ts';
import { GatewayState } from './gateway-state.ts';
import { metaFromHeaders, putAttrs, storedHeadersFrom } from './object-meta.ts';
import { conditionalStatus, copySource, parseRange } from './object-handlers.ts';
import { S3Error } from './s3-errors.ts';
import { childrenNamed, childText, doc, el, esc, parseXml } from './xml.ts';

const MAX_PARTS = 10_000;

function uploadIdOf(ctx: S3Context): string {
  const id = ctx.query.get('uploadId');
  if (!id) throw new S3Error('InvalidArgument', 'uploadId is required');
  return id;
}

function partNumberOf(ctx: S3Context): number {
  const v = ctx.query.get('partNumber') ?? '';
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > MAX_PARTS) throw new S3Error('InvalidArgument', `partNumber must be an integer from 1 to ${MAX_PARTS}, not '${v.slice(0, 20)}'`);
  return n;
}

export const createMultipartUpload: Handler = async (ctx) => {
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  await ctx.state.bucket(bucket);
  const h = ctx.req.headers;
  const id = randomBytes(16).toString('hex');
  await ctx.state.createUpload(id, {
    bucket,
    key,
    initiated: new Date(),
    contentType: h['content-type'] ?? 'application/octet-stream',
    meta: metaFromHeaders(h),
    headers: storedHeadersFrom(h),
  });
  sendXml(ctx, 200, doc('InitiateMultipartUploadResult', el('Bucket', bucket) + el('Key', key) + el('UploadId', id)));
};

export const uploadPart: Handler = async (ctx) => {
  const id = uploadIdOf(ctx);
  const n = partNumberOf(ctx);
  await ctx.state.upload(id, bucketOf(ctx), keyOf(ctx));
  const body = await readBody(ctx.req, ctx.auth, ctx.options.maxObjectBytes, ctx.reservation);
  const r = await ctx.state.parts.put(GatewayState.partKey(id, n), body);
  const out: Record<string, string> = { etag: quote(r.etag) };
  for (const [k, v] of Object.entries(ctx.req.headers)) if (k.startsWith('x-amz-checksum-') && k !== 'x-amz-checksum-algorithm' && typeof v === 'string') out[k] = v;
  sendEmpty(ctx, 200, out);
};

export const uploadPartCopy: Handler = async (ctx) => {
  const id = uploadIdOf(ctx);
  const n = partNumberOf(ctx);
  await ctx.state.upload(id, bucketOf(ctx), keyOf(ctx));
  const src = copySource(ctx);
  const from = await ctx.state.bucket(src.bucket);
  const head = await from.head(src.key, { internal: true });
  if (!head) throw new S3Error('NoSuchKey', `the copy source '${src.bucket}/${src.key}' does not exist`);
  if (conditionalStatus(ctx.req.headers, head.etag, head.mtime, 'x-amz-copy-source-if-') !== undefined)
    throw new S3Error('PreconditionFailed', 'a copy-source precondition did not hold');
  const rh = ctx.req.headers['x-amz-copy-source-range'];
  const spec = parseRange(typeof rh === 'string' ? rh : undefined);
  if (typeof rh === 'string' && (!spec || 'suffix' in spec || spec.last === undefined || spec.last >= head.size))
    throw new S3Error('InvalidArgument', `x-amz-copy-source-range '${rh}' must be bytes=<first>-<last> within the source's ${head.size} bytes`);
  const got = await from.get(src.key, { internal: true, ...(spec && !('suffix' in spec) ? { range: { start: spec.first, end: spec.last! + 1 } } : {}) });
  const r = await ctx.state.parts.put(GatewayState.partKey(id, n), got.body);
  sendXml(ctx, 200, doc('CopyPartResult', el('LastModified', new Date().toISOString()) + el('ETag', quote(r.etag))));
};

export const completeMultipartUpload: Handler = async (ctx) => {
  const id = uploadIdOf(ctx);
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  const u = await ctx.state.upload(id, bucket, key);
  const target = await ctx.state.bucket(bucket);
  const root = parseXml(await readSmallBody(ctx.req, ctx.auth, 2 * 1024 * 1024, ctx.reservation));
  if (root.name !== 'CompleteMultipartUpload') throw new S3Error('MalformedXML', 'the body must be a <CompleteMultipartUpload> document');
  const listed = childrenNamed(root, 'Part').map((p) => ({ n: Number(childText(p, 'PartNumber')), etag: unquote(childText(p, 'ETag') ?? '') }));
  if (listed.length === 0) throw new S3Error('MalformedXML', 'CompleteMultipartUpload lists no parts');
  let prev = 0;
  for (const p of listed) {
    if (!Number.isInteger(p.n) || p.n < 1 || p.n > MAX_PARTS) throw new S3Error('InvalidPart', `part number ${String(p.n)} is not valid`);
    if (p.n <= prev) throw new S3Error('InvalidPartOrder', 'the list of parts was not in ascending order');
    prev = p.n;
  }
  // Check every listed part (existence, ETag, minimum size) before reading any body.
  const heads = await Promise.all(listed.map((p) => ctx.state.parts.head(GatewayState.partKey(id, p.n), { internal: true })));
  let total = 0;
  heads.forEach((h, i) => {
    const p = listed[i]!;
    if (!h || h.etag !== p.etag) throw new S3Error('InvalidPart', `part ${p.n} was not uploaded or its ETag does not match`);
    if (i < listed.length - 1 && h.size < ctx.options.minPartBytes)
      throw new S3Error('EntityTooSmall', `part ${p.n} is ${h.size} bytes; every part but the last must be at least ${ctx.options.minPartBytes} bytes`);
    total += h.size;
  });
  if (total > ctx.options.maxObjectBytes)
    throw new S3Error('EntityTooLarge', `the parts add up to ${total} bytes; an object holds at most ${ctx.options.maxObjectBytes} bytes`);
  const body = Buffer.allocUnsafe(total);
  let off = 0;
  const md5s = createHash('md5');
  for (const p of listed) {
    const got = await ctx.state.parts.get(GatewayState.partKey(id, p.n), { internal: true });
    if (got.etag !== p.etag) throw new S3Error('InvalidPart', `part ${p.n} changed while the upload completed`);
    body.set(got.body, off);
    off += got.body.byteLength;
    md5s.update(Buffer.from(got.etag, 'hex'));
  }
  const etag = `${md5s.digest('hex')}-${listed.length}`;
  const bodyEtag = createHash('md5').update(body).digest('hex');
  await target.put(key, body, { contentType: u.contentType, attrs: putAttrs(u.meta, { etag, bodyEtag, headers: u.headers }) });
  await ctx.state.finishUpload(id);
  const host = ctx.req.headers.host ?? 'localhost';
  sendXml(
    ctx,
    200,
    doc('CompleteMultipartUploadResult', el('Location', `http://${host}/${bucket}/${key}`) + el('Bucket', bucket) + el('Key', key) + el('ETag', quote(etag))),
  );
};

export const abortMultipartUpload: Handler = async (ctx) => {
  const id = uploadIdOf(ctx);
  await ctx.state.upload(id, bucketOf(ctx), keyOf(ctx));
  await ctx.state.abortUpload(id);
  sendEmpty(ctx, 204);
};

export const listParts: Handler = async (ctx) => {
  const id = uploadIdOf(ctx);
  const bucket = bucketOf(ctx);
  const key = keyOf(ctx);
  await ctx.state.upload(id, bucket, key);
  const marker = intParam(ctx.query, 'part-number-marker', 0, MAX_PARTS);
  const max = intParam(ctx.query, 'max-parts', 1000, 1000);
  const page = await ctx.state.parts.list({ prefix: `${id}/`, limit: Math.max(1, max), ...(marker > 0 ? { startAfter: GatewayState.partKey(id, marker) } : {}) });
  const parts = max === 0 ? [] : page.objects;
  const items = parts
    .map((o) => `<Part>${el('PartNumber', Number(o.key.slice(id.length + 1)))}${el('LastModified', o.mtime.toISOString())}<ETag>&quot;${o.etag}&quot;</ETag>${el('Size', o.size)}</Part>`)
    .join('');
  const last = parts[parts.length - 1];
  const truncated = page.nextToken !== undefined && max > 0;
  sendXml(
    ctx,
    200,
    doc(
      'ListPartsResult',
      el('Bucket', bucket) +
        el('Key', key) +
        el('UploadId', id) +
        `<Initiator><ID>sluice</ID><DisplayName>sluice</DisplayName></Initiator>${OWNER}<StorageClass>STANDARD</StorageClass>` +
        el('PartNumberMarker', marker) +
        (last ? el('NextPartNumberMarker', Number(last.key.slice(id.length + 1))) : '') +
        el('MaxParts', max) +
        el('IsTruncated', truncated) +
        items,
    ),
  );
};

export const listMultipartUploads: Handler = async (ctx) => {
  const bucket = bucketOf(ctx);
  await ctx.state.bucket(bucket);
  const prefix = ctx.query.get('prefix') ?? '';
  const keyMarker = ctx.query.get('key-marker') ?? '';
  const max = intParam(ctx.query, 'max-uploads', 1000, 1000);
  const all = (await ctx.state.listUploads(bucket)).filter((u) => u.key.startsWith(prefix) && (keyMarker === '' || u.key > keyMarker));
  const shown = all.slice(0, max);
  const items = shown
    .map(
      (u) =>
        `<Upload>${el('Key', u.key)}${el('UploadId', u.id)}<Initiator><ID>sluice</ID><DisplayName>sluice</DisplayName></Initiator>${OWNER}<StorageClass>STANDARD</StorageClass>${el('Initiated', u.initiated.toISOString())}</Upload>`,
    )
    .join('');
  const truncated = all.length > shown.length;
  const last = shown[shown.length - 1];
  sendXml(
    ctx,
    200,
    doc(
      'ListMultipartUploadsResult',
      el('Bucket', bucket) +
        `<KeyMarker>${esc(keyMarker)}</KeyMarker><UploadIdMarker></UploadIdMarker>` +
        (truncated && last ? el('NextKeyMarker', last.key) + el('NextUploadIdMarker', last.id) : '') +
        el('Prefix', prefix) +
        el('MaxUploads', max) +
        el('IsTruncated', truncated) +
        items,
    ),
  );
};
