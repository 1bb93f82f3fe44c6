/**
 * What every backend's {@link Backend.commitBatch} shares: validating an op before any I/O, applying an
 * attribute op to the current attributes (pure: condition, processed-marker, set / remove / updates,
 * size check), classifying a thrown error into a {@link WriteOpResult}, and a one-op-at-a-time
 * implementation over the ordinary bindings.
 *
 * Why a batch call at all: the runtime commits a batch of records as one op per record plus the shard's
 * checkpoint. Locally that is ONE LMDB transaction (measured before: one write closure, one promise and
 * one expression parse per record, and a second transaction for every later record of a key); on NATS
 * the CAS appends go out together and a chained op reuses the revision its predecessor wrote.
 */
import { BindingError, ConditionFailedError, SluiceError } from './errors.ts';
import { applyUpdate, checkCondition, checkUpdate, evaluateCondition } from './expr/index.ts';
import type { AttrsWriteOp, Backend, CallOptions, Expression, ItemWriteOp, WriteOp, WriteOpResult } from './types.ts';
import { checkAttrs, checkItem, checkKey, checkName, type Attrs, type Value } from './values.ts';

/** Where an op is, for error messages. */
export function opWhere(op: WriteOp, i: number): string {
  return op.type === 'attrs' ? `commitBatch op ${i}: attrs of '${String(op.key)}' in bucket '${String(op.bucket)}'` : `commitBatch op ${i}: putItem '${String(op.key)}' in table '${String(op.table)}'`;
}

/** Validates op `i` (names, key, expressions, `after`) before any I/O; throws a coded BindingError. */
export function checkWriteOp(op: WriteOp, i: number): void {
  const where = opWhere(op, i);
  if (op.after !== undefined && !(Number.isSafeInteger(op.after) && op.after >= 0 && op.after < i))
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: after must be the index of an earlier op, got ${JSON.stringify(op.after)}`);
  if (op.afterAll !== undefined && typeof op.afterAll !== 'boolean') throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: afterAll must be a boolean, got ${JSON.stringify(op.afterAll)}`);
  if (op.type === 'attrs') {
    checkName(op.bucket, 'bucket');
    checkKey(op.key, `${where}: key`);
    op.updates?.forEach((u, j) => checkUpdate(u, `${where}: updates[${j}]`));
    if (op.condition !== undefined) checkCondition(op.condition, `${where}: condition`);
    if (op.marker !== undefined && (typeof op.marker.attr !== 'string' || typeof op.marker.seq !== 'number' || !Number.isFinite(op.marker.seq)))
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: marker must be { attr: string, seq: number }`);
    if (!op.marker && !op.updates?.length && !op.remove?.length && Object.keys(op.set ?? {}).length === 0)
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: nothing to write (no marker, set, remove or updates)`);
    return;
  }
  if (op.type === 'putItem') {
    checkName(op.table, 'table');
    checkKey(op.key, `${where}: key`);
    checkItem(op.item, `${where}: item`);
    if (op.ifRevision !== undefined && !(Number.isSafeInteger(op.ifRevision) && op.ifRevision >= 0))
      throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: ifRevision must be a non-negative integer, got ${JSON.stringify(op.ifRevision)}`);
    return;
  }
  throw new BindingError('SLUICE_INVALID_ARGUMENT', `commitBatch op ${i}: unknown type ${JSON.stringify((op as { type?: unknown }).type)}`);
}

/**
 * The attributes after `op` on `attrs` (the stored ones, internal included); ConditionFailedError when its
 * condition or marker does not hold (carrying the visible attributes and `attrsRevision`).
 */
export function applyAttrsOp(attrs: Attrs, op: AttrsWriteOp, attrsRevision: number, where: string): Attrs {
  const m = op.marker;
  if (m !== undefined) {
    const cur = attrs[m.attr];
    // The marker is at or past this record: an earlier delivery already committed it.
    if (cur !== undefined && !(typeof cur === 'number' && cur < m.seq)) throw new ConditionFailedError(`${where}: marker ${m.attr} is ${JSON.stringify(cur)}, not below ${m.seq}`, attrs, attrsRevision);
  }
  if (op.condition !== undefined && !evaluateCondition(op.condition, attrs)) throw new ConditionFailedError(`${where}: the condition does not hold`, attrs, attrsRevision);
  let next: Attrs = { ...attrs };
  if (m !== undefined) next[m.attr] = m.seq;
  if (op.set) for (const [k, v] of Object.entries(op.set)) next[k] = v;
  if (op.remove) for (const k of op.remove) delete next[k];
  if (op.updates) for (const u of op.updates) next = applyUpdate(u, next);
  checkAttrs(next, `${where}: resulting attrs`);
  return next;
}

/** The result of an op that threw `e`. */
export function failedOp(e: unknown): WriteOpResult {
  const error = e instanceof Error ? e : new BindingError('SLUICE_INTERNAL', String(e));
  if (e instanceof SluiceError && e.code === 'SLUICE_CONDITION_FAILED') return { status: 'condition', error };
  if (e instanceof SluiceError && e.code === 'SLUICE_NOT_FOUND') return { status: 'missing', error };
  return { status: 'failed', error };
}

/** True when `r` lets an op chained to it run. */
function letsFollow(r: WriteOpResult | undefined): boolean {
  return r !== undefined && r.status !== 'failed' && r.status !== 'skipped';
}

/** True when op `i` may run given the results of the ops before it (its `after` and `afterAll`). */
export function mayFollow(results: readonly (WriteOpResult | undefined)[], op: Pick<WriteOp, 'after' | 'afterAll'>, i: number): boolean {
  if (op.after !== undefined && !letsFollow(results[op.after])) return false;
  if (op.afterAll === true) for (let j = 0; j < i; j++) if (!letsFollow(results[j])) return false;
  return true;
}

/**
 * The op as one {@link ObjectBinding.updateAttrs} call: the updates (marker and `set` as one SET, `remove`
 * as one REMOVE, then `updates`) and the condition (the op's, AND the marker's).
 */
export function attrsOpExpressions(op: AttrsWriteOp): { updates: Expression[]; condition: Expression | undefined } {
  const names: Record<string, string> = {};
  const values: Record<string, Value> = {};
  const set: string[] = [];
  if (op.marker) {
    names['#m'] = op.marker.attr;
    values[':seq'] = op.marker.seq;
    set.push('#m = :seq');
  }
  Object.entries(op.set ?? {}).forEach(([k, v], i) => {
    names[`#s${i}`] = k;
    values[`:s${i}`] = v;
    set.push(`#s${i} = :s${i}`);
  });
  const remove = (op.remove ?? []).map((k, j) => {
    names[`#r${j}`] = k;
    return `#r${j}`;
  });
  const parts = [set.length ? `SET ${set.join(', ')}` : '', remove.length ? `REMOVE ${remove.join(', ')}` : ''].filter(Boolean);
  const updates: Expression[] = [...(parts.length ? [{ expr: parts.join(' '), names, values }] : []), ...(op.updates ?? [])];
  let condition = op.condition;
  if (op.marker) {
    const mc: Expression = { expr: 'not_exists(#__m) OR #__m < :__seq', names: { '#__m': op.marker.attr }, values: { ':__seq': op.marker.seq } };
    const c = typeof condition === 'string' ? { expr: condition } : condition;
    condition = c ? { expr: `(${c.expr}) AND (${mc.expr})`, names: { ...c.names, ...mc.names }, values: { ...c.values, ...mc.values } } : mc;
  }
  return { updates, condition };
}

