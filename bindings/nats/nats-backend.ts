/**
 * The NATS JetStream backend: buckets, tables and streams in one NATS account, every resource named
 * under a prefix (see nats-names.ts for the layout). Works with nats-server 2.9 and later: it uses KV
 * revisions for CAS, Object Store, pull consumers with one filter subject, and direct get — nothing
 * newer.
 */
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { BodyCollector, type BodyStoreOptions, type CollectOptions, type CollectResult, type ReferenceCheck } from '../body-store.ts';
import { BindingError } from '../errors.ts';
import { S3BodyStore } from '../s3/index.ts';
import { FsFile } from '../file/index.ts';
import { checkSignal, MAX_REPLICAS, resolveReplicas, resolveShards, resolveTableOptions } from '../backend-helpers.ts';
import { changeStreamName, DEFAULT_BUCKET_SHARDS } from '../change-record.ts';
import type { Backend, BucketInfo, BucketOptions, CallOptions, CommitBatchOptions, FileBinding, KvBinding, ListedBucket, ObjectBinding, StreamBinding, TableOptions, WriteOp, WriteOpResult } from '../types.ts';
import { runChained } from '../write-batch.ts';
import { resolveIndexes } from '../query/index.ts';
import { checkName, Limits } from '../values.ts';
import type { NatsContext } from './nats-context.ts';
import { isStreamNotFound, toBindingError } from './nats-errors.ts';
import { ConnectionGate } from './nats-gate.ts';
import { NatsKv, TABLE_HISTORY } from './nats-kv.ts';
import { KvStore } from './nats-kvstore.ts';
import { describe, kvStream, NatsNames, parseDescription } from './nats-names.ts';
import { NatsObject, OBJECT_HISTORY } from './nats-object.ts';
import { patchNatsRequests } from './nats-request-patch.ts';
import { corkWrites } from './nats-write-patch.ts';
import { ShardReaders } from './nats-reader.ts';
import { deleteNatsBucket, listNatsBuckets } from './nats-buckets.ts';
import { NatsStream } from './nats-stream.ts';

/** Options of {@link NatsBackend.open}. */
export interface NatsBackendOptions {
  /**
   * NATS server URL(s), e.g. `nats://127.0.0.1:4222`; a string may hold several, comma-separated
   * (`nats://a:4222,nats://b:4222`): every one is used (the client picks one and fails over to the others).
   */
  servers: string | string[];
  /**
   * Namespace of every NATS resource (streams `<prefix>_…`, subjects `<prefix>.…`), so several sluice
   * installations can share one account. 1-32 letters, digits, '_' and '-'. @default 'sluice'
   */
  prefix?: string;
  /**
   * JetStream replicas of every stream and KV bucket this backend creates (1-5; existing ones keep
   * theirs) unless the create call asks for its own (`createBucket(name, { replicas })`, tables and
   * streams alike). `'auto'`: 3 when the server is part of a cluster (its INFO names one), else 1 — a
   * cluster of fewer than 3 JetStream servers needs an explicit 1 or 2.
   * @default 'auto'
   */
  replicas?: number | 'auto';
  /**
   * Bodies up to this many bytes are stored inside the object's metadata entry (one message, read in
   * one round trip); larger ones go to the bucket's Object Store. At most 512 KiB, and the server's
   * max_payload must hold it plus the attributes bound. @default 65536 (64 KiB)
   */
  inlineBodyMaxBytes?: number;
  /**
   * Change records kept per object key in a bucket's change stream (the max_msgs_per_subject of the
   * bucket's KV stream), fixed when the bucket is created. Older changes of a key are compacted away,
   * even when no consumer has read them yet; the newest change of every key is always kept. 0 keeps
   * every change: the stream then grows with every write (inline bodies included) and nothing bounds it.
   * 64 is the history limit `@nats-io/kv` and the `nats` CLI assume; the server accepts more.
   * @default 64
   */
  changeHistoryPerKey?: number;
  /** Connection name shown by the server (`nats server report connections`). @default 'sluice' */
  name?: string;
  /** Most writes in flight while NATS is unreachable; past it writes fail with SLUICE_BACKEND_UNAVAILABLE at once. @default 1000 */
  maxBufferedWrites?: number;
  /** Most bytes of writes in flight while NATS is unreachable (see `maxBufferedWrites`). @default 8388608 (8 MiB) */
  maxBufferedBytes?: number;
  /**
   * TLS to the servers: `caFile` to verify them, `certFile` + `keyFile` to present a client
   * certificate (mTLS). @default plaintext (unless the URL is tls://)
   */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** Token authentication. @default undefined */
  token?: string;
  /** User for user/password authentication. @default undefined */
  user?: string;
  /** Password for user/password authentication. @default undefined */
  pass?: string;
  /**
   * Keep bodies above `bodies.inlineMaxBytes` in an external S3-compatible store instead of the
   * buckets' Object Stores; metadata, attributes and change records stay in NATS. Its `inlineMaxBytes`
   * then replaces `inlineBodyMaxBytes`. Every process of one installation must pass the same value.
   * @default undefined (bodies in NATS)
   */
  bodies?: BodyStoreOptions;
}

