/**
 * Objects on the embedded store. A put writes metadata, attributes, body and the change record in one
 * LMDB transaction (see {@link LocalStore.write}), so no crash can leave one without the other.
 *
 * With an external body store (option `bodies`), a body above its inline bound is uploaded under a new
 * ref BEFORE that transaction, which then stores only the ref; the replaced body is removed after the
 * commit (protocol and crash analysis in body-store.ts). Reads fetch the body by ref after reading the
 * metadata; a body removed by a concurrent overwrite in between makes the read start over.
 */
import type { BodyStore } from '../body-store.ts';
import { BindingError, ConditionFailedError } from '../errors.ts';
import { applyUpdate, checkCondition, checkUpdate, evaluateCondition } from '../expr/index.ts';
import { bodyBytes, checkCause, checkPreconditions, checkSignal, etagOf, listPage, resolveList, resolvePut, resolveRange } from '../backend-helpers.ts';
import { changeStreamName, encodeChange, sequencer, shardOf } from '../change-record.ts';
import type {
  AttrReadOptions,
  AttrsWriteOp,
  BucketInfo,
  Cause,
  CallOptions,
  ChangeRecord,
  ChangeType,
  DeleteObjectOptions,
  Expression,
  GetObjectOptions,
  GetObjectResult,
  ListOptions,
  ListResult,
  QueryOptions,
  QueryResult,
  ObjectBinding,
  ObjectHead,
  ObjectMeta,
  PutObjectOptions,
  PutObjectResult,
  UpdateAttrsOptions,
  UpdateAttrsResult,
} from '../types.ts';
import { checkAttrs, checkKey, compareKeys, visibleAttrs, type Attrs } from '../values.ts';
import { resolveQuery } from '../query/index.ts';
import type { LocalStore, StoredMeta } from './local-store.ts';
import { applyAttrsOp } from '../write-batch.ts';
import { reindex, runLocalQuery, stateOf } from './local-query.ts';

const STREAM_CHUNK = 1024 * 1024;

/**
 * An in-memory body as a stream of STREAM_CHUNK pieces. At module scope, not a generator expression per
 * read: under tsx every function expression is wrapped by a naming helper on creation (≈2.7 % of a 1 KiB
 * GET through the S3 gateway).
 */
async function* chunksOf(body: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < body.byteLength; i += STREAM_CHUNK) yield body.subarray(i, Math.min(i + STREAM_CHUNK, body.byteLength));
}
/** Reads that start over because a concurrent write replaced the body before SLUICE_CONFLICT. */
const MAX_READ_ATTEMPTS = 100;

/** `ObjectBinding` over {@link LocalStore}. */
export class LocalObject implements ObjectBinding {
  readonly bucket: string;
  readonly #store: LocalStore;
  readonly #shards: number;
  readonly #stream: string;
  readonly #indexes: readonly string[];
  readonly #indexSet: ReadonlySet<string>;
  readonly #bodies: BodyStore | undefined;

  constructor(store: LocalStore, bucket: string, shards: number, indexes: readonly string[] = [], bodies?: BodyStore) {
    this.#indexes = indexes;
    this.#indexSet = new Set(indexes);
    this.#store = store;
    this.#bodies = bodies;
    this.bucket = bucket;
    this.#shards = shards;
    this.#stream = changeStreamName(bucket);
  }

