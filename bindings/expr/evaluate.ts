/**
 * Conditions and filters: evaluation against one item, and eager validation.
 *
 * Evaluation walks the cached tree directly (no per-call compilation or closures). A missing path
 * makes every comparison false except `<>`, which is true, as in DynamoDB (a missing attribute is
 * not equal to anything); mismatched types behave the same way. Nothing here throws for data
 * reasons except a value placeholder naming an unknown type in attribute_type().
 */
import { typeOf, ValueTypes, type Item, type Value, type ValueType } from '../values.ts';
import type { CompareOp, ConditionNode, Operand, PathNode } from './ast.ts';
import { conditionTree } from './parse.ts';
import { checkPlaceholders, invalid, lookup, noBindings, sourceOf, valueOf, type Bindings, type Expression } from './placeholders.ts';
import { contains, endsWith, order, sizeOf, startsWith, valueEquals } from './value-ops.ts';

/**
 * Evaluates a condition or filter against an item (`undefined` = the item does not exist, so every
 * path is missing). Throws {@link ExpressionError} when the expression does not parse and
 * SLUICE_EXPRESSION_INVALID for an unknown placeholder.
 */
export function evaluateCondition(expr: Expression, item: Item | undefined): boolean {
  let src: string;
  let b: Bindings;
  if (typeof expr === 'string') {
    src = expr;
    b = noBindings;
  } else {
    src = sourceOf(expr, 'condition');
    b = expr;
  }
  const tree = conditionTree(src, 'condition');
  if (tree.nameRefs.length !== 0 || tree.valueRefs.length !== 0) checkPlaceholders(tree, b, 'condition', false);
  return test(tree.body, item, b);
}

/**
 * Validates a condition eagerly (parse, placeholders bound, bound values valid, type names known)
 * without evaluating it, so bad input is rejected before any write. `where` prefixes messages.
 */
export function checkCondition(expr: Expression, where: string): void {
  const src = sourceOf(expr, where);
  const b = typeof expr === 'string' ? noBindings : expr;
  const tree = conditionTree(src, where);
  checkPlaceholders(tree, b, where, true);
  checkTypeNames(tree.body, b, where);
}

function checkTypeNames(node: ConditionNode, b: Bindings, where: string): void {
  switch (node.type) {
    case 'or':
    case 'and':
      for (const n of node.operands) checkTypeNames(n, b, where);
      return;
    case 'not':
      checkTypeNames(node.operand, b, where);
      return;
    case 'attributeType':
      typeName(node.valueType.type === 'literal' ? node.valueType.value : valueOf(node.valueType, b), where);
      return;
    default:
      return;
  }
}

function typeName(v: Value, where: string): ValueType {
  if (typeof v === 'string' && (ValueTypes as readonly string[]).includes(v)) return v as ValueType;
  throw invalid(where, `attribute_type() needs one of ${ValueTypes.join(', ')}; got ${JSON.stringify(v)}`);
}

function test(node: ConditionNode, item: Item | undefined, b: Bindings): boolean {
  switch (node.type) {
    case 'and':
      for (const n of node.operands) if (!test(n, item, b)) return false;
      return true;
    case 'or':
      for (const n of node.operands) if (test(n, item, b)) return true;
      return false;
    case 'not':
      return !test(node.operand, item, b);
    case 'compare':
      return compare(node.op, operand(node.left, item, b), operand(node.right, item, b));
    case 'between': {
      const v = operand(node.operand, item, b);
      if (v === undefined) return false;
      const low = operand(node.low, item, b);
      const high = operand(node.high, item, b);
      if (low === undefined || high === undefined) return false;
      const lo = order(low, v);
      const hi = order(v, high);
      return lo !== undefined && hi !== undefined && lo <= 0 && hi <= 0;
    }
    case 'in': {
      const v = operand(node.operand, item, b);
      if (v === undefined) return false;
      for (const c of node.candidates) {
        const x = operand(c, item, b);
        if (x !== undefined && valueEquals(v, x)) return true;
      }
      return false;
    }
    case 'exists':
      return resolve(node.path, item, b) !== undefined;
    case 'notExists':
      return resolve(node.path, item, b) === undefined;
    case 'startsWith': {
      const v = operand(node.operand, item, b);
      const p = operand(node.prefix, item, b);
      return v !== undefined && p !== undefined && startsWith(v, p);
    }
    case 'endsWith': {
      const v = operand(node.operand, item, b);
      const s = operand(node.suffix, item, b);
      return v !== undefined && s !== undefined && endsWith(v, s);
    }
    case 'contains': {
      const v = operand(node.operand, item, b);
      const n = operand(node.needle, item, b);
      return v !== undefined && n !== undefined && contains(v, n);
    }
    case 'attributeType': {
      const v = resolve(node.path, item, b);
      const t = node.valueType.type === 'literal' ? node.valueType.value : typeName(valueOf(node.valueType, b), 'condition');
      return v !== undefined && typeOf(v) === t;
    }
  }
}

/** One comparison; `undefined` stands for a missing path. */
export function compare(op: CompareOp, a: Value | undefined, b: Value | undefined): boolean {
  if (a === undefined || b === undefined) return op === '<>';
  switch (op) {
    case '=':
      return valueEquals(a, b);
    case '<>':
      return !valueEquals(a, b);
    default: {
      const c = order(a, b);
      if (c === undefined) return false;
      if (op === '<') return c < 0;
      if (op === '<=') return c <= 0;
      if (op === '>') return c > 0;
      return c >= 0;
    }
  }
}

function operand(node: Operand, item: Item | undefined, b: Bindings): Value | undefined {
  switch (node.type) {
    case 'path':
      return resolve(node, item, b);
    case 'literal':
      return node.value;
    case 'valueRef':
      return lookup(b.values, node);
    case 'size': {
      const v = resolve(node.path, item, b);
      return v === undefined ? undefined : sizeOf(v);
    }
  }
}

/** The value at `path` in `item`, or undefined when any step is missing or of the wrong kind. */
export function resolve(path: PathNode, item: Item | undefined, b: Bindings): Value | undefined {
  let cur: Value | undefined = item;
  for (const el of path.elements) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    if (el.type === 'index') {
      if (!Array.isArray(cur)) return undefined;
      cur = cur[el.index];
    } else {
      if (Array.isArray(cur) || cur instanceof Uint8Array || cur instanceof Date) return undefined;
      const name = el.type === 'name' ? el.name : (lookup(b.names, el) as string);
      // Own properties only: `constructor` or `__proto__` must not reach the prototype chain.
      cur = Object.hasOwn(cur, name) ? cur[name] : undefined;
    }
  }
  return cur;
}
