/**
 * Writes a batch's {@link BatchEffects} as one `Results` Cap'n Proto message into its slot (handler
 * thread side). Allocation order: root Results; the records list; per record its `set` list (each
 * name then value), its `remove` list (pointers, then each text), `updates`, `failure`, `extra`; then the
 * counters list (each name); then `error`. Records without effects cost nothing but their zeroed
 * 5-pointer entry.
 */
import { codec } from '../../bindings/shared.ts';
import type { BatchEffects, RecordEffects } from '../../functions/effects.ts';
import { writeAttrs } from './batch-writer.ts';
import { CounterLayout, FRAME_BYTES, RecordResultLayout, ResultsLayout, WireWriter } from './wire.ts';

/** JSON of a failure; `details` that JSON cannot carry (bigint, cycles) are dropped rather than failing the batch. */
export function failureJson(f: object): string {
  try {
    return JSON.stringify(f);
  } catch {
    return JSON.stringify(f, (k, v: unknown) => (k === 'details' || typeof v === 'bigint' ? undefined : v));
  }
}

/**
 * Writes `effects` into `dst`; returns the bytes written. Throws BindingError SLUICE_SLOT_OVERFLOW
 * when they do not fit (nothing past `dst` is touched).
 */
export function writeResults(dst: Uint8Array, effects: BatchEffects): number {
  const w = new WireWriter(dst, `results of ${effects.records.length} records`);
  const root = w.struct(FRAME_BYTES, ResultsLayout.dataWords, ResultsLayout.ptrWords);
  const rp = root + ResultsLayout.dataWords * 8;
  const records = effects.records;
  const n = records.length;
  if (n > 0) {
    const stride = RecordResultLayout.ptrWords * 8;
    let at = w.compositeList(rp + ResultsLayout.pRecords * 8, n, RecordResultLayout.dataWords, RecordResultLayout.ptrWords);
    for (let i = 0; i < n; i++, at += stride) writeRecordResult(w, at, records[i] as RecordEffects);
  }
  const counters = effects.counters;
  let cn = 0;
  for (const _ in counters) cn++;
  if (cn > 0) {
    const stride = (CounterLayout.dataWords + CounterLayout.ptrWords) * 8;
    let c = w.compositeList(rp + ResultsLayout.pCounters * 8, cn, CounterLayout.dataWords, CounterLayout.ptrWords);
    for (const name in counters) {
      w.text(c + CounterLayout.dataWords * 8 + CounterLayout.pName * 8, name);
      w.dv.setFloat64(c + CounterLayout.value, counters[name] as number, true);
      c += stride;
    }
  }
  if (effects.error !== undefined) w.text(rp + ResultsLayout.pError * 8, failureJson(effects.error));
  return w.finish();
}

function writeRecordResult(w: WireWriter, at: number, e: RecordEffects): void {
  writeAttrs(w, at + RecordResultLayout.pSet * 8, e.set);
  const remove = e.remove;
  if (remove.length > 0) {
    const l = w.pointerList(at + RecordResultLayout.pRemove * 8, remove.length);
    for (let i = 0; i < remove.length; i++) w.text(l + i * 8, remove[i] as string);
  }
  if (e.updates.length > 0) w.data(at + RecordResultLayout.pUpdates * 8, codec.pack(e.updates));
  if (e.failure !== undefined) w.text(at + RecordResultLayout.pFailure * 8, failureJson(e.failure));
  if (e.extra !== undefined && e.extra.length > 0) w.data(at + RecordResultLayout.pExtra * 8, codec.pack(e.extra));
}
