/**
 * The embedded store: one LMDB environment in one data directory, shared by every process that opens
 * it (LMDB takes a cross-process write lock; readers never block).
 *
 * Writes go through {@link LocalStore.write}: operations queued in one event-loop turn run together in
 * ONE synchronous LMDB write transaction (group commit). Each operation reads what it needs, checks its
 * conditions and only then writes, inside that transaction — so a condition check and the write it
 * guards are atomic across processes, and an object write and its change record commit together
 * (DESIGN invariant 1). lmdb-js's asynchronous transaction callbacks are not used: they rely on
 * thread-safe N-API calls that never fire on this platform (measured: `transaction()` hangs), while
 * grouped `transactionSync` commits measured ≈110k conditional writes/s.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { BindingError } from '../errors.ts';

/** Options of the embedded store. */
export interface LocalStoreOptions {
  /** Data directory (created when missing). */
  dir: string;
  /**
   * How often a reader waiting for stream records polls for writes by other processes, in ms
   * (writes by this process wake waiters at once). @default 2
   */
  pollMs?: number;
  /** Most operations committed in one transaction. @default 2000 */
  maxBatchOps?: number;
  /**
   * Most operations waiting for the next commit; beyond it `write` rejects with SLUICE_BACKEND_UNAVAILABLE
   * (backpressure instead of unbounded memory). @default 100000
   */
  maxQueuedOps?: number;
}

/** A registry entry. */
export type RegistryEntry =
  | { kind: 'bucket'; shards: number; created: number; indexes?: string[] }
  | { kind: 'table'; created: number }
  | { kind: 'stream'; shards: number; retentionMs: number; created: number };

/** The stored metadata of an object (attributes live apart so listings stay cheap). */
export interface StoredMeta {
  size: number;
  etag: string;
  version: number;
  contentType: string;
  mtime: number;
  attrsRevision: number;
}

/** A stored stream record. */
export interface StoredRecord {
  d: Uint8Array;
  h?: Record<string, string>;
  p?: string;
  t: number;
}

/** A stored KV item. */
export interface StoredItem {
  i: Record<string, unknown>;
  r: number;
}

interface QueuedOp {
  fn: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

type Key = (string | number)[];

/** The shared LMDB environment, its databases and the group-commit writer. */
export class LocalStore {
  readonly dir: string;
  readonly pollMs: number;
  readonly root: RootDatabase;
  /** ['bucket'|'table'|'stream', name] → RegistryEntry */
  readonly registry: Database<RegistryEntry, Key>;
  /** [bucket, key] → StoredMeta */
  readonly meta: Database<StoredMeta, Key>;
  /** [bucket, key] → attributes */
  readonly attrs: Database<Record<string, unknown>, Key>;
  /** [bucket, key] → body bytes */
  readonly bodies: Database<Buffer, Key>;
  /** [stream, shard, seq] → StoredRecord */
  readonly records: Database<StoredRecord, Key>;
  /**
   * [bucket, field, rank, value, key] → null: the query index entries of a bucket's indexed fields,
   * written in the same transaction as the metadata and attributes they reflect.
   */
  readonly qindex: Database<null, Key>;
  /** [table, key] → StoredItem */
  readonly items: Database<StoredItem, Key>;
  /** [stream, group, shard] → committed seq */
  readonly groups: Database<number, Key>;
  /** ['v', bucket] | ['s', stream, shard] | ['r', table] → last number handed out */
  readonly counters: Database<number, Key>;
  /** Emits `append` (stream, shard) after commits that appended records. */
  readonly events = new EventEmitter();

  #queue: QueuedOp[] = [];
  #scheduled = false;
  #closed = false;
  #appended = new Set<string>();
  readonly #maxBatchOps: number;
  readonly #maxQueuedOps: number;

