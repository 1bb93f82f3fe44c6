/**
 * Durable per-function state in the backend's KV table `sluice-state`. This module owns EVERY key of that
 * table and the shape of every record stored under it; nothing else builds a state key or reads a stored
 * record by casting (the controller reads through {@link StateReader}).
 *
 * - `lease/<fn>/<shard>` ({@link LeaseRecord}): who owns the shard, with an epoch that grows at every
 *   change of owner;
 * - `ckpt/<fn>/<shard>` ({@link Checkpoint}): next sequence to read, the records still pending (retries
 *   and the records of their keys that wait behind them), counters held for pending records, the
 *   function's counter totals for that shard and the records consumed;
 * - `replicas/<fn>` ({@link ReplicasRecord}): the live replica count the controller publishes.
 *
 * The checkpoint is written with a revision condition, so it is the fence: a worker whose lease was
 * taken over fails its next checkpoint write and stops the shard (SLUICE_LEASE_LOST). Counters move
 * in the same write as the position, so they are exact after any crash (DESIGN invariant 2).
 *
 * Decoding is tolerant of missing fields (a checkpoint written by an older version has no `holds`) and
 * strict about types: a field of the wrong type reads as absent, never as a lie the type system believes.
 */
import { BindingError, ConditionFailedError } from '../bindings/errors.ts';
import type { Backend, Item, ItemWriteOp, KvBinding, Value, WriteOpResult } from '../bindings/types.ts';

/** Name of the KV table holding leases, checkpoints and replica counts. */
export const STATE_TABLE = 'sluice-state';

/** Every key of the state table. */
export const StateKeys = {
  lease: (fn: string, shard: number): string => `lease/${fn}/${shard}`,
  checkpoint: (fn: string, shard: number): string => `ckpt/${fn}/${shard}`,
  replicas: (fn: string): string => `replicas/${fn}`,
  /** The run history of a scheduled query trigger (runtime/triggers/query.ts). */
  queryRuns: (fn: string): string => `qruns/${fn}`,
  /** Where an HTTP-triggered worker listens (runtime/triggers/http.ts), read by the platform's ingress. */
  httpWorker: (fn: string, ordinal: number): string => `http/${fn}/${ordinal}`,
  /** The platform generation, bumped by every start of a local platform (fences orphan workers). */
  generation: 'platform/generation',
} as const;

/** State-table key of a function's live replica count, written by the controller, read by workers. */
export function replicasKey(fn: string): string {
  return StateKeys.replicas(fn);
}

// ───────────────────────────── records ─────────────────────────────

/** A lease as stored. `owner` '' means released. */
export interface LeaseRecord {
  owner: string;
  epoch: number;
  /** Epoch ms after which another worker may take the shard. */
  expiresAt: number;
  /** Platform generation of the owner (0: unknown); a newer generation may take the lease at once. */
  gen: number;
}

/** One scheduled query run as stored (see runtime/triggers/query.ts `QueryRun`). */
export interface QueryRunRecord {
  id: string;
  startedAt: string;
  finishedAt?: string;
  matched: number;
  firstSeq?: number;
  lastSeq?: number;
}

/** A held lease (in memory: the stored record's revision is the CAS token). */
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

/**
 * Counters of one handler invocation whose records did not all finish in the step that ran it (a commit
 * failed, or a record waits behind a failed one of its key). They are added to the totals when the last
 * of `seqs` finishes; the records in `seqs` re-run without counting (see runtime/checkpoint.ts).
 */
export interface CounterHold {
  counts: Record<string, number>;
  /** Pending records the counts wait for, ascending. */
  seqs: number[];
}

/** A shard's checkpoint. */
export interface Checkpoint {
  /** Next sequence to read from the shard; every record before it is done or in `pending`. */
  seq: number;
  /** Pending records, ascending by seq. */
  pending: PendingRecord[];
  /** Counters waiting for pending records to finish. */
  holds: CounterHold[];
  /** Counter totals of this shard. */
  counts: Record<string, number>;
  /** Records consumed from the shard so far (handled, skipped or dead-lettered): throughput for the autoscaler. */
  handled: number;
  epoch: number;
}

/** The live replica count of a function. */
export interface ReplicasRecord {
  replicas: number;
  /** Epoch ms of the write. */
  at: number;
}

// ───────────────────────────── codecs ─────────────────────────────

