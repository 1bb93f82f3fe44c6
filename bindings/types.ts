/**
 * The four binding contracts — Object, KV, Stream, File — and the backend that hands them out.
 *
 * A contract here is the definition a backend must meet; `test/conformance` runs every test of it
 * against every backend by swapping one factory. What the contracts deliberately leave out:
 * object versioning (only the current version of a key is kept), multipart uploads, ACLs,
 * cross-item transactions in KV, and stream records larger than `Limits.maxRecordBytes`.
 *
 * Every method that may wait takes an optional `signal`; aborting rejects with SLUICE_ABORTED.
 * Every error is a {@link SluiceError} with a stable code (see `docs/ERRORS.md`).
 */
import type { Expression } from './expr/index.ts';
import type { Attrs, Item, Value } from './values.ts';
import type { CommitDurability, WriteOp, WriteOpResult } from './write-ops.ts';

export type { Attrs, Item, Value, ValueMap } from './values.ts';
export type { Expression } from './expr/index.ts';
import type { FileBinding } from './file-types.ts';

/** Options common to calls that may wait. */
export interface CallOptions {
  /** Cancels the call; it then rejects with SLUICE_ABORTED. @default undefined (no cancellation) */
  signal?: AbortSignal;
}

// ───────────────────────────────────────── Object ─────────────────────────────────────────

/**
 * What caused a write: the function whose commit made it and the chain depth (`hop`: 1 for a commit
 * triggered by a write without a cause, one more per function along a chain). The runtime stamps it on
 * its commits; the change record (or stream record) carries it, so a function can skip the changes of
 * its own commits and a chain across functions stops at its hop limit (docs/RUNTIME.md "Chaining").
 */
export interface Cause {
  /** Function name (1-63 lowercase letters, digits, '-'). */
  fn: string;
  /** Chain depth, a non-negative integer. */
  hop: number;
}

/** Options of writes that record a change: who caused it. */
export interface CauseOptions {
  /** Stamped into the change record; set by the runtime's committer, not by handlers. @default undefined (no cause: a user's write) */
  cause?: Cause;
}

/** What a bucket is created with. */
export interface BucketOptions {
  /**
   * Number of shards of the bucket's change stream; a key's changes go to shard `shardOf(key, shards)`.
   * Fixed at creation. @default 8
   */
  shards?: number;
  /**
   * Fields {@link ObjectBinding.query} can find without scanning: system fields (`size`, `mtime`, `etag`,
   * `content_type`, `version`) and top-level attribute names (`has_ssn`, or `attr.size` for an attribute
   * whose name is a system field's). Index entries commit in the same atomic write as the state they
   * reflect. Fixed at creation (a second createBucket with another set is SLUICE_ALREADY_EXISTS).
   * `key` needs no index: key conditions always narrow the scan. @default [] (none)
   */
  indexes?: string[];
  /**
   * Copies the backend keeps of the bucket (its change stream, metadata and bodies), 1..5. NATS: the
   * JetStream replicas of its streams, fixed at creation (an existing bucket keeps its factor). Local:
   * validated and ignored (one machine, one copy). @default the backend's factor (NATS: 3 on a
   * cluster, 1 on a single server)
   */
  replicas?: number;
}

/** A bucket's fixed configuration. */
export interface BucketInfo {
  name: string;
  shards: number;
  /** Name of the bucket's change stream, readable through {@link StreamBinding}. */
  changeStream: string;
  /**
   * Changes of one key the change stream keeps at least (0 = every change). Past it, older changes of
   * that key may be compacted away; its newest change is never lost. local: 0; nats: 64 by default
   * (option `changeHistoryPerKey`), so the stream does not grow without bound.
   */
  historyPerKey: number;
  /** Indexed fields, canonical: system field names as is, attributes as `attr.<name>`, sorted. */
  indexes: string[];
}

/** A bucket as {@link Backend.listBuckets} lists it: its configuration and when it was created. */
export interface ListedBucket extends BucketInfo {
  created: Date;
}

/** Options of {@link ObjectBinding.put}. */
export interface PutObjectOptions extends CallOptions, CauseOptions {
  /** MIME type stored with the object. @default 'application/octet-stream' */
  contentType?: string;
  /** Attributes stored atomically with the body (they replace any earlier attributes). @default {} */
  attrs?: Attrs;
  /** Write only if the current object's etag equals this; SLUICE_CONDITION_FAILED otherwise. @default undefined */
  ifMatch?: string;
  /** `'*'`: write only if no object exists under the key. @default undefined */
  ifNoneMatch?: '*';
}

