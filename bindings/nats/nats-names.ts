/**
 * Names of every NATS resource the backend uses, and the reversible encoding of sluice keys into
 * KV-key / subject tokens.
 *
 * Layout (prefix `p`, default 'sluice'):
 * - bucket `b`: KV bucket `p_obj_b` (stream `KV_p_obj_b`, metadata + change feed, keys `<shard>.<key>`)
 *   and Object Store `p_body_b` (stream `OBJ_p_body_b`, bodies larger than the inline bound);
 * - table `t`: KV bucket `p_kv_t` (keys `<key>`);
 * - user stream `s`: stream `p_st_s`, one subject per shard `p.st.s.<shard>`;
 * - KV bucket `p_meta`: consumer-group positions `group.<stream>.<incarnation>.<group>.<shard>`.
 *
 * Bucket, table and stream names pass `checkName` (lowercase letters, digits, '-'), which NATS stream,
 * KV and subject names all accept, so they are used verbatim.
 */
import { BindingError } from '../errors.ts';

/**
 * Encodes a sluice key (any UTF-8 string of at most 1024 bytes) as one KV-key token: base64url of its
 * UTF-8 bytes, without padding. The alphabet `[A-Za-z0-9_-]` is a subset of what KV keys and subject
 * tokens allow, the result is never empty for a non-empty key, holds no '.', and is at most 1368
 * characters for a 1024-byte key — far below the server's 4 KiB control-line bound.
 */
export function encodeKey(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

/** Inverse of {@link encodeKey}. */
export function decodeKey(token: string): string {
  return Buffer.from(token, 'base64url').toString('utf8');
}

/** Checks the resource prefix: it becomes part of stream names and subject tokens. */
export function checkPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(prefix))
    throw new BindingError(
      'SLUICE_INVALID_ARGUMENT',
      `nats backend: prefix ${JSON.stringify(prefix)} is invalid: use 1-32 letters, digits, '_' and '-', starting with a letter or digit`,
    );
}

/** Resource names of one backend instance. */
export class NatsNames {
  readonly prefix: string;

  constructor(prefix: string) {
    checkPrefix(prefix);
    this.prefix = prefix;
  }

  /** KV bucket holding a bucket's object metadata; its stream is the bucket's change stream. */
  objectKv(bucket: string): string {
    return `${this.prefix}_obj_${bucket}`;
  }

  /** Object Store holding a bucket's large bodies. */
  bodyStore(bucket: string): string {
    return `${this.prefix}_body_${bucket}`;
  }

  /** KV bucket of a table. */
  tableKv(table: string): string {
    return `${this.prefix}_kv_${table}`;
  }

  /** KV bucket of backend-wide metadata (consumer-group positions). */
  metaKv(): string {
    return `${this.prefix}_meta`;
  }

  /** JetStream stream of a user stream. */
  userStream(stream: string): string {
    return `${this.prefix}_st_${stream}`;
  }

  /** Subject of one shard of a user stream. */
  userSubject(stream: string, shard: number): string {
    return `${this.prefix}.st.${stream}.${shard}`;
  }

  /** Subjects a user stream captures. */
  userSubjects(stream: string): string {
    return `${this.prefix}.st.${stream}.*`;
  }
}

/** The stream backing a KV bucket. */
export function kvStream(kvBucket: string): string {
  return `KV_${kvBucket}`;
}

/** The subject of a KV key (`encodedKey` may hold '.'-separated tokens and wildcards). */
export function kvSubject(kvBucket: string, encodedKey: string): string {
  return `$KV.${kvBucket}.${encodedKey}`;
}

/** The KV key of an object: `<shard>.<encoded key>`, so one shard is the filter `<shard>.>`. */
export function objectKvKey(shard: number, key: string): string {
  return `${shard}.${encodeKey(key)}`;
}

/**
 * Decodes the object key from a subject of an object KV bucket (`$KV.<bucket>.<shard>.<token>`);
 * undefined when the subject is not of that shape.
 */
export function objectKeyOfSubject(subject: string, kvBucket: string): { shard: number; key: string } | undefined {
  const head = `$KV.${kvBucket}.`;
  if (!subject.startsWith(head)) return undefined;
  const rest = subject.slice(head.length);
  const dot = rest.indexOf('.');
  if (dot <= 0) return undefined;
  const shard = Number(rest.slice(0, dot));
  const token = rest.slice(dot + 1);
  if (!Number.isInteger(shard) || token.length === 0 || token.includes('.')) return undefined;
  return { shard, key: decodeKey(token) };
}

/** Decodes the item key from a subject of a table KV bucket (`$KV.<bucket>.<token>`). */
export function tableKeyOfSubject(subject: string, kvBucket: string): string | undefined {
  const head = `$KV.${kvBucket}.`;
  if (!subject.startsWith(head)) return undefined;
  const token = subject.slice(head.length);
  if (token.length === 0 || token.includes('.')) return undefined;
  return decodeKey(token);
}

/** Token of a stream name (user or `$changes.<b>`) inside meta keys. */
export function streamToken(name: string): string {
  return encodeKey(name);
}

/**
 * Name of an ephemeral consumer created by this process: unique, and recognisable in `nats consumer ls`.
 */
export function consumerName(kind: 'read' | 'scan' | 'seek', id: string): string {
  return `sluice_${kind}_${id}`;
}

/**
 * The fixed configuration of a bucket or user stream, kept in its JetStream stream's description:
 * creating the stream and recording its configuration is then one atomic step (no registry write
 * that could be lost or left behind), and `streams.add` with a different description fails with
 * "stream name already in use", which is how a second create with other options is detected.
 */
export interface SluiceDescription {
  sluice: 'bucket' | 'stream' | 'table';
  shards: number;
  retentionMs: number;
  /** Buckets: changes kept per key in the change stream (0 = all). */
  history?: number;
  /** Buckets: indexed fields, canonical and sorted (absent: none). */
  indexes?: string[];
}

/** The description text of a sluice stream. */
export function describe(d: SluiceDescription): string {
  return JSON.stringify(d);
}

/** Parses a stream description written by {@link describe}; undefined for anything else. */
export function parseDescription(text: string | undefined, kind: SluiceDescription['sluice']): SluiceDescription | undefined {
  if (!text) return undefined;
  try {
    const d = JSON.parse(text) as Partial<SluiceDescription>;
    if (d.sluice !== kind || !Number.isInteger(d.shards) || !Number.isInteger(d.retentionMs)) return undefined;
    return d as SluiceDescription;
  } catch {
    return undefined;
  }
}

/**
 * A token naming one incarnation of a stream (its creation time): consumer-group positions are kept
 * per incarnation, so a stream deleted and created again never inherits old positions.
 */
export function incarnationOf(created: string): string {
  return created.replace(/\D/g, '') || '0';
}
