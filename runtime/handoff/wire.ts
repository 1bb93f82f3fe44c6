/**
 * The Cap'n Proto wire layout of `runtime/schema/sluice.capnp`, read and written by hand.
 *
 * Why by hand: capnp-es decodes ≈50–80k and encodes ≈35k messages/s here, far from the millions of
 * records/s the hand-off must move. The layout is the standard one, so any Cap'n Proto implementation
 * (capnp-es in our tests) reads what we write and vice versa:
 *
 * - framing: one segment — word 0 holds `segmentCount - 1 = 0` and the segment's size in words;
 *   the segment follows and starts with the root struct pointer;
 * - struct pointer: lo = offsetWords << 2 | 0, hi = dataWords | pointerWords << 16;
 * - list pointer: lo = offsetWords << 2 | 1, hi = elementSize | count << 3; composite lists (size 7)
 *   count words and start with a tag word shaped like a struct pointer whose offset is the element count;
 * - Text is a byte list with a trailing NUL; Data a byte list; unions keep their discriminant in the
 *   data section; no field has a non-zero default, so the default-XOR is the identity.
 *
 * Offsets below are those the `capnp` compiler assigned (see `sluice.generated.ts`); a test compares
 * our bytes with capnp-es's, so a schema change that moves a field fails loudly.
 */
import { BindingError } from '../../bindings/errors.ts';

/**
 * Node's Buffer has `utf8Write`/`utf8Slice` (what `write`/`toString` dispatch to, without their
 * argument normalisation); @types/node does not declare them.
 */
export type Utf8Buffer = Buffer & {
  utf8Write(s: string, offset: number, length: number): number;
  utf8Slice(start: number, end: number): string;
};

/** Bytes of the stream framing of a single-segment message. */
export const FRAME_BYTES = 8;

/** Element size codes of list pointers. */
export const ElementSize = { byte: 2, pointer: 6, composite: 7 } as const;

/** struct Batch: data 2 words, 4 pointers. */
export const BatchLayout = { dataWords: 2, ptrWords: 4, shard: 0, deadlineMs: 8, pFunction: 0, pSource: 1, pBatchId: 2, pRecords: 3 } as const;

/** struct Record: data 6 words, 7 pointers. `hasBody` is bit 0 of data byte 2. */
export const RecordLayout = {
  dataWords: 6,
  ptrWords: 7,
  type: 0,
  hasBody: 2,
  shard: 4,
  seq: 8,
  version: 16,
  size: 24,
  mtimeMs: 32,
  attempt: 40,
  pKey: 0,
  pSource: 1,
  pEtag: 2,
  pContentType: 3,
  pAttrs: 4,
  pHeaders: 5,
  pBody: 6,
} as const;

/** struct Attr (with its `value` union inline): data 2 words, 2 pointers. */
export const AttrLayout = { dataWords: 2, ptrWords: 2, which: 0, scalar: 8, pName: 0, pValue: 1 } as const;

/** Discriminants of `Attr.value`. */
export const AttrWhich = { null: 0, text: 1, number: 2, bool: 3, bytes: 4, timestampMs: 5, packed: 6 } as const;

/** struct Header: no data, 2 pointers. */
export const HeaderLayout = { dataWords: 0, ptrWords: 2, pName: 0, pValue: 1 } as const;

/** struct Results: no data, 3 pointers. */
export const ResultsLayout = { dataWords: 0, ptrWords: 3, pRecords: 0, pCounters: 1, pError: 2 } as const;

/** struct RecordResult: no data, 4 pointers. */
export const RecordResultLayout = { dataWords: 0, ptrWords: 5, pSet: 0, pRemove: 1, pUpdates: 2, pFailure: 3, pExtra: 4 } as const;

/** struct Counter: data 1 word, 1 pointer. */
export const CounterLayout = { dataWords: 1, ptrWords: 1, value: 0, pName: 0 } as const;

/** The enum EventType, in schema order. */
export const EventTypeCodes = ['put', 'delete', 'attrs', 'record'] as const;

const TWO_32 = 4294967296;

/** Writes a non-negative integer below 2^53 as a little-endian UInt64 (lo, hi words; no BigInt). */
export function setU64(dv: DataView, at: number, n: number): void {
  if (n <= 0xffffffff) {
    // Most values (sizes, versions, sequence numbers): no float modulo.
    dv.setUint32(at, n, true);
    dv.setUint32(at + 4, 0, true);
    return;
  }
  const lo = n % TWO_32;
  dv.setUint32(at, lo, true);
  dv.setUint32(at + 4, (n - lo) / TWO_32, true);
}

