/** `sluice kv get|put|query`: items of a KV table. */
import type { Command } from 'commander';
import { SluiceError } from '../../../bindings/errors.ts';
import type { ItemEntry } from '../../../bindings/types.ts';
import type { Item, Value } from '../../../bindings/values.ts';
import { collect, intArg, out, parseValue, withBackend, type GlobalOptions } from '../context.ts';

/** The `[json]` argument of `kv put`: a JSON object, else SLUICE_VALUE_INVALID (exit 4) naming the fault. */
function parseItemJson(json: string, table: string, key: string): Record<string, never> {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (cause) {
    throw new SluiceError('SLUICE_VALUE_INVALID', `kv put ${table} ${key}: the item is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SluiceError('SLUICE_VALUE_INVALID', `kv put ${table} ${key}: the item must be a JSON object, got ${Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v}`);
  return v as Record<string, never>;
}

export function register(program: Command, g: () => GlobalOptions): void {
  const kv = program.command('kv').description('items of a KV table: get, put, query');
  kv.command('get')
    .argument('<table>')
    .argument('<key>')
    .option('--attrs <names>', 'comma-separated attributes to return')
    .action(async (table: string, key: string, o: { attrs?: string }) => {
      await withBackend(g(), async (b) => {
        const e = await (await b.kv(table)).getItem(key, o.attrs ? { attrs: o.attrs.split(',') } : {});
        if (!e) throw Object.assign(new Error(`item '${key}' does not exist in table '${table}'`), { code: 'SLUICE_NOT_FOUND' });
        out(g(), e, () => `${key} (revision ${e.revision})\n${JSON.stringify(e.item, null, 2)}`);
      });
    });
  kv.command('put')
    .description('write an item: a JSON object, or --set name=value pairs; --update applies an update expression')
    .argument('<table>')
    .argument('<key>')
    .argument('[json]', 'the whole item as JSON')
    .option('--set <name=value>', 'attribute (repeatable)', collect, [])
    .option('--update <expr>', 'update expression instead of a whole item')
    .option('--value <:name=value>', 'placeholder value (repeatable)', collect, [])
    .option('--condition <expr>', 'only if this condition holds')
    .option('--create', 'create the table when missing')
    .option('--replicas <n>', 'with --create: copies kept, 1-5 (NATS: JetStream replicas; default 3 on a cluster, else 1; local: ignored)', intArg(0))
    .action(async (table: string, key: string, json: string | undefined, o: { set: string[]; update?: string; value: string[]; condition?: string; create?: boolean; replicas?: number }) => {
      await withBackend(g(), async (b) => {
        if (o.create) await b.createTable(table, o.replicas !== undefined ? { replicas: o.replicas } : {});
        const t = await b.kv(table);
        const values = Object.fromEntries(o.value.map((v) => [v.slice(0, v.indexOf('=')), parseValue(v.slice(v.indexOf('=') + 1))])) as Record<string, never>;
        const cond = o.condition ? { condition: { expr: o.condition, values } } : {};
        if (o.update) {
          const r = await t.updateItem(key, { expr: o.update, values }, cond);
          out(g(), r, () => `${key} revision ${r.revision}\n${JSON.stringify(r.item, null, 2)}`);
          return;
        }
        const item = json !== undefined ? parseItemJson(json, table, key) : (Object.fromEntries(o.set.map((s) => [s.slice(0, s.indexOf('=')), parseValue(s.slice(s.indexOf('=') + 1))])) as Record<string, never>);
        const r = await t.putItem(key, item, cond);
        out(g(), r, () => `${key} revision ${r.revision}`);
      });
    });
  kv.command('query')
    .description("scan a table with a filter, e.g. \"(bugs < 15) AND starts(name, 'Car')\", or SQL: \"SELECT name, bugs FROM t WHERE bugs < 15 ORDER BY bugs DESC LIMIT 5\"")
    .argument('<table>')
    .argument('[filter]', 'a condition, or SELECT <attrs|*> FROM <table> [WHERE …] [ORDER BY <attr> [ASC|DESC]] [LIMIT n]')
    .option('--attrs <names>', 'comma-separated attributes to return')
    .option('--limit <n>', 'most items', intArg(1), 1000)
    .action(async (table: string, filter: string | undefined, o: { attrs?: string; limit: number }) => {
      let where = filter;
      let attrs = o.attrs ? o.attrs.split(',') : undefined;
      let limit = o.limit;
      let order: { field: string; direction: 'asc' | 'desc' } | null = null;
      if (filter !== undefined && /^\s*select\b/i.test(filter)) {
        const { parseSql } = await import('../../../bindings/expr/index.ts');
        const ast = parseSql(filter, 'kv query');
        if (ast.from !== table) throw new SluiceError('SLUICE_INVALID_ARGUMENT', `kv query: the SQL reads FROM ${ast.from}, but the table given is ${table}`);
        where = ast.where ?? undefined;
        if (ast.fields !== '*') attrs = [...ast.fields];
        if (ast.limit !== null) limit = ast.limit;
        order = ast.orderBy;
      }
      await withBackend(g(), async (b) => {
        const items: ItemEntry[] = [];
        const t = await b.kv(table);
        // ORDER BY another attribute than the key needs every match before the first row is known.
        const want = order && order.field !== 'key' ? Infinity : limit;
        let marker: string | undefined;
        do {
          const page = await t.getItems({ ...(where ? { filter: where } : {}), ...(attrs && !order ? { attrs } : {}), limit: Math.min(1000, want - items.length), ...(marker ? { marker } : {}) });
          items.push(...page.items);
          marker = page.nextMarker;
        } while (marker && items.length < want);
        let result = items;
        if (order) {
          const { compareRows, sortKey } = await import('../../../bindings/query/fields.ts');
          const field = order.field;
          const keyOf = (e: ItemEntry) => sortKey(field === 'key' ? e.key : (e.item[field] as Value | undefined));
          result = items
            .map((e) => ({ e, s: keyOf(e), key: e.key }))
            .sort((x, y) => compareRows(x, y, order.direction === 'desc'))
            .slice(0, limit)
            .map((x) => (attrs ? { ...x.e, item: project(x.e.item, attrs) } : x.e));
        }
        out(g(), result, () => result.map((e) => `${e.key}\t${JSON.stringify(e.item)}`).join('\n') || '(no items)');
      });
    });
}

function project(item: Item, attrs: string[]): Item {
  const out: Item = {};
  for (const a of attrs) if (Object.hasOwn(item, a)) out[a] = item[a] as Value;
  return out;
}
