/**
 * backup: incremental backup of a bucket to any S3-compatible store. A scheduled query trigger selects
 * the objects whose body is not backed up yet (`attribute_not_exists(backed_up_etag) OR
 * backed_up_etag <> etag`); for each, the handler copies the body with PutObject (Content-MD5, so the
 * store verifies the bytes) and only then declares `backed_up_etag` (the etag copied) and `backed_up_at`.
 *
 * Why this cannot leave "attributes without the copy": attribute effects are committed by the runtime
 * after the handler returns, and a record's attributes are declared only after its PutObject succeeded.
 * A crash before the commit leaves the object unmarked, so the resumed run (or the next one) copies it
 * again — a copy is an idempotent overwrite of the same key with the same bytes. A failed copy fails
 * just that record (`record.fail`): it is retried with backoff, then dead-lettered.
 */
import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { defineFunction, type EventRecord, type HandlerContext } from '../types.ts';
import { openTarget, type BackupTarget } from './target.ts';

/** Copies in flight at once per batch: bounds the bodies held in memory and the connections opened. */
const COPY_CONCURRENCY = 8;

// One client per handler thread, built from the secrets object the thread was given.
const targets = new WeakMap<object, BackupTarget>();
function targetFor(secrets: Readonly<Record<string, string>>): BackupTarget {
  let t = targets.get(secrets);
  if (t === undefined) targets.set(secrets, (t = openTarget(secrets)));
  return t;
}

type Outcome = 'copied' | 'changed' | 'gone' | 'failed';

async function copyOne(r: EventRecord, t: BackupTarget, signal: AbortSignal): Promise<{ outcome: Outcome; bytes: number }> {
  let body: Uint8Array;
  try {
    body = r.body ?? (await r.data());
  } catch (err) {
    // Deleted since the run selected it: nothing to copy, nothing to mark (deletes are not propagated).
    if ((err as { code?: unknown }).code === 'SLUICE_NOT_FOUND') return { outcome: 'gone', bytes: 0 };
    r.fail(err instanceof Error ? err : String(err));
    return { outcome: 'failed', bytes: 0 };
  }
  const md5 = createHash('md5').update(body).digest();
  // A body read after the batch formed may be a newer put than this record's: copying it is harmless,
  // but marking it with this record's etag would be a lie. Leave it unmarked; the next run (which sees
  // the new etag) copies it.
  if (md5.toString('hex') !== r.etag) return { outcome: 'changed', bytes: 0 };
  try {
    await t.client.send(
      new PutObjectCommand({
        Bucket: t.bucket,
        Key: t.prefix + r.key,
        Body: body,
        ContentLength: body.byteLength,
        ContentMD5: md5.toString('base64'),
        ContentType: r.contentType || 'application/octet-stream',
        Metadata: { 'sluice-etag': r.etag, 'sluice-version': String(r.version) },
      }),
      { abortSignal: signal },
    );
  } catch (err) {
    r.fail(err instanceof Error ? err : String(err));
    return { outcome: 'failed', bytes: 0 };
  }
  // Declared only now, after the store acknowledged the copy; committed after the handler returns.
  r.setAttrs({ backed_up_etag: r.etag, backed_up_at: new Date().toISOString() });
  return { outcome: 'copied', bytes: body.byteLength };
}

async function handler(records: EventRecord[], ctx: HandlerContext): Promise<void> {
  const t = targetFor(ctx.secrets);
  const todo = records.filter((r) => r.type === 'put');
  const n: Record<Outcome, number> = { copied: 0, changed: 0, gone: 0, failed: 0 };
  let bytes = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    // Each lane takes the next record until none is left: at most COPY_CONCURRENCY copies at once.
    for (let i = next++; i < todo.length; i = next++) {
      const res = await copyOne(todo[i]!, t, ctx.signal);
      n[res.outcome]++;
      bytes += res.bytes;
    }
  };
  await Promise.all(Array.from({ length: Math.min(COPY_CONCURRENCY, todo.length) }, lane));
  if (n.copied > 0) ctx.count('objects_backed_up', n.copied);
  if (bytes > 0) ctx.count('bytes_backed_up', bytes);
  if (n.changed > 0) ctx.count('backup_changed_since_selection', n.changed);
  if (n.failed > 0) ctx.count('backup_copy_failed', n.failed);
  ctx.log.debug({ ...n, bytes }, 'batch backed up');
}

export default defineFunction({
  // Fails the thread's start (loudly, retried) rather than every batch when a secret is missing.
  init: (ctx) => void targetFor(ctx.secrets),
  handler,
});
