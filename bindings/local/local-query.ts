/**
 * Metadata queries on the embedded store, and the index entries they use.
 *
 * Index entries are LMDB keys `[bucket, field, rank, value, key]` in the `qindex` database, written by
 * {@link reindex} inside the same write transaction as the metadata and attributes they reflect (the
 * object binding calls it from its store write), so no crash can leave state without its entries or
 * entries without their state (DESIGN invariant 1 extended to indexes; test/process/query-index-crash).
 *
 * A query page runs synchronously from its first read to its last: lmdb-js keeps one read snapshot for
 * a synchronous turn, so every row of a page comes from the same committed state. Scans merge-join the
 * `meta` and `attrs` ranges (two cursors in key order) instead of one `attrs.get` per object.
 */
import { PageBuilder, planQuery, startKey, streamsInKeyOrder, indexEntries, compareScalars, type IndexRange, type ObjectState, type Plan, type ResolvedQuery } from '../query/index.ts';
import { truncateForIndex } from '../query/fields.ts';
import type { QueryResult } from '../types.ts';
import { compareKeys, type Attrs } from '../values.ts';
import type { LocalStore, StoredMeta } from './local-store.ts';

/** The query state of an object from its stored metadata and attributes. */
export function stateOf(key: string, m: StoredMeta, attrs: Attrs | undefined): ObjectState {
  return { key, size: m.size, etag: m.etag, version: m.version, contentType: m.contentType, mtimeMs: m.mtime, attrs: attrs ?? {} };
}

/**
 * Replaces an object's index entries (`before` → `after`; undefined = no object). Only inside a store
 * write, after every check of the operation passed.
 */
export function reindex(store: LocalStore, bucket: string, indexes: readonly string[], key: string, before: ObjectState | undefined, after: ObjectState | undefined): void {
  if (indexes.length === 0) return;
  const old = before ? indexEntries(before, indexes) : [];
  const next = after ? indexEntries(after, indexes) : [];
  const same = (a: (typeof old)[number], b: (typeof old)[number]) => a.field === b.field && compareScalars(a.v, b.v) === 0;
  for (const o of old) if (!next.some((n) => same(o, n))) store.qindex.remove([bucket, o.field, o.v[0], o.v[1], key]);
  for (const n of next) if (!old.some((o) => same(o, n))) store.qindex.put([bucket, n.field, n.v[0], n.v[1], key], null);
}

/** One page of a query over a bucket. */
export function runLocalQuery(store: LocalStore, bucket: string, indexes: ReadonlySet<string>, r: ResolvedQuery): QueryResult {
  store.fresh();
  const plan: Plan = planQuery(r.where, indexes, r.includeInternal);
  const page = new PageBuilder(r);
  if (plan.kind === 'scan') scan(store, bucket, r, page);
  else {
    const keys = new Set<string>();
    for (const part of plan.parts) for (const range of part.ranges) candidates(store, bucket, part.field, range, r.prefix, keys);
    let list = [...keys];
    const keyOrder = streamsInKeyOrder(r);
    if (keyOrder) {
      const from = r.after?.key;
      if (from !== undefined) list = list.filter((k) => compareKeys(k, from) > 0);
      list.sort(compareKeys);
    }
    for (const k of list) {
      const m = store.meta.get([bucket, k]);
      if (!m) continue;
      if (!page.offer(stateOf(k, m, store.attrs.get([bucket, k]) as Attrs | undefined))) break;
    }
  }
  return page.finish(plan);
}

/** Every object under the prefix (from the token's key on, in key order), attributes merge-joined. */
function scan(store: LocalStore, bucket: string, r: ResolvedQuery, page: PageBuilder): void {
  const start = streamsInKeyOrder(r) ? startKey(r) : r.prefix;
  const metas = store.meta.getRange({ start: [bucket, start] })[Symbol.iterator]();
  const attrs = store.attrs.getRange({ start: [bucket, start] })[Symbol.iterator]();
  let a = attrs.next();
  for (let m = metas.next(); !m.done; m = metas.next()) {
    const mk = m.value.key;
    if (mk[0] !== bucket) break;
    const key = mk[1] as string;
    if (!key.startsWith(r.prefix)) break;
    let at: Attrs | undefined;
    // Advance the attributes cursor to this key: objects without attributes have no entry there.
    while (!a.done && a.value.key[0] === bucket && compareKeys(a.value.key[1] as string, key) < 0) a = attrs.next();
    if (!a.done && a.value.key[0] === bucket && a.value.key[1] === key) at = a.value.value as Attrs;
    if (!page.offer(stateOf(key, m.value.value, at))) break;
  }
  metas.return?.();
  attrs.return?.();
}

/** Adds the keys whose `field` lies in `range` (a superset: the page re-checks where). */
function candidates(store: LocalStore, bucket: string, field: string, range: IndexRange, prefix: string, out: Set<string>): void {
  if (field === 'key') {
    // The key order itself is the index of `key`; bounds were cut like index values, so compare cut keys.
    let from = range.lo !== undefined ? String(range.lo) : (range.prefix ?? '');
    if (compareKeys(prefix, from) > 0) from = prefix;
    for (const k of store.meta.getKeys({ start: [bucket, from] })) {
      if (k[0] !== bucket) break;
      const key = k[1] as string;
      const cut = truncateForIndex(key);
      if (range.hi !== undefined && compareKeys(cut, String(range.hi)) > 0) break;
      if (range.prefix !== undefined && !key.startsWith(range.prefix)) break;
      if (prefix !== '' && !key.startsWith(prefix) && compareKeys(key, prefix) > 0) break;
      out.add(key);
    }
    return;
  }
  const start = range.lo !== undefined ? [bucket, field, range.rank, range.lo] : range.prefix !== undefined ? [bucket, field, range.rank, range.prefix] : [bucket, field, range.rank];
  for (const k of store.qindex.getKeys({ start })) {
    if (k[0] !== bucket || k[1] !== field || k[2] !== range.rank) break;
    const v = k[3] as number | string;
    if (range.hi !== undefined && (typeof v === 'number' ? v > (range.hi as number) : compareKeys(v, String(range.hi)) > 0)) break;
    if (range.prefix !== undefined && !(v as string).startsWith(range.prefix)) break;
    const key = k[4] as string;
    if (key.startsWith(prefix)) out.add(key);
  }
}
