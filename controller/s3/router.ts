/**
 * Addressing and operation selection. A request names its bucket either in the path (path style,
 * `/bucket/key`) or in the Host header (virtual-host style, `bucket.<domain>`, for the domains the
 * gateway is configured with); the operation follows from the method, whether a key is present, and
 * the sub-resource query parameters — as S3 itself dispatches.
 */
import { S3Error } from './s3-errors.ts';

/** Where a request points. */
export interface Address {
  bucket: string | undefined;
  key: string | undefined;
  /** The path as sent (signature input). */
  rawPath: string;
  rawQuery: string;
  query: URLSearchParams;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch (cause) {
    throw new S3Error('InvalidRequest', `the path '${s.slice(0, 100)}' is not valid percent-encoding`, { cause });
  }
}

/** Splits a request target into bucket, key and query, by path or virtual-host style. */
export function resolveAddress(url: string, host: string | undefined, domains: readonly string[]): Address {
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const rawQuery = q < 0 ? '' : url.slice(q + 1);
  if (!rawPath.startsWith('/')) throw new S3Error('InvalidRequest', 'the request target must be an absolute path');
  const query = new URLSearchParams(rawQuery === '' ? '' : rawQuery.replace(/\+/g, '%2B'));
  const hostname = domains.length === 0 ? '' : (host ?? '').replace(/:\d+$/, '').toLowerCase();
  for (const d of domains) {
    if (hostname.length > d.length + 1 && hostname.endsWith(`.${d}`)) {
      const bucket = hostname.slice(0, -d.length - 1);
      const key = rawPath.length > 1 ? decode(rawPath.slice(1)) : undefined;
      return { bucket, key, rawPath, rawQuery, query };
    }
  }
  const slash = rawPath.indexOf('/', 1);
  const first = decode(slash < 0 ? rawPath.slice(1) : rawPath.slice(1, slash));
  const rest = slash < 0 ? '' : rawPath.slice(slash + 1);
  return { bucket: first === '' ? undefined : first, key: rest === '' ? undefined : decode(rest), rawPath, rawQuery, query };
}

/** The S3 operations the gateway serves. */
export const Operations = [
  'ListBuckets',
  'CreateBucket',
  'DeleteBucket',
  'HeadBucket',
  'GetBucketLocation',
  'GetBucketVersioning',
  'GetBucketAcl',
  'ListObjectVersions',
  'ListObjects',
  'ListObjectsV2',
  'ListMultipartUploads',
  'DeleteObjects',
  'HeadObject',
  'GetObject',
  'GetObjectTagging',
  'GetObjectAcl',
  'PutAcl',
  'PutObject',
  'CopyObject',
  'DeleteObject',
  'CreateMultipartUpload',
  'UploadPart',
  'UploadPartCopy',
  'CompleteMultipartUpload',
  'AbortMultipartUpload',
  'ListParts',
] as const;
/** One of {@link Operations}. */
export type Operation = (typeof Operations)[number];

/** Operations that only read. */
const READS = new Set<Operation>([
  'ListBuckets',
  'HeadBucket',
  'GetBucketLocation',
  'GetBucketVersioning',
  'GetBucketAcl',
  'ListObjectVersions',
  'ListObjects',
  'ListObjectsV2',
  'ListMultipartUploads',
  'HeadObject',
  'GetObject',
  'GetObjectTagging',
  'GetObjectAcl',
  'ListParts',
]);

export function isWrite(op: Operation): boolean {
  return !READS.has(op);
}

/** Bucket sub-resources the gateway does not implement (answered NotImplemented, not mistaken for a listing). */
const UNSUPPORTED = ['policy', 'cors', 'lifecycle', 'website', 'replication', 'notification', 'encryption', 'logging', 'object-lock', 'retention', 'legal-hold', 'accelerate', 'requestPayment', 'inventory', 'metrics', 'analytics', 'intelligent-tiering', 'ownershipControls', 'publicAccessBlock', 'restore', 'select', 'torrent', 'attributes'];

/** Picks the operation of a request. */
export function operationOf(method: string, a: Address, headers: Record<string, string | string[] | undefined>): Operation {
  const q = a.query;
  if (q.size > 0) for (const u of UNSUPPORTED) if (q.has(u)) throw new S3Error('NotImplemented', `the '${u}' sub-resource is not implemented by the sluice gateway`);
  if (a.bucket === undefined) {
    if (method === 'GET' || method === 'HEAD') return 'ListBuckets';
    throw new S3Error('MethodNotAllowed', `${method} is not allowed on the service`);
  }
  if (a.key === undefined) {
    switch (method) {
      case 'GET':
        if (q.has('location')) return 'GetBucketLocation';
        if (q.has('versioning')) return 'GetBucketVersioning';
        if (q.has('acl')) return 'GetBucketAcl';
        if (q.has('versions')) return 'ListObjectVersions';
        if (q.has('uploads')) return 'ListMultipartUploads';
        if (q.has('tagging')) throw new S3Error('NotImplemented', 'bucket tagging is not implemented by the sluice gateway');
        if (q.get('list-type') === '2') return 'ListObjectsV2';
        return 'ListObjects';
      case 'HEAD':
        return 'HeadBucket';
      case 'PUT':
        if (q.has('acl')) return 'PutAcl';
        if (q.has('versioning') || q.has('tagging')) throw new S3Error('NotImplemented', 'changing bucket versioning, ACLs or tags is not implemented by the sluice gateway');
        return 'CreateBucket';
      case 'DELETE':
        return 'DeleteBucket';
      case 'POST':
        if (q.has('delete')) return 'DeleteObjects';
        break;
    }
    throw new S3Error('MethodNotAllowed', `${method} is not allowed on a bucket`);
  }
  switch (method) {
    case 'GET':
      if (q.has('uploadId')) return 'ListParts';
      if (q.has('tagging')) return 'GetObjectTagging';
      if (q.has('acl')) return 'GetObjectAcl';
      return 'GetObject';
    case 'HEAD':
      return 'HeadObject';
    case 'PUT':
      if (q.has('acl')) return 'PutAcl';
      if (q.has('tagging')) throw new S3Error('NotImplemented', 'object tags cannot be changed through the gateway (functions set attributes)');
      if (q.has('uploadId') || q.has('partNumber')) return headers['x-amz-copy-source'] !== undefined ? 'UploadPartCopy' : 'UploadPart';
      return headers['x-amz-copy-source'] !== undefined ? 'CopyObject' : 'PutObject';
    case 'POST':
      if (q.has('uploads')) return 'CreateMultipartUpload';
      if (q.has('uploadId')) return 'CompleteMultipartUpload';
      break;
    case 'DELETE':
      if (q.has('uploadId')) return 'AbortMultipartUpload';
      return 'DeleteObject';
  }
  throw new S3Error('MethodNotAllowed', `${method} is not allowed on an object`);
}
