/**
 * What the gateway keeps beside the objects, all in the backend so several gateway replicas share it
 * and it survives restarts:
 *
 * - buckets are the backend's own (Backend.listBuckets / deleteBucket): ListBuckets lists every bucket
 *   but the gateway's, DeleteBucket deletes an empty one for real. `sluice-s3-buckets` (KV) is what
 *   older gateways kept instead (a `deleted` mark per hidden bucket); {@link GatewayState.migrateDeleteMarks}
 *   turns those marks into deletes once.
 * - `sluice-s3-uploads` (KV): one item per multipart upload in progress.
 * - `sluice-s3-parts` (bucket): the uploaded parts, key `<uploadId>/<part number, 5 digits>`; durable,
 *   and in the backend's own store, so a part survives a gateway restart and is visible to every replica.
 *
 * The `sluice-s3-` prefix is reserved: S3 clients cannot name a bucket with it.
 */
import { SluiceError } from '../../bindings/errors.ts';
import type { Backend, KvBinding, ObjectBinding } from '../../bindings/types.ts';
import { deleteBucketChecked } from '../bucket-users.ts';
import { S3Error } from './s3-errors.ts';

export const RESERVED_PREFIX = 'sluice-s3-';
export const BUCKETS_TABLE = 'sluice-s3-buckets';
export const UPLOADS_TABLE = 'sluice-s3-uploads';
export const PARTS_BUCKET = 'sluice-s3-parts';

/** How long a bucket's registry state is trusted before it is read again (other replicas may change it). */
const BUCKET_TTL_MS = 2000;

interface CachedBucket {
  binding: ObjectBinding;
  at: number;
}

/** A multipart upload in progress. */
export interface UploadRecord {
  bucket: string;
  key: string;
  initiated: Date;
  contentType: string;
  /** x-amz-meta-* of the CreateMultipartUpload request. */
  meta: Record<string, string>;
  /** Stored response headers (Cache-Control, …). */
  headers: Record<string, string>;
}

/** The gateway's shared state over one backend. */
export class GatewayState {
  readonly backend: Backend;
  readonly shards: number;
  readonly uploads: KvBinding;
  readonly parts: ObjectBinding;
  readonly #cache = new Map<string, CachedBucket>();

  private constructor(backend: Backend, shards: number, uploads: KvBinding, parts: ObjectBinding) {
    this.backend = backend;
    this.shards = shards;
    this.uploads = uploads;
    this.parts = parts;
  }

  static async open(backend: Backend, shards: number): Promise<GatewayState> {
    await backend.createTable(UPLOADS_TABLE);
    // Only a gateway that ran before bucket deletion existed left this table.
    const marks = await backend.kv(BUCKETS_TABLE).catch(() => undefined);
    if (marks) await GatewayState.migrateDeleteMarks(backend, marks);
    // One shard: nothing consumes the staging bucket's change stream.
    await backend.createBucket(PARTS_BUCKET, { shards: 1 }).catch((e: unknown) => {
      if (!(e instanceof SluiceError && e.code === 'SLUICE_ALREADY_EXISTS')) throw e;
    });
    return new GatewayState(backend, shards, await backend.kv(UPLOADS_TABLE), await backend.objects(PARTS_BUCKET));
  }

  /** Refuses names the gateway keeps for itself. */
  static checkClientName(bucket: string): void {
    if (bucket.startsWith(RESERVED_PREFIX)) throw new S3Error('InvalidBucketName', `bucket names starting with '${RESERVED_PREFIX}' are reserved by the gateway`);
  }

  /** The binding of a bucket; NoSuchBucket when the backend has none by that name. */
  async bucket(name: string): Promise<ObjectBinding> {
    GatewayState.checkClientName(name);
    const now = Date.now();
    const c = this.#cache.get(name);
    if (c && now - c.at < BUCKET_TTL_MS) return c.binding;
    let binding: ObjectBinding;
    try {
      binding = await this.backend.objects(name);
    } catch (e) {
      this.#cache.delete(name);
      if (e instanceof SluiceError && (e.code === 'SLUICE_BUCKET_NOT_FOUND' || e.code === 'SLUICE_NAME_INVALID'))
        throw new S3Error('NoSuchBucket', `the bucket '${name}' does not exist`);
      throw e;
    }
    this.#cache.set(name, { binding, at: now });
    return binding;
  }

  /** Creates a bucket; false when it already existed. */
  async createBucket(name: string): Promise<boolean> {
    GatewayState.checkClientName(name);
    const existed = await this.backend.objects(name).then(
      () => true,
      (e: unknown) => {
        if (e instanceof SluiceError && e.code === 'SLUICE_BUCKET_NOT_FOUND') return false;
        throw e;
      },
    );
    if (existed) return false;
    await this.backend.createBucket(name, { shards: this.shards }).catch((e: unknown) => {
      // Made at the same moment elsewhere (another replica, the CLI), maybe with other shards: still the same bucket to S3 clients.
      if (!(e instanceof SluiceError && e.code === 'SLUICE_ALREADY_EXISTS')) throw e;
    });
    this.#cache.delete(name);
    return true;
  }

