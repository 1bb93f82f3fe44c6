/**
 * Where a shard's records come from, and turning them into batch records.
 *
 * {@link RecordSource} is the seam every trigger feeds the batch → handler → committer path through: a
 * source numbers its records per shard (`seq`, strictly increasing), hands out new ones from a position
 * and hands back old ones for retries. The shard runner, batcher, committer and checkpoint know nothing
 * else about it. {@link StreamRecordSource} is the one for change streams and user streams: it decodes
 * change records, applies the trigger's filters, and prefetches what the handler will read ("data push":
 * metadata, attributes and small bodies come with the batch, so a handler thread needs no round trip).
 * A cron or query trigger is another implementation (a tick number or a run position as `seq`).
 */
import { matchesWhere } from '../bindings/query/fields.ts';
import { visibleAttrs } from '../bindings/values.ts';
import { SluiceError } from '../bindings/errors.ts';
import { decodeChange } from '../bindings/shared.ts';
import type { ObjectBinding, StreamBinding, StreamRecord } from '../bindings/types.ts';
import type { BatchRecordInput } from './batch-types.ts';
import { chainVerdict } from './chain.ts';
import { markerAttr } from './committer.ts';
import type { ResolvedWorkerOptions } from './worker-options.ts';

/** Why a record was dropped before the handler, for metrics and the checkpoint. */
export type SkipReason = 'filtered' | 'superseded';

/** A fetched record: where it is, its key, and how it will be delivered. */
export interface Fetched {
  seq: number;
  key: string;
  /** undefined: filtered out or superseded (done without running the handler). */
  input: BatchRecordInput | undefined;
  /** Why `input` is undefined. */
  skip?: SkipReason;
  /** Set (with `input` undefined) when the record is dead-lettered instead of run (runtime/chain.ts: hop limit). */
  dead?: { code: string; message: string };
  /** Bytes it adds to a batch (key + inline body). */
  bytes: number;
}

/** Options of {@link RecordSource.pull}. */
export interface PullOptions {
  /** Most records returned. */
  limit: number;
  /** Longest wait for the first record. */
  waitMs: number;
  /** After the first record, wait up to this long to fill the page to `limit`. */
  fillMs: number;
  signal: AbortSignal;
}

/** The records of one trigger, per shard (the batcher's only view of where records come from). */
export interface RecordSource {
  /** Name of the source (the stream feeding the trigger), as dead letters name it. */
  readonly name: string;
  /** Where a shard's first checkpoint starts. */
  start(shard: number): Promise<number>;
  /** New records of `shard` from `from` on, in order, and how many more are waiting (lag). */
  pull(shard: number, from: number, options: PullOptions): Promise<{ records: Fetched[]; lag: number }>;
  /** The records at `seqs` again (retries); undefined for one no longer in the source. */
  reread(shard: number, seqs: number[], attempt: (seq: number) => number): Promise<(Fetched | undefined)[]>;
  /** Publishes the consumed position for observers (lag tooling); best effort. */
  commitPosition(shard: number, seq: number): Promise<void>;
}

/** A change stream or user stream as a {@link RecordSource}. */
export class StreamRecordSource implements RecordSource {
  readonly name: string;
  readonly #streams: StreamBinding;
  readonly #group: string;
  readonly #decoder: ChangeDecoder;

  constructor(options: ResolvedWorkerOptions, streams: StreamBinding, stream: string, objects: ObjectBinding | undefined) {
    this.name = stream;
    this.#streams = streams;
    this.#group = options.function;
    this.#decoder = new ChangeDecoder(options, objects);
  }

