/**
 * What the gateway keeps beside the objects, all in the backend so several gateway replicas share it
 * and it survives restarts:
 *
 * - `sluice-s3-buckets` (KV): one item per bucket S3 clients can see, `{created, deleted}`. The Backend
 *   contract has no bucket listing or deletion, so ListBuckets reads this table, and DeleteBucket marks
 *   the (empty) bucket deleted here; the backend's bucket stays, empty, and CreateBucket revives it.
 *   A bucket made outside the gateway (CLI, `sluice dev`) is registered the first time a client uses it.
 * - `sluice-s3-uploads` (KV): one item per multipart upload in progress.
 * - `sluice-s3-parts` (bucket): the uploaded parts, key `<uploadId>/<part number, 5 digits>`; durable,
 *   and in the backend's own store, so a part survives a gateway restart and is visible to every replica.
 *
 * The `sluice-s3-` prefix is reserved: S3 clients cannot name a bucket with it.
 */
import { ConditionFailedError, SluiceError } from '../../bindings/errors.ts';
import type { Backend, KvBinding, ObjectBinding } from '../../bindings/types.ts';
import { S3Error } from './s3-errors.ts';

export const RESERVED_PREFIX = 'sluice-s3-';
export const BUCKETS_TABLE = 'sluice-s3-buckets';
export const UPLOADS_TABLE = 'sluice-s3-uploads';
export const PARTS_BUCKET = 'sluice-s3-parts';

/** How long a bucket's registry state is trusted before it is read again (other replicas may change it). */
const BUCKET_TTL_MS = 2000;

interface CachedBucket {
  binding: ObjectBinding;
  visible: boolean;
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
  readonly #buckets: KvBinding;
  readonly uploads: KvBinding;
  readonly parts: ObjectBinding;
  readonly #cache = new Map<string, CachedBucket>();

  private constructor(backend: Backend, shards: number, buckets: KvBinding, uploads: KvBinding, parts: ObjectBinding) {
    this.backend = backend;
    this.shards = shards;
    this.#buckets = buckets;
    this.uploads = uploads;
    this.parts = parts;
  }

  static async open(backend: Backend, shards: number): Promise<GatewayState> {
    await backend.createTable(BUCKETS_TABLE);
    await backend.createTable(UPLOADS_TABLE);
    // One shard: nothing consumes the staging bucket's change stream.
    await backend.createBucket(PARTS_BUCKET, { shards: 1 }).catch((e: unknown) => {
      if (!(e instanceof SluiceError && e.code === 'SLUICE_ALREADY_EXISTS')) throw e;
    });
    return new GatewayState(backend, shards, await backend.kv(BUCKETS_TABLE), await backend.kv(UPLOADS_TABLE), await backend.objects(PARTS_BUCKET));
  }

  /** Refuses names the gateway keeps for itself. */
  static checkClientName(bucket: string): void {
    if (bucket.startsWith(RESERVED_PREFIX)) throw new S3Error('InvalidBucketName', `bucket names starting with '${RESERVED_PREFIX}' are reserved by the gateway`);
  }

  /** The binding of a bucket S3 clients can see; NoSuchBucket otherwise. */
  async bucket(name: string): Promise<ObjectBinding> {
    GatewayState.checkClientName(name);
    const now = Date.now();
    const c = this.#cache.get(name);
    if (c && now - c.at < BUCKET_TTL_MS) {
      if (!c.visible) throw new S3Error('NoSuchBucket', `the bucket '${name}' does not exist`);
      return c.binding;
    }
    let binding: ObjectBinding;
    try {
      binding = c?.binding ?? (await this.backend.objects(name));
    } catch (e) {
      if (e instanceof SluiceError && (e.code === 'SLUICE_BUCKET_NOT_FOUND' || e.code === 'SLUICE_NAME_INVALID'))
        throw new S3Error('NoSuchBucket', `the bucket '${name}' does not exist`);
      throw e;
    }
    const entry = await this.#buckets.getItem(name);
    if (entry === undefined) await this.#register(name, false);
    const visible = entry === undefined || entry.item.deleted !== true;
    this.#cache.set(name, { binding, visible, at: now });
    if (!visible) throw new S3Error('NoSuchBucket', `the bucket '${name}' does not exist`);
    return binding;
  }

  async #register(name: string, revive: boolean): Promise<boolean> {
    const cur = await this.#buckets.getItem(name);
    if (cur && cur.item.deleted !== true) return false;
    try {
      await this.#buckets.putItem(name, { created: new Date(), deleted: false }, { ifRevision: cur?.revision ?? 0 });
    } catch (e) {
      // Another replica registered it at the same moment: it exists, which is all that was wanted.
      if (e instanceof ConditionFailedError) return false;
      throw e;
    }
    return cur === undefined || revive;
  }

  /** Creates (or revives) a bucket; false when it was already visible. */
  async createBucket(name: string): Promise<boolean> {
    GatewayState.checkClientName(name);
    await this.backend.createBucket(name, { shards: this.shards }).catch((e: unknown) => {
      // A bucket made elsewhere with other shards is still the same bucket to S3 clients.
      if (!(e instanceof SluiceError && e.code === 'SLUICE_ALREADY_EXISTS')) throw e;
    });
    const created = await this.#register(name, true);
    this.#cache.delete(name);
    return created;
  }

  /** Hides an empty bucket from S3 clients; BucketNotEmpty when it holds objects. */
  async deleteBucket(name: string): Promise<void> {
    const b = await this.bucket(name);
    const page = await b.list({ limit: 1 });
    if (page.objects.length > 0) throw new S3Error('BucketNotEmpty', `the bucket '${name}' you tried to delete is not empty`);
    const cur = await this.#buckets.getItem(name);
    await this.#buckets.putItem(name, { created: cur?.item.created ?? new Date(), deleted: true });
    this.#cache.delete(name);
    // Uploads in progress into the bucket go with it.
    for (const u of await this.listUploads(name)) await this.abortUpload(u.id);
  }

  /** Visible buckets with their creation time, in name order. */
  async listBuckets(): Promise<{ name: string; created: Date }[]> {
    const out: { name: string; created: Date }[] = [];
    let marker: string | undefined;
    do {
      const page = await this.#buckets.getItems({ limit: 1000, ...(marker !== undefined ? { marker } : {}) });
      for (const e of page.items) if (e.item.deleted !== true) out.push({ name: e.key, created: e.item.created instanceof Date ? e.item.created : new Date(0) });
      marker = page.nextMarker;
    } while (marker !== undefined);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
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
