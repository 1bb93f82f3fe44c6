/**
 * The hand-written Cap'n Proto accessors (runtime/handoff) against the reference code capnp-es
 * generates from runtime/schema/sluice.capnp: what we write, capnp-es reads to the same values; what
 * capnp-es builds, we read to the same values; and built in the same order, the bytes are identical.
 */
import { Message, utils } from 'capnp-es';
import { describe, expect, it } from 'vitest';
import { BindingError } from '../../bindings/errors.ts';
import { codec } from '../../bindings/shared.ts';
import type { Attrs, Value } from '../../bindings/types.ts';
import type { BatchEffects, RecordEffects } from '../../functions/effects.ts';
import type { BatchInput, BatchRecordInput } from '../../runtime/batch-types.ts';
import { BatchView } from '../../runtime/handoff/batch-reader.ts';
import { writeBatch } from '../../runtime/handoff/batch-writer.ts';
import { readResults } from '../../runtime/handoff/results-reader.ts';
import { writeResults } from '../../runtime/handoff/results-writer.ts';
import { BatchLayout, FRAME_BYTES, RecordLayout, WireWriter } from '../../runtime/handoff/wire.ts';
import * as S from '../../runtime/schema/sluice.generated.ts';

// ───────────────────────────── reference: capnp-es builders and readers ─────────────────────────────

const TYPES = ['put', 'delete', 'attrs', 'record'] as const;

/** Sets an Attr the way our writers do: same field order, empty text/bytes left null. */
function refSetAttr(a: S.Attr, name: string, v: Value): void {
  a.name = name;
  const u = a.value;
  if (v === null) u.null = true;
  // Empty text / bytes: only the discriminant (our writer leaves the pointer null; capnp-es's setters
  // would allocate a NUL byte or a zero-length list).
  else if (typeof v === 'string') {
    if (v === '') utils.setUint16(0, S.Attr_Value.TEXT, u);
    else u.text = v;
  } else if (typeof v === 'number') u.number = v;
  else if (typeof v === 'boolean') u.bool = v;
  else if (v instanceof Uint8Array) {
    if (v.byteLength === 0) utils.setUint16(0, S.Attr_Value.BYTES, u);
    else u._initBytes(v.byteLength).copyBuffer(v);
  } else if (v instanceof Date) u.timestampMs = v.getTime();
  else {
    const p = codec.pack(v);
    u._initPacked(p.byteLength).copyBuffer(p);
  }
}

function refAttrs(list: { get(i: number): S.Attr }, attrs: Attrs): void {
  Object.entries(attrs).forEach(([k, v], i) => refSetAttr(list.get(i), k, v));
}

/**
 * capnp-es builds a Batch in the order our writer allocates. capnp-es writes empty Text as a 1-byte
 * list (just the NUL) and empty lists/Data with a tag or zero-length pointer, while our writer leaves
 * them as null pointers (both read as empty); so empty values are not set here, as the writer does.
 */
function refBuildBatch(b: BatchInput): Uint8Array {
  const m = new Message();
  const root = m.initRoot(S.Batch);
  if (b.function) root.function = b.function;
  if (b.source) root.source = b.source;
  root.shard = b.shard;
  if (b.batchId) root.batchId = b.batchId;
  root.deadlineMs = b.deadlineMs;
  if (b.records.length > 0) {
    const recs = root._initRecords(b.records.length);
    b.records.forEach((x, i) => {
      const r = recs.get(i);
      if (x.key) r.key = x.key;
      r.type = TYPES.indexOf(x.type) as S.EventType;
      if (x.source !== b.source && x.source) r.source = x.source;
      r.shard = x.shard;
      r.seq = BigInt(x.seq);
      r.version = BigInt(x.version);
      r.size = BigInt(x.size);
      r.mtimeMs = x.mtimeMs;
      if (x.etag) r.etag = x.etag;
      if (x.contentType) r.contentType = x.contentType;
      r.attempt = x.attempt;
      r.hasBody = x.body !== undefined;
      const an = Object.keys(x.attrs).length;
      if (an > 0) refAttrs(r._initAttrs(an), x.attrs);
      const hs = Object.entries(x.headers);
      if (hs.length > 0) {
        const hl = r._initHeaders(hs.length);
        hs.forEach(([k, v], j) => {
          const h = hl.get(j);
          if (k) h.name = k;
          if (v) h.value = v;
        });
      }
      if (x.body !== undefined && x.body.byteLength > 0) r._initBody(x.body.byteLength).copyBuffer(x.body);
    });
  }
  return new Uint8Array(m.toArrayBuffer());
}

