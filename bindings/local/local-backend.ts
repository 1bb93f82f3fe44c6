/**
 * The embedded default backend: every binding over one {@link LocalStore} in one data directory,
 * usable by several processes at once.
 */
import { isAbsolute, join } from 'node:path';
import { BodyCollector, type BodyStore, type BodyStoreOptions, type CollectOptions, type CollectResult } from '../body-store.ts';
import { BindingError } from '../errors.ts';
import { S3BodyStore } from '../s3/index.ts';
import { FsFile } from '../file/index.ts';
import { checkSignal, resolveReplicas, resolveShards, resolveTableOptions } from '../backend-helpers.ts';
import { changeStreamName, DEFAULT_BUCKET_SHARDS } from '../change-record.ts';
import type { Backend, BucketInfo, BucketOptions, CallOptions, CommitBatchOptions, FileBinding, KvBinding, ListedBucket, ObjectBinding, StreamBinding, TableOptions, WriteOp, WriteOpResult } from '../types.ts';
import { checkWriteOp, failedOp, mayFollow, opWhere } from '../write-batch.ts';
import { resolveIndexes } from '../query/index.ts';
import { checkName } from '../values.ts';
import { LocalKv } from './local-kv.ts';
import { LocalObject } from './local-object.ts';
import { LocalStore, type LocalStoreOptions } from './local-store.ts';
import { LocalStream } from './local-stream.ts';

/** Options of the local backend. */
export interface LocalBackendOptions extends Omit<LocalStoreOptions, 'dir'> {
  /** Data directory shared by every process of one sluice installation. @default './.sluice-data' */
  dir?: string;
  /**
   * Keep bodies above `bodies.inlineMaxBytes` in an external S3-compatible store; metadata, attributes
   * and change records stay in the data directory. Every process opening the directory must pass the
   * same value. @default undefined (every body in the data directory)
   */
  bodies?: BodyStoreOptions;
}

/** `Backend` on the embedded store. */
export class LocalBackend implements Backend {
  readonly kind = 'local';
  readonly store: LocalStore;
  readonly #streams: LocalStream;
  readonly #bodies: BodyStore | undefined;
  readonly #collector: BodyCollector | undefined;

  private constructor(store: LocalStore, bodies: S3BodyStore | undefined) {
    this.store = store;
    this.#streams = new LocalStream(store);
    this.#bodies = bodies;
    if (bodies) {
      const o = bodies.options;
      this.#collector = new BodyCollector(bodies, async (bucket) => this.#referenceCheck(bucket), { graceMs: o.gcGraceMs, maxBodies: o.gcMaxBodiesPerRun });
      this.#collector.start(o.gcIntervalMs);
    }
  }

  /** Opens (creating when missing) the data directory, and the external body store when configured. */
  static async open(options: LocalBackendOptions = {}): Promise<LocalBackend> {
    const { bodies: bodyOptions, ...storeOptions } = options;
    const bodies = bodyOptions !== undefined ? await S3BodyStore.open(bodyOptions) : undefined;
    try {
      return new LocalBackend(LocalStore.open({ ...storeOptions, dir: options.dir ?? './.sluice-data' }), bodies);
    } catch (err) {
      await bodies?.close();
      throw err;
    }
  }

  /**
   * Removes external bodies no object references (left by crashes between upload and commit, or by a
   * failed removal after an overwrite) once older than the grace period. Bounded by `maxBodies`; also
   * runs every `bodies.gcIntervalMs`. Without `bodies`, nothing to do.
   */
  async collectBodies(options?: CollectOptions): Promise<CollectResult> {
    if (!this.#collector) return { scanned: 0, deleted: 0, young: 0, more: false };
    return this.#collector.run(options);
  }

  async #referenceCheck(bucket: string): Promise<((key: string, ref: string) => Promise<boolean>) | undefined> {
    try {
      const o = (await this.objects(bucket)) as LocalObject;
      return (key, ref) => o.references(key, ref);
    } catch (err) {
      // Bodies under a bucket this store does not know are not ours to judge: leave them.
      if (err instanceof BindingError && (err.code === 'SLUICE_BUCKET_NOT_FOUND' || err.code === 'SLUICE_NAME_INVALID')) return undefined;
      throw err;
    }
  }

  async createBucket(name: string, options?: BucketOptions): Promise<BucketInfo> {
    checkName(name, 'bucket');
    const shards = resolveShards(options?.shards, `bucket '${name}'`, DEFAULT_BUCKET_SHARDS);
    const indexes = resolveIndexes(options?.indexes, `bucket '${name}'`);
    // Validated like NATS, then ignored: one machine keeps one copy (docs/OPERATIONS.md).
    resolveReplicas(options?.replicas, `bucket '${name}'`);
    const s = this.store;
    await s.write(() => {
      const cur = s.registry.get(['bucket', name]);
      if (cur && cur.kind === 'bucket') {
        if (cur.shards !== shards) throw new BindingError('SLUICE_ALREADY_EXISTS', `bucket '${name}' exists with ${cur.shards} shards, not ${shards}`);
        if ((cur.indexes ?? []).join(',') !== indexes.join(','))
          throw new BindingError('SLUICE_ALREADY_EXISTS', `bucket '${name}' exists with indexes [${(cur.indexes ?? []).join(', ')}], not [${indexes.join(', ')}]`);
        return;
      }
      s.registry.put(['bucket', name], { kind: 'bucket', shards, created: Date.now(), indexes });
    });
    return { name, shards, changeStream: changeStreamName(name), historyPerKey: 0, indexes };
  }

