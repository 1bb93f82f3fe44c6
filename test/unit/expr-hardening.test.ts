/**
 * Parser hardening: hostile sizes and shapes end in a typed error with a position, never a RangeError;
 * the update overlap check is linearithmic; lone surrogates are refused; and property tests over
 * condition, update and SQL parsing (bounded runs) show every input ends in success or a typed error.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExpressionError, SluiceError } from '../../bindings/errors.ts';
import { checkCondition, checkUpdate, evaluateCondition, parseCondition, parseSql, parseUpdate } from '../../bindings/expr/index.ts';
import { checkOverlaps } from '../../bindings/expr/update.ts';
import { checkAttrs, checkItem } from '../../bindings/values.ts';

function typedError(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SluiceError);
    return e as SluiceError;
  }
  throw new Error('expected a typed error, but the call succeeded');
}

function positioned(fn: () => unknown): ExpressionError {
  const e = typedError(fn);
  expect(e).toBeInstanceOf(ExpressionError);
  expect(e.code).toBe('SLUICE_EXPRESSION_SYNTAX');
  const x = e as ExpressionError;
  expect(x.line).toBeGreaterThanOrEqual(1);
  expect(x.column).toBeGreaterThanOrEqual(1);
  expect(e.message).toMatch(/at line \d+, column \d+/);
  return x;
}

describe('expr/hardening', () => {
  it('expr - 10k nested parentheses are a positioned syntax error, not a stack overflow', () => {
    const e = positioned(() => parseCondition(`${'('.repeat(10_000)}a = 1${')'.repeat(10_000)}`));
    expect(e.message).toMatch(/nests deeper than 256/);
    expect(e.column).toBe(257);
    positioned(() => parseUpdate(`SET a = ${'['.repeat(10_000)}1${']'.repeat(10_000)}`));
    positioned(() => parseSql(`SELECT * FROM b WHERE ${'('.repeat(10_000)}a = 1${')'.repeat(10_000)}`));
  });

  it('expr - NOT × 3000 is a positioned syntax error', () => {
    const e = positioned(() => parseCondition(`${'NOT '.repeat(3000)}a = 1`));
    expect(e.message).toMatch(/NOT counts as a level/);
  });

  it('expr - moderate nesting and long flat NOT chains still parse', () => {
    expect(parseCondition(`${'('.repeat(200)}a = 1${')'.repeat(200)}`).body.type).toBe('compare');
    expect(parseCondition(Array.from({ length: 500 }, (_, i) => `NOT a${i} = 1`).join(' AND ')).body.type).toBe('and');
    expect(evaluateCondition(`${'NOT '.repeat(200)}a = 1`, { a: 1 })).toBe(true);
  });

  it('expr - 10k terms parse and evaluate (flat, no recursion per term)', () => {
    const src = Array.from({ length: 10_000 }, (_, i) => `a${i} = ${i}`).join(' AND ');
    expect(evaluateCondition(src, { a0: 0 })).toBe(false);
    const ors = Array.from({ length: 10_000 }, (_, i) => `a = ${i}`).join(' OR ');
    expect(evaluateCondition(ors, { a: 9_999 })).toBe(true);
  });

  it('expr - a 1 MB string literal is a positioned error naming the length bound', () => {
    const e = positioned(() => parseCondition(`a = '${'x'.repeat(1 << 20)}'`));
    expect(e.message).toMatch(/at most 262144/);
  });

  it('expr - arithmetic past 1000 terms is a positioned error, not a deep tree', () => {
    const e = positioned(() => parseUpdate(`SET a = ${Array(5000).fill('1').join(' + ')}`));
    expect(e.message).toMatch(/at most 1000/);
    expect(parseUpdate(`SET a = ${Array(500).fill('1').join(' + ')}`).set).toHaveLength(1);
  });

  it('expr - the update overlap check over 20k paths takes < 50 ms and still finds an overlap', () => {
    const paths = Array.from({ length: 20_000 }, (_, i) => (i % 2 ? [`a${i}`, 'b', i] : [`a${i}`]));
    checkOverlaps(paths, 'u'); // warm up the JIT
    const t0 = performance.now();
    checkOverlaps(paths, 'u');
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(50);
    expect(() => checkOverlaps([...paths, ['a3', 'b']], 'u')).toThrow(/a3\.b appears twice|a3\.b\[3\] overlap|overlap/);
    const bad = `SET ${Array.from({ length: 20_000 }, (_, i) => `a${i} = 1`).join(', ')}, a7.b = 2`;
    const e = typedError(() => checkUpdate(bad, 'u'));
    expect(e.code).toBe('SLUICE_EXPRESSION_INVALID');
    expect(e.message).toMatch(/a7 and a7\.b overlap/);
    expect(typedError(() => checkUpdate('SET a = 1 REMOVE b, a', 'u')).message).toMatch(/appears twice/);
  });

  it('values - lone surrogates in string values and names are SLUICE_VALUE_INVALID', () => {
    expect(typedError(() => checkAttrs({ a: 'x\uD800y' })).code).toBe('SLUICE_VALUE_INVALID');
    expect(typedError(() => checkAttrs({ a: ['ok', '\uDC00'] })).code).toBe('SLUICE_VALUE_INVALID');
    expect(typedError(() => checkItem({ m: { ['k\uD800']: 1 } })).code).toBe('SLUICE_VALUE_INVALID');
    expect(typedError(() => checkAttrs({ ['\uDBFF']: 1 })).code).toBe('SLUICE_VALUE_INVALID');
    expect(typedError(() => checkCondition({ expr: 'a = :v', values: { v: '\uD800' } }, 'c')).code).toBe('SLUICE_VALUE_INVALID');
    // A lone surrogate written as an escape inside the expression text is refused where it stands.
    expect(positioned(() => parseCondition("a = '\\uD800'")).column).toBe(5);
    expect(checkAttrs({ a: 'emoji \u{1F600} ok' })).toBeGreaterThan(0);
  });
});

// ── property tests ──

const TOKENS = [
  '(', ')', '[', ']', ',', '.', ';', '=', '<>', '<', '>=', '+', '-', '*', 'NOT', 'AND', 'OR', 'BETWEEN', 'IN', 'a', 'b.c', 'x[0]', '`q n`', '#n', ':v',
  '1', '-2.5e3', "'s'", '"t"', "'\\u{1F600}'", "'\\uD800'", 'true', 'null', 'size(a)', 'begins_with(a, :v)', 'exists(a)', 'attribute_type(a, \'string\')',
  'SET', 'REMOVE', 'ADD', 'if_not_exists(a, 0)', 'list_append(l, [1])', 'SELECT', 'FROM', 'WHERE', 'ORDER', 'BY', 'LIMIT', 'ASC', 'DESC', 'bkt', '5', "'", '`', '\\',
];

/** Arbitrary text, lone surrogates and control characters included. */
const anyText = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 120 });
/** Token soup: reaches far deeper into the grammar than random characters. */
const tokenSoup = fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }).map((t) => t.join(' '));
/** Deep nesting of random depth. */
const nested = fc.tuple(fc.integer({ min: 0, max: 600 }), fc.constantFrom('(', '[', 'NOT ')).map(([n, open]) => `${open.repeat(n)}a = 1${open === 'NOT ' ? '' : (open === '(' ? ')' : ']').repeat(n)}`);
const inputs = fc.oneof(anyText, tokenSoup, nested);