const num = (v: Value | undefined, d: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : d);
const str = (v: Value | undefined, d: string): string => (typeof v === 'string' ? v : d);
const list = (v: Value | undefined): Value[] => (Array.isArray(v) ? v : []);
const map = (v: Value | undefined): { [k: string]: Value } | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date) ? v : undefined;

function decodeCounts(v: Value | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, n] of Object.entries(map(v) ?? {})) if (typeof n === 'number' && Number.isFinite(n)) out[k] = n;
  return out;
}

/** Encodes a lease record. */
export function encodeLease(l: LeaseRecord): Item {
  return { owner: l.owner, epoch: l.epoch, expiresAt: l.expiresAt, gen: l.gen };
}

/** Decodes a stored lease record. */
export function decodeLease(item: Item): LeaseRecord {
  return { owner: str(item.owner, ''), epoch: num(item.epoch, 0), expiresAt: num(item.expiresAt, 0), gen: num(item.gen, 0) };
}

function encodePending(p: PendingRecord): Item {
  const out: Item = { seq: p.seq, key: p.key, attempts: p.attempts, firstAt: p.firstAt, nextAt: p.nextAt };
  if (p.error) out.error = { code: p.error.code, message: p.error.message };
  return out;
}

function decodePending(v: Value): PendingRecord | undefined {
  const m = map(v);
  if (!m || typeof m.seq !== 'number') return undefined;
  const p: PendingRecord = { seq: m.seq, key: str(m.key, ''), attempts: num(m.attempts, 0), firstAt: num(m.firstAt, 0), nextAt: num(m.nextAt, 0) };
  const e = map(m.error);
  if (e) p.error = { code: str(e.code, 'SLUICE_INTERNAL'), message: str(e.message, '') };
  return p;
}

/** Encodes a checkpoint as a KV item. */
export function encodeCheckpoint(c: Checkpoint): Item {
  return {
    seq: c.seq,
    pending: c.pending.map(encodePending),
    holds: c.holds.map((h) => ({ counts: { ...h.counts }, seqs: [...h.seqs] })),
    counts: { ...c.counts },
    handled: c.handled,
    epoch: c.epoch,
  };
}

/** Decodes a stored checkpoint (`epoch` of the reader replaces the stored one when given). */
export function decodeCheckpoint(item: Item, epoch?: number): Checkpoint {
  const pending = list(item.pending)
    .map(decodePending)
    .filter((p): p is PendingRecord => p !== undefined);
  const holds: CounterHold[] = [];
  for (const h of list(item.holds)) {
    const m = map(h);
    if (!m) continue;
    holds.push({ counts: decodeCounts(m.counts), seqs: list(m.seqs).filter((s): s is number => typeof s === 'number') });
  }
  return { seq: num(item.seq, 0), pending, holds, counts: decodeCounts(item.counts), handled: num(item.handled, 0), epoch: epoch ?? num(item.epoch, 0) };
}

/** Decodes a stored replica count; undefined when it is not a positive integer. */
export function decodeReplicas(item: Item): ReplicasRecord | undefined {
  const r = item.replicas;
  return typeof r === 'number' && Number.isInteger(r) && r >= 1 ? { replicas: r, at: num(item.at, 0) } : undefined;
}

// ───────────────────────────── access ─────────────────────────────

/** Opens (creating) the state table. */
export async function openStateTable(backend: Backend): Promise<KvBinding> {
  await backend.createTable(STATE_TABLE);
  return backend.kv(STATE_TABLE);
}

/** Typed reads of a function's state for observers (the controller, the CLI, tests); one writer call. */
export class StateReader {
  readonly #kv: KvBinding;

  constructor(kv: KvBinding) {
    this.#kv = kv;
  }