  /**
   * Removes an empty bucket in one transaction: the emptiness check and the removal cannot be split by
   * a put of another process (LMDB's write lock), so no object is ever lost. The change stream's records
   * go; its sequence counters stay, so a bucket made again under the name continues the numbering and
   * a consumer's old position never skips the new bucket's first records.
   */
  async deleteBucket(name: string): Promise<void> {
    checkName(name, 'bucket');
    const s = this.store;
    await s.write(() => {
      const cur = s.registry.get(['bucket', name]);
      if (!cur || cur.kind !== 'bucket') throw new BindingError('SLUICE_BUCKET_NOT_FOUND', `deleteBucket '${name}': bucket '${name}' does not exist`);
      for (const k of s.meta.getKeys({ start: [name], limit: 1 }))
        if (k[0] === name) throw new BindingError('SLUICE_BUCKET_NOT_EMPTY', `deleteBucket '${name}': the bucket still holds objects (e.g. '${String(k[1])}'); delete them first`);
      const stream = changeStreamName(name);
      for (const k of s.records.getKeys({ start: [stream, 0, 0], end: [stream, cur.shards, 0] })) s.records.remove(k);
      s.registry.remove(['bucket', name]);
    }, { freeing: true });
  }

  async listBuckets(): Promise<ListedBucket[]> {
    this.store.fresh();
    const out: ListedBucket[] = [];
    for (const { key, value } of this.store.registry.getRange({ start: ['bucket'], end: ['bucket', '\uffff'] })) {
      if (key[0] !== 'bucket' || value.kind !== 'bucket') continue;
      const name = String(key[1]);
      out.push({ name, shards: value.shards, changeStream: changeStreamName(name), historyPerKey: 0, indexes: [...(value.indexes ?? [])], created: new Date(value.created) });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async objects(bucket: string): Promise<ObjectBinding> {
    return this.#objects(bucket);
  }

  #objects(bucket: string): LocalObject {
    checkName(bucket, 'bucket');
    const e = this.store.registry.get(['bucket', bucket]);
    if (!e || e.kind !== 'bucket') throw new BindingError('SLUICE_BUCKET_NOT_FOUND', `bucket '${bucket}' does not exist`);
    return new LocalObject(this.store, bucket, e.shards, e.indexes ?? [], this.#bodies);
  }

  async createTable(name: string, options?: TableOptions): Promise<void> {
    checkName(name, 'table');
    resolveTableOptions(name, options); // replicas: validated, ignored (one copy)
    const s = this.store;
    await s.write(() => {
      if (!s.registry.get(['table', name])) s.registry.put(['table', name], { kind: 'table', created: Date.now() });
    });
  }

  async kv(table: string): Promise<KvBinding> {
    return this.#kv(table);
  }

  #kv(table: string): LocalKv {
    checkName(table, 'table');
    const e = this.store.registry.get(['table', table]);
    if (!e || e.kind !== 'table') throw new BindingError('SLUICE_TABLE_NOT_FOUND', `table '${table}' does not exist`);
    return new LocalKv(this.store, table);
  }

  /**
   * Every op in ONE write transaction of the store (shared with the other writes of this event-loop turn):
   * ops run in order, each reads and checks before it writes, so a failed op writes nothing and the
   * others go on. A transaction that does not commit (disk full) fails every op with its error.
   */
  async commitBatch(ops: readonly WriteOp[], options?: CommitBatchOptions): Promise<WriteOpResult[]> {
    checkSignal(options?.signal, 'commitBatch');
    const valid = ops.map((op, i) => {
      try {
        checkWriteOp(op, i);
        return undefined;
      } catch (e) {
        return failedOp(e);
      }
    });
    if (ops.length === 0) return [];
    const s = this.store;
    // One binding per bucket / table of the batch, resolved inside the transaction (registry reads).
    const objects = new Map<string, LocalObject>();
    const tables = new Map<string, LocalKv>();
    try {
      return await s.write(() =>
        s.withCounters(() => {
          const out: WriteOpResult[] = new Array(ops.length);
          for (let i = 0; i < ops.length; i++) {
            const op = ops[i]!;
            const bad = valid[i];
            if (bad) out[i] = bad;
            else if (!mayFollow(out, op, i)) out[i] = { status: 'skipped' };
            else {
              try {
                const where = opWhere(op, i);
                if (op.type === 'attrs') {
                  let o = objects.get(op.bucket);
                  if (!o) objects.set(op.bucket, (o = this.#objects(op.bucket)));
                  out[i] = { status: 'ok', revision: o.applyAttrsOp(op, where) };
                } else {
                  let t = tables.get(op.table);
                  if (!t) tables.set(op.table, (t = this.#kv(op.table)));
                  out[i] = { status: 'ok', revision: t.applyPutItem(op, where) };
                }
              } catch (e) {
                out[i] = failedOp(e);
              }
            }
          }
          return out;
        }),
        { repairable: options?.durability === 'repairable' },
      );
    } catch (e) {
      return ops.map((_, i) => valid[i] ?? failedOp(e));
    }
  }

  streams(): StreamBinding {
    return this.#streams;
  }

  /** Files under `root`; a relative root is taken inside the data directory. */
  async files(root: string): Promise<FileBinding> {
    return FsFile.open(isAbsolute(root) ? root : join(this.store.dir, 'files', root));
  }

  async close(): Promise<void> {
    await this.#collector?.stop();
    await this.store.close();
    await this.#bodies?.close();
  }
}
