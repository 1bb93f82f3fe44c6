/**
 * Objects on NATS: one KV bucket per sluice bucket holds every object's metadata, attributes and small
 * body; its stream is the bucket's change stream. Bodies above the inline bound live in an Object Store.
 *
 * Invariant 1 (no dual writes): each put, delete and attribute update is ONE KV message, appended with
 * a CAS on the key's last revision. That message is both the commit and the change record; nothing
 * else is written in the same step. A large body is uploaded to the Object Store under a fresh name
 * BEFORE that message and only referenced by it, so a crash between the two leaves an unreferenced
 * body, never a visible object without its change record. After the CAS the replaced body is deleted
 * (best effort); after a lost CAS the new body is. With an external body store (backend option
 * `bodies`) the same steps run against it instead of the Object Store: the entry then carries `bodyRef`
 * (protocol in body-store.ts; orphans are removed by its collector).
 *
 * KV key of an object: `<shard>.<base64url(key)>` with shard = shardOf(key, shards), so a shard's change
 * feed is the subject filter `$KV.<kv-bucket>.<shard>.>`. By default the bucket keeps 64 messages per
 * key (the history limit of `@nats-io/kv`; option `changeHistoryPerKey`): the change feed therefore
 * holds at most the 64 newest changes of one key (older changes of that key are compacted away, even
 * when no consumer has read them yet), and each key's newest change is never lost.
 */
