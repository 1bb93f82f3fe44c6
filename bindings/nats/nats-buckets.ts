/**
 * Bucket listing and deletion on NATS, apart from the object binding (nats-object.ts) on purpose: these
 * only read and remove the JetStream streams a bucket is made of (nats-names.ts: the metadata KV stream
 * `KV_<p>_obj_<b>`, which is also the change stream, and the Object Store stream `OBJ_<p>_body_<b>`).
 *
 * Why no registry: a bucket's configuration lives in its KV stream's description, so listing is one
 * paged `STREAM.LIST` filtered by name — every stream's info (description, creation time) in one page of
 * up to 256, not one request per bucket.
 *
 * Deletion is "check empty, then delete the streams". JetStream has no conditional stream delete, so a
 * put by another client landing between the check and the delete goes with the bucket (S3 makes no
 * promise for that race either); a put through a binding held after the delete fails (no stream).
 * Consumer-group positions are kept per stream incarnation (nats-names.ts `incarnation`), so a bucket
 * made again under the name starts a new change stream that no old position applies to.
 */
import { BindingError } from '../errors.ts';
import { changeStreamName } from '../change-record.ts';
import type { ListedBucket, ObjectBinding } from '../types.ts';
import type { NatsContext } from './nats-context.ts';
import { isStreamNotFound, toBindingError } from './nats-errors.ts';
import { kvStream, parseDescription } from './nats-names.ts';

/** Every sluice bucket of this prefix, in name order. `defaultHistory`: what a description without one means. */
export async function listNatsBuckets(ctx: NatsContext, defaultHistory: number): Promise<ListedBucket[]> {
  const head = kvStream(ctx.names.objectKv(''));
  const out: ListedBucket[] = [];
  try {
    for await (const si of ctx.jsm.streams.list()) {
      if (!si.config.name.startsWith(head)) continue;
      const d = parseDescription(si.config.description, 'bucket');
      if (!d) continue;
      const name = si.config.name.slice(head.length);
      out.push({ name, shards: d.shards, changeStream: changeStreamName(name), historyPerKey: d.history ?? defaultHistory, indexes: [...(d.indexes ?? [])], created: new Date(si.created) });
    }
  } catch (err) {
    throw toBindingError(err, 'listBuckets');
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Deletes the empty bucket `name` whose binding is `objects`: SLUICE_BUCKET_NOT_EMPTY while it holds an
 * object. `ownBodies`: the bucket keeps large bodies in its own Object Store (no external body store).
 */
export async function deleteNatsBucket(ctx: NatsContext, name: string, objects: ObjectBinding, ownBodies: boolean): Promise<void> {
  const where = `deleteBucket '${name}'`;
  const page = await objects.list({ limit: 1 });
  const first = page.objects[0]?.key;
  if (first !== undefined) throw new BindingError('SLUICE_BUCKET_NOT_EMPTY', `${where}: the bucket still holds objects (e.g. '${first}'); delete them first`);
  try {
    // The metadata stream first: once it is gone the bucket no longer exists for anyone.
    await ctx.jsm.streams.delete(kvStream(ctx.names.objectKv(name)));
  } catch (err) {
    if (isStreamNotFound(err)) throw new BindingError('SLUICE_BUCKET_NOT_FOUND', `${where}: bucket '${name}' does not exist`, { cause: err });
    throw toBindingError(err, where);
  }
  if (!ownBodies) return;
  try {
    await ctx.jsm.streams.delete(`OBJ_${ctx.names.bodyStore(name)}`);
  } catch (err) {
    // Already gone (a bucket made before its body store existed, or a concurrent delete): nothing left.
    if (!isStreamNotFound(err)) throw toBindingError(err, where);
  }
}
