/**
 * Reads a `Batch` Cap'n Proto message IN PLACE (in its shared-memory slot): nothing is decoded until
 * asked, and then only the field asked. Values that outlive the batch (bodies, bytes attributes) are
 * copied out of the slot, because the slot is reused for the next batch.
 *
 * Struct sizes are taken from the message, not assumed: a field past a struct's data or pointer
 * section reads as its default, so messages from older or newer writers of the schema read correctly.
 */
import { codec } from '../../bindings/shared.ts';
import type { Attrs, Value } from '../../bindings/types.ts';
import type { EventType } from '../../functions/types.ts';
import { AttrLayout, AttrWhich, BatchLayout, EventTypeCodes, FRAME_BYTES, getU64, HeaderLayout, malformed, RecordLayout, WireReader } from './wire.ts';

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/** UTF-8 bytes of attribute names looked up with {@link RecordView.attr}, kept for byte comparison. */
const nameBytes = new Map<string, Uint8Array>();
function bytesOfName(name: string): Uint8Array {
  let b = nameBytes.get(name);
  if (b === undefined) {
    b = utf8.encode(name);
    // Bounded: handlers look up a handful of names; a pathological handler only loses the cache.
    if (nameBytes.size >= 4096) nameBytes.clear();
    nameBytes.set(name, b);
  }
  return b;
}

/**
 * Interning by position: records of one batch mostly carry the same attribute names in the same
 * order, and often the same short values (a content type, a label). For each position we keep the
 * last string decoded there and its bytes; comparing a few bytes is cheaper than decoding a string
 * (and allocating it again). Positions: attribute names 0..31, their text values 32..63, content type 64.
 */
const INTERN_SLOTS = 32;
const VALUE_SLOT = 32;
const CONTENT_TYPE_SLOT = 64;
const INTERN_MAX_BYTES = 32;
const internBytes = new Uint8Array(65 * INTERN_MAX_BYTES);
const internLens = new Int32Array(65).fill(-1);
const internStrings: string[] = new Array<string>(65).fill('');

/** A batch read in place. */
export class BatchView {
  /** @internal */ readonly r: WireReader;
  /** Number of records. */
  readonly length: number;
  readonly #root: number;
  readonly #rootData: number;
  readonly #rootPtrs: number;
  /** @internal first record, stride and section sizes (bytes) of the records list. */
  readonly recBase: number;
  readonly recStride: number;
  readonly recDataBytes: number;
  readonly recPtrWords: number;
  #source: string | undefined;
  /** @internal scratch for list decoding (single-threaded use). */
  readonly scratch = new Int32Array(4);

  /** `src` holds the whole framed message (it may be longer). */
  constructor(src: Uint8Array) {
    const r = (this.r = new WireReader(src));
    this.#root = r.structAt(FRAME_BYTES);
    if (this.#root < 0) throw malformed('null root pointer', FRAME_BYTES);
    const sizes = r.structSizes(FRAME_BYTES);
    this.#rootData = (sizes & 0xffff) * 8;
    this.#rootPtrs = sizes >>> 16;
    const s = this.scratch;
    if (BatchLayout.pRecords < this.#rootPtrs) r.compositeList(this.#root + this.#rootData + BatchLayout.pRecords * 8, s);
    else s.fill(0);
    this.recBase = s[0] as number;
    this.length = s[1] as number;
    this.recDataBytes = (s[2] as number) * 8;
    this.recPtrWords = s[3] as number;
    this.recStride = this.recDataBytes + this.recPtrWords * 8;
  }

  #text(p: number): string {
    return p < this.#rootPtrs ? this.r.text(this.#root + this.#rootData + p * 8) : '';
  }

  get function(): string {
    return this.#text(BatchLayout.pFunction);
  }
  get source(): string {
    return (this.#source ??= this.#text(BatchLayout.pSource));
  }
  get batchId(): string {
    return this.#text(BatchLayout.pBatchId);
  }
  get shard(): number {
    return BatchLayout.shard + 4 <= this.#rootData ? this.r.dv.getUint32(this.#root + BatchLayout.shard, true) : 0;
  }
  get deadlineMs(): number {
    return BatchLayout.deadlineMs + 8 <= this.#rootData ? this.r.dv.getFloat64(this.#root + BatchLayout.deadlineMs, true) : 0;
  }

  /** The view of record `i` (0-based); a new small object, decoding nothing yet. */
  record(i: number): RecordView {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`record ${i} outside the batch of ${this.length}`);
    return new RecordView(this, this.recBase + i * this.recStride);
  }
}

/** One record of a {@link BatchView}: every getter decodes its field from the slot when called. */
export class RecordView {
  readonly #b: BatchView;
  readonly #r: WireReader;
  /** Offset of the record's data section; pointers follow at `#p`. */
  readonly #at: number;
  readonly #p: number;