/** {@link NatsBackendOptions} with defaults applied. */
interface ResolvedNatsBackendOptions {
  servers: string[];
  /** max_msgs_per_subject of object KV streams (-1: unlimited). */
  changeHistory: number;
  prefix: string;
  replicas: number | 'auto';
  inlineBodyMaxBytes: number;
  name: string;
}

const MAX_INLINE_BODY = 512 * 1024;
/** Room for the rest of an object entry besides body and attributes (key, fields, headers). */
const ENTRY_OVERHEAD = 16 * 1024;

function resolveOptions(o: NatsBackendOptions): ResolvedNatsBackendOptions {
  const bad = (m: string) => new BindingError('SLUICE_INVALID_ARGUMENT', `nats backend: ${m}`);
  if (o === null || typeof o !== 'object') throw bad('options must be an object');
  const given = typeof o.servers === 'string' ? [o.servers] : o.servers;
  if (!Array.isArray(given) || given.length === 0 || given.some((s) => typeof s !== 'string' || s.length === 0))
    throw bad('servers must be a URL or a non-empty array of URLs');
  // 'nats://a,nats://b' is one string to the client, which then used only the last URL: split it.
  const servers = given.flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
  if (servers.length === 0) throw bad('servers must name at least one URL');
  const replicas = o.replicas ?? 'auto';
  if (replicas !== 'auto' && (!Number.isInteger(replicas) || replicas < 1 || replicas > MAX_REPLICAS))
    throw bad(`replicas must be 'auto' or an integer from 1 to ${MAX_REPLICAS}, got ${JSON.stringify(o.replicas)}`);
  const inline = o.inlineBodyMaxBytes ?? 64 * 1024;
  if (!Number.isInteger(inline) || inline < 0 || inline > MAX_INLINE_BODY)
    throw bad(`inlineBodyMaxBytes must be an integer from 0 to ${MAX_INLINE_BODY}, got ${JSON.stringify(o.inlineBodyMaxBytes)}`);
  const history = o.changeHistoryPerKey ?? OBJECT_HISTORY;
  if (!Number.isSafeInteger(history) || history < 0)
    throw bad(`changeHistoryPerKey must be a non-negative integer (0: keep every change), got ${JSON.stringify(o.changeHistoryPerKey)}`);
  const name = o.name ?? 'sluice';
  if (typeof name !== 'string') throw bad('name must be a string');
  return { servers, prefix: o.prefix ?? 'sluice', replicas, inlineBodyMaxBytes: inline, changeHistory: history === 0 ? -1 : history, name };
}

/** A sluice backend on NATS JetStream. */
export class NatsBackend implements Backend {
  readonly kind = 'nats';
  readonly #ctx: NatsContext;
  readonly #streams: NatsStream;
  readonly #readers: ShardReaders;
  readonly #buckets = new Map<string, NatsObject>();
  readonly #tables = new Map<string, NatsKv>();
  readonly #where: string;
  readonly #changeHistory: number;
  readonly #bodies: S3BodyStore | undefined;
  readonly #collector: BodyCollector | undefined;
  #closed = false;

