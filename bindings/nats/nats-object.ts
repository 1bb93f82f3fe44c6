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
import type { BodyStore } from '../body-store.ts';
import { BindingError, ConditionFailedError } from '../errors.ts';
import { applyUpdate, checkCondition, checkUpdate, evaluateCondition, type Expression } from '../expr/index.ts';
import { bodyBytes, checkCause, checkPreconditions, checkSignal, etagOf, listPage, resolveList, resolvePut, resolveRange } from '../backend-helpers.ts';
import { changeStreamName, shardOf } from '../change-record.ts';
import { codec } from '../codec.ts';
import type {
  AttrsWriteOp,
  BucketInfo,
  AttrReadOptions,
  Cause,
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
import { IndexView } from './nats-query.ts';
import { checkAttrs, checkKey, compareKeys, visibleAttrs } from '../values.ts';
import { applyAttrsOp } from '../write-batch.ts';
import { casBackoff, type NatsContext } from './nats-context.ts';
import { isWrongLastSequence, toBindingError } from './nats-errors.ts';
import { KvStore, type KvRecord } from './nats-kvstore.ts';
import { objectKeyOfSubject, objectKvKey } from './nats-names.ts';
import { ObjectBodies, oneChunk, sliceChunks } from './nats-object-bodies.ts';
import { decodeEntry, headOf, metaOf, parseSummary, RecentEntries, stateOfEntry, summaryHeader, type Current, type ObjectEntry } from './nats-object-entry.ts';

export { CHANGE_HEADER, changeOfMessage, type ObjectEntry } from './nats-object-entry.ts';

/** Default messages kept per key in an object KV bucket (the KV client maximum; see the file header). */
export const OBJECT_HISTORY = 64;
/** Optimistic attempts of one write before SLUICE_CONFLICT. */
const MAX_ATTEMPTS = 100;


/** Objects in one bucket. */
export class NatsObject implements ObjectBinding {
  readonly bucket: string;
  readonly #ctx: NatsContext;
  readonly #shards: number;
  readonly #kv: KvStore;
  /** Where bodies above the inline bound live. */
  readonly #b: ObjectBodies;
  /** States this process read or wrote last: the CAS expectation of the next write (see nats-object-entry.ts). */
  readonly #recent = new RecentEntries();

  readonly #history: number;
  readonly #indexes: readonly string[];
  readonly #attrIndexes: readonly string[];
  /** Declared indexes plus the system fields, which the view always holds. */
  readonly #planFields: ReadonlySet<string>;
  readonly #view: IndexView;

  constructor(ctx: NatsContext, bucket: string, shards: number, history: number, indexes: readonly string[] = [], bodies?: BodyStore) {
    this.#history = history;
    this.#indexes = indexes;
    this.#attrIndexes = indexes.filter((f) => f.startsWith('attr.'));
    this.#planFields = new Set([...indexes, ...SystemFields]);
    this.#ctx = ctx;
    this.bucket = bucket;
    this.#shards = shards;
    this.#kv = new KvStore(ctx, ctx.names.objectKv(bucket));
    this.#b = new ObjectBodies(ctx, ctx.names.bodyStore(bucket), bodies);
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
      // Without ifMatch, the first attempt does not read: it CASes on the state this process last saw of
      // the key, or on "no message yet" (a new key: one append, no read). Trusted only when the CAS lands;
      // a lost CAS or a precondition failing on the guess is re-done on a fresh read.
      let guess: Current | undefined = r.ifMatch === undefined ? (this.#recent.get(key) ?? { revision: 0, entry: undefined, live: false }) : undefined;
      for (let attempt = 0, reads = 0; attempt < MAX_ATTEMPTS; attempt++) {
        checkSignal(options?.signal, where);
        const guessed = guess !== undefined;
        if (!guessed) await casBackoff(reads++, options?.signal);
        const cur = guess ?? (await this.#read(key));
        guess = undefined;
        try {
          checkPreconditions(key, cur.live ? cur.entry : undefined, r.ifMatch, r.ifNoneMatch, (m) => this.#conditionFailed(m, cur));
        } catch (err) {
          if (guessed) continue;
          throw err;
        }
        // Upload once, before the commit; a retry after a lost CAS reuses the same body.
        if (!inline && !uploaded)
          uploaded = this.#b.external ? { ref: await this.#b.external.put(this.bucket, key, bytes, options?.signal ? { signal: options.signal } : {}) } : await this.#b.upload(key, bytes);
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
        if (this.#b.external && uploaded && 'ref' in uploaded && Date.now() - started >= this.#b.external.graceMs)
          throw new BindingError('SLUICE_TIMEOUT', `${where}: the commit would come ${Date.now() - started} ms after the body upload started, past the body store's grace period of ${this.#b.external.graceMs} ms`);
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
        await this.#b.delete(cur.entry);
        return { etag, version: revision };
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent writers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    } finally {
      if (uploaded && committed === false) await this.#b.delete('ref' in uploaded ? { bodyRef: uploaded.ref } : { bodyName: uploaded.name, bodyNuid: uploaded.nuid });
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
          const part = await this.#b.externalFor(where).get(e.bodyRef, range, options?.signal ? { signal: options.signal } : {});
          return part === undefined ? null : { ...headOf(e, options?.internal), body: part, range };
        }
        const whole = e.body ?? (await (await this.#b.store()).getBlob(e.bodyName ?? ''));
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
          const body = await this.#b.externalFor(where).getStream(e.bodyRef, range, options?.signal ? { signal: options.signal } : {});
          return body === undefined ? null : { head: headOf(e, options?.internal), body };
        }
        const res = await (await this.#b.store()).get(e.bodyName ?? '');
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
        await this.#b.delete(e);
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
      // The bucket's in-process view (nats-query.ts), caught up to every write acknowledged before this
      // page: a read of the messages appended since the last page, not a pass over the whole bucket.
      await this.#view.catchUp(options?.signal);
      const metas = this.#view.metas(r.prefix, r.after);
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
    let cur: Current;
    if (!rec) cur = { revision: 0, entry: undefined, live: false };
    else if (rec.op !== 'PUT') cur = { revision: rec.revision, entry: undefined, live: false };
    else {
      const entry = decodeEntry(rec.value, rec.revision);
      cur = { revision: rec.revision, entry, live: entry.type !== 'delete' };
    }
    this.#recent.set(key, cur);
    return cur;
  }

  /**
   * The attribute op of a {@link Backend.commitBatch}: ONE CAS append on the state this process last read
   * or wrote (the runtime's prefetch read it a moment ago), no read first. The remembered state is trusted
   * only for a write that lands: a lost CAS, a missing object or a condition that fails on it is re-done
   * on a fresh read, so the answer is always the server's. Returns the new attrsRevision.
   */
  async applyAttrsOp(op: AttrsWriteOp, where: string): Promise<number> {
    try {
      let remembered = this.#recent.get(op.key);
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        await casBackoff(remembered ? 0 : attempt, undefined);
        const cur = remembered ?? (await this.#read(op.key));
        const e = cur.entry;
        let next: ObjectEntry;
        try {
          if (!cur.live || !e) throw notFound(this.bucket, op.key);
          next = { ...e, type: 'attrs', time: new Date(), attrs: applyAttrsOp(e.attrs, op, e.attrsRevision, where), attrsRevision: e.attrsRevision + 1 };
        } catch (err) {
          if (!remembered) throw err;
          remembered = undefined;
          continue;
        }
        remembered = undefined;
        if ((await this.#commit(op.key, next, cur, op.cause)) === undefined) continue;
        return next.attrsRevision;
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent writers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_BUCKET_NOT_FOUND' });
    }
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
          `${where}: body ${cur.entry.bodyRef ?? cur.entry.bodyName ?? ''} of revision ${cur.revision} is missing from ${cur.entry.bodyRef !== undefined ? 'the body store' : `Object Store ${this.#b.storeName}`}`,
        );
      lastRevision = cur.revision;
    }
    throw new BindingError('SLUICE_CONFLICT', `${where}: the object kept changing while being read`);
  }

  /** Appends `entry` with a CAS on the current revision; undefined when another writer got there first. */
  async #commit(key: string, entry: ObjectEntry, cur: Current, cause: Cause | undefined): Promise<number | undefined> {
    try {
      const revision = await this.#kv.put(this.#kvKey(key), codec.pack(entry), { expect: cur.revision, headers: summaryHeader(entry, this.#attrIndexes, cause) });
      // A put's message carries version 0 (its version is its revision), as decodeEntry reads it back.
      this.#recent.set(key, { revision, entry: entry.version ? entry : { ...entry, version: revision }, live: entry.type !== 'delete' });
      return revision;
    } catch (err) {
      // Lost the race (or unknown): forget the state, the next attempt reads fresh.
      this.#recent.delete(key);
      if (isWrongLastSequence(err)) return undefined;
      throw err;
    }
  }

  /** The error of a failed ifMatch / ifNoneMatch: carries the current metadata and version (as the local backend). */
  #conditionFailed(message: string, cur: Current): ConditionFailedError {
    const e = cur.live ? cur.entry : undefined;
    return e ? new ConditionFailedError(message, metaOf(e), e.version) : new ConditionFailedError(message, undefined, undefined);
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


}

function notFound(bucket: string, key: string): BindingError {
  return new BindingError('SLUICE_NOT_FOUND', `object '${key}' does not exist in bucket '${bucket}'`);
}