/** What a successful write returns. */
export interface PutObjectResult {
  /** Hex MD5 of the body (as S3's single-part etag). */
  etag: string;
  /** Object version: increases with every put of the key; also the change record's `version`. */
  version: number;
}

/** An object's metadata, without attributes. */
export interface ObjectMeta {
  key: string;
  size: number;
  etag: string;
  version: number;
  contentType: string;
  /** Time of the last put (body write). */
  mtime: Date;
}

/** An object's metadata with its attributes and their revision. */
export interface ObjectHead extends ObjectMeta {
  attrs: Attrs;
  /** Increases with every attribute change of this object (a put resets attributes and bumps it too). */
  attrsRevision: number;
}

/**
 * Options of reads that return attributes. Attributes named `$sluice.*` (processed-markers and other
 * runtime state, see `INTERNAL_ATTR_PREFIX` in values.ts) are left out of what these calls return
 * unless `internal` is set; only the runtime sets it (handler bindings drop the option).
 */
export interface AttrReadOptions extends CallOptions {
  /** Include `$sluice.*` internal attributes in the result. @default false */
  internal?: boolean;
}

/** A byte range: `start` inclusive, `end` exclusive, both optional (`{start: 10}` = from 10 to the end). */
export interface ByteRange {
  start?: number;
  end?: number;
}

/** Options of {@link ObjectBinding.get}. */
export interface GetObjectOptions extends AttrReadOptions {
  /** Read only these bytes; SLUICE_RANGE_INVALID when `start` lies past the end. @default the whole body */
  range?: ByteRange;
}

/** An object read: metadata, attributes and the body (or the requested range of it). */
export interface GetObjectResult extends ObjectHead {
  /** The bytes read (the whole body, or the range). */
  body: Uint8Array;
  /** The range actually returned (clamped to the body). */
  range: { start: number; end: number };
}

/** Options of {@link ObjectBinding.delete}. */
export interface DeleteObjectOptions extends CallOptions, CauseOptions {
  /** Delete only if the object's etag equals this. @default undefined */
  ifMatch?: string;
}

/** Options of {@link ObjectBinding.list}. */
export interface ListOptions extends CallOptions {
  /** Only keys starting with this. @default '' */
  prefix?: string;
  /** Roll keys up to the first occurrence of this after the prefix into `commonPrefixes`. @default undefined */
  delimiter?: string;
  /** Start after this key (first page only). @default undefined */
  startAfter?: string;
  /** Token from a previous page's `nextToken`. @default undefined */
  continuationToken?: string;
  /** Most entries (objects + common prefixes) in one page, 1..10000. @default 1000 */
  limit?: number;
}

/** One page of a listing, in UTF-8 byte order of keys. */
export interface ListResult {
  objects: ObjectMeta[];
  /** Distinct key prefixes up to and including the delimiter, in order. */
  commonPrefixes: string[];
  /** Present when more entries follow; pass as `continuationToken`. */
  nextToken?: string;
}

/** Options of {@link ObjectBinding.updateAttrs}. */
export interface UpdateAttrsOptions extends AttrReadOptions, CauseOptions {
  /** Apply only when this condition holds on the current attributes. @default undefined (always) */
  condition?: Expression;
}

/** Result of an attribute update. */
export interface UpdateAttrsResult {
  attrs: Attrs;
  attrsRevision: number;
}

/** The system fields of a query row, by the names `where`, `select` and `orderBy` use. */
export const SystemFields = ['key', 'size', 'mtime', 'etag', 'content_type', 'version'] as const;
/** One of {@link SystemFields}. */
export type SystemField = (typeof SystemFields)[number];