  /** JetStream replicas of the resources this backend creates (see {@link NatsBackendOptions.replicas}). */
  get replicas(): number {
    return this.#ctx.replicas;
  }

  private constructor(ctx: NatsContext, meta: KvStore, where: string, changeHistory: number, bodies: S3BodyStore | undefined) {
    this.#ctx = ctx;
    this.#bodies = bodies;
    if (bodies) {
      const o = bodies.options;
      this.#collector = new BodyCollector(bodies, async (bucket) => this.#referenceCheck(bucket), { graceMs: o.gcGraceMs, maxBodies: o.gcMaxBodiesPerRun });
      this.#collector.start(o.gcIntervalMs);
    }
    this.#changeHistory = changeHistory;
    this.#readers = new ShardReaders(ctx);
    this.#streams = new NatsStream(ctx, this.#readers, meta);
    this.#where = where;
  }

  /** Connects, checks JetStream, and creates the backend's meta KV bucket when missing. */
  static async open(options: NatsBackendOptions): Promise<NatsBackend> {
    const o = resolveOptions(options);
    const bodies = options.bodies !== undefined ? await S3BodyStore.open(options.bodies) : undefined;
    if (bodies) o.inlineBodyMaxBytes = bodies.inlineMaxBytes;
    try {
      return await NatsBackend.#connect(o, options, bodies);
    } catch (err) {
      await bodies?.close();
      throw err;
    }
  }