  /** The run history of a scheduled query trigger, newest first (runtime/triggers/query.ts writes it). */
  async queryRuns(fn: string): Promise<QueryRunRecord[]> {
    const runs = (await this.#kv.getItem(StateKeys.queryRuns(fn)))?.item.runs;
    if (!Array.isArray(runs)) return [];
    const out: QueryRunRecord[] = [];
    for (const v of runs) {
      const m = map(v);
      if (!m || typeof m.id !== 'string') continue;
      const r: QueryRunRecord = { id: m.id, startedAt: str(m.startedAt, ''), matched: num(m.matched, 0) };
      if (typeof m.finishedAt === 'string') r.finishedAt = m.finishedAt;
      if (typeof m.firstSeq === 'number') r.firstSeq = m.firstSeq;
      if (typeof m.lastSeq === 'number') r.lastSeq = m.lastSeq;
      out.push(r);
    }
    return out;
  }

  /** The shard's checkpoint, or undefined before its first owner claimed it. */
  async checkpoint(fn: string, shard: number): Promise<Checkpoint | undefined> {
    const cur = await this.#kv.getItem(StateKeys.checkpoint(fn, shard));
    return cur && decodeCheckpoint(cur.item);
  }

  /** The shard's lease record, or undefined when no worker ever took it. */
  async lease(fn: string, shard: number): Promise<LeaseRecord | undefined> {
    const cur = await this.#kv.getItem(StateKeys.lease(fn, shard));
    return cur && decodeLease(cur.item);
  }

  /** The live replica count published for `fn`. */
  async replicas(fn: string): Promise<ReplicasRecord | undefined> {
    const cur = await this.#kv.getItem(StateKeys.replicas(fn));
    return cur && decodeReplicas(cur.item);
  }

  /** Publishes the live replica count (the controller's one write to this table). */
  async publishReplicas(fn: string, replicas: number, at = Date.now()): Promise<void> {
    await this.#kv.putItem(StateKeys.replicas(fn), { replicas, at });
  }

  /** Sums the counters of every shard of a function. */
  async counters(fn: string, shards: number): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (let s = 0; s < shards; s++) {
      const c = await this.checkpoint(fn, s);
      for (const [k, v] of Object.entries(c?.counts ?? {})) out[k] = (out[k] ?? 0) + v;
    }
    return out;
  }
}

