/**
 * Typed values shared by object attributes, KV items and the expression language,
 * and the documented size bounds every backend enforces before writing anything.
 */
import { BindingError } from './errors.ts';

/**
 * A value sluice stores: string, number (IEEE double, finite), boolean, null, bytes (`Uint8Array`),
 * timestamp (`Date`), list or map of values. Backends return bytes as `Uint8Array` (possibly a
 * `Buffer`) and timestamps as `Date`.
 */
export type Value = string | number | boolean | null | Uint8Array | Date | Value[] | ValueMap;
/** A map of attribute names to values. */
export interface ValueMap {
  [name: string]: Value;
}

/** A KV item or an object's attributes: a map of top-level attribute names to values. */
export type Item = ValueMap;
/** Object attributes (same shape as a KV item). */
export type Attrs = ValueMap;

/** The value types by name, as `size()` and error messages speak of them. */
export const ValueTypes = ['string', 'number', 'boolean', 'null', 'bytes', 'timestamp', 'list', 'map'] as const;
/** One of {@link ValueTypes}. */
export type ValueType = (typeof ValueTypes)[number];

/**
 * Size bounds. Sizes are UTF-8 bytes for strings and names, raw bytes for bytes, 8 for numbers and
 * timestamps, 1 for booleans and null, plus names inside maps. A 100×100 JPEG thumbnail (typically
 * 3–10 KiB) fits a single attribute with room to spare.
 */
export const Limits = {
  /** Longest object key or item key, in UTF-8 bytes (as S3). */
  maxKeyBytes: 1024,
  /** Longest attribute name, in UTF-8 bytes. */
  maxAttrNameBytes: 255,
  /** Largest single attribute value (e.g. a thumbnail), in bytes. */
  maxAttrValueBytes: 64 * 1024,
  /** Largest set of attributes of one object, names included, in bytes. */
  maxAttrsBytes: 256 * 1024,
  /** Largest KV item, names included, in bytes (as DynamoDB). */
  maxItemBytes: 400 * 1024,
  /** Deepest nesting of lists and maps. */
  maxDepth: 32,
  /** Largest object body, in bytes. */
  maxObjectBytes: 64 * 1024 * 1024,
  /** Largest stream record payload, in bytes (stays under NATS's default 1 MiB max_payload with headers). */
  maxRecordBytes: 512 * 1024,
  /** Most records in one putRecords call. */
  maxRecordsPerPut: 1000,
  /** Longest content type, in bytes. */
  maxContentTypeBytes: 256,
  /** Most shards a bucket or stream may have. */
  maxShards: 1024,
} as const;

const utf8 = new TextEncoder();

/** UTF-8 length of a string without allocating for pure-ASCII strings. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** The type name of a value, or undefined when it is not a {@link Value}. */
export function typeOf(v: unknown): ValueType | undefined {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return 'string';
    case 'number':
      return Number.isFinite(v) ? 'number' : undefined;
    case 'boolean':
      return 'boolean';
    case 'object':
      if (v instanceof Uint8Array) return 'bytes';
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : 'timestamp';
      if (Array.isArray(v)) return 'list';
      if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) return 'map';
      return undefined;
    default:
      return undefined;
  }
}

/**
 * Checks that `v` is a {@link Value} and returns its encoded size. Throws SLUICE_VALUE_INVALID naming
 * `where` (e.g. `attrs.thumb[3]`) for anything else (undefined, NaN, functions, class instances).
 */
export function valueSize(v: unknown, where: string, depth = 0): number {
  if (depth > Limits.maxDepth) throw new BindingError('SLUICE_VALUE_INVALID', `${where} nests deeper than ${Limits.maxDepth} levels`);
  const t = typeOf(v);
  switch (t) {
    case 'string':
      // A lone surrogate has no UTF-8 form: stored, it would come back as U+FFFD (silently corrupted).
      if (!isWellFormed(v as string)) throw new BindingError('SLUICE_VALUE_INVALID', `${where} holds a lone surrogate (not valid UTF-8)`);
      return utf8Length(v as string);
    case 'number':
    case 'timestamp':
      return 8;
    case 'boolean':
    case 'null':
      return 1;
    case 'bytes':
      return (v as Uint8Array).byteLength;
    case 'list': {
      let n = 1;
      (v as unknown[]).forEach((x, i) => (n += valueSize(x, `${where}[${i}]`, depth + 1)));
      return n;
    }
    case 'map': {
      let n = 1;
      for (const [k, x] of Object.entries(v as object)) {
        if (!isWellFormed(k)) throw new BindingError('SLUICE_VALUE_INVALID', `${where}: name ${JSON.stringify(k)} holds a lone surrogate (not valid UTF-8)`);
        n += utf8Length(k) + valueSize(x, `${where}.${k}`, depth + 1);
      }
      return n;
    }
    default:
      throw new BindingError(
        'SLUICE_VALUE_INVALID',
        `${where} is ${describe(v)}; expected string, number, boolean, null, bytes (Uint8Array), timestamp (Date), list or map`,
      );
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'object' && v !== null) return `an instance of ${v.constructor?.name ?? 'an unknown class'}`;
  return `of type ${typeof v}`;
}

