/**
 * Expressions as callers write them, and the placeholders (`#name`, `:value`) they bind.
 *
 * A placeholder is looked up with its sigil first (`names['#n']`, DynamoDB style) and then without
 * (`names['n']`). Trees keep placeholders unresolved so one cached tree serves every binding.
 */
import { BindingError } from '../errors.ts';
import { typeOf, valueSize, type Value } from '../values.ts';
import type { ConditionAst, PathNode, Placeholder, UpdateAst } from './ast.ts';

/** An expression as callers write it: the source text, or the text with placeholders. */
export type Expression = string | { expr: string; names?: Record<string, string>; values?: Record<string, Value> };

/** The placeholder maps of one evaluation (an {@link Expression} object is one; a bare string has none). */
export interface Bindings {
  readonly names?: Record<string, string> | undefined;
  readonly values?: Record<string, Value> | undefined;
}

/** The bindings of a bare string expression. */
export const noBindings: Bindings = Object.freeze({});

/** A resolved path: names and list indexes. */
export type Segments = readonly (string | number)[];

/** The error for an expression that parses but cannot be evaluated. */
export function invalid(where: string, message: string): BindingError {
  return new BindingError('SLUICE_EXPRESSION_INVALID', `${where}: ${message}`);
}

/** The source text of an expression; throws SLUICE_INVALID_ARGUMENT for anything else. */
export function sourceOf(expr: Expression, where: string): string {
  if (typeof expr === 'string') return expr;
  if (typeof expr === 'object' && expr !== null && typeof expr.expr === 'string') return expr.expr;
  throw new BindingError('SLUICE_INVALID_ARGUMENT', `${where} must be a string or an object { expr, names?, values? }`);
}

/** The placeholder maps of an expression. */
export function bindingsOf(expr: Expression): Bindings {
  return typeof expr === 'string' ? noBindings : expr;
}

/** Looks a placeholder up with its sigil, then without; own properties only. */
export function lookup<T>(map: Record<string, T> | undefined, p: Placeholder): T | undefined {
  if (map === undefined || map === null) return undefined;
  if (Object.hasOwn(map, p.ref)) return map[p.ref];
  if (Object.hasOwn(map, p.bare)) return map[p.bare];
  return undefined;
}

/**
 * Checks that every placeholder of `tree` is bound. `deep` also validates each bound value in full
 * (type and nesting, as stored values are); otherwise only its top-level type is checked, which keeps
 * per-item filter evaluation cheap.
 */
export function checkPlaceholders(tree: ConditionAst | UpdateAst, b: Bindings, where: string, deep: boolean): void {
  if (b.names !== undefined && (typeof b.names !== 'object' || b.names === null)) throw invalid(where, 'names must be an object of placeholder → attribute name');
  if (b.values !== undefined && (typeof b.values !== 'object' || b.values === null)) throw invalid(where, 'values must be an object of placeholder → value');
  for (const p of tree.nameRefs) {
    const name = lookup(b.names, p);
    if (name === undefined) throw invalid(where, `unknown placeholder ${p.ref}: it is not in names`);
    if (typeof name !== 'string' || name.length === 0) throw invalid(where, `placeholder ${p.ref} must name an attribute with a non-empty string`);
  }
  for (const p of tree.valueRefs) {
    const v = lookup(b.values, p);
    if (v === undefined) throw invalid(where, `unknown placeholder ${p.ref}: it is not in values`);
    if (deep) valueSize(v, `${where}: values ${p.ref}`);
    else if (typeOf(v) === undefined) valueSize(v, `${where}: values ${p.ref}`);
  }
}

/** A bound name placeholder's attribute name (checked beforehand by {@link checkPlaceholders}). */
export function nameOf(p: Placeholder, b: Bindings): string {
  return lookup(b.names, p) as string;
}

/** A bound value placeholder's value. */
export function valueOf(p: Placeholder, b: Bindings): Value {
  return lookup(b.values, p) as Value;
}

/** Resolves a path's name placeholders. */
export function segmentsOf(path: PathNode, b: Bindings): (string | number)[] {
  const out: (string | number)[] = [];
  for (const el of path.elements) {
    if (el.type === 'index') out.push(el.index);
    else out.push(el.type === 'name' ? el.name : nameOf(el, b));
  }
  return out;
}

const plainName = /^[\p{L}_][\p{L}\p{M}\p{N}_]*$/u;

/** A resolved path as text for messages: `a.b[0]`, with odd names in backticks. */
export function pathText(segments: Segments): string {
  let s = '';
  for (const seg of segments) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else {
      const name = plainName.test(seg) ? seg : `\`${seg.replace(/[`\\]/g, '\\$&')}\``;
      s += s === '' ? name : `.${name}`;
    }
  }
  return s;
}

/** Text of a path node for messages, placeholders resolved. */
export function describePath(path: PathNode, b: Bindings): string {
  return pathText(segmentsOf(path, b));
}
