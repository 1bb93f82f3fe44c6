/**
 * Collecting what a handler declares for one record and one batch. Shared by the handler threads
 * (records over shared memory) and the test harness (records over plain objects), so both behave
 * the same.
 */
import { checkAttrName, checkAttrs, isInternalAttr } from '../bindings/values.ts';
import { BindingError, serializeError, type SerializedError } from '../bindings/errors.ts';
import type { Attrs, Expression, Value } from '../bindings/types.ts';
import { EffectDeclarations, type EffectBinding, type ExtraEffect } from './declared-effects.ts';
import { parseDurationMs, type DeclaredEffects, type EventType, type FailOptions } from './types.ts';

export type { EffectBinding, ExtraEffect } from './declared-effects.ts';

/** Effects declared for one record. */
export interface RecordEffects {
  /** Attributes to set (last write of a name wins). */
  set: Record<string, Value>;
  /** Attributes to remove. */
  remove: string[];
  /** Update expressions, applied in order after `set` and `remove`. */
  updates: Expression[];
  /** Set when the handler marked the record failed. */
  failure?: { error: SerializedError; retryAfterMs?: number; nonRetryable: boolean };
  /** Effects beyond the record's object (`record.effects`), in declaration order; absent when none. */
  extra?: ExtraEffect[];
}

/** True when the record declared no attribute change. */
export function isEmptyEffect(e: RecordEffects): boolean {
  return Object.keys(e.set).length === 0 && e.remove.length === 0 && e.updates.length === 0;
}

/**
 * Accumulates the effects of one record; validates at the call so handlers see bad input at once:
 * attribute effects on a record without an object (a stream record) and names the runtime reserves
 * (`$sluice.*`) are SLUICE_INVALID_ARGUMENT, never a silent drop at commit time.
 */
export class EffectsCollector {
  readonly effects: RecordEffects = { set: {}, remove: [], updates: [] };
  readonly #key: string;
  readonly #type: EventType;
  readonly #bindings: readonly EffectBinding[];
  #declarations: EffectDeclarations | undefined;

  /**
   * `type` is the record's event type: a `record` (stream record) has no object to carry attributes.
   * `bindings` are the spec's, for `record.effects` (none: every effect is SLUICE_ACCESS_DENIED).
   */
  constructor(key: string, type: EventType = 'put', bindings: readonly EffectBinding[] = []) {
    this.#key = key;
    this.#type = type;
    this.#bindings = bindings;
  }

  /** `record.effects`: effects beyond the record's object, appended to {@link RecordEffects.extra}. */
  get declarations(): DeclaredEffects {
    return (this.#declarations ??= new EffectDeclarations(() => (this.effects.extra ??= []), this.#bindings, `record '${this.#key}'`));
  }

  /** Refuses attribute effects on a record that has no object. */
  #checkObject(method: string): void {
    if (this.#type === 'record')
      throw new BindingError(
        'SLUICE_INVALID_ARGUMENT',
        `record '${this.#key}'.${method}: a stream record has no object to carry attributes (write to a bucket or table through ctx.data instead)`,
        { details: { method } },
      );
  }

  #checkName(name: string, method: string): void {
    if (isInternalAttr(name))
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `record '${this.#key}'.${method}: attribute name '${name}' is reserved for the runtime ('$sluice.' prefix)`, {
        details: { method, name },
      });
  }

  setAttrs(attrs: Attrs): void {
    this.#checkObject('setAttrs');
    checkAttrs(attrs, `record '${this.#key}'.setAttrs`);
    for (const k of Object.keys(attrs)) this.#checkName(k, 'setAttrs');
    for (const [k, v] of Object.entries(attrs)) {
      this.effects.set[k] = v;
      const i = this.effects.remove.indexOf(k);
      if (i >= 0) this.effects.remove.splice(i, 1);
    }
  }

  removeAttrs(names: string[]): void {
    this.#checkObject('removeAttrs');
    // Every name is checked before any is applied: a bad call declares nothing.
    for (const n of names) {
      checkAttrName(n, `record '${this.#key}'.removeAttrs`);
      this.#checkName(n, 'removeAttrs');
    }
    for (const n of names) {
      delete this.effects.set[n];
      if (!this.effects.remove.includes(n)) this.effects.remove.push(n);
    }
  }

  update(expr: Expression): void {
    this.#checkObject('update');
    this.effects.updates.push(expr);
  }

  fail(error: Error | string, options?: FailOptions): void {
    const err = typeof error === 'string' ? new Error(error) : error;
    const f: NonNullable<RecordEffects['failure']> = { error: serializeError(err), nonRetryable: options?.nonRetryable === true };
    if (options?.retryAfter !== undefined) f.retryAfterMs = parseDurationMs(options.retryAfter, `record '${this.#key}'.fail retryAfter`);
    this.effects.failure = f;
  }
}

/** Effects of a whole batch. */
export interface BatchEffects {
  /** Per record, in batch order. */
  records: RecordEffects[];
  /** Counter increments of the batch. */
  counters: Record<string, number>;
  /** Set when the handler threw: the batch failed as a whole. */
  error?: { error: SerializedError; retryAfterMs?: number; nonRetryable: boolean };
}

/** Counter accumulation with validation (finite numbers, sane names). */
export class CounterSet {
  readonly values: Record<string, number> = {};

  count(name: string, n = 1): void {
    if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$/.test(name)) throw new TypeError(`ctx.count: counter name ${JSON.stringify(name)} is invalid (letters, digits, _ . : -; at most 128)`);
    if (typeof n !== 'number' || !Number.isFinite(n)) throw new TypeError(`ctx.count('${name}'): n must be a finite number`);
    this.values[name] = (this.values[name] ?? 0) + n;
  }
}

/** Classifies a thrown handler error into the batch-level failure. */
export function batchFailure(err: unknown): NonNullable<BatchEffects['error']> {
  const e = err instanceof Error ? err : new Error(String(err));
  const out: NonNullable<BatchEffects['error']> = { error: serializeError(e), nonRetryable: e.name === 'NonRetryableError' };
  const after = (e as { retryAfterMs?: unknown }).retryAfterMs;
  if (e.name === 'RetryAfterError' && typeof after === 'number') out.retryAfterMs = after;
  return out;
}