  constructor(batch: BatchView, at: number) {
    this.#b = batch;
    this.#r = batch.r;
    this.#at = at;
    this.#p = at + batch.recDataBytes;
  }

  #u32(off: number): number {
    return off + 4 <= this.#b.recDataBytes ? this.#r.dv.getUint32(this.#at + off, true) : 0;
  }
  #u64(off: number): number {
    return off + 8 <= this.#b.recDataBytes ? getU64(this.#r.dv, this.#at + off) : 0;
  }
  #ptr(i: number): number {
    return i < this.#b.recPtrWords ? this.#p + i * 8 : -1;
  }
  #text(i: number): string {
    return i < this.#b.recPtrWords ? this.#r.text(this.#p + i * 8) : '';
  }

  get key(): string {
    return this.#text(RecordLayout.pKey);
  }
  get type(): EventType {
    const code = RecordLayout.type + 2 <= this.#b.recDataBytes ? this.#r.dv.getUint16(this.#at + RecordLayout.type, true) : 0;
    const t = EventTypeCodes[code];
    if (t === undefined) throw malformed(`unknown event type ${code}`, this.#at);
    return t;
  }
  /** The record's source, or the batch's when the record carries none. */
  get source(): string {
    return this.#text(RecordLayout.pSource) || this.#b.source;
  }
  get shard(): number {
    return this.#u32(RecordLayout.shard);
  }
  get seq(): number {
    return this.#u64(RecordLayout.seq);
  }
  get version(): number {
    return this.#u64(RecordLayout.version);
  }
  get size(): number {
    return this.#u64(RecordLayout.size);
  }
  get mtimeMs(): number {
    return RecordLayout.mtimeMs + 8 <= this.#b.recDataBytes ? this.#r.dv.getFloat64(this.#at + RecordLayout.mtimeMs, true) : 0;
  }
  get etag(): string {
    return this.#text(RecordLayout.pEtag);
  }
  get contentType(): string {
    const p = this.#ptr(RecordLayout.pContentType);
    return p < 0 ? '' : internedText(this.#r, p, this.#b.scratch, CONTENT_TYPE_SLOT);
  }
  get attempt(): number {
    return this.#u32(RecordLayout.attempt);
  }
  get hasBody(): boolean {
    return RecordLayout.hasBody < this.#b.recDataBytes && (this.#r.u8[this.#at + RecordLayout.hasBody] as number & 1) === 1;
  }

  /** The inline body as a view INTO the slot (valid only while the batch is being handled), or undefined. */
  bodyInPlace(): Uint8Array | undefined {
    if (!this.hasBody) return undefined;
    const p = this.#ptr(RecordLayout.pBody);
    if (p < 0) return EMPTY;
    const s = this.#b.scratch;
    this.#r.bytesAt(p, s);
    return this.#r.u8.subarray(s[0], (s[0] as number) + (s[1] as number));
  }

  /** A copy of the inline body (safe to keep), or undefined when the batch carries none. */
  body(): Uint8Array | undefined {
    const v = this.bodyInPlace();
    return v === undefined ? undefined : v.slice();
  }

  /** Number of attributes. */
  get attrCount(): number {
    const p = this.#ptr(RecordLayout.pAttrs);
    if (p < 0) return 0;
    const s = this.#b.scratch;
    this.#r.compositeList(p, s);
    return s[1] as number;
  }

  /** One attribute by name, comparing UTF-8 bytes in place (no name is decoded); undefined when absent. */
  attr(name: string): Value | undefined {
    const p = this.#ptr(RecordLayout.pAttrs);
    if (p < 0) return undefined;
    const r = this.#r;
    const s = this.#b.scratch;
    r.compositeList(p, s);
    const n = s[1] as number;
    const dataBytes = (s[2] as number) * 8;
    const ptrWords = s[3] as number;
    const stride = dataBytes + ptrWords * 8;
    if (ptrWords <= AttrLayout.pName) return undefined;
    const want = bytesOfName(name);
    let a = s[0] as number;
    for (let i = 0; i < n; i++, a += stride) {
      r.bytesAt(a + dataBytes + AttrLayout.pName * 8, s);
      const len = (s[1] as number) - 1; // NUL
      if (len === want.byteLength && r.equals(s[0] as number, len, want)) return readAttrValue(r, a, dataBytes, ptrWords, s);
    }
    return undefined;
  }

  /** Every attribute, decoded into a fresh object. */
  attrs(): Attrs {
    const p = this.#ptr(RecordLayout.pAttrs);
    return p < 0 ? {} : readAttrList(this.#r, p, this.#b.scratch);
  }

  /** Stream record headers. */
  headers(): Record<string, string> {
    const out: Record<string, string> = {};
    const p = this.#ptr(RecordLayout.pHeaders);
    if (p < 0) return out;
    const r = this.#r;
    const s = this.#b.scratch;
    r.compositeList(p, s);
    const n = s[1] as number;
    const dataBytes = (s[2] as number) * 8;
    const ptrWords = s[3] as number;
    let h = (s[0] as number) + dataBytes;
    for (let i = 0; i < n; i++, h += dataBytes + ptrWords * 8) {
      const name = ptrWords > HeaderLayout.pName ? r.text(h + HeaderLayout.pName * 8) : '';
      setProp(out, name, ptrWords > HeaderLayout.pValue ? r.text(h + HeaderLayout.pValue * 8) : '');
    }
    return out;
  }
}

/** Assigns without tripping over `__proto__` as an attribute or header name. */
function setProp<T>(o: Record<string, T>, k: string, v: T): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/**
 * Attribute objects are built by a factory per name sequence: an object literal with the names as
 * keys, compiled once (`new Function`, keys JSON-quoted). Records of a batch mostly share their
 * attribute names, and building the object this way costs ≈15 ns instead of ≈75 ns of keyed stores;
 * the objects also share one hidden class, so handlers reading them stay monomorphic.
 */
type AttrsFactory = (v: Value[]) => Attrs;
const SHAPE_MAX = 16;
const shapeNames = new Array<string>(SHAPE_MAX).fill('');
const shapeValues = new Array<Value>(SHAPE_MAX).fill(null);
const factories = new Map<string, AttrsFactory | null>();
/** The factory of the last list read, and its length; valid while every name is an intern hit. */
let lastFactory: AttrsFactory | null = null;
let lastShapeN = -1;
/** Set by {@link internedText} when it had to decode (the bytes differed from the last string there). */
let internMiss = false;

function factoryFor(names: string[], n: number): AttrsFactory | null {
  const key = names.slice(0, n).join('\u0000');
  let f = factories.get(key);
  if (f === undefined) {
    // `__proto__` in a literal sets the prototype, and NUL would make keys ambiguous: those take the slow path.
    const plain = names.slice(0, n).every((k) => k !== '__proto__' && !k.includes('\u0000'));
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    f = plain ? (new Function('v', `return {${names.slice(0, n).map((k, i) => `${JSON.stringify(k)}: v[${i}]`).join(', ')}};`) as AttrsFactory) : null;
    if (factories.size >= 256) factories.clear();
    factories.set(key, f);
  }
  return f;
}

/**
 * Decodes a `List(Attr)` at pointer `p` into a new object; names are interned per position. Shared
 * with the results reader (`RecordResult.set`). `s` is a 4-int scratch.
 */
export function readAttrList(r: WireReader, p: number, s: Int32Array): Attrs {
  r.compositeList(p, s);
  const n = s[1] as number;
  const dataBytes = (s[2] as number) * 8;
  const ptrWords = s[3] as number;
  const stride = dataBytes + ptrWords * 8;
  let a = s[0] as number;
  if (n === 0) return {};
  if (n > SHAPE_MAX || ptrWords <= AttrLayout.pName) {
    const out: Attrs = {};
    for (let i = 0; i < n; i++, a += stride) {
      const name = ptrWords <= AttrLayout.pName ? '' : i < INTERN_SLOTS ? internedText(r, a + dataBytes + AttrLayout.pName * 8, s, i) : r.text(a + dataBytes + AttrLayout.pName * 8);
      setProp(out, name, readAttrValue(r, a, dataBytes, ptrWords, s, i < INTERN_SLOTS ? VALUE_SLOT + i : -1));
    }
    lastShapeN = -1;
    return out;
  }
  // Same length and every name as last time (all intern hits): the last factory fits.
  let changed = lastShapeN !== n;
  lastShapeN = -1; // invalid until this list is read through
  for (let i = 0; i < n; i++, a += stride) {
    internMiss = false;
    shapeNames[i] = internedText(r, a + dataBytes + AttrLayout.pName * 8, s, i);
    if (internMiss) changed = true;
    shapeValues[i] = readAttrValue(r, a, dataBytes, ptrWords, s, VALUE_SLOT + i);
  }
  if (changed) lastFactory = factoryFor(shapeNames, n);
  lastShapeN = n;
  if (lastFactory !== null) return lastFactory(shapeValues);
  const out: Attrs = {};
  for (let i = 0; i < n; i++) setProp(out, shapeNames[i] as string, shapeValues[i] as Value);
  return out;
}

/** The Text at `ptr`, reusing the string last decoded at intern position `slot` when the bytes match. */
function internedText(r: WireReader, ptr: number, s: Int32Array, slot: number): string {
  r.bytesAt(ptr, s);
  const start = s[0] as number;
  const len = (s[1] as number) - 1;
  const base = slot * INTERN_MAX_BYTES;
  const u8 = r.u8;
  if (internLens[slot] === (len < 0 ? 0 : len)) {
    let i = 0;
    while (i < len && u8[start + i] === internBytes[base + i]) i++;
    if (i >= len) return internStrings[slot] as string;
  }
  internMiss = true;
  if (len <= 0) {
    internLens[slot] = 0;
    internStrings[slot] = '';
    return '';
  }
  const str = r.decode(start, start + len);
  if (len > INTERN_MAX_BYTES) {
    internLens[slot] = -1;
    return str;
  }
  for (let i = 0; i < len; i++) internBytes[base + i] = u8[start + i] as number;
  internLens[slot] = len;
  internStrings[slot] = str;
  return str;
}

/** The value of the Attr struct at `a`; text is interned at position `slot` (unless -1). */
export function readAttrValue(r: WireReader, a: number, dataBytes: number, ptrWords: number, s: Int32Array, slot = -1): Value {
  const which = dataBytes >= 2 ? r.dv.getUint16(a + AttrLayout.which, true) : 0;
  const vp = a + dataBytes + AttrLayout.pValue * 8;
  const hasScalar = dataBytes >= AttrLayout.scalar + 8;
  switch (which) {
    case AttrWhich.null:
      return null;
    case AttrWhich.text:
      return ptrWords <= AttrLayout.pValue ? '' : slot >= 0 ? internedText(r, vp, s, slot) : r.text(vp);
    case AttrWhich.number:
      return hasScalar ? r.dv.getFloat64(a + AttrLayout.scalar, true) : 0;
    case AttrWhich.bool:
      return hasScalar && ((r.u8[a + AttrLayout.scalar] as number) & 1) === 1;
    case AttrWhich.timestampMs:
      return new Date(hasScalar ? r.dv.getFloat64(a + AttrLayout.scalar, true) : 0);
    case AttrWhich.bytes:
    case AttrWhich.packed: {
      if (ptrWords <= AttrLayout.pValue) return which === AttrWhich.bytes ? new Uint8Array(0) : null;
      r.bytesAt(vp, s);
      // A copy: the slot is reused for the next batch; values must not alias it.
      const b = r.u8.slice(s[0], (s[0] as number) + (s[1] as number));
      return which === AttrWhich.bytes ? b : (codec.unpack(b) as Value);
    }
    default:
      throw malformed(`unknown attribute value kind ${which}`, a);
  }
}
