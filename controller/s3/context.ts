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

/** Sends an XML document. */
export function sendXml(ctx: S3Context, status: number, body: string, headers: Record<string, string> = {}): void {
  const b = Buffer.from(body, 'utf8');
  ctx.res.writeHead(status, { ...headers, 'content-type': 'application/xml', 'content-length': b.length });
  ctx.res.end(b);
}

/** Sends a response without a body. */
export function sendEmpty(ctx: S3Context, status: number, headers: Record<string, string | number> = {}): void {
  ctx.res.writeHead(status, { ...headers, 'content-length': 0 });
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

/** HTTP date of a time, truncated to seconds as Last-Modified is. */
export function httpDate(d: Date): string {
  return d.toUTCString();
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
