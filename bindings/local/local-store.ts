/**
 * The embedded store: one LMDB environment in one data directory, shared by every process that opens
 * it (LMDB takes a cross-process write lock; readers never block).
 *
 * Writes go through {@link LocalStore.write}: operations queued in one event-loop turn run together in
 * ONE synchronous LMDB write transaction (group commit); while the store is busy (the last commit ended
 * within {@link BUSY_MS}) a turn's writes wait for the next turn's too, since a synced commit costs about
 * the same whatever it carries. Each operation reads what it needs, checks its
 * conditions and only then writes, inside that transaction — so a condition check and the write it
 * guards are atomic across processes, and an object write and its change record commit together
 * (DESIGN invariant 1). lmdb-js's asynchronous transactions (commit and sync on its write thread, the
 * callback still on this one) are not used: the first version measured them hanging; re-measured on
 * 2026-12-02 (lmdb 3.5.6, Node 20.20, 2 cores) they work but gained nothing — end to end the same
 * events/s, put → committed p99 no lower and up to 2× higher with the worker in the uploading process, and
 * a third of a core more CPU (docs/BENCHMARKS.md, round 7). Nor does the overlapping-sync transaction flag
 * (write lock released before the sync): the disk's syncs, 2,300–3,300 commits/s here
 * (test/bench/lmdb-sync.ts), stay the shared limit.
 *
 * Readers waiting for stream records wake on a commit that appended records: in this handle at once
 * (`events`), in other handles and processes through a change notification — after such a commit the
 * writer rewrites one byte of `<dir>/sluice.wake.d/w<slot>` for each shard it appended to (the slot is a
 * hash of stream and shard, {@link WAKE_SLOTS} of them), and every handle watches that directory
 * (inotify on Linux names the file): only the readers of those shards re-check, not every waiting reader
 * of every stream (before 2026-12-02 one file was watched, so an upload woke every waiting reader of every
 * stream in every process, twice: for the upload and for the worker's attribute commit). One syscall per
 * shard appended to per commit; a hash collision only wakes a reader for nothing. Polling every `pollMs` stays only as a fallback for
 * filesystems that deliver no notifications.
 */
import { EventEmitter } from 'node:events';
import { chmodSync, closeSync, constants, existsSync, mkdirSync, openSync, statfsSync, statSync, watch, writeSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { BindingError } from '../errors.ts';
import { WriteLockRecord } from './write-lock.ts';
import type { Cause } from '../types.ts';

/** Options of the embedded store. */
export interface LocalStoreOptions {
  /** Data directory (created when missing). */
  dir: string;
  /**
   * How often a reader waiting for stream records polls for writes by other handles or processes, in ms —
   * a fallback only: those writes wake waiters through the change notification (`<dir>/sluice.wake`).
   * @default 50 (2 when the notification cannot be set up, e.g. a read-only data directory)
   */
  pollMs?: number;
  /** Most operations committed in one transaction. @default 2000 */
  maxBatchOps?: number;
  /**
   * Most operations waiting for the next commit; beyond it `write` rejects with SLUICE_BACKEND_UNAVAILABLE
   * (backpressure instead of unbounded memory). @default 100000
   */
  maxQueuedOps?: number;
  /**
   * Free space, in bytes, the store keeps on its data directory's filesystem. A write that would start
   * with less free space than this (plus the bytes it is known to carry, e.g. an object body) is refused
   * with SLUICE_STORAGE_FULL before LMDB writes anything; deletes go on down to a quarter of it, so that
   * space can be made inside the store. A full disk is thereby never met by LMDB's own page writes — whose
   * native error path can corrupt the writing process's heap (lmdb-js, ENOSPC; seen as a crash). 0 turns
   * the check off. Space freed inside the store by deletes is reused by LMDB but not seen here: writes
   * resume once the filesystem has this much free again.
   * @default 64 MiB, or the environment variable SLUICE_LOCAL_MIN_FREE_BYTES when set
   */
  minFreeBytes?: number;
}

/** Options of one {@link LocalStore.write}. */
export interface LocalWriteOptions {
  /** Bytes the write is known to add (an object body): needed free on top of `minFreeBytes`. @default 0 */
  bytes?: number;
  /** The write only removes (a delete): allowed down to a quarter of `minFreeBytes`. @default false */
  freeing?: boolean;
  /**
   * A system crash may undo the write while its transaction is the store's last commit (see
   * `CommitBatchOptions.durability`): the transaction skips the meta page's sync, when every write in it
   * allows that. @default false
   */
  repairable?: boolean;
}

/** Default of {@link LocalStoreOptions.minFreeBytes}. */
export const DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024;

/** {@link LocalStoreOptions.minFreeBytes} from the option, else the environment, else the default. */
function minFreeBytesOf(opts: LocalStoreOptions): number {
  const v = opts.minFreeBytes ?? (process.env.SLUICE_LOCAL_MIN_FREE_BYTES !== undefined && process.env.SLUICE_LOCAL_MIN_FREE_BYTES !== '' ? Number(process.env.SLUICE_LOCAL_MIN_FREE_BYTES) : DEFAULT_MIN_FREE_BYTES);
  if (!Number.isSafeInteger(v) || v < 0)
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `local store in '${opts.dir}': minFreeBytes must be a whole number of bytes ≥ 0 (option or SLUICE_LOCAL_MIN_FREE_BYTES), got ${JSON.stringify(opts.minFreeBytes ?? process.env.SLUICE_LOCAL_MIN_FREE_BYTES)}`);
  return v;
}

