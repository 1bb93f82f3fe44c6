/**
 * Reads a `Results` Cap'n Proto message back into {@link BatchEffects} (main thread side). Everything
 * is copied out of the slot: the effects outlive it (the committer holds them while the slot serves
 * the next batch).
 */
import { codec } from '../../bindings/shared.ts';
import type { Expression } from '../../bindings/types.ts';
import type { BatchEffects, ExtraEffect, RecordEffects } from '../../functions/effects.ts';
import { readAttrList } from './batch-reader.ts';
import { CounterLayout, FRAME_BYTES, malformed, RecordResultLayout, ResultsLayout, WireReader } from './wire.ts';

type Failure = NonNullable<BatchEffects['error']>;

function parseFailure(json: string, at: number): Failure {
  try {
    return JSON.parse(json) as Failure;
  } catch (cause) {
    throw malformed(`failure is not JSON (${String(cause)})`, at);
  }
}

/** Decodes the results message at the start of `src`. */
export function readResults(src: Uint8Array): BatchEffects {
  const r = new WireReader(src);
  const s = new Int32Array(4);
  const root = r.structAt(FRAME_BYTES);
  if (root < 0) throw malformed('null root pointer', FRAME_BYTES);
  const sizes = r.structSizes(FRAME_BYTES);
  const rp = root + (sizes & 0xffff) * 8;
  const ptrWords = sizes >>> 16;
  const out: BatchEffects = { records: [], counters: {} };

  if (ptrWords > ResultsLayout.pRecords) {
    r.compositeList(rp + ResultsLayout.pRecords * 8, s);
    const base = s[0] as number;
    const n = s[1] as number;
    const dataBytes = (s[2] as number) * 8;
    const recPtrs = s[3] as number;
    const stride = dataBytes + recPtrs * 8;
    const records = new Array<RecordEffects>(n);
    for (let i = 0; i < n; i++) records[i] = readRecordResult(r, base + i * stride + dataBytes, recPtrs, s);
    out.records = records;
  }

  if (ptrWords > ResultsLayout.pCounters) {
    r.compositeList(rp + ResultsLayout.pCounters * 8, s);
    const base = s[0] as number;
    const n = s[1] as number;
    const dataBytes = (s[2] as number) * 8;
    const stride = dataBytes + (s[3] as number) * 8;
    const cptrs = s[3] as number;
    for (let i = 0; i < n; i++) {
      const c = base + i * stride;
      const name = cptrs > CounterLayout.pName ? r.text(c + dataBytes + CounterLayout.pName * 8) : '';
      out.counters[name] = dataBytes >= 8 ? r.dv.getFloat64(c + CounterLayout.value, true) : 0;
    }
  }

  if (ptrWords > ResultsLayout.pError) {
    const err = r.text(rp + ResultsLayout.pError * 8);
    if (err !== '') out.error = parseFailure(err, rp + ResultsLayout.pError * 8);
  }
  return out;
}

/** One RecordResult whose pointer section starts at `p`. */
function readRecordResult(r: WireReader, p: number, ptrWords: number, s: Int32Array): RecordEffects {
  const e: RecordEffects = { set: {}, remove: [], updates: [] };
  const dv = r.dv;
  // Fast path: a record without effects is null pointers only.
  let any = 0;
  for (let i = 0; i < ptrWords; i++) any |= dv.getInt32(p + i * 8, true) | dv.getInt32(p + i * 8 + 4, true);
  if (any === 0) return e;

  if (ptrWords > RecordResultLayout.pSet) e.set = readAttrList(r, p + RecordResultLayout.pSet * 8, s);
  if (ptrWords > RecordResultLayout.pRemove) {
    r.pointerList(p + RecordResultLayout.pRemove * 8, s);
    const base = s[0] as number;
    const n = s[1] as number;
    for (let i = 0; i < n; i++) e.remove.push(r.text(base + i * 8));
  }
  if (ptrWords > RecordResultLayout.pUpdates) {
    r.bytesAt(p + RecordResultLayout.pUpdates * 8, s);
    if ((s[1] as number) > 0) e.updates = codec.unpack(r.u8.slice(s[0], (s[0] as number) + (s[1] as number))) as Expression[];
  }
  if (ptrWords > RecordResultLayout.pFailure) {
    const f = r.text(p + RecordResultLayout.pFailure * 8);
    if (f !== '') e.failure = parseFailure(f, p + RecordResultLayout.pFailure * 8);
  }
  if (ptrWords > RecordResultLayout.pExtra) {
    r.bytesAt(p + RecordResultLayout.pExtra * 8, s);
    if ((s[1] as number) > 0) e.extra = codec.unpack(r.u8.slice(s[0], (s[0] as number) + (s[1] as number))) as ExtraEffect[];
  }
  return e;
}
