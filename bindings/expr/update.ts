/**
 * Updates: SET / REMOVE / ADD applied to a copy of an item, and eager validation.
 *
 * Semantics follow DynamoDB's update expressions:
 * - Every right-hand side reads the item as it was before the update (`SET a = b, b = a` swaps).
 * - A path may be touched once: two targets where one is a prefix of the other (`a` and `a.b`, or
 *   `a` twice) are rejected with SLUICE_EXPRESSION_INVALID, as DynamoDB rejects overlapping paths.
 * - SET into a nested path does NOT create missing parents: `SET a.b.c = 1` when `a.b` is missing
 *   fails with "parent path a.b does not exist" (SLUICE_EXPRESSION_INVALID). Set the parent map first
 *   (`SET a.b = :map`). SET on a list index past the end appends.
 * - SET and ADD apply first, in source order; REMOVE applies last, highest list index first, so list
 *   indexes always refer to positions in the original item. REMOVE of a path that does not
 *   exist (missing, or through a value of the wrong kind) is a no-op.
 * - A missing path read by SET (outside if_not_exists) and any type mismatch in arithmetic, ADD or
 *   list_append throw SLUICE_EXPRESSION_INVALID naming the path.
 * The input item is never mutated; the result is a deep copy sharing nothing mutable with the input,
 * the bound values or the cached tree.
 */
import { BindingError } from '../errors.ts';
import { typeOf, type Item, type Value, type ValueMap } from '../values.ts';
import type { UpdateAst, UpdateValue } from './ast.ts';
import { resolve } from './evaluate.ts';
import { updateTree } from './parse.ts';
import { bindingsOf, checkPlaceholders, describePath, invalid, lookup, pathText, segmentsOf, sourceOf, valueOf, type Bindings, type Expression, type Segments } from './placeholders.ts';
import { cloneValue, setOwn } from './value-ops.ts';

/** Latest instant a `Date` can hold, in ms either side of the epoch. */
const maxDateMs = 8.64e15;

interface Targets {
  set: Segments[];
  add: Segments[];
  remove: Segments[];
}

/**
 * Applies an update to a copy of `item` (`undefined` = absent item: start from `{}`) and returns the
 * new item; never mutates the input. Throws {@link ExpressionError} when the expression does not parse
 * and SLUICE_EXPRESSION_INVALID for unknown placeholders, overlapping paths, missing parents, missing
 * operands and type mismatches.
 */
