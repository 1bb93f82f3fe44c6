/**
 * Durable per-shard state of a function, in the backend's KV table `sluice-state`:
 * - `lease/<fn>/<shard>`: who owns the shard, with an epoch that grows at every change of owner;
 * - `ckpt/<fn>/<shard>`: the checkpoint — next sequence to read, the records still pending (retries and
 *   the records of their keys that wait behind them) and the function's counters for that shard.
 *
 * The checkpoint is written with a revision condition, so it is the fence: a worker whose lease was
 * taken over fails its next checkpoint write and stops the shard (SLUICE_LEASE_LOST). Counters move
 * in the same write as the position, so they are exact after any crash (DESIGN invariant 2).
 */
import { BindingError, ConditionFailedError } from '../bindings/errors.ts';
import type { Backend, KvBinding } from '../bindings/types.ts';

/** Name of the KV table holding leases and checkpoints. */
export const STATE_TABLE = 'sluice-state';

/** A held lease. */
export interface Lease {
  shard: number;
  epoch: number;
  revision: number;
  expiresAt: number;
}

/** A record that has to run again (after a failure), or that waits behind one of its key. */
export interface PendingRecord {
  seq: number;
  key: string;
  /** Attempts made so far (0 for a record waiting behind an earlier one of its key). */
  attempts: number;
  /** Epoch ms of the first attempt. */
  firstAt: number;
  /** Not before this epoch ms. */
  nextAt: number;
  /** Last error, when it failed. */
  error?: { code: string; message: string };
}

/** A shard's checkpoint. */
export interface Checkpoint {
  /** Next sequence to read from the shard; every record before it is done or in `pending`. */
  seq: number;
  /** Pending records, ascending by seq. */
  pending: PendingRecord[];
  /** Counter totals of this shard. */
  counts: Record<string, number>;
  /** Records consumed from the shard so far (handled, skipped or dead-lettered): throughput for the autoscaler. */
  handled: number;
  epoch: number;
}

/** Opens (creating) the state table. */
export async function openStateTable(backend: Backend): Promise<KvBinding> {
  await backend.createTable(STATE_TABLE);
  return backend.kv(STATE_TABLE);
}

/** Leases of one function's shards. */
export class Leases {
  readonly #kv: KvBinding;
  readonly #fn: string;
  readonly #owner: string;
  readonly #ttlMs: number;
  readonly #generation: number;

  /** `generation` > 0: leases held by workers of an older platform generation are taken over at once. */
  constructor(kv: KvBinding, fn: string, owner: string, ttlMs: number, generation = 0) {
    this.#kv = kv;
    this.#fn = fn;
    this.#owner = owner;
    this.#ttlMs = ttlMs;
    this.#generation = generation;
  }

  #key(shard: number): string {
    return `lease/${this.#fn}/${shard}`;
  }

  /** Takes the shard when it is free, expired or already ours; undefined when another owner holds it. */
  async acquire(shard: number): Promise<Lease | undefined> {
    const cur = await this.#kv.getItem(this.#key(shard));
    const now = Date.now();
    const owner = cur?.item.owner as string | undefined;
    const heldGen = (cur?.item.gen as number | undefined) ?? 0;
    // A live lease of another owner blocks us — unless that owner belongs to an older platform
    // generation (an orphan of a killed platform): the new epoch fences it (its renewals and
    // checkpoint writes fail from now on).
    if (cur && owner && owner !== this.#owner && (cur.item.expiresAt as number) > now && !(this.#generation > 0 && heldGen < this.#generation)) return undefined;
    const epoch = ((cur?.item.epoch as number | undefined) ?? 0) + 1;
    const expiresAt = now + this.#ttlMs;
    try {
      const w = await this.#kv.putItem(this.#key(shard), { owner: this.#owner, epoch, expiresAt, gen: this.#generation }, { ifRevision: cur?.revision ?? 0 });
      return { shard, epoch, revision: w.revision, expiresAt };
    } catch (e) {
      if (e instanceof ConditionFailedError) return undefined;
      throw e;
    }
  }

  /** Extends a held lease; false when it was lost (taken over or expired and taken). */
  async renew(lease: Lease): Promise<boolean> {
    const expiresAt = Date.now() + this.#ttlMs;
    try {
      const w = await this.#kv.putItem(this.#key(lease.shard), { owner: this.#owner, epoch: lease.epoch, expiresAt, gen: this.#generation }, { ifRevision: lease.revision });
      lease.revision = w.revision;
      lease.expiresAt = expiresAt;
      return true;
    } catch (e) {
      if (e instanceof ConditionFailedError) return false;
      throw e;
    }
  }

  /** Gives a lease back so the next owner need not wait for it to expire. */
  async release(lease: Lease): Promise<void> {
    try {
      await this.#kv.putItem(this.#key(lease.shard), { owner: '', epoch: lease.epoch, expiresAt: 0 }, { ifRevision: lease.revision });
    } catch (e) {
      if (!(e instanceof ConditionFailedError)) throw e;
    }
  }
}