  private constructor(opts: LocalStoreOptions) {
    this.dir = opts.dir;
    this.pollMs = opts.pollMs ?? 2;
    this.#maxBatchOps = opts.maxBatchOps ?? 2000;
    this.#maxQueuedOps = opts.maxQueuedOps ?? 100_000;
    mkdirSync(opts.dir, { recursive: true });
    this.root = open({ path: join(opts.dir, 'sluice.mdb'), maxDbs: 16 });
    this.registry = this.root.openDB({ name: 'registry' });
    this.meta = this.root.openDB({ name: 'meta' });
    this.attrs = this.root.openDB({ name: 'attrs' });
    this.bodies = this.root.openDB({ name: 'bodies', encoding: 'binary' });
    this.records = this.root.openDB({ name: 'records' });
    this.items = this.root.openDB({ name: 'items' });
    this.qindex = this.root.openDB({ name: 'qindex' });
    this.groups = this.root.openDB({ name: 'groups' });
    this.counters = this.root.openDB({ name: 'counters' });
    this.events.setMaxListeners(0);
  }

  /** Opens (creating when missing) the store in `opts.dir`. */
  static open(opts: LocalStoreOptions): LocalStore {
    try {
      return new LocalStore(opts);
    } catch (cause) {
      throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', `cannot open the local store in '${opts.dir}': ${(cause as Error).message}`, { cause });
    }
  }

  /**
   * Runs `fn` inside a write transaction shared with the other operations of this turn and resolves
   * with its result once committed. `fn` must check everything before its first write: a throw after a
   * write would leave that write in the shared transaction.
   */
  write<T>(fn: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new BindingError('SLUICE_BACKEND_UNAVAILABLE', `the local store in '${this.dir}' is closed`));
    if (this.#queue.length >= this.#maxQueuedOps)
      return Promise.reject(new BindingError('SLUICE_BACKEND_UNAVAILABLE', `the local store has ${this.#queue.length} writes queued; retry later`));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /**
   * Moves this process's read snapshot to the latest commit of any process. lmdb-js renews its cached
   * read transaction only on a new event-loop turn or after a local commit; a read following other
   * awaits in the same turn would otherwise miss another process's (or another handle's) commit.
   */
  fresh(): void {
    this.root.resetReadTxn();
  }

  /** Marks a shard as appended to in the running transaction (wakes in-process readers after commit). */
  noteAppend(stream: string, shard: number): void {
    this.#appended.add(`${stream}\u0000${shard}`);
  }

  /** Hands out the next number of a counter; only inside {@link write}. */
  next(counter: Key): number {
    const n = (this.counters.get(counter) ?? 0) + 1;
    this.counters.put(counter, n);
    return n;
  }

  #flush(): void {
    this.#scheduled = false;
    // Loop rather than recurse: a burst larger than one batch commits in several transactions.
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatchOps);
      const results: { ok: boolean; v: unknown }[] = new Array(batch.length);
      try {
        this.root.transactionSync(() => {
          for (let i = 0; i < batch.length; i++) {
            try {
              results[i] = { ok: true, v: batch[i]!.fn() };
            } catch (e) {
              results[i] = { ok: false, v: e };
            }
          }
        });
      } catch (cause) {
        this.#appended.clear();
        const err = new BindingError('SLUICE_INTERNAL', `local store commit failed: ${(cause as Error).message}`, { cause });
        for (const op of batch) op.reject(err);
        continue;
      }
      for (let i = 0; i < batch.length; i++) {
        const r = results[i]!;
        if (r.ok) batch[i]!.resolve(r.v);
        else batch[i]!.reject(r.v);
      }
      if (this.#appended.size > 0) {
        const touched = [...this.#appended];
        this.#appended.clear();
        for (const t of touched) this.events.emit('append', t);
      }
    }
  }

  /** Waits until every queued write committed. */
  async flushed(): Promise<void> {
    if (this.#queue.length === 0) return;
    await this.write(() => undefined);
  }

  /** Commits what is queued and closes the environment. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flushed();
    this.#closed = true;
    await this.root.close();
  }

  get closed(): boolean {
    return this.#closed;
  }
}
