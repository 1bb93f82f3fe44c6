/**
 * Object operations: Head/Get (ranges, conditionals, response-* overrides), Put (Content-MD5,
 * checksums, metadata), Copy (metadata directive), Delete, DeleteObjects, GetObjectTagging and a fixed
 * GetObjectAcl. Every write is ONE Object-binding put or delete, so it produces the same change record —
 * and so triggers the same functions, exactly once in effect — as a put through the binding itself.
 */
import type { ServerResponse } from 'node:http';
import type { GetObjectOptions, ObjectBinding, ObjectHead, PutObjectOptions } from '../../bindings/types.ts';
import { endWithBody } from '../../runtime/triggers/http-body.ts';
import { FIXED_ACL } from './bucket-handlers.ts';
import { readBody, readSmallBody } from './body.ts';
import { baseHeaders, bucketOf, httpDate, keyOf, quote, sendEmpty, sendXml, unquote, type Handler, type S3Context } from './context.ts';
import { allows } from './credentials.ts';
import { internalOf, metaFromHeaders, metaHeaders, metaOf, putAttrs, s3Etag, storedHeadersFrom, visibleAttrs } from './object-meta.ts';
import { S3Error, toS3Answer } from './s3-errors.ts';
import { childrenNamed, childText, doc, el, parseXml } from './xml.ts';

type Headers = Record<string, string | string[] | undefined>;

/** A requested byte range: inclusive `first`, optional inclusive `last`, or a suffix length. */
type RangeSpec = { first: number; last?: number } | { suffix: number };

