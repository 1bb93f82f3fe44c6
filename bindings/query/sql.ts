/**
 * `SELECT … FROM <bucket> [WHERE …] [ORDER BY …] [LIMIT n]` run against a backend: the SQL is parsed by the
 * one expression grammar and its rows come from `ObjectBinding.query`, page by page, until LIMIT (or the
 * end). The CLI (`sluice query`) and the web console's query box both call this; neither pages by itself.
 */
import { parseSql, type Expression } from '../expr/index.ts';
import type { Backend, QueryOptions, QueryPlan, QueryRow } from '../types.ts';
import type { Value } from '../values.ts';

/** Options of {@link selectRows}. */
export interface SelectRowsOptions {
  /** Placeholder values used in WHERE (`:name`). @default none */
  values?: Record<string, Value>;
  /** Let WHERE and `*` see internal `$sluice.*` attributes. @default false */
  includeInternal?: boolean;
  /** Most rows, below the statement's own LIMIT. @default the statement's LIMIT, else all */
  maxRows?: number;
  /** Stop after the first page (for an explain: the plan is the same on every page). @default false */
  firstPageOnly?: boolean;
  /** Where the statement came from, for error messages. @default 'query' */
  where?: string;
}

/** The rows of a SELECT, the plan of its first page and the objects examined over all pages. */
export interface SelectRowsResult {
  bucket: string;
  rows: QueryRow[];
  plan: QueryPlan;
  examined: number;
  /** True when rows were left out because of `maxRows` (not the statement's LIMIT). */
  truncated: boolean;
}

/** Runs a SELECT statement over a bucket's objects. Errors: SLUICE_EXPRESSION_SYNTAX (with position), SLUICE_BUCKET_NOT_FOUND, … */
export async function selectRows(backend: Backend, sql: string, o: SelectRowsOptions = {}): Promise<SelectRowsResult> {
  const ast = parseSql(sql, o.where ?? 'query');
  const values = o.values ?? {};
  const where: Expression | undefined = ast.where === null ? undefined : Object.keys(values).length > 0 ? { expr: ast.where, values } : ast.where;
  const base: QueryOptions = {
    select: ast.fields === '*' ? ['*'] : [...ast.fields],
    ...(where !== undefined ? { where } : {}),
    ...(ast.orderBy ? { orderBy: { field: ast.orderBy.field, direction: ast.orderBy.direction } } : {}),
    ...(o.includeInternal ? { includeInternal: true } : {}),
  };
  const objects = await backend.objects(ast.from);
  const limit = ast.limit ?? Infinity;
  const want = Math.min(limit, o.maxRows ?? Infinity);
  const rows: QueryRow[] = [];
  let plan: QueryPlan | undefined;
  let token: string | undefined;
  let examined = 0;
  do {
    const page = await objects.query({ ...base, limit: Math.max(1, Math.min(1000, want - rows.length)), ...(token ? { continuationToken: token } : {}) });
    plan ??= page.plan;
    examined += page.plan.examined;
    rows.push(...page.rows);
    token = page.nextToken;
    if (o.firstPageOnly) break;
  } while (token && rows.length < want);
  const truncated = rows.length > want || (token !== undefined && want < limit && rows.length >= want);
  return { bucket: ast.from, rows: rows.slice(0, want === Infinity ? undefined : want), plan: plan!, examined, truncated };
}
