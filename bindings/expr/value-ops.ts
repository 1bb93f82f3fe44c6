/**
 * Operations on {@link Value}s the expression language needs: ordering and equality with the
 * documented cross-type rules (timestamps against numbers and ISO strings), size, prefix / suffix /
 * containment, and deep copies that keep bytes as `Uint8Array` and timestamps as `Date`.
 */
import { compareKeys, utf8Length, type Value, type ValueMap } from '../values.ts';

// Date-only, or date and time with optional seconds, fraction and offset; no offset means UTC.
const isoPattern = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/;
// Filters compare many items against one literal; remembering the last string parsed avoids
// re-parsing it for every item.
let lastIso = '';
let lastIsoMs: number | undefined;

/** Epoch milliseconds of an ISO 8601 timestamp string, or undefined when `s` is not one. */
export function isoToMs(s: string): number | undefined {
  if (s === lastIso) return lastIsoMs;
  let ms: number | undefined;
  const m = isoPattern.exec(s);
  if (m !== null) {
    // Date.parse reads a date-time without offset as local time; sluice reads it as UTC.
    const t = Date.parse(m[1] === undefined && s.length > 10 ? `${s}Z` : s);
    ms = Number.isNaN(t) ? undefined : t;
  }
  lastIso = s;
  lastIsoMs = ms;
  return ms;
}

function sign(x: number, y: number): number | undefined {
  if (x === y) return 0;
  if (x < y) return -1;
  if (x > y) return 1;
  return undefined; // NaN (an invalid Date)
}

/** Lexicographic order of two byte strings. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return sign(a.length, b.length) as number;
}

function timeOf(v: Value): number | undefined {
  if (typeof v === 'number') return v;
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'string') return isoToMs(v);
  return undefined;
}

/**
 * Orders two values: negative, zero or positive, or undefined when they are not comparable.
 * Numbers with numbers, strings with strings (UTF-8 byte order), bytes with bytes (lexicographic),
 * timestamps with timestamps, numbers (epoch ms) and ISO strings. Nothing else is ordered.
 */
export function order(a: Value, b: Value): number | undefined {
  if (typeof a === 'number' && typeof b === 'number') return sign(a, b);
  if (typeof a === 'string' && typeof b === 'string') return compareKeys(a, b);
  if (a instanceof Date || b instanceof Date) {
    const x = timeOf(a);
    const y = timeOf(b);
    return x === undefined || y === undefined ? undefined : sign(x, y);
  }
  if (a instanceof Uint8Array && b instanceof Uint8Array) return compareBytes(a, b);
  return undefined;
}

/** The `=` of the language: {@link order} equality for timestamps, deep equality otherwise. */
export function valueEquals(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (a instanceof Date || b instanceof Date) return order(a, b) === 0;
  return deepEquals(a, b);
}

/** Strict deep equality: same types all the way down (a timestamp never equals a number here). */
export function deepEquals(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (a instanceof Date) return b instanceof Date && a.getTime() === b.getTime();
  if (a instanceof Uint8Array) return b instanceof Uint8Array && a.length === b.length && compareBytes(a, b) === 0;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEquals(a[i] as Value, b[i] as Value)) return false;
    return true;
  }
  if (b instanceof Date || b instanceof Uint8Array || Array.isArray(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) if (!Object.hasOwn(b, k) || !deepEquals(a[k] as Value, b[k] as Value)) return false;
  return true;
}

/**
 * `size()`: UTF-8 bytes of a string, length of bytes, elements of a list, keys of a map;
 * undefined for numbers, booleans, null and timestamps.
 */
export function sizeOf(v: Value): number | undefined {
  if (typeof v === 'string') return utf8Length(v);
  if (typeof v !== 'object' || v === null || v instanceof Date) return undefined;
  if (v instanceof Uint8Array || Array.isArray(v)) return v.length;
  let n = 0;
  for (const k in v) if (Object.hasOwn(v, k)) n++;
  return n;
}

function bytesAt(hay: Uint8Array, needle: Uint8Array, at: number): boolean {
  for (let i = 0; i < needle.length; i++) if (hay[at + i] !== needle[i]) return false;
  return true;
}

/** `starts()`: string prefix of a string, or byte prefix of bytes. */
export function startsWith(v: Value, prefix: Value): boolean {
  if (typeof v === 'string') return typeof prefix === 'string' && v.startsWith(prefix);
  return v instanceof Uint8Array && prefix instanceof Uint8Array && prefix.length <= v.length && bytesAt(v, prefix, 0);
}

/** `ends()`: string suffix of a string, or byte suffix of bytes. */
export function endsWith(v: Value, suffix: Value): boolean {
  if (typeof v === 'string') return typeof suffix === 'string' && v.endsWith(suffix);
  return v instanceof Uint8Array && suffix instanceof Uint8Array && suffix.length <= v.length && bytesAt(v, suffix, v.length - suffix.length);
}

/** `contains()`: substring of a string, element of a list (by `=`), contiguous run of bytes. */
export function contains(v: Value, needle: Value): boolean {
  if (typeof v === 'string') return typeof needle === 'string' && v.includes(needle);
  if (Array.isArray(v)) {
    for (const x of v) if (valueEquals(x, needle)) return true;
    return false;
  }
  if (v instanceof Uint8Array && needle instanceof Uint8Array) {
    for (let at = 0; at + needle.length <= v.length; at++) if (bytesAt(v, needle, at)) return true;
  }
  return false;
}

/** Sets an own property, even one named `__proto__` (which plain assignment would treat as the prototype). */
export function setOwn(map: ValueMap, key: string, v: Value): void {
  if (key === '__proto__') Object.defineProperty(map, key, { value: v, writable: true, enumerable: true, configurable: true });
  else map[key] = v;
}

/** A deep copy sharing nothing mutable with `v`; bytes become a fresh `Uint8Array`, timestamps a fresh `Date`. */
export function cloneValue(v: Value): Value {
  if (typeof v !== 'object' || v === null) return v;
  if (v instanceof Date) return new Date(v.getTime());
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(cloneValue);
  const out: ValueMap = {};
  for (const k of Object.keys(v)) setOwn(out, k, cloneValue(v[k] as Value));
  return out;
}