/**
 * The local backend is a laptop convenience for one OS user, with no isolation between functions: what
 * it can do is keep other local users out. The data directory becomes 0700 and the store's files 0600
 * (LMDB creates them with the process umask, 0644 by default). Only when this user owns them; a
 * shared directory someone else set up is left as it is.
 */
function restrictToOwner(dir: string): void {
  const uid = process.getuid?.();
  for (const [path, mode] of [
    [dir, 0o700],
    [join(dir, 'sluice.mdb'), 0o600],
    [join(dir, 'sluice.mdb-lock'), 0o600],
  ] as const) {
    try {
      if (existsSync(path) && (uid === undefined || statSync(path).uid === uid) && (statSync(path).mode & 0o777) !== mode) chmodSync(path, mode);
    } catch {
      // a file another process is replacing, or a filesystem without modes: nothing to tighten
    }
  }
}

/** MDB_MAP_FULL: the environment reached its map size. */
const MDB_MAP_FULL = -30792;

/** Below this much free space on the data directory's filesystem, an I/O error of a commit is a full disk. */
const LOW_SPACE_BYTES = 64 * 1024 * 1024;

/**
 * The error of a failed commit (nothing of the transaction was written). A full disk is
 * SLUICE_STORAGE_FULL — retryable: writes succeed again once space is freed, without a restart.
 * LMDB reports a full disk as ENOSPC or, when a page write comes up short (what a full tmpfs
 * gives, measured), as EIO; an EIO with the filesystem nearly full is taken for a full disk, any
 * other failure stays SLUICE_INTERNAL. The message is ours, one line; the native text stays in `cause`.
 */
