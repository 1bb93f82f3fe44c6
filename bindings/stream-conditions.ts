/**
 * The one check of a record's append condition ({@link PutRecord.ifLastSeq}), shared by every backend so
 * that a malformed condition is the same per-record error everywhere.
 */
import type { PutRecord, StreamBinding, StreamRecord } from './types.ts';

/** The record's `ifLastSeq` (undefined: no condition), or the per-record error of a malformed one. */
export function resolveIfLastSeq(name: string, i: number, r: PutRecord): { ok: true; ifLastSeq: number | undefined } | { ok: false; error: { code: string; message: string } } {
  const v = (r as { ifLastSeq?: unknown } | null)?.ifLastSeq;
  if (v === undefined) return { ok: true, ifLastSeq: undefined };
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    return { ok: false, error: { code: 'SLUICE_INVALID_ARGUMENT', message: `putRecords '${name}' record ${i}: ifLastSeq must be a non-negative integer, got ${JSON.stringify(v)}` } };
  return { ok: true, ifLastSeq: v };
}

/** The per-record error of an append whose condition did not hold. */
export function lastSeqMismatch(name: string, i: number, shard: number, expected: number, actual: number | undefined): { ok: false; error: { code: string; message: string } } {
  const now = actual === undefined ? 'another sequence' : String(actual);
  return { ok: false, error: { code: 'SLUICE_CONDITION_FAILED', message: `putRecords '${name}' record ${i}: shard ${shard} ends at ${now}, not at ifLastSeq ${expected}; nothing was appended` } };
}

/**
 * The last record of shard 0 of a one-shard stream, or undefined when the shard holds none: what an
 * appender chaining its appends with `ifLastSeq` reads first (the cron ticker, the query scheduler).
 */
export async function lastRecordOfShard0(streams: StreamBinding, stream: string): Promise<StreamRecord | undefined> {
  const b = (await streams.info(stream)).bounds[0];
  if (b === undefined || b.first > b.last) return undefined;
  return (await streams.getRecords({ stream, shard: 0, seq: b.last }, { limit: 1 })).records[0];
}