export function applyUpdate(expr: Expression, item: Item | undefined): Item {
  const where = 'update';
  const tree = updateTree(sourceOf(expr, where), where);
  const b = bindingsOf(expr);
  // Updates are writes, not a per-item loop: validate bound values in full, since they get stored.
  checkPlaceholders(tree, b, where, true);
  if (item !== undefined && typeOf(item) !== 'map') throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where}: the item must be a plain object of attribute values`);
  const targets = targetsOf(tree, b, where);

  // Compute every new value against the original item before writing anything.
  const writes: { segments: Segments; value: Value }[] = [];
  tree.set.forEach((action, i) => {
    const segments = targets.set[i] as Segments;
    writes.push({ segments, value: valueAt(action.value, item, b, `SET ${pathText(segments)}`) });
  });
  tree.add.forEach((action, i) => {
    const segments = targets.add[i] as Segments;
    const label = `ADD ${pathText(segments)}`;
    writes.push({ segments, value: add(resolve(action.path, item, b), valueAt(action.value, item, b, label), action.value, b, label) });
  });

  const out = item === undefined ? {} : (cloneValue(item) as Item);
  for (const w of writes) writeAt(out, w.segments, cloneValue(w.value), where);
  for (const segments of [...targets.remove].sort(removalOrder)) removeAt(out, segments);
  return out;
}

/**
 * Validates an update eagerly: parse, placeholders bound, bound values valid, no overlapping paths.
 * Does not read any item, so missing parents and type mismatches surface only in {@link applyUpdate}.
 */
export function checkUpdate(expr: Expression, where: string): void {
  const tree = updateTree(sourceOf(expr, where), where);
  const b = bindingsOf(expr);
  checkPlaceholders(tree, b, where, true);
  targetsOf(tree, b, where);
}

/** Top-level attribute names the update writes or removes, each once, in source order. */
export function updatedNames(expr: Expression): string[] {
  const where = 'update';
  const tree = updateTree(sourceOf(expr, where), where);
  const b = bindingsOf(expr);
  const names = new Set<string>();
  for (const action of [...tree.set, ...tree.remove, ...tree.add]) {
    const first = action.path.elements[0];
    if (first === undefined || first.type === 'index') continue; // the grammar never produces this
    if (first.type === 'name') names.add(first.name);
    else {
      const name = lookup(b.names, first);
      if (typeof name !== 'string' || name.length === 0) throw invalid(where, `unknown placeholder ${first.ref}: it is not in names`);
      names.add(name);
    }
  }
  return [...names];
}

function targetsOf(tree: UpdateAst, b: Bindings, where: string): Targets {
  const targets: Targets = {
    set: tree.set.map((a) => segmentsOf(a.path, b)),
    add: tree.add.map((a) => segmentsOf(a.path, b)),
    remove: tree.remove.map((a) => segmentsOf(a.path, b)),
  };
  checkOverlaps([...targets.set, ...targets.add, ...targets.remove], where);
  return targets;
}

/**
 * Throws SLUICE_EXPRESSION_INVALID when two paths overlap (one is a prefix of, or equal to, the other).
 * Exported for its complexity test.
 */
export function checkOverlaps(all: readonly Segments[], where: string): void {
  // Overlap = one path is a prefix of (or equal to) another. Sorted by segments, every path that has
  // `x` as a prefix follows `x` directly or after others that have it too, so checking neighbours finds
  // an overlapping pair whenever there is one: O(n log n) instead of comparing every pair (20k paths:
  // seconds before, milliseconds now).
  const order = all.map((_, i) => i).sort((i, j) => compareSegments(all[i] as Segments, all[j] as Segments) || i - j);
  for (let n = 1; n < order.length; n++) {
    const x = all[order[n - 1] as number] as Segments;
    const y = all[order[n] as number] as Segments;
    if (!overlaps(x, y)) continue;
    throw invalid(
      where,
      x.length === y.length
        ? `path ${pathText(x)} appears twice; an update may touch a path once`
        : `paths ${pathText(x)} and ${pathText(y)} overlap; an update may touch a path once`,
    );
  }
}

/** A total order on paths in which a prefix sorts right before the paths it is a prefix of. */
function compareSegments(x: Segments, y: Segments): number {
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const a = x[i] as string | number;
    const b = y[i] as string | number;
    if (a === b) continue;
    if (typeof a !== typeof b) return typeof a === 'number' ? -1 : 1;
    return a < b ? -1 : 1;
  }
  return x.length - y.length;
}

function overlaps(x: Segments, y: Segments): boolean {
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return false;
  return true;
}

// A total order on removals that puts higher list indexes first, so earlier removals never shift
// the positions of later ones.
function removalOrder(x: Segments, y: Segments): number {
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const a = x[i] as string | number;
    const c = y[i] as string | number;
    if (a === c) continue;
    if (typeof a === 'number' && typeof c === 'number') return c - a;
    if (typeof a === 'number') return -1;
    if (typeof c === 'number') return 1;
    return a < c ? -1 : 1;
  }
  return x.length - y.length;
}

/** The value of a SET right-hand side against the original item; `label` names the action in errors. */
function valueAt(node: UpdateValue, item: Item | undefined, b: Bindings, label: string): Value {
  switch (node.type) {
    case 'literal':
      return node.value;
    case 'valueRef':
      return valueOf(node, b);
    case 'path': {
      const v = resolve(node, item, b);
      if (v === undefined) throw invalid('update', `${label}: ${describePath(node, b)} does not exist (use if_not_exists() for a default)`);
      return v;
    }
    case 'ifNotExists':
      return resolve(node.path, item, b) ?? valueAt(node.fallback, item, b, label);
    case 'listAppend': {
      const left = valueAt(node.left, item, b, label);
      const right = valueAt(node.right, item, b, label);
      if (!Array.isArray(left)) throw mismatch(label, 'list_append() needs two lists', node.left, left, b);
      if (!Array.isArray(right)) throw mismatch(label, 'list_append() needs two lists', node.right, right, b);
      return [...left, ...right];
    }
    case 'arith': {
      const left = valueAt(node.left, item, b, label);
      const right = valueAt(node.right, item, b, label);
      const need = `'${node.op}' needs numbers, or a timestamp and a number`;
      const r = arith(node.op, left, right, label);
      if (r !== undefined) return r;
      throw typeof left === 'number' || left instanceof Date ? mismatch(label, need, node.right, right, b) : mismatch(label, need, node.left, left, b);
    }
  }
}

function arith(op: '+' | '-', l: Value, r: Value, label: string): Value | undefined {
  let out: Value | undefined;
  if (typeof l === 'number' && typeof r === 'number') out = op === '+' ? l + r : l - r;
  else if (l instanceof Date && typeof r === 'number') out = new Date(op === '+' ? l.getTime() + r : l.getTime() - r);
  else if (typeof l === 'number' && r instanceof Date && op === '+') out = new Date(l + r.getTime());
  else if (l instanceof Date && r instanceof Date && op === '-') out = l.getTime() - r.getTime();
  else return undefined;
  const n = out instanceof Date ? out.getTime() : out;
  if (!Number.isFinite(n) || (out instanceof Date && Math.abs(n) > maxDateMs)) throw invalid('update', `${label}: the result of '${op}' is out of range`);
  return out;
}

/** ADD: numbers add, a timestamp moves by a number of ms, lists append; a missing attribute becomes the operand. */
function add(current: Value | undefined, v: Value, node: UpdateValue, b: Bindings, label: string): Value {
  if (current === undefined) {
    if (typeof v === 'number' || Array.isArray(v)) return v;
    throw mismatch(label, 'ADD needs a number or a list', node, v, b);
  }
  if (Array.isArray(current)) {
    if (Array.isArray(v)) return [...current, ...v];
    throw mismatch(label, 'ADD to a list needs a list', node, v, b);
  }
  if (typeof current === 'number' || current instanceof Date) {
    if (typeof v !== 'number') throw mismatch(label, `ADD to a ${typeOf(current)} needs a number`, node, v, b);
    return arith('+', current, v, label) as Value;
  }
  throw invalid('update', `${label}: ADD needs a number, timestamp or list attribute; it holds a ${typeOf(current)}`);
}

function mismatch(label: string, need: string, node: UpdateValue, v: Value, b: Bindings): BindingError {
  return invalid('update', `${label}: ${need}; ${operandText(node, b)} is a ${typeOf(v) ?? typeof v}`);
}

function operandText(node: UpdateValue, b: Bindings): string {
  switch (node.type) {
    case 'path':
      return describePath(node, b);
    case 'valueRef':
      return node.ref;
    case 'literal':
      return JSON.stringify(node.value);
    case 'ifNotExists':
      return `if_not_exists(${describePath(node.path, b)}, …)`;
    case 'listAppend':
      return 'list_append(…)';
    case 'arith':
      return `the result of '${node.op}'`;
  }
}

/** The container at one step, or undefined when it is missing or of the wrong kind. */
function child(cur: Value, seg: string | number): Value | undefined {
  if (typeof seg === 'number') return Array.isArray(cur) ? cur[seg] : undefined;
  if (typeOf(cur) !== 'map') return undefined;
  return Object.hasOwn(cur as ValueMap, seg) ? (cur as ValueMap)[seg] : undefined;
}

/** Walks to the parent of `segments`; undefined when a step is missing. */
function parentOf(root: Item, segments: Segments): Value | undefined {
  let cur: Value | undefined = root;
  for (let i = 0; i < segments.length - 1 && cur !== undefined; i++) cur = child(cur, segments[i] as string | number);
  return cur;
}

function writeAt(root: Item, segments: Segments, value: Value, where: string): void {
  const parent = parentOf(root, segments);
  const target = pathText(segments);
  const parentText = pathText(segments.slice(0, -1));
  if (parent === undefined) throw invalid(where, `cannot set ${target}: parent path ${parentText} does not exist`);
  const last = segments.at(-1) as string | number;
  if (typeof last === 'number') {
    if (!Array.isArray(parent)) throw invalid(where, `cannot set ${target}: ${parentText} is a ${typeOf(parent)}, not a list`);
    if (last >= parent.length) parent.push(value);
    else parent[last] = value;
    return;
  }
  if (typeOf(parent) !== 'map') throw invalid(where, `cannot set ${target}: ${parentText} is a ${typeOf(parent)}, not a map`);
  setOwn(parent as ValueMap, last, value);
}

function removeAt(root: Item, segments: Segments): void {
  // A path through a missing attribute or a value of the wrong kind does not exist: nothing to remove.
  const parent = parentOf(root, segments);
  const last = segments.at(-1) as string | number;
  if (typeof last === 'number') {
    if (Array.isArray(parent) && last < parent.length) parent.splice(last, 1);
  } else if (parent !== undefined && typeOf(parent) === 'map' && Object.hasOwn(parent as ValueMap, last)) {
    delete (parent as ValueMap)[last];
  }
}
