/**
 * `sluice query "<SQL>"`: `SELECT <fields | *> FROM <bucket> [WHERE <condition>] [ORDER BY <field>
 * [ASC|DESC]] [LIMIT n]` over objects' metadata and attributes (docs/QUERIES.md). The SQL is parsed by
 * the one expression grammar; the rows come from `ObjectBinding.query`, page by page, until LIMIT (or
 * the end). Text output is a table; `--json` an array of row objects, each with `key`; `--explain` the
 * plan (which index, if any) instead of the rows.
 */
import type { Command } from 'commander';
import { selectRows } from '../../../bindings/query/sql.ts';
import type { QueryRow } from '../../../bindings/types.ts';
import type { Value } from '../../../bindings/values.ts';
import { collect, out, parseValue, withBackend, type GlobalOptions } from '../context.ts';

/** Widest column of the text table, in characters. */
const MAX_CELL = 48;

export function register(program: Command, g: () => GlobalOptions): void {
  program
    .command('query')
    .description("query objects' metadata and attributes: \"SELECT key, mtime FROM photos WHERE has_ssn = true ORDER BY mtime DESC LIMIT 10\"")
    .argument('<sql>', 'SELECT <fields|*> FROM <bucket> [WHERE <condition>] [ORDER BY <field> [ASC|DESC]] [LIMIT n]')
    .option('--explain', 'print the plan (index or scan) instead of the rows')
    .option('--value <:name=value>', 'placeholder value used in WHERE (repeatable)', collect, [])
    .option('--include-internal', 'let WHERE and * see internal $sluice.* attributes')
    .action(async (sql: string, o: { explain?: boolean; value: string[]; includeInternal?: boolean }) => {
      await withBackend(g(), async (b) => {
        const r = await selectRows(b, sql, { values: placeholderValues(o.value), ...(o.includeInternal ? { includeInternal: true } : {}), ...(o.explain ? { firstPageOnly: true } : {}) });
        if (o.explain) {
          const p = { ...r.plan, examined: r.examined };
          out(g(), p, () => `plan: ${p.kind}${p.index ? ` on ${p.index}` : ''}\n${p.detail}\nfirst page: ${r.rows.length} rows, ${p.examined} objects examined`);
          return;
        }
        out(g(), r.rows, () => table(r.rows));
      });
    });
}

/** `:name=value` pairs → placeholder values. */
export function placeholderValues(pairs: string[]): Record<string, Value> {
  return Object.fromEntries(pairs.map((v) => [v.slice(0, v.indexOf('=')), parseValue(v.slice(v.indexOf('=') + 1)) as Value]));
}

function cell(v: Value | undefined): string {
  let s: string;
  if (v === undefined) s = '';
  else if (v instanceof Date) s = v.toISOString();
  else if (v instanceof Uint8Array) s = `<${v.byteLength} bytes>`;
  else if (typeof v === 'object' && v !== null) s = JSON.stringify(v);
  else s = String(v);
  s = s.replace(/[\r\n\t]/g, ' ');
  return s.length > MAX_CELL ? `${s.slice(0, MAX_CELL - 1)}…` : s;
}

/** Rows as an aligned text table: key first, then every other column in order of first appearance. */
export function table(rows: QueryRow[]): string {
  if (rows.length === 0) return '(no rows)';
  const cols: string[] = ['key'];
  const seen = new Set(cols);
  for (const r of rows) for (const k of Object.keys(r)) if (!seen.has(k)) (seen.add(k), cols.push(k));
  const cells = rows.map((r) => cols.map((c) => cell(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (xs: string[]) => xs.map((x, i) => x.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(cols), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line), `(${rows.length} row${rows.length === 1 ? '' : 's'})`].join('\n');
}