  static async #connect(o: ResolvedNatsBackendOptions, options: NatsBackendOptions, bodies: S3BodyStore | undefined): Promise<NatsBackend> {
    const names = new NatsNames(o.prefix);
    const where = `nats backend at ${o.servers.join(', ')}`;
    let nc: NatsConnection;
    // One throwaway Error per answered request, skipped (nats-request-patch.ts).
    patchNatsRequests();
    try {
      nc = await connect({
        servers: o.servers,
        name: o.name,
        // Keep trying after a disconnect: calls then fail with SLUICE_TIMEOUT until NATS is back.
        maxReconnectAttempts: -1,
        // nats.js captures a stack trace for every request otherwise: measured 30% of client CPU in a get
        // loop (raw kv.put 20k → 33k ops/s without it). Our errors carry their own context.
        noAsyncTraces: true,
        ...(options.tls !== undefined ? { tls: { ...options.tls } } : {}),
        ...(options.token !== undefined ? { token: options.token } : {}),
        ...(options.user !== undefined ? { user: options.user } : {}),
        ...(options.pass !== undefined ? { pass: options.pass } : {}),
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', `cannot connect to NATS at ${o.servers.join(', ')}: ${why}`, { cause: err });
    }
    // The small frames of one event-loop turn leave in one socket write (nats-write-patch.ts).
    corkWrites(nc);
    try {
      const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
      if (o.inlineBodyMaxBytes + Limits.maxAttrsBytes + ENTRY_OVERHEAD > maxPayload)
        throw new BindingError(
          'SLUICE_INVALID_ARGUMENT',
          `${where}: inlineBodyMaxBytes ${o.inlineBodyMaxBytes} plus ${Limits.maxAttrsBytes} bytes of attributes exceeds the server's max_payload ${maxPayload}`,
        );
      const jsm = await jetstreamManager(nc);
      // A clustered server names its cluster in INFO; R3 then survives the loss of any one node.
      const clustered = nc.info?.cluster !== undefined;
      const replicas = o.replicas === 'auto' ? (clustered ? 3 : 1) : o.replicas;
      const ctx: NatsContext = {
        nc,
        js: jetstream(nc),
        jsm,
        names,
        apiPrefix: jsm.getOptions().apiPrefix ?? '$JS.API',
        replicas,
        inlineBodyMaxBytes: o.inlineBodyMaxBytes,
        // Direct gets may be answered by any replica, which can lag the leader: read-your-writes needs
        // the leader when R > 1. Any resource may have its own factor (and another process may have
        // created it), so on a cluster every single-entry read goes to the leader; a single server
        // has R1 only.
        directReads: !clustered,
        gate: new ConnectionGate(nc, {
          ...(options.maxBufferedWrites !== undefined ? { maxBufferedWrites: options.maxBufferedWrites } : {}),
          ...(options.maxBufferedBytes !== undefined ? { maxBufferedBytes: options.maxBufferedBytes } : {}),
        }),
      };
      await KvStore.ensure(ctx, names.metaKv(), { history: 1, replicas, description: 'sluice backend metadata (consumer-group positions)' });
      return new NatsBackend(ctx, new KvStore(ctx, names.metaKv()), where, o.changeHistory, bodies);
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw toBindingError(err, `open ${where}`, { notFound: 'SLUICE_BACKEND_UNAVAILABLE' });
    }
  }

  async createBucket(name: string, options?: BucketOptions): Promise<BucketInfo> {
    const where = `createBucket '${String(name)}'`;
    this.#checkOpen(where);
    checkName(name, 'bucket');
    if (options !== undefined && (options === null || typeof options !== 'object')) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: options must be an object`);
    const shards = resolveShards(options?.shards, `bucket '${name}'`, DEFAULT_BUCKET_SHARDS);
    const indexes = resolveIndexes(options?.indexes, `bucket '${name}'`);
    const replicas = resolveReplicas(options?.replicas, `bucket '${name}'`) ?? this.#ctx.replicas;
    const names = this.#ctx.names;
    try {
      // The body store first: once the KV stream exists the bucket is visible and puts need the store.
      if (!this.#bodies) await new Objm(this.#ctx.js).create(names.bodyStore(name), { replicas, description: `sluice bodies of bucket ${name}` });
      const si = await KvStore.ensure(this.#ctx, names.objectKv(name), {
        history: this.#changeHistory,
        replicas,
        description: describe({ sluice: 'bucket', shards, retentionMs: 0, history: this.#changeHistory, ...(indexes.length > 0 ? { indexes } : {}) }),
      });
      const d = parseDescription(si.config.description, 'bucket');
      if (!d || d.shards !== shards)
        throw new BindingError('SLUICE_ALREADY_EXISTS', `${where}: the bucket exists with ${d ? `${d.shards} shards` : 'a foreign configuration'}; asked for ${shards}`);
      if ((d.indexes ?? []).join(',') !== indexes.join(','))
        throw new BindingError('SLUICE_ALREADY_EXISTS', `${where}: the bucket exists with indexes [${(d.indexes ?? []).join(', ')}], not [${indexes.join(', ')}]`);
      return { name, shards, changeStream: changeStreamName(name), historyPerKey: d.history ?? this.#changeHistory, indexes };
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async objects(bucket: string): Promise<ObjectBinding> {
    const where = `objects '${String(bucket)}'`;
    this.#checkOpen(where);
    checkName(bucket, 'bucket');
    const cached = this.#buckets.get(bucket);
    if (cached) return cached;
    try {
      const d = await this.#describe(this.#ctx.names.objectKv(bucket), 'bucket');
      if (!d) throw new BindingError('SLUICE_BUCKET_NOT_FOUND', `${where}: bucket '${bucket}' does not exist`);
      // A bucket's shard count is fixed; deleteBucket drops it from this cache (other processes keep theirs: see nats-buckets.ts).
      const b = new NatsObject(this.#ctx, bucket, d.shards, d.history ?? this.#changeHistory, d.indexes ?? [], this.#bodies);
      this.#buckets.set(bucket, b);
      return b;
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  /** See nats-buckets.ts (check empty, then delete the bucket's streams). */
  async deleteBucket(name: string): Promise<void> {
    this.#checkOpen(`deleteBucket '${String(name)}'`);
    const objects = await this.objects(name);
    this.#buckets.delete(name);
    await deleteNatsBucket(this.#ctx, name, objects, !this.#bodies);
  }

  async listBuckets(): Promise<ListedBucket[]> {
    this.#checkOpen('listBuckets');
    return listNatsBuckets(this.#ctx, this.#changeHistory);
  }

  async createTable(name: string, options?: TableOptions): Promise<void> {
    const where = `createTable '${String(name)}'`;
    this.#checkOpen(where);
    checkName(name, 'table');
    const replicas = resolveTableOptions(name, options) ?? this.#ctx.replicas;
    try {
      const si = await KvStore.ensure(this.#ctx, this.#ctx.names.tableKv(name), {
        history: TABLE_HISTORY,
        replicas,
        description: describe({ sluice: 'table', shards: 1, retentionMs: 0 }),
      });
      if (!parseDescription(si.config.description, 'table'))
        throw new BindingError('SLUICE_ALREADY_EXISTS', `${where}: a JetStream stream ${si.config.name} exists that is not a sluice table`);
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async kv(table: string): Promise<KvBinding> {
    const where = `kv '${String(table)}'`;
    this.#checkOpen(where);
    checkName(table, 'table');
    const cached = this.#tables.get(table);
    if (cached) return cached;
    try {
      if (!(await this.#describe(this.#ctx.names.tableKv(table), 'table'))) throw new BindingError('SLUICE_TABLE_NOT_FOUND', `${where}: table '${table}' does not exist`);
      const t = new NatsKv(this.#ctx, table);
      this.#tables.set(table, t);
      return t;
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_TABLE_NOT_FOUND' });
    }
  }

  streams(): StreamBinding {
    return this.#streams;
  }

  async files(root: string): Promise<FileBinding> {
    this.#checkOpen(`files '${String(root)}'`);
    return FsFile.open(root);
  }

  /** Closes cached stream readers and drains the connection. Idempotent. */
  /**
   * The ops' writes pipelined: every op without `after` is sent at once (their CAS appends overlap on the
   * connection), a chained op after its predecessor. An attribute op CASes on the state this process read
   * last (the runtime's prefetch), without reading again; a checkpoint's `ifRevision` put is one CAS.
   */
  async commitBatch(ops: readonly WriteOp[], options?: CommitBatchOptions): Promise<WriteOpResult[]> {
    checkSignal(options?.signal, 'commitBatch');
    return runChained(ops, async (op, where) => {
      if (op.type === 'attrs') return ((await this.objects(op.bucket)) as NatsObject).applyAttrsOp(op, where);
      const w = await (await this.kv(op.table)).putItem(op.key, op.item, op.ifRevision !== undefined ? { ifRevision: op.ifRevision } : {});
      return w.revision;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#collector?.stop();
    await this.#streams.close();
    try {
      await this.#ctx.nc.drain();
    } catch {
      // already closed (e.g. the server went away): nothing left to release
    }
    await this.#bodies?.close();
  }

  /**
   * Removes external bodies no object references (left by crashes between upload and commit, or by a
   * failed removal after an overwrite) once older than the grace period. Bounded by `maxBodies`; also
   * runs every `bodies.gcIntervalMs`. Without `bodies`, nothing to do (Object Store bodies are purged
   * with their commit).
   */
  async collectBodies(options?: CollectOptions): Promise<CollectResult> {
    this.#checkOpen('collectBodies');
    if (!this.#collector) return { scanned: 0, deleted: 0, young: 0, more: false };
    return this.#collector.run(options);
  }

  async #referenceCheck(bucket: string): Promise<ReferenceCheck | undefined> {
    try {
      const o = (await this.objects(bucket)) as NatsObject;
      return (key, ref) => o.references(key, ref);
    } catch (err) {
      // Bodies under a bucket this backend does not know are not ours to judge: leave them.
      if (err instanceof BindingError && (err.code === 'SLUICE_BUCKET_NOT_FOUND' || err.code === 'SLUICE_NAME_INVALID')) return undefined;
      throw err;
    }
  }

  #checkOpen(where: string): void {
    if (this.#closed) throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', `${where}: the ${this.#where} is closed`);
  }

  /** The sluice description of a KV bucket's stream, or undefined when the stream is missing or foreign. */
  async #describe(kvBucket: string, kind: 'bucket' | 'table'): Promise<ReturnType<typeof parseDescription>> {
    try {
      return parseDescription((await this.#ctx.jsm.streams.info(kvStream(kvBucket))).config.description, kind);
    } catch (err) {
      if (isStreamNotFound(err)) return undefined;
      throw err;
    }
  }
}