function freeBytesOf(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/** The refusal of a write that would eat into the space the store keeps free (nothing was written). */
function fullError(dir: string, free: number, kept: number): BindingError {
  return new BindingError('SLUICE_STORAGE_FULL', `local store in '${dir}' is out of space (${free} bytes free, ${kept} kept free): nothing of this write was committed; retry once space is freed`);
}

function commitError(cause: unknown, dir: string): BindingError {
  const native = (cause as { code?: unknown } | undefined)?.code;
  const text = cause instanceof Error ? cause.message : String(cause);
  // undefined (statfs failed): decided on the error alone.
  const free = freeBytesOf(dir);
  const full =
    native === 'ENOSPC' || native === 28 || native === 'EDQUOT' || native === 122 || native === MDB_MAP_FULL || /MDB_MAP_FULL|No space left/i.test(text) ||
    ((native === 'EIO' || native === 5) && free !== undefined && free < LOW_SPACE_BYTES);
  if (full)
    return new BindingError('SLUICE_STORAGE_FULL', `local store in '${dir}' is out of space${free !== undefined ? ` (${free} bytes free)` : ''}: nothing of this write was committed; retry once space is freed`, { cause });
  return new BindingError('SLUICE_INTERNAL', `local store commit failed (${typeof native === 'string' || typeof native === 'number' ? String(native) : 'no code'}): ${text.split('\n')[0]}`, { cause });
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
  /** Ref of the body in the backend's external body store; absent when the body is in `bodies`. */
  bodyRef?: string;
}

/** A stored stream record. */
export interface StoredRecord {
  d: Uint8Array;
  h?: Record<string, string>;
  p?: string;
  t: number;
  /** The record's cause (PutRecord.cause). */
  c?: Cause;
}

/** A stored KV item. */
export interface StoredItem {
  i: Record<string, unknown>;
  r: number;
}

interface QueuedOp {
  fn: () => unknown;
  /** Bytes the operation is known to add. */
  bytes: number;
  /** Free bytes that must remain after it (minFreeBytes, a quarter of it for deletes, -∞ for none). */
  floor: number;
  repairable: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

type Key = (string | number)[];

/**
 * A write queued within this long after the last commit ended waits one more event-loop turn before it
 * commits, so that a busy store commits (and syncs) more writes per transaction.
 */
const BUSY_MS = 1;

/**
 * lmdb-js transaction flags: abortable + synchronous commit (its default), and the same with LMDB's
 * MDB_NOMETASYNC for the transaction — the data pages are synced as always, the meta page is written
 * without a sync of its own (the next commit's sync takes it along). LMDB keeps its integrity; a system
 * crash may undo that last transaction. Used only when every write of the transaction is `repairable`.
 */
export const COMMIT_FLAGS = { synced: 3, repairable: 3 | 0x40000 } as const;

/** `append` event tag meaning "some stream of this store was appended to by another handle or process". */
export const ANY_APPEND = '*';
const WAKE_BYTE = new Uint8Array([1]);

/** Slots of the change notification (files of `<dir>/sluice.wake.d`). */
export const WAKE_SLOTS = 64;

/** The `append` event tag of a notification for slot `slot` (see {@link wakeTagOf}). */
function slotTag(slot: number): string {
  return `\u0001${slot}`;
}

/** Slot of a stream's shard: FNV-1a of `<stream>\0<shard>`. */
function wakeSlot(tag: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < tag.length; i++) h = Math.imul(h ^ tag.charCodeAt(i), 0x01000193);
  return (h >>> 0) % WAKE_SLOTS;
}

/**
 * The `append` event tag with which another handle's or process's append to `stream`'s `shard` arrives
 * (the notification names a slot, not the shard: a reader listens for its shard's tag, this one and
 * {@link ANY_APPEND}).
 */
export function wakeTagOf(stream: string, shard: number): string {
  return slotTag(wakeSlot(`${stream}\u0000${shard}`));
}

/** Where a de-duplicated stream record landed (s: shard, q: seq) and when (t, epoch ms). */
export interface StoredDedupe {
  s: number;
  q: number;
  t: number;
}

/** The shared LMDB environment, its databases and the group-commit writer. */
export class LocalStore {
  readonly dir: string;
  #pollMs: number;
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
  /**
   * [stream, time bucket, dedupeId] → where the record landed and when (PutRecord.dedupeId). A bucket is
   * one dedupe window long (`floor(t / window)`): a live id is in the current or previous bucket, and
   * older buckets are dropped whole.
   */
  readonly dedupe: Database<StoredDedupe, Key>;
  /**
   * Emits `append` with `<stream>\u0000<shard>` after this handle's commits that appended records, and
   * with {@link ANY_APPEND} when another handle or process notified a commit that appended records.
   */
  readonly events = new EventEmitter();

  #queue: QueuedOp[] = [];
  /** When the last write transaction ended (performance.now()). */
  #lastCommitAt = Number.NEGATIVE_INFINITY;
  #scheduled = false;
  #closed = false;
  #appended = new Set<string>();
  readonly #maxBatchOps: number;
  readonly #maxQueuedOps: number;
  readonly #minFreeBytes: number;
  /** Free bytes at the last look and the bytes queued into commits since (see {@link #admit}). */
  #free = { bytes: Number.POSITIVE_INFINITY, at: Number.NEGATIVE_INFINITY, since: 0 };
  /** The notification directory, and this handle's open slot files (opened on first use). */
  #wakeDir: string | undefined;
  #wakeFds = new Map<number, number>();
  #watcher: FSWatcher | undefined;
  /** Counters handed out in memory by {@link withCounters}, written back at its end. */
  #counterCache: Map<string, { key: Key; n: number }> | undefined;
  /** Holder record for the write-lock watchdog (write-lock.ts); made on the first write. */
  #lock: WriteLockRecord | undefined;

  private constructor(opts: LocalStoreOptions) {
    this.dir = opts.dir;
    this.#pollMs = opts.pollMs ?? 50;
    this.#maxBatchOps = opts.maxBatchOps ?? 2000;
    this.#maxQueuedOps = opts.maxQueuedOps ?? 100_000;
    this.#minFreeBytes = minFreeBytesOf(opts);
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    // Without lmdb-js's overlappingSync (its default on Linux; sluice never commits that way: every commit
    // syncs itself, see COMMIT_FLAGS): with it, closing an environment that wrote first syncs it in a
    // loop that waits for LMDB's lock table to reach the newest meta page, which never happens after a
    // writer was SIGKILLed between its commit's meta page write and the lock table update — the close
    // spun at 100 % CPU for good (test/process/lmdb-close.test.ts).
    this.root = open({ path: join(opts.dir, 'sluice.mdb'), maxDbs: 16, overlappingSync: false });
    restrictToOwner(opts.dir);
    this.registry = this.root.openDB({ name: 'registry' });
    this.meta = this.root.openDB({ name: 'meta' });
    this.attrs = this.root.openDB({ name: 'attrs' });
    this.bodies = this.root.openDB({ name: 'bodies', encoding: 'binary' });
    this.records = this.root.openDB({ name: 'records' });
    this.items = this.root.openDB({ name: 'items' });
    this.qindex = this.root.openDB({ name: 'qindex' });
    this.groups = this.root.openDB({ name: 'groups' });
    this.counters = this.root.openDB({ name: 'counters' });
    this.dedupe = this.root.openDB({ name: 'dedupe' });
    this.events.setMaxListeners(0);
    this.#openWake(join(opts.dir, 'sluice.wake.d'));
    if (opts.pollMs === undefined && this.#wakeDir === undefined) this.#pollMs = 2;
  }

  /** How often a waiting reader polls (a fallback to the change notification), in ms. */
  get pollMs(): number {
    return this.#pollMs;
  }

  /** Opens the change notification; without it (no inotify, odd filesystem) readers fall back to polling. */
  #openWake(dir: string): void {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // Not persistent: a watcher must not keep a process alive.
      this.#watcher = watch(dir, { persistent: false }, (_event, name) => {
        const slot = typeof name === 'string' && name.startsWith('w') ? Number(name.slice(1)) : Number.NaN;
        // A platform that does not name the file wakes every reader.
        this.events.emit('append', Number.isInteger(slot) ? slotTag(slot) : ANY_APPEND);
      });
      this.#watcher.on('error', () => {
        this.#closeWake();
        this.#pollMs = Math.min(this.#pollMs, 2);
      });
      this.#wakeDir = dir;
    } catch {
      this.#closeWake();
    }
  }

  #closeWake(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#wakeDir = undefined;
    for (const fd of this.#wakeFds.values()) closeSync(fd);
    this.#wakeFds.clear();
  }

  /** Tells other handles and processes that a commit appended records to the shards `touched` (tags). */
  #notify(touched: string[]): void {
    const dir = this.#wakeDir;
    if (dir === undefined) return;
    const slots = new Set(touched.map(wakeSlot));
    for (const slot of slots) {
      try {
        let fd = this.#wakeFds.get(slot);
        if (fd === undefined) this.#wakeFds.set(slot, (fd = openSync(join(dir, `w${slot}`), constants.O_RDWR | constants.O_CREAT, 0o600)));
        writeSync(fd, WAKE_BYTE, 0, 1, 0);
      } catch {
        // Readers still poll; a lost notification costs latency, never records.
      }
    }
  }

  /** Opens (creating when missing) the store in `opts.dir`. */
  static open(opts: LocalStoreOptions): LocalStore {
    // A bad option is the caller's error, not an unavailable store.
    const minFreeBytes = minFreeBytesOf(opts);
    try {
      return new LocalStore({ ...opts, minFreeBytes });
    } catch (cause) {
      throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', `cannot open the local store in '${opts.dir}': ${(cause as Error).message}`, { cause });
    }
  }

  /**
   * Runs `fn` inside a write transaction shared with the other operations of this turn and resolves
   * with its result once committed. `fn` must check everything before its first write: a throw after a
   * write would leave that write in the shared transaction.
   */
  write<T>(fn: () => T, options?: LocalWriteOptions): Promise<T> {
    return this.#enqueue(fn, options?.bytes ?? 0, options?.freeing ? this.#minFreeBytes / 4 : this.#minFreeBytes, options?.repairable ?? false);
  }

  #enqueue<T>(fn: () => T, bytes: number, floor: number, repairable = false): Promise<T> {
    if (this.#closed) return Promise.reject(new BindingError('SLUICE_BACKEND_UNAVAILABLE', `the local store in '${this.dir}' is closed`));
    if (this.#queue.length >= this.#maxQueuedOps)
      return Promise.reject(new BindingError('SLUICE_BACKEND_UNAVAILABLE', `the local store has ${this.#queue.length} writes queued; retry later`));
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, bytes, floor, repairable, resolve: resolve as (v: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        // Busy (the last commit ended within BUSY_MS): the writes of one more poll phase join this
        // transaction. Each commit is synced, so a commit shared by more writes is the cheaper write.
        if (performance.now() - this.#lastCommitAt < BUSY_MS) setImmediate(this.#deferredFlush);
        else setImmediate(this.#flushNow);
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
    const cache = this.#counterCache;
    if (cache) {
      const id = counter.join('\u0000');
      let e = cache.get(id);
      if (!e) cache.set(id, (e = { key: counter, n: this.counters.get(counter) ?? 0 }));
      return ++e.n;
    }
    const n = (this.counters.get(counter) ?? 0) + 1;
    this.counters.put(counter, n);
    return n;
  }

  /**
   * Runs `fn` (inside {@link write}) with counters handed out from memory and each written once at the
   * end: a batch of N changes to one bucket then reads and writes its version and shard counters once,
   * not N times each (measured: 4 of the 8 LMDB accesses of a committed record). Only for code that reads
   * counters through {@link next} alone (the batch write of LocalBackend.commitBatch).
   */
  withCounters<T>(fn: () => T): T {
    this.#counterCache = new Map();
    try {
      return fn();
    } finally {
      const cache = this.#counterCache;
      this.#counterCache = undefined;
      for (const e of cache.values()) this.counters.put(e.key, e.n);
    }
  }

  /** Write transactions of this handle and how long they held the write lock (ms, commit included). */
  get writeLockStats(): { transactions: number; maxHoldMs: number; totalHoldMs: number } {
    return { ...(this.#lock?.stats ?? { transactions: 0, maxHoldMs: 0, totalHoldMs: 0 }) };
  }

  readonly #flushNow = (): void => this.#flush();
  readonly #deferredFlush = (): void => void setImmediate(this.#flushNow);

  /**
   * The operations of `batch` that fit in the free space the store keeps (minFreeBytes); the others are
   * rejected with SLUICE_STORAGE_FULL before the transaction. The filesystem is asked again (statfs,
   * ≈2 µs) when the last answer is 10 ms old or this handle has queued an eighth of the reserve since;
   * between two looks an estimate of 4 KiB per operation plus its known bytes is taken off.
   */
  #admit(batch: QueuedOp[]): QueuedOp[] {
    const kept = this.#minFreeBytes;
    if (kept === 0) return batch;
    const f = this.#free;
    const now = performance.now();
    if (now - f.at >= 10 || f.since >= kept / 8) {
      f.bytes = freeBytesOf(this.dir) ?? Number.POSITIVE_INFINITY;
      f.at = now;
      f.since = 0;
    }
    let admitted: QueuedOp[] | undefined;
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i]!;
      const need = op.floor === Number.NEGATIVE_INFINITY ? 0 : op.bytes + 4096;
      const free = f.bytes - f.since;
      if (free - need >= op.floor) {
        f.since += need;
        admitted?.push(op);
        continue;
      }
      admitted ??= batch.slice(0, i);
      op.reject(fullError(this.dir, Math.max(0, Math.floor(free)), kept));
    }
    return admitted ?? batch;
  }

  #flush(): void {
    this.#scheduled = false;
    const lock = (this.#lock ??= new WriteLockRecord(this.dir));
    // Loop rather than recurse: a burst larger than one batch commits in several transactions.
    while (this.#queue.length > 0) {
      const batch = this.#admit(this.#queue.splice(0, this.#maxBatchOps));
      if (batch.length === 0) continue;
      const results: { ok: boolean; v: unknown }[] = new Array(batch.length);
      try {
        this.root.transactionSync(() => {
          // The callback runs with the write lock held: only the real holder's record shows a time.
          lock.taken();
          for (let i = 0; i < batch.length; i++) {
            try {
              results[i] = { ok: true, v: batch[i]!.fn() };
            } catch (e) {
              results[i] = { ok: false, v: e };
            }
          }
        }, batch.every((op) => op.repairable) ? COMMIT_FLAGS.repairable : COMMIT_FLAGS.synced);
      } catch (cause) {
        lock.released();
        this.#appended.clear();
        const err = commitError(cause, this.dir);
        for (const op of batch) op.reject(err);
        continue;
      }
      lock.released();
      this.#lastCommitAt = performance.now();
      for (let i = 0; i < batch.length; i++) {
        const r = results[i]!;
        if (r.ok) batch[i]!.resolve(r.v);
        else batch[i]!.reject(r.v);
      }
      if (this.#appended.size > 0) {
        const touched = [...this.#appended];
        this.#appended.clear();
        this.#notify(touched);
        for (const t of touched) this.events.emit('append', t);
      }
    }
  }

  /** Waits until every queued write committed. */
  async flushed(): Promise<void> {
    if (this.#queue.length === 0) return;
    // Writes nothing, so the free-space check does not apply to it.
    await this.#enqueue(() => undefined, 0, Number.NEGATIVE_INFINITY, true);
  }

  /** Commits what is queued and closes the environment. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flushed();
    this.#closed = true;
    this.#closeWake();
    this.#lock?.close();
    await this.root.close();
  }

  get closed(): boolean {
    return this.#closed;
  }
}