  async start(shard: number): Promise<number> {
    return (await this.#streams.seek(this.name, shard, 'earliest')).seq;
  }

  async pull(shard: number, from: number, o: PullOptions): Promise<{ records: Fetched[]; lag: number }> {
    let page = await this.#streams.getRecords({ stream: this.name, shard, seq: from }, { limit: o.limit, maxWaitMs: o.waitMs, signal: o.signal });
    const recs = [...page.records];
    const t0 = Date.now();
    while (recs.length > 0 && recs.length < o.limit && o.fillMs > 0) {
      const left = o.fillMs - (Date.now() - t0);
      if (left <= 0 || o.signal.aborted) break;
      page = await this.#streams.getRecords(page.next, { limit: o.limit - recs.length, maxWaitMs: left, signal: o.signal });
      if (page.records.length === 0) break;
      recs.push(...page.records);
    }
    return { records: recs.length > 0 ? await this.#decoder.prepare(recs, () => 1) : [], lag: page.lag };
  }

  async reread(shard: number, seqs: number[], attempt: (seq: number) => number): Promise<(Fetched | undefined)[]> {
    const recs: (StreamRecord | undefined)[] = [];
    for (const seq of seqs) {
      const r = (await this.#streams.getRecords({ stream: this.name, shard, seq }, { limit: 1 })).records[0];
      recs.push(r && r.seq === seq ? r : undefined);
    }
    const present = recs.filter((r): r is StreamRecord => r !== undefined);
    const prepared = await this.#decoder.prepare(present, attempt);
    const bySeq = new Map(prepared.map((f) => [f.seq, f]));
    return seqs.map((s) => bySeq.get(s));
  }

  async commitPosition(shard: number, seq: number): Promise<void> {
    const g = await this.#streams.group(this.name, this.#group);
    await g.commit({ stream: this.name, shard, seq });
  }
}

/** Decodes and filters stream records of the trigger; prefetches object metadata and bodies. */
export class ChangeDecoder {
  readonly #o: ResolvedWorkerOptions;
  readonly #objects: ObjectBinding | undefined;
  constructor(options: ResolvedWorkerOptions, objects: ObjectBinding | undefined) {
    this.#o = options;
    this.#objects = objects;
  }

  /** Builds the batch records of `recs` (stream order kept); attempt is the delivery attempt. */
  async prepare(recs: StreamRecord[], attempt: (seq: number) => number): Promise<Fetched[]> {
    const t = this.#o.trigger;
    const fn = this.#o.function;
    const chain = { selfTrigger: t.type !== 'http' && t.selfTrigger === true, maxHops: this.#o.maxHops };
    if (t.type === 'stream') {
      return recs.map((r): Fetched => {
        const v = chainVerdict(r.cause, fn, chain);
        if (v.action === 'drop') return { seq: r.seq, key: r.partitionKey ?? '', input: undefined, skip: 'filtered', bytes: 0 };
        if (v.action === 'dead_letter') return { seq: r.seq, key: r.partitionKey ?? '', input: undefined, dead: v.error, bytes: 0 };
        return {
          seq: r.seq,
          key: r.partitionKey ?? '',
          bytes: r.data.byteLength + (r.partitionKey?.length ?? 0),
          input: {
            key: r.partitionKey ?? '',
            type: 'record',
            source: t.stream,
            shard: r.shard,
            seq: r.seq,
            version: 0,
            size: r.data.byteLength,
            etag: '',
            mtimeMs: r.time.getTime(),
            contentType: r.headers['content-type'] ?? 'application/octet-stream',
            attrs: {},
            headers: r.headers,
            attempt: attempt(r.seq),
            body: r.data,
            ...(r.cause ? { cause: r.cause } : {}),
          },
        };
      });
    }
    // HTTP triggers have no records: requests go to runtime/triggers/http.ts.
    if (t.type !== 'object') return [];
    const out: Fetched[] = new Array(recs.length);
    // Prefetch reads run concurrently (bounded by the batch size); results keep stream order.
    const skipAttrs = !(t.events as string[]).includes('attrs');
    const one = async (r: StreamRecord, i: number): Promise<void> => {
      const c = decodeChange(r.data);
      const keep = (t.events as string[]).includes(c.type) && c.key.startsWith(t.prefix) && c.key.endsWith(t.suffix);
      const verdict = chainVerdict(c.cause, fn, chain);
      if (!keep || verdict.action === 'drop') {
        out[i] = { seq: r.seq, key: c.key, input: undefined, skip: 'filtered', bytes: 0 };
        return;
      }
      const input: BatchRecordInput = {
        key: c.key,
        type: c.type,
        source: c.bucket,
        shard: r.shard,
        seq: r.seq,
        version: c.version,
        size: c.size,
        etag: c.etag,
        mtimeMs: c.mtime.getTime(),
        contentType: c.contentType,
        attrs: {},
        headers: {},
        attempt: attempt(r.seq),
        ...(c.cause ? { cause: c.cause } : {}),
      };
      if (c.type !== 'delete' && this.#objects) {
        const cur = await this.#read(c.key, c.size <= t.inlineBodyMaxBytes);
        // The object changed since this record (deleted or put again): a newer record describes the
        // current state, so this one is done without running the handler.
        if (!cur || cur.version !== c.version) {
          out[i] = { seq: r.seq, key: c.key, input: undefined, skip: 'superseded', bytes: 0 };
          return;
        }
        // Read with the internal attributes (the marker below); the handler sees only the visible ones.
        input.attrs = visibleAttrs(cur.attrs, false);
        if (cur.body) input.body = cur.body;
        // A continuous (or scheduled) query trigger: the object's state now must match `where`. Not
        // for a redelivery of a record this function already committed (its marker is at or past the
        // record): that state holds the record's own effects, which usually make `where` false (the
        // backup's backed_up_etag), and filtering it would drop the batch's counters if the crash came
        // between the attribute commit and the counter commit. Delivered again, its attribute effects
        // are skipped by the marker and its counters land once (the batch's sequence range).
        const marker = cur.attrs[markerAttr(this.#o.function)];
        const redelivered = typeof marker === 'number' && marker >= r.seq;
        if (t.where !== undefined && !redelivered && !matchesWhere({ key: c.key, size: c.size, etag: c.etag, version: c.version, contentType: c.contentType, mtimeMs: c.mtime.getTime(), attrs: cur.attrs }, t.where)) {
          out[i] = { seq: r.seq, key: c.key, input: undefined, skip: 'filtered', bytes: 0 };
          return;
        }
      }
      // Past the hop limit: dead-lettered instead of run (after the filters, so a record this function
      // would not have run anyway never dead-letters).
      if (verdict.action === 'dead_letter') {
        out[i] = { seq: r.seq, key: c.key, input: undefined, dead: verdict.error, bytes: 0 };
        return;
      }
      out[i] = { seq: r.seq, key: c.key, input, bytes: c.key.length + (input.body?.byteLength ?? 0) + 64 };
    };
    const work: Promise<void>[] = [];
    for (let i = 0; i < recs.length; i++) {
      const r = recs[i]!;
      // Most change records a put-only trigger sees are the `attrs` records of its own commits, and most
      // an attrs trigger would see are its own commits too: drop them by their type or cause alone,
      // without decoding the record — and without an async call per record.
      const peek = peekChange(r.data);
      if ((skipAttrs && peek?.type === 'attrs') || (peek?.causeFn === fn && !chain.selfTrigger)) out[i] = { seq: r.seq, key: r.partitionKey ?? '', input: undefined, skip: 'filtered', bytes: 0 };
      else work.push(one(r, i));
    }
    await Promise.all(work);
    return out;
  }

  async #read(key: string, withBody: boolean): Promise<{ version: number; attrs: BatchRecordInput['attrs']; body?: Uint8Array } | undefined> {
    const o = this.#objects!;
    if (!withBody) {
      const h = await o.head(key, { internal: true });
      return h && { version: h.version, attrs: h.attrs };
    }
    try {
      const g = await o.get(key, { internal: true });
      return { version: g.version, attrs: g.attrs, body: g.body };
    } catch (e) {
      if (e instanceof SluiceError && e.code === 'SLUICE_NOT_FOUND') return undefined;
      throw e;
    }
  }
}

const TYPE_KEY = [0x74, 0x79, 0x70, 0x65]; // "type"
const CAUSE_KEY = [0x63, 0x61, 0x75, 0x73, 0x65]; // "cause"
const FN_KEY = [0x66, 0x6e]; // "fn"

/** The `type` of an encoded change record without decoding it ({@link peekChange}). */
export function peekChangeType(d: Uint8Array): string | undefined {
  return peekChange(d)?.type;
}

/**
 * The `type` and the cause's function of an encoded change record, read from its msgpack bytes without
 * decoding it: walks the top-level map while keys and values are strings (`bucket`, `key`, `type` come
 * first), and the `cause` map (`{fn, hop}`, written right after `type`) when it comes next. A field is
 * undefined whenever the bytes are not shaped as expected — the caller then decodes in full, so this can
 * only ever save work, never misfilter (test/unit/records-peek.test.ts pins it against encodeChange).
 */
export function peekChange(d: Uint8Array): { type?: string; causeFn?: string } | undefined {
  // No closures here: this runs for every change record a worker reads (half of them its own commits),
  // and a closure per call was measurable in the worker's profile.
  let i = 0;
  const h = d[i++];
  let n: number;
  if (h === undefined) return undefined;
  if (h >= 0x80 && h <= 0x8f) n = h & 0x0f;
  else if (h === 0xde && d.length > 3) {
    n = (d[1]! << 8) | d[2]!;
    i = 3;
  } else return undefined;
  let type: string | undefined;
  let causeFn: string | undefined;
  for (let e = 0; e < n && e < 8; e++) {
    const k = strAt(d, i);
    if (k < 0) break;
    const kStart = strStart;
    i = k;
    if (isName(d, kStart, k, CAUSE_KEY)) {
      // A fixmap whose first entry is `fn: <string>` (function names are ASCII, so latin1 is exact).
      const m = d[i];
      if (m === undefined || m < 0x81 || m > 0x8f) break;
      const fk = strAt(d, i + 1);
      if (fk < 0 || !isName(d, strStart, fk, FN_KEY)) break;
      const fv = strAt(d, fk);
      if (fv >= 0) causeFn = latin1(d, strStart, fv);
      break;
    }
    const v = strAt(d, i);
    if (v < 0) break;
    if (isName(d, kStart, k, TYPE_KEY)) type = latin1(d, strStart, v);
    i = v;
  }
  if (type === undefined && causeFn === undefined) return undefined;
  const out: { type?: string; causeFn?: string } = {};
  if (type !== undefined) out.type = type;
  if (causeFn !== undefined) out.causeFn = causeFn;
  return out;
}

/** Where the bytes of the last string read by {@link strAt} start. */
let strStart = 0;

/** Reads a msgpack string at `i`: the index after it (its bytes from {@link strStart}), or -1 when it is not a string. */
function strAt(d: Uint8Array, i: number): number {
  const b = d[i];
  let len: number;
  let at: number;
  if (b === undefined) return -1;
  if (b >= 0xa0 && b <= 0xbf) {
    len = b & 0x1f;
    at = i + 1;
  } else if (b === 0xd9 && i + 1 < d.length) {
    len = d[i + 1]!;
    at = i + 2;
  } else if (b === 0xda && i + 2 < d.length) {
    len = (d[i + 1]! << 8) | d[i + 2]!;
    at = i + 3;
  } else return -1;
  if (at + len > d.length) return -1;
  strStart = at;
  return at + len;
}

function isName(d: Uint8Array, from: number, to: number, name: number[]): boolean {
  if (to - from !== name.length) return false;
  for (let j = 0; j < name.length; j++) if (d[from + j] !== name[j]) return false;
  return true;
}

function latin1(d: Uint8Array, from: number, to: number): string {
  return Buffer.from(d.buffer, d.byteOffset + from, to - from).toString('latin1');
}
