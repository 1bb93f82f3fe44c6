/**
 * The backup target — an S3-compatible bucket — from the function's secrets. Every value comes from
 * `ctx.secrets` (the spec's `secrets`, resolved from the environment), never from code or logs; errors
 * name the missing secret, never a value.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { NonRetryableError } from '../types.ts';

/** Names of the secrets the backup function reads. */
export const BackupSecrets = {
  /** Endpoint URL of the S3-compatible store, e.g. `https://s3.eu-west-1.amazonaws.com`, `http://minio:9000`. */
  endpoint: 'backup-endpoint',
  /** Target bucket (must exist). */
  bucket: 'backup-bucket',
  /** Region (any string for stores without regions). Optional. @default 'us-east-1' */
  region: 'backup-region',
  accessKeyId: 'backup-access-key-id',
  secretAccessKey: 'backup-secret-access-key',
  /** Prefix put before every key in the target bucket. Optional. @default '' */
  prefix: 'backup-prefix',
} as const;

/** A ready target: the client and where copies go. */
export interface BackupTarget {
  client: S3Client;
  bucket: string;
  prefix: string;
}

/** Builds the target from the secrets; a missing required secret is a non-retryable configuration error. */
export function openTarget(secrets: Readonly<Record<string, string>>): BackupTarget {
  const need = (name: string): string => {
    const v = secrets[name];
    if (v === undefined || v === '') throw new NonRetryableError(`backup: secret ${JSON.stringify(name)} is not set (declare it in spec.secrets)`);
    return v;
  };
  const client = new S3Client({
    endpoint: need(BackupSecrets.endpoint),
    region: secrets[BackupSecrets.region] || 'us-east-1',
    credentials: { accessKeyId: need(BackupSecrets.accessKeyId), secretAccessKey: need(BackupSecrets.secretAccessKey) },
    // Path-style URLs work with every S3-compatible store (MinIO, Ceph, s3rver, AWS); virtual-hosted
    // style needs DNS per bucket, which most private stores do not have.
    forcePathStyle: true,
    // Checksums only when an operation requires them: stores other than AWS do not all understand the
    // SDK's default CRC32 trailers. The copy carries Content-MD5 instead (checked by every store).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 2,
  });
  return { client, bucket: need(BackupSecrets.bucket), prefix: secrets[BackupSecrets.prefix] ?? '' };
}
