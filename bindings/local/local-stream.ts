/**
 * Streams on the embedded store: records keyed [stream, shard, seq] with a dense per-shard sequence;
 * buckets' change streams live in the same table, written by the object binding's transactions.
 * Waiting readers wake on commit: at once in this handle, through the store's change notification in
 * other handles and processes (polling every `pollMs` only as a fallback).
 */
import { BindingError } from '../errors.ts';
import { checkSeekPosition, checkShard, checkSignal, resolveGetRecords, resolveRecord, resolveStreamOptions } from '../backend-helpers.ts';
import { bucketOfChangeStream } from '../change-record.ts';
import { dedupeWindowMs, lastSeqMismatch, resolveDedupeId, resolveIfLastSeq } from '../stream-conditions.ts';
import type {
  CallOptions,
  ConsumerGroup,
  Cursor,
  GetRecordsOptions,
  GetRecordsResult,
  PutRecord,
  PutRecordResult,
  SeekPosition,
  StreamBinding,
  StreamInfo,
  StreamOptions,
  StreamRecord,
} from '../types.ts';
import { checkName } from '../values.ts';
import { ANY_APPEND, wakeTagOf, type LocalStore, type StoredRecord } from './local-store.ts';

/** Largest sequence key used as an open upper bound of range reads. */
const MAX_SEQ = Number.MAX_SAFE_INTEGER;
/** Records pruned per shard per write when retention applies (bounds the work of one write). */
const PRUNE_BATCH = 1000;

interface StreamConf {
  shards: number;
  retentionMs: number;
}

/** `StreamBinding` over {@link LocalStore}. */
export class LocalStream implements StreamBinding {
  readonly #store: LocalStore;

  constructor(store: LocalStore) {
    this.#store = store;
  }

