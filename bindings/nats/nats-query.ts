/**
 * Metadata queries on NATS, and the index that keeps selective ones from reading the whole bucket.
 *
 * Where the index lives: in the object's own KV message. Every put, delete and attribute update is ONE
 * KV message (nats-object.ts); its `Sluice-Change` header already holds the system fields, and the
 * `Sluice-Index` header written here holds the indexed attributes' scalars. State and index entries are
 * therefore one append — no second write that a crash could separate (invariant 1 holds by
 * construction; test/process/query-index-crash.test.ts checks it on both backends).
 *
 * How it is read: {@link IndexView} is an in-process materialised view of those headers, built by one
 * headers-only pass (`last_per_subject`) over the KV stream and then kept current by reading only the
 * messages appended since its last sequence. Before each query page it catches up (one ephemeral
 * consumer from `lastSeq + 1`, headers only), so a page sees every write acknowledged before it started.
 * Candidates from the view are then read with direct gets and `where` is re-checked on that fresh state,
 * so a row is never returned for an object that does not match when read.
 *
 * Consistency, honestly: NATS has no multi-key snapshot, so a page is not a point-in-time snapshot of
 * the bucket — each row is the object's latest state at the time it was read, and an object changing
 * during the page may be missed or seen in its newer state. The view costs one headers-only read of
 * the bucket per process (the first query) and memory per key; it is not persisted. System fields are
 * always in the view (from `Sluice-Change`), so they are served by it whether declared or not.
 * Un-indexed queries scan every message's value, as `getItems` does. `list` is served from the same view
 * (its system fields are all an ObjectMeta needs): one catch-up per page instead of a headers-only pass
 * over the whole bucket per page.
 */
import type { MsgHdrs } from '@nats-io/nats-core';
import { indexScalar, inRange, type IndexRange, type IndexScalar, type ObjectState } from '../query/index.ts';
import { fieldValue } from '../query/fields.ts';
import type { ObjectMeta } from '../types.ts';
import { compareKeys, type Attrs } from '../values.ts';
import { drain, type NatsContext } from './nats-context.ts';
import type { KvStore } from './nats-kvstore.ts';
import { objectKeyOfSubject } from './nats-names.ts';

/** Header holding an object message's indexed attribute scalars: JSON `{ "attr.<name>": [rank, value] }`. */
export const INDEX_HEADER = 'Sluice-Index';

/** Sets the index header of an object message (nothing when no attribute is indexed or none is present). */
export function setIndexHeader(h: MsgHdrs, attrs: Attrs, attrIndexes: readonly string[]): void {
  if (attrIndexes.length === 0) return;
  const out: Record<string, IndexScalar> = {};
  let n = 0;
  for (const f of attrIndexes) {
    const name = f.slice(5);
    const v = indexScalar(Object.hasOwn(attrs, name) ? attrs[name] : undefined);
    if (v !== undefined) {
      out[f] = v;
      n++;
    }
  }
  if (n > 0) h.set(INDEX_HEADER, JSON.stringify(out));
}

/** The fields of a change summary header the view needs (see nats-object.ts ChangeSummary). */
export interface SummaryFields {
  t: string;
  v: number;
  s: number;
  e: string;
  c: string;
  m: number;
}

interface ViewEntry {
  seq: number;
  state: ObjectState;
  idx: Record<string, IndexScalar>;
}

/** The in-process index of one bucket: latest system fields and indexed scalars per key. */
export class IndexView {
  readonly #ctx: NatsContext;
  readonly #kv: KvStore;
  readonly #parse: (h: MsgHdrs | undefined) => SummaryFields | undefined;
  readonly #entries = new Map<string, ViewEntry>();
  #lastSeq = 0;
  #built = false;
  #chain: Promise<void> = Promise.resolve();

  constructor(ctx: NatsContext, kv: KvStore, parse: (h: MsgHdrs | undefined) => SummaryFields | undefined) {
    this.#ctx = ctx;
    this.#kv = kv;
    this.#parse = parse;
  }

  /** Keys the view holds. */
  get size(): number {
    return this.#entries.size;
  }

  /** Applies every message appended since the last catch-up (serialised: concurrent callers share the work). */
  catchUp(signal?: AbortSignal): Promise<void> {
    const run = this.#chain.then(() => this.#catchUp(signal));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #catchUp(signal: AbortSignal | undefined): Promise<void> {
    const kvBucket = this.#kv.bucket;
    const apply = (m: { subject: string; seq: number; headers: MsgHdrs | undefined }) => {
      if (m.seq > this.#lastSeq) this.#lastSeq = m.seq;
      const k = objectKeyOfSubject(m.subject, kvBucket);
      if (!k) return;
      const prev = this.#entries.get(k.key);
      if (prev && prev.seq >= m.seq) return;
      const op = m.headers?.get('KV-Operation');
      const s = op === 'DEL' || op === 'PURGE' ? undefined : this.#parse(m.headers);
      if (!s || s.t === 'delete') {
        this.#entries.delete(k.key);
        return;
      }
      let idx: Record<string, IndexScalar> = {};
      const raw = m.headers?.get(INDEX_HEADER);
      if (raw) {
        try {
          idx = JSON.parse(raw) as Record<string, IndexScalar>;
        } catch {
          idx = {};
        }
      }
      this.#entries.set(k.key, { seq: m.seq, idx, state: { key: k.key, size: s.s, etag: s.e, version: s.v || m.seq, contentType: s.c, mtimeMs: s.m, attrs: {} } });
    };
    await drain(
      this.#ctx,
      this.#kv.stream,
      { filter: this.#kv.subject('>'), start: this.#built ? { seq: this.#lastSeq + 1 } : 'last_per_subject', headersOnly: true, batch: 10_000, signal },
      apply,
    );
    this.#built = true;
  }

  /**
   * Metadata of the live keys under `prefix` after `after`, in key order: what `list` serves from the view
   * (after a {@link catchUp}) instead of a headers-only pass over the whole bucket per page.
   */
  metas(prefix: string, after: string): ObjectMeta[] {
    const out: ObjectMeta[] = [];
    for (const [key, e] of this.#entries) {
      if (!key.startsWith(prefix) || (after !== '' && compareKeys(key, after) <= 0)) continue;
      const st = e.state;
      out.push({ key, size: st.size, etag: st.etag, version: st.version, contentType: st.contentType, mtime: new Date(st.mtimeMs) });
    }
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  /** Keys under `prefix` whose `field` (canonical) lies in `range`. */
  candidates(field: string, range: IndexRange, prefix: string, out: Set<string>): void {
    const system = !field.startsWith('attr.');
    for (const [key, e] of this.#entries) {
      if (!key.startsWith(prefix)) continue;
      let v: IndexScalar | undefined;
      if (system) v = indexScalar(fieldValue(e.state, field));
      else v = e.idx[field];
      if (v !== undefined && inRange(v[0], v[1], range, compareKeys)) out.add(key);
    }
  }
}
