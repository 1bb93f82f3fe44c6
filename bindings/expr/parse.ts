/**
 * Parsing: source text → frozen, cached syntax tree, with peggy's syntax errors mapped to
 * {@link ExpressionError} (line, column, offset and a caret under the fault).
 *
 * Filters run once per scanned item, so the tree of a given source is parsed once and then served
 * from a bounded cache. Eviction is "second chance" (CLOCK): a hit only sets a flag, so the hot path
 * costs one Map lookup; when the cache is full, entries hit since the last sweep move to the back
 * and the first one not hit is dropped.
 */
import { BindingError, ExpressionError } from '../errors.ts';
import { ValueTypes } from '../values.ts';
import type { ConditionAst, Placeholder, SelectAst, UpdateAst } from './ast.ts';
import { parse as peggyParse, SyntaxError as PeggySyntaxError, type Expectation } from './grammar.generated.js';

/** Most parsed trees kept per language. */
const maxCachedTrees = 1000;
/** Sources longer than this are parsed every time rather than pinned in the cache. */
const maxCachedSourceChars = 4096;
/** Widest source excerpt shown in an error message, in characters. */
const maxSnippetChars = 80;
/**
 * Deepest nesting of parentheses, brackets and NOTs an expression may have. The generated parser (and
 * the tree walks after it) recurse once per level; past a few thousand levels that overflows the stack,
 * so the bound is checked by a linear pre-scan before parsing, with the position of the offending token.
 */
export const MAX_EXPRESSION_DEPTH = 256;
/** Longest expression source, in UTF-16 code units (a 256 KiB bound keeps a bad input cheap to reject). */
export const MAX_EXPRESSION_CHARS = 256 * 1024;

interface CacheEntry<T> {
  tree: T;
  hit: boolean;
}

class TreeCache<T> {
  readonly #entries = new Map<string, CacheEntry<T>>();

  get(src: string): T | undefined {
    const e = this.#entries.get(src);
    if (e === undefined) return undefined;
    e.hit = true;
    return e.tree;
  }

  set(src: string, tree: T): void {
    if (src.length > maxCachedSourceChars) return;
    if (this.#entries.size >= maxCachedTrees) this.#evict();
    this.#entries.set(src, { tree, hit: false });
  }

  #evict(): void {
    // Map iteration visits entries re-inserted during the loop, so after one full pass every flag is
    // clear and the loop is bound to find a victim.
    for (const [src, e] of this.#entries) {
      this.#entries.delete(src);
      if (!e.hit) return;
      e.hit = false;
      this.#entries.set(src, e);
    }
  }
}

const conditions = new TreeCache<ConditionAst>();
const updates = new TreeCache<UpdateAst>();

/**
 * Parses a condition or filter. Throws {@link ExpressionError} (SLUICE_EXPRESSION_SYNTAX) when it does
 * not parse. The tree is frozen and shared: do not mutate it.
 */
export function parseCondition(src: string): ConditionAst {
  return conditionTree(src, undefined);
}

/** Parses an update expression; see {@link parseCondition}. */
export function parseUpdate(src: string): UpdateAst {
  return updateTree(src, undefined);
}

/**
 * Parses `SELECT <fields | *> FROM <name> [WHERE <condition>] [ORDER BY <field> [ASC|DESC]] [LIMIT n]`.
 * The condition is checked by the same grammar; its source text is returned for the condition APIs.
 */
export function parseSql(src: string, where?: string): SelectAst {
  return build<SelectAst>(src, 'sql', where);
}

/** {@link parseCondition} with `where: ` prefixed to error messages. */
export function conditionTree(src: string, where: string | undefined): ConditionAst {
  const hit = conditions.get(src);
  if (hit !== undefined) return hit;
  const tree = build<ConditionAst>(src, 'condition', where);
  conditions.set(src, tree);
  return tree;
}

/** {@link parseUpdate} with `where: ` prefixed to error messages. */
export function updateTree(src: string, where: string | undefined): UpdateAst {
  const hit = updates.get(src);
  if (hit !== undefined) return hit;
  const tree = build<UpdateAst>(src, 'update', where);
  updates.set(src, tree);
  return tree;
}

