/**
 * Committing what handlers declared, exactly once in effect (DESIGN invariant 2):
 * per record, ONE conditional attribute write that applies the effects together with the function's
 * processed-marker for that object (`$sluice.<function>` = the record's sequence), guarded by
 * "the marker is older than this record" — so a redelivered record never applies twice.
 * Dead letters go to the function's dead-letter stream with the error and the attempt count.
 */
import { SluiceError } from '../bindings/errors.ts';
import type { Expression, ObjectBinding, StreamBinding } from '../bindings/types.ts';
import { isEmptyEffect, type RecordEffects } from '../functions/effects.ts';
import type { BatchRecordInput } from './batch-types.ts';

/** Attribute holding a function's processed-marker on an object. */
export function markerAttr(fn: string): string {
  return `$sluice.${fn}`;
}

/** Result of committing one record's effects. */
export type EffectOutcome = 'ok' | 'duplicate' | 'gone' | { error: { code: string; message: string }; permanent: boolean };

/** Errors that will fail the same way on every attempt: dead-letter at once. */
const PERMANENT = new Set(['SLUICE_EXPRESSION_SYNTAX', 'SLUICE_EXPRESSION_INVALID', 'SLUICE_VALUE_TOO_LARGE', 'SLUICE_VALUE_INVALID', 'SLUICE_INVALID_ARGUMENT']);

/** The update expressions of one record's effects plus the marker write. */
export function effectUpdates(fx: RecordEffects, fn: string, seq: number): Expression[] {
  const names: Record<string, string> = { '#m': markerAttr(fn) };
  const values: Record<string, import('../bindings/types.ts').Value> = { ':seq': seq };
  const set: string[] = ['#m = :seq'];
  let i = 0;
  for (const [k, v] of Object.entries(fx.set)) {
    names[`#s${i}`] = k;
    values[`:s${i}`] = v;
    set.push(`#s${i} = :s${i}`);
    i++;
  }
  const remove = fx.remove.map((k, j) => {
    names[`#r${j}`] = k;
    return `#r${j}`;
  });
  const first: Expression = { expr: `SET ${set.join(', ')}${remove.length ? ` REMOVE ${remove.join(', ')}` : ''}`, names, values };
  return [first, ...fx.updates];
}

/** Commits one object record's attribute effects with its marker. */
export async function commitObjectEffects(objects: ObjectBinding, fn: string, rec: BatchRecordInput, fx: RecordEffects): Promise<EffectOutcome> {
  if (isEmptyEffect(fx)) return 'ok';
  try {
    await objects.updateAttrs(rec.key, effectUpdates(fx, fn, rec.seq), {
      condition: { expr: 'not_exists(#m) OR #m < :seq', names: { '#m': markerAttr(fn) }, values: { ':seq': rec.seq } },
    });
    return 'ok';
  } catch (e) {
    if (e instanceof SluiceError) {
      // The marker is at or past this record: an earlier delivery already committed it.
      if (e.code === 'SLUICE_CONDITION_FAILED') return 'duplicate';
      // The object was deleted since: its effects have nothing to land on.
      if (e.code === 'SLUICE_NOT_FOUND') return 'gone';
      return { error: { code: e.code, message: e.message }, permanent: PERMANENT.has(e.code) };
    }
    return { error: { code: 'SLUICE_INTERNAL', message: String((e as Error)?.message ?? e) }, permanent: false };
  }
}

/** A dead letter as stored on the dead-letter stream (JSON). */
export interface DeadLetter {
  function: string;
  source: string;
  shard: number;
  seq: number;
  key: string;
  type: string;
  version: number;
  attempts: number;
  firstAttemptAt: string;
  deadAt: string;
  error: { code: string; message: string };
}

/** Writes dead letters; throws when the stream refuses any of them (the checkpoint then keeps them pending). */
export async function writeDeadLetters(streams: StreamBinding, stream: string, letters: DeadLetter[]): Promise<void> {
  for (let i = 0; i < letters.length; i += 500) {
    const chunk = letters.slice(i, i + 500);
    const res = await streams.putRecords(
      stream,
      chunk.map((l) => ({ data: JSON.stringify(l), partitionKey: l.key || String(l.seq), headers: { 'content-type': 'application/json', 'sluice-function': l.function } })),
    );
    const bad = res.find((r) => !r.ok);
    if (bad && !bad.ok) throw new SluiceError('SLUICE_INTERNAL', `dead-letter stream '${stream}' refused a record: ${bad.error.message}`);
  }
}