/** Reads a UInt64 as a JS number (exact below 2^53). */
export function getU64(dv: DataView, at: number): number {
  return dv.getUint32(at, true) + dv.getUint32(at + 4, true) * TWO_32;
}

function overflow(what: string, need: number, limit: number): BindingError {
  return new BindingError('SLUICE_SLOT_OVERFLOW', `${what} needs more than the ${limit} bytes available in its shared-memory slot (at least ${need})`, {
    details: { need, limit },
  });
}

/** Zeroing stride of {@link WireWriter}, and a block of zeros to copy from. */
const ZERO_STRIDE = 16384;
// Copying zeros into a SharedArrayBuffer is ≈3× faster than TypedArray.fill there (measured 0.8 vs
// 2.5 µs per 16 KiB: V8 fills shared memory byte by byte with relaxed atomics, but copies it in words).
const ZEROS = new Uint8Array(ZERO_STRIDE);

/**
 * A bump allocator writing one single-segment message into `dst`, in the same order and with the
 * same padding as capnp-es's builder (so equal construction orders give equal bytes). Every
 * allocation checks the limit first: nothing is ever written past `dst`.
 */
export class WireWriter {
  readonly u8: Uint8Array;
  readonly dv: DataView;
  readonly #buf: Utf8Buffer;
  readonly #what: string;
  /** Next free byte (absolute in `u8`). */
  pos: number;

  /** Bytes before this are zero or written; allocations below it need no zeroing. */
  #zeroed: number;

  constructor(dst: Uint8Array, what: string) {
    this.u8 = dst;
    this.dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
    this.#buf = Buffer.from(dst.buffer, dst.byteOffset, dst.byteLength) as Utf8Buffer;
    this.#what = what;
    if (dst.byteLength < FRAME_BYTES + 8) throw overflow(what, FRAME_BYTES + 8, dst.byteLength);
    this.#zeroed = 0;
    this.pos = 0;
    // Framing, then the root pointer word, allocated first as capnp-es does.
    this.alloc(FRAME_BYTES + 8);
  }

