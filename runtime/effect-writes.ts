/**
 * Committing effects beyond the triggering object (`record.effects`: KV item updates, emitted stream
 * records, attribute updates on other objects) with exactly-once effect per triggering record.
 *
 * Idempotency is keyed by function + triggering record, one mechanism per target kind:
 * - KV items and other objects carry a processed-marker per (function, triggering source, shard, key):
 *   the attribute `$sluice.<fn>/<source>/<shard>/<hash of the key>` holds `seq × 1024 + i` of the last
 *   effect `i` of record `seq` applied to it. Each write is conditioned on "marker absent or lower" and
 *   sets the marker in the same conditional write (one LMDB transaction locally, one revision CAS on
 *   NATS), so a repeat of the same effect fails its condition and is skipped. The marker is keyed by
 *   the triggering KEY because records of one key commit in sequence order (the committer's per-key
 *   order, DESIGN invariant 3) — so "lower" means "not yet applied" — while records of other keys and
 *   shards touching the same item have their own markers. Markers are internal attributes: user reads
 *   of items (`project`) and objects (`visibleAttrs`) hide them.
 * - Stream records carry `dedupeId = <fn>/<source>/<shard>/<seq>/<i>`: JetStream's `Nats-Msg-Id`
 *   de-duplication on NATS, a dedupe table checked in the append's own LMDB transaction locally. Both
 *   remember an id for the stream's dedupe window (2 minutes), which bounds how late a redelivery may
 *   come and still be recognised; a redelivery after a crash comes within seconds (lease TTL).
 *
 * Order: the effects here, in declaration order, BEFORE the triggering object's attribute write (its
 * marker is the "record done" mark). A crash anywhere in between leaves some effects applied with their
 * markers and the record unacked; the redelivery runs the handler again, every already-applied effect
 * fails its marker condition (or is a de-duplicated append) and is skipped, the rest apply, then the
 * triggering object's write — nothing twice, nothing lost. Effects of one record are not one
 * transaction across items (NATS has none): a record that fails for good after some of its effects
 * applied keeps those (each once); the handler should declare the same effects on every delivery.
 *
 * Other objects are written through the bucket's normal `updateAttrs`, so their change records are
 * made (and stamped) exactly as for any attribute write.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { SluiceError } from '../bindings/errors.ts';
import type { Backend, Cause, Expression, KvBinding, ObjectBinding, PutRecord, StreamBinding } from '../bindings/types.ts';
import { MAX_EFFECTS_PER_RECORD, type ExtraEffect } from '../functions/declared-effects.ts';
import type { BatchRecordInput, BindingSpec } from './batch-types.ts';
import { commitCause } from './chain.ts';

/** Result of committing a record's effects: all applied (now or by an earlier delivery), or why not. */
export type ExtraOutcome = 'ok' | { error: { code: string; message: string } };

/** Most emitted records per putRecords call (both backends take at least this many). */
const APPEND_CHUNK = 500;

/** Where the effect writer reaches the stores (a backend's factories; tests may pass their own). */
export type EffectTargets = Pick<Backend, 'kv' | 'objects' | 'streams'>;

/** The processed-marker attribute of function `fn` for effects of records of (source, shard, key). */
export function effectMarkerAttr(fn: string, source: string, shard: number, key: string): string {
  const h = createHash('sha256').update(key).digest('base64url').slice(0, 16);
  return `$sluice.${fn}/${source}/${shard}/${h}`;
}

/** The marker value of effect `i` of record `seq`: increases with seq, then with i. */
export function effectMarkerValue(seq: number, i: number): number {
  return seq * MAX_EFFECTS_PER_RECORD + i;
}

/** The dedupe id of emitted record `i` of a triggering record. */
export function effectDedupeId(fn: string, rec: Pick<BatchRecordInput, 'source' | 'shard' | 'seq'>, i: number): string {
  return `${fn}/${rec.source}/${rec.shard}/${rec.seq}/${i}`;
}

function fail(code: string, message: string): ExtraOutcome {
  return { error: { code, message } };
}

/** Commits `record.effects` declarations for one function. */
export class EffectWriter {
  readonly #fn: string;
  readonly #specs: ReadonlyMap<string, BindingSpec>;
  readonly #targets: EffectTargets;
  readonly #log: Logger;
  readonly #kv = new Map<string, Promise<KvBinding>>();
  readonly #objects = new Map<string, Promise<ObjectBinding>>();
  #streams: StreamBinding | undefined;

  constructor(fn: string, bindings: readonly BindingSpec[], targets: EffectTargets, log: Logger) {
    this.#fn = fn;
    this.#specs = new Map(bindings.map((b) => [b.name, b]));
    this.#targets = targets;
    this.#log = log;
  }