/** Options of {@link ObjectBinding.query}. */
export interface QueryOptions extends CallOptions {
  /**
   * Only objects for which this condition holds, in the expression language (docs/EXPRESSIONS.md).
   * Paths name system fields (`size`, `mtime`, `etag`, `content_type`, `version`, `key`) or attributes
   * (`has_ssn`, `scan.level`; `attr.size` for an attribute named like a system field). Internal
   * attributes (`$sluice.*`) are invisible unless `includeInternal` is set. @default undefined (all)
   */
  where?: Expression;
  /**
   * Fields of each row besides `key`: system field names and attribute names (`attr.<name>` to name an
   * attribute that shares a system field's name), or `['*']` for every system field and attribute.
   * @default ['*']
   */
  select?: string[];
  /** Only keys starting with this. @default '' */
  prefix?: string;
  /**
   * Row order: a field as in `select` and a direction. Ties (and missing values, which sort after every
   * value) are broken by key. @default { field: 'key', direction: 'asc' }
   */
  orderBy?: { field: string; direction?: 'asc' | 'desc' };
  /** Most rows in one page, 1..10000. @default 1000 */
  limit?: number;
  /** `nextToken` of the previous page of the same query (same where, select, prefix, orderBy). @default undefined */
  continuationToken?: string;
  /**
   * Lets `where` and `select` see internal attributes (`$sluice.*`, e.g. processed-markers). Meant for
   * tooling; handlers never need it. @default false
   */
  includeInternal?: boolean;
}

/** One row: `key`, then the selected fields (`mtime` a Date; attributes as stored). */
export type QueryRow = { key: string } & Record<string, Value>;

/** How a query found its rows. */
export interface QueryPlan {
  /** 'index': candidates from index ranges of `index`; 'key-range': from the key order; 'scan': every object under the prefix. */
  kind: 'index' | 'key-range' | 'scan';
  /** The field whose index (or `key` order) gave the candidates; undefined for a scan. */
  index?: string;
  /** Human-readable plan, e.g. `index mtime: [1700000000000 .. ∞) (timestamp, number)`; `where` is always re-checked per row. */
  detail: string;
  /** Objects (or index candidates) this page examined. */
  examined: number;
}

/** One page of a query. */
export interface QueryResult {
  rows: QueryRow[];
  /** Present when more rows may follow; pass as `continuationToken`. */
  nextToken?: string;
  /** What the planner chose for this page (the `explain` of the API). */
  plan: QueryPlan;
}

/**
 * Objects in one bucket. Keys are non-empty UTF-8 strings of at most 1024 bytes without control
 * characters. Every put, delete and attribute update appends one change record to the bucket's
 * change stream in the same atomic step as the write itself.
 */
export interface ObjectBinding {
  readonly bucket: string;
  /** Bucket configuration (shards, change stream name). */
  info(): Promise<BucketInfo>;
  /** Writes a whole object; records a `put` change. */
  put(key: string, body: Uint8Array | string, options?: PutObjectOptions): Promise<PutObjectResult>;
  /** Reads an object (or a range of it); SLUICE_NOT_FOUND when absent. */
  get(key: string, options?: GetObjectOptions): Promise<GetObjectResult>;
  /** Reads an object's body as a stream of chunks; SLUICE_NOT_FOUND when absent. */
  getStream(key: string, options?: GetObjectOptions): Promise<{ head: ObjectHead; body: AsyncIterable<Uint8Array> }>;
  /** Metadata and attributes, or undefined when absent. */
  head(key: string, options?: AttrReadOptions): Promise<ObjectHead | undefined>;
  /** Deletes an object; records a `delete` change. Returns false when there was nothing to delete. */
  delete(key: string, options?: DeleteObjectOptions): Promise<boolean>;
  /** One page of keys in UTF-8 byte order. */
  list(options?: ListOptions): Promise<ListResult>;
  /** The object's attributes; SLUICE_NOT_FOUND when absent. */
  getAttrs(key: string, options?: AttrReadOptions): Promise<UpdateAttrsResult>;
  /**
   * Applies an update expression (`SET has_ssn = :t ADD hits :one REMOVE stale`) — or several, in
   * order, as one step — to the object's attributes atomically, if the condition holds; records one
   * `attrs` change.
   * SLUICE_NOT_FOUND when the object is absent; ConditionFailedError (carrying the current attrs) when
   * the condition fails.
   */
  updateAttrs(key: string, update: Expression | Expression[], options?: UpdateAttrsOptions): Promise<UpdateAttrsResult>;
  /**
   * One page of a metadata query: rows of the objects whose system fields and attributes match `where`,
   * in `orderBy` order (key by default), resumable by `nextToken`. Uses a declared index when `where`
   * allows it (equality, range, BETWEEN, IN, begins_with on an indexed field); scans otherwise.
   * `result.plan` says which. SLUICE_EXPRESSION_SYNTAX for a malformed `where`.
   */
  query(options?: QueryOptions): Promise<QueryResult>;
}

