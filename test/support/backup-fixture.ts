/**
 * Shared by the backup example's worker tests: the spec of functions/backup/function.yaml pointed at a
 * test bucket, backend and s3rver target; a bucket of objects with varied bodies; and the checks that
 * every object is backed up (attrs = its etag, copy with the same bytes).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { ObjectBinding } from '../../bindings/types.ts';
import { loadFunctionSpec, toWorkerOptions } from '../../controller/spec/index.ts';
import type { WorkerOptions } from '../../runtime/worker-options.ts';
import { S3rverCredentials } from './s3rver.ts';
import { until as poll } from './poll.ts';

export const BackupWhere = 'attribute_not_exists(backed_up_etag) OR backed_up_etag <> etag';
const specFile = fileURLToPath(new URL('../../functions/backup/function.yaml', import.meta.url));

/** The environment the spec's `fromEnv` secrets are read from, for an s3rver target. */
export function backupEnv(endpoint: string, bucket: string): Record<string, string> {
  return { BACKUP_ENDPOINT: endpoint, BACKUP_BUCKET: bucket, BACKUP_REGION: 'us-east-1', BACKUP_ACCESS_KEY_ID: S3rverCredentials.accessKeyId, BACKUP_SECRET_ACCESS_KEY: S3rverCredentials.secretAccessKey };
}

/** functions/backup/function.yaml (the real file) with name, bucket, `every` and backend replaced. */
export function backupSpecText(o: { name: string; bucket: string; every: string; backend: { kind: 'local'; dir: string } | { kind: 'nats'; url: string }; maxRecords?: number }): string {
  const backend = o.backend.kind === 'local' ? `{kind: local, dir: ${JSON.stringify(o.backend.dir)}}` : `{kind: nats, url: ${JSON.stringify(o.backend.url)}}`;
  const text = readFileSync(specFile, 'utf8')
    .replace('name: backup', `name: ${o.name}`)
    .replace('handler: ./index.ts', `handler: ${JSON.stringify(fileURLToPath(new URL('../../functions/backup/index.ts', import.meta.url)))}`)
    .replace('bucket: uploads', `bucket: ${o.bucket}`)
    .replace('every: 5m', `every: ${o.every}`)
    .replace('maxRecords: 50', `maxRecords: ${o.maxRecords ?? 50}`)
    .replace('initialBackoff: 1s', 'initialBackoff: 200ms')
    .replace(/backend:\n {4}kind: local/, `backend: ${backend}`);
  for (const s of [o.name, o.bucket, o.every]) if (!text.includes(s)) throw new Error(`backup spec: ${s} not substituted`);
  return text;
}

/** Worker options of the backup example for an in-process worker. */
export function backupWorkerOptions(text: string, env: Record<string, string>): WorkerOptions {
  return toWorkerOptions(loadFunctionSpec(text), { specDir: '/', ordinal: 0, replicas: 1, env });
}

/** Body of object i in generation `gen`: sizes vary, every 25th is larger than the inline limit (64 KiB). */
export function bodyOf(i: number, gen: number): Buffer {
  const size = i % 25 === 0 ? 100_000 + i : 10 + ((i * 37) % 3000);
  const head = Buffer.from(`object ${i} generation ${gen}\n`);
  return Buffer.concat([head, randomBytes(Math.max(0, size - head.length))]);
}

export const keyOf = (i: number) => `dir${i % 7}/obj-${String(i).padStart(4, '0')}.bin`;

/** A client of the s3rver target. */
export function targetClient(endpoint: string): S3Client {
  return new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3rverCredentials });
}

/** The copy of `key` in the target, or undefined when there is none. */
export async function copyOf(c: S3Client, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const g = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await g.Body!.transformToByteArray());
  } catch (e) {
    if ((e as { name?: string }).name === 'NoSuchKey') return undefined;
    throw e;
  }
}

/** Keys still matching the backup's where (not backed up in their current state). */
export async function pending(o: ObjectBinding): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const p = await o.query({ where: BackupWhere, select: ['etag'], limit: 1000, ...(token ? { continuationToken: token } : {}) });
    out.push(...p.rows.map((r) => r.key));
    token = p.nextToken;
  } while (token);
  return out;
}

/** Polls until `pred` holds (40 s by default: a backup copies through a real S3 server). */
export const until = (what: string, pred: () => Promise<boolean>, ms = 40_000): Promise<unknown> => poll(what, pred, ms);