function build<T extends ConditionAst | UpdateAst | SelectAst>(src: string, mode: 'condition' | 'update' | 'sql', where: string | undefined): T {
  if (typeof src !== 'string') {
    throw new BindingError('SLUICE_INVALID_ARGUMENT', `${prefix(where)}expression must be a string, got ${src === null ? 'null' : typeof src}`);
  }
  preScan(src, where);
  let raw: Record<string, unknown>;
  try {
    raw = peggyParse(src, { mode, typeNames: ValueTypes }) as Record<string, unknown>;
  } catch (err) {
    throw toExpressionError(err, src, where);
  }
  if (mode === 'sql') return deepFreeze(raw) as unknown as T;
  const nameRefs = new Map<string, Placeholder>();
  const valueRefs = new Map<string, Placeholder>();
  collectRefs(raw, nameRefs, valueRefs);
  raw.nameRefs = [...nameRefs.values()];
  raw.valueRefs = [...valueRefs.values()];
  return deepFreeze(raw) as unknown as T;
}

const identChar = /[\p{L}\p{M}\p{N}_]/u;

/** The error at one offset of the source. */
function errorAt(src: string, offset: number, what: string, where: string | undefined): ExpressionError {
  let line = 1;
  let lineStart = 0;
  for (let i = src.indexOf('\n'); i !== -1 && i < offset; i = src.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  const pos = { line, column: offset - lineStart + 1, offset };
  return new ExpressionError(`${prefix(where)}${what} at line ${pos.line}, column ${pos.column}:\n${snippet(src, offset)}`, pos);
}

/**
 * Rejects sources past the length bound and nesting past {@link MAX_EXPRESSION_DEPTH} in one linear pass
 * (strings and quoted names skipped), so no input can reach the recursive parser deep enough to overflow
 * its stack. Depth counts open parentheses and brackets, plus the NOTs of a run not yet closed by AND, OR,
 * ',' or a closing parenthesis at the same level.
 */
function preScan(src: string, where: string | undefined): void {
  if (src.length > MAX_EXPRESSION_CHARS) throw errorAt(src, MAX_EXPRESSION_CHARS, `expression is ${src.length} characters long; at most ${MAX_EXPRESSION_CHARS}`, where);
  // nots[i]: NOTs open at paren level i.
  const nots: number[] = [0];
  let depth = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === "'" || c === '"' || c === '`') {
      // Skip the literal; an unterminated one is left to the parser's own error.
      for (i++; i < src.length && src[i] !== c; i++) if (src[i] === '\\') i++;
      continue;
    }
    if (c === '(' || c === '[') {
      depth++;
      nots.push(0);
      if (depth > MAX_EXPRESSION_DEPTH) throw errorAt(src, i, `expression nests deeper than ${MAX_EXPRESSION_DEPTH} levels`, where);
    } else if (c === ')' || c === ']') {
      if (nots.length > 1) {
        depth -= nots.pop()! + 1;
      }
    } else if (c === ',') {
      depth -= nots[nots.length - 1]!;
      nots[nots.length - 1] = 0;
    } else if ((c === 'n' || c === 'N' || c === 'a' || c === 'A' || c === 'o' || c === 'O') && (i === 0 || (!identChar.test(src[i - 1]!) && src[i - 1] !== '.' && src[i - 1] !== '#' && src[i - 1] !== ':'))) {
      const word = /^(not|and|or)(?![\p{L}\p{M}\p{N}_])/iu.exec(src.slice(i, i + 4));
      if (!word) continue;
      const w = word[1]!.toLowerCase();
      if (w === 'not') {
        depth++;
        nots[nots.length - 1]!++;
        if (depth > MAX_EXPRESSION_DEPTH) throw errorAt(src, i, `expression nests deeper than ${MAX_EXPRESSION_DEPTH} levels (NOT counts as a level)`, where);
      } else {
        depth -= nots[nots.length - 1]!;
        nots[nots.length - 1] = 0;
      }
      i += w.length - 1;
    }
  }
}