  /**
   * Reserves `bytes` (a multiple of 8) and returns its offset; throws SLUICE_SLOT_OVERFLOW when it
   * does not fit. The slot holds an earlier batch's bytes, and every allocation must read as zero
   * (padding, unset fields, null pointers): rather than zeroing each small allocation, the writer
   * zeroes ahead in 16 KiB strides (one native memset per stride, never past `dst`).
   */
  alloc(bytes: number): number {
    const at = this.pos;
    const end = at + bytes;
    if (end > this.#zeroed) this.#zeroTo(end);
    this.pos = end;
    return at;
  }

  #zeroTo(end: number): void {
    const limit = this.u8.byteLength;
    if (end > limit) throw overflow(this.#what, end, limit);
    const to = Math.min(limit, Math.max(end, this.#zeroed + ZERO_STRIDE));
    for (let at = this.#zeroed; at < to; at += ZERO_STRIDE) {
      const n = Math.min(ZERO_STRIDE, to - at);
      this.u8.set(n === ZERO_STRIDE ? ZEROS : ZEROS.subarray(0, n), at);
    }
    this.#zeroed = to;
  }

  /** Allocates a zeroed struct and points `ptr` at it; returns the struct's offset. */
  struct(ptr: number, dataWords: number, ptrWords: number): number {
    const bytes = (dataWords + ptrWords) * 8;
    const at = this.alloc(bytes);
    this.dv.setUint32(ptr, ((at - ptr - 8) / 8) << 2, true);
    this.dv.setUint32(ptr + 4, dataWords | (ptrWords << 16), true);
    return at;
  }

  /** Allocates a zeroed composite list of `n` structs (tag word first); returns the first element's offset. */
  compositeList(ptr: number, n: number, dataWords: number, ptrWords: number): number {
    const words = dataWords + ptrWords;
    const bytes = 8 + n * words * 8;
    const at = this.alloc(bytes);
    this.listPointer(ptr, at, ElementSize.composite, n * words);
    // Tag word: a struct pointer whose offset field holds the element count.
    this.dv.setUint32(at, n << 2, true);
    this.dv.setUint32(at + 4, dataWords | (ptrWords << 16), true);
    return at + 8;
  }

  /** Allocates a zeroed list of `n` pointers; returns its offset. */
  pointerList(ptr: number, n: number): number {
    const at = this.alloc(n * 8);
    this.listPointer(ptr, at, ElementSize.pointer, n);
    return at;
  }

  listPointer(ptr: number, target: number, elementSize: number, count: number): void {
    this.dv.setUint32(ptr, (((target - ptr - 8) / 8) << 2) | 1, true);
    this.dv.setUint32(ptr + 4, (count * 8 + elementSize) >>> 0, true);
  }

  /**
   * Writes `s` as Text at pointer `ptr`. Empty strings stay a null pointer (pointer words start zero).
   * Short strings: one pass assuming ASCII, copying char codes, redone with the exact UTF-8 length on
   * the first non-ASCII char. Long strings: the native UTF-8 length and write.
   */
  text(ptr: number, s: string): void {
    const n = s.length;
    if (n === 0) return;
    let len = n;
    let at: number;
    if (n <= 32) {
      at = this.alloc((n + 8) & ~7); // ceil((n + 1) / 8) words: room for the NUL
      const u8 = this.u8;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        u8[at + i] = c;
      }
      if (i < n) {
        // Same offset, exact size (capnp-es allocates once, exactly): give back and take again.
        len = Buffer.byteLength(s, 'utf8');
        this.pos = at;
        this.alloc((len + 8) & ~7);
        this.#buf.utf8Write(s, at, len);
      }
    } else {
      len = Buffer.byteLength(s, 'utf8');
      at = this.alloc((len + 8) & ~7);
      this.#buf.utf8Write(s, at, len);
    }
    this.listPointer(ptr, at, ElementSize.byte, len + 1);
  }

  /** Writes `b` as Data at pointer `ptr`; empty stays a null pointer. */
  data(ptr: number, b: Uint8Array): void {
    const n = b.byteLength;
    if (n === 0) return;
    const at = this.alloc((n + 7) & ~7);
    if (n <= 16) for (let i = 0; i < n; i++) this.u8[at + i] = b[i] as number;
    else this.u8.set(b, at);
    this.listPointer(ptr, at, ElementSize.byte, n);
  }

  /** Writes the framing and returns the message's length in bytes. */
  finish(): number {
    const end = this.pos;
    this.dv.setUint32(0, 0, true);
    this.dv.setUint32(4, (end - FRAME_BYTES) / 8, true);
    return end;
  }
}

/** Raised for a message that is not the single-segment layout our writers produce. */
export function malformed(what: string, at: number): BindingError {
  return new BindingError('SLUICE_INTERNAL', `hand-off message malformed: ${what} at byte ${at}`);
}

/**
 * Reading primitives over one message. Offsets are absolute in `u8`; `FRAME_BYTES` is where the
 * segment starts. Only single-segment messages are accepted (no far pointers).
 */
export class WireReader {
  readonly u8: Uint8Array;
  readonly dv: DataView;
  readonly buf: Utf8Buffer;

  constructor(src: Uint8Array) {
    this.u8 = src;
    this.dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
    this.buf = Buffer.from(src.buffer, src.byteOffset, src.byteLength) as Utf8Buffer;
    if (src.byteLength < FRAME_BYTES + 8) throw malformed('message shorter than its framing', 0);
    if (this.dv.getUint32(0, true) !== 0) throw malformed('more than one segment', 0);
    if (FRAME_BYTES + this.dv.getUint32(4, true) * 8 > src.byteLength) throw malformed('segment longer than the message', 4);
  }

  /** The struct a pointer points at: its offset, or -1 for a null pointer. Sizes via {@link structSizes}. */
  structAt(ptr: number): number {
    const lo = this.dv.getInt32(ptr, true);
    if (lo === 0 && this.dv.getInt32(ptr + 4, true) === 0) return -1;
    if ((lo & 3) !== 0) throw malformed('expected a struct pointer', ptr);
    return ptr + 8 + (lo >> 2) * 8;
  }

  /** Data words (low 16 bits) and pointer words (high 16 bits) of the struct pointer at `ptr`. */
  structSizes(ptr: number): number {
    return this.dv.getUint32(ptr + 4, true);
  }

  /**
   * A composite list: fills `out` with [first element offset, count, dataWords, ptrWords]; count 0
   * for a null pointer.
   */
  compositeList(ptr: number, out: Int32Array): void {
    const dv = this.dv;
    const lo = dv.getInt32(ptr, true);
    const hi = dv.getUint32(ptr + 4, true);
    if (lo === 0 && hi === 0) {
      out[0] = 0;
      out[1] = 0;
      out[2] = 0;
      out[3] = 0;
      return;
    }
    if ((lo & 3) !== 1 || (hi & 7) !== ElementSize.composite) throw malformed('expected a composite list pointer', ptr);
    const tag = ptr + 8 + (lo >> 2) * 8;
    const tagLo = dv.getInt32(tag, true);
    out[0] = tag + 8;
    out[1] = tagLo >> 2;
    out[2] = dv.getUint16(tag + 4, true);
    out[3] = dv.getUint16(tag + 6, true);
    if ((tagLo & 3) !== 0 || (out[2] + out[3]) * out[1] !== hi >>> 3) throw malformed('composite list tag does not match its pointer', tag);
  }

  /** A byte list: its start offset and length (0 for a null pointer), in `out[0]`, `out[1]`. */
  bytesAt(ptr: number, out: Int32Array): void {
    const lo = this.dv.getInt32(ptr, true);
    const hi = this.dv.getUint32(ptr + 4, true);
    if (lo === 0 && hi === 0) {
      out[0] = 0;
      out[1] = 0;
      return;
    }
    if ((lo & 3) !== 1 || (hi & 7) !== ElementSize.byte) throw malformed('expected a byte list pointer', ptr);
    out[0] = ptr + 8 + (lo >> 2) * 8;
    out[1] = hi >>> 3;
    if (out[0] + out[1] > this.u8.byteLength) throw malformed('byte list past the end of the message', ptr);
  }

  /** A pointer list: start offset and count (0 for null) in `out`. */
  pointerList(ptr: number, out: Int32Array): void {
    const lo = this.dv.getInt32(ptr, true);
    const hi = this.dv.getUint32(ptr + 4, true);
    if (lo === 0 && hi === 0) {
      out[0] = 0;
      out[1] = 0;
      return;
    }
    if ((lo & 3) !== 1 || (hi & 7) !== ElementSize.pointer) throw malformed('expected a pointer list', ptr);
    out[0] = ptr + 8 + (lo >> 2) * 8;
    out[1] = hi >>> 3;
  }

  /** The Text at pointer `ptr` ('' for null). */
  text(ptr: number): string {
    const dv = this.dv;
    const lo = dv.getInt32(ptr, true);
    const hi = dv.getUint32(ptr + 4, true);
    if (lo === 0 && hi === 0) return '';
    if ((lo & 3) !== 1 || (hi & 7) !== ElementSize.byte) throw malformed('expected a Text pointer', ptr);
    const start = ptr + 8 + (lo >> 2) * 8;
    const end = start + (hi >>> 3) - 1; // minus the NUL
    if (end < start) return '';
    return this.decode(start, end);
  }

  /**
   * UTF-8 bytes [start, end) as a string. Short ASCII runs are assembled in JS four chars at a time:
   * below ~10 bytes that beats the native call (measured ≈20 vs ≈50 ns for 5 bytes).
   */
  decode(start: number, end: number): string {
    if (end - start > 10) return this.buf.utf8Slice(start, end);
    const u8 = this.u8;
    let s = '';
    let i = start;
    for (; i + 4 <= end; i += 4) {
      const c0 = u8[i] as number;
      const c1 = u8[i + 1] as number;
      const c2 = u8[i + 2] as number;
      const c3 = u8[i + 3] as number;
      if ((c0 | c1 | c2 | c3) >= 0x80) return this.buf.utf8Slice(start, end);
      s += String.fromCharCode(c0, c1, c2, c3);
    }
    for (; i < end; i++) {
      const c = u8[i] as number;
      if (c >= 0x80) return this.buf.utf8Slice(start, end);
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** True when the bytes [start, start+len) equal `b`. */
  equals(start: number, len: number, b: Uint8Array): boolean {
    if (len !== b.byteLength) return false;
    const u8 = this.u8;
    for (let i = 0; i < len; i++) if (u8[start + i] !== b[i]) return false;
    return true;
  }
}