/** The kinds of change an object can undergo. */
export const ChangeTypes = { put: 'put', delete: 'delete', attrs: 'attrs' } as const;
/** One of {@link ChangeTypes}. */
export type ChangeType = keyof typeof ChangeTypes;

/** A change record, as the bucket's change stream carries it. */
export interface ChangeRecord {
  bucket: string;
  key: string;
  type: ChangeType;
  /** Object version after the change (for `delete`, the version that was deleted). */
  version: number;
  /** Body size after the change (0 for delete). */
  size: number;
  /** Etag after the change ('' for delete). */
  etag: string;
  /** Time of the change. */
  mtime: Date;
  /**
   * Orders changes of one key: a strictly increasing, fixed-width hex string (compare as strings),
   * as S3's event sequencer.
   */
  sequencer: string;
  /** Attribute revision after the change. */
  attrsRevision: number;
  /** Content type after the change ('' for delete). */
  contentType: string;
  /** The write's cause ({@link CauseOptions}); absent for a write without one. */
  cause?: Cause;
}

// ─────────────────────────────────────────── KV ───────────────────────────────────────────

/** Options of {@link KvBinding.getItem}. */
export interface GetItemOptions extends CallOptions {
  /** Return only these top-level attributes. @default all */
  attrs?: string[];
}

/** An item with its revision. */
export interface ItemEntry {
  key: string;
  item: Item;
  /** Increases with every write of this key. */
  revision: number;
}

/** Options of {@link KvBinding.getItems}. */
export interface GetItemsOptions extends CallOptions {
  /** Only items for which this condition holds. @default undefined (all) */
  filter?: Expression;
  /** Return only these top-level attributes. @default all */
  attrs?: string[];
  /** Most items returned in this page, 1..10000. @default 1000 */
  limit?: number;
  /** `nextMarker` of the previous page. @default undefined (from the start) */
  marker?: string;
  /** With `totalSegments`: scan only this segment (0-based) of a parallel scan. @default 0 */
  segment?: number;
  /** Split the scan into this many disjoint segments, 1..1024. @default 1 */
  totalSegments?: number;
}

/** One page of a scan, in UTF-8 byte order of keys within the segment. */
export interface GetItemsResult {
  items: ItemEntry[];
  /** Present when more items may follow; pass as `marker`. */
  nextMarker?: string;
}

/** Options of conditional KV writes. */
export interface ConditionalOptions extends CallOptions {
  /** Write only when this condition holds on the current item (absent item: every path is missing). @default undefined */
  condition?: Expression;
  /** Write only when the item's current revision equals this (0 = the item must not exist). @default undefined */
  ifRevision?: number;
}

/** Result of a KV write. */
export interface WriteResult {
  /** The item's new revision (for a delete, the revision of the deletion). */
  revision: number;
}

/** Result of {@link KvBinding.updateItem}. */
export interface UpdateItemResult extends WriteResult {
  item: Item;
}

/**
 * Items in one table, addressed by key. Every write returns the new revision; a failed condition
 * raises ConditionFailedError carrying the current item and revision, and writes nothing.
 */
export interface KvBinding {
  readonly table: string;
  /** An item and its revision, or undefined when absent. */
  getItem(key: string, options?: GetItemOptions): Promise<ItemEntry | undefined>;
  /** One page of a (filtered, segmented) scan. */
  getItems(options?: GetItemsOptions): Promise<GetItemsResult>;
  /** Replaces the whole item. */
  putItem(key: string, item: Item, options?: ConditionalOptions): Promise<WriteResult>;
  /**
   * Applies an update expression (or several, in order, as one write) atomically, creating the item when
   * absent, if the condition holds. Several expressions let a caller add its own clause to someone
   * else's update without merging expression text (the runtime adds an effect marker this way).
   */
  updateItem(key: string, update: Expression | Expression[], options?: ConditionalOptions): Promise<UpdateItemResult>;
  /** Deletes the item; returns false when absent (and no condition failed). */
  deleteItem(key: string, options?: ConditionalOptions): Promise<boolean>;
}

