/**
 * `record.effects`: declaring effects beyond the triggering object (KV item updates, emitted stream
 * records, attributes of other objects). Shared by the handler threads, the inline runner and the test
 * harness, so every path validates alike; runtime/effect-writes.ts commits what is declared here.
 *
 * Checks happen at the call, so a handler sees its mistake where it made it: a binding the spec does
 * not declare, or declares `read`, is SLUICE_ACCESS_DENIED (DESIGN invariant 5 — the committer checks
 * again, since the declarations cross a thread boundary); a binding of another kind, a bad key, a
 * malformed expression or one that writes a `$sluice.*` name is SLUICE_INVALID_ARGUMENT /
 * SLUICE_KEY_INVALID / SLUICE_EXPRESSION_INVALID. A bad call declares nothing.
 */
import { BindingError } from '../bindings/errors.ts';
import { checkUpdate, updatedNames } from '../bindings/expr/index.ts';
import type { Expression } from '../bindings/types.ts';
import { checkKey, isInternalAttr } from '../bindings/values.ts';
import type { DeclaredEffects, EmitRecord, KvEffects, ObjectEffects, StreamEffects } from './types.ts';

/** One effect beyond the triggering object, as it travels to the committer. */
export type ExtraEffect =
  | { kind: 'kv'; binding: string; key: string; update: Expression }
  | { kind: 'object'; binding: string; key: string; update: Expression }
  | { kind: 'stream'; binding: string; data: Uint8Array | string; partitionKey?: string; headers?: Record<string, string> };

/** A binding as far as declaring effects needs it (the spec's `bindings` entries). */
export interface EffectBinding {
  name: string;
  kind: string;
  access: string;
}

/**
 * Most effects one record may declare: the commit's idempotency marker counts effects within a record
 * (runtime/effect-writes.ts), so the bound keeps `seq × this + index` an exact integer.
 */
export const MAX_EFFECTS_PER_RECORD = 1024;

type Kind = ExtraEffect['kind'];

/** The {@link DeclaredEffects} of one record; appends to `out`. */
export class EffectDeclarations implements DeclaredEffects {
  readonly #sink: () => ExtraEffect[];
  readonly #bindings: ReadonlyMap<string, EffectBinding>;
  readonly #where: string;

  /** `sink` returns the record's list of effects (made on the first declaration). */
  constructor(sink: () => ExtraEffect[], bindings: readonly EffectBinding[], where: string) {
    this.#sink = sink;
    this.#bindings = new Map(bindings.map((b) => [b.name, b]));
    this.#where = where;
  }

  #binding(name: string, kind: Kind, method: string): void {
    const at = `${this.#where}.effects.${kind}('${String(name)}').${method}`;
    const b = typeof name === 'string' ? this.#bindings.get(name) : undefined;
    if (b === undefined) {
      const declared = [...this.#bindings.keys()].sort().join(', ') || 'none';
      throw new BindingError('SLUICE_ACCESS_DENIED', `${at}: no binding '${String(name)}' is declared in the function's spec (declared: ${declared})`, { details: { binding: String(name), method } });
    }
    if (b.kind !== kind) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${at}: binding '${name}' is a ${b.kind} binding, not ${kind}`, { details: { binding: name, method } });
    if (b.access !== 'read-write')
      throw new BindingError('SLUICE_ACCESS_DENIED', `${at}: binding '${name}' (${b.kind}) is read-only: effects are writes`, { details: { binding: name, method } });
    if (this.#sink().length >= MAX_EFFECTS_PER_RECORD) throw new BindingError('SLUICE_VALUE_TOO_LARGE', `${at}: a record declares at most ${MAX_EFFECTS_PER_RECORD} effects`);
  }

  #update(kind: 'kv' | 'object', binding: string, key: string, update: Expression, method: string): void {
    this.#binding(binding, kind, method);
    const at = `${this.#where}.effects.${kind}('${binding}').${method}`;
    checkKey(key, `${at}: key`);
    checkUpdate(update, `${at}: update`);
    for (const n of updatedNames(update))
      if (isInternalAttr(n)) throw new BindingError('SLUICE_INVALID_ARGUMENT', `${at}: attribute name '${n}' is reserved for the runtime ('$sluice.' prefix)`, { details: { name: n } });
    this.#sink().push({ kind, binding, key, update: copyExpression(update) });
  }

  kv(binding: string): KvEffects {
    return { update: (key, update) => this.#update('kv', binding, key, update, 'update') };
  }

  object(binding: string): ObjectEffects {
    return { updateAttrs: (key, update) => this.#update('object', binding, key, update, 'updateAttrs') };
  }

  stream(binding: string): StreamEffects {
    return {
      put: (record: EmitRecord) => {
        this.#binding(binding, 'stream', 'put');
        const at = `${this.#where}.effects.stream('${binding}').put`;
        const r = record as Partial<EmitRecord> | null;
        if (r === null || typeof r !== 'object' || !(typeof r.data === 'string' || r.data instanceof Uint8Array))
          throw new BindingError('SLUICE_INVALID_ARGUMENT', `${at}: record.data must be a string or a Uint8Array`);
        if (r.partitionKey !== undefined && typeof r.partitionKey !== 'string') throw new BindingError('SLUICE_INVALID_ARGUMENT', `${at}: record.partitionKey must be a string`);
        if (r.headers !== undefined && (typeof r.headers !== 'object' || r.headers === null || Object.values(r.headers).some((v) => typeof v !== 'string')))
          throw new BindingError('SLUICE_INVALID_ARGUMENT', `${at}: record.headers must map names to strings`);
        // Copies: the handler may reuse its buffers after the call; the declaration must not change.
        const e: ExtraEffect = { kind: 'stream', binding, data: typeof r.data === 'string' ? r.data : r.data.slice() };
        if (r.partitionKey !== undefined) e.partitionKey = r.partitionKey;
        if (r.headers !== undefined) e.headers = { ...r.headers };
        this.#sink().push(e);
      },
    };
  }
}

function copyExpression(e: Expression): Expression {
  if (typeof e === 'string') return e;
  const out: Expression = { expr: e.expr };
  if (e.names !== undefined) out.names = { ...e.names };
  if (e.values !== undefined) out.values = structuredClone(e.values);
  return out;
}
