/**
 * KV tables on the embedded store. Revisions come from one counter per table, so a key deleted and
 * written again never reuses a revision (no ABA for `ifRevision`).
 */
import { BindingError, ConditionFailedError } from '../errors.ts';
import { applyUpdate, checkCondition, checkUpdate, evaluateCondition } from '../expr/index.ts';
import { checkSignal, project, resolveGetItems, shardOf } from '../shared.ts';
import type {
  ConditionalOptions,
  Expression,
  GetItemOptions,
  GetItemsOptions,
  GetItemsResult,
  ItemEntry,
  KvBinding,
  UpdateItemResult,
  WriteResult,
} from '../types.ts';
import { checkItem, checkKey, compareKeys, type Item } from '../values.ts';
import type { LocalStore, StoredItem } from './local-store.ts';

/** Checks `condition` and `ifRevision` against the current entry; throws ConditionFailedError. */
export function checkItemConditions(op: string, key: string, cur: { item: Item; revision: number } | undefined, o: ConditionalOptions | undefined): void {
  if (o?.ifRevision !== undefined && (cur?.revision ?? 0) !== o.ifRevision)
    throw new ConditionFailedError(`${op} '${key}': ifRevision ${o.ifRevision} but the item is at revision ${cur?.revision ?? 0}`, cur?.item, cur?.revision);
  if (o?.condition !== undefined && !evaluateCondition(o.condition, cur?.item))
    throw new ConditionFailedError(`${op} '${key}': condition did not hold`, cur?.item, cur?.revision);
}

/** Validates conditional options before any write. */
export function checkConditionalOptions(op: string, key: string, o: ConditionalOptions | undefined): void {
  if (o?.condition !== undefined) checkCondition(o.condition, `${op} '${key}': condition`);
  if (o?.ifRevision !== undefined && (!Number.isSafeInteger(o.ifRevision) || o.ifRevision < 0))
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${op} '${key}': ifRevision must be a non-negative integer`);
  checkSignal(o?.signal, `${op} '${key}'`);
}

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
    checkConditionalOptions('putItem', key, options);
    const s = this.#store;
    return s.write(() => {
      checkItemConditions('putItem', key, this.#current(key), options);
      const revision = s.next(['r', this.table]);
      s.items.put([this.table, key], { i: item, r: revision });
      return { revision };
    });
  }

  async updateItem(key: string, update: Expression, options?: ConditionalOptions): Promise<UpdateItemResult> {
    this.#where(key);
    checkUpdate(update, `updateItem '${key}': update`);
    checkConditionalOptions('updateItem', key, options);
    const s = this.#store;
    return s.write(() => {
      const cur = this.#current(key);
      checkItemConditions('updateItem', key, cur, options);
      const item = applyUpdate(update, cur?.item);
      checkItem(item, `updateItem '${key}': resulting item`);
      const revision = s.next(['r', this.table]);
      s.items.put([this.table, key], { i: item, r: revision });
      return { item, revision };
    });
  }

  async deleteItem(key: string, options?: ConditionalOptions): Promise<boolean> {
    this.#where(key);
    checkConditionalOptions('deleteItem', key, options);
    const s = this.#store;
    return s.write(() => {
      const cur = this.#current(key);
      checkItemConditions('deleteItem', key, cur, options);
      if (!cur) return false;
      s.next(['r', this.table]);
      s.items.remove([this.table, key]);
      return true;
    });
  }
}
