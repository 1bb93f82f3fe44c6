/**
 * Query options and pages, shared by every backend: validation, the continuation token, and the page
 * builder a backend feeds with object states (in key order, or in any order when sorting by a field).
 *
 * A token holds the last row's (sort key, key) and a fingerprint of the query, so a page resumes
 * strictly after the last row returned: nothing is skipped or repeated across pages of an unchanging
 * bucket, and a changing bucket gives each object at most once per sort position.
 */
import { createHash } from 'node:crypto';
import { BindingError } from '../errors.ts';
import { checkCondition, type Expression } from '../expr/index.ts';
import type { QueryOptions, QueryResult, QueryRow } from '../types.ts';
import { compareKeys } from '../values.ts';
import {
  canonicalField,
  compareRows,
  fieldValue,
  INTERNAL_PREFIX,
  matchesWhere,
  rowOf,
  sortKey,
  type ObjectState,
  type Selection,
  type SortKey,
} from './fields.ts';
import { planSummary, type Plan } from './plan.ts';

/** Validated query options. */
export interface ResolvedQuery {
  bucket: string;
  where: Expression | undefined;
  selection: Selection;
  prefix: string;
  /** Canonical field; 'key' for key order. */
  orderBy: string;
  desc: boolean;
  limit: number;
  includeInternal: boolean;
  /** Resume strictly after this row. */
  after: { key: string; s: SortKey } | undefined;
  fingerprint: string;
}

interface QueryToken {
  v: 1;
  f: string;
  k: string;
  s: SortKey;
}

const optionNames = new Set(['where', 'select', 'prefix', 'orderBy', 'limit', 'continuationToken', 'includeInternal', 'signal']);