function refAttrValue(a: S.Attr): Value {
  const u = a.value;
  switch (u.which()) {
    case S.Attr_Value.NULL:
      return null;
    case S.Attr_Value.TEXT:
      return u.text;
    case S.Attr_Value.NUMBER:
      return u.number;
    case S.Attr_Value.BOOL:
      return u.bool;
    case S.Attr_Value.BYTES:
      return u._hasBytes() ? new Uint8Array(u.bytes.toUint8Array()) : new Uint8Array(0);
    case S.Attr_Value.TIMESTAMP_MS:
      return new Date(u.timestampMs);
    case S.Attr_Value.PACKED:
      return codec.unpack(new Uint8Array(u.packed.toUint8Array())) as Value;
    default:
      throw new Error('unknown union member');
  }
}

function refReadAttrs(list: { length: number; get(i: number): S.Attr }): Attrs {
  const out: Attrs = {};
  for (let i = 0; i < list.length; i++) out[list.get(i).name] = refAttrValue(list.get(i));
  return out;
}

/** capnp-es reads a Batch into the BatchInput shape (record source resolved against the batch's). */
function refReadBatch(bytes: Uint8Array): BatchInput {
  const root = new Message(copy(bytes), false).getRoot(S.Batch);
  const records: BatchRecordInput[] = [];
  for (const r of root.records) {
    const rec: BatchRecordInput = {
      key: r.key,
      type: TYPES[r.type]!,
      source: r.source || root.source,
      shard: r.shard,
      seq: Number(r.seq),
      version: Number(r.version),
      size: Number(r.size),
      etag: r.etag,
      mtimeMs: r.mtimeMs,
      contentType: r.contentType,
      attrs: refReadAttrs(r.attrs),
      headers: Object.fromEntries([...r.headers].map((h) => [h.name, h.value])),
      attempt: r.attempt,
    };
    if (r.hasBody) rec.body = r._hasBody() ? new Uint8Array(r.body.toUint8Array()) : new Uint8Array(0);
    records.push(rec);
  }
  return { function: root.function, source: root.source, shard: root.shard, batchId: root.batchId, deadlineMs: root.deadlineMs, records };
}

function refBuildResults(e: BatchEffects): Uint8Array {
  const m = new Message();
  const root = m.initRoot(S.Results);
  if (e.records.length > 0) {
    const recs = root._initRecords(e.records.length);
    e.records.forEach((x, i) => {
      const r = recs.get(i);
      const sn = Object.keys(x.set).length;
      if (sn > 0) refAttrs(r._initSet(sn), x.set);
      if (x.remove.length > 0) {
        const l = r._initRemove(x.remove.length);
        x.remove.forEach((n, j) => l.set(j, n));
      }
      if (x.updates.length > 0) {
        const p = codec.pack(x.updates);
        r._initUpdates(p.byteLength).copyBuffer(p);
      }
      if (x.failure) r.failure = JSON.stringify(x.failure);
    });
  }
  const cs = Object.entries(e.counters);
  if (cs.length > 0) {
    const cl = root._initCounters(cs.length);
    cs.forEach(([k, v], i) => {
      const c = cl.get(i);
      c.name = k;
      c.value = v;
    });
  }
  if (e.error) root.error = JSON.stringify(e.error);
  return new Uint8Array(m.toArrayBuffer());
}

function refReadResults(bytes: Uint8Array): BatchEffects {
  const root = new Message(copy(bytes), false).getRoot(S.Results);
  const out: BatchEffects = {
    records: [...root.records].map((r) => {
      const e: RecordEffects = { set: refReadAttrs(r.set), remove: [...r.remove], updates: r._hasUpdates() ? (codec.unpack(new Uint8Array(r.updates.toUint8Array())) as RecordEffects['updates']) : [] };
      if (r.failure) e.failure = JSON.parse(r.failure) as NonNullable<RecordEffects['failure']>;
      return e;
    }),
    counters: Object.fromEntries([...root.counters].map((c) => [c.name, c.value])),
  };
  if (root.error) out.error = JSON.parse(root.error) as NonNullable<BatchEffects['error']>;
  return out;
}

function copy(b: Uint8Array): ArrayBuffer {
  const a = new ArrayBuffer(b.byteLength);
  new Uint8Array(a).set(b);
  return a;
}