/** Parses a single `bytes=` range; multi-range and malformed headers are ignored, as S3 does. */
export function parseRange(h: string | undefined): RangeSpec | undefined {
  if (h === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') return { suffix: Number(m[2]) };
  const first = Number(m[1]);
  if (m[2] === '') return { first };
  const last = Number(m[2]);
  return last < first ? undefined : { first, last };
}

/** Evaluates If-Match / If-None-Match / If-(Un)Modified-Since in RFC 7232 order: 412, 304 or undefined. */
export function conditionalStatus(h: Headers, etag: string, mtime: Date, prefix = 'if-'): 304 | 412 | undefined {
  // Most reads carry no condition: skip building the header names and the matcher.
  if (prefix === 'if-' && h['if-match'] === undefined && h['if-none-match'] === undefined && h['if-modified-since'] === undefined && h['if-unmodified-since'] === undefined) return undefined;
  const t = Math.floor(mtime.getTime() / 1000) * 1000;
  const matches = (v: string): boolean => v.split(',').some((e) => e.trim() === '*' || unquote(e) === etag);
  const im = h[`${prefix}match`];
  const ius = h[`${prefix}unmodified-since`];
  const inm = h[`${prefix}none-match`];
  const ims = h[`${prefix}modified-since`];
  if (typeof im === 'string') {
    if (!matches(im)) return 412;
  } else if (typeof ius === 'string') {
    const d = Date.parse(ius);
    if (!Number.isNaN(d) && t > d) return 412;
  }
  if (typeof inm === 'string') {
    if (matches(inm)) return 304;
  } else if (typeof ims === 'string') {
    const d = Date.parse(ims);
    if (!Number.isNaN(d) && t <= d) return 304;
  }
  return undefined;
}

const OVERRIDES: [string, string][] = [
  ['response-content-type', 'content-type'],
  ['response-content-language', 'content-language'],
  ['response-expires', 'expires'],
  ['response-cache-control', 'cache-control'],
  ['response-content-disposition', 'content-disposition'],
  ['response-content-encoding', 'content-encoding'],
];

function objectHeaders(ctx: S3Context, head: ObjectHead, etag: string): Record<string, string | number> {
  const h = baseHeaders(ctx.requestId);
  h.etag = quote(etag);
  h['last-modified'] = httpDate(head.mtime);
  h['content-type'] = head.contentType;
  h['accept-ranges'] = 'bytes';
  Object.assign(h, metaHeaders(head.attrs));
  if (ctx.query.size > 0)
    for (const [q, name] of OVERRIDES) {
      const v = ctx.query.get(q);
      if (v !== null) h[name] = v;
    }
  return h;
}

/** The byte range [start, end) of `size` a spec selects; InvalidRange (416) when it lies outside. */
function byteRange(spec: RangeSpec, size: number): { start: number; end: number } {
  if ('suffix' in spec) {
    if (spec.suffix === 0 || size === 0) throw invalidRange(size);
    return { start: Math.max(0, size - spec.suffix), end: size };
  }
  if (spec.first >= size) throw invalidRange(size);
  return { start: spec.first, end: Math.min(size, (spec.last ?? size - 1) + 1) };
}

function invalidRange(size: number): S3Error {
  return new S3Error('InvalidRange', 'the requested range is not satisfiable', { headers: { 'content-range': `bytes */${size}` } });
}

async function headOrThrow(b: ObjectBinding, key: string): Promise<ObjectHead> {
  const h = await b.head(key, { internal: true });
  if (!h) throw new S3Error('NoSuchKey', `the key '${key}' does not exist`);
  return h;
}

export const headObject: Handler = async (ctx) => {
  const b = await ctx.state.bucket(bucketOf(ctx));
  const head = await headOrThrow(b, keyOf(ctx));
  const etag = s3Etag(head);
  const cond = conditionalStatus(ctx.req.headers, etag, head.mtime);
  if (cond !== undefined) return sendEmpty(ctx, cond, cond === 304 ? { etag: quote(etag), 'last-modified': httpDate(head.mtime) } : {});
  const h = objectHeaders(ctx, head, etag);
  const spec = parseRange(ctx.req.headers.range);
  if (spec) {
    const r = byteRange(spec, head.size);
    h['content-range'] = `bytes ${r.start}-${r.end - 1}/${head.size}`;
    h['content-length'] = r.end - r.start;
    ctx.res.writeHead(206, h);
  } else {
    h['content-length'] = head.size;
    ctx.res.writeHead(200, h);
  }
  ctx.res.end();
};

/** Bodies up to this size are sent in one write with the headers. */
const SMALL_BODY_BYTES = 256 * 1024;

/** Resolves when `res` can take more data, or has closed. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export const getObject: Handler = async (ctx) => {
  const b = await ctx.state.bucket(bucketOf(ctx));
  const key = keyOf(ctx);
  const spec = parseRange(ctx.req.headers.range);
  let range: { start: number; end: number } | undefined;
  // A suffix range needs the size first; every other request is one read.
  if (spec && 'suffix' in spec) range = byteRange(spec, (await headOrThrow(b, key)).size);
  else if (spec) range = { start: spec.first, end: spec.last === undefined ? Number.MAX_SAFE_INTEGER : spec.last + 1 };
  const o: GetObjectOptions = { internal: true };
  if (range) o.range = range.end === Number.MAX_SAFE_INTEGER ? { start: range.start } : range;
  let got: Awaited<ReturnType<ObjectBinding['getStream']>>;
  try {
    got = await b.getStream(key, o);
  } catch (e) {
    if ((e as { code?: unknown }).code === 'SLUICE_RANGE_INVALID') throw invalidRange((await headOrThrow(b, key)).size);
    if ((e as { code?: unknown }).code === 'SLUICE_NOT_FOUND') throw new S3Error('NoSuchKey', `the key '${key}' does not exist`);
    throw e;
  }
  const { head, body } = got;
  const it = body[Symbol.asyncIterator]();
  const etag = s3Etag(head);
  const cond = conditionalStatus(ctx.req.headers, etag, head.mtime);
  if (cond !== undefined) {
    await it.return?.();
    return sendEmpty(ctx, cond, cond === 304 ? { etag: quote(etag), 'last-modified': httpDate(head.mtime) } : {});
  }
  const h = objectHeaders(ctx, head, etag);
  let status = 200;
  let length = head.size;
  if (spec) {
    const r = byteRange(spec, head.size);
    status = 206;
    length = r.end - r.start;
    h['content-range'] = `bytes ${r.start}-${r.end - 1}/${head.size}`;
  }
  const res = ctx.res;
  h['content-length'] = length;
  res.writeHead(status, h);
  if (length <= SMALL_BODY_BYTES) {
    // A small body goes out with the headers in one write: a separate write per chunk costs the client
    // an extra read (and, with delayed ACKs, a wait) for no memory saved.
    const chunks: Uint8Array[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) chunks.push(r.value);
    const one = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    endWithBody(res, one);
    return;
  }
  try {
    for (let r = await it.next(); !r.done; r = await it.next()) {
      if (res.destroyed) break;
      // Backpressure: wait for the socket to drain (or close) before reading the next chunk.
      if (!res.write(r.value)) await drained(res);
    }
  } finally {
    await it.return?.();
  }
  res.end();
};

export const putObject: Handler = async (ctx) => {
  const b = await ctx.state.bucket(bucketOf(ctx));
  const key = keyOf(ctx);
  const h = ctx.req.headers;
  const body = await readBody(ctx.req, ctx.auth, ctx.options.maxObjectBytes, ctx.reservation);
  const o: PutObjectOptions = { attrs: putAttrs(metaFromHeaders(h), { headers: storedHeadersFrom(h) }) };
  if (h['content-type']) o.contentType = h['content-type'];
  if (h['if-none-match'] === '*') o.ifNoneMatch = '*';
  if (typeof h['if-match'] === 'string') o.ifMatch = unquote(h['if-match']);
  const r = await b.put(key, body, o);
  const out: Record<string, string> = { etag: quote(r.etag) };
  for (const [k, v] of Object.entries(h)) if (k.startsWith('x-amz-checksum-') && k !== 'x-amz-checksum-algorithm' && typeof v === 'string') out[k] = v;
  sendEmpty(ctx, 200, out);
};

/** Parses `x-amz-copy-source` into bucket and key and checks the caller may read it. */
export function copySource(ctx: S3Context): { bucket: string; key: string } {
  const raw = ctx.req.headers['x-amz-copy-source'];
  if (typeof raw !== 'string') throw new S3Error('InvalidArgument', 'x-amz-copy-source is required');
  let s = raw.split('?')[0]!;
  try {
    s = decodeURIComponent(s);
  } catch (cause) {
    throw new S3Error('InvalidArgument', 'x-amz-copy-source is not valid percent-encoding', { cause });
  }
  if (s.startsWith('/')) s = s.slice(1);
  const i = s.indexOf('/');
  if (i <= 0 || i === s.length - 1) throw new S3Error('InvalidArgument', `x-amz-copy-source '${raw.slice(0, 200)}' must be <bucket>/<key>`);
  const bucket = s.slice(0, i);
  if (!allows(ctx.auth.key, bucket, false)) throw new S3Error('AccessDenied', `this access key may not read bucket '${bucket}'`);
  return { bucket, key: s.slice(i + 1) };
}

export const copyObject: Handler = async (ctx) => {
  const src = copySource(ctx);
  const from = await ctx.state.bucket(src.bucket);
  const to = await ctx.state.bucket(bucketOf(ctx));
  const h = ctx.req.headers;
  const got = await from.get(src.key, { internal: true }).catch((e: unknown) => {
    if ((e as { code?: unknown }).code === 'SLUICE_NOT_FOUND') throw new S3Error('NoSuchKey', `the copy source '${src.bucket}/${src.key}' does not exist`);
    throw e;
  });
  const cond = conditionalStatus(h, s3Etag(got), got.mtime, 'x-amz-copy-source-if-');
  if (cond !== undefined) throw new S3Error('PreconditionFailed', 'a copy-source precondition did not hold');
  const directive = String(h['x-amz-metadata-directive'] ?? 'COPY').toUpperCase();
  if (directive !== 'COPY' && directive !== 'REPLACE') throw new S3Error('InvalidArgument', `x-amz-metadata-directive must be COPY or REPLACE, not '${directive}'`);
  const replace = directive === 'REPLACE';
  const o: PutObjectOptions = {
    contentType: replace ? (h['content-type'] ?? 'application/octet-stream') : got.contentType,
    attrs: replace ? putAttrs(metaFromHeaders(h), { headers: storedHeadersFrom(h) }) : putAttrs(metaOf(got.attrs), { headers: internalOf(got.attrs).headers ?? {} }),
  };
  const r = await to.put(keyOf(ctx), got.body, o);
  const head = await to.head(keyOf(ctx), { internal: true });
  sendXml(ctx, 200, doc('CopyObjectResult', el('LastModified', (head?.mtime ?? new Date()).toISOString()) + el('ETag', quote(r.etag))));
};

export const deleteObject: Handler = async (ctx) => {
  const b = await ctx.state.bucket(bucketOf(ctx));
  await b.delete(keyOf(ctx));
  sendEmpty(ctx, 204);
};

export const deleteObjects: Handler = async (ctx) => {
  const b = await ctx.state.bucket(bucketOf(ctx));
  const root = parseXml(await readSmallBody(ctx.req, ctx.auth, 2 * 1024 * 1024, ctx.reservation));
  if (root.name !== 'Delete') throw new S3Error('MalformedXML', 'the DeleteObjects body must be a <Delete> document');
  const quiet = childText(root, 'Quiet')?.trim() === 'true';
  const keys = childrenNamed(root, 'Object').map((o) => childText(o, 'Key'));
  if (keys.length > 1000) throw new S3Error('MalformedXML', 'DeleteObjects takes at most 1000 keys');
  const results: string[] = new Array<string>(keys.length).fill('');
  // Bounded concurrency: each delete is its own atomic write with its own change record.
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < keys.length; i = next++) {
      const k = keys[i];
      if (k === undefined || k === '') {
        results[i] = `<Error><Key></Key><Code>InvalidArgument</Code><Message>an Object has no Key</Message></Error>`;
        continue;
      }
      try {
        await b.delete(k);
        if (!quiet) results[i] = `<Deleted>${el('Key', k)}</Deleted>`;
      } catch (e) {
        const a = toS3Answer(e);
        results[i] = `<Error>${el('Key', k)}${el('Code', a.code)}${el('Message', a.message)}</Error>`;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, keys.length) }, worker));
  sendXml(ctx, 200, doc('DeleteResult', results.join('')));
};

export const getObjectTagging: Handler = async (ctx) => {
  const b = await ctx.state.bucket(bucketOf(ctx));
  const head = await headOrThrow(b, keyOf(ctx));
  const tags = visibleAttrs(head.attrs)
    .map(([k, v]) => `<Tag>${el('Key', k)}${el('Value', v)}</Tag>`)
    .join('');
  sendXml(ctx, 200, doc('Tagging', `<TagSet>${tags}</TagSet>`));
};

export const getObjectAcl: Handler = async (ctx) => {
  const b = await ctx.state.bucket(bucketOf(ctx));
  await headOrThrow(b, keyOf(ctx));
  sendXml(ctx, 200, FIXED_ACL);
};
