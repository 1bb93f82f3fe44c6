/**
 * Redrive of a dead letter: puts the failed event back on the trigger path of its function, so the
 * function's workers handle it again through the normal batch → handler → commit path.
 *
 * - Stream triggers: the original record is read back from its source stream (shard and seq are in the
 *   dead letter) and appended again with the same data, partition key and headers, plus
 *   `sluice-redrive-of: <shard>/<seq>`. It lands at a new sequence, so it is a new record for every
 *   consumer of that stream — as a redriven SQS message is.
 * - Object triggers: a bucket's change stream is written only by its bucket (invariant 1), so the
 *   object is put again in place with its current body, content type and attributes — the "copy an S3
 *   object onto itself" way of re-firing its event notification. The new `put` change reaches every
 *   function triggered by that bucket, not only the dead-lettering one, and takes the object to a new
 *   version. When the object is gone there is nothing to redrive (`gone`).
 *
 * Dead-letter streams are append-only: a redriven letter stays where it is; callers that want to show
 * which letters were redriven record it themselves (the console keeps that in the state table).
 */
import { BindingError, SluiceError } from '../bindings/errors.ts';
import { bucketOfChangeStream } from '../bindings/shared.ts';
import type { Attrs, Backend } from '../bindings/types.ts';

/** The fields of a dead letter (runtime/committer.ts `DeadLetter`) that redrive needs. */
export interface RedriveLetter {
  function: string;
  /** Stream the record was read from: a user stream, or a bucket's change stream. */
  source: string;
  shard: number;
  seq: number;
  key: string;
}

/** What a redrive did. */
export type RedriveOutcome =
  | { status: 'requeued'; stream: string; shard: number; seq: number }
  | { status: 'reput'; bucket: string; key: string; version: number }
  | { status: 'gone'; reason: string };

/** Parses and checks a dead letter's JSON; SLUICE_VALUE_INVALID naming the field that is wrong. */
export function parseDeadLetter(data: Uint8Array | string): RedriveLetter & Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
  } catch (e) {
    throw new BindingError('SLUICE_VALUE_INVALID', `dead letter is not JSON: ${(e as Error).message}`, { cause: e });
  }
  const o = v as Record<string, unknown>;
  if (typeof o !== 'object' || o === null) throw new BindingError('SLUICE_VALUE_INVALID', 'dead letter must be a JSON object');
  for (const f of ['function', 'source', 'key'] as const) if (typeof o[f] !== 'string') throw new BindingError('SLUICE_VALUE_INVALID', `dead letter field '${f}' must be a string`);
  for (const f of ['shard', 'seq'] as const) if (!Number.isInteger(o[f])) throw new BindingError('SLUICE_VALUE_INVALID', `dead letter field '${f}' must be an integer`);
  return o as RedriveLetter & Record<string, unknown>;
}

/** Puts one dead letter's event back on its function's trigger path (see the header for how). */
export async function redriveDeadLetter(backend: Backend, letter: RedriveLetter): Promise<RedriveOutcome> {
  const bucket = bucketOfChangeStream(letter.source);
  if (bucket !== undefined) {
    const objects = await backend.objects(bucket);
    let cur;
    try {
      cur = await objects.get(letter.key);
    } catch (e) {
      if (e instanceof SluiceError && e.code === 'SLUICE_NOT_FOUND') return { status: 'gone', reason: `object '${letter.key}' no longer exists in bucket '${bucket}'` };
      throw e;
    }
    // Internal fields (processed-markers) are not the user's to copy; the put drops them, which is what
    // makes every function on the bucket handle the new version.
    const attrs: Attrs = {};
    for (const [k, v] of Object.entries(cur.attrs)) if (!k.startsWith('$sluice.')) attrs[k] = v;
    const r = await objects.put(letter.key, cur.body, { contentType: cur.contentType, attrs, ifMatch: cur.etag });
    return { status: 'reput', bucket, key: letter.key, version: r.version };
  }
  const streams = backend.streams();
  const page = await streams.getRecords({ stream: letter.source, shard: letter.shard, seq: letter.seq }, { limit: 1 });
  const rec = page.records[0];
  if (!rec || rec.seq !== letter.seq) return { status: 'gone', reason: `record ${letter.shard}/${letter.seq} is no longer retained by stream '${letter.source}'` };
  const [res] = await streams.putRecords(letter.source, [
    { data: rec.data, shard: rec.shard, headers: { ...rec.headers, 'sluice-redrive-of': `${rec.shard}/${rec.seq}` }, ...(rec.partitionKey !== undefined ? { partitionKey: rec.partitionKey } : {}) },
  ]);
  if (!res || !res.ok) throw new BindingError('SLUICE_INTERNAL', `stream '${letter.source}' refused the redriven record: ${res && !res.ok ? res.error.message : 'no result'}`);
  return { status: 'requeued', stream: letter.source, shard: res.shard, seq: res.seq };
}
