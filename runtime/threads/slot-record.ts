/**
 * `EventRecord` as a thin view over a batch in its shared-memory slot: each getter decodes its field
 * on first use (then keeps it), effects are collected only for records that declare some.
 *
 * A record is valid while its batch is being handled; afterwards its slot serves other batches, so
 * touching a record kept past the handler's return throws instead of reading another batch's bytes.
 */
import { BindingError } from '../../bindings/errors.ts';
import { resolveRange } from '../../bindings/shared.ts';
import type { Attrs, Expression, ObjectBinding } from '../../bindings/types.ts';
import { EffectsCollector, type EffectBinding, type RecordEffects } from '../../functions/effects.ts';
import type { DeclaredEffects, EventRecord, EventType, FailOptions } from '../../functions/types.ts';
import type { ObjectFileCache } from '../../bindings/file/index.ts';
import type { RecordView } from '../handoff/batch-reader.ts';

/** What the records of one batch share: liveness and the way to a bucket for `data()`. */
export interface RecordScope {
  /** False once the handler has returned. */
  live: boolean;
  /** The object binding of a bucket, for bodies not carried inline (any bucket: an internal read). */
  objects(bucket: string): Promise<ObjectBinding>;
  /** The thread's cache of bodies as files, for `path()` (opened on first use). */
  files(): Promise<ObjectFileCache>;
  /** The spec's bindings, for `record.effects`. */
  bindings: readonly EffectBinding[];
}

/** `EventRecord.path()` over a scope: shared by handler threads and the inline runner. */
export async function recordPath(
  scope: Pick<RecordScope, 'objects' | 'files'>,
  r: { type: EventType; source: string; key: string; version: number; body: Uint8Array | undefined },
): Promise<string> {
  if (r.type === 'record') throw new BindingError('SLUICE_INVALID_ARGUMENT', `record '${r.key}'.path(): a stream record has no object (its payload is record.body)`);
  if (r.type === 'delete') throw new BindingError('SLUICE_NOT_FOUND', `record '${r.key}'.path(): the object was deleted`);
  const cache = await scope.files();
  // A prefetched body is written straight from the batch: no second read of the object.
  if (r.body !== undefined) return cache.materialize(r.source, r.key, { version: r.version, body: r.body });
  return cache.materialize(r.source, r.key, { objects: await scope.objects(r.source), version: r.version });
}

/** Effects of a record that declared nothing; shared, never mutated. */
export const NO_EFFECTS: RecordEffects = Object.freeze({ set: Object.freeze({}), remove: [], updates: [] }) as unknown as RecordEffects;

const utf8 = new TextDecoder();

export class SlotRecord implements EventRecord {
  readonly #v: RecordView;
  readonly #scope: RecordScope;
  #key: string | undefined;
  #attrs: Attrs | undefined;
  #headers: Record<string, string> | undefined;
  #body: Uint8Array | null | undefined; // null: no inline body
  #fx: EffectsCollector | undefined;

  constructor(view: RecordView, scope: RecordScope) {
    this.#v = view;
    this.#scope = scope;
  }

  #live(): RecordView {
    if (!this.#scope.live) throw new BindingError('SLUICE_INVALID_ARGUMENT', 'a record was used after its batch completed (records are views over shared memory, valid only while the handler runs)');
    return this.#v;
  }

  get key(): string {
    return (this.#key ??= this.#live().key);
  }
  get type(): EventType {
    return this.#live().type;
  }
  get source(): string {
    return this.#live().source;
  }
  get shard(): number {
    return this.#live().shard;
  }
  get seq(): number {
    return this.#live().seq;
  }
  get version(): number {
    return this.#live().version;
  }
  get size(): number {
    return this.#live().size;
  }
  get etag(): string {
    return this.#live().etag;
  }
  get mtime(): Date {
    return new Date(this.#live().mtimeMs);
  }
  get contentType(): string {
    return this.#live().contentType;
  }
  get attempt(): number {
    return this.#live().attempt;
  }
  get attrs(): Readonly<Attrs> {
    return (this.#attrs ??= this.#live().attrs());
  }
  get headers(): Readonly<Record<string, string>> {
    return (this.#headers ??= this.#live().headers());
  }
  get body(): Uint8Array | undefined {
    if (this.#body === undefined) this.#body = this.#live().body() ?? null;
    return this.#body ?? undefined;
  }

  /** One attribute without decoding the others (a sluice extension of EventRecord). */
  attr(name: string): Attrs[string] | undefined {
    if (this.#attrs !== undefined) return this.#attrs[name];
    return this.#live().attr(name);
  }

  async data(range?: { start?: number; end?: number }): Promise<Uint8Array> {
    const inline = this.body;
    if (inline !== undefined || this.type === 'record') {
      const b = inline ?? new Uint8Array(0);
      if (range === undefined) return b;
      // The same range rules as the Object binding's get.
      const r = resolveRange(this.key, b.byteLength, range);
      return b.subarray(r.start, r.end);
    }
    // Not prefetched: read through the record's bucket (allowed whatever the declared bindings).
    const key = this.key;
    const objects = await this.#scope.objects(this.source);
    const got = await objects.get(key, range === undefined ? undefined : { range });
    return got.body;
  }

  async text(): Promise<string> {
    return utf8.decode(await this.data());
  }

  path(): Promise<string> {
    const v = this.#live();
    return recordPath(this.#scope, { type: v.type, source: v.source, key: this.key, version: v.version, body: this.body });
  }

  #effects(): EffectsCollector {
    this.#live();
    return (this.#fx ??= new EffectsCollector(this.key, this.type, this.#scope.bindings));
  }

  get effects(): DeclaredEffects {
    return this.#effects().declarations;
  }

  setAttrs(attrs: Attrs): void {
    this.#effects().setAttrs(attrs);
  }
  removeAttrs(...names: string[]): void {
    this.#effects().removeAttrs(names);
  }
  update(expr: Expression): void {
    this.#effects().update(expr);
  }
  fail(error: Error | string, options?: FailOptions): void {
    this.#effects().fail(error, options);
  }

  /** What the handler declared for this record. */
  get declared(): RecordEffects {
    return this.#fx?.effects ?? NO_EFFECTS;
  }
}
