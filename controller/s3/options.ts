/** Options of the S3 gateway, in the three stages of the house style (options → resolve → resolved). */
import { SluiceError } from '../../bindings/errors.ts';
import type { Backend } from '../../bindings/types.ts';
import { Limits } from '../../bindings/values.ts';
import { loadCredentialsFile, resolveCredentials, type AccessKey, type S3Credential } from './credentials.ts';

/** What users pass to `startS3Gateway`. */
export interface S3GatewayOptions {
  /** The backend whose buckets the gateway serves (local or NATS). */
  backend: Backend;
  /** `host:port` to listen on; port 0 picks a free port. @default '127.0.0.1:9000' */
  address?: string;
  /** Access keys, or the path of a credentials file (YAML/JSON list of keys). Required: nothing is anonymous. */
  credentials: readonly S3Credential[] | string;
  /** Region reported by GetBucketLocation; requests signed for any region are accepted. @default 'us-east-1' */
  region?: string;
  /**
   * Domains for virtual-host-style addressing: a Host `b.<domain>` names bucket `b`.
   * @default ['localhost', 's3.localhost']
   */
  virtualHostDomains?: readonly string[];
  /** Largest clock difference between client and gateway. @default 900000 (15 min, as S3) */
  maxSkewMs?: number;
  /** Longest accepted presigned URL lifetime, in seconds. @default 604800 (7 days, as S3) */
  maxPresignExpiresS?: number;
  /** Largest object or part body. @default Limits.maxObjectBytes (64 MiB) */
  maxObjectBytes?: number;
  /** Smallest part of a multipart upload but the last (as S3). @default 5242880 (5 MiB) */
  minPartBytes?: number;
  /**
   * Most bytes of request bodies held at once (bodies are buffered whole before their one put); past it
   * requests get 503 SlowDown, which clients retry. At least `maxObjectBytes`. @default 536870912 (512 MiB)
   */
  maxInflightBodyBytes?: number;
  /** Shards of buckets created through the gateway. @default 8 */
  bucketShards?: number;
  /** Called with one line per failed request (5xx) for logs. @default ignored */
  onError?: (e: { requestId: string; op: string; message: string }) => void;
  /** Clock (tests). @default Date.now */
  now?: () => number;
}

/** Options with every default filled in. */
export interface ResolvedS3GatewayOptions {
  readonly backend: Backend;
  readonly host: string;
  readonly port: number;
  readonly keys: ReadonlyMap<string, AccessKey>;
  readonly region: string;
  readonly virtualHostDomains: readonly string[];
  readonly maxSkewMs: number;
  readonly maxPresignExpiresS: number;
  readonly maxObjectBytes: number;
  readonly minPartBytes: number;
  readonly maxInflightBodyBytes: number;
  readonly bucketShards: number;
  readonly onError: (e: { requestId: string; op: string; message: string }) => void;
  readonly now: () => number;
}

/** Splits `host:port` (IPv6 in brackets); InvalidArgument naming the value when malformed. */
export function parseAddress(address: string, where = 'address'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `${where} '${address}' must be host:port (port 0-65535; 0 picks a free port)`);
  return { host: m[1] ?? m[2]!, port };
}

function positive(v: number | undefined, where: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `S3 gateway option ${where} must be a positive integer, not ${String(v)}`);
  return v;
}

export function resolveS3GatewayOptions(o: S3GatewayOptions): ResolvedS3GatewayOptions {
  if (!o || typeof o.backend?.objects !== 'function') throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'S3 gateway option backend must be an open Backend');
  const { host, port } = parseAddress(o.address ?? '127.0.0.1:9000', 'S3 gateway option address');
  const list = typeof o.credentials === 'string' ? loadCredentialsFile(o.credentials) : o.credentials;
  if (list === undefined) throw new SluiceError('SLUICE_INVALID_ARGUMENT', 'S3 gateway option credentials is required (the gateway refuses anonymous requests)');
  const maxObjectBytes = positive(o.maxObjectBytes, 'maxObjectBytes', Limits.maxObjectBytes);
  if (maxObjectBytes > Limits.maxObjectBytes)
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `S3 gateway option maxObjectBytes must be at most ${Limits.maxObjectBytes} (the Object binding's bound)`);
  const maxInflightBodyBytes = positive(o.maxInflightBodyBytes, 'maxInflightBodyBytes', 512 * 1024 * 1024);
  if (maxInflightBodyBytes < maxObjectBytes)
    throw new SluiceError('SLUICE_INVALID_ARGUMENT', `S3 gateway option maxInflightBodyBytes (${maxInflightBodyBytes}) must be at least maxObjectBytes (${maxObjectBytes})`);
  return Object.freeze({
    backend: o.backend,
    host,
    port,
    keys: resolveCredentials(list, 'S3 gateway option credentials'),
    region: o.region ?? 'us-east-1',
    virtualHostDomains: Object.freeze([...(o.virtualHostDomains ?? ['localhost', 's3.localhost'])].map((d) => d.toLowerCase())),
    maxSkewMs: positive(o.maxSkewMs, 'maxSkewMs', 15 * 60_000),
    maxPresignExpiresS: positive(o.maxPresignExpiresS, 'maxPresignExpiresS', 7 * 24 * 3600),
    maxObjectBytes,
    minPartBytes: positive(o.minPartBytes, 'minPartBytes', 5 * 1024 * 1024),
    maxInflightBodyBytes,
    bucketShards: positive(o.bucketShards, 'bucketShards', 8),
    onError: o.onError ?? (() => undefined),
    now: o.now ?? Date.now,
  });
}