import { headers as natsHeaders, nuid, type MsgHdrs } from '@nats-io/nats-core';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { BodyStore } from '../body-store.ts';
import { BindingError, ConditionFailedError } from '../errors.ts';
import { applyUpdate, checkCondition, checkUpdate, evaluateCondition, type Expression } from '../expr/index.ts';
import { bodyBytes, checkCause, checkPreconditions, checkSignal, etagOf, listPage, resolveList, resolvePut, resolveRange } from '../backend-helpers.ts';
import { changeStreamName, sequencer, shardOf } from '../change-record.ts';
import { codec } from '../codec.ts';
import type {
  BucketInfo,
  AttrReadOptions,
  CallOptions,
  Cause,
  ChangeRecord,
  ChangeType,
  DeleteObjectOptions,
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
import { SystemFields } from '../types.ts';
import { PageBuilder, planQuery, resolveQuery, streamsInKeyOrder, type ObjectState } from '../query/index.ts';
import { IndexView, setIndexHeader } from './nats-query.ts';
import { type Attrs, checkAttrs, checkKey, compareKeys, visibleAttrs } from '../values.ts';
import { casBackoff, type NatsContext } from './nats-context.ts';
import { isWrongLastSequence, toBindingError } from './nats-errors.ts';
import { KvStore, type KvRecord } from './nats-kvstore.ts';
import { encodeKey, objectKeyOfSubject, objectKvKey } from './nats-names.ts';

/** Default messages kept per key in an object KV bucket (the KV client maximum; see the file header). */
export const OBJECT_HISTORY = 64;
/** Optimistic attempts of one write before SLUICE_CONFLICT. */
const MAX_ATTEMPTS = 100;
/** Header carrying the change summary, so listings and change feeds read headers only. */
export const CHANGE_HEADER = 'Sluice-Change';

/** The value of an object KV message (msgpack): the whole state of the object after the change. */
export interface ObjectEntry {
  type: ChangeType;
  key: string;
  size: number;
  etag: string;
  /** Object version; 0 in a `put` message, whose version is its own revision. */
  version: number;
  contentType: string;
  /** Time of the last put. */
  mtime: Date;
  /** Time of this change. */
  time: Date;
  attrs: Attrs;
  attrsRevision: number;
  /** The body, when it is at most `inlineBodyMaxBytes`. */
  body?: Uint8Array;
  /** Object Store name of the body otherwise, and the store's id of it (to purge its chunks). */
  bodyName?: string;
  bodyNuid?: string;
  /** Ref of the body in the backend's external body store (instead of the Object Store). */
  bodyRef?: string;
}

/** The change summary of {@link CHANGE_HEADER}: what a ChangeRecord and an ObjectMeta need. */
interface ChangeSummary {
  t: ChangeType;
  v: number;
  s: number;
  e: string;
  c: string;
  /** mtime (ms) */
  m: number;
  /** time of the change (ms) */
  w: number;
  a: number;
  /** The write's cause (function, hop), when it had one. */
  f?: string;
  h?: number;
}

/** An object's current state as read from KV. */
interface Current {
  /** Revision of the key's latest message (the CAS expectation of the next write). */
  revision: number;
  /** The decoded entry; undefined when the latest message is a KV deletion marker. */
  entry: ObjectEntry | undefined;
  /** True when an object is visible (latest entry is a put or attrs change). */
  live: boolean;
}

function summaryHeader(e: ObjectEntry, attrIndexes: readonly string[], cause: Cause | undefined): MsgHdrs {
  const s: ChangeSummary = { t: e.type, v: e.version, s: e.size, e: e.etag, c: e.contentType, m: e.mtime.getTime(), w: e.time.getTime(), a: e.attrsRevision };
  // The cause belongs to this message only (not to the object's state), so it lives in the header.
  if (cause) [s.f, s.h] = [cause.fn, cause.hop];
  const h = natsHeaders();
  h.set(CHANGE_HEADER, JSON.stringify(s));
  // The indexed attributes travel in the same message as the state: one append, nothing to drift apart.
  setIndexHeader(h, e.attrs, attrIndexes);
  return h;
}

function parseSummary(h: MsgHdrs | undefined): ChangeSummary | undefined {
  const raw = h?.get(CHANGE_HEADER);
  if (!raw) return undefined;
  try {
    const s = JSON.parse(raw) as ChangeSummary;
    return typeof s.t === 'string' && typeof s.s === 'number' ? s : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The change record of one object KV message, from its header (no body or attributes needed);
 * undefined for messages sluice did not write (e.g. a KV delete marker from another client).
 */
export function changeOfMessage(bucket: string, kvBucket: string, subject: string, seq: number, h: MsgHdrs | undefined): ChangeRecord | undefined {
  const s = parseSummary(h);
  const k = objectKeyOfSubject(subject, kvBucket);
  if (!s || !k) return undefined;
  const del = s.t === 'delete';
  // `cause` right after `type`: the runtime reads both from the encoded bytes without decoding (peekChange).
  return {
    bucket,
    key: k.key,
    type: s.t,
    ...(typeof s.f === 'string' && typeof s.h === 'number' ? { cause: { fn: s.f, hop: s.h } } : {}),
    version: s.v || seq,
    size: del ? 0 : s.s,
    etag: del ? '' : s.e,
    mtime: new Date(s.w),
    sequencer: sequencer(seq),
    attrsRevision: s.a,
    contentType: del ? '' : s.c,
  };
}

/** The query state of a live entry. */
function stateOfEntry(e: ObjectEntry): ObjectState {
  return { key: e.key, size: e.size, etag: e.etag, version: e.version, contentType: e.contentType, mtimeMs: e.mtime.getTime(), attrs: e.attrs };
}

function decodeEntry(value: Uint8Array, revision: number): ObjectEntry {
  const e = codec.unpack(value) as ObjectEntry;
  if (!(e.mtime instanceof Date)) e.mtime = new Date(e.mtime as unknown as number);
  if (!(e.time instanceof Date)) e.time = new Date(e.time as unknown as number);
  if (!e.version) e.version = revision;
  e.attrs ??= {};
  return e;
}

function metaOf(e: ObjectEntry): ObjectMeta {
  return { key: e.key, size: e.size, etag: e.etag, version: e.version, contentType: e.contentType, mtime: e.mtime };
}

function headOf(e: ObjectEntry, internal: boolean | undefined): ObjectHead {
  const attrs = visibleAttrs(e.attrs, internal);
  return { key: e.key, size: e.size, etag: e.etag, version: e.version, contentType: e.contentType, mtime: e.mtime, attrs, attrsRevision: e.attrsRevision };
}

/** The Object Store subject of an object's metadata (the store's padded base64url of the name). */
function bodyMetaSubject(store: string, name: string): string {
  return `$O.${store}.M.${Buffer.from(name, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_')}`;
}

/** Objects in one bucket. */
export class NatsObject implements ObjectBinding {
  readonly bucket: string;
  readonly #ctx: NatsContext;
  readonly #shards: number;
  readonly #kv: KvStore;
  readonly #storeName: string;
  #store: Promise<ObjectStore> | undefined;

  readonly #history: number;
  readonly #indexes: readonly string[];
  readonly #attrIndexes: readonly string[];
  /** Declared indexes plus the system fields, which the view always holds. */
  readonly #planFields: ReadonlySet<string>;
  readonly #view: IndexView;
  readonly #bodies: BodyStore | undefined;

  constructor(ctx: NatsContext, bucket: string, shards: number, history: number, indexes: readonly string[] = [], bodies?: BodyStore) {
    this.#history = history;
    this.#bodies = bodies;
    this.#indexes = indexes;
    this.#attrIndexes = indexes.filter((f) => f.startsWith('attr.'));
    this.#planFields = new Set([...indexes, ...SystemFields]);
    this.#ctx = ctx;
    this.bucket = bucket;
    this.#shards = shards;
    this.#kv = new KvStore(ctx, ctx.names.objectKv(bucket));
    this.#storeName = ctx.names.bodyStore(bucket);
    this.#view = new IndexView(ctx, this.#kv, parseSummary);
  }

  info(): Promise<BucketInfo> {
    return Promise.resolve({ name: this.bucket, shards: this.#shards, changeStream: changeStreamName(this.bucket), historyPerKey: this.#history, indexes: [...this.#indexes] });
  }

  async put(key: string, body: Uint8Array | string, options?: PutObjectOptions): Promise<PutObjectResult> {
    const where = `put '${String(key)}' in bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    const r = resolvePut(this.bucket, key, options);
    const cause = checkCause(options?.cause, where);
    const bytes = bodyBytes(body, where);
    const etag = etagOf(bytes);
    const inline = bytes.byteLength <= this.#ctx.inlineBodyMaxBytes;
    let uploaded: { name: string; nuid: string } | { ref: string } | undefined;
    const started = Date.now();
    let committed: boolean | 'unknown' = false;
    try {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        checkSignal(options?.signal, where);
        await casBackoff(attempt, options?.signal);
        const cur = await this.#read(key);
        checkPreconditions(key, cur.live ? cur.entry : undefined, r.ifMatch, r.ifNoneMatch, (m) => this.#conditionFailed(m, cur));
        // Upload once, before the commit; a retry after a lost CAS reuses the same body.
        if (!inline && !uploaded)
          uploaded = this.#bodies ? { ref: await this.#bodies.put(this.bucket, key, bytes, options?.signal ? { signal: options.signal } : {}) } : await this.#upload(key, bytes);
        const now = new Date();
        const entry: ObjectEntry = {
          type: 'put',
          key,
          size: bytes.byteLength,
          etag,
          version: 0,
          contentType: r.contentType,
          mtime: now,
          time: now,
          attrs: r.attrs,
          // A put after a delete starts a new object: its attribute revisions start over.
          attrsRevision: (cur.live ? (cur.entry?.attrsRevision ?? 0) : 0) + 1,
        };
        // Past the grace period the collector may already have taken the body (see body-store.ts). The CAS
        // below is one request bounded by the NATS timeout, far below any sensible grace period.
        if (this.#bodies && uploaded && 'ref' in uploaded && Date.now() - started >= this.#bodies.graceMs)
          throw new BindingError('SLUICE_TIMEOUT', `${where}: the commit would come ${Date.now() - started} ms after the body upload started, past the body store's grace period of ${this.#bodies.graceMs} ms`);
        if (uploaded && 'ref' in uploaded) entry.bodyRef = uploaded.ref;
        else if (uploaded) {
          entry.bodyName = uploaded.name;
          entry.bodyNuid = uploaded.nuid;
        } else entry.body = bytes;
        // A commit that fails without an answer (timeout, lost connection) may still have been applied:
        // its body then stays (an orphan at worst, for the collector) rather than risk a dangling ref.
        committed = 'unknown';
        const revision = await this.#commit(key, entry, cur, cause);
        committed = revision !== undefined;
        if (revision === undefined) continue; // another writer won the race: re-read and re-check
        await this.#deleteBody(cur.entry);
        return { etag, version: revision };
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent writers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    } finally {
      if (uploaded && committed === false) await this.#deleteBody('ref' in uploaded ? { bodyRef: uploaded.ref } : { bodyName: uploaded.name, bodyNuid: uploaded.nuid });
    }
  }

  async get(key: string, options?: GetObjectOptions): Promise<GetObjectResult> {
    const where = `get '${String(key)}' from bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `bucket '${this.bucket}': key`);
    try {
      return await this.#withBody(key, where, options?.signal, async (e) => {
        const range = resolveRange(key, e.size, options?.range);
        if (e.bodyRef !== undefined) {
          const part = await this.#external(where).get(e.bodyRef, range, options?.signal ? { signal: options.signal } : {});
          return part === undefined ? null : { ...headOf(e, options?.internal), body: part, range };
        }
        const whole = e.body ?? (await (await this.#bodyStore()).getBlob(e.bodyName ?? ''));
        return whole === null ? null : { ...headOf(e, options?.internal), body: whole.subarray(range.start, range.end), range };
      });
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  async getStream(key: string, options?: GetObjectOptions): Promise<{ head: ObjectHead; body: AsyncIterable<Uint8Array> }> {
    const where = `getStream '${String(key)}' from bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `bucket '${this.bucket}': key`);
    try {
      return await this.#withBody(key, where, options?.signal, async (e) => {
        const range = resolveRange(key, e.size, options?.range);
        if (e.body !== undefined) {
          const chunk = e.body.subarray(range.start, range.end);
          return { head: headOf(e, options?.internal), body: oneChunk(chunk) };
        }
        if (e.bodyRef !== undefined) {
          const body = await this.#external(where).getStream(e.bodyRef, range, options?.signal ? { signal: options.signal } : {});
          return body === undefined ? null : { head: headOf(e, options?.internal), body };
        }
        const res = await (await this.#bodyStore()).get(e.bodyName ?? '');
        return res === null ? null : { head: headOf(e, options?.internal), body: sliceChunks(res.data, range.start, range.end, where) };
      });
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  async head(key: string, options?: AttrReadOptions): Promise<ObjectHead | undefined> {
    const where = `head '${String(key)}' in bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `bucket '${this.bucket}': key`);
    try {
      const cur = await this.#read(key);
      return cur.live && cur.entry ? headOf(cur.entry, options?.internal) : undefined;
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  async delete(key: string, options?: DeleteObjectOptions): Promise<boolean> {
    const where = `delete '${String(key)}' from bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `bucket '${this.bucket}': key`);
    const ifMatch = options?.ifMatch;
    if (ifMatch !== undefined && typeof ifMatch !== 'string') throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: ifMatch must be an etag string`);
    const cause = checkCause(options?.cause, where);
    try {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        checkSignal(options?.signal, where);
        await casBackoff(attempt, options?.signal);
        const cur = await this.#read(key);
        checkPreconditions(key, cur.live ? cur.entry : undefined, ifMatch, false, (m) => this.#conditionFailed(m, cur));
        const e = cur.entry;
        if (!cur.live || !e) return false;
        const tomb: ObjectEntry = {
          type: 'delete',
          key,
          size: 0,
          etag: '',
          version: e.version,
          contentType: '',
          mtime: e.mtime,
          time: new Date(),
          attrs: {},
          attrsRevision: e.attrsRevision,
        };
        if ((await this.#commit(key, tomb, cur, cause)) === undefined) continue;
        await this.#deleteBody(e);
        return true;
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent writers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  async list(options?: ListOptions): Promise<ListResult> {
    const where = `list bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    const r = resolveList(this.bucket, options);
    try {
      // One headers-only pass over the latest message of every key: the change summary header holds
      // everything ObjectMeta needs, so neither bodies nor attributes travel.
      const records = await this.#kv.scan('>', { headersOnly: true, signal: options?.signal });
      const metas: ObjectMeta[] = [];
      const kvBucket = this.#kv.bucket;
      for (const rec of records) {
        if (rec.op !== 'PUT') continue;
        const s = parseSummary(rec.headers);
        const k = objectKeyOfSubject(rec.subject, kvBucket);
        if (!s || !k || s.t === 'delete') continue;
        // Cheap pre-filter before sorting; listPage applies the exact rules.
        if (!k.key.startsWith(r.prefix) || (r.after !== '' && compareKeys(k.key, r.after) <= 0)) continue;
        metas.push({ key: k.key, size: s.s, etag: s.e, version: s.v || rec.revision, contentType: s.c, mtime: new Date(s.m) });
      }
      metas.sort((a, b) => compareKeys(a.key, b.key));
      return listPage(this.bucket, r, metas);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  async getAttrs(key: string, options?: AttrReadOptions): Promise<UpdateAttrsResult> {
    const where = `getAttrs '${String(key)}' in bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `bucket '${this.bucket}': key`);
    try {
      const e = await this.#readLive(key);
      return { attrs: visibleAttrs(e.attrs, options?.internal), attrsRevision: e.attrsRevision };
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  async updateAttrs(key: string, update: Expression | Expression[], options?: UpdateAttrsOptions): Promise<UpdateAttrsResult> {
    const where = `updateAttrs '${String(key)}' in bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `bucket '${this.bucket}': key`);
    // Several expressions apply in order, as one change.
    const updates = Array.isArray(update) ? update : [update];
    if (updates.length === 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: no update given`);
    updates.forEach((u, i) => checkUpdate(u, `${where}: update${updates.length > 1 ? `[${i}]` : ''}`));
    const condition = options?.condition;
    if (condition !== undefined) checkCondition(condition, `${where}: condition`);
    const cause = checkCause(options?.cause, where);
    try {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        checkSignal(options?.signal, where);
        await casBackoff(attempt, options?.signal);
        const cur = await this.#read(key);
        const e = cur.entry;
        if (!cur.live || !e) throw notFound(this.bucket, key);
        if (condition !== undefined && !evaluateCondition(condition, e.attrs))
          throw new ConditionFailedError(`${where}: the condition does not hold`, visibleAttrs(e.attrs, options?.internal), e.attrsRevision);
        let attrs = e.attrs;
        for (const u of updates) attrs = applyUpdate(u, attrs);
        checkAttrs(attrs, `${where}: attrs`);
        const next: ObjectEntry = { ...e, type: 'attrs', time: new Date(), attrs, attrsRevision: e.attrsRevision + 1 };
        if ((await this.#commit(key, next, cur, cause)) === undefined) continue;
        return { attrs: visibleAttrs(attrs, options?.internal), attrsRevision: next.attrsRevision };
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent writers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  async query(options?: QueryOptions): Promise<QueryResult> {
    const where = `query bucket '${this.bucket}'`;
    checkSignal(options?.signal, where);
    const r = resolveQuery(this.bucket, options);
    const signal = options?.signal;
    try {
      const plan = planQuery(r.where, this.#planFields, r.includeInternal);
      const page = new PageBuilder(r);
      if (plan.kind === 'scan') {
        // Every message's value: attributes are not in the headers.
        const states: ObjectState[] = [];
        for (const rec of await this.#kv.scan('>', { signal })) {
          if (rec.op !== 'PUT') continue;
          const e = decodeEntry(rec.value, rec.revision);
          if (e.type !== 'delete' && e.key.startsWith(r.prefix)) states.push(stateOfEntry(e));
        }
        if (streamsInKeyOrder(r)) states.sort((a, b) => compareKeys(a.key, b.key));
        for (const st of states) if (!page.offer(st)) break;
        return page.finish(plan);
      }
      await this.#view.catchUp(signal);
      const keys = new Set<string>();
      for (const part of plan.parts) for (const range of part.ranges) this.#view.candidates(part.field, range, r.prefix, keys);
      let list = [...keys];
      const keyOrder = streamsInKeyOrder(r);
      if (keyOrder) {
        const from = r.after?.key;
        if (from !== undefined) list = list.filter((k) => compareKeys(k, from) > 0);
        list.sort(compareKeys);
      }
      // Candidates are read fresh (direct gets, a window in flight) and where is re-checked on them.
      const window = 64;
      for (let i = 0; i < list.length; i += window) {
        checkSignal(signal, where);
        const got = await Promise.all(list.slice(i, i + window).map((k) => this.#read(k)));
        let full = false;
        for (const cur of got) {
          if (!cur.live || !cur.entry) continue;
          if (!page.offer(stateOfEntry(cur.entry))) {
            full = true;
            break;
          }
        }
        if (full) break;
      }
      return page.finish(plan);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  // ── internals ──

  #kvKey(key: string): string {
    return objectKvKey(shardOf(key, this.#shards), key);
  }

  async #read(key: string): Promise<Current> {
    const rec: KvRecord | undefined = await this.#kv.get(this.#kvKey(key));
    if (!rec) return { revision: 0, entry: undefined, live: false };
    if (rec.op !== 'PUT') return { revision: rec.revision, entry: undefined, live: false };
    const entry = decodeEntry(rec.value, rec.revision);
    return { revision: rec.revision, entry, live: entry.type !== 'delete' };
  }

  async #readLive(key: string): Promise<ObjectEntry> {
    const cur = await this.#read(key);
    if (!cur.live || !cur.entry) throw notFound(this.bucket, key);
    return cur.entry;
  }

  /**
   * Reads the live entry and hands it to `read`, which returns null when the entry's Object Store body
   * is gone: a concurrent put or delete removed it after committing, so read the new state. The same
   * revision twice without its body means the body was lost (removed outside sluice).
   */
  async #withBody<T>(key: string, where: string, signal: AbortSignal | undefined, read: (e: ObjectEntry) => Promise<T | null>): Promise<T> {
    let lastRevision = -1;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      checkSignal(signal, where);
      const cur = await this.#read(key);
      if (!cur.live || !cur.entry) throw notFound(this.bucket, key);
      const out = await read(cur.entry);
      if (out !== null) return out;
      if (cur.revision === lastRevision)
        throw new BindingError(
          'SLUICE_INTERNAL',
          `${where}: body ${cur.entry.bodyRef ?? cur.entry.bodyName ?? ''} of revision ${cur.revision} is missing from ${cur.entry.bodyRef !== undefined ? 'the body store' : `Object Store ${this.#storeName}`}`,
        );
      lastRevision = cur.revision;
    }
    throw new BindingError('SLUICE_CONFLICT', `${where}: the object kept changing while being read`);
  }

  /** Appends `entry` with a CAS on the current revision; undefined when another writer got there first. */
  async #commit(key: string, entry: ObjectEntry, cur: Current, cause: Cause | undefined): Promise<number | undefined> {
    try {
      return await this.#kv.put(this.#kvKey(key), codec.pack(entry), { expect: cur.revision, headers: summaryHeader(entry, this.#attrIndexes, cause) });
    } catch (err) {
      if (isWrongLastSequence(err)) return undefined;
      throw err;
    }
  }

  /** The error of a failed ifMatch / ifNoneMatch: carries the current metadata and version (as the local backend). */
  #conditionFailed(message: string, cur: Current): ConditionFailedError {
    const e = cur.live ? cur.entry : undefined;
    return e ? new ConditionFailedError(message, metaOf(e), e.version) : new ConditionFailedError(message, undefined, undefined);
  }

  #bodyStore(): Promise<ObjectStore> {
    // Opened without a round trip: createBucket made the store, and a missing one fails the read.
    this.#store ??= new Objm(this.#ctx.js).open(this.#storeName, false);
    return this.#store;
  }

  async #upload(key: string, bytes: Uint8Array): Promise<{ name: string; nuid: string }> {
    const name = `${encodeKey(key)}/${nuid.next()}`;
    const info = await (await this.#bodyStore()).putBlob({ name }, bytes);
    return { name, nuid: info.nuid };
  }

  /** True when the current entry of `key` references external body `ref` (the collector's check). */
  async references(key: string, ref: string): Promise<boolean> {
    try {
      const cur = await this.#read(key);
      return cur.live && cur.entry?.bodyRef === ref;
    } catch (err) {
      throw toBindingError(err, `check body ${ref} of '${key}' in bucket '${this.bucket}'`, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
  }

  #external(where: string): BodyStore {
    if (this.#bodies) return this.#bodies;
    throw new BindingError('SLUICE_BACKEND_UNAVAILABLE', `${where}: the body is in an external body store, but the backend was opened without option 'bodies'`);
  }

  /** Removes a body's chunks and its Object Store entry (or the external body), leaving no tombstone. Best effort. */
  async #deleteBody(e: { bodyName?: string | undefined; bodyNuid?: string | undefined; bodyRef?: string | undefined } | undefined): Promise<void> {
    if (e?.bodyRef !== undefined) {
      // A failed removal leaves an orphan for the body store's collector.
      await this.#bodies?.delete(e.bodyRef).catch(() => undefined);
      return;
    }
    if (!e?.bodyName || !e.bodyNuid) return;
    const stream = `OBJ_${this.#storeName}`;
    try {
      await Promise.all([
        this.#ctx.jsm.streams.purge(stream, { filter: `$O.${this.#storeName}.C.${e.bodyNuid}` }),
        this.#ctx.jsm.streams.purge(stream, { filter: bodyMetaSubject(this.#storeName, e.bodyName) }),
      ]);
    } catch {
      // An unreferenced body wastes space but is never visible; nothing else to do here.
    }
  }
}

function notFound(bucket: string, key: string): BindingError {
  return new BindingError('SLUICE_NOT_FOUND', `object '${key}' does not exist in bucket '${bucket}'`);
}

/** A body of one chunk (none when empty). */
async function* oneChunk(chunk: Uint8Array): AsyncIterable<Uint8Array> {
  if (chunk.byteLength > 0) yield chunk;
}

/** Yields the bytes [start, end) of a chunk stream. */
async function* sliceChunks(data: ReadableStream<Uint8Array>, start: number, end: number, where: string): AsyncIterable<Uint8Array> {
  const reader = data.getReader();
  let pos = 0;
  try {
    while (pos < end) {
      const r = await reader.read().catch((err: unknown) => {
        throw toBindingError(err, where, { notFound: 'SLUICE_NOT_FOUND' });
      });
      if (r.done) break;
      const c = r.value;
      const from = Math.max(0, start - pos);
      const to = Math.min(c.byteLength, end - pos);
      pos += c.byteLength;
      if (to > from) yield c.subarray(from, to);
    }
  } finally {
    // `break` in the consumer's loop lands here: stop the Object Store's consumer.
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
