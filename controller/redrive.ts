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
 * Dead-letter streams are append-only: a redriven letter stays where it is. {@link redrive} (the console's
 * and `sluice dlq redrive`'s one path) records each redrive in the state table and redrives a letter
 * once; {@link readDeadLetters} lists letters with those marks.
 */
import { BindingError, ConditionFailedError, SluiceError } from '../bindings/errors.ts';
import { bucketOfChangeStream } from '../bindings/shared.ts';
import type { Attrs, Backend, KvBinding } from '../bindings/types.ts';

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

/** One dead letter as `sluice dlq ls` and the console show it. */
export interface DeadLetterView {
  shard: number;
  seq: number;
  time: string;
  letter: Record<string, unknown>;
  /** Set once the letter was redriven (by the console or `sluice dlq redrive`): when, and what it did. */
  redriven?: RedriveMark;
}

/** The record of one redrive; `outcome` is `pending` from the claim until the redrive has run. */
export interface RedriveMark {
  at: string;
  outcome: RedriveOutcome | { status: 'pending' };
}

/** What {@link redrive} did: the redrive's outcome, or `already` (redriven before; nothing done). */
export type RedriveResult = RedriveOutcome | { status: 'already'; at: string; previous: RedriveMark['outcome'] };

/** Options of {@link redrive}. */
export interface RedriveOptions {
  /** Redrive a letter that was redriven before (its record then runs once more). @default false */
  again?: boolean;
  /** The function's dead-letter stream. @default `dlq-<function>` */
  stream?: string;
}

/** Redrive marks are kept per function in the state table, the newest 1000. */
const MAX_MARKS = 1000;
const redrivenKey = (fn: string) => `console/redriven/${fn}`;

/** The newest `limit` dead letters of a function (newest first), with their redrive marks. */
export async function readDeadLetters(backend: Backend, state: KvBinding, fn: string, limit: number, stream = `dlq-${fn}`): Promise<{ stream: string; total: number; letters: DeadLetterView[] }> {
  const streams = backend.streams();
  let info;
  try {
    info = await streams.info(stream);
  } catch (e) {
    if (e instanceof SluiceError && e.code === 'SLUICE_STREAM_NOT_FOUND') return { stream, total: 0, letters: [] };
    throw e;
  }
  const redriven = ((await state.getItem(redrivenKey(fn)))?.item ?? {}) as unknown as Record<string, RedriveMark>;
  const letters: DeadLetterView[] = [];
  let total = 0;
  for (let s = 0; s < info.shards; s++) {
    const { first, last } = info.bounds[s]!;
    total += Math.max(0, last - first + 1);
    if (last < first) continue;
    const page = await streams.getRecords({ stream, shard: s, seq: Math.max(first, last - limit + 1) }, { limit });
    for (const r of page.records) {
      let letter: Record<string, unknown>;
      try {
        letter = parseDeadLetter(r.data);
      } catch (e) {
        letter = { error: { code: 'SLUICE_VALUE_INVALID', message: (e as Error).message } };
      }
      const mark = redriven[`${s}/${r.seq}`];
      letters.push({ shard: s, seq: r.seq, time: r.time.toISOString(), letter, ...(mark ? { redriven: mark } : {}) });
    }
  }
  letters.sort((a, b) => b.time.localeCompare(a.time) || b.seq - a.seq);
  return { stream, total, letters: letters.slice(0, limit) };
}

/**
 * Redrives dead letter `shard/seq` of `fn` ONCE: the letter is claimed in the state table (a revision
 * condition, so two redrives racing — two consoles, a console and the CLI — claim it once) before its
 * record goes back on the trigger path, and the outcome replaces the claim after. A letter redriven
 * before gives `already` and nothing happens, unless `again`: redriving twice would run the record twice,
 * which is not what "exactly-once effect" promises. (A crash between the claim and the redrive leaves the
 * claim `pending`; `again` redrives such a letter.)
 */
export async function redrive(backend: Backend, state: KvBinding, fn: string, shard: number, seq: number, options: RedriveOptions = {}): Promise<RedriveResult> {
  const stream = options.stream ?? `dlq-${fn}`;
  const page = await backend.streams().getRecords({ stream, shard, seq }, { limit: 1 });
  const rec = page.records[0];
  if (!rec || rec.seq !== seq) throw new BindingError('SLUICE_NOT_FOUND', `dead letter ${shard}/${seq} of '${fn}' is not in stream '${stream}'`);
  const letter = parseDeadLetter(rec.data);
  if (letter.function !== fn) throw new BindingError('SLUICE_INVALID_ARGUMENT', `dead letter ${shard}/${seq} belongs to '${letter.function}', not '${fn}'`);
  const id = `${shard}/${seq}`;
  const claimed = await mark(state, fn, id, (prev) => (prev && !options.again ? undefined : { at: new Date().toISOString(), outcome: { status: 'pending' } }));
  if (claimed.skipped) return { status: 'already', at: claimed.skipped.at, previous: claimed.skipped.outcome };
  const outcome = await redriveDeadLetter(backend, letter);
  await mark(state, fn, id, () => ({ at: new Date().toISOString(), outcome }));
  return outcome;
}

/**
 * Sets the mark `id` of `fn` to `next(previous)` with a revision condition, retrying a lost race;
 * `next` returning undefined leaves it as is (`skipped` carries the mark that stays).
 */
async function mark(state: KvBinding, fn: string, id: string, next: (prev: RedriveMark | undefined) => RedriveMark | undefined): Promise<{ skipped?: RedriveMark }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const cur = await state.getItem(redrivenKey(fn));
    const marks = { ...((cur?.item ?? {}) as unknown as Record<string, RedriveMark>) };
    const prev = marks[id];
    const m = next(prev);
    if (m === undefined) return { skipped: prev! };
    // Re-inserted last, so the newest marks are the ones kept.
    delete marks[id];
    marks[id] = m;
    const keys = Object.keys(marks);
    for (const k of keys.slice(0, Math.max(0, keys.length - MAX_MARKS))) delete marks[k];
    try {
      await state.putItem(redrivenKey(fn), marks as unknown as Record<string, never>, { ifRevision: cur?.revision ?? 0 });
      return {};
    } catch (e) {
      if (!(e instanceof ConditionFailedError)) throw e;
    }
  }
  throw new BindingError('SLUICE_CONFLICT', `redrive marks of '${fn}': too many concurrent redrives`);
}