  /** Configuration of a user stream or a bucket's change stream; SLUICE_STREAM_NOT_FOUND when absent. */
  #conf(name: string): StreamConf {
    if (typeof name !== 'string') throw new BindingError('SLUICE_INVALID_ARGUMENT', 'stream name must be a string');
    const bucket = bucketOfChangeStream(name);
    const e = bucket !== undefined ? this.#store.registry.get(['bucket', bucket]) : this.#store.registry.get(['stream', name]);
    if (!e || (e.kind !== 'stream' && e.kind !== 'bucket')) throw new BindingError('SLUICE_STREAM_NOT_FOUND', `stream '${name}' does not exist`);
    return { shards: e.shards, retentionMs: e.kind === 'stream' ? e.retentionMs : 0 };
  }

  #userStream(name: string, op: string): void {
    if (bucketOfChangeStream(name) !== undefined) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${op} '${name}': a bucket's change stream is written only by its bucket`);
    checkName(name, 'stream');
  }

  async create(name: string, options?: StreamOptions): Promise<StreamInfo> {
    this.#userStream(name, 'create');
    const o = resolveStreamOptions(name, options);
    const s = this.#store;
    await s.write(() => {
      const cur = s.registry.get(['stream', name]);
      if (cur && cur.kind === 'stream') {
        if (cur.shards !== o.shards || cur.retentionMs !== o.retentionMs)
          throw new BindingError('SLUICE_ALREADY_EXISTS', `stream '${name}' exists with shards=${cur.shards} retentionMs=${cur.retentionMs}`);
        return;
      }
      s.registry.put(['stream', name], { kind: 'stream', shards: o.shards, retentionMs: o.retentionMs, created: Date.now() });
    });
    return this.info(name);
  }

  #bounds(name: string, shard: number): { first: number; last: number } {
    const s = this.#store;
    const last = s.counters.get(['s', name, shard]) ?? 0;
    let first = last + 1;
    for (const k of s.records.getKeys({ start: [name, shard, 0], end: [name, shard, MAX_SEQ], limit: 1 })) first = k[2] as number;
    return { first, last };
  }

  async info(name: string, options?: CallOptions): Promise<StreamInfo> {
    this.#store.fresh();
    checkSignal(options?.signal, `info '${name}'`);
    const c = this.#conf(name);
    const bounds = Array.from({ length: c.shards }, (_, i) => this.#bounds(name, i));
    return { name, shards: c.shards, retentionMs: c.retentionMs, bounds };
  }

  async delete(name: string): Promise<boolean> {
    this.#userStream(name, 'delete');
    const s = this.#store;
    return s.write(() => {
      const cur = s.registry.get(['stream', name]);
      if (!cur || cur.kind !== 'stream') return false;
      for (const k of s.records.getKeys({ start: [name, 0, 0], end: [name, cur.shards, 0] })) s.records.remove(k);
      for (let i = 0; i < cur.shards; i++) s.counters.remove(['s', name, i]);
      for (const k of s.groups.getKeys({ start: [name], end: [name, '\uffff'] })) s.groups.remove(k);
      for (const k of s.dedupe.getKeys({ start: [name], end: [name, '\uffff'] })) s.dedupe.remove(k);
      s.registry.remove(['stream', name]);
      return true;
    }, { freeing: true });
  }

  async putRecords(name: string, records: PutRecord[], options?: CallOptions): Promise<PutRecordResult[]> {
    this.#userStream(name, 'putRecords');
    if (!Array.isArray(records)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `putRecords '${name}': records must be an array`);
    if (records.length > 1000) throw new BindingError('SLUICE_VALUE_TOO_LARGE', `putRecords '${name}': ${records.length} records; at most 1000 per call`);
    checkSignal(options?.signal, `putRecords '${name}'`);
    const conf = this.#conf(name);
    const resolved = records.map((r, i) => {
      const c = resolveIfLastSeq(name, i, r);
      if (!c.ok) return c;
      const d = resolveDedupeId(name, i, r);
      if (!d.ok) return d;
      const rr = resolveRecord(name, i, r, conf.shards);
      return rr.ok ? { ...rr, ifLastSeq: c.ifLastSeq, dedupeId: d.dedupeId, index: i } : rr;
    });
    const s = this.#store;
    return s.write(() => {
      // The stream may have been deleted since the check above; re-check inside the transaction.
      if (!s.registry.get(['stream', name])) throw new BindingError('SLUICE_STREAM_NOT_FOUND', `stream '${name}' does not exist`);
      const now = Date.now();
      const touched = new Set<number>();
      const window = dedupeWindowMs(conf.retentionMs);
      let deduped = false;
      const out = resolved.map((r): PutRecordResult => {
        if (!r.ok) return r;
        if (r.dedupeId !== undefined) {
          // Checked and recorded in the append's own transaction: a repeat can never slip in between.
          // Ids are kept per time bucket of one window: a live one is in this bucket or the one before.
          const b = Math.floor(now / window);
          const seen = s.dedupe.get([name, b, r.dedupeId]) ?? s.dedupe.get([name, b - 1, r.dedupeId]);
          if (seen !== undefined && seen.t >= now - window) return { ok: true, shard: seen.s, seq: seen.q, duplicate: true };
          deduped = true;
        }
        if (r.ifLastSeq !== undefined) {
          // The seq of the last record present (0: none), as NATS compares a subject's last sequence.
          const b = this.#bounds(name, r.shard);
          const last = b.first <= b.last ? b.last : 0;
          if (last !== r.ifLastSeq) return lastSeqMismatch(name, r.index, r.shard, r.ifLastSeq, last);
        }
        const seq = s.next(['s', name, r.shard]);
        const rec: StoredRecord = { d: r.data, t: now };
        if (Object.keys(r.headers).length > 0) rec.h = r.headers;
        if (r.partitionKey !== undefined) rec.p = r.partitionKey;
        if (r.cause !== undefined) rec.c = r.cause;
        s.records.put([name, r.shard, seq], rec);
        if (r.dedupeId !== undefined) s.dedupe.put([name, Math.floor(now / window), r.dedupeId], { s: r.shard, q: seq, t: now });
        s.noteAppend(name, r.shard);
        touched.add(r.shard);
        return { ok: true, shard: r.shard, seq };
      });
      if (conf.retentionMs > 0) for (const shard of touched) this.#prune(name, shard, now - conf.retentionMs);
      if (deduped) this.#pruneDedupe(name, Math.floor(now / window) - 1);
      return out;
    });
  }

  /**
   * Forgets dedupe ids of time buckets before `keep` (a bounded number per write; only inside a store
   * write): every id there is older than one window, since bucket `keep` started at least a window ago.
   */
  #pruneDedupe(name: string, keep: number): void {
    const s = this.#store;
    let n = 0;
    for (const key of s.dedupe.getKeys({ start: [name, 0], end: [name, keep] })) {
      if (n++ >= PRUNE_BATCH) break;
      s.dedupe.remove(key);
    }
  }

  /** Drops records of a shard older than `cutoff`; only inside a store write. */
  #prune(name: string, shard: number, cutoff: number): void {
    const s = this.#store;
    let n = 0;
    for (const { key, value } of s.records.getRange({ start: [name, shard, 0], end: [name, shard, MAX_SEQ] })) {
      if (value.t >= cutoff || n++ >= PRUNE_BATCH) break;
      s.records.remove(key);
    }
  }

  async seek(name: string, shard: number, position: SeekPosition, options?: CallOptions): Promise<Cursor> {
    this.#store.fresh();
    const c = this.#conf(name);
    checkShard(name, shard, c.shards);
    checkSeekPosition(name, position);
    checkSignal(options?.signal, `seek '${name}'`);
    const b = this.#bounds(name, shard);
    if (position === 'earliest') return { stream: name, shard, seq: b.first };
    if (position === 'latest') return { stream: name, shard, seq: b.last + 1 };
    if ('seq' in position) return { stream: name, shard, seq: position.seq };
    const t = position.time instanceof Date ? position.time.getTime() : position.time;
    for (const { key, value } of this.#store.records.getRange({ start: [name, shard, b.first], end: [name, shard, MAX_SEQ] }))
      if (value.t >= t) return { stream: name, shard, seq: key[2] as number };
    return { stream: name, shard, seq: b.last + 1 };
  }

  #read(cursor: Cursor, limit: number): StreamRecord[] {
    this.#store.fresh();
    const out: StreamRecord[] = [];
    const { stream, shard } = cursor;
    for (const { key, value } of this.#store.records.getRange({ start: [stream, shard, cursor.seq], end: [stream, shard, MAX_SEQ], limit })) {
      const r: StreamRecord = { stream, shard, seq: key[2] as number, data: value.d, headers: value.h ?? {}, time: new Date(value.t) };
      if (value.p !== undefined) r.partitionKey = value.p;
      if (value.c !== undefined) r.cause = value.c;
      out.push(r);
    }
    return out;
  }

  async getRecords(cursor: Cursor, options?: GetRecordsOptions): Promise<GetRecordsResult> {
    this.#store.fresh();
    checkCursor(cursor);
    const o = resolveGetRecords(options);
    const c = this.#conf(cursor.stream);
    checkShard(cursor.stream, cursor.shard, c.shards);
    checkSignal(options?.signal, `getRecords '${cursor.stream}'`);
    let records = this.#read(cursor, o.limit);
    if (records.length === 0 && o.maxWaitMs > 0) records = await this.#wait(cursor, o.limit, o.maxWaitMs, options?.signal);
    const next: Cursor = { stream: cursor.stream, shard: cursor.shard, seq: records.length > 0 ? records[records.length - 1]!.seq + 1 : cursor.seq };
    const last = this.#store.counters.get(['s', cursor.stream, cursor.shard]) ?? 0;
    return { records, next, lag: Math.max(0, last - next.seq + 1) };
  }

  /** Waits for records at the cursor: woken by commits of this handle and by other handles' notifications. */
  #wait(cursor: Cursor, limit: number, maxWaitMs: number, signal: AbortSignal | undefined): Promise<StreamRecord[]> {
    const s = this.#store;
    const tag = `${cursor.stream}\u0000${cursor.shard}`;
    const wake = wakeTagOf(cursor.stream, cursor.shard);
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (v: StreamRecord[] | Error) => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        clearInterval(poll);
        s.events.off('append', onAppend);
        signal?.removeEventListener('abort', onAbort);
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
      const check = () => {
        if (s.closed) return finish([]);
        const r = this.#read(cursor, limit);
        if (r.length > 0) finish(r);
      };
      const onAppend = (t: string) => (t === tag || t === wake || t === ANY_APPEND) && check();
      const onAbort = () => finish(new BindingError('SLUICE_ABORTED', `getRecords '${cursor.stream}' was aborted`, { cause: signal?.reason }));
      const deadline = setTimeout(() => finish([]), maxWaitMs);
      const poll = setInterval(check, s.pollMs);
      s.events.on('append', onAppend);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async group(name: string, group: string, options?: CallOptions): Promise<ConsumerGroup> {
    const c = this.#conf(name);
    checkName(group, 'stream');
    checkSignal(options?.signal, `group '${name}'`);
    return new LocalGroup(this.#store, this, name, group, c.shards);
  }
}