function collectRefs(node: unknown, names: Map<string, Placeholder>, values: Map<string, Placeholder>): void {
  if (typeof node !== 'object' || node === null) return;
  if (Array.isArray(node)) {
    for (const n of node) collectRefs(n, names, values);
    return;
  }
  const n = node as { type?: unknown; ref?: string; bare?: string };
  if (n.type === 'literal') return;
  if (n.type === 'nameRef' || n.type === 'valueRef') {
    const p: Placeholder = { ref: n.ref as string, bare: n.bare as string };
    (n.type === 'nameRef' ? names : values).set(p.ref, p);
    return;
  }
  for (const v of Object.values(node)) collectRefs(v, names, values);
}

function deepFreeze(v: unknown): unknown {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

function prefix(where: string | undefined): string {
  return where === undefined ? '' : `${where}: `;
}

/** Maps what the generated parser throws to {@link ExpressionError}. */
function toExpressionError(err: unknown, src: string, where: string | undefined): ExpressionError {
  if (err instanceof PeggySyntaxError) {
    const start = err.location.start;
    // Expectation lists come from failed matches; messages raised by grammar actions (error()) have none.
    const what = err.expected === null || err.expected === undefined ? err.message : `expected ${describeExpected(err.expected)} but found ${describeFound(err.found)}`;
    const pos = { line: start.line, column: start.column, offset: start.offset };
    return new ExpressionError(`${prefix(where)}${what} at line ${pos.line}, column ${pos.column}:\n${snippet(src, pos.offset)}`, pos, { cause: err });
  }
  if (err instanceof RangeError) {
    // Deeply nested parentheses overflow the recursive-descent parser's stack.
    return new ExpressionError(`${prefix(where)}expression nests too deeply at line 1, column 1`, { line: 1, column: 1, offset: 0 }, { cause: err });
  }
  return new ExpressionError(`${prefix(where)}expression does not parse: ${String(err)}`, { line: 1, column: 1, offset: 0 }, { cause: err });
}

function describeExpected(expected: readonly Expectation[]): string {
  const parts: string[] = [];
  for (const e of expected) {
    switch (e.type) {
      case 'literal':
        parts.push(`'${e.ignoreCase ? e.text.toUpperCase() : e.text}'`);
        break;
      case 'class':
        for (const p of e.parts) parts.push(typeof p === 'string' ? `'${p}'` : `'${p[0]}'-'${p[1]}'`);
        break;
      case 'any':
        parts.push('any character');
        break;
      case 'end':
        parts.push('end of input');
        break;
      case 'other':
        parts.push(e.description);
        break;
    }
  }
  const unique = [...new Set(parts)];
  if (unique.length <= 1) return unique[0] ?? 'something else';
  return `${unique.slice(0, -1).join(', ')} or ${unique.at(-1)}`;
}

function describeFound(found: string | null | undefined): string {
  if (found === null || found === undefined) return 'end of input';
  return `'${JSON.stringify(found).slice(1, -1)}'`;
}

/**
 * The line holding `offset`, and a caret under it. Long lines are cut to a window around the caret;
 * tabs become spaces so the caret stays aligned.
 */
export function snippet(src: string, offset: number): string {
  const lineStart = src.lastIndexOf('\n', offset - 1) + 1;
  let lineEnd = src.indexOf('\n', offset);
  if (lineEnd === -1) lineEnd = src.length;
  let line = src.slice(lineStart, lineEnd).replace(/\r$/, '').replace(/\t/g, ' ');
  let caret = offset - lineStart;
  if (line.length > maxSnippetChars) {
    const from = Math.max(0, Math.min(caret - maxSnippetChars / 2, line.length - maxSnippetChars));
    const head = from > 0 ? '…' : '';
    const tail = from + maxSnippetChars < line.length ? '…' : '';
    line = head + line.slice(from, from + maxSnippetChars) + tail;
    caret = caret - from + head.length;
  }
  return `${line}\n${' '.repeat(caret)}^`;
}