  /**
   * Deletes an empty bucket through the backend (controller/bucket-users.ts): BucketNotEmpty while it
   * holds objects, OperationAborted (SLUICE_BUCKET_IN_USE) while a deployed function uses it.
   */
  async deleteBucket(name: string): Promise<void> {
    GatewayState.checkClientName(name);
    await this.bucket(name);
    this.#cache.delete(name);
    try {
      await deleteBucketChecked(this.backend, name);
    } catch (e) {
      if (e instanceof SluiceError && e.code === 'SLUICE_BUCKET_NOT_FOUND') throw new S3Error('NoSuchBucket', `the bucket '${name}' does not exist`);
      throw e;
    }
    // Uploads in progress into the bucket go with it.
    for (const u of await this.listUploads(name)) await this.abortUpload(u.id);
  }

  /** Buckets S3 clients can see (not the gateway's own) with their creation time, in name order. */
  async listBuckets(): Promise<{ name: string; created: Date }[]> {
    return (await this.backend.listBuckets()).filter((b) => !b.name.startsWith(RESERVED_PREFIX)).map((b) => ({ name: b.name, created: b.created }));
  }

  /**
   * Gateways before Backend.deleteBucket only marked deleted buckets in `sluice-s3-buckets`; those marks
   * become real deletes (of buckets still empty) once, and the table is emptied. Runs at open.
   */
  static async migrateDeleteMarks(backend: Backend, table: KvBinding): Promise<void> {
    let marker: string | undefined;
    do {
      const page = await table.getItems({ limit: 1000, ...(marker !== undefined ? { marker } : {}) });
      for (const e of page.items) {
        if (e.item.deleted === true)
          await backend.deleteBucket(e.key).catch((err: unknown) => {
            // Refilled since (then it is visible again) or already gone: either way the mark is done with.
            if (!(err instanceof SluiceError && (err.code === 'SLUICE_BUCKET_NOT_EMPTY' || err.code === 'SLUICE_BUCKET_NOT_FOUND' || err.code === 'SLUICE_NAME_INVALID'))) throw err;
          });
        await table.deleteItem(e.key);
      }
      marker = page.nextMarker;
    } while (marker !== undefined);
  }

  // ───────────────────────────── multipart ─────────────────────────────

  async createUpload(id: string, u: UploadRecord): Promise<void> {
    await this.uploads.putItem(id, { ...u }, { ifRevision: 0 });
  }

  /** The upload `id` into bucket/key; NoSuchUpload when unknown (or completed, or aborted). */
  async upload(id: string, bucket?: string, key?: string): Promise<UploadRecord> {
    const e = /^[0-9a-f]{32}$/.test(id) ? await this.uploads.getItem(id) : undefined;
    const u = e?.item as UploadRecord | undefined;
    if (!u || (bucket !== undefined && u.bucket !== bucket) || (key !== undefined && u.key !== key))
      throw new S3Error('NoSuchUpload', 'the specified multipart upload does not exist; it may have been aborted or completed');
    return u;
  }

  /** Uploads in progress, optionally of one bucket, by key then initiation time. */
  async listUploads(bucket?: string): Promise<(UploadRecord & { id: string })[]> {
    const out: (UploadRecord & { id: string })[] = [];
    let marker: string | undefined;
    do {
      const page = await this.uploads.getItems({ limit: 1000, ...(marker !== undefined ? { marker } : {}) });
      for (const e of page.items) {
        const u = e.item as unknown as UploadRecord;
        if (bucket === undefined || u.bucket === bucket) out.push({ ...u, id: e.key });
      }
      marker = page.nextMarker;
    } while (marker !== undefined);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated.getTime() - b.initiated.getTime()));
  }

  static partKey(id: string, n: number): string {
    return `${id}/${String(n).padStart(5, '0')}`;
  }

  /** Removes an upload's parts and record. */
  async abortUpload(id: string): Promise<void> {
    await this.#removeParts(id);
    await this.uploads.deleteItem(id);
  }

  async #removeParts(id: string): Promise<void> {
    let token: string | undefined;
    do {
      const page = await this.parts.list({ prefix: `${id}/`, limit: 1000, ...(token !== undefined ? { continuationToken: token } : {}) });
      await Promise.all(page.objects.map((o) => this.parts.delete(o.key)));
      token = page.nextToken;
    } while (token !== undefined);
  }

  /** Ends a completed upload: its record first (so a retry of Complete sees NoSuchUpload), then parts. */
  async finishUpload(id: string): Promise<void> {
    await this.uploads.deleteItem(id);
    await this.#removeParts(id);
  }
}