/** Runs `fn`; success, or a SluiceError whose code is an expression or value code. Anything else fails. */
function successOrTyped(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (!(e instanceof SluiceError)) throw new Error(`untyped ${(e as Error)?.name}: ${(e as Error)?.message}`);
    return /^SLUICE_(EXPRESSION_SYNTAX|EXPRESSION_INVALID|VALUE_INVALID|VALUE_TOO_LARGE|INVALID_ARGUMENT)$/.test(e.code);
  }
}

describe('expr/properties', () => {
  const runs = { numRuns: 400, seed: 20261201 };

  it('expr - every condition input ends in success or a typed error (parse, check, evaluate)', () => {
    fc.assert(
      fc.property(inputs, (src) =>
        successOrTyped(() => {
          checkCondition({ expr: src, names: { '#n': 'n' }, values: { ':v': 'x' } }, 'c');
          evaluateCondition({ expr: src, names: { '#n': 'n' }, values: { ':v': 'x' } }, { a: 'xa', b: { c: 1 }, x: [1], n: 2, l: [] });
        }),
      ),
      runs,
    );
  });

  it('expr - every update input ends in success or a typed error', () => {
    fc.assert(fc.property(inputs, (src) => successOrTyped(() => checkUpdate({ expr: src, names: { '#n': 'n' }, values: { ':v': 1 } }, 'u'))), runs);
  });

  it('expr - every SQL input ends in success or a typed error, and a parsed WHERE parses as a condition', () => {
    const sql = fc.oneof(inputs, tokenSoup.map((t) => `SELECT * FROM bkt WHERE ${t}`), fc.tuple(tokenSoup, fc.constantFrom('', ' ORDER BY a DESC', ' LIMIT 5')).map(([t, s]) => `SELECT a, b.c FROM bkt WHERE ${t}${s}`));
    fc.assert(
      fc.property(sql, (src) =>
        successOrTyped(() => {
          const ast = parseSql(src);
          if (ast.where !== null) parseCondition(ast.where);
        }),
      ),
      runs,
    );
  });
});