  async info(): Promise<BucketInfo> {
    return { name: this.bucket, shards: this.#shards, changeStream: this.#stream, historyPerKey: 0, indexes: [...this.#indexes] };
  }

  /** Appends the change record of `key`; only inside a store write. */
  #recordChange(key: string, type: ChangeType, meta: StoredMeta, mtime: number, cause: Cause | undefined): number {
    const s = this.#store;
    const seqNo = s.next(['v', this.bucket]);
    const shard = shardOf(key, this.#shards);
    const seq = s.next(['s', this.#stream, shard]);
    // `cause` right after `type`: the runtime reads both from the bytes without decoding (peekChange).
    const rec: ChangeRecord = {
      bucket: this.bucket,
      key,
      type,
      ...(cause ? { cause } : {}),
      version: type === 'put' ? seqNo : meta.version,
      size: type === 'delete' ? 0 : meta.size,
      etag: type === 'delete' ? '' : meta.etag,
      mtime: new Date(mtime),
      sequencer: sequencer(seqNo),
      attrsRevision: meta.attrsRevision,
      contentType: type === 'delete' ? '' : meta.contentType,
    };
    s.records.put([this.#stream, shard, seq], { d: encodeChange(rec), p: key, t: mtime });
    s.noteAppend(this.#stream, shard);
    return seqNo;
  }

  async put(key: string, body: Uint8Array | string, options?: PutObjectOptions): Promise<PutObjectResult> {
    const r = resolvePut(this.bucket, key, options);
    const cause = checkCause(options?.cause, `put '${key}'`);
    const bytes = bodyBytes(body, `put '${key}'`);
    checkSignal(options?.signal, `put '${key}'`);
    const etag = etagOf(bytes);
    const s = this.#store;
    const k = [this.bucket, key];
    const ext = this.#bodies !== undefined && bytes.byteLength > this.#bodies.inlineMaxBytes ? this.#bodies : undefined;
    const started = Date.now();
    // The external body first: the commit below only references it (see body-store.ts).
    const ref = ext ? await ext.put(this.bucket, key, bytes, options?.signal ? { signal: options.signal } : {}) : undefined;
    let replaced: string | undefined;
    let result: PutObjectResult;
    try {
      result = await s.write(() => {
        const cur = s.meta.get(k);
        checkPreconditions(key, cur, r.ifMatch, r.ifNoneMatch, (m) => new ConditionFailedError(m, cur ? toMeta(key, cur) : undefined, cur?.version));
        // A binding held across a deleteBucket must not write into the deleted bucket.
        if (cur === undefined && s.registry.get(['bucket', this.bucket])?.kind !== 'bucket') throw new BindingError('SLUICE_BUCKET_NOT_FOUND', `put '${key}': bucket '${this.bucket}' does not exist`);
        const now = Date.now();
        // Checked inside the commit: past the grace period the collector may already have taken the body.
        if (ext && now - started >= ext.graceMs)
          throw new BindingError('SLUICE_TIMEOUT', `put '${key}': the commit came ${now - started} ms after the body upload started, past the body store's grace period of ${ext.graceMs} ms`);
        const meta: StoredMeta = { size: bytes.byteLength, etag, version: 0, contentType: r.contentType, mtime: now, attrsRevision: (cur?.attrsRevision ?? 0) + 1 };
        // The change record's sequencer doubles as the object version: one counter orders every change.
        meta.version = this.#recordChange(key, 'put', { ...meta, version: -1 }, now, cause);
        if (ref !== undefined) meta.bodyRef = ref;
        if (this.#indexes.length > 0)
          reindex(s, this.bucket, this.#indexes, key, cur && stateOf(key, cur, s.attrs.get(k) as Attrs | undefined), stateOf(key, meta, r.attrs));
        s.meta.put(k, meta);
        if (ref === undefined) s.bodies.put(k, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        else if (cur && cur.bodyRef === undefined) s.bodies.remove(k);
        if (Object.keys(r.attrs).length > 0) s.attrs.put(k, r.attrs);
        else if (cur) s.attrs.remove(k);
        replaced = cur?.bodyRef;
        return { etag, version: meta.version };
      }, { bytes: ref === undefined ? bytes.byteLength : 0 });
    } catch (err) {
      // Not committed: nothing references the new body.
      if (ref !== undefined) await this.#dropBody(ref);
      throw err;
    }
    if (replaced !== undefined) await this.#dropBody(replaced);
    return result;
  }

  async head(key: string, options?: AttrReadOptions): Promise<ObjectHead | undefined> {
    this.#store.fresh();
    checkKey(key, `bucket '${this.bucket}': key`);
    checkSignal(options?.signal, `head '${key}'`);
    const k = [this.bucket, key];
    const m = this.#store.meta.get(k);
    if (!m) return undefined;
    // Written out in full: a spread followed by more properties takes a slow V8 path (measured 3×).
    const attrs = visibleAttrs((this.#store.attrs.get(k) as Attrs | undefined) ?? {}, options?.internal);
    return { key, size: m.size, etag: m.etag, version: m.version, contentType: m.contentType, mtime: new Date(m.mtime), attrs, attrsRevision: m.attrsRevision };
  }

  async get(key: string, options?: GetObjectOptions): Promise<GetObjectResult> {
    checkKey(key, `bucket '${this.bucket}': key`);
    const where = `get '${key}'`;
    checkSignal(options?.signal, where);
    const k = [this.bucket, key];
    const s = this.#store;
    let lastRef: string | undefined;
    for (let attempt = 0; attempt < MAX_READ_ATTEMPTS; attempt++) {
      s.fresh();
      // Reads in one synchronous turn share lmdb-js's read snapshot (this process commits only in its own
      // later turn), so meta, attributes and body belong to the same version.
      const m = s.meta.get(k);
      if (!m) throw notFound(this.bucket, key);
      const range = resolveRange(key, m.size, options?.range);
      const attrs = visibleAttrs((s.attrs.get(k) as Attrs | undefined) ?? {}, options?.internal);
      let body: Uint8Array | undefined;
      if (m.bodyRef === undefined) {
        const whole = s.bodies.getBinary(k) ?? Buffer.alloc(0);
        body = range.start === 0 && range.end === whole.byteLength ? whole : whole.subarray(range.start, range.end);
      } else body = await this.#external(where).get(m.bodyRef, range, options?.signal ? { signal: options.signal } : {});
      // Written out in full: a spread followed by more properties takes a slow V8 path (measured 3×).
      if (body !== undefined)
        return { key, size: m.size, etag: m.etag, version: m.version, contentType: m.contentType, mtime: new Date(m.mtime), attrs, attrsRevision: m.attrsRevision, body, range };
      lastRef = this.#checkGone(where, m.bodyRef ?? '', lastRef);
    }
    throw new BindingError('SLUICE_CONFLICT', `${where}: the object kept changing while being read`);
  }

  async getStream(key: string, options?: GetObjectOptions): Promise<{ head: ObjectHead; body: AsyncIterable<Uint8Array> }> {
    checkKey(key, `bucket '${this.bucket}': key`);
    const where = `getStream '${key}'`;
    checkSignal(options?.signal, where);
    const k = [this.bucket, key];
    const s = this.#store;
    let lastRef: string | undefined;
    for (let attempt = 0; attempt < MAX_READ_ATTEMPTS; attempt++) {
      s.fresh();
      const m = s.meta.get(k);
      if (!m) throw notFound(this.bucket, key);
      const range = resolveRange(key, m.size, options?.range);
      const attrs = visibleAttrs((s.attrs.get(k) as Attrs | undefined) ?? {}, options?.internal);
      const head: ObjectHead = { key, size: m.size, etag: m.etag, version: m.version, contentType: m.contentType, mtime: new Date(m.mtime), attrs, attrsRevision: m.attrsRevision };
      if (m.bodyRef === undefined) {
        const body = (s.bodies.getBinary(k) ?? Buffer.alloc(0)).subarray(range.start, range.end);
        return {
          head,
          body: chunksOf(body),
        };
      }
      const body = await this.#external(where).getStream(m.bodyRef, range, options?.signal ? { signal: options.signal } : {});
      if (body !== undefined) return { head, body };
      lastRef = this.#checkGone(where, m.bodyRef, lastRef);
    }
    throw new BindingError('SLUICE_CONFLICT', `${where}: the object kept changing while being read`);
  }

  async delete(key: string, options?: DeleteObjectOptions): Promise<boolean> {
    checkKey(key, `bucket '${this.bucket}': key`);
    if (options?.ifMatch !== undefined && typeof options.ifMatch !== 'string') throw new BindingError('SLUICE_INVALID_ARGUMENT', `delete '${key}': ifMatch must be an etag string`);
    checkSignal(options?.signal, `delete '${key}'`);
    const cause = checkCause(options?.cause, `delete '${key}'`);
    const s = this.#store;
    const k = [this.bucket, key];
    let dropped: string | undefined;
    const existed = await s.write(() => {
      const cur = s.meta.get(k);
      if (options?.ifMatch !== undefined) checkPreconditions(key, cur, options.ifMatch, false, (m) => new ConditionFailedError(m, cur ? toMeta(key, cur) : undefined, cur?.version));
      if (!cur) return false;
      if (this.#indexes.length > 0) reindex(s, this.bucket, this.#indexes, key, stateOf(key, cur, s.attrs.get(k) as Attrs | undefined), undefined);
      this.#recordChange(key, 'delete', cur, Date.now(), cause);
      s.meta.remove(k);
      if (cur.bodyRef === undefined) s.bodies.remove(k);
      s.attrs.remove(k);
      dropped = cur.bodyRef;
      return true;
    }, { freeing: true });
    if (dropped !== undefined) await this.#dropBody(dropped);
    return existed;
  }

  async list(options?: ListOptions): Promise<ListResult> {
    this.#store.fresh();
    const r = resolveList(this.bucket, options);
    checkSignal(options?.signal, `list '${this.bucket}'`);
    const start = r.after !== '' && compareKeys(r.after, r.prefix) > 0 ? r.after : r.prefix;
    const bucket = this.bucket;
    const range = this.#store.meta.getRange({ start: [bucket, start] });
    function* metas(): Iterable<ObjectMeta> {
      for (const { key, value } of range) {
        if (key[0] !== bucket) return;
        yield toMeta(key[1] as string, value);
      }
    }
    return listPage(bucket, r, metas());
  }

  async getAttrs(key: string, options?: AttrReadOptions): Promise<UpdateAttrsResult> {
    const h = await this.head(key, options);
    if (!h) throw notFound(this.bucket, key);
    return { attrs: h.attrs, attrsRevision: h.attrsRevision };
  }

  async updateAttrs(key: string, update: Expression | Expression[], options?: UpdateAttrsOptions): Promise<UpdateAttrsResult> {
    checkKey(key, `bucket '${this.bucket}': key`);
    const updates = Array.isArray(update) ? update : [update];
    if (updates.length === 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `updateAttrs '${key}': no update given`);
    updates.forEach((u, i) => checkUpdate(u, `updateAttrs '${key}': update${updates.length > 1 ? `[${i}]` : ''}`));
    if (options?.condition !== undefined) checkCondition(options.condition, `updateAttrs '${key}': condition`);
    checkSignal(options?.signal, `updateAttrs '${key}'`);
    const cause = checkCause(options?.cause, `updateAttrs '${key}'`);
    const s = this.#store;
    const k = [this.bucket, key];
    return s.write(() => {
      const cur = s.meta.get(k);
      if (!cur) throw notFound(this.bucket, key);
      const attrs = (s.attrs.get(k) as Attrs | undefined) ?? {};
      if (options?.condition !== undefined && !evaluateCondition(options.condition, attrs))
        throw new ConditionFailedError(`updateAttrs '${key}': condition did not hold`, visibleAttrs(attrs, options.internal), cur.attrsRevision);
      let next = attrs;
      for (const u of updates) next = applyUpdate(u, next);
      checkAttrs(next, `updateAttrs '${key}': resulting attrs`);
      const attrsRevision = this.#writeAttrs(key, cur, attrs, next, cause);
      return { attrs: visibleAttrs(next, options?.internal), attrsRevision };
    });
  }

  /**
   * The attribute op of a {@link Backend.commitBatch}: checks and writes inside the caller's store write
   * (the op is validated already). Returns the new attrsRevision; throws before any write when the
   * object is missing or the op's condition or marker does not hold.
   */
  applyAttrsOp(op: AttrsWriteOp, where: string): number {
    const s = this.#store;
    const k = [this.bucket, op.key];
    const cur = s.meta.get(k);
    if (!cur) throw notFound(this.bucket, op.key);
    const attrs = (s.attrs.get(k) as Attrs | undefined) ?? {};
    return this.#writeAttrs(op.key, cur, attrs, applyAttrsOp(attrs, op, cur.attrsRevision, where), op.cause);
  }

  /** Writes `next` over `attrs` with its change record and index entries; only inside a store write. */
  #writeAttrs(key: string, cur: StoredMeta, attrs: Attrs, next: Attrs, cause: Cause | undefined): number {
    const s = this.#store;
    const k = [this.bucket, key];
    const meta: StoredMeta = { ...cur, attrsRevision: cur.attrsRevision + 1 };
    this.#recordChange(key, 'attrs', meta, Date.now(), cause);
    if (this.#indexes.length > 0) reindex(s, this.bucket, this.#indexes, key, stateOf(key, cur, attrs), stateOf(key, meta, next));
    s.meta.put(k, meta);
    if (Object.keys(next).length > 0) s.attrs.put(k, next);
    else s.attrs.remove(k);
    return meta.attrsRevision;
  }

  async query(options?: QueryOptions): Promise<QueryResult> {
    const r = resolveQuery(this.bucket, options);
    checkSignal(options?.signal, `query '${this.bucket}'`);
    return runLocalQuery(this.#store, this.bucket, this.#indexSet, r);
  }

  /** True when the current metadata of `key` references body `ref` (the collector's check). */
  async references(key: string, ref: string): Promise<boolean> {
    this.#store.fresh();
    return this.#store.meta.get([this.bucket, key])?.bodyRef === ref;
  }

  #external(where: string): BodyStore {
    if (this.#bodies) return this.#bodies;
    throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', `${where}: the body is in an external body store, but the backend was opened without option 'bodies'`);
  }

  /** A read found its body gone: fine once (a concurrent write replaced it), data loss when the ref stays. */
  #checkGone(where: string, ref: string, lastRef: string | undefined): string {
    if (ref === lastRef) throw new BindingError('SLUICE_INTERNAL', `${where} in bucket '${this.bucket}': body ${ref} is missing from the body store`);
    return ref;
  }

  /** Removes a body nothing references any more. Best effort: the collector removes what this misses. */
  async #dropBody(ref: string): Promise<void> {
    await this.#bodies?.delete(ref).catch(() => undefined);
  }
}

function toMeta(key: string, m: StoredMeta): ObjectMeta {
  return { key, size: m.size, etag: m.etag, version: m.version, contentType: m.contentType, mtime: new Date(m.mtime) };
}

function notFound(bucket: string, key: string): BindingError {
  return new BindingError('SLUICE_NOT_FOUND', `object '${key}' does not exist in bucket '${bucket}'`);
}
