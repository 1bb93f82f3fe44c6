/**
 * The S3-compatible gateway: `node:http` directly (no framework; the per-request work is SigV4 plus one
 * binding call, and a framework's routing would cost as much again), bodies streamed in and out.
 *
 * Per request: resolve the address (path or virtual-host style) → pick the operation → verify the SigV4
 * signature and clock skew (every request; nothing is anonymous) → check the key's bucket and
 * read/write limits → run the operation's handler. Every failure is answered as S3 XML; sluice error
 * codes map through the one error table (`bindings/error-table.ts`).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SluiceError } from '../../bindings/errors.ts';
import { BodyBudget } from './body.ts';
import * as buckets from './bucket-handlers.ts';
import { baseHeaders, type Handler, type S3Context } from './context.ts';
import { allows } from './credentials.ts';
import { GatewayState } from './gateway-state.ts';
import * as lists from './list-handlers.ts';
import * as multipart from './multipart.ts';
import * as objects from './object-handlers.ts';
import { resolveS3GatewayOptions, type ResolvedS3GatewayOptions, type S3GatewayOptions } from './options.ts';
import { isWrite, operationOf, resolveAddress, type Address, type Operation } from './router.ts';
import { S3Error, toS3Answer } from './s3-errors.ts';
import { verifyRequest, type SigV4Options } from './sigv4.ts';
import { el } from './xml.ts';

const HANDLERS: { readonly [K in Operation]: Handler } = {
  ListBuckets: buckets.listBuckets,
  CreateBucket: buckets.createBucket,
  DeleteBucket: buckets.deleteBucket,
  HeadBucket: buckets.headBucket,
  GetBucketLocation: buckets.getBucketLocation,
  GetBucketVersioning: buckets.getBucketVersioning,
  GetBucketAcl: buckets.getBucketAcl,
  ListObjectVersions: lists.listObjectVersions,
  ListObjects: lists.listObjects,
  ListObjectsV2: lists.listObjectsV2,
  ListMultipartUploads: multipart.listMultipartUploads,
  DeleteObjects: objects.deleteObjects,
  HeadObject: objects.headObject,
  GetObject: objects.getObject,
  GetObjectTagging: objects.getObjectTagging,
  GetObjectAcl: objects.getObjectAcl,
  PutAcl: buckets.putAcl,
  PutObject: objects.putObject,
  CopyObject: objects.copyObject,
  DeleteObject: objects.deleteObject,
  CreateMultipartUpload: multipart.createMultipartUpload,
  UploadPart: multipart.uploadPart,
  UploadPartCopy: multipart.uploadPartCopy,
  CompleteMultipartUpload: multipart.completeMultipartUpload,
  AbortMultipartUpload: multipart.abortMultipartUpload,
  ListParts: multipart.listParts,
};

/** A running gateway. */
export interface S3Gateway {
  /** `http://host:port` of the gateway. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Bytes of request bodies held right now (bounded by `maxInflightBodyBytes`). */
  readonly bodyBytesHeld: number;
  /** Stops accepting requests and closes open connections (the backend stays open: it is the caller's). */
  close(): Promise<void>;
}

let seq = 0;
const ID_PREFIX = randomBytes(4).toString('hex').toUpperCase();

function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, requestId: string, resource: string): void {
  const a = toS3Answer(err);
  if (res.headersSent) {
    // The status line is gone: all that is left is to cut the body short so the client sees a failure.
    res.destroy();
    return;
  }
  const headers = baseHeaders(requestId);
  Object.assign(headers, a.headers);
  // A refused upload is not read: close the connection instead of draining an unbounded body.
  if (!req.complete && req.method !== 'GET' && req.method !== 'HEAD') headers.connection = 'close';
  if (req.method === 'HEAD') {
    headers['content-length'] = 0;
    res.writeHead(a.status, headers);
    res.end();
    return;
  }
  const body = Buffer.from(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error>${el('Code', a.code)}${el('Message', a.message)}${el('Resource', resource)}${el('RequestId', requestId)}</Error>`,
  );
  headers['content-type'] = 'application/xml';
  headers['content-length'] = body.length;
  res.writeHead(a.status, headers);
  res.end(body);
}

/** The SigV4 verifier's view of the gateway's options (built once, not per request). */
function sigv4Options(o: ResolvedS3GatewayOptions): SigV4Options {
  return { lookup: (id) => o.keys.get(id), maxSkewMs: o.maxSkewMs, maxPresignExpiresS: o.maxPresignExpiresS, now: o.now };
}

async function handle(o: ResolvedS3GatewayOptions, sig: SigV4Options, state: GatewayState, budget: BodyBudget, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const requestId = `${ID_PREFIX}${(++seq).toString(16).toUpperCase().padStart(8, '0')}`;
  // x-amz-request-id and server go into each writeHead (context.ts baseHeaders), not setHeader here.
  const url = req.url ?? '/';
  let op: Operation | 'unknown' = 'unknown';
  let addr: Address | undefined;
  const reservation = budget.open();
  try {
    const a = (addr = resolveAddress(url, req.headers.host, o.virtualHostDomains));
    // Authenticate before anything else is said about the request (even NotImplemented).
    const auth = verifyRequest(req, a.rawPath, a.rawQuery, a.query, sig);
    op = operationOf(req.method ?? 'GET', a, req.headers);
    if (!allows(auth.key, a.bucket, isWrite(op)))
      throw new S3Error('AccessDenied', `access key '${auth.key.accessKeyId}' may not ${isWrite(op) ? 'write' : 'read'}${a.bucket ? ` bucket '${a.bucket}'` : ''}`);
    const ctx: S3Context = { req, res, op, state, options: o, bucket: a.bucket, key: a.key, query: a.query, auth, requestId, reservation };
    await HANDLERS[op](ctx);
  } catch (err) {
    const a = toS3Answer(err);
    if (a.status >= 500 && a.status !== 501) o.onError({ requestId, op, message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    // The resource is only named in errors: built here, not on every request.
    const resource = addr ? `/${addr.bucket ?? ''}${addr.key !== undefined ? `/${addr.key}` : ''}` : url.split('?')[0]!;
    sendError(req, res, err, requestId, resource);
  } finally {
    // The body buffer is garbage once the handler is done with it (its put has committed or failed).
    reservation.release();
  }
}

/**
 * Starts an S3-compatible gateway over a backend's Object binding. Resolves once it listens.
 *
 * ```ts
 * const gw = await startS3Gateway({ backend, address: '127.0.0.1:0', credentials: [{ accessKeyId, secretAccessKey }] });
 * // aws --endpoint-url gw.url s3 ls
 * await gw.close();
 * ```
 */
export async function startS3Gateway(options: S3GatewayOptions): Promise<S3Gateway> {
  const o = resolveS3GatewayOptions(options);
  const state = await GatewayState.open(o.backend, o.bucketShards);
  const budget = new BodyBudget(o.maxInflightBodyBytes);
  const sig = sigv4Options(o);
  const server: Server = createServer({ keepAlive: true, noDelay: true, requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => void handle(o, sig, state, budget, req, res));
  // Clients keep connections in pools for up to a minute; keep ours open longer so they never race a close.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new SluiceError(e.code === 'EADDRINUSE' ? 'SLUICE_INVALID_ARGUMENT' : 'SLUICE_INTERNAL', `S3 gateway cannot listen on ${o.host}:${o.port}: ${e.message}`, { cause: e })),
    );
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    host: addr.address,
    port: addr.port,
    get bodyBytesHeld() {
      return budget.usedBytes;
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
