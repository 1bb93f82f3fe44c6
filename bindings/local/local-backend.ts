/**
 * The embedded default backend: every binding over one {@link LocalStore} in one data directory,
 * usable by several processes at once.
 */
import { isAbsolute, join } from 'node:path';
import { BindingError } from '../errors.ts';
import { FsFile } from '../file/index.ts';
import { resolveShards } from '../backend-helpers.ts';
import { changeStreamName, DEFAULT_BUCKET_SHARDS } from '../change-record.ts';
import type { Backend, BucketInfo, BucketOptions, FileBinding, KvBinding, ObjectBinding, StreamBinding, TableOptions } from '../types.ts';
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
}

/** `Backend` on the embedded store. */
export class LocalBackend implements Backend {
  readonly kind = 'local';
  readonly store: LocalStore;
  readonly #streams: LocalStream;

  private constructor(store: LocalStore) {
    this.store = store;
    this.#streams = new LocalStream(store);
  }

  /** Opens (creating when missing) the data directory. */
  static async open(options: LocalBackendOptions = {}): Promise<LocalBackend> {
    return new LocalBackend(LocalStore.open({ ...options, dir: options.dir ?? './.sluice-data' }));
  }

  async createBucket(name: string, options?: BucketOptions): Promise<BucketInfo> {
    checkName(name, 'bucket');
    const shards = resolveShards(options?.shards, `bucket '${name}'`, DEFAULT_BUCKET_SHARDS);
    const indexes = resolveIndexes(options?.indexes, `bucket '${name}'`);
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

  async objects(bucket: string): Promise<ObjectBinding> {
    checkName(bucket, 'bucket');
    const e = this.store.registry.get(['bucket', bucket]);
    if (!e || e.kind !== 'bucket') throw new BindingError('SLUICE_BUCKET_NOT_FOUND', `bucket '${bucket}' does not exist`);
    return new LocalObject(this.store, bucket, e.shards, e.indexes ?? []);
  }

  async createTable(name: string, _options?: TableOptions): Promise<void> {
    checkName(name, 'table');
    const s = this.store;
    await s.write(() => {
      if (!s.registry.get(['table', name])) s.registry.put(['table', name], { kind: 'table', created: Date.now() });
    });
  }

  async kv(table: string): Promise<KvBinding> {
    checkName(table, 'table');
    const e = this.store.registry.get(['table', table]);
    if (!e || e.kind !== 'table') throw new BindingError('SLUICE_TABLE_NOT_FOUND', `table '${table}' does not exist`);
    return new LocalKv(this.store, table);
  }

  streams(): StreamBinding {
    return this.#streams;
  }

  /** Files under `root`; a relative root is taken inside the data directory. */
  async files(root: string): Promise<FileBinding> {
    return FsFile.open(isAbsolute(root) ? root : join(this.store.dir, 'files', root));
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
