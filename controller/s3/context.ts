/** What every operation handler gets, and the response helpers they share. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BodyReservation } from './body.ts';
import type { GatewayState } from './gateway-state.ts';
import type { ResolvedS3GatewayOptions } from './options.ts';
import type { Operation } from './router.ts';
import { S3Error } from './s3-errors.ts';
import type { AuthContext } from './sigv4.ts';

export interface S3Context {
  req: IncomingMessage;
  res: ServerResponse;
  op: Operation;
  state: GatewayState;
  options: ResolvedS3GatewayOptions;
  /** Present for every operation but ListBuckets. */
  bucket: string | undefined;
  key: string | undefined;
  query: URLSearchParams;
  auth: AuthContext;
  requestId: string;
  /** This request's share of the gateway's bound on buffered bodies (released when the request ends). */
  reservation: BodyReservation;
}

/** A handler of one operation; it writes the whole response. */
export type Handler = (ctx: S3Context) => Promise<void>;

/**
 * The headers every response carries, to extend and pass to `writeHead`. Handlers name them in
 * `writeHead` rather than `setHeader` them up front: once a header is set, `node:http` merges every
 * `writeHead` header through `setHeader` one by one (its slow path, measured ≈3 % of a 1 KiB GET).
 */
export function baseHeaders(requestId: string): Record<string, string | number> {
  return { 'x-amz-request-id': requestId, server: 'sluice' };
}

/** Sends an XML document. */
export function sendXml(ctx: S3Context, status: number, body: string, headers: Record<string, string> = {}): void {
  const h = baseHeaders(ctx.requestId);
  Object.assign(h, headers);
  h['content-type'] = 'application/xml';
  h['content-length'] = Buffer.byteLength(body, 'utf8');
  ctx.res.writeHead(status, h);
  // A string body goes out in one write with the headers (a Buffer would be a writev of two chunks).
  ctx.res.end(body, 'utf8');
}

/** Sends a response without a body. */
export function sendEmpty(ctx: S3Context, status: number, headers: Record<string, string | number> = {}): void {
  const h = baseHeaders(ctx.requestId);
  Object.assign(h, headers);
  h['content-length'] = 0;
  ctx.res.writeHead(status, h);
  ctx.res.end();
}

/** The bucket of a bucket- or object-level operation. */
export function bucketOf(ctx: S3Context): string {
  if (ctx.bucket === undefined) throw new S3Error('InvalidRequest', 'this operation needs a bucket');
  return ctx.bucket;
}

/** The key of an object-level operation. */
export function keyOf(ctx: S3Context): string {
  if (ctx.key === undefined) throw new S3Error('InvalidRequest', 'this operation needs a key');
  return ctx.key;
}

/** Quotes an ETag as S3 sends it. */
export function quote(etag: string): string {
  return `"${etag}"`;
}

/** Strips quotes (and a weak prefix) from a client-sent ETag. */
export function unquote(etag: string): string {
  const t = etag.trim().replace(/^W\//, '');
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t;
}

let lastDateS = NaN;
let lastDate = '';

/**
 * HTTP date of a time, truncated to seconds as Last-Modified is. The last second formatted is kept:
 * objects written together share it, and `toUTCString` is ≈3 % of a 1 KiB GET.
 */
export function httpDate(d: Date): string {
  const s = Math.floor(d.getTime() / 1000);
  if (s !== lastDateS) {
    lastDate = d.toUTCString();
    lastDateS = s;
  }
  return lastDate;
}

/** ISO time as S3 lists show it (milliseconds, Z). */
export function isoDate(d: Date): string {
  return d.toISOString();
}

/** A non-negative integer query parameter, or `dflt`; InvalidArgument when malformed. */
export function intParam(q: URLSearchParams, name: string, dflt: number, max: number): number {
  const v = q.get(name);
  if (v === null || v === '') return dflt;
  if (!/^\d+$/.test(v)) throw new S3Error('InvalidArgument', `${name} must be a non-negative integer, not '${v.slice(0, 40)}'`);
  return Math.min(Number(v), max);
}

/** The owner element S3 clients expect (one owner: the gateway). */
export const OWNER = '<Owner><ID>sluice</ID><DisplayName>sluice</DisplayName></Owner>';