/** Validates a cursor's shape. */
export function checkCursor(cursor: unknown): asserts cursor is Cursor {
  const c = cursor as Cursor;
  if (!c || typeof c !== 'object' || typeof c.stream !== 'string' || !Number.isInteger(c.shard) || !Number.isSafeInteger(c.seq) || c.seq < 0)
    throw new BindingError('SLUICE_CURSOR_INVALID', `cursor ${JSON.stringify(cursor)} is not {stream, shard, seq}`);
}

class LocalGroup implements ConsumerGroup {
  readonly stream: string;
  readonly group: string;
  readonly #store: LocalStore;
  readonly #streams: LocalStream;
  readonly #shards: number;

  constructor(store: LocalStore, streams: LocalStream, stream: string, group: string, shards: number) {
    this.#store = store;
    this.#streams = streams;
    this.stream = stream;
    this.group = group;
    this.#shards = shards;
  }

  async position(shard: number, options?: CallOptions): Promise<Cursor> {
    this.#store.fresh();
    checkShard(this.stream, shard, this.#shards);
    const seq = this.#store.groups.get([this.stream, this.group, shard]);
    if (seq === undefined) return this.#streams.seek(this.stream, shard, 'earliest', options);
    return { stream: this.stream, shard, seq };
  }

  async commit(cursor: Cursor, options?: CallOptions): Promise<Cursor> {
    checkCursor(cursor);
    if (cursor.stream !== this.stream) throw new BindingError('SLUICE_CURSOR_INVALID', `commit: cursor of stream '${cursor.stream}' given to a group of '${this.stream}'`);
    checkShard(this.stream, cursor.shard, this.#shards);
    checkSignal(options?.signal, `commit '${this.stream}'`);
    const s = this.#store;
    const k = [this.stream, this.group, cursor.shard];
    return s.write(() => {
      const cur = s.groups.get(k) ?? 0;
      // Positions never move backwards: a late commit from a slower consumer is a no-op.
      if (cursor.seq > cur) s.groups.put(k, cursor.seq);
      return { stream: this.stream, shard: cursor.shard, seq: Math.max(cur, cursor.seq) };
    });
  }
}
