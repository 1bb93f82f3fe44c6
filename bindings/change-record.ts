/**
 * The change-record format every backend writes and the runtime reads: which shard a key's changes go
 * to, how sequencers order them, the change stream's name, and the record's encoding.
 */
import { codec } from './codec.ts';
import type { Cause, ChangeRecord } from './types.ts';

/** Default number of shards of a bucket's change stream. */
export const DEFAULT_BUCKET_SHARDS = 8;

/**
 * The shard of a key: FNV-1a (32-bit) over the key's UTF-8 bytes, modulo `shards`. Pure and stable
 * across processes and backends; the runtime uses the same function to route records.
 */
export function shardOf(key: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    let c = key.charCodeAt(i);
    // Hash UTF-8 bytes without allocating: expand the code point inline.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < key.length) {
      c = 0x10000 + ((c - 0xd800) << 10) + (key.charCodeAt(++i) - 0xdc00);
      h = Math.imul(h ^ (0xf0 | (c >> 18)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193);
    } else if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
    } else if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193);
    } else {
      h = Math.imul(h ^ (0xe0 | (c >> 12)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193);
    }
  }
  return (h >>> 0) % shards;
}

/** Fixed-width hex sequencer: string order equals numeric order. */
export function sequencer(n: number): string {
  return n.toString(16).padStart(16, '0');
}

/** Name of a bucket's change stream (reserved: user stream names cannot start with '$'). */
export function changeStreamName(bucket: string): string {
  return `$changes.${bucket}`;
}

/** The bucket of a change stream name, or undefined for a user stream. */
export function bucketOfChangeStream(name: string): string | undefined {
  return name.startsWith('$changes.') ? name.slice('$changes.'.length) : undefined;
}

/** Encodes a change record as stream record data. */
export function encodeChange(c: ChangeRecord): Uint8Array {
  return codec.pack(c);
}

/** Decodes stream record data of a change stream. */
export function decodeChange(data: Uint8Array): ChangeRecord {
  const c = codec.unpack(data) as ChangeRecord;
  if (!(c.mtime instanceof Date)) c.mtime = new Date(c.mtime as unknown as number);
  return c;
}

/**
 * A cause as one header value, `<hop> <fn>` (NATS: the `Sluice-Cause` header of a stream message, and
 * the `f`/`h` fields of an object message's change summary carry the same two values).
 */
export function formatCause(c: Cause): string {
  return `${c.hop} ${c.fn}`;
}

/** The cause of a {@link formatCause} value; undefined when malformed (a message sluice did not write). */
export function parseCause(s: string | undefined): Cause | undefined {
  const m = s === undefined ? null : /^(\d{1,15}) ([a-z0-9][a-z0-9-]{0,62})$/.exec(s);
  return m ? { fn: m[2]!, hop: Number(m[1]) } : undefined;
}
