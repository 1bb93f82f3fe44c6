/**
 * Writes a {@link BatchInput} as one `Batch` Cap'n Proto message straight into a shared-memory slot.
 *
 * Allocation order (the same as building with capnp-es field by field, which the layout test does to
 * compare bytes): root Batch; function, source, batchId texts; the records list; then per record its
 * key, source (only when it differs from the batch's), etag, contentType texts, the attrs list with
 * each attr's name then value, the headers list with each name then value, and the body.
 */
import { codec } from '../../bindings/shared.ts';
import type { Value } from '../../bindings/types.ts';
import type { BatchInput, BatchRecordInput } from '../batch-types.ts';
import { AttrLayout, AttrWhich, BatchLayout, FRAME_BYTES, HeaderLayout, RecordLayout, setU64, WireWriter } from './wire.ts';

const TYPE_CODES: Readonly<Record<string, number>> = { put: 0, delete: 1, attrs: 2, record: 3 };

/**
 * Writes `batch` into `dst` and returns the bytes written. Throws BindingError SLUICE_SLOT_OVERFLOW
 * when the message does not fit; bytes past `dst` are never touched (bytes inside it may be).
 */
export function writeBatch(dst: Uint8Array, batch: BatchInput): number {
  const w = new WireWriter(dst, `batch '${batch.batchId}' of ${batch.records.length} records`);
  const dv = w.dv;
  const root = w.struct(FRAME_BYTES, BatchLayout.dataWords, BatchLayout.ptrWords);
  const rp = root + BatchLayout.dataWords * 8;
  w.text(rp + BatchLayout.pFunction * 8, batch.function);
  w.text(rp + BatchLayout.pSource * 8, batch.source);
  dv.setUint32(root + BatchLayout.shard, batch.shard, true);
  w.text(rp + BatchLayout.pBatchId * 8, batch.batchId);
  dv.setFloat64(root + BatchLayout.deadlineMs, batch.deadlineMs, true);
  const records = batch.records;
  const n = records.length;
  if (n === 0) return w.finish();
  const stride = (RecordLayout.dataWords + RecordLayout.ptrWords) * 8;
  let at = w.compositeList(rp + BatchLayout.pRecords * 8, n, RecordLayout.dataWords, RecordLayout.ptrWords);
  for (let i = 0; i < n; i++, at += stride) writeRecord(w, at, records[i] as BatchRecordInput, batch.source);
  return w.finish();
}

function writeRecord(w: WireWriter, at: number, r: BatchRecordInput, batchSource: string): void {
  const dv = w.dv;
  const p = at + RecordLayout.dataWords * 8;
  w.text(p + RecordLayout.pKey * 8, r.key);
  dv.setUint16(at + RecordLayout.type, TYPE_CODES[r.type] ?? 0, true);
  if (r.source !== batchSource) w.text(p + RecordLayout.pSource * 8, r.source);
  dv.setUint32(at + RecordLayout.shard, r.shard, true);
  setU64(dv, at + RecordLayout.seq, r.seq);
  setU64(dv, at + RecordLayout.version, r.version);
  setU64(dv, at + RecordLayout.size, r.size);
  dv.setFloat64(at + RecordLayout.mtimeMs, r.mtimeMs, true);
  w.text(p + RecordLayout.pEtag * 8, r.etag);
  w.text(p + RecordLayout.pContentType * 8, r.contentType);
  dv.setUint32(at + RecordLayout.attempt, r.attempt, true);
  const body = r.body;
  if (body !== undefined) w.u8[at + RecordLayout.hasBody] = 1;
  writeAttrs(w, p + RecordLayout.pAttrs * 8, r.attrs);
  const headers = r.headers;
  let hn = 0;
  for (const _ in headers) hn++;
  if (hn > 0) {
    const hs = (HeaderLayout.dataWords + HeaderLayout.ptrWords) * 8;
    let h = w.compositeList(p + RecordLayout.pHeaders * 8, hn, HeaderLayout.dataWords, HeaderLayout.ptrWords);
    for (const name in headers) {
      w.text(h + HeaderLayout.pName * 8, name);
      w.text(h + HeaderLayout.pValue * 8, headers[name] as string);
      h += hs;
    }
  }
  if (body !== undefined) w.data(p + RecordLayout.pBody * 8, body);
}

/**
 * Writes a map of attribute values as a `List(Attr)` at pointer `ptr` (null when empty). Shared with
 * the results writer (`RecordResult.set`).
 */
export function writeAttrs(w: WireWriter, ptr: number, attrs: Readonly<Record<string, Value>>): void {
  // Two for-in loops (count, then write) measured faster than one Object.keys (V8's enum cache).
  let n = 0;
  for (const _ in attrs) n++;
  if (n === 0) return;
  const dv = w.dv;
  const stride = (AttrLayout.dataWords + AttrLayout.ptrWords) * 8;
  let a = w.compositeList(ptr, n, AttrLayout.dataWords, AttrLayout.ptrWords);
  for (const name in attrs) {
    const v = attrs[name] as Value;
    const vp = a + AttrLayout.dataWords * 8 + AttrLayout.pValue * 8;
    w.text(a + AttrLayout.dataWords * 8 + AttrLayout.pName * 8, name);
    switch (typeof v) {
      case 'string':
        dv.setUint16(a + AttrLayout.which, AttrWhich.text, true);
        w.text(vp, v);
        break;
      case 'number':
        dv.setUint16(a + AttrLayout.which, AttrWhich.number, true);
        dv.setFloat64(a + AttrLayout.scalar, v, true);
        break;
      case 'boolean':
        dv.setUint16(a + AttrLayout.which, AttrWhich.bool, true);
        if (v) w.u8[a + AttrLayout.scalar] = 1;
        break;
      default:
        if (v === null) break; // discriminant 0 = null, already zero
        if (v instanceof Uint8Array) {
          dv.setUint16(a + AttrLayout.which, AttrWhich.bytes, true);
          w.data(vp, v);
        } else if (v instanceof Date) {
          dv.setUint16(a + AttrLayout.which, AttrWhich.timestampMs, true);
          dv.setFloat64(a + AttrLayout.scalar, v.getTime(), true);
        } else {
          // Lists and maps: msgpack through the one value codec of sluice.
          dv.setUint16(a + AttrLayout.which, AttrWhich.packed, true);
          w.data(vp, codec.pack(v));
        }
    }
    a += stride;
  }
}
