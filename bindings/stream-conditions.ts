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
 * How long a stream remembers a record's {@link PutRecord.dedupeId}: JetStream's duplicate window as
 * sluice creates streams (2 minutes, or the retention when shorter), and the local backend keeps the
 * same window so both backends de-duplicate alike.
 */
export function dedupeWindowMs(retentionMs: number): number {
  return retentionMs === 0 ? 120_000 : Math.max(100, Math.min(120_000, retentionMs));
}

/** Longest {@link PutRecord.dedupeId}, in UTF-16 units (ids are ASCII in practice). */
export const MAX_DEDUPE_ID_CHARS = 256;

/** The record's `dedupeId` (undefined: none), or the per-record error of a malformed one. */
export function resolveDedupeId(name: string, i: number, r: PutRecord): { ok: true; dedupeId: string | undefined } | { ok: false; error: { code: string; message: string } } {
  const v = (r as { dedupeId?: unknown } | null)?.dedupeId;
  if (v === undefined) return { ok: true, dedupeId: undefined };
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_DEDUPE_ID_CHARS || !/^[\x21-\x7e]+$/.test(v))
    return { ok: false, error: { code: 'SLUICE_INVALID_ARGUMENT', message: `putRecords '${name}' record ${i}: dedupeId must be 1..${MAX_DEDUPE_ID_CHARS} printable ASCII characters, got ${JSON.stringify(v).slice(0, 80)}` } };
  return { ok: true, dedupeId: v };
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
