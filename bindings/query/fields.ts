/**
 * What a metadata query sees of one object: the item `where` is evaluated against, the row a query
 * returns, the sort order of `orderBy`, and the scalar encoding of index entries.
 *
 * Names: system fields (`key`, `size`, `mtime`, `etag`, `content_type`, `version`) shadow attributes of
 * the same name; every attribute is also reachable as `attr.<name>`. Internal attributes (`$sluice.*`,
 * e.g. processed-markers) are left out unless the caller asks for them, so no query can match or return
 * them by accident. These functions are pure: a continuous query trigger evaluates one object's new state
 * with {@link matchesWhere} exactly as a query does.
 */
import { BindingError } from '../errors.ts';
import { evaluateCondition, type Expression } from '../expr/index.ts';
import { isoToMs } from '../expr/value-ops.ts';
import { order } from '../expr/value-ops.ts';
import { SystemFields, type QueryRow, type SystemField } from '../types.ts';
import { compareKeys, type Attrs, type Item, type Value } from '../values.ts';

/** One object's state as a query reads it (backend-neutral). */
export interface ObjectState {
  key: string;
  size: number;
  etag: string;
  version: number;
  contentType: string;
  /** Time of the last put, ms since the epoch. */
  mtimeMs: number;
  attrs: Attrs;
}

/** Prefix of internal attribute names. */
export const INTERNAL_PREFIX = '$sluice.';

const systemSet: ReadonlySet<string> = new Set(SystemFields);

/** True for a system field name. */
export function isSystemField(name: string): name is SystemField {
  return systemSet.has(name);
}

/**
 * The canonical id of a field as `select`, `orderBy` and `indexes` name it: a system field name, or
 * `attr.<name>` for an attribute. Throws SLUICE_INVALID_ARGUMENT for an empty name or a nested path.
 */
export function canonicalField(name: unknown, where: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: a field must be a non-empty string, got ${JSON.stringify(name)}`);
  if (isSystemField(name)) return name;
  const attr = name.startsWith('attr.') ? name.slice(5) : name;
  if (attr.length === 0) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: field '${name}' names no attribute`);
  return `attr.${attr}`;
}

/** Attributes with the internal ones dropped (the same object when there are none). */
export function visibleAttrs(attrs: Attrs, includeInternal: boolean): Attrs {
  if (includeInternal) return attrs;
  let hidden = false;
  for (const k in attrs) if (k.startsWith(INTERNAL_PREFIX)) hidden = true;
  if (!hidden) return attrs;
  const out: Attrs = {};
  for (const k of Object.keys(attrs)) if (!k.startsWith(INTERNAL_PREFIX)) out[k] = attrs[k] as Value;
  return out;
}

/**
 * The item `where` sees for one object: visible attributes by name, system fields over them, and every
 * visible attribute again under `attr` (`attr.size` when an attribute is named like a system field).
 */
export function stateItem(s: ObjectState, includeInternal = false): Item {
  const attrs = visibleAttrs(s.attrs, includeInternal);
  const item: Item = Object.assign({}, attrs);
  item.key = s.key;
  item.size = s.size;
  item.mtime = new Date(s.mtimeMs);
  item.etag = s.etag;
  item.content_type = s.contentType;
  item.version = s.version;
  item.attr = attrs;
  return item;
}

/**
 * Whether one object's state matches `where` (undefined: every object), with the visibility rules of
 * {@link ObjectBinding.query}. The helper a continuous query trigger uses on a change's new state.
 */
export function matchesWhere(s: ObjectState, where: Expression | undefined, includeInternal = false): boolean {
  if (where === undefined) return true;
  return evaluateCondition(where, stateItem(s, includeInternal));
}

/** The value of a canonical field in an object's state; undefined when the attribute is missing. */
export function fieldValue(s: ObjectState, field: string, includeInternal = false): Value | undefined {
  switch (field) {
    case 'key':
      return s.key;
    case 'size':
      return s.size;
    case 'mtime':
      return new Date(s.mtimeMs);
    case 'etag':
      return s.etag;
    case 'content_type':
      return s.contentType;
    case 'version':
      return s.version;
    default: {
      const name = field.slice(5);
      if (!includeInternal && name.startsWith(INTERNAL_PREFIX)) return undefined;
      return Object.hasOwn(s.attrs, name) ? s.attrs[name] : undefined;
    }
  }
}

/** The output name of a canonical field: attributes by their name unless it collides with a system field. */
export function outputName(field: string): string {
  if (isSystemField(field)) return field;
  const name = field.slice(5);
  return isSystemField(name) ? field : name;
}

/** A resolved `select`: `all` for `*`, else canonical fields in order. */
export type Selection = { all: true } | { all: false; fields: string[] };

