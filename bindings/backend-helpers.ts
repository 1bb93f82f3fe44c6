/**
 * Checks and helpers every backend shares, so that behaviour and error messages are the same whatever
 * the backend: etags, put/list/stream/scan argument resolution, list pagination, KV write conditions.
 */
import { createHash } from 'node:crypto';
import { shardOf } from './change-record.ts';
import { BindingError, ConditionFailedError } from './errors.ts';
import { checkCondition, checkUpdate, evaluateCondition, type Expression } from './expr/index.ts';
import type {
  Cause,
  ConditionalOptions,
  GetItemsOptions,
  GetRecordsOptions,
  ListOptions,
  ListResult,
  ObjectMeta,
  PutObjectOptions,
  PutRecord,
  SeekPosition,
  StreamOptions,
  TableOptions,
} from './types.ts';
import { checkAttrs, checkKey, compareKeys, Limits, utf8Length, visibleAttrs, type Attrs, type Item } from './values.ts';

/** Hex MD5 of a body: the etag. */
export function etagOf(body: Uint8Array): string {
  return createHash('md5').update(body).digest('hex');
}

/** Body bytes of a put: strings are UTF-8 encoded. Validates type and size. */
export function bodyBytes(body: unknown, where: string): Uint8Array {
  let b: Uint8Array;
  if (typeof body === 'string') b = Buffer.from(body, 'utf8');
  else if (body instanceof Uint8Array) b = body;
  else throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: body must be a Uint8Array or a string`);
  if (b.byteLength > Limits.maxObjectBytes)
    throw new BindingError('SLUICE_VALUE_TOO_LARGE', `${where}: body is ${b.byteLength} bytes; an object holds at most ${Limits.maxObjectBytes} bytes`);
  return b;
}

/** Validated put options with defaults applied. */
export interface ResolvedPut {
  contentType: string;
  attrs: Record<string, import('./values.ts').Value>;
  ifMatch: string | undefined;
  ifNoneMatch: boolean;
}

/** Validates key and options of an object put before anything is written. */
export function resolvePut(bucket: string, key: unknown, options: PutObjectOptions | undefined): ResolvedPut {
  checkKey(key, `bucket '${bucket}': key`);
  const o = options ?? {};
  const contentType = o.contentType ?? 'application/octet-stream';
  if (typeof contentType !== 'string' || contentType.length === 0 || utf8Length(contentType) > Limits.maxContentTypeBytes)
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `put '${key}': contentType must be a non-empty string of at most ${Limits.maxContentTypeBytes} bytes`);
  const attrs = o.attrs ?? {};
  checkAttrs(attrs, `put '${key}': attrs`);
  if (o.ifMatch !== undefined && typeof o.ifMatch !== 'string') throw new BindingError('SLUICE_INVALID_ARGUMENT', `put '${key}': ifMatch must be an etag string`);
  if (o.ifNoneMatch !== undefined && o.ifNoneMatch !== '*') throw new BindingError('SLUICE_INVALID_ARGUMENT', `put '${key}': ifNoneMatch must be '*'`);
  return { contentType, attrs, ifMatch: o.ifMatch, ifNoneMatch: o.ifNoneMatch === '*' };
}

/** Checks an object's current etag against ifMatch / ifNoneMatch; throws the coded condition error. */
export function checkPreconditions(
  key: string,
  current: { etag: string } | undefined,
  ifMatch: string | undefined,
  ifNoneMatch: boolean,
  makeError: (msg: string) => Error,
): void {
  if (ifNoneMatch && current) throw makeError(`put '${key}': ifNoneMatch '*' but the object exists (etag ${current.etag})`);
  if (ifMatch !== undefined && (!current || current.etag !== ifMatch))
    throw makeError(`'${key}': ifMatch ${ifMatch} but the object ${current ? `has etag ${current.etag}` : 'does not exist'}`);
}

/** Resolves a byte range against a body size. */
export function resolveRange(key: string, size: number, range: { start?: number; end?: number } | undefined): { start: number; end: number } {
  const start = range?.start ?? 0;
  const end = Math.min(range?.end ?? size, size);
  if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(end) || end < start)
    throw new BindingError('SLUICE_RANGE_INVALID', `get '${key}': range ${JSON.stringify(range)} is not 0 <= start <= end`);
  if (start > size || (start === size && size > 0 && range?.start !== undefined))
    throw new BindingError('SLUICE_RANGE_INVALID', `get '${key}': range start ${start} lies past the end of the object (${size} bytes)`);
  return { start, end };
}

function positiveInt(v: unknown, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return v;
}

/** Validates a shard count. */
export function resolveShards(v: unknown, where: string, dflt: number): number {
  return positiveInt(v, `${where}.shards`, 1, Limits.maxShards, dflt);
}

/** Most JetStream replicas of one stream (the server's own limit). */
export const MAX_REPLICAS = 5;

/**
 * The replication factor asked for a bucket, table or stream: undefined (the backend's default) or an
 * integer 1..5. One check for every backend, so a value one refuses the other refuses too (the local
 * backend then ignores a valid one: a single machine keeps one copy).
 */
export function resolveReplicas(v: unknown, where: string): number | undefined {
  return v === undefined ? undefined : positiveInt(v, `${where}.replicas`, 1, MAX_REPLICAS, 1);
}

/** Validates createTable options (only `replicas`); returns the factor asked for. */
export function resolveTableOptions(name: string, o: unknown): number | undefined {
  if (o === undefined) return undefined;
  if (o === null || typeof o !== 'object') throw new BindingError('SLUICE_INVALID_ARGUMENT', `createTable '${name}': options must be an object`);
  const extra = Object.keys(o).filter((k) => k !== 'replicas');
  if (extra.length > 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `createTable '${name}': unknown option '${extra[0]}' (tables take only replicas)`);
  return resolveReplicas((o as TableOptions).replicas, `table '${name}'`);
}

/** Resolved listing options. */
export interface ResolvedList {
  prefix: string;
  delimiter: string | undefined;
  /** Exclusive lower bound: the first entry returned is greater than this ('' = from the start). */
  after: string;
  limit: number;
}

interface ListToken {
  v: 1;
  b: string;
  p: string;
  d: string;
  a: string;
}

/** Validates listing options and decodes the continuation token. */
export function resolveList(bucket: string, o: ListOptions | undefined): ResolvedList {
  const opts = o ?? {};
  const prefix = opts.prefix ?? '';
  if (typeof prefix !== 'string') throw new BindingError('SLUICE_INVALID_ARGUMENT', `list '${bucket}': prefix must be a string`);
  const delimiter = opts.delimiter;
  if (delimiter !== undefined && (typeof delimiter !== 'string' || delimiter.length === 0))
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `list '${bucket}': delimiter must be a non-empty string`);
  const limit = positiveInt(opts.limit, `list '${bucket}': limit`, 1, 10_000, 1000);
  let after = opts.startAfter ?? '';
  if (typeof after !== 'string') throw new BindingError('SLUICE_INVALID_ARGUMENT', `list '${bucket}': startAfter must be a string`);
  if (opts.continuationToken !== undefined) {
    let t: ListToken;
    try {
      t = JSON.parse(Buffer.from(opts.continuationToken, 'base64url').toString('utf8')) as ListToken;
    } catch (cause) {
      throw new BindingError('SLUICE_CURSOR_INVALID', `list '${bucket}': continuationToken is malformed`, { cause });
    }
    if (t?.v !== 1 || t.b !== bucket || t.p !== prefix || t.d !== (delimiter ?? '') || typeof t.a !== 'string')
      throw new BindingError('SLUICE_CURSOR_INVALID', `list '${bucket}': continuationToken belongs to another bucket, prefix or delimiter`);
    after = t.a;
  }
  return { prefix, delimiter, after, limit };
}

/**
 * Builds one listing page from objects in key order whose keys are > `r.after` and start with
 * `r.prefix` (the source may yield more; iteration stops at the first key past the prefix).
 * Rolls keys up into common prefixes when a delimiter is set.
 */
export function listPage(bucket: string, r: ResolvedList, sorted: Iterable<ObjectMeta>): ListResult {
  const objects: ObjectMeta[] = [];
  const commonPrefixes: string[] = [];
  let last = '';
  let more = false;
  for (const m of sorted) {
    const k = m.key;
    if (r.after !== '' && compareKeys(k, r.after) <= 0) continue;
    if (!k.startsWith(r.prefix)) {
      // Keys under one prefix are contiguous in key order: past them, nothing more can match.
      if (compareKeys(k, r.prefix) > 0) break;
      continue;
    }
    let entry: string | undefined;
    if (r.delimiter !== undefined) {
      const i = k.indexOf(r.delimiter, r.prefix.length);
      if (i >= 0) entry = k.slice(0, i + r.delimiter.length);
    }
    // Keys under a common prefix already returned (this page, or the previous one when the token
    // ends on it) are rolled into it.
    if (entry !== undefined && (entry === last || entry === r.after)) continue;
    if (objects.length + commonPrefixes.length === r.limit) {
      more = true;
      break;
    }
    if (entry !== undefined) {
      commonPrefixes.push(entry);
      last = entry;
    } else {
      objects.push(m);
      last = k;
    }
  }
  const out: ListResult = { objects, commonPrefixes };
  if (more) {
    const t: ListToken = { v: 1, b: bucket, p: r.prefix, d: r.delimiter ?? '', a: last };
    out.nextToken = Buffer.from(JSON.stringify(t), 'utf8').toString('base64url');
  }
  return out;
}

/** Validates stream creation options. */
export function resolveStreamOptions(name: string, o: StreamOptions | undefined): { shards: number; retentionMs: number; replicas: number | undefined } {
  const shards = resolveShards(o?.shards, `stream '${name}'`, 1);
  const replicas = resolveReplicas(o?.replicas, `stream '${name}'`);
  const retentionMs = o?.retentionMs ?? 0;
  if (typeof retentionMs !== 'number' || !Number.isSafeInteger(retentionMs) || retentionMs < 0)
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `stream '${name}'.retentionMs must be a non-negative integer, got ${JSON.stringify(retentionMs)}`);
  return { shards, retentionMs, replicas };
}

/** Validates one record of putRecords; returns its bytes and shard, or a coded error for that record alone. */
export function resolveRecord(
  name: string,
  i: number,
  r: PutRecord,
  shards: number,
): { ok: true; data: Uint8Array; shard: number; headers: Record<string, string>; partitionKey: string | undefined; cause: Cause | undefined } | { ok: false; error: { code: string; message: string } } {
  const where = `putRecords '${name}' record ${i}`;
  const fail = (code: string, message: string) => ({ ok: false as const, error: { code, message: `${where}: ${message}` } });
  if (r === null || typeof r !== 'object') return fail('SLUICE_INVALID_ARGUMENT', 'must be an object');
  let data: Uint8Array;
  if (typeof r.data === 'string') data = Buffer.from(r.data, 'utf8');
  else if (r.data instanceof Uint8Array) data = r.data;
  else return fail('SLUICE_INVALID_ARGUMENT', 'data must be a Uint8Array or a string');
  if (data.byteLength > Limits.maxRecordBytes) return fail('SLUICE_VALUE_TOO_LARGE', `data is ${data.byteLength} bytes; a record holds at most ${Limits.maxRecordBytes}`);
  const headers = r.headers ?? {};
  for (const [k, v] of Object.entries(headers)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(k) || typeof v !== 'string' || /[\r\n]/.test(v))
      return fail('SLUICE_INVALID_ARGUMENT', `header ${JSON.stringify(k)} is invalid (names: letters, digits, '-', '_'; values: strings without newlines)`);
  }
  let shard: number;
  if (r.shard !== undefined) {
    if (!Number.isInteger(r.shard) || r.shard < 0 || r.shard >= shards) return fail('SLUICE_SHARD_INVALID', `shard ${r.shard} is outside 0..${shards - 1}`);
    shard = r.shard;
  } else if (typeof r.partitionKey === 'string' && r.partitionKey.length > 0) {
    if (utf8Length(r.partitionKey) > Limits.maxKeyBytes) return fail('SLUICE_KEY_INVALID', `partitionKey is longer than ${Limits.maxKeyBytes} bytes`);
    shard = shardOf(r.partitionKey, shards);
  } else return fail('SLUICE_INVALID_ARGUMENT', 'give a partitionKey or a shard');
  let cause: Cause | undefined;
  try {
    cause = checkCause(r.cause, where);
  } catch (e) {
    return fail('SLUICE_INVALID_ARGUMENT', (e as Error).message.slice(where.length + 2));
  }
  return { ok: true, data, shard, headers, partitionKey: r.partitionKey, cause };
}

/** Validates a shard number against a stream. */
export function checkShard(name: string, shard: unknown, shards: number): asserts shard is number {
  if (typeof shard !== 'number' || !Number.isInteger(shard) || shard < 0 || shard >= shards)
    throw new BindingError('SLUICE_SHARD_INVALID', `stream '${name}': shard ${JSON.stringify(shard)} is outside 0..${shards - 1}`);
}

/** Validates a seek position. */
export function checkSeekPosition(name: string, p: SeekPosition): void {
  if (p === 'earliest' || p === 'latest') return;
  if (p && typeof p === 'object') {
    if ('seq' in p && Number.isSafeInteger(p.seq) && p.seq >= 0) return;
    if ('time' in p && (p.time instanceof Date ? !Number.isNaN(p.time.getTime()) : Number.isFinite(p.time))) return;
  }
  throw new BindingError('SLUICE_INVALID_ARGUMENT', `seek '${name}': position must be 'earliest', 'latest', {seq} or {time}, got ${JSON.stringify(p)}`);
}

/** Validated getRecords options. */
export function resolveGetRecords(o: GetRecordsOptions | undefined): { limit: number; maxWaitMs: number } {
  return {
    limit: positiveInt(o?.limit, 'getRecords limit', 1, 10_000, 100),
    maxWaitMs: positiveInt(o?.maxWaitMs, 'getRecords maxWaitMs', 0, 3_600_000, 0),
  };
}

/** Validated scan options. */
export function resolveGetItems(table: string, o: GetItemsOptions | undefined): { limit: number; segment: number; totalSegments: number; marker: string } {
  const totalSegments = positiveInt(o?.totalSegments, `getItems '${table}': totalSegments`, 1, 1024, 1);
  const segment = positiveInt(o?.segment, `getItems '${table}': segment`, 0, totalSegments - 1, 0);
  const limit = positiveInt(o?.limit, `getItems '${table}': limit`, 1, 10_000, 1000);
  const marker = o?.marker ?? '';
  if (typeof marker !== 'string') throw new BindingError('SLUICE_CURSOR_INVALID', `getItems '${table}': marker must be a string`);
  return { limit, segment, totalSegments, marker };
}

/** Picks the named top-level attributes of an item. */
export function project<T extends Record<string, unknown>>(item: T, attrs: string[] | undefined): T {
  // Effect markers (`$sluice.*`, runtime/effect-writes.ts) live on items too; a whole-item read hides
  // them, as object reads do. Naming one in `attrs` is the runtime's way to read it.
  if (!attrs) return visibleAttrs(item as Attrs, false) as T;
  const out: Record<string, unknown> = {};
  for (const a of attrs) if (Object.hasOwn(item, a)) out[a] = item[a];
  return out as T;
}

/** Validates a write's cause (bindings/types.ts `Cause`): the one rule for every backend. */
export function checkCause(cause: unknown, where: string): Cause | undefined {
  if (cause === undefined) return undefined;
  const c = cause as Partial<Cause> | null;
  if (typeof c !== 'object' || c === null || typeof c.fn !== 'string' || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(c.fn) || !Number.isSafeInteger(c.hop) || (c.hop as number) < 0)
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: cause must be { fn: a function name, hop: a non-negative integer }, got ${JSON.stringify(cause)}`);
  return { fn: c.fn, hop: c.hop as number };
}