/** Reads and writes one shard's checkpoint with revision fencing. */
export class CheckpointStore {
  readonly #kv: KvBinding;
  readonly #key: string;
  #revision = 0;

  constructor(kv: KvBinding, fn: string, shard: number) {
    this.#kv = kv;
    this.#key = `ckpt/${fn}/${shard}`;
  }

  /** Loads the checkpoint (or a fresh one starting at `startSeq`). */
  async load(startSeq: number, epoch: number): Promise<Checkpoint> {
    const cur = await this.#kv.getItem(this.#key);
    this.#revision = cur?.revision ?? 0;
    if (!cur) return { seq: startSeq, pending: [], counts: {}, handled: 0, epoch };
    const c = cur.item as unknown as Checkpoint;
    return { seq: c.seq, pending: c.pending ?? [], counts: c.counts ?? {}, handled: c.handled ?? 0, epoch };
  }

  /**
   * Takes the checkpoint over for `epoch`: loads it and writes it back under the new epoch, reloading
   * when an older owner writes in between (its progress is kept, not overwritten). From then on, the
   * older owner's writes fail. SLUICE_LEASE_LOST when a newer epoch already holds it.
   */
  async claim(startSeq: number, epoch: number): Promise<Checkpoint> {
    for (let attempt = 0; ; attempt++) {
      const c = await this.load(startSeq, epoch);
      const stored = (await this.#kv.getItem(this.#key))?.item.epoch as number | undefined;
      if (stored !== undefined && stored > epoch) throw new BindingError('SLUICE_LEASE_LOST', `checkpoint ${this.#key} is held by epoch ${stored} > ${epoch}`);
      try {
        await this.save(c);
        return c;
      } catch (e) {
        if (!(e instanceof BindingError && e.code === 'SLUICE_LEASE_LOST') || attempt >= 50) throw e;
      }
    }
  }

  /** Writes the checkpoint if nobody else wrote it since; SLUICE_LEASE_LOST otherwise. */
  async save(c: Checkpoint): Promise<void> {
    try {
      const w = await this.#kv.putItem(this.#key, c as unknown as Record<string, never>, { ifRevision: this.#revision });
      this.#revision = w.revision;
    } catch (e) {
      if (e instanceof ConditionFailedError)
        throw new BindingError('SLUICE_LEASE_LOST', `checkpoint ${this.#key} was written by another worker (epoch ${(e.current as Checkpoint | undefined)?.epoch}); this worker (epoch ${c.epoch}) stops the shard`, { cause: e });
      throw e;
    }
  }
}

/** State-table key of the platform generation: bumped by every start of a local platform. */
export const GENERATION_KEY = 'platform/generation';

/** Reads the current platform generation (0 when none was ever written). */
export async function readGeneration(kv: KvBinding): Promise<number> {
  const g = (await kv.getItem(GENERATION_KEY))?.item.generation;
  return typeof g === 'number' ? g : 0;
}

/**
 * Starts a new platform generation (CAS loop, so two platforms starting together get distinct
 * numbers) and returns it. Workers of older generations exit when they see it (see WorkerOptions.generation).
 */
export async function nextGeneration(kv: KvBinding): Promise<number> {
  for (;;) {
    const cur = await kv.getItem(GENERATION_KEY);
    const next = ((cur?.item.generation as number | undefined) ?? 0) + 1;
    try {
      await kv.putItem(GENERATION_KEY, { generation: next, at: Date.now() }, { ifRevision: cur?.revision ?? 0 });
      return next;
    } catch (e) {
      if (!(e instanceof ConditionFailedError)) throw e;
    }
  }
}

/** State-table key of a function's live replica count, written by the controller, read by workers. */
export function replicasKey(fn: string): string {
  return `replicas/${fn}`;
}

/** Sums the counters of every shard of a function (exact: each shard's totals are committed with its position). */
export async function readCounters(kv: KvBinding, fn: string, shards: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let s = 0; s < shards; s++) {
    const c = (await kv.getItem(`ckpt/${fn}/${s}`))?.item as unknown as Checkpoint | undefined;
    for (const [k, v] of Object.entries(c?.counts ?? {})) out[k] = (out[k] ?? 0) + v;
  }
  return out;
}
