/**
 * KV tables on NATS: one KV bucket per table (`<prefix>_kv_<table>`, one message kept per key), items
 * msgpack-encoded under the base64url of their key. An item's revision is its KV revision (the stream
 * sequence of its last write). Conditional writes read the current item, check, and append with a CAS
 * on the revision they read; a lost race re-reads and re-checks.
 */
import { BindingError } from '../errors.ts';
import { applyUpdate, checkCondition, evaluateCondition, type Expression } from '../expr/index.ts';
import { checkItemConditions, checkSignal, project, resolveConditional, resolveGetItems, updateList } from '../backend-helpers.ts';
import { shardOf } from '../change-record.ts';
import { codec } from '../codec.ts';
import type {
  ConditionalOptions,
  GetItemOptions,
  GetItemsOptions,
  GetItemsResult,
  ItemEntry,
  KvBinding,
  UpdateItemResult,
  WriteResult,
} from '../types.ts';
import { checkItem, checkKey, compareKeys, visibleAttrs, type Item } from '../values.ts';
import { casBackoff, type NatsContext } from './nats-context.ts';
import { isWrongLastSequence, toBindingError } from './nats-errors.ts';
import { KvStore } from './nats-kvstore.ts';
import { encodeKey, tableKeyOfSubject } from './nats-names.ts';

/** Messages kept per key of a table: only the current item is ever read. */
export const TABLE_HISTORY = 1;
/** Optimistic attempts of one conditional write before SLUICE_CONFLICT. */
const MAX_ATTEMPTS = 100;

interface CurrentItem {
  /** Revision of the key's latest message (0 when the key never existed): the CAS expectation. */
  revision: number;
  /** The item, or undefined when absent (never written, or deleted). */
  item: Item | undefined;
}