/** One output row of an object. */
export function rowOf(s: ObjectState, sel: Selection, includeInternal = false): QueryRow {
  const row = { key: s.key } as QueryRow;
  if (sel.all) {
    row.size = s.size;
    row.mtime = new Date(s.mtimeMs);
    row.etag = s.etag;
    row.content_type = s.contentType;
    row.version = s.version;
    const attrs = visibleAttrs(s.attrs, includeInternal);
    for (const name of Object.keys(attrs)) row[isSystemField(name) ? `attr.${name}` : name] = attrs[name] as Value;
    return row;
  }
  for (const f of sel.fields) {
    if (f === 'key') continue;
    const v = fieldValue(s, f, includeInternal);
    if (v !== undefined) row[outputName(f)] = v;
  }
  return row;
}

// ── sort order and index scalars ──

/** Ranks of value types in sort order (and in index keys); missing sorts after all of them. */
export const Rank = { null: 0, boolean: 1, number: 2, timestamp: 3, string: 4, bytes: 5, other: 6, missing: 7 } as const;

/**
 * Longest string prefix kept in an index entry, in code points (at most 256 UTF-8 bytes, so key, value
 * and names stay under LMDB's 1978-byte key bound). Cutting by code points keeps UTF-8 byte order
 * monotone, so a range over cut values still holds every match; rows are re-checked.
 */
export const INDEX_STRING_CODE_POINTS = 64;

/** A scalar as an index entry holds it: rank and a number or (truncated) string. */
export type IndexScalar = [rank: number, v: number | string];

/** Cuts a string to its first {@link INDEX_STRING_CODE_POINTS} code points. */
export function truncateForIndex(s: string): string {
  if (s.length <= INDEX_STRING_CODE_POINTS) return s;
  let i = 0;
  for (let n = 0; n < INDEX_STRING_CODE_POINTS && i < s.length; n++) {
    const c = s.charCodeAt(i);
    const d = s.charCodeAt(i + 1);
    i += c >= 0xd800 && c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff ? 2 : 1;
  }
  return i >= s.length ? s : s.slice(0, i);
}

/** The index scalar of a value; undefined for values no index holds (missing, bytes, lists, maps). */
export function indexScalar(v: Value | undefined): IndexScalar | undefined {
  if (v === undefined) return undefined;
  if (v === null) return [Rank.null, 0];
  if (typeof v === 'boolean') return [Rank.boolean, v ? 1 : 0];
  if (typeof v === 'number') return [Rank.number, v];
  if (typeof v === 'string') return [Rank.string, truncateForIndex(v)];
  if (v instanceof Date) return [Rank.timestamp, v.getTime()];
  return undefined;
}

/** Order of two index scalars (numbers numerically, strings in UTF-8 byte order). */
export function compareScalars(a: IndexScalar, b: IndexScalar): number {
  if (a[0] !== b[0]) return a[0] - b[0];
  const x = a[1];
  const y = b[1];
  if (typeof x === 'number' && typeof y === 'number') return x < y ? -1 : x > y ? 1 : 0;
  return compareKeys(String(x), String(y));
}

/** A sort key of `orderBy`: rank and value (bytes as base64 text, lists and maps as equal). Serialisable. */
export type SortKey = [rank: number, v: number | string];

/** The sort key of a value. */
export function sortKey(v: Value | undefined): SortKey {
  if (v === undefined) return [Rank.missing, 0];
  const s = indexScalar(v);
  if (s !== undefined && (s[0] !== Rank.string || s[1] === v)) return s;
  if (typeof v === 'string') return [Rank.string, v];
  if (v instanceof Uint8Array) return [Rank.bytes, Buffer.from(v).toString('base64')];
  return [Rank.other, 0];
}

/** Order of two sort keys; bytes compare by their base64 text, which is not byte order but is total. */
export function compareSortKeys(a: SortKey, b: SortKey): number {
  return compareScalars(a, b);
}

/** Order of (sort key, key) tuples, reversed for descending. */
export function compareRows(a: { s: SortKey; key: string }, b: { s: SortKey; key: string }, desc: boolean): number {
  const c = compareSortKeys(a.s, b.s) || compareKeys(a.key, b.key);
  return desc ? -c : c;
}

/** Epoch ms of an ISO string literal (for timestamp index ranges), or undefined. */
export function isoMs(s: string): number | undefined {
  return isoToMs(s);
}

/** Order of two values as the language orders them (re-exported for the planner's BETWEEN check). */
export const valueOrder = order;

/** The index entries of one object: per indexed canonical field, the scalar it holds (if indexable). */
export function indexEntries(s: ObjectState, indexes: readonly string[]): { field: string; v: IndexScalar }[] {
  const out: { field: string; v: IndexScalar }[] = [];
  for (const field of indexes) {
    const v = indexScalar(fieldValue(s, field, true));
    if (v !== undefined) out.push({ field, v });
  }
  return out;
}
