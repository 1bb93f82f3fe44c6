/**
 * KV tables on the embedded store. Revisions come from one counter per table, so a key deleted and
 * written again never reuses a revision (no ABA for `ifRevision`).
 */
import { applyUpdate, checkCondition, evaluateCondition } from '../expr/index.ts';
import { checkItemConditions, checkSignal, project, resolveConditional, resolveGetItems, updateList } from '../backend-helpers.ts';
import { shardOf } from '../change-record.ts';
import type {
  ConditionalOptions,
  Expression,
  GetItemOptions,
  GetItemsOptions,
  GetItemsResult,
  ItemEntry,
  ItemWriteOp,
  KvBinding,
  UpdateItemResult,
  WriteResult,
} from '../types.ts';
import { checkItem, checkKey, compareKeys, visibleAttrs, type Item } from '../values.ts';
import type { LocalStore, StoredItem } from './local-store.ts';

/** `KvBinding` over {@link LocalStore}. */
export class LocalKv implements KvBinding {
  readonly table: string;
  readonly #store: LocalStore;

  constructor(store: LocalStore, table: string) {
    this.#store = store;
    this.table = table;
  }

  #where(key: unknown): void {
    checkKey(key, `table '${this.table}': key`);
  }

  #current(key: string): { item: Item; revision: number } | undefined {
    const e = this.#store.items.get([this.table, key]);
    return e ? { item: e.i as Item, revision: e.r } : undefined;
  }

  async getItem(key: string, options?: GetItemOptions): Promise<ItemEntry | undefined> {
    this.#store.fresh();
    this.#where(key);
    checkSignal(options?.signal, `getItem '${key}'`);
    const e = this.#current(key);
    return e ? { key, item: project(e.item, options?.attrs), revision: e.revision } : undefined;
  }

  async getItems(options?: GetItemsOptions): Promise<GetItemsResult> {
    this.#store.fresh();
    const o = resolveGetItems(this.table, options);
    if (options?.filter !== undefined) checkCondition(options.filter, `getItems '${this.table}': filter`);
    checkSignal(options?.signal, `getItems '${this.table}'`);
    const items: ItemEntry[] = [];
    const table = this.table;
    let more = false;
    for (const { key, value } of this.#store.items.getRange({ start: [table, o.marker] })) {
      if (key[0] !== table) break;
      const k = key[1] as string;
      if (o.marker !== '' && compareKeys(k, o.marker) <= 0) continue;
      if (o.totalSegments > 1 && shardOf(k, o.totalSegments) !== o.segment) continue;
      const v = value as StoredItem;
      if (options?.filter !== undefined && !evaluateCondition(options.filter, v.i as Item)) continue;
      if (items.length === o.limit) {
        more = true;
        break;
      }
      items.push({ key: k, item: project(v.i as Item, options?.attrs), revision: v.r });
    }
    const out: GetItemsResult = { items };
    if (more) out.nextMarker = items[items.length - 1]!.key;
    return out;
  }

  async putItem(key: string, item: Item, options?: ConditionalOptions): Promise<WriteResult> {
    this.#where(key);
    checkItem(item, `putItem '${key}': item`);
    const where = `putItem '${key}'`;
    const c = resolveConditional(options, where);
    checkSignal(options?.signal, where);
    const s = this.#store;
    return s.write(() => {
      checkItemConditions(where, this.#current(key), c);
      const revision = s.next(['r', this.table]);
      s.items.put([this.table, key], { i: item, r: revision });
      return { revision };
    });
  }

  /** The item op of a {@link Backend.commitBatch}: checks and writes inside the caller's store write (validated already). */
  applyPutItem(op: ItemWriteOp, where: string): number {
    const s = this.#store;
    checkItemConditions(where, this.#current(op.key), { condition: undefined, ifRevision: op.ifRevision });
    const revision = s.next(['r', this.table]);
    s.items.put([this.table, op.key], { i: op.item, r: revision });
    return revision;
  }

  async updateItem(key: string, update: Expression | Expression[], options?: ConditionalOptions): Promise<UpdateItemResult> {
    this.#where(key);
    const updates = updateList(update, `updateItem '${key}'`);
    const where = `updateItem '${key}'`;
    const c = resolveConditional(options, where);
    checkSignal(options?.signal, where);
    const s = this.#store;
    return s.write(() => {
      const cur = this.#current(key);
      checkItemConditions(where, cur, c);
      let item = cur?.item;
      for (const u of updates) item = applyUpdate(u, item);
      checkItem(item!, `updateItem '${key}': resulting item`);
      const revision = s.next(['r', this.table]);
      s.items.put([this.table, key], { i: item!, r: revision });
      return { item: visibleAttrs(item!, false) as Item, revision };
    });
  }

  async deleteItem(key: string, options?: ConditionalOptions): Promise<boolean> {
    this.#where(key);
    const where = `deleteItem '${key}'`;
    const c = resolveConditional(options, where);
    checkSignal(options?.signal, where);
    const s = this.#store;
    return s.write(() => {
      const cur = this.#current(key);
      checkItemConditions(where, cur, c);
      if (!cur) return false;
      s.next(['r', this.table]);
      s.items.remove([this.table, key]);
      return true;
    }, { freeing: true });
  }
}
