/**
 * The object KV message of the NATS backend: its value (an {@link ObjectEntry}, msgpack), its change
 * summary header (what listings and change feeds read without the value), and the decoders of both.
 * Also {@link RecentEntries}: the object states this process read or wrote last, so a write that follows
 * a read (the runtime's commit after its prefetch) CASes on the revision it already has instead of reading
 * again — safe because the CAS fails when the key moved on, and the writer then reads fresh.
 */
import type { MsgHdrs } from '@nats-io/nats-core';
import { NatsHeaders } from './nats-headers.ts';
import { sequencer } from '../change-record.ts';
import { codec } from '../codec.ts';
import type { Cause, ChangeRecord, ChangeType, ObjectHead, ObjectMeta } from '../types.ts';
import type { ObjectState } from '../query/index.ts';
import { setIndexHeader } from './nats-query.ts';
import { type Attrs, visibleAttrs } from '../values.ts';
import { objectKeyOfSubject } from './nats-names.ts';

/** Header carrying the change summary, so listings and change feeds read headers only. */
export const CHANGE_HEADER = 'Sluice-Change';

/** The value of an object KV message (msgpack): the whole state of the object after the change. */
export interface ObjectEntry extends Omit<ObjectHead, 'version'> {
  type: ChangeType;
  /** Object version; 0 in a `put` message, whose version is its own revision. */
  version: number;
  /** Time of this change. */
  time: Date;
  /** The body, when it is at most `inlineBodyMaxBytes`. */
  body?: Uint8Array;
  /** Object Store name of the body otherwise, and the store's id of it (to purge its chunks). */
  bodyName?: string;
  bodyNuid?: string;
  /** Ref of the body in the backend's external body store (instead of the Object Store). */
  bodyRef?: string;
}

/** The change summary of {@link CHANGE_HEADER}: what a ChangeRecord and an ObjectMeta need. */
export interface ChangeSummary {
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
export interface Current {
  /** Revision of the key's latest message (the CAS expectation of the next write). */
  revision: number;
  /** The decoded entry; undefined when the latest message is a KV deletion marker. */
  entry: ObjectEntry | undefined;
  /** True when an object is visible (latest entry is a put or attrs change). */
  live: boolean;
}

export function summaryHeader(e: ObjectEntry, attrIndexes: readonly string[], cause: Cause | undefined): MsgHdrs {
  const s: ChangeSummary = { t: e.type, v: e.version, s: e.size, e: e.etag, c: e.contentType, m: e.mtime.getTime(), w: e.time.getTime(), a: e.attrsRevision };
  // The cause belongs to this message only (not to the object's state), so it lives in the header.
  if (cause) [s.f, s.h] = [cause.fn, cause.hop];
  const h = new NatsHeaders();
  h.set(CHANGE_HEADER, JSON.stringify(s));
  // The indexed attributes travel in the same message as the state: one append, nothing to drift apart.
  setIndexHeader(h, e.attrs, attrIndexes);
  return h;
}

export function parseSummary(h: MsgHdrs | undefined): ChangeSummary | undefined {
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
  return {
    bucket,
    key: k.key,
    type: s.t,
    // `cause` right after `type`: the runtime reads both from the encoded bytes without decoding (peekChange).
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
export function stateOfEntry(e: ObjectEntry): ObjectState {
  return { key: e.key, size: e.size, etag: e.etag, version: e.version, contentType: e.contentType, mtimeMs: e.mtime.getTime(), attrs: e.attrs };
}

export function decodeEntry(value: Uint8Array, revision: number): ObjectEntry {
  const e = codec.unpack(value) as ObjectEntry;
  if (!(e.mtime instanceof Date)) e.mtime = new Date(e.mtime as unknown as number);
  if (!(e.time instanceof Date)) e.time = new Date(e.time as unknown as number);
  if (!e.version) e.version = revision;
  e.attrs ??= {};
  return e;
}

export function metaOf(e: ObjectEntry): ObjectMeta {
  return { key: e.key, size: e.size, etag: e.etag, version: e.version, contentType: e.contentType, mtime: e.mtime };
}

export function headOf(e: ObjectEntry, internal: boolean | undefined): ObjectHead {
  const attrs = visibleAttrs(e.attrs, internal);
  return { key: e.key, size: e.size, etag: e.etag, version: e.version, contentType: e.contentType, mtime: e.mtime, attrs, attrsRevision: e.attrsRevision };
}

/** Most object states {@link RecentEntries} keeps. */
const RECENT_MAX = 4096;
/** Most inline body bytes {@link RecentEntries} keeps. */
const RECENT_MAX_BYTES = 32 * 1024 * 1024;

/**
 * The latest states of recently read or written keys (bounded: oldest first out). A hint, never the
 * truth: whoever uses one writes with a CAS on its revision, and only trusts it for the write that
 * succeeds; a failed CAS or a failed check on a remembered state is re-done on a fresh read.
 */
export class RecentEntries {
  readonly #m = new Map<string, Current>();
  #bytes = 0;

  get(key: string): Current | undefined {
    return this.#m.get(key);
  }

  set(key: string, cur: Current): void {
    this.delete(key);
    this.#m.set(key, cur);
    this.#bytes += cur.entry?.body?.byteLength ?? 0;
    while (this.#m.size > RECENT_MAX || this.#bytes > RECENT_MAX_BYTES) {
      const oldest = this.#m.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
  }

  delete(key: string): void {
    const old = this.#m.get(key);
    if (!old) return;
    this.#bytes -= old.entry?.body?.byteLength ?? 0;
    this.#m.delete(key);
  }
}