/** Sums the counters of every shard of a function (exact: each shard's totals are committed with its position). */
export function readCounters(kv: KvBinding, fn: string, shards: number): Promise<Record<string, number>> {
  return new StateReader(kv).counters(fn, shards);
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

  /** Takes the shard when it is free, expired or already ours; undefined when another owner holds it. */
  async acquire(shard: number): Promise<Lease | undefined> {
    const key = StateKeys.lease(this.#fn, shard);
    const cur = await this.#kv.getItem(key);
    const now = Date.now();
    const held = cur && decodeLease(cur.item);
    // A live lease of another owner blocks us — unless that owner belongs to an older platform
    // generation (an orphan of a killed platform): the new epoch fences it (its renewals and
    // checkpoint writes fail from now on).
    if (held && held.owner && held.owner !== this.#owner && held.expiresAt > now && !(this.#generation > 0 && held.gen < this.#generation)) return undefined;
    const epoch = (held?.epoch ?? 0) + 1;
    const expiresAt = now + this.#ttlMs;
    try {
      const w = await this.#kv.putItem(key, encodeLease({ owner: this.#owner, epoch, expiresAt, gen: this.#generation }), { ifRevision: cur?.revision ?? 0 });
      return { shard, epoch, revision: w.revision, expiresAt };
    } catch (e) {
      if (e instanceof ConditionFailedError) return undefined;
      throw e;
    }
  }

  /** Extends a held lease; false when it was lost (taken over or expired and taken). */
  async renew(lease: Lease): Promise<boolean> {
    const key = StateKeys.lease(this.#fn, lease.shard);
    for (let attempt = 0; ; attempt++) {
      const expiresAt = Date.now() + this.#ttlMs;
      try {
        const w = await this.#kv.putItem(key, encodeLease({ owner: this.#owner, epoch: lease.epoch, expiresAt, gen: this.#generation }), { ifRevision: lease.revision });
        lease.revision = w.revision;
        lease.expiresAt = expiresAt;
        return true;
      } catch (e) {
        if (!(e instanceof ConditionFailedError)) throw e;
        // An earlier renewal whose answer was lost (a timeout during a leader change) may have landed:
        // the record is then still ours, same epoch, at a newer revision. Not a lost lease.
        const cur = attempt === 0 ? await this.#kv.getItem(key) : undefined;
        const held = cur && decodeLease(cur.item);
        if (!cur || !held || held.owner !== this.#owner || held.epoch !== lease.epoch) return false;
        lease.revision = cur.revision;
      }
    }
  }

  /** Gives a lease back so the next owner need not wait for it to expire. */
  async release(lease: Lease): Promise<void> {
    try {
      await this.#kv.putItem(StateKeys.lease(this.#fn, lease.shard), encodeLease({ owner: '', epoch: lease.epoch, expiresAt: 0, gen: this.#generation }), { ifRevision: lease.revision });
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
    this.#key = StateKeys.checkpoint(fn, shard);
  }

  /** Loads the checkpoint (or a fresh one starting at `startSeq`), and the epoch stored with it. */
  async #load(startSeq: number, epoch: number): Promise<{ c: Checkpoint; storedEpoch: number | undefined }> {
    const cur = await this.#kv.getItem(this.#key);
    this.#revision = cur?.revision ?? 0;
    if (!cur) return { c: { seq: startSeq, pending: [], holds: [], counts: {}, handled: 0, epoch }, storedEpoch: undefined };
    const stored = decodeCheckpoint(cur.item);
    return { c: { ...stored, epoch }, storedEpoch: stored.epoch };
  }

  /** Loads the checkpoint (or a fresh one starting at `startSeq`). */
  async load(startSeq: number, epoch: number): Promise<Checkpoint> {
    return (await this.#load(startSeq, epoch)).c;
  }

  /**
   * Takes the checkpoint over for `epoch`: loads it and writes it back under the new epoch, reloading
   * when an older owner writes in between (its progress is kept, not overwritten). From then on, the
   * older owner's writes fail. SLUICE_LEASE_LOST when a newer epoch already holds it.
   */
  async claim(startSeq: number, epoch: number): Promise<Checkpoint> {
    for (let attempt = 0; ; attempt++) {
      const { c, storedEpoch } = await this.#load(startSeq, epoch);
      if (storedEpoch !== undefined && storedEpoch > epoch) throw new BindingError('SLUICE_LEASE_LOST', `checkpoint ${this.#key} is held by epoch ${storedEpoch} > ${epoch}`);
      try {
        await this.save(c);
        return c;
      } catch (e) {
        if (!(e instanceof BindingError && e.code === 'SLUICE_LEASE_LOST') || attempt >= 50) throw e;
      }
    }
  }

  /**
   * The write of {@link save} as an op of a {@link Backend.commitBatch} (the runner sends it with the next
   * batch's effects: one store transaction on local); hand its result to {@link settle}.
   */
  saveOp(c: Checkpoint): ItemWriteOp {
    return { type: 'putItem', table: this.#kv.table, key: this.#key, item: encodeCheckpoint(c), ifRevision: this.#revision };
  }

  /** Takes the result of a {@link saveOp}: as {@link save} would have ended (throws SLUICE_LEASE_LOST or the write's error). */
  async settle(c: Checkpoint, r: WriteOpResult): Promise<void> {
    if (r.status === 'ok') {
      this.#revision = r.revision;
      return;
    }
    if (r.status === 'skipped') throw new BindingError('SLUICE_INTERNAL', `checkpoint ${this.#key} was not written (its op was skipped)`);
    if (r.error instanceof ConditionFailedError) return this.#conflict(c, r.error, false);
    throw r.error;
  }

  /** A conditional write of `c` found another checkpoint: adopt our own landed write once, else SLUICE_LEASE_LOST. */
  async #conflict(c: Checkpoint, e: ConditionFailedError, adopted: boolean): Promise<void> {
    const cur = e.current;
    const other = cur !== null && typeof cur === 'object' && !Array.isArray(cur) ? decodeCheckpoint(cur as Item).epoch : undefined;
    if (other === c.epoch && !adopted) {
      // Only this owner writes its epoch: an earlier write whose answer was lost (a timeout during
      // a leader change) landed after all. Write over it — the caller's checkpoint follows from the
      // last one it knows landed, as after a crash — instead of stopping the shard as "lost".
      const now = await this.#kv.getItem(this.#key);
      if (now && decodeCheckpoint(now.item).epoch === c.epoch) {
        this.#revision = now.revision;
        return this.save(c, true);
      }
    }
    throw new BindingError('SLUICE_LEASE_LOST', `checkpoint ${this.#key} was written by another worker (epoch ${other}); this worker (epoch ${c.epoch}) stops the shard`, { cause: e });
  }

  /** Writes the checkpoint if nobody else wrote it since (`adopted`: internal, one retry over our own landed write); SLUICE_LEASE_LOST otherwise. */
  async save(c: Checkpoint, adopted = false): Promise<void> {
    try {
      const w = await this.#kv.putItem(this.#key, encodeCheckpoint(c), { ifRevision: this.#revision });
      this.#revision = w.revision;
    } catch (e) {
      if (e instanceof ConditionFailedError) return this.#conflict(c, e, adopted);
      throw e;
    }
  }
}

/** State-table key of the platform generation: bumped by every start of a local platform. */
export const GENERATION_KEY = StateKeys.generation;

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

