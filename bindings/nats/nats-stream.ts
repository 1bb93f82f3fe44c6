/**
 * Streams on NATS JetStream: user streams and the change streams of buckets behind one StreamBinding.
 *
 * - User stream `s`: JetStream stream `<prefix>_st_s`, one subject per shard (`<prefix>.st.s.<shard>`),
 *   configuration `{shards, retentionMs}` in the stream description (see `describe` in nats-names.ts).
 *   Record headers travel as NATS headers; the partition key in `Sluice-Key` (URI-encoded, since keys
 *   may hold characters headers cannot); user headers whose names would collide with NATS's or
 *   sluice's own (`Nats-*`, `Sluice-*`) are stored as `Sluice-H-<name>`, values with leading or
 *   trailing blanks (which NATS trims) URI-encoded as `Sluice-E-<name>`; all are restored on read.
 * - Change stream `$changes.<b>`: the stream of the bucket's object KV bucket, shard = subject filter
 *   `$KV.<kv-bucket>.<shard>.>`; records are read headers-only and rebuilt from the change summary
 *   header, so bodies and attributes never travel with change records.
 *
 * Sequence numbers are JetStream stream sequences: strictly increasing within a shard, with gaps.
 */
import { nanos, type MsgHdrs } from '@nats-io/nats-core';
import { NatsHeaders } from './nats-headers.ts';
import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType, type StreamConfig, type StreamInfo as JsStreamInfo } from '@nats-io/jetstream';
import { BindingError } from '../errors.ts';
import { checkSeekPosition, checkShard, checkSignal, resolveGetRecords, resolveRecord, resolveStreamOptions } from '../backend-helpers.ts';
import { bucketOfChangeStream, encodeChange, formatCause, parseCause } from '../change-record.ts';
import type {
  Cause,
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
import { checkName, Limits } from '../values.ts';
import { drain, type NatsContext, PullStatusError, type PulledMsg, seqOf, type StreamTarget } from './nats-context.ts';
import { isStreamNotFound, isWrongLastSequence, JsCodes, toBindingError } from './nats-errors.ts';
import { dedupeWindowMs, lastSeqMismatch, resolveDedupeId, resolveIfLastSeq } from '../stream-conditions.ts';
import { checkGroupName, NatsGroup } from './nats-group.ts';
import type { KvStore } from './nats-kvstore.ts';
import { describe, incarnationOf, kvStream, parseDescription, streamToken } from './nats-names.ts';
import { changeOfMessage } from './nats-object.ts';
import { ShardReaders } from './nats-reader.ts';

/** Most publishes of one putRecords call awaiting their ack at once. */
const MAX_IN_FLIGHT = 256;
/** Header of a record's partition key. */
const KEY_HEADER = 'Sluice-Key';
/** Prefix of user headers stored under an escaped name. */
const ESCAPED_HEADER = 'Sluice-H-';
/** Prefix of user headers whose value is stored URI-encoded (NATS trims leading and trailing blanks). */
const ENCODED_HEADER = 'Sluice-E-';
const RESERVED_HEADER = /^(nats|sluice)-/i;
/** Header carrying the record's cause (`<hop> <fn>`, change-record.ts formatCause); never a user header. */
const CAUSE_HEADER = 'Sluice-Cause';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * The NATS headers of a record: its partition key and user headers, escaped so that each comes back
 * exactly as given. Returns which part cannot be encoded (a lone surrogate has no UTF-8 form).
 */
function recordHeaders(partitionKey: string | undefined, user: Record<string, string>, cause?: Cause): MsgHdrs | undefined | 'key' | 'header' {
  const entries = Object.entries(user);
  const hasKey = typeof partitionKey === 'string' && partitionKey.length > 0;
  if (!hasKey && entries.length === 0 && cause === undefined) return undefined;
  const h = new NatsHeaders();
  if (cause !== undefined) h.set(CAUSE_HEADER, formatCause(cause));
  if (hasKey) {
    if (LONE_SURROGATE.test(partitionKey)) return 'key';
    h.set(KEY_HEADER, encodeURIComponent(partitionKey));
  }
  for (const [k, v] of entries) {
    if (LONE_SURROGATE.test(v)) return 'header';
    if (v !== v.trim()) h.set(`${ENCODED_HEADER}${k}`, encodeURIComponent(v));
    else h.set(RESERVED_HEADER.test(k) ? `${ESCAPED_HEADER}${k}` : k, v);
  }
  return h;
}

function checkCursor(cursor: unknown, where: string): asserts cursor is Cursor {
  const c = cursor as Partial<Cursor> | null;
  if (
    c === null ||
    typeof c !== 'object' ||
    typeof c.stream !== 'string' ||
    typeof c.shard !== 'number' ||
    !Number.isInteger(c.shard) ||
    typeof c.seq !== 'number' ||
    !Number.isSafeInteger(c.seq) ||
    c.seq < 0
  )
    throw new BindingError('SLUICE_CURSOR_INVALID', `${where}: cursor ${JSON.stringify(cursor)} is not {stream, shard, seq}`);
}

/** The stream namespace of a NATS backend. */
export class NatsStream implements StreamBinding {
  readonly #ctx: NatsContext;
  readonly #readers: ShardReaders;
  readonly #meta: KvStore;

  constructor(ctx: NatsContext, readers: ShardReaders, meta: KvStore) {
    this.#ctx = ctx;
    this.#readers = readers;
    this.#meta = meta;
  }

  async create(name: string, options?: StreamOptions): Promise<StreamInfo> {
    const where = `create stream '${String(name)}'`;
    this.#refuseChangeStream(name, where);
    checkName(name, 'stream');
    const o = resolveStreamOptions(name, options);
    const names = this.#ctx.names;
    const cfg: Partial<StreamConfig> & { name: string } = {
      name: names.userStream(name),
      subjects: [names.userSubjects(name)],
      description: describe({ sluice: 'stream', shards: o.shards, retentionMs: o.retentionMs }),
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      // The server refuses max_age below 100 ms; "records older than this MAY be dropped" allows keeping them longer.
      max_age: o.retentionMs === 0 ? 0 : nanos(Math.max(100, o.retentionMs)),
      // The window of `dedupeId` (Nats-Msg-Id); it must not exceed max_age.
      duplicate_window: nanos(dedupeWindowMs(o.retentionMs)),
      num_replicas: o.replicas ?? this.#ctx.replicas,
      allow_direct: true,
    };
    try {
      try {
        await this.#ctx.jsm.streams.add(cfg);
      } catch (err) {
        if (!(err instanceof JetStreamApiError && err.code === JsCodes.StreamNameInUse)) throw err;
        const d = parseDescription((await this.#ctx.jsm.streams.info(cfg.name)).config.description, 'stream');
        if (!d || d.shards !== o.shards || d.retentionMs !== o.retentionMs)
          throw new BindingError(
            'SLUICE_ALREADY_EXISTS',
            `${where}: the stream exists with ${d ? `shards ${d.shards}, retentionMs ${d.retentionMs}` : 'a foreign configuration'}; asked for shards ${o.shards}, retentionMs ${o.retentionMs}`,
          );
      }
      return await this.#info(await this.resolve(name, where));
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async info(name: string, options?: CallOptions): Promise<StreamInfo> {
    const where = `info of stream '${String(name)}'`;
    checkSignal(options?.signal, where);
    try {
      return await this.#info(await this.resolve(name, where));
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async delete(name: string): Promise<boolean> {
    const where = `delete stream '${String(name)}'`;
    this.#refuseChangeStream(name, where);
    checkName(name, 'stream');
    const jsStream = this.#ctx.names.userStream(name);
    try {
      try {
        await this.#ctx.jsm.streams.delete(jsStream);
      } catch (err) {
        if (isStreamNotFound(err)) return false;
        throw err;
      }
      this.#readers.dropStream(jsStream);
      // Group positions are per incarnation already; removing them is hygiene, not correctness.
      await this.#ctx.jsm.streams.purge(this.#meta.stream, { filter: this.#meta.subject(`group.${streamToken(name)}.>`) }).catch(() => undefined);
      return true;
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async putRecords(name: string, records: PutRecord[], options?: CallOptions): Promise<PutRecordResult[]> {
    const where = `putRecords '${String(name)}'`;
    this.#refuseChangeStream(name, where);
    checkName(name, 'stream');
    checkSignal(options?.signal, where);
    if (!Array.isArray(records)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: records must be an array`);
    if (records.length > Limits.maxRecordsPerPut)
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: ${records.length} records; one call takes at most ${Limits.maxRecordsPerPut}`);
    try {
      const t = await this.resolve(name, where);
      const results = new Array<PutRecordResult>(records.length);
      const inFlight = new Set<Promise<void>>();
      for (let i = 0; i < records.length; i++) {
        if (options?.signal?.aborted) {
          await Promise.all(inFlight);
          checkSignal(options.signal, where);
        }
        const cond = resolveIfLastSeq(name, i, records[i] as PutRecord);
        const dd = resolveDedupeId(name, i, records[i] as PutRecord);
        const r = !cond.ok ? cond : !dd.ok ? dd : resolveRecord(name, i, records[i] as PutRecord, t.shards);
        if (!r.ok) {
          results[i] = r;
          continue;
        }
        const ifLastSeq = cond.ok ? cond.ifLastSeq : undefined;
        const msgID = dd.ok ? dd.dedupeId : undefined;
        const h = recordHeaders(r.partitionKey, r.headers, r.cause);
        if (typeof h === 'string') {
          // This record cannot travel as NATS headers; it fails alone.
          results[i] = { ok: false, error: { code: h === 'key' ? 'SLUICE_KEY_INVALID' : 'SLUICE_INVALID_ARGUMENT', message: `${where} record ${i}: ${h === 'key' ? 'partitionKey' : 'a header value'} holds a lone surrogate (not valid UTF-8)` } };
          continue;
        }
        // Publishes leave in call order on one connection, so records of one shard get increasing
        // sequences in the order given.
        const subject = this.#ctx.names.userSubject(name, r.shard);
        const p = this.#ctx.gate
          .write(r.data.byteLength, `${where} record ${i}`, () =>
            this.#ctx.js.publish(subject, r.data, {
              ...(h ? { headers: h } : {}),
              // The shard's subject's last sequence: JetStream refuses the publish when it moved (10071).
              ...(ifLastSeq !== undefined ? { expect: { lastSubjectSequence: ifLastSeq } } : {}),
              // JetStream drops a repeat inside the duplicate window and acks with the first's seq.
              ...(msgID !== undefined ? { msgID } : {}),
            }),
          )
          .then(
            (ack) => {
              results[i] = { ok: true, shard: r.shard, seq: ack.seq, ...(ack.duplicate ? { duplicate: true as const } : {}) };
            },
            (err: unknown) => {
              if (ifLastSeq !== undefined && isWrongLastSequence(err)) {
                results[i] = lastSeqMismatch(name, i, r.shard, ifLastSeq, undefined);
                return;
              }
              const e = toBindingError(err, `${where} record ${i}`);
              results[i] = { ok: false, error: { code: e.code, message: e.message } };
            },
          )
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      return results;
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async seek(name: string, shard: number, position: SeekPosition, options?: CallOptions): Promise<Cursor> {
    const where = `seek '${String(name)}' shard ${String(shard)}`;
    checkSignal(options?.signal, where);
    checkSeekPosition(String(name), position);
    try {
      const t = await this.resolve(name, where);
      checkShard(name, shard, t.shards);
      const at = (seq: number): Cursor => ({ stream: name, shard, seq });
      if (typeof position === 'object' && 'seq' in position) return at(position.seq);
      if (typeof position === 'object') {
        const time = position.time instanceof Date ? position.time : new Date(position.time);
        let first: number | undefined;
        await drain(
          this.#ctx,
          t.jsStream,
          { filter: t.filter(shard), start: { time }, headersOnly: true, batch: 1, max: 1, signal: options?.signal },
          (m) => (first = m.seq),
        );
        if (first !== undefined) return at(first);
      }
      const b = await this.#bounds(t, shard);
      return at(position === 'earliest' ? b.first : b.last + 1);
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async getRecords(cursor: Cursor, options?: GetRecordsOptions): Promise<GetRecordsResult> {
    const where = `getRecords '${String((cursor as Partial<Cursor> | null)?.stream)}'`;
    checkCursor(cursor, where);
    const { limit, maxWaitMs } = resolveGetRecords(options);
    checkSignal(options?.signal, where);
    try {
      for (let attempt = 0; ; attempt++) {
        const { jsStream, filter, bucket: change } = this.#locate(cursor.stream, cursor.shard);
        const start = Math.max(1, cursor.seq);
        let reader = this.#readers.take(jsStream, filter, start);
        if (!reader) {
          // No live reader at this position: resolve the stream (validates name and shard), open one.
          const t = await this.resolve(cursor.stream, where);
          checkShard(cursor.stream, cursor.shard, t.shards);
          reader = await this.#readers.open(jsStream, filter, start, change !== undefined);
        }
        let msgs: PulledMsg[];
        try {
          msgs = await reader.read(this.#ctx, limit, maxWaitMs, options?.signal);
        } catch (err) {
          await this.#readers.discard(reader);
          // A lost delivery or a vanished consumer: start over once with a fresh consumer.
          if (err instanceof PullStatusError && attempt === 0) continue;
          throw err;
        }
        const records: StreamRecord[] = [];
        for (const m of msgs) {
          const r = this.#record(cursor, change, m);
          if (r) records.push(r);
        }
        const last = msgs[msgs.length - 1];
        const next: Cursor = last ? { stream: cursor.stream, shard: cursor.shard, seq: last.seq + 1 } : cursor;
        this.#readers.put(reader);
        return { records, next, lag: last ? last.pending : 0 };
      }
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  async group(name: string, group: string, options?: CallOptions): Promise<ConsumerGroup> {
    const where = `group '${String(group)}' of stream '${String(name)}'`;
    checkSignal(options?.signal, where);
    checkGroupName(group, where);
    try {
      const t = await this.resolve(name, where);
      return new NatsGroup(this, this.#meta, t, group);
    } catch (err) {
      throw toBindingError(err, where);
    }
  }

  /** Resolves a stream name (user or change stream) to its JetStream stream and configuration. */
  async resolve(name: string, where: string): Promise<StreamTarget> {
    const bucket = bucketOfChangeStream(String(name));
    if (bucket !== undefined) checkName(bucket, 'bucket');
    else checkName(name, 'stream');
    const { jsStream } = this.#locate(name, 0);
    const kvBucket = bucket !== undefined ? this.#ctx.names.objectKv(bucket) : undefined;
    let si: JsStreamInfo;
    try {
      si = await this.#ctx.jsm.streams.info(jsStream);
    } catch (err) {
      if (isStreamNotFound(err)) throw new BindingError('SLUICE_STREAM_NOT_FOUND', `${where}: stream '${name}' does not exist`, { cause: err });
      throw err;
    }
    const d = parseDescription(si.config.description, bucket !== undefined ? 'bucket' : 'stream');
    if (!d) throw new BindingError('SLUICE_STREAM_NOT_FOUND', `${where}: JetStream stream ${jsStream} is not a sluice stream`);
    return {
      name,
      jsStream,
      shards: d.shards,
      retentionMs: d.retentionMs,
      incarnation: incarnationOf(si.created),
      bucket,
      kvBucket,
      filter: (s) => this.#locate(name, s).filter,
    };
  }

  /** The JetStream stream and subject filter of a shard, from the name alone (no round trip, no checks). */
  #locate(name: string, shard: number): { jsStream: string; filter: string; bucket: string | undefined } {
    const names = this.#ctx.names;
    const bucket = bucketOfChangeStream(name);
    if (bucket === undefined) return { jsStream: names.userStream(name), filter: names.userSubject(name, shard), bucket };
    const kvBucket = names.objectKv(bucket);
    return { jsStream: kvStream(kvBucket), filter: `$KV.${kvBucket}.${shard}.>`, bucket };
  }

  /** Closes cached readers. */
  close(): Promise<void> {
    return this.#readers.close();
  }

  // ── internals ──

  #refuseChangeStream(name: string, where: string): void {
    if (bucketOfChangeStream(String(name)) !== undefined)
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: change streams are written by their bucket, not through the stream binding`);
  }

  async #info(t: StreamTarget): Promise<StreamInfo> {
    const bounds = await Promise.all(Array.from({ length: t.shards }, (_, s) => this.#bounds(t, s)));
    return { name: t.name, shards: t.shards, retentionMs: t.retentionMs, bounds };
  }

  /**
   * First and last sequence present in a shard; an empty shard reports `{first: 1, last: 0}`.
   * JetStream keeps no per-subject position once a shard's records have expired, so an expired shard
   * looks like a never-written one; a cursor at 1 then reads exactly the records still to come.
   */
  async #bounds(t: StreamTarget, shard: number): Promise<{ first: number; last: number }> {
    const filter = t.filter(shard);
    const last = await this.#seqOf(t.jsStream, { last_by_subj: filter });
    if (last === undefined) return { first: 1, last: 0 };
    const first = await this.#seqOf(t.jsStream, { next_by_subj: filter, seq: 1 });
    return { first: first ?? last, last };
  }

  #seqOf(jsStream: string, q: { last_by_subj: string } | { next_by_subj: string; seq: number }): Promise<number | undefined> {
    return seqOf(this.#ctx, jsStream, q);
  }

  #record(cursor: Cursor, bucket: string | undefined, m: PulledMsg): StreamRecord | undefined {
    if (bucket !== undefined) {
      const c = changeOfMessage(bucket, this.#ctx.names.objectKv(bucket), m.subject, m.seq, m.headers);
      // Messages sluice did not write (e.g. a `nats kv del`) carry no change summary: skipped.
      if (!c) return undefined;
      return { stream: cursor.stream, shard: cursor.shard, seq: m.seq, data: encodeChange(c), partitionKey: c.key, headers: {}, time: m.time };
    }
    const headers: Record<string, string> = {};
    let partitionKey: string | undefined;
    let cause: Cause | undefined;
    for (const k of m.headers?.keys() ?? []) {
      const v = m.headers?.get(k) ?? '';
      if (k === KEY_HEADER) partitionKey = decodeURIComponent(v);
      else if (k === CAUSE_HEADER) cause = parseCause(v);
      else if (k.startsWith(ENCODED_HEADER)) headers[k.slice(ENCODED_HEADER.length)] = decodeURIComponent(v);
      else if (k.startsWith(ESCAPED_HEADER)) headers[k.slice(ESCAPED_HEADER.length)] = v;
      else if (!RESERVED_HEADER.test(k)) headers[k] = v;
    }
    const r: StreamRecord = { stream: cursor.stream, shard: cursor.shard, seq: m.seq, data: m.data, headers, time: m.time };
    if (partitionKey !== undefined) r.partitionKey = partitionKey;
    if (cause !== undefined) r.cause = cause;
    return r;
  }
}