  /** The binding's resource, after checking it again here: declarations crossed a thread boundary. */
  #resource(e: ExtraEffect): string | ExtraOutcome {
    const b = this.#specs.get(e.binding);
    if (b === undefined) return fail('SLUICE_ACCESS_DENIED', `effect ${e.kind}('${e.binding}'): no binding '${e.binding}' is declared in the function's spec`);
    if (b.kind !== e.kind) return fail('SLUICE_INVALID_ARGUMENT', `effect ${e.kind}('${e.binding}'): binding '${e.binding}' is a ${b.kind} binding`);
    if (b.access !== 'read-write') return fail('SLUICE_ACCESS_DENIED', `effect ${e.kind}('${e.binding}'): binding '${e.binding}' is read-only`);
    return b.resource;
  }

  #table(name: string): Promise<KvBinding> {
    let t = this.#kv.get(name);
    if (t === undefined) {
      t = this.#targets.kv(name);
      t.catch(() => this.#kv.delete(name)); // a failed open is tried again by the next record
      this.#kv.set(name, t);
    }
    return t;
  }

  #bucket(name: string): Promise<ObjectBinding> {
    let b = this.#objects.get(name);
    if (b === undefined) {
      b = this.#targets.objects(name);
      b.catch(() => this.#objects.delete(name));
      this.#objects.set(name, b);
    }
    return b;
  }

  /**
   * Applies `extra` for record `rec`, in order; stops at the first failure (the record is then retried
   * and the effects already applied are skipped by their markers). `ok` when all are applied or were
   * applied by an earlier delivery.
   */
  async commit(rec: BatchRecordInput, extra: readonly ExtraEffect[]): Promise<ExtraOutcome> {
    if (extra.length > MAX_EFFECTS_PER_RECORD) return fail('SLUICE_VALUE_TOO_LARGE', `record '${rec.key}' declares ${extra.length} effects; at most ${MAX_EFFECTS_PER_RECORD}`);
    const marker = effectMarkerAttr(this.#fn, rec.source, rec.shard, rec.key);
    // Emitted records and other objects' change records name this function and the chain depth (runtime/chain.ts).
    const cause = commitCause(this.#fn, rec.cause);
    // Consecutive appends to one stream go as one putRecords call (one round trip, one transaction).
    let pending: { stream: string; records: PutRecord[] } | undefined;
    const flush = async (): Promise<ExtraOutcome> => {
      if (pending === undefined) return 'ok';
      const { stream, records } = pending;
      pending = undefined;
      return this.#append(stream, records);
    };
    for (let i = 0; i < extra.length; i++) {
      const e = extra[i]!;
      const resource = this.#resource(e);
      if (typeof resource !== 'string') return resource;
      if (e.kind === 'stream') {
        if (pending !== undefined && pending.stream !== resource) {
          const r = await flush();
          if (r !== 'ok') return r;
        }
        // Without a partition key, the triggering record's key: emitted records of one key stay in order.
        const pk = e.partitionKey ?? rec.key;
        const p: PutRecord = { data: e.data, dedupeId: effectDedupeId(this.#fn, rec, i), cause, ...(pk !== '' ? { partitionKey: pk } : { shard: 0 }) };
        if (e.headers !== undefined) p.headers = e.headers;
        (pending ??= { stream: resource, records: [] }).records.push(p);
        if (pending.records.length >= APPEND_CHUNK) {
          const r = await flush();
          if (r !== 'ok') return r;
        }
        continue;
      }
      const f = await flush();
      if (f !== 'ok') return f;
      const r = await this.#update(e.kind, resource, e.key, e.update, marker, effectMarkerValue(rec.seq, i), cause);
      if (r !== 'ok') return r;
    }
    return flush();
  }

  /** One conditional write of an item's / object's update plus its marker. */
  async #update(kind: 'kv' | 'object', resource: string, key: string, update: Expression, marker: string, value: number, cause: Cause): Promise<ExtraOutcome> {
    const updates: Expression[] = [update, { expr: 'SET #sluiceM = :sluiceM', names: { '#sluiceM': marker }, values: { ':sluiceM': value } }];
    const condition: Expression = { expr: 'not_exists(#sluiceM) OR #sluiceM < :sluiceM', names: { '#sluiceM': marker }, values: { ':sluiceM': value } };
    try {
      if (kind === 'kv') await (await this.#table(resource)).updateItem(key, updates, { condition });
      else await (await this.#bucket(resource)).updateAttrs(key, updates, { condition, cause });
      return 'ok';
    } catch (err) {
      if (err instanceof SluiceError) {
        // The marker is at or past this effect: an earlier delivery applied it.
        if (err.code === 'SLUICE_CONDITION_FAILED') return 'ok';
        if (err.code === 'SLUICE_NOT_FOUND' && kind === 'object') {
          // The other object does not exist (or was deleted): the update has nothing to land on.
          this.#log.warn({ bucket: resource, key }, 'effect on another object skipped: the object does not exist');
          return 'ok';
        }
        return fail(err.code, err.message);
      }
      return fail('SLUICE_INTERNAL', String((err as Error)?.message ?? err));
    }
  }

  async #append(stream: string, records: PutRecord[]): Promise<ExtraOutcome> {
    this.#streams ??= this.#targets.streams();
    try {
      const res = await this.#streams.putRecords(stream, records);
      const bad = res.find((r) => !r.ok);
      if (bad !== undefined && !bad.ok) return fail(bad.error.code, `emit to stream '${stream}': ${bad.error.message}`);
      return 'ok';
    } catch (err) {
      if (err instanceof SluiceError) return fail(err.code, err.message);
      return fail('SLUICE_INTERNAL', String((err as Error)?.message ?? err));
    }
  }
}
