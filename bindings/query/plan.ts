/**
 * The query planner: which index ranges hold every object `where` can match.
 *
 * A plan is a SUPERSET: candidates from the ranges are always re-checked against the whole `where`, so
 * a range only has to contain every value that could match, never exactly those. That keeps the rules
 * short where the language's comparisons cross types: a number literal also matches timestamps (epoch
 * ms), an ISO string literal also matches timestamps, a timestamp literal matches numbers and (any) ISO
 * strings. Index strings are truncated (fields.ts), so string bounds are inclusive and re-checked.
 *
 * Indexable: `f = c`, `f < c` (and `<=`, `>`, `>=`, either side), `f BETWEEN a AND b`, `f IN (...)`,
 * `begins_with(f, 'p')` on an indexed field or on `key`; an AND uses its best indexable conjunct, an OR
 * only when every disjunct is indexable. Everything else (NOT, `<>`, contains, functions over paths,
 * nested paths) scans.
 */
import { conditionTree } from '../expr/parse.ts';
import type { CompareOp, ConditionNode, Operand, PathNode } from '../expr/ast.ts';
import { bindingsOf, lookup, sourceOf, type Bindings, type Expression } from '../expr/placeholders.ts';
import type { QueryPlan } from '../types.ts';
import type { Value } from '../values.ts';
import { INTERNAL_PREFIX, isoMs, isSystemField, Rank, truncateForIndex } from './fields.ts';

/** One inclusive range of index scalars of one rank; `prefix` for strings starting with it. */
export interface IndexRange {
  rank: number;
  lo?: number | string;
  hi?: number | string;
  prefix?: string;
}

/** Candidates of one field. */
export interface PlanPart {
  field: string;
  ranges: IndexRange[];
}

/** What the planner chose. */
export type Plan = { kind: 'scan'; detail: string } | { kind: 'index' | 'key-range'; parts: PlanPart[]; detail: string };

/** The value ranks a system field can hold (attributes can hold any). */
const systemRanks: Record<string, readonly number[]> = {
  key: [Rank.string],
  size: [Rank.number],
  version: [Rank.number],
  mtime: [Rank.timestamp],
  etag: [Rank.string],
  content_type: [Rank.string],
};

interface Leaf extends PlanPart {
  /** Lower is better: 0 equality, 1 IN, 2 prefix, 3 range. */
  score: number;
}

/**
 * Plans `where` over the `indexed` canonical fields (`key` is always usable). `includeInternal` lets
 * internal attributes be planned (they are invisible, hence unmatchable, otherwise).
 */
export function planQuery(where: Expression | undefined, indexed: ReadonlySet<string>, includeInternal: boolean): Plan {
  if (where === undefined) return { kind: 'scan', detail: 'scan (no where)' };
  const tree = conditionTree(sourceOf(where, 'where'), 'where');
  const b = bindingsOf(where);
  const parts = planNode(tree.body, b, indexed, includeInternal);
  if (parts === undefined) return { kind: 'scan', detail: 'scan: no indexed field in an indexable position of where' };
  const kind = parts.every((p) => p.field === 'key') ? 'key-range' : 'index';
  return { kind, parts, detail: `${kind === 'index' ? 'index' : 'key range'} ${parts.map(describePart).join(' ∪ ')}; where re-checked per row` };
}

/** The plan part of an explain. */
export function planSummary(p: Plan, examined: number): QueryPlan {
  if (p.kind === 'scan') return { kind: 'scan', detail: p.detail, examined };
  return { kind: p.kind, index: [...new Set(p.parts.map((x) => x.field))].join(','), detail: p.detail, examined };
}

function planNode(node: ConditionNode, b: Bindings, indexed: ReadonlySet<string>, internal: boolean): Leaf[] | undefined {
  switch (node.type) {
    case 'and': {
      let best: Leaf[] | undefined;
      for (const n of node.operands) {
        const p = planNode(n, b, indexed, internal);
        if (p !== undefined && (best === undefined || scoreOf(p) < scoreOf(best))) best = p;
      }
      return best;
    }
    case 'or': {
      const all: Leaf[] = [];
      for (const n of node.operands) {
        const p = planNode(n, b, indexed, internal);
        if (p === undefined) return undefined;
        all.push(...p);
      }
      return all;
    }
    default: {
      const leaf = planLeaf(node, b, indexed, internal);
      return leaf === undefined ? undefined : [leaf];
    }
  }
}

function scoreOf(p: Leaf[]): number {
  return Math.max(...p.map((l) => l.score)) + (p.length - 1) * 0.5;
}