/** Validates one attribute/item name (non-empty, bounded, no control characters). */
export function checkAttrName(name: string, where: string): void {
  if (typeof name !== 'string' || name.length === 0) throw new BindingError('SLUICE_VALUE_INVALID', `${where}: attribute name must be a non-empty string`);
  if (utf8Length(name) > Limits.maxAttrNameBytes)
    throw new BindingError('SLUICE_VALUE_TOO_LARGE', `${where}: attribute name '${name.slice(0, 40)}…' is longer than ${Limits.maxAttrNameBytes} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new BindingError('SLUICE_VALUE_INVALID', `${where}: attribute name ${JSON.stringify(name)} holds a control character`);
  if (!isWellFormed(name)) throw new BindingError('SLUICE_VALUE_INVALID', `${where}: attribute name ${JSON.stringify(name)} holds a lone surrogate (not valid UTF-8)`);
}

/** True when `s` has no lone surrogate (String.prototype.isWellFormed, Node 20+; ES2024 is past our lib). */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** Validates object attributes against the per-value and total bounds; returns the total size. */
export function checkAttrs(attrs: unknown, where = 'attrs'): number {
  if (typeOf(attrs) !== 'map') throw new BindingError('SLUICE_VALUE_INVALID', `${where} must be a plain object of attribute values`);
  let total = 0;
  for (const [k, v] of Object.entries(attrs as object)) {
    checkAttrName(k, where);
    const n = valueSize(v, `${where}.${k}`);
    if (n > Limits.maxAttrValueBytes)
      throw new BindingError('SLUICE_VALUE_TOO_LARGE', `${where}.${k} is ${n} bytes; one attribute holds at most ${Limits.maxAttrValueBytes} bytes`);
    total += utf8Length(k) + n;
  }
  if (total > Limits.maxAttrsBytes)
    throw new BindingError('SLUICE_VALUE_TOO_LARGE', `${where} total ${total} bytes; an object's attributes hold at most ${Limits.maxAttrsBytes} bytes`);
  return total;
}

/** Validates a KV item against the item bound; returns its size. */
export function checkItem(item: unknown, where = 'item'): number {
  if (typeOf(item) !== 'map') throw new BindingError('SLUICE_VALUE_INVALID', `${where} must be a plain object of attribute values`);
  let total = 0;
  for (const [k, v] of Object.entries(item as object)) {
    checkAttrName(k, where);
    total += utf8Length(k) + valueSize(v, `${where}.${k}`);
  }
  if (total > Limits.maxItemBytes) throw new BindingError('SLUICE_VALUE_TOO_LARGE', `${where} is ${total} bytes; an item holds at most ${Limits.maxItemBytes} bytes`);
  return total;
}

/**
 * Validates an object key or item key: non-empty, at most {@link Limits.maxKeyBytes} UTF-8 bytes,
 * well-formed UTF-16 (no lone surrogates), no NUL or other C0 control characters.
 */
export function checkKey(key: unknown, where = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw new BindingError('SLUICE_KEY_INVALID', `${where} must be a non-empty string`);
  if (utf8Length(key) > Limits.maxKeyBytes) throw new BindingError('SLUICE_KEY_INVALID', `${where} '${key.slice(0, 40)}…' is longer than ${Limits.maxKeyBytes} UTF-8 bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) throw new BindingError('SLUICE_KEY_INVALID', `${where} ${JSON.stringify(key)} holds a control character`);
  if (LONE_SURROGATE.test(key)) throw new BindingError('SLUICE_KEY_INVALID', `${where} ${JSON.stringify(key)} holds a lone surrogate (not valid UTF-8)`);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Bucket, table and stream names: 1–63 chars of lowercase letters, digits and '-', starting with a letter or digit. */
export function checkName(name: unknown, kind: 'bucket' | 'table' | 'stream'): asserts name is string {
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(name))
    throw new BindingError('SLUICE_NAME_INVALID', `${kind} name ${JSON.stringify(name)} is invalid: use 1-63 lowercase letters, digits and '-', starting with a letter or digit`);
}

/** Compares two keys in UTF-8 byte order (the order of every listing), without allocating for BMP text. */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  // UTF-16 order equals UTF-8 byte order except that surrogates (U+D800–DFFF, encoding U+10000+) must
  // sort after U+E000–U+FFFF; fix that one case and otherwise compare code units.
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && x <= 0xdfff) x += 0x2000;
    else if (x >= 0xe000) x -= 0x800;
    if (y >= 0xd800 && y <= 0xdfff) y += 0x2000;
    else if (y >= 0xe000) y -= 0x800;
    return x - y;
  }
  return a.length - b.length;
}

/** UTF-8 bytes of a string. */
export function toUtf8(s: string): Uint8Array {
  return utf8.encode(s);
}