/** Validates query options (before any I/O) and decodes the token. */
export function resolveQuery(bucket: string, o: QueryOptions | undefined): ResolvedQuery {
  const where = `query '${bucket}'`;
  const bad = (m: string) => new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: ${m}`);
  const opts = o ?? {};
  if (typeof opts !== 'object' || opts === null) throw bad('options must be an object');
  for (const k of Object.keys(opts)) if (!optionNames.has(k)) throw bad(`unknown option '${k}'`);
  const includeInternal = opts.includeInternal ?? false;
  if (typeof includeInternal !== 'boolean') throw bad('includeInternal must be a boolean');
  if (opts.where !== undefined) checkCondition(opts.where, `${where}: where`);
  const select = opts.select ?? ['*'];
  if (!Array.isArray(select) || select.length === 0) throw bad("select must be a non-empty array of field names (or ['*'])");
  let selection: Selection;
  if (select.includes('*')) {
    if (select.length > 1) throw bad("select '*' cannot be combined with other fields");
    selection = { all: true };
  } else selection = { all: false, fields: [...new Set(select.map((f) => canonicalField(f, `${where}: select`)))] };
  const prefix = opts.prefix ?? '';
  if (typeof prefix !== 'string') throw bad('prefix must be a string');
  const ob = opts.orderBy ?? { field: 'key' };
  if (typeof ob !== 'object' || ob === null) throw bad('orderBy must be { field, direction? }');
  const orderBy = canonicalField(ob.field, `${where}: orderBy`);
  const direction = ob.direction ?? 'asc';
  if (direction !== 'asc' && direction !== 'desc') throw bad(`orderBy.direction must be 'asc' or 'desc', got ${JSON.stringify(direction)}`);
  const limit = opts.limit ?? 1000;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 10_000) throw bad(`limit must be an integer from 1 to 10000, got ${JSON.stringify(limit)}`);
  const fingerprint = createHash('sha1')
    .update(JSON.stringify([bucket, opts.where ?? null, select, prefix, orderBy, direction, includeInternal], (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v)))
    .digest('base64url')
    .slice(0, 16);
  let after: ResolvedQuery['after'];
  if (opts.continuationToken !== undefined) {
    let t: QueryToken;
    try {
      t = JSON.parse(Buffer.from(String(opts.continuationToken), 'base64url').toString('utf8')) as QueryToken;
    } catch (cause) {
      throw new BindingError('SLUICE_CURSOR_INVALID', `${where}: continuationToken is malformed`, { cause });
    }
    if (t?.v !== 1 || typeof t.k !== 'string' || !Array.isArray(t.s) || typeof t.s[0] !== 'number')
      throw new BindingError('SLUICE_CURSOR_INVALID', `${where}: continuationToken is malformed`);
    if (t.f !== fingerprint) throw new BindingError('SLUICE_CURSOR_INVALID', `${where}: continuationToken belongs to another query (where, select, prefix or orderBy differ)`);
    after = { key: t.k, s: t.s };
  }
  return { bucket, where: opts.where, selection, prefix, orderBy, desc: direction === 'desc', limit, includeInternal, after, fingerprint };
}

/** True when the query reads in key order (ascending), so a backend can stream objects and stop early. */
export function streamsInKeyOrder(r: ResolvedQuery): boolean {
  return r.orderBy === 'key' && !r.desc;
}

/** The first key a key-ordered read starts at (inclusive): the prefix, or the token's key when past it. */
export function startKey(r: ResolvedQuery): string {
  if (r.after !== undefined && compareKeys(r.after.key, r.prefix) > 0) return r.after.key;
  return r.prefix;
}

/**
 * Collects one page. Feed it object states with {@link offer}; in key order it answers false once the
 * page is full (stop reading), otherwise it keeps a bounded best-so-far and sorts at {@link finish}.
 */
export class PageBuilder {
  readonly #r: ResolvedQuery;
  readonly #keyOrder: boolean;
  #rows: QueryRow[] = [];
  #sorted: { s: SortKey; key: string; state: ObjectState }[] = [];
  #more = false;
  examined = 0;

  constructor(r: ResolvedQuery) {
    this.#r = r;
    this.#keyOrder = streamsInKeyOrder(r);
  }

  /** Offers one object; false when the page is full and the caller can stop. */
  offer(s: ObjectState): boolean {
    const r = this.#r;
    this.examined++;
    if (!s.key.startsWith(r.prefix)) return true;
    if (this.#keyOrder) {
      if (r.after !== undefined && compareKeys(s.key, r.after.key) <= 0) return true;
      if (!matchesWhere(s, r.where, r.includeInternal)) return true;
      if (this.#rows.length === r.limit) {
        this.#more = true;
        return false;
      }
      this.#rows.push(rowOf(s, r.selection, r.includeInternal));
      return true;
    }
    const e = { s: sortKey(r.orderBy === 'key' ? s.key : fieldValue(s, r.orderBy, r.includeInternal)), key: s.key, state: s };
    if (r.after !== undefined && compareRows(e, r.after, r.desc) <= 0) return true;
    if (!matchesWhere(s, r.where, r.includeInternal)) return true;
    this.#sorted.push(e);
    // Bounded memory: keep the best limit+1 whenever the buffer grows past a few pages.
    if (this.#sorted.length > 4 * (r.limit + 1)) this.#trim();
    return true;
  }

  #trim(): void {
    this.#sorted.sort((a, b) => compareRows(a, b, this.#r.desc));
    this.#sorted.length = Math.min(this.#sorted.length, this.#r.limit + 1);
  }

  /** The page, its token and the plan summary. */
  finish(plan: Plan): QueryResult {
    const r = this.#r;
    let rows = this.#rows;
    let last: { key: string; s: SortKey } | undefined;
    if (this.#keyOrder) {
      const l = rows.at(-1);
      if (l) last = { key: l.key, s: sortKey(l.key) };
    } else {
      this.#trim();
      this.#more = this.#sorted.length > r.limit;
      const page = this.#sorted.slice(0, r.limit);
      rows = page.map((e) => rowOf(e.state, r.selection, r.includeInternal));
      const l = page.at(-1);
      if (l) last = { key: l.key, s: l.s };
    }
    const out: QueryResult = { rows, plan: planSummary(plan, this.examined) };
    if (this.#more && last) {
      const t: QueryToken = { v: 1, f: r.fingerprint, k: last.key, s: last.s };
      out.nextToken = Buffer.from(JSON.stringify(t), 'utf8').toString('base64url');
    }
    return out;
  }
}

/**
 * Checks declared index fields and returns them canonical, sorted and unique. Internal attributes
 * cannot be indexed (they are invisible to queries), and `key` needs no index.
 */
export function resolveIndexes(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}.indexes must be an array of field names`);
  if (v.length > 32) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}.indexes: at most 32 indexed fields, got ${v.length}`);
  const out = new Set<string>();
  for (const f of v) {
    const c = canonicalField(f, `${where}.indexes`);
    if (c === 'key') throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}.indexes: 'key' is always ordered and needs no index`);
    if (c.startsWith(`attr.${INTERNAL_PREFIX}`)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}.indexes: internal attribute '${c.slice(5)}' cannot be indexed`);
    if (Buffer.byteLength(c) > 255) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}.indexes: field '${c}' is longer than 255 bytes`);
    out.add(c);
  }
  return [...out].sort();
}