function planLeaf(node: ConditionNode, b: Bindings, indexed: ReadonlySet<string>, internal: boolean): Leaf | undefined {
  const usable = (f: string | undefined): f is string =>
    f !== undefined && (f === 'key' || indexed.has(f)) && (internal || !f.startsWith(`attr.${INTERNAL_PREFIX}`));
  switch (node.type) {
    case 'compare': {
      if (node.op === '<>') return undefined;
      let field = fieldOf(node.left, b);
      let value = constOf(node.right, b);
      let op: CompareOp = node.op;
      if (field === undefined || value === undefined) {
        field = fieldOf(node.right, b);
        value = constOf(node.left, b);
        op = flip(node.op);
      }
      if (!usable(field) || value === undefined) return undefined;
      const ranges = rangesOf(op, value);
      return ranges && { field, ranges: restrict(field, ranges), score: op === '=' ? 0 : 3 };
    }
    case 'between': {
      const field = fieldOf(node.operand, b);
      const low = constOf(node.low, b);
      const high = constOf(node.high, b);
      if (!usable(field) || low === undefined || high === undefined) return undefined;
      const lows = rangesOf('>=', low);
      const highs = rangesOf('<=', high);
      if (!lows || !highs) return undefined;
      const ranges: IndexRange[] = [];
      for (const l of lows) {
        const h = highs.find((x) => x.rank === l.rank);
        if (!h) continue;
        const r: IndexRange = { rank: l.rank };
        if (l.lo !== undefined) r.lo = l.lo;
        if (h.hi !== undefined) r.hi = h.hi;
        ranges.push(r);
      }
      return { field, ranges: restrict(field, ranges), score: 3 };
    }
    case 'in': {
      const field = fieldOf(node.operand, b);
      if (!usable(field)) return undefined;
      const ranges: IndexRange[] = [];
      for (const c of node.candidates) {
        const v = constOf(c, b);
        const r = v === undefined ? undefined : rangesOf('=', v);
        if (!r) return undefined;
        ranges.push(...r);
      }
      return { field, ranges: restrict(field, ranges), score: 1 };
    }
    case 'startsWith': {
      const field = fieldOf(node.operand, b);
      const p = constOf(node.prefix, b);
      if (!usable(field) || typeof p !== 'string') return undefined;
      return { field, ranges: restrict(field, [{ rank: Rank.string, prefix: truncateForIndex(p) }]), score: 2 };
    }
    default:
      return undefined;
  }
}

function flip(op: CompareOp): CompareOp {
  return op === '<' ? '>' : op === '<=' ? '>=' : op === '>' ? '<' : op === '>=' ? '<=' : op;
}

/** The canonical field of a path operand: `f` or `attr.f`; undefined for nested paths and other operands. */
function fieldOf(o: Operand, b: Bindings): string | undefined {
  if (o.type !== 'path') return undefined;
  const names = o.elements.map((el) => (el.type === 'index' ? undefined : el.type === 'name' ? el.name : lookup(b.names, el)));
  if (names.some((n) => typeof n !== 'string')) return undefined;
  const [first, second] = names as string[];
  if (names.length === 1) {
    if (first === 'attr') return undefined;
    return isSystemField(first!) ? first : `attr.${first}`;
  }
  if (names.length === 2 && first === 'attr') return `attr.${second}`;
  return undefined;
}

function constOf(o: Operand, b: Bindings): Value | undefined {
  if (o.type === 'literal') return o.value;
  if (o.type === 'valueRef') return lookup(b.values, o);
  return undefined;
}

/** Ranges holding every value `v op c` can be true for; undefined when the index cannot tell. */
function rangesOf(op: CompareOp, c: Value): IndexRange[] | undefined {
  const bound = (rank: number, x: number | string): IndexRange =>
    op === '=' ? { rank, lo: x, hi: x } : op === '<' || op === '<=' ? { rank, hi: x } : { rank, lo: x };
  if (c === null) return op === '=' ? [{ rank: Rank.null }] : [];
  if (typeof c === 'boolean') return op === '=' ? [{ rank: Rank.boolean, lo: c ? 1 : 0, hi: c ? 1 : 0 }] : [];
  if (typeof c === 'number') return [bound(Rank.number, c), bound(Rank.timestamp, c)];
  if (typeof c === 'string') {
    const out = [bound(Rank.string, truncateForIndex(c))];
    const ms = isoMs(c);
    if (ms !== undefined) out.push(bound(Rank.timestamp, ms));
    return out;
  }
  if (c instanceof Date) return [bound(Rank.timestamp, c.getTime()), bound(Rank.number, c.getTime()), { rank: Rank.string }];
  return undefined;
}

function restrict(field: string, ranges: IndexRange[]): IndexRange[] {
  const allowed = systemRanks[field];
  return allowed ? ranges.filter((r) => allowed.includes(r.rank)) : ranges;
}

const rankNames = ['null', 'boolean', 'number', 'timestamp', 'string'];

function describePart(p: PlanPart): string {
  if (p.ranges.length === 0) return `${p.field}: (empty)`;
  const rs = p.ranges.map((r) => {
    const t = rankNames[r.rank] ?? String(r.rank);
    if (r.prefix !== undefined) return `${t} starting ${JSON.stringify(r.prefix)}`;
    if (r.rank === Rank.null) return 'null';
    if (r.lo !== undefined && r.lo === r.hi) return `${t} = ${JSON.stringify(r.lo)}`;
    return `${t} [${r.lo === undefined ? '-∞' : JSON.stringify(r.lo)} .. ${r.hi === undefined ? '∞' : JSON.stringify(r.hi)}]`;
  });
  return `${p.field}: ${rs.join(', ')}`;
}

/** True when an index scalar lies in a range. */
export function inRange(rank: number, v: number | string, r: IndexRange, cmp: (a: string, b: string) => number): boolean {
  if (rank !== r.rank) return false;
  if (r.prefix !== undefined) return typeof v === 'string' && v.startsWith(r.prefix);
  const c = (x: number | string, y: number | string) => (typeof x === 'number' && typeof y === 'number' ? x - y : cmp(String(x), String(y)));
  if (r.lo !== undefined && c(v, r.lo) < 0) return false;
  if (r.hi !== undefined && c(v, r.hi) > 0) return false;
  return true;
}
