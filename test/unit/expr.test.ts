import { describe, expect, it } from 'vitest';
import { BindingError, ExpressionError } from '../../bindings/errors.ts';
import {
  applyUpdate,
  checkCondition,
  checkUpdate,
  evaluateCondition,
  parseCondition,
  parseUpdate,
  updatedNames,
  type Expression,
} from '../../bindings/expr/index.ts';
import type { Item } from '../../bindings/values.ts';

const ev = evaluateCondition;

/** The error `fn` throws (fails the test when it does not throw). */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

function syntaxError(fn: () => unknown): ExpressionError {
  const err = thrown(fn);
  expect(err).toBeInstanceOf(ExpressionError);
  expect((err as ExpressionError).code).toBe('SLUICE_EXPRESSION_SYNTAX');
  return err as ExpressionError;
}

function invalidError(fn: () => unknown, message: RegExp | string): void {
  const err = thrown(fn);
  expect(err).toBeInstanceOf(BindingError);
  expect((err as BindingError).code).toBe('SLUICE_EXPRESSION_INVALID');
  expect(err.message).toMatch(message);
}

const bytes = (...b: number[]) => new Uint8Array(b);

describe('expr - conditions', () => {
  const item: Item = { n: 10, s: 'hello', t: true, z: null, l: [1, 'two', [3]], m: { a: 1, b: { c: 'x' } }, bin: bytes(1, 2, 3) };

  it('expr - v3io condition example verbatim', () => {
    const c = "(bugs < 15) AND starts(name, 'Car')";
    expect(ev(c, { bugs: 3, name: 'Cars' })).toBe(true);
    expect(ev(c, { bugs: 15, name: 'Cars' })).toBe(false);
    expect(ev(c, { bugs: 3, name: 'Bike' })).toBe(false);
  });

  it('expr - = and <> on every scalar type', () => {
    expect(ev('n = 10', item)).toBe(true);
    expect(ev("s = 'hello'", item)).toBe(true);
    expect(ev('t = true', item)).toBe(true);
    expect(ev('z = null', item)).toBe(true);
    expect(ev('n <> 11', item)).toBe(true);
    expect(ev('n != 10', item)).toBe(false);
    expect(ev('n == 10', item)).toBe(true);
  });

  it('expr - < <= > >= on numbers and strings', () => {
    expect(ev('n < 11', item)).toBe(true);
    expect(ev('n <= 10', item)).toBe(true);
    expect(ev('n > 10', item)).toBe(false);
    expect(ev('n >= 10', item)).toBe(true);
    expect(ev("s > 'hell'", item)).toBe(true);
    expect(ev("s < 'help'", item)).toBe(true);
  });

  it('expr - strings compare in UTF-8 byte order', () => {
    // U+FF5E sorts before U+1F600 in UTF-8, though its UTF-16 code unit is larger.
    expect(ev("a < b", { a: '\uff5e', b: '\u{1f600}' })).toBe(true);
    expect(ev("a < 'a'", { a: 'B' })).toBe(true);
  });

  it('expr - booleans and null only support = and <>', () => {
    expect(ev('t > false', item)).toBe(false);
    expect(ev('z <= null', item)).toBe(false);
    expect(ev('t <> false', item)).toBe(true);
  });

  it('expr - mismatched types compare false, <> true', () => {
    expect(ev("n = '10'", item)).toBe(false);
    expect(ev("n < 'a'", item)).toBe(false);
    expect(ev("n <> '10'", item)).toBe(true);
  });

  it('expr - a missing path compares false, except <> which is true (as DynamoDB)', () => {
    expect(ev('missing = 1', item)).toBe(false);
    expect(ev('missing < 1', item)).toBe(false);
    expect(ev('missing <> 1', item)).toBe(true);
    expect(ev('missing = other', item)).toBe(false);
    expect(ev('n = 10', undefined)).toBe(false);
  });

  it('expr - lists and maps compare by deep equality', () => {
    expect(ev("l = [1, 'two', [3]]", item)).toBe(true);
    expect(ev("l <> [1, 'two']", item)).toBe(true);
    expect(ev('m = [1]', item)).toBe(false);
  });

  it('expr - deep equality of maps through placeholders', () => {
    expect(ev({ expr: 'm = :m', values: { ':m': { b: { c: 'x' }, a: 1 } } }, item)).toBe(true);
    expect(ev({ expr: 'm = :m', values: { ':m': { a: 1 } } }, item)).toBe(false);
    expect(ev({ expr: 'm < :m', values: { ':m': { a: 2 } } }, item)).toBe(false);
  });

  it('expr - AND, OR, NOT', () => {
    expect(ev('n = 10 AND s = "hello"', item)).toBe(true);
    expect(ev('n = 11 OR s = "hello"', item)).toBe(true);
    expect(ev('NOT n = 11', item)).toBe(true);
    expect(ev('NOT (n = 10 OR t = true)', item)).toBe(false);
  });

  it('expr - precedence: NOT > AND > OR, comparisons tighter than NOT', () => {
    // OR is loosest: true OR (false AND false)
    expect(ev('n = 10 OR n = 1 AND n = 2', item)).toBe(true);
    // NOT applies to the comparison only: (NOT false) AND false
    expect(ev('NOT n = 1 AND n = 2', item)).toBe(false);
    expect(ev('(n = 10 OR n = 1) AND n = 2', item)).toBe(false);
    const tree = parseCondition('NOT a = 1 AND b = 2 OR c = 3');
    expect(tree.body.type).toBe('or');
  });

  it('expr - keywords are case-insensitive', () => {
    expect(ev('n = 10 and s = "hello" Or NoT t = TRUE', item)).toBe(true);
    expect(ev('n between 1 AND 10', item)).toBe(true);
    expect(ev('n In (1, 10)', item)).toBe(true);
  });

  it('expr - IN', () => {
    expect(ev("n IN (1, 2, 10)", item)).toBe(true);
    expect(ev("s IN ('a', 'b')", item)).toBe(false);
    expect(ev('missing IN (1)', item)).toBe(false);
  });

  it('expr - BETWEEN is inclusive', () => {
    expect(ev('n BETWEEN 10 AND 20', item)).toBe(true);
    expect(ev('n BETWEEN 1 AND 10', item)).toBe(true);
    expect(ev('n BETWEEN 11 AND 20', item)).toBe(false);
    expect(ev("s BETWEEN 'a' AND 'z' AND n = 10", item)).toBe(true);
  });

  it('expr - exists / not_exists and the attribute_ spellings', () => {
    expect(ev('exists(m.b.c)', item)).toBe(true);
    expect(ev('attribute_exists(z)', item)).toBe(true); // null exists
    expect(ev('not_exists(m.q)', item)).toBe(true);
    expect(ev('attribute_not_exists(n)', item)).toBe(false);
    expect(ev('not_exists(n)', undefined)).toBe(true);
  });

  it('expr - starts / begins_with / ends on strings and bytes', () => {
    expect(ev("starts(s, 'he')", item)).toBe(true);
    expect(ev("begins_with(s, 'lo')", item)).toBe(false);
    expect(ev("ends(s, 'lo')", item)).toBe(true);
    expect(ev("ends_with(s, 'he')", item)).toBe(false);
    expect(ev({ expr: 'starts(bin, :p) AND ends(bin, :s)', values: { p: bytes(1, 2), s: bytes(3) } }, item)).toBe(true);
    expect(ev('starts(n, 1)', item)).toBe(false);
  });

  it('expr - contains: substring, list element, byte run', () => {
    expect(ev("contains(s, 'ell')", item)).toBe(true);
    expect(ev("contains(l, 'two')", item)).toBe(true);
    expect(ev('contains(l, [3])', item)).toBe(true);
    expect(ev('contains(l, 4)', item)).toBe(false);
    expect(ev({ expr: 'contains(bin, :b)', values: { ':b': bytes(2, 3) } }, item)).toBe(true);
    expect(ev({ expr: 'contains(bin, :b)', values: { ':b': bytes(1, 3) } }, item)).toBe(false);
  });

  it('expr - size of string (UTF-8 bytes), bytes, list and map', () => {
    expect(ev('size(s) = 5', item)).toBe(true);
    expect(ev('size(u) = 4', { u: 'é€' })).toBe(false);
    expect(ev('size(u) = 5', { u: 'é€' })).toBe(true);
    expect(ev('size(bin) = 3 AND size(l) = 3 AND size(m) = 2', item)).toBe(true);
    expect(ev('size(n) = 8', item)).toBe(false);
    expect(ev('size(missing) >= 0', item)).toBe(false);
  });

  it('expr - attribute_type with every type name', () => {
    const all: Item = { s: 'x', n: 1, b: false, z: null, y: bytes(1), t: new Date(0), l: [], m: {} };
    expect(ev("attribute_type(s, 'string') AND attribute_type(n, 'number') AND attribute_type(b, 'boolean')", all)).toBe(true);
    expect(ev("attribute_type(z, 'null') AND attribute_type(y, 'bytes') AND attribute_type(t, 'timestamp')", all)).toBe(true);
    expect(ev("attribute_type(l, 'list') AND attribute_type(m, 'map')", all)).toBe(true);
    expect(ev("attribute_type(s, 'number')", all)).toBe(false);
    expect(ev({ expr: 'attribute_type(m, :t)', values: { ':t': 'map' } }, all)).toBe(true);
  });

  it('expr - attribute_type rejects unknown type names', () => {
    const err = syntaxError(() => parseCondition("attribute_type(a, 'float')"));
    expect(err.message).toMatch(/unknown type 'float'/);
    expect(err.column).toBe(19);
    invalidError(() => checkCondition({ expr: 'attribute_type(a, :t)', values: { ':t': 'float' } }, 'filter'), /^filter: attribute_type\(\) needs one of/);
  });

  it('expr - nested paths and list indexes', () => {
    expect(ev("m.b.c = 'x'", item)).toBe(true);
    expect(ev("l[1] = 'two' AND l[2][0] = 3", item)).toBe(true);
    expect(ev('l[9] = 1', item)).toBe(false);
    expect(ev('n.x = 1', item)).toBe(false);
    expect(ev('constructor = 1 OR exists(toString)', item)).toBe(false);
  });

  it('expr - timestamps against timestamps, numbers (epoch ms) and ISO strings', () => {
    const t = new Date('2024-05-01T12:00:00Z');
    const at: Item = { t };
    expect(ev({ expr: 't = :d', values: { ':d': new Date(t.getTime()) } }, at)).toBe(true);
    expect(ev(`t = ${t.getTime()}`, at)).toBe(true);
    expect(ev(`t > ${t.getTime() - 1}`, at)).toBe(true);
    expect(ev("t > '2024-05-01T11:59:59Z' AND t < '2024-05-02'", at)).toBe(true);
    expect(ev("t = '2024-05-01T12:00:00'", at)).toBe(true); // no offset means UTC
    expect(ev("t = '2024-05-01T14:00:00+02:00'", at)).toBe(true);
    expect(ev("t < 'yesterday'", at)).toBe(false);
    expect(ev(`t BETWEEN ${t.getTime()} AND '2025-01-01'`, at)).toBe(true);
  });

  it('expr - bytes compare lexicographically', () => {
    const b: Item = { x: bytes(1, 2), y: bytes(1, 2, 0), z: bytes(2) };
    expect(ev('x < y AND y < z', b)).toBe(true);
    expect(ev({ expr: 'x = :v', values: { ':v': Buffer.from([1, 2]) } }, b)).toBe(true);
    expect(ev("x < 'a'", b)).toBe(false);
  });

  it('expr - literals: numbers, strings with escapes, booleans, null, lists', () => {
    const lit: Item = { i: -3, d: 0.5, e: 1500, s: "it's \"q\"\n\u00e9\u{1f600}", l: [] };
    expect(ev('i = -3 AND d = 0.5 AND e = 1.5e3 AND e = 15E+2 AND d = 5e-1', lit)).toBe(true);
    expect(ev(`s = 'it\\'s "q"\\n\\u00e9\\u{1f600}'`, lit)).toBe(true);
    expect(ev(`s = "it's \\"q\\"\\n\u00e9\u{1f600}"`, lit)).toBe(true);
    expect(ev('l = [] AND NOT false = true AND null = null', lit)).toBe(true);
  });

  it('expr - name and value placeholders, with or without sigil in the maps', () => {
    const e: Expression = { expr: '#s = :v AND #m.#c = :one', names: { '#s': 'status', m: 'meta', '#c': 'count' }, values: { ':v': 'open', one: 1 } };
    expect(ev(e, { status: 'open', meta: { count: 1 } })).toBe(true);
    expect(ev(e, { status: 'closed', meta: { count: 1 } })).toBe(false);
  });

  it('expr - unknown placeholder is SLUICE_EXPRESSION_INVALID naming it', () => {
    invalidError(() => ev({ expr: 'a = :missing', values: {} }, {}), /:missing/);
    invalidError(() => ev('#nope = 1', {}), /#nope/);
    invalidError(() => ev({ expr: '#a = 1', names: { '#a': '' } }, {}), /#a must name an attribute/);
  });

  it('expr - checkCondition validates eagerly and prefixes where', () => {
    expect(() => checkCondition({ expr: 'a = :v', values: { ':v': 1 } }, 'filter')).not.toThrow();
    invalidError(() => checkCondition({ expr: 'a = :v' }, 'condition'), /^condition: unknown placeholder :v/);
    const err = syntaxError(() => checkCondition('a = ', 'filter'));
    expect(err.message).toMatch(/^filter: expected operand but found end of input at line 1, column 5/);
    const bad = thrown(() => checkCondition({ expr: 'a = :v', values: { ':v': undefined as never } }, 'filter'));
    expect((bad as BindingError).code).toBe('SLUICE_EXPRESSION_INVALID');
    const notValue = thrown(() => checkCondition({ expr: 'a = :v', values: { ':v': new Map() as never } }, 'filter'));
    expect((notValue as BindingError).code).toBe('SLUICE_VALUE_INVALID');
  });

  it('expr - unicode attribute names: bare, backticks and placeholders', () => {
    const u: Item = { 名前: 'x', 'my attr': { 'ü-ß': 1 }, 'a`b': 2 };
    expect(ev("名前 = 'x'", u)).toBe(true);
    expect(ev('`my attr`.`ü-ß` = 1', u)).toBe(true);
    expect(ev('`a\\`b` = 2', u)).toBe(true);
    expect(ev({ expr: '#n.#k = 1', names: { '#n': 'my attr', '#k': 'ü-ß' } }, u)).toBe(true);
  });

  it('expr - reserved words need backticks or placeholders, except after a dot', () => {
    syntaxError(() => parseCondition('and = 1'));
    expect(ev('`and` = 1 AND m.in = 2', { and: 1, m: { in: 2 } })).toBe(true);
  });
});

describe('expr - syntax errors', () => {
  it('expr - error positions (line, column, offset) for malformed conditions', () => {
    const cases: [string, number, number, number, RegExp][] = [
      ['a = = 1', 1, 5, 4, /expected operand but found '='/],
      ['starts(name', 1, 12, 11, /expected ',' but found end of input/],
      ['a BETWEEN 1', 1, 12, 11, /expected 'AND' but found end of input/],
      ['(a < 15 AND b', 1, 14, 13, /expected comparison operator, 'BETWEEN' or 'IN'/],
      ["a = 'abc", 1, 5, 4, /unterminated string/],
      ['a IN ()', 1, 7, 6, /expected operand/],
      ['a = 1 b = 2', 1, 7, 6, /found 'b'/],
      ['a. = 1', 1, 3, 2, /expected attribute name/],
      ['a[x] = 1', 1, 3, 2, /expected list index but found 'x'/],
      ['size(a = 1', 1, 8, 7, /expected '\)'/],
      ['exists(1)', 1, 8, 7, /expected attribute path but found '1'/],
      ['`abc = 1', 1, 1, 0, /unterminated quoted name/],
    ];
    for (const [src, line, column, offset, message] of cases) {
      const err = syntaxError(() => parseCondition(src));
      expect([src, err.line, err.column, err.offset]).toEqual([src, line, column, offset]);
      expect(err.message).toMatch(message);
    }
  });

  it('expr - error message holds the line and a caret under the fault', () => {
    const err = syntaxError(() => parseCondition('(a < 15 AND b'));
    expect(err.message).toBe("expected comparison operator, 'BETWEEN' or 'IN' but found end of input at line 1, column 14:\n(a < 15 AND b\n             ^");
  });

  it('expr - multi-line error positions', () => {
    const err = syntaxError(() => parseCondition('a = 1 AND\n  b = = 2'));
    expect([err.line, err.column, err.offset]).toEqual([2, 7, 16]);
    expect(err.message).toMatch(/at line 2, column 7:\n {2}b = = 2\n {6}\^$/);
    const err2 = syntaxError(() => parseUpdate('SET a = 1,\r\n    b = \n\n'));
    expect([err2.line, err2.column]).toEqual([4, 1]);
  });

  it('expr - malformed updates', () => {
    const set = syntaxError(() => parseUpdate('SET'));
    expect([set.line, set.column, set.offset]).toEqual([1, 4, 3]);
    expect(set.message).toMatch(/expected attribute path but found end of input/);
    const twice = syntaxError(() => parseUpdate('SET a = 1 REMOVE b SET c = 2'));
    expect(twice.offset).toBe(19);
    expect(twice.message).toMatch(/SET clause appears twice/);
    syntaxError(() => parseUpdate('REMOVE'));
    syntaxError(() => parseUpdate('ADD n'));
    syntaxError(() => parseUpdate('SET a = if_not_exists(a)'));
  });

  it('expr - bad escapes, huge numbers and deep nesting are syntax errors', () => {
    expect(syntaxError(() => parseCondition("a = '\\q'")).message).toMatch(/unknown escape sequence \\q/);
    expect(syntaxError(() => parseCondition('a = 1e999')).message).toMatch(/out of range/);
    syntaxError(() => parseCondition(`${'('.repeat(20000)}a = 1${')'.repeat(20000)}`));
  });

  it('expr - parsed trees are cached and frozen', () => {
    const a = parseCondition('x = 1 AND y = 2');
    expect(parseCondition('x = 1 AND y = 2')).toBe(a);
    expect(Object.isFrozen(a.body)).toBe(true);
    for (let i = 0; i < 2500; i++) parseCondition(`x = ${i}`);
    expect(ev('x = 2499', { x: 2499 })).toBe(true);
  });
});

describe('expr - updates', () => {
  it('expr - v3io update example verbatim', () => {
    expect(applyUpdate('SET ctr = if_not_exists(ctr, 0) + 1', undefined)).toEqual({ ctr: 1 });
    expect(applyUpdate('SET ctr = if_not_exists(ctr, 0) + 1', { ctr: 41 })).toEqual({ ctr: 42 });
  });

  it('expr - v3io update style without SET, separated by ; or ,', () => {
    expect(applyUpdate('ctr = if_not_exists(ctr, 0) + 1; x = 2', { ctr: 1 })).toEqual({ ctr: 2, x: 2 });
    expect(applyUpdate('a = 1, b = 2;', {})).toEqual({ a: 1, b: 2 });
  });

  it('expr - SET values, arithmetic and placeholders', () => {
    const out = applyUpdate({ expr: 'SET a = :v, b = n - 2, c = n + n, #d = "s", e = [1, [2]]', names: { '#d': 'd' }, values: { ':v': { k: [1] } } }, { n: 5 });
    expect(out).toEqual({ n: 5, a: { k: [1] }, b: 3, c: 10, d: 's', e: [1, [2]] });
  });

  it('expr - right-hand sides read the original item', () => {
    expect(applyUpdate('SET a = b, b = a', { a: 1, b: 2 })).toEqual({ a: 2, b: 1 });
  });

  it('expr - timestamp arithmetic', () => {
    const t = new Date('2024-01-01T00:00:00Z');
    const out = applyUpdate('SET later = t + 1000, earlier = t - 1000, gap = t - t0', { t, t0: new Date(t.getTime() - 5) });
    expect(out.later).toBeInstanceOf(Date);
    expect((out.later as Date).getTime()).toBe(t.getTime() + 1000);
    expect((out.earlier as Date).getTime()).toBe(t.getTime() - 1000);
    expect(out.gap).toBe(5);
  });

  it('expr - if_not_exists keeps an existing value', () => {
    expect(applyUpdate('SET a = if_not_exists(a, 7), b = if_not_exists(b, 7)', { a: 1 })).toEqual({ a: 1, b: 7 });
  });

  it('expr - list_append with list paths and list values on either side', () => {
    const item: Item = { l: [1, 2] };
    expect(applyUpdate({ expr: 'SET l = list_append(l, :x)', values: { ':x': [3] } }, item)).toEqual({ l: [1, 2, 3] });
    expect(applyUpdate('SET l = list_append([0], l)', item)).toEqual({ l: [0, 1, 2] });
    expect(applyUpdate('SET m = list_append(if_not_exists(m, []), [9])', item)).toEqual({ l: [1, 2], m: [9] });
    invalidError(() => applyUpdate('SET l = list_append(l, 3)', item), /list_append\(\) needs two lists; 3 is a number/);
  });

  it('expr - nested SET into an existing map, and into a missing parent', () => {
    expect(applyUpdate('SET a.b.c = 1', { a: { b: {} } })).toEqual({ a: { b: { c: 1 } } });
    invalidError(() => applyUpdate('SET a.b.c = 1', { a: {} }), /parent path a\.b does not exist/);
    invalidError(() => applyUpdate('SET a.b = 1', { a: 'x' }), /a is a string, not a map/);
  });

  it('expr - SET on a list index replaces, past the end appends', () => {
    expect(applyUpdate('SET l[0] = 9', { l: [1, 2] })).toEqual({ l: [9, 2] });
    expect(applyUpdate('SET l[10] = 3', { l: [1, 2] })).toEqual({ l: [1, 2, 3] });
    invalidError(() => applyUpdate('SET m[0] = 3', { m: {} }), /m is a map, not a list/);
  });

  it('expr - REMOVE attributes, nested names and list elements', () => {
    const out = applyUpdate('REMOVE a, m.x, l[1], l[3], missing, m.nope.deep', { a: 1, b: 2, m: { x: 1, y: 2 }, l: [0, 1, 2, 3, 4] });
    expect(out).toEqual({ b: 2, m: { y: 2 }, l: [0, 2, 4] });
  });

  it('expr - ADD to numbers, timestamps, lists, and to a missing attribute', () => {
    expect(applyUpdate({ expr: 'ADD n :v', values: { ':v': 5 } }, { n: 1 })).toEqual({ n: 6 });
    expect(applyUpdate({ expr: 'ADD n :v', values: { ':v': 5 } }, undefined)).toEqual({ n: 5 });
    expect(applyUpdate('ADD tags [\'b\'], fresh [1]', { tags: ['a'] })).toEqual({ tags: ['a', 'b'], fresh: [1] });
    expect(applyUpdate('ADD t 1000', { t: new Date(0) })).toEqual({ t: new Date(1000) });
    expect(applyUpdate('ADD n -1.5, m 2', { n: 1 })).toEqual({ n: -0.5, m: 2 });
  });

  it('expr - clauses in any order, each applied', () => {
    const out = applyUpdate('REMOVE old ADD n 1 SET a = 2', { old: 1, n: 1 });
    expect(out).toEqual({ n: 2, a: 2 });
    expect(applyUpdate('set a = 1 remove b', { b: 1 })).toEqual({ a: 1 });
  });

  it('expr - overlapping paths are SLUICE_EXPRESSION_INVALID', () => {
    invalidError(() => applyUpdate('SET a = 1 REMOVE a', {}), /path a appears twice/);
    invalidError(() => applyUpdate('SET a = 1, a.b = 2', {}), /paths a and a\.b overlap/);
    invalidError(() => applyUpdate({ expr: 'SET #x = 1 ADD y 1', names: { '#x': 'y' } }, {}), /path y appears twice/);
    invalidError(() => checkUpdate('SET l[1] = 1 REMOVE l[1]', 'update'), /l\[1\] appears twice/);
    expect(() => checkUpdate('SET l[1] = 1 REMOVE l[2]', 'update')).not.toThrow();
  });

  it('expr - type mismatches name the path', () => {
    invalidError(() => applyUpdate('SET a = b + 1', { b: 'x' }), /^update: SET a: '\+' needs numbers.*; b is a string$/);
    invalidError(() => applyUpdate('SET a = b + 1', {}), /^update: SET a: b does not exist/);
    invalidError(() => applyUpdate("ADD n 'x'", { n: 1 }), /ADD n: ADD to a number needs a number; "x" is a string/);
    invalidError(() => applyUpdate('ADD s 1', { s: 'x' }), /ADD s: .*holds a string/);
    invalidError(() => applyUpdate('ADD n true', {}), /ADD n: ADD needs a number or a list/);
    invalidError(() => applyUpdate('SET a = b + b', { b: 1e308 }), /SET a: the result of '\+' is out of range/);
  });

  it('expr - the input item is never mutated and the result shares nothing with it', () => {
    const input: Item = { m: { x: 1, inner: { deep: [1] } }, l: [1, 2], bin: bytes(1), t: new Date(5), keep: { k: 1 } };
    const snapshot = structuredClone(input);
    const values = { ':v': { a: [1] } };
    const out = applyUpdate({ expr: 'SET m.y = 2, l[5] = 3, copy = keep, v = :v REMOVE m.x', values }, input);
    expect(input).toEqual(snapshot);
    expect(out.m).not.toBe(input.m);
    expect((out.m as Record<string, unknown>).inner).not.toBe((input.m as Record<string, unknown>).inner);
    expect(out.copy).not.toBe(input.keep);
    expect(out.keep).not.toBe(input.keep);
    expect(out.v).not.toBe(values[':v']);
    expect(out.bin).toBeInstanceOf(Uint8Array);
    expect(out.bin).not.toBe(input.bin);
    expect(out.t).toBeInstanceOf(Date);
    expect(out.t).not.toBe(input.t);
    const lit = applyUpdate('SET e = [1]', {});
    (lit.e as number[]).push(2);
    expect(applyUpdate('SET e = [1]', {})).toEqual({ e: [1] });
  });

  it('expr - updatedNames lists top-level names once', () => {
    expect(updatedNames({ expr: 'SET a.b = 1, #n = 2 REMOVE c[0], a.c ADD d 1', names: { '#n': 'named' } })).toEqual(['a', 'named', 'c', 'd']);
    expect(updatedNames('x = 1; y = 2')).toEqual(['x', 'y']);
    invalidError(() => updatedNames('SET #n = 1'), /#n/);
  });

  it('expr - checkUpdate validates placeholders eagerly with where', () => {
    expect(() => checkUpdate({ expr: 'SET a = :v', values: { ':v': 1 } }, 'update')).not.toThrow();
    invalidError(() => checkUpdate('SET a = :v', 'kv.update'), /^kv\.update: unknown placeholder :v/);
    expect(syntaxError(() => checkUpdate('SET a =', 'kv.update')).message).toMatch(/^kv\.update: expected/);
  });

  it('expr - a non-expression argument is SLUICE_INVALID_ARGUMENT', () => {
    const err = thrown(() => evaluateCondition(42 as never, {}));
    expect((err as BindingError).code).toBe('SLUICE_INVALID_ARGUMENT');
  });
});