/**
 * Runs `ops` through `exec` (which returns the op's new revision or throws): an op with `after` waits for
 * that op (with `afterAll`: for every earlier op) and is skipped when it was `failed` or `skipped`; the rest run concurrently (so their round
 * trips overlap). Each op is validated first and fails alone when invalid.
 */
export async function runChained(ops: readonly WriteOp[], exec: (op: WriteOp, where: string) => Promise<number>): Promise<WriteOpResult[]> {
  const results: (WriteOpResult | undefined)[] = new Array(ops.length);
  const done: Promise<void>[] = [];
  ops.forEach((op, i) => {
    const prev = op.afterAll === true ? Promise.all(done.slice(0, i)) : op.after !== undefined && op.after >= 0 && op.after < i ? done[op.after] : undefined;
    done[i] = (async () => {
      if (prev) await prev;
      try {
        checkWriteOp(op, i);
        if (!mayFollow(results, op, i)) {
          results[i] = { status: 'skipped' };
          return;
        }
        results[i] = { status: 'ok', revision: await exec(op, opWhere(op, i)) };
      } catch (e) {
        results[i] = failedOp(e);
      }
    })();
  });
  await Promise.all(done);
  return results as WriteOpResult[];
}

/**
 * {@link Backend.commitBatch} over the ordinary single-op methods of `backend` ({@link runChained}). What
 * a wrapper of a backend (e.g. a fault-injecting one in tests) uses so its batch goes through the
 * methods it wraps.
 */
export function commitOneByOne(backend: Pick<Backend, 'objects' | 'kv'>, ops: readonly WriteOp[], options?: CallOptions): Promise<WriteOpResult[]> {
  const signal = options?.signal ? { signal: options.signal } : {};
  return runChained(ops, async (op) => {
    if (op.type === 'attrs') {
      const { updates, condition } = attrsOpExpressions(op);
      return (await (await backend.objects(op.bucket)).updateAttrs(op.key, updates, { ...(condition ? { condition } : {}), ...(op.cause ? { cause: op.cause } : {}), ...signal })).attrsRevision;
    }
    const o: ItemWriteOp = op;
    return (await (await backend.kv(o.table)).putItem(o.key, o.item, { ...(o.ifRevision !== undefined ? { ifRevision: o.ifRevision } : {}), ...signal })).revision;
  });
}