/** Rejects at once when the signal is already aborted. */
export function checkSignal(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new BindingError('SLUICE_ABORTED', `${what} was aborted`, { cause: signal.reason });
}

/** Validated conditions of a KV write. */
export interface ResolvedConditional {
  condition: Expression | undefined;
  ifRevision: number | undefined;
}

/** Validates the conditions of a KV write (expression parses, revision is a non-negative integer) before any I/O. */
export function resolveConditional(o: ConditionalOptions | undefined, where: string): ResolvedConditional {
  const condition = o?.condition;
  if (condition !== undefined) checkCondition(condition, `${where}: condition`);
  const ifRevision = o?.ifRevision;
  if (ifRevision !== undefined && (typeof ifRevision !== 'number' || !Number.isSafeInteger(ifRevision) || ifRevision < 0))
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: ifRevision must be a non-negative integer, got ${JSON.stringify(ifRevision)}`);
  return { condition, ifRevision };
}

/** Checks a KV write's conditions against the current item (undefined: absent); throws ConditionFailedError carrying it. */
export function checkItemConditions(where: string, cur: { item: Item; revision: number } | undefined, c: ResolvedConditional): void {
  if (c.ifRevision !== undefined && (cur?.revision ?? 0) !== c.ifRevision)
    throw new ConditionFailedError(`${where}: ifRevision ${c.ifRevision} but the item ${cur ? `has revision ${cur.revision}` : 'does not exist'}`, cur?.item, cur?.revision);
  if (c.condition !== undefined && !evaluateCondition(c.condition, cur?.item))
    throw new ConditionFailedError(`${where}: the condition does not hold`, cur?.item, cur?.revision);
}

/**
 * The expressions of an update given as one or several (`updateItem`, `updateAttrs`), each checked
 * (SLUICE_EXPRESSION_INVALID naming its index); at least one.
 */
export function updateList(update: Expression | Expression[], where: string): Expression[] {
  const list = Array.isArray(update) ? update : [update];
  if (list.length === 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: update must hold at least one expression`);
  list.forEach((u, i) => checkUpdate(u, list.length === 1 ? `${where}: update` : `${where}: update[${i}]`));
  return list;
}