// ───────────────────────────── our side ─────────────────────────────

/** Reads a Batch with our in-place reader into the BatchInput shape. */
function ourReadBatch(bytes: Uint8Array): BatchInput {
  const v = new BatchView(bytes);
  const records: BatchRecordInput[] = [];
  for (let i = 0; i < v.length; i++) {
    const r = v.record(i);
    const rec: BatchRecordInput = {
      key: r.key,
      type: r.type,
      source: r.source,
      shard: r.shard,
      seq: r.seq,
      version: r.version,
      size: r.size,
      etag: r.etag,
      mtimeMs: r.mtimeMs,
      contentType: r.contentType,
      attrs: r.attrs(),
      headers: r.headers(),
      attempt: r.attempt,
    };
    const body = r.body();
    if (body !== undefined) rec.body = body;
    records.push(rec);
  }
  return { function: v.function, source: v.source, shard: v.shard, batchId: v.batchId, deadlineMs: v.deadlineMs, records };
}

/** A slot-sized buffer on a SharedArrayBuffer, as the pool uses. */
function slot(bytes = 1 << 20): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(bytes));
}

function write(b: BatchInput): Uint8Array {
  const dst = slot(4 << 20);
  dst.fill(0xee); // stale bytes of an earlier batch must not leak into the message
  const n = writeBatch(dst, b);
  return dst.subarray(0, n);
}

// ───────────────────────────── fixtures ─────────────────────────────

const EVERY_TYPE: Attrs = {
  s: 'text',
  empty: '',
  n: 3.25,
  neg: -0,
  big: 2 ** 53 - 1,
  t: true,
  f: false,
  z: null,
  bytes: new Uint8Array([0, 1, 2, 250]),
  noBytes: new Uint8Array(0),
  when: new Date(1_700_000_000_123),
  list: [1, 'two', null, [true]],
  map: { a: 1, b: { c: 'd' }, bin: new Uint8Array([9]) },
  'ünï 名前 🎉': 'värde ✓ 🎉',
};

function record(i: number, over: Partial<BatchRecordInput> = {}): BatchRecordInput {
  return {
    key: `photos/2024/img_${String(i).padStart(5, '0')}.jpg`,
    type: TYPES[i % 4]!,
    source: 'uploads',
    shard: i % 8,
    seq: 1000 + i,
    version: 2 ** 40 + i,
    size: 12_345 + i,
    etag: 'd41d8cd98f00b204e9800998ecf8427e',
    mtimeMs: 1_700_000_000_000 + i,
    contentType: 'image/jpeg',
    attrs: { width: 100 + i, height: 200, label: `cat ${i}`, ok: i % 2 === 0, owner: 'ann' },
    headers: {},
    attempt: 1 + (i % 3),
    ...over,
  };
}

function batch(records: BatchRecordInput[], over: Partial<BatchInput> = {}): BatchInput {
  return { function: 'thumbnails', source: 'uploads', shard: 3, batchId: 'b-0001', deadlineMs: 1_700_000_030_000.5, records, ...over };
}

const rich = (): BatchInput =>
  batch([
    record(0, { attrs: EVERY_TYPE }),
    record(1, { key: 'ключ/日本語/😀.txt', etag: '', contentType: '', attrs: {}, body: new TextEncoder().encode('héllo wörld') }),
    record(2, { source: 'other-bucket', headers: { 'x-trace': 'abc', 'ü-h': 'värde' }, body: new Uint8Array(0) }),
    record(3, { type: 'record', key: '', body: new Uint8Array(100_000).map((_, j) => j * 7) }),
    record(4, { seq: 2 ** 53 - 1, version: 0, size: 0, mtimeMs: 0, attempt: 0, shard: 4_000_000_000 }),
  ]);

const richEffects = (): BatchEffects => ({
  records: [
    { set: { thumb: new Uint8Array([1, 2, 3]), w: 100, label: 'ünï 🎉', when: new Date(5), tags: ['a', 'b'], ok: true, none: null }, remove: [], updates: [] },
    { set: {}, remove: ['old', 'stäle'], updates: ['ADD hits :one', { expr: 'SET #n = :v', names: { '#n': 'name' }, values: { ':v': 'x' } }] },
    { set: {}, remove: [], updates: [], failure: { error: { name: 'Error', code: 'SLUICE_INTERNAL', message: 'bad ✗' }, retryAfterMs: 30_000, nonRetryable: false } },
    { set: {}, remove: [], updates: [] },
  ],
  counters: { processed: 4, 'bytes.in': 1.5e9, neg: -2 },
  error: { error: { name: 'RetryAfterError', code: 'SLUICE_INTERNAL', message: 'rate limited' }, retryAfterMs: 1000, nonRetryable: false },
});

