/**
 * The expression language: conditions / filters (`(bugs < 15) AND starts(name, 'Car')`) and updates
 * (`SET ctr = if_not_exists(ctr, 0) + 1`), modelled on DynamoDB's expressions and v3io's.
 * docs/EXPRESSIONS.md describes the language, its comparison semantics and its errors.
 */
export type { ConditionAst, SelectAst, UpdateAst } from './ast.ts';
export { checkCondition, evaluateCondition } from './evaluate.ts';
export { MAX_EXPRESSION_CHARS, MAX_EXPRESSION_DEPTH, parseCondition, parseSql, parseUpdate } from './parse.ts';
export type { Expression } from './placeholders.ts';
export { applyUpdate, checkUpdate, updatedNames } from './update.ts';