function checkAttrList(attrs: unknown, where: string): asserts attrs is string[] | undefined {
  if (attrs !== undefined && (!Array.isArray(attrs) || attrs.some((a) => typeof a !== 'string')))
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: attrs must be an array of attribute names`);
}

/** Items in one table. */
export class NatsKv implements KvBinding {
  readonly table: string;
  readonly #kv: KvStore;

  constructor(ctx: NatsContext, table: string) {
    this.table = table;
    this.#kv = new KvStore(ctx, ctx.names.tableKv(table));
  }

  async getItem(key: string, options?: GetItemOptions): Promise<ItemEntry | undefined> {
    const where = `getItem '${String(key)}' from table '${this.table}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `table '${this.table}': key`);
    checkAttrList(options?.attrs, where);
    try {
      const cur = await this.#read(key);
      if (cur.item === undefined) return undefined;
      return { key, item: project(cur.item, options?.attrs), revision: cur.revision };
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_TABLE_NOT_FOUND' });
    }
  }

  async getItems(options?: GetItemsOptions): Promise<GetItemsResult> {
    const where = `getItems from table '${this.table}'`;
    checkSignal(options?.signal, where);
    const r = resolveGetItems(this.table, options);
    const filter = options?.filter;
    if (filter !== undefined) checkCondition(filter, `${where}: filter`);
    checkAttrList(options?.attrs, where);
    try {
      const records = await this.#kv.scan('>', { signal: options?.signal });
      const candidates: { key: string; value: Uint8Array; revision: number }[] = [];
      for (const rec of records) {
        if (rec.op !== 'PUT') continue;
        const key = tableKeyOfSubject(rec.subject, this.#kv.bucket);
        if (key === undefined) continue;
        if (r.totalSegments > 1 && shardOf(key, r.totalSegments) !== r.segment) continue;
        if (r.marker !== '' && compareKeys(key, r.marker) <= 0) continue;
        candidates.push({ key, value: rec.value, revision: rec.revision });
      }
      candidates.sort((a, b) => compareKeys(a.key, b.key));
      const items: ItemEntry[] = [];
      let more = false;
      for (const c of candidates) {
        const item = codec.unpack(c.value) as Item;
        if (filter !== undefined && !evaluateCondition(filter, item)) continue;
        // Only report a next page when another matching item really follows.
        if (items.length === r.limit) {
          more = true;
          break;
        }
        items.push({ key: c.key, item: project(item, options?.attrs), revision: c.revision });
      }
      const out: GetItemsResult = { items };
      const last = items[items.length - 1];
      if (more && last) out.nextMarker = last.key;
      return out;
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_TABLE_NOT_FOUND' });
    }
  }

  async putItem(key: string, item: Item, options?: ConditionalOptions): Promise<WriteResult> {
    const where = `putItem '${String(key)}' in table '${this.table}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `table '${this.table}': key`);
    checkItem(item, `${where}: item`);
    const c = resolveConditional(options, where);
    const value = codec.pack(item);
    try {
      // Unconditional puts are one append: last writer wins, nothing to read first.
      if (c.condition === undefined && c.ifRevision === undefined) return { revision: await this.#kv.put(encodeKey(key), value) };
      // A plain revision check is the server's own CAS: one append, no read (checkpoints and lease
      // renewals take this path on every batch). On a mismatch, the read below builds the error.
      if (c.condition === undefined && c.ifRevision !== undefined && c.ifRevision > 0) {
        const revision = await this.#cas(key, value, { revision: c.ifRevision, item: undefined });
        if (revision !== undefined) return { revision };
      }
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        checkSignal(options?.signal, where);
        await casBackoff(attempt, options?.signal);
        const cur = await this.#read(key);
        this.#check(where, cur, c.condition, c.ifRevision);
        const revision = await this.#cas(key, value, cur);
        if (revision !== undefined) return { revision };
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent writers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_TABLE_NOT_FOUND' });
    }
  }

  async updateItem(key: string, update: Expression | Expression[], options?: ConditionalOptions): Promise<UpdateItemResult> {
    const where = `updateItem '${String(key)}' in table '${this.table}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `table '${this.table}': key`);
    const updates = updateList(update, where);
    const c = resolveConditional(options, where);
    try {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        checkSignal(options?.signal, where);
        await casBackoff(attempt, options?.signal);
        const cur = await this.#read(key);
        this.#check(where, cur, c.condition, c.ifRevision);
        let item = cur.item;
        for (const u of updates) item = applyUpdate(u, item);
        checkItem(item!, `${where}: item`);
        const revision = await this.#cas(key, codec.pack(item), cur);
        if (revision !== undefined) return { revision, item: visibleAttrs(item!, false) as Item };
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent writers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_TABLE_NOT_FOUND' });
    }
  }

  async deleteItem(key: string, options?: ConditionalOptions): Promise<boolean> {
    const where = `deleteItem '${String(key)}' from table '${this.table}'`;
    checkSignal(options?.signal, where);
    checkKey(key, `table '${this.table}': key`);
    const c = resolveConditional(options, where);
    try {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        checkSignal(options?.signal, where);
        await casBackoff(attempt, options?.signal);
        const cur = await this.#read(key);
        this.#check(where, cur, c.condition, c.ifRevision);
        if (cur.item === undefined) return false;
        try {
          await this.#kv.delete(encodeKey(key), { expect: cur.revision });
          return true;
        } catch (err) {
          if (!isWrongLastSequence(err)) throw err;
        }
      }
      throw new BindingError('SLUICE_CONFLICT', `${where}: concurrent writers won ${MAX_ATTEMPTS} attempts`);
    } catch (err) {
      throw toBindingError(err, where, { notFound: 'SLUICE_TABLE_NOT_FOUND' });
    }
  }

  // ── internals ──

  async #read(key: string): Promise<CurrentItem> {
    const rec = await this.#kv.get(encodeKey(key));
    if (!rec) return { revision: 0, item: undefined };
    if (rec.op !== 'PUT') return { revision: rec.revision, item: undefined };
    return { revision: rec.revision, item: codec.unpack(rec.value) as Item };
  }

  #check(where: string, cur: CurrentItem, condition: Expression | undefined, ifRevision: number | undefined): void {
    // A deletion marker's revision is not an item's: an absent item has revision 0 for ifRevision.
    checkItemConditions(where, cur.item === undefined ? undefined : { item: cur.item, revision: cur.revision }, { condition, ifRevision });
  }

  /** Appends with a CAS on the revision read; undefined when another writer got there first. */
  async #cas(key: string, value: Uint8Array, cur: CurrentItem): Promise<number | undefined> {
    try {
      return await this.#kv.put(encodeKey(key), value, { expect: cur.revision });
    } catch (err) {
      if (isWrongLastSequence(err)) return undefined;
      throw err;
    }
  }
}