// ───────────────────────────── tests ─────────────────────────────

describe('handoff - Cap\'n Proto layout', () => {
  it('handoff - a batch we write decodes with capnp-es to the same values (every field, every attr type, unicode, big body)', () => {
    const b = rich();
    expect(refReadBatch(write(b))).toEqual(b);
  });

  it('handoff - a batch capnp-es builds reads in place with BatchView to the same values', () => {
    const b = rich();
    const bytes = refBuildBatch(b);
    const shared = slot(bytes.byteLength + 64);
    shared.set(bytes);
    expect(ourReadBatch(shared)).toEqual(b);
  });

  it('handoff - batch bytes equal capnp-es bytes when built in the same order', () => {
    for (const b of [rich(), batch([]), batch([record(0, { attrs: {} })]), batch(Array.from({ length: 100 }, (_, i) => record(i)))]) {
      const ours = write(b);
      const ref = refBuildBatch(b);
      expect(ours.byteLength).toBe(ref.byteLength);
      expect(Buffer.from(ours).equals(Buffer.from(ref))).toBe(true);
    }
  });

  it('handoff - a 0-record batch round-trips both ways', () => {
    const b = batch([], { function: '', batchId: '', source: '' });
    expect(refReadBatch(write(b))).toEqual(b);
    expect(ourReadBatch(refBuildBatch(b))).toEqual(b);
    expect(new BatchView(write(b)).length).toBe(0);
  });

  it('handoff - record views decode lazily; attr(name) finds values by bytes without decoding others', () => {
    const v = new BatchView(write(rich()));
    expect(v.length).toBe(5);
    const r0 = v.record(0);
    expect(r0.attr('ünï 名前 🎉')).toBe('värde ✓ 🎉');
    expect(r0.attr('when')).toEqual(new Date(1_700_000_000_123));
    expect(r0.attr('map')).toEqual({ a: 1, b: { c: 'd' }, bin: new Uint8Array([9]) });
    expect(r0.attr('z')).toBeNull();
    expect(r0.attr('missing')).toBeUndefined();
    expect(r0.attrCount).toBe(Object.keys(EVERY_TYPE).length);
    expect(v.record(1).attr('width')).toBeUndefined();
    expect(v.record(1).hasBody).toBe(true);
    expect(v.record(2).source).toBe('other-bucket');
    expect(v.record(0).source).toBe('uploads');
    expect(v.record(0).bodyInPlace()).toBeUndefined();
    expect(v.record(2).body()).toEqual(new Uint8Array(0));
    expect(() => v.record(5)).toThrow(RangeError);
    // Values copied out of the slot do not alias it.
    const bytes = r0.attr('bytes') as Uint8Array;
    expect(bytes.buffer).not.toBeInstanceOf(SharedArrayBuffer);
  });

  it('handoff - attribute objects stay right when names change between records, repeat, exceed 16, or include __proto__', () => {
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`a${i}`, i]));
    const proto: Attrs = {};
    Object.defineProperty(proto, '__proto__', { value: 'not a prototype', enumerable: true, writable: true, configurable: true });
    proto.x = 1;
    const shapes: Attrs[] = [
      { a: 1, b: 'x' },
      { a: 2, b: 'y' },
      { b: 'z', a: 3 },
      { a: 4, b: 'x', c: true },
      { a: 5 },
      many,
      { a: 6, b: 'w' },
      proto,
      { a: 7, b: 'v' },
      {},
      { 'ü': 'ö', a: null },
    ];
    const v = new BatchView(write(batch(shapes.map((attrs, i) => record(i, { attrs })))));
    shapes.forEach((attrs, i) => {
      const got = v.record(i).attrs();
      expect(got).toEqual(attrs);
      expect(Object.keys(got)).toEqual(Object.keys(attrs));
      expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    });
    expect(Object.getOwnPropertyDescriptor(v.record(7).attrs(), '__proto__')?.value).toBe('not a prototype');
  });

  it('handoff - results we write decode with capnp-es to the same values', () => {
    const e = richEffects();
    const dst = slot();
    const n = writeResults(dst, e);
    expect(refReadResults(dst.subarray(0, n))).toEqual(e);
  });

  it('handoff - results capnp-es builds read back with readResults to the same values', () => {
    const e = richEffects();
    expect(readResults(refBuildResults(e))).toEqual(e);
    const empty: BatchEffects = { records: [], counters: {} };
    expect(readResults(refBuildResults(empty))).toEqual(empty);
  });

  it('handoff - results bytes equal capnp-es bytes when built in the same order', () => {
    const none: BatchEffects = { records: Array.from({ length: 100 }, () => ({ set: {}, remove: [], updates: [] })), counters: {} };
    for (const e of [richEffects(), { records: [], counters: {} }, none]) {
      const dst = slot();
      dst.fill(0xee);
      const ours = dst.subarray(0, writeResults(dst, e));
      expect(Buffer.from(ours).equals(Buffer.from(refBuildResults(e)))).toBe(true);
    }
  });

  it('handoff - a batch that does not fit throws SLUICE_SLOT_OVERFLOW and leaves the bytes past the limit untouched', () => {
    const b = rich();
    const full = write(b).byteLength;
    const mem = slot(full + 64);
    mem.fill(0xab);
    for (const limit of [0, 8, 16, 100, full >> 1, full - 8, full - 1]) {
      const err = (() => {
        try {
          writeBatch(mem.subarray(0, limit), b);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(BindingError);
      expect((err as BindingError).code).toBe('SLUICE_SLOT_OVERFLOW');
      expect(mem.subarray(limit).every((x) => x === 0xab)).toBe(true);
    }
    expect(writeBatch(mem.subarray(0, full), b)).toBe(full);
  });

  it('handoff - results that do not fit throw SLUICE_SLOT_OVERFLOW without writing past the limit', () => {
    const mem = slot(4096);
    mem.fill(0xab);
    const e: BatchEffects = { records: [{ set: { big: 'x'.repeat(5000) }, remove: [], updates: [] }], counters: {} };
    expect(() => writeResults(mem.subarray(0, 2048), e)).toThrow(expect.objectContaining({ code: 'SLUICE_SLOT_OVERFLOW' }));
    expect(mem.subarray(2048).every((x) => x === 0xab)).toBe(true);
  });

  it('handoff - records of an older (smaller) or newer (larger) Record struct read with defaults for what is missing', () => {
    // Hand-built with the wire writer: the records list's tag word declares other section sizes.
    const build = (dataWords: number, ptrWords: number): Uint8Array => {
      const dst = slot(4096);
      const w = new WireWriter(dst, 'test');
      const root = w.struct(FRAME_BYTES, BatchLayout.dataWords, BatchLayout.ptrWords);
      const rp = root + BatchLayout.dataWords * 8;
      w.text(rp + BatchLayout.pSource * 8, 'uploads');
      const at = w.compositeList(rp + BatchLayout.pRecords * 8, 1, dataWords, ptrWords);
      w.text(at + dataWords * 8 + RecordLayout.pKey * 8, 'k.txt');
      w.dv.setUint16(at + RecordLayout.type, 2, true);
      w.dv.setUint32(at + RecordLayout.shard, 7, true);
      w.dv.setUint32(at + RecordLayout.seq, 42, true);
      if (dataWords > 2) w.dv.setUint32(at + RecordLayout.version, 3, true);
      if (ptrWords > RecordLayout.pEtag) w.text(at + dataWords * 8 + RecordLayout.pEtag * 8, 'etag');
      return dst.subarray(0, w.finish());
    };
    const old = new BatchView(build(2, 1)).record(0);
    expect([old.key, old.type, old.shard, old.seq, old.version, old.size, old.mtimeMs, old.etag, old.attempt, old.hasBody]).toEqual(['k.txt', 'attrs', 7, 42, 0, 0, 0, '', 0, false]);
    expect(old.attrs()).toEqual({});
    expect(old.source).toBe('uploads');
    const newer = new BatchView(build(8, 9)).record(0);
    expect([newer.key, newer.type, newer.shard, newer.seq, newer.version, newer.etag]).toEqual(['k.txt', 'attrs', 7, 42, 3, 'etag']);
  });

  it('handoff - a malformed message is refused with a clear error, not misread', () => {
    const bytes = write(rich());
    const bad = new Uint8Array(bytes);
    bad[0] = 1; // two segments
    expect(() => new BatchView(bad)).toThrow(/more than one segment/);
    expect(() => new BatchView(new Uint8Array(8))).toThrow(/shorter than its framing/);
  });
});
