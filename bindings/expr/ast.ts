/**
 * Syntax trees of sluice expressions, as the generated parser (`grammar.peggy`) builds them.
 *
 * Every node is discriminated on `type`. Parsed trees are cached, frozen and shared between callers:
 * never mutate one. Placeholders (`#name`, `:value`) stay unresolved in the tree, so one tree serves
 * every binding of the same source text; they are resolved when the expression is evaluated.
 */
import type { Value } from '../values.ts';

/** Comparison operators after normalisation (`!=` is `<>`, `==` is `=`). */
export type CompareOp = '=' | '<>' | '<' | '<=' | '>' | '>=';

/** A `#name` or `:value` placeholder: `ref` as written (`#n`), `bare` without its sigil (`n`). */
export interface Placeholder {
  readonly ref: string;
  readonly bare: string;
}

/** A literal attribute name in a path: `a`, `` `my attr` ``. */
export interface NameElement {
  readonly type: 'name';
  readonly name: string;
}
/** A `#name` placeholder in a path, resolved through `names`. */
export interface NameRefElement extends Placeholder {
  readonly type: 'nameRef';
}
/** A list index in a path: `[2]`. */
export interface IndexElement {
  readonly type: 'index';
  readonly index: number;
}
/** One step of an attribute path. */
export type PathElement = NameElement | NameRefElement | IndexElement;

/** An attribute path such as `a.b[0].#c`; the first element is always a name or a name placeholder. */
export interface PathNode {
  readonly type: 'path';
  readonly elements: readonly PathElement[];
}
/** A constant: number, string, boolean, null, or a list of constants. */
export interface LiteralNode {
  readonly type: 'literal';
  readonly value: Value;
}
/** A `:value` placeholder, resolved through `values`. */
export interface ValueRefNode extends Placeholder {
  readonly type: 'valueRef';
}
/** `size(path)`. */
export interface SizeNode {
  readonly type: 'size';
  readonly path: PathNode;
}
/** What a comparison or a condition function compares. */
export type Operand = PathNode | LiteralNode | ValueRefNode | SizeNode;

/** `a OR b OR ...` (two or more operands). */
export interface OrNode {
  readonly type: 'or';
  readonly operands: readonly ConditionNode[];
}
/** `a AND b AND ...` (two or more operands). */
export interface AndNode {
  readonly type: 'and';
  readonly operands: readonly ConditionNode[];
}
/** `NOT c`. */
export interface NotNode {
  readonly type: 'not';
  readonly operand: ConditionNode;
}
/** `left op right`. */
export interface CompareNode {
  readonly type: 'compare';
  readonly op: CompareOp;
  readonly left: Operand;
  readonly right: Operand;
}
/** `operand BETWEEN low AND high` (inclusive). */
export interface BetweenNode {
  readonly type: 'between';
  readonly operand: Operand;
  readonly low: Operand;
  readonly high: Operand;
}
/** `operand IN (c1, c2, ...)`. */
export interface InNode {
  readonly type: 'in';
  readonly operand: Operand;
  readonly candidates: readonly Operand[];
}
/** `exists(path)` / `attribute_exists(path)`. */
export interface ExistsNode {
  readonly type: 'exists';
  readonly path: PathNode;
}
/** `not_exists(path)` / `attribute_not_exists(path)`. */
export interface NotExistsNode {
  readonly type: 'notExists';
  readonly path: PathNode;
}
/** `starts(operand, prefix)` / `begins_with(...)`. */
export interface StartsWithNode {
  readonly type: 'startsWith';
  readonly operand: Operand;
  readonly prefix: Operand;
}
/** `ends(operand, suffix)` / `ends_with(...)`. */
export interface EndsWithNode {
  readonly type: 'endsWith';
  readonly operand: Operand;
  readonly suffix: Operand;
}
/** `contains(operand, needle)`. */
export interface ContainsNode {
  readonly type: 'contains';
  readonly operand: Operand;
  readonly needle: Operand;
}
/** `attribute_type(path, 'string')`; `valueType` is a string literal (checked at parse time) or a placeholder. */
export interface AttributeTypeNode {
  readonly type: 'attributeType';
  readonly path: PathNode;
  readonly valueType: LiteralNode | ValueRefNode;
}
/** Any node of a condition. */
export type ConditionNode =
  | OrNode
  | AndNode
  | NotNode
  | CompareNode
  | BetweenNode
  | InNode
  | ExistsNode
  | NotExistsNode
  | StartsWithNode
  | EndsWithNode
  | ContainsNode
  | AttributeTypeNode;

/** A parsed condition or filter. `nameRefs` / `valueRefs` list its placeholders once each. */
export interface ConditionAst {
  readonly type: 'condition';
  readonly body: ConditionNode;
  readonly nameRefs: readonly Placeholder[];
  readonly valueRefs: readonly Placeholder[];
}

/** A value an update reads without computing: path, constant or placeholder. */
export type UpdateOperand = PathNode | LiteralNode | ValueRefNode;
/** `left + right` / `left - right` (left-associative). */
export interface ArithNode {
  readonly type: 'arith';
  readonly op: '+' | '-';
  readonly left: UpdateValue;
  readonly right: UpdateValue;
}
/** `if_not_exists(path, fallback)`. */
export interface IfNotExistsNode {
  readonly type: 'ifNotExists';
  readonly path: PathNode;
  readonly fallback: UpdateValue;
}
/** `list_append(left, right)`. */
export interface ListAppendNode {
  readonly type: 'listAppend';
  readonly left: UpdateValue;
  readonly right: UpdateValue;
}
/** The right-hand side of a SET assignment. */
export type UpdateValue = UpdateOperand | ArithNode | IfNotExistsNode | ListAppendNode;

/** `SET path = value`. */
export interface SetAction {
  readonly type: 'set';
  readonly path: PathNode;
  readonly value: UpdateValue;
}
/** `REMOVE path`. */
export interface RemoveAction {
  readonly type: 'remove';
  readonly path: PathNode;
}
/** `ADD path value`. */
export interface AddAction {
  readonly type: 'add';
  readonly path: PathNode;
  readonly value: UpdateOperand;
}

/** A parsed update: its actions by clause, in source order within each clause. */
export interface UpdateAst {
  readonly type: 'update';
  readonly set: readonly SetAction[];
  readonly remove: readonly RemoveAction[];
  readonly add: readonly AddAction[];
  readonly nameRefs: readonly Placeholder[];
  readonly valueRefs: readonly Placeholder[];
}

/** A parsed `SELECT <fields | *> FROM <name> [WHERE <condition>] [ORDER BY <field> [ASC|DESC]] [LIMIT n]`. */
export interface SelectAst {
  readonly type: 'select';
  /** `'*'` or the field names as written (`attr.size`, backticked names unquoted). */
  readonly fields: '*' | readonly string[];
  /** The bucket (or table) name. */
  readonly from: string;
  /** The WHERE condition's source text, or null; parse it with the condition language. */
  readonly where: string | null;
  /** Offset of `where` in the SQL text (to map later error positions back), or null. */
  readonly whereOffset: number | null;
  readonly orderBy: { readonly field: string; readonly direction: 'asc' | 'desc' } | null;
  readonly limit: number | null;
}