// ───────────────────────────────────────── Stream ─────────────────────────────────────────

/** What a stream is created with. */
export interface StreamOptions {
  /** Number of shards, 1..1024. @default 1 */
  shards?: number;
  /** Records older than this may be dropped; 0 keeps them forever. @default 0 */
  retentionMs?: number;
  /** Copies of the stream, 1..5, as {@link BucketOptions.replicas}. @default the backend's factor */
  replicas?: number;
}

/** A stream's configuration and per-shard bounds. */
export interface StreamInfo {
  name: string;
  shards: number;
  retentionMs: number;
  /**
   * Per shard: the first and last sequence present. An empty shard has `first = last + 1`
   * (`{first: 1, last: 0}` when never written), so `last - first + 1` is always the record count bound.
   */
  bounds: { first: number; last: number }[];
}

/** A record to append. Give `partitionKey` (hashed to a shard) or an explicit `shard`. */
export interface PutRecord {
  data: Uint8Array | string;
  partitionKey?: string;
  shard?: number;
  headers?: Record<string, string>;
  /**
   * Append only while this record's shard ends at this sequence: the seq of the shard's last record present,
   * 0 when the shard holds none. Otherwise this record fails alone with `SLUICE_CONDITION_FAILED` and nothing
   * is appended for it. Optimistic concurrency for logs with racing writers: the cron and query schedulers
   * append each tick and page with it, so one instant is appended once however many replicas race, and a
   * crash between deciding and appending is repaired by reading the last record again.
   * @default no condition
   */
  ifLastSeq?: number;
  /**
   * De-duplication id: a record whose id was already appended to this stream within its dedupe window
   * (2 minutes, shorter for streams with a shorter retention) is not appended
   * again; its result is the first append's `{ shard, seq }` with `duplicate: true`. JetStream's
   * `Nats-Msg-Id` on NATS; a table checked in the same transaction as the append on the local backend.
   * The runtime uses it for records handlers emit as effects (exactly once per triggering record).
   * At most 256 bytes. @default no de-duplication
   */
  dedupeId?: string;
  /** Who caused the record (see {@link Cause}); read back as {@link StreamRecord.cause}, never as a header. @default undefined */
  cause?: Cause;
}

/** Per-record result of {@link StreamBinding.putRecords}: where it landed, or why it did not. */
export type PutRecordResult = { ok: true; shard: number; seq: number; duplicate?: true } | { ok: false; error: { code: string; message: string } };

/** A position in one shard: the next sequence to read. Plain data: serialisable. */
export interface Cursor {
  stream: string;
  shard: number;
  /** The next sequence number to read (records with seq >= this). */
  seq: number;
}

/** Where to start reading a shard. */
export type SeekPosition = 'earliest' | 'latest' | { seq: number } | { time: Date | number };

/** A stored record. */
export interface StreamRecord {
  stream: string;
  shard: number;
  /** Increases strictly within a shard (not necessarily by one). */
  seq: number;
  data: Uint8Array;
  partitionKey?: string;
  headers: Record<string, string>;
  /** Time the record was appended. */
  time: Date;
  /** The cause it was put with ({@link PutRecord.cause}); absent when none. */
  cause?: Cause;
}

/** Options of {@link StreamBinding.getRecords}. */
export interface GetRecordsOptions extends CallOptions {
  /** Most records returned, 1..10000. @default 100 */
  limit?: number;
  /** When nothing is available, wait up to this long for the first record. @default 0 (return at once) */
  maxWaitMs?: number;
}

/** A page of records. */
export interface GetRecordsResult {
  records: StreamRecord[];
  /** Cursor after the last record returned (or the same position when none). */
  next: Cursor;
  /** Records in the shard at or after `next` at the time of the read. */
  lag: number;
}

/** A durable consumer group: one committed position per shard, shared by every process using the group. */
export interface ConsumerGroup {
  readonly stream: string;
  readonly group: string;
  /** The committed cursor of a shard (`earliest` when nothing was committed yet). */
  position(shard: number, options?: CallOptions): Promise<Cursor>;
  /**
   * Commits that every record before `cursor.seq` was handled. Positions never move backwards:
   * committing an older cursor is a no-op. Returns the committed cursor.
   */
  commit(cursor: Cursor, options?: CallOptions): Promise<Cursor>;
}

