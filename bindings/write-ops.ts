/**
 * The ops of `Backend.commitBatch` (the contract; re-exported by types.ts). Shared behaviour of the
 * backends' implementations is in write-batch.ts.
 */
import type { Expression } from './expr/index.ts';
import type { Item, Value } from './values.ts';

/**
 * Attribute effects on one object as ONE conditional change (what the runtime's committer writes per
 * record). Applied in this order: `set`, `remove`, then `updates`; the change bumps `attrsRevision` and
 * appends the object's `attrs` change record, like `ObjectBinding.updateAttrs`.
 */
export interface AttrsWriteOp {
  type: 'attrs';
  bucket: string;
  key: string;
  /** Attributes to set. @default {} */
  set?: Record<string, Value>;
  /** Attributes to remove. @default [] */
  remove?: string[];
  /** Update expressions applied after `set` / `remove`, in order. @default [] */
  updates?: Expression[];
  /** Write only when this holds on the current attributes. @default undefined (always) */
  condition?: Expression;
  /**
   * A processed-marker: write only when attribute `attr` is absent or a number below `seq`, and set it to
   * `seq` in the same change. The same as the condition `not_exists(attr) OR attr < seq` plus a SET, without
   * parsing an expression per record. @default undefined
   */
  marker?: { attr: string; seq: number };
  /** Who caused the change (the `Cause` of types.ts, spelled out here because types.ts re-exports this file; stamped into its change record as `UpdateAttrsOptions.cause`). @default undefined */
  cause?: { fn: string; hop: number };
}

/** A KV item write (e.g. a checkpoint), as `KvBinding.putItem`. */
export interface ItemWriteOp {
  type: 'putItem';
  table: string;
  key: string;
  item: Item;
  /** Write only when the item's revision equals this (0 = must not exist). @default undefined */
  ifRevision?: number;
}

/** One write of `Backend.commitBatch`; `after` chains it to an earlier op of the same batch. */
export type WriteOp = (AttrsWriteOp | ItemWriteOp) & {
  /**
   * Index of an earlier op of this batch that runs first (per-key order): when that op was `failed` or
   * `skipped`, this one is `skipped` and writes nothing. @default undefined (independent)
   */
  after?: number;
  /**
   * Runs after EVERY earlier op of this batch, and only when none of them was `failed` or `skipped`
   * (otherwise `skipped`, writing nothing): what the runtime uses to commit a shard's checkpoint in the
   * same batch as the effects it moves past (one LMDB transaction locally), computed as if they all land.
   * `condition` and `missing` answers of earlier ops do not stop it. @default false
   */
  afterAll?: boolean;
};

/**
 * Result of one op. `ok` with the new revision (attrsRevision for `attrs`, the item revision for
 * `putItem`). Answers that are not failures of the store: `condition` (its condition, marker or
 * `ifRevision` did not hold: ConditionFailedError) and `missing` (the object does not exist:
 * SLUICE_NOT_FOUND). `failed` with the error the single-op method would have thrown (a refused commit,
 * an invalid op); `skipped` when its `after` op was `failed` or `skipped`.
 */
export type WriteOpResult = { status: 'ok'; revision: number } | { status: 'condition' | 'missing' | 'failed'; error: Error } | { status: 'skipped' };

/** The durability option of `Backend.commitBatch` (its options are this and CallOptions). */
export interface CommitDurability {
  /**
   * What a system crash (power loss, kernel panic — not a process crash) may do to the batch once its
   * promise resolved. `'synced'`: nothing. `'repairable'`: on local the batch may be undone — whole, and
   * only while it is the last commit of the store (any later commit makes it durable) — because its commit
   * skips the sync of LMDB's meta page: one disk sync instead of two, LMDB's integrity kept. For batches
   * that a redelivery writes again when undone: the runtime's own commits (effects, processed-markers and
   * the checkpoint that passes them are undone together, so the records are delivered again and meet no
   * marker). NATS: every write is acknowledged by JetStream as before (the option changes nothing).
   * @default 'synced'
   */
  durability?: 'synced' | 'repairable';
}