/** Sharded, ordered, retained record streams (user streams and buckets' change streams alike). */
export interface StreamBinding {
  /** Creates a stream; idempotent for the same options, SLUICE_ALREADY_EXISTS for different ones. */
  create(name: string, options?: StreamOptions): Promise<StreamInfo>;
  /** Configuration and bounds; SLUICE_STREAM_NOT_FOUND when absent. */
  info(name: string, options?: CallOptions): Promise<StreamInfo>;
  /** Deletes a stream and its records; false when absent. */
  delete(name: string): Promise<boolean>;
  /** Appends records; each gets its own result (a bad record fails alone, the others are written). */
  putRecords(name: string, records: PutRecord[], options?: CallOptions): Promise<PutRecordResult[]>;
  /** A cursor at a position of one shard. */
  seek(name: string, shard: number, position: SeekPosition, options?: CallOptions): Promise<Cursor>;
  /** Reads from a cursor. */
  getRecords(cursor: Cursor, options?: GetRecordsOptions): Promise<GetRecordsResult>;
  /** A durable consumer group of a stream. */
  group(name: string, group: string, options?: CallOptions): Promise<ConsumerGroup>;
}

// ────────────────────────────────────────── File ──────────────────────────────────────────

// The File binding's contract lives in file-types.ts (this file's size); re-exported here.
export type { DirEntry, FileBinding, FileHandle, FileStat, OpenOptions } from './file-types.ts';
// ───────────────────────────────────── Batched writes ─────────────────────────────────────

// The ops and options of {@link Backend.commitBatch} live in write-ops.ts (this file's size); re-exported here.
export type { AttrsWriteOp, CommitDurability, ItemWriteOp, WriteOp, WriteOpResult } from './write-ops.ts';

/** Options of {@link Backend.commitBatch}. */
export interface CommitBatchOptions extends CallOptions, CommitDurability {}

// ───────────────────────────────────────── Backend ────────────────────────────────────────

/** Options of {@link Backend.createTable}. */
export interface TableOptions {
  /** Copies of the table, 1..5, as {@link BucketOptions.replicas}. @default the backend's factor */
  replicas?: number;
}

/**
 * One store of data: hands out bindings and creates buckets, tables and streams. Every backend
 * (local, nats) implements it; `close()` releases connections and handles.
 */
export interface Backend {
  /** 'local' or 'nats'. */
  readonly kind: string;
  createBucket(name: string, options?: BucketOptions): Promise<BucketInfo>;
  /**
   * Removes an empty bucket with its change stream; SLUICE_BUCKET_NOT_EMPTY while it holds an object,
   * SLUICE_BUCKET_NOT_FOUND when absent. A bucket created again under the same name starts empty; its
   * change stream's sequence numbers continue where the old one's ended on local (consumer positions
   * stay meaningful) and restart in a new stream incarnation on nats (positions are kept per
   * incarnation). What the contract leaves out: functions that bind or trigger on the bucket are not
   * the backend's business — the platform (controller/bucket-users.ts) refuses those deletes.
   */
  deleteBucket(name: string): Promise<void>;
  /** Every bucket of this backend (internal ones too, e.g. `sluice-s3-parts`), in name order. */
  listBuckets(): Promise<ListedBucket[]>;
  /** An existing bucket; SLUICE_BUCKET_NOT_FOUND when absent. */
  objects(bucket: string): Promise<ObjectBinding>;
  createTable(name: string, options?: TableOptions): Promise<void>;
  /** An existing table; SLUICE_TABLE_NOT_FOUND when absent. */
  kv(table: string): Promise<KvBinding>;
  /** The stream namespace of this backend (user streams and bucket change streams). */
  streams(): StreamBinding;
  /** Files under `root` (a directory path, created when missing). */
  files(root: string): Promise<FileBinding>;
  /**
   * Several writes with one result each, in as few store round trips as the backend allows: on local ONE
   * transaction (each op still checks its own conditions; a failed op writes nothing and does not fail the
   * others); on NATS the ops' CAS appends are pipelined, chained ops in order. Resolves even when ops fail
   * (a refused commit fails every op of it); invalid ops (bad name, key or expression) fail alone.
   */
  commitBatch(ops: readonly WriteOp[], options?: CommitBatchOptions): Promise<WriteOpResult[]>;
  close(): Promise<void>;
}
